package cache

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Config sizes a Store.
type Config struct {
	// MaxBytes bounds the bytes of stored entries (Entry.Size); ristretto evicts the least
	// valuable entries (sampled LFU with TinyLFU admission) to stay under it. Entry.Size
	// counts an entry's real heap, ristretto's bookkeeping included, so a full store holds
	// about MaxBytes of memory, plus some 4% for the admission policy's counters.
	MaxBytes int64
	// MaxEntryBytes bounds one entry; larger answers are not stored. Default MaxBytes/16, so one
	// long answer cannot flush the cache.
	MaxEntryBytes int64
}

// Store is the byte-bounded response cache. Entries are found by Key and verified against the
// full 128-bit key and the scope, so a hit never answers a different request. Invalidation is
// O(1): every entry carries the generation of the cache, its alias and its version when it was
// stored, and Delete* bump a generation, which makes older entries misses at once. Safe for
// concurrent use; the owner calls Close.
type Store struct {
	c        *ristretto.Cache[uint64, *Entry]
	maxBytes int64
	maxEntry int64
	gen      atomic.Uint64

	mu      sync.RWMutex
	aliases map[string]*aliasState

	hits, misses, stale, stores, dropped, evictions atomic.Uint64
	coalesced                                       atomic.Uint64 // misses answered by their flight's leader
	bytes, entries                                  atomic.Int64
	// refused counts the entries Set took that the admission policy then refused; storesShown
	// is the most Stats has reported as Stores (see storesSoFar).
	refused, storesShown atomic.Uint64

	// door remembers the requests looked up lately, for Admit; notAdmitted counts the answers
	// Admit turned away.
	door        doorkeeper
	notAdmitted atomic.Uint64

	// hash maps a key to ristretto's 64-bit key; tests replace it to force collisions.
	hash func(Key) uint64
}

// Scope is one (alias, version): the unit of invalidation and of per-alias metrics. Get it
// once per config snapshot (or per request; it is a map lookup) with Store.Scope; it stays
// valid for the Store's life.
type Scope struct {
	alias   *aliasState
	version string
	gen     atomic.Uint64
}

type aliasState struct {
	name                 string
	gen                  atomic.Uint64
	versions             map[string]*Scope // guarded by Store.mu
	hits, misses, stores atomic.Uint64
	refused, storesShown atomic.Uint64 // as Store's
	coalesced            atomic.Uint64
	bytes, entries       atomic.Int64
}

type generation struct{ all, alias, version uint64 }

func (st *Store) current(s *Scope) generation {
	return generation{st.gen.Load(), s.alias.gen.Load(), s.gen.Load()}
}

// New returns a store bounded by cfg.MaxBytes.
func New(cfg Config) (*Store, error) {
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("cache: MaxBytes must be positive")
	}
	st := &Store{maxBytes: cfg.MaxBytes, maxEntry: cfg.MaxEntryBytes, aliases: map[string]*aliasState{}}
	if st.maxEntry <= 0 {
		st.maxEntry = max(cfg.MaxBytes/16, 1)
	}
	st.hash = func(k Key) uint64 { return k[0] }
	st.door.init(cfg.MaxBytes / 2048) // about one entry per 2 KiB, as for the counters below
	// About one counter per 200 bytes: ten per expected entry of ~2 KiB, as ristretto advises.
	counters := min(max(cfg.MaxBytes/200, 1000), 1<<24)
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *Entry]{
		NumCounters:        counters,
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // Entry.Size already counts the bookkeeping
		OnEvict:            func(*ristretto.Item[*Entry]) { st.evictions.Add(1) },
		OnReject:           st.onReject,
		OnExit:             st.onExit,
	})
	if err != nil {
		return nil, err
	}
	st.c = c
	return st, nil
}

// Close stops the store's goroutines; it must not be used afterwards.
func (st *Store) Close() { st.c.Close() }

// Wait blocks until every Set so far has been applied or rejected. Sets are asynchronous;
// tests and the admin API use Wait to observe them.
func (st *Store) Wait() { st.c.Wait() }

// onReject runs for an entry Set took and the admission policy then refused.
func (st *Store) onReject(it *ristretto.Item[*Entry]) {
	st.refused.Add(1)
	it.Value.scope.alias.refused.Add(1)
}

// onExit runs once for every value that leaves the cache (evicted, expired, deleted, replaced
// or refused admission), which keeps the byte and entry counts exact.
func (st *Store) onExit(e *Entry) {
	if e == nil {
		return
	}
	st.bytes.Add(-e.size)
	st.entries.Add(-1)
	e.scope.alias.bytes.Add(-e.size)
	e.scope.alias.entries.Add(-1)
}

// Scope returns the scope of version of alias, creating it on first use.
func (st *Store) Scope(alias, version string) *Scope {
	st.mu.RLock()
	a := st.aliases[alias]
	var s *Scope
	if a != nil {
		s = a.versions[version]
	}
	st.mu.RUnlock()
	if s != nil {
		return s
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if a = st.aliases[alias]; a == nil {
		a = &aliasState{name: alias, versions: map[string]*Scope{}}
		st.aliases[alias] = a
	}
	if s = a.versions[version]; s == nil {
		s = &Scope{alias: a, version: version}
		a.versions[version] = s
	}
	return s
}

// Get returns the entry stored for req in scope s. It also records in req the generation
// that a later Set for req stores under, so an invalidation while the backend answers is not
// undone by that answer. req must have been prepared for s's alias and version.
func (st *Store) Get(s *Scope, req *Request) (*Entry, bool) {
	cur := st.current(s)
	req.gen, req.genSet, req.scope = cur, true, s
	body := req.body // Prepare kept it for rememberPrepared only
	req.body = nil
	if !req.ok {
		st.misses.Add(1)
		s.alias.misses.Add(1)
		return nil, false
	}
	e, ok := st.c.Get(st.hash(req.Key))
	if ok && (e.key != req.Key || e.scope != s) {
		ok = false // another request's entry under the same 64-bit ristretto key
	}
	if ok && e.gen != cur {
		// Invalidated by a Delete. Drop it now rather than wait for eviction.
		st.stale.Add(1)
		st.c.Del(st.hash(req.Key))
		ok = false
	}
	if !ok {
		st.misses.Add(1)
		s.alias.misses.Add(1)
		return nil, false
	}
	st.hits.Add(1)
	s.alias.hits.Add(1)
	rememberPrepared(req, body)
	return e, true
}

// Coalesced records that a request of scope s that Get missed was answered by its flight's
// leader: Stats counts it as coalesced, not as a miss, as llmgate_cache_requests_total does.
func (st *Store) Coalesced(s *Scope) {
	st.coalesced.Add(1)
	s.alias.coalesced.Add(1)
}

// Begin records in req, as Get does, the generation that a later Set for req stores under, for a
// request that is stored without a lookup (x-llmgate-cache: refresh): an invalidation while
// its backend answers must not be undone by that answer either.
func (st *Store) Begin(s *Scope, req *Request) {
	req.gen, req.genSet, req.scope = st.current(s), true, s
}

// Admit records that req was looked up and reports whether its answer is worth storing: always
// while the store has room, and once it is nearly full only when req was looked up before.
// A full store otherwise takes every answer to a request never seen again (most prompts are
// unique) and evicts an entry for it: the admission policy's work, the copy of the answer and
// its eviction, per request, for nothing, while the entries that do get hits are pushed out.
// A request asked for twice is stored the second time and hits from the third.
func (st *Store) Admit(req *Request) bool {
	if !req.ok {
		return false
	}
	if st.door.seen(req.Key) || st.bytes.Load() < st.maxBytes-st.maxBytes/8 {
		return true
	}
	st.notAdmitted.Add(1)
	return false
}

// doorkeeper is a Bloom filter of the keys looked up lately, two bits set per key and eight
// bits in all per key it remembers, cleared after that many keys (about one false positive in
// twenty just before a clear, one in fifty on average): init(keys) remembers the last keys
// keys, as many as the store holds entries. Its bits are set and cleared atomically without a
// lock: a bit lost to a concurrent clear only turns one request away once more.
type doorkeeper struct {
	words []atomic.Uint64
	mask  uint64 // bit index mask
	adds  atomic.Int64
	limit int64 // adds before a clear: eight bits each
}

func (d *doorkeeper) init(keys int64) {
	n := 64 // words
	for int64(n)*64 < 8*keys && n < 1<<20 {
		n *= 2
	}
	d.words, d.mask, d.limit = make([]atomic.Uint64, n), uint64(n*64-1), int64(n)*64/8
}

// seen reports whether k was added since the last clear, and adds it.
func (d *doorkeeper) seen(k Key) bool {
	a, b := k[0]&d.mask, k[1]&d.mask
	wa, wb := &d.words[a>>6], &d.words[b>>6]
	ba, bb := uint64(1)<<(a&63), uint64(1)<<(b&63)
	if wa.Load()&ba != 0 && wb.Load()&bb != 0 {
		return true
	}
	wa.Or(ba)
	wb.Or(bb)
	if d.adds.Add(1) >= d.limit {
		d.adds.Store(0)
		for i := range d.words {
			d.words[i].Store(0)
		}
	}
	return false
}

// Set stores e as the answer to req in scope s for ttl (0: until evicted). It reports whether
// the store accepted it for admission; ristretto applies sets asynchronously and may still
// refuse it. An entry is stored at most once, by the flight's leader: Set takes ownership
// (followers share the entry read-only).
func (st *Store) Set(s *Scope, req *Request, e *Entry, ttl time.Duration) bool {
	if e.scope != nil {
		panic("BUG: cache entry stored twice")
	}
	if !req.ok || ttl < 0 || e.size > st.maxEntry {
		st.dropped.Add(1)
		return false
	}
	e.key, e.scope = req.Key, s
	e.gen = req.gen
	if !req.genSet {
		e.gen = st.current(s)
	}
	// Count before Set: OnExit may run (refused admission) before Set returns.
	st.bytes.Add(e.size)
	st.entries.Add(1)
	s.alias.bytes.Add(e.size)
	s.alias.entries.Add(1)
	if !st.c.SetWithTTL(st.hash(req.Key), e, e.size, ttl) {
		st.onExit(e) // dropped under contention: OnExit never runs for it
		st.dropped.Add(1)
		return false
	}
	st.stores.Add(1)
	s.alias.stores.Add(1)
	return true
}

// DeleteAll invalidates every entry at once and then frees their memory; it returns the
// number of entries removed.
func (st *Store) DeleteAll() int {
	st.gen.Add(1)
	return st.sweep(func(*Entry) bool { return true })
}

// DeleteAlias invalidates every entry of alias and returns the number removed.
func (st *Store) DeleteAlias(alias string) int {
	st.mu.RLock()
	a := st.aliases[alias]
	st.mu.RUnlock()
	if a == nil {
		return 0
	}
	a.gen.Add(1)
	return st.sweep(func(e *Entry) bool { return e.scope.alias == a })
}

// Forget is DeleteAlias for an alias that no longer exists: it also drops the alias's counters,
// so Stats no longer lists it and an alias created later under the name starts from zero.
// Scopes handed out before stay usable; what they count is no longer shown.
func (st *Store) Forget(alias string) int {
	st.mu.Lock()
	a := st.aliases[alias]
	delete(st.aliases, alias)
	st.mu.Unlock()
	if a == nil {
		return 0
	}
	a.gen.Add(1)
	return st.sweep(func(e *Entry) bool { return e.scope.alias == a })
}

// DeleteVersion invalidates every entry of version of alias and returns the number removed.
func (st *Store) DeleteVersion(alias, version string) int {
	st.mu.RLock()
	var s *Scope
	if a := st.aliases[alias]; a != nil {
		s = a.versions[version]
	}
	st.mu.RUnlock()
	if s == nil {
		return 0
	}
	s.gen.Add(1)
	return st.sweep(func(e *Entry) bool { return e.scope == s })
}

// ForgetVersion is DeleteVersion for a version that no longer exists: a version deployed later
// under the name gets a scope of its own. A request routed to the deleted one before (on the
// snapshot it started with) then stores its answer in the old scope, where the new version's
// requests never find it, and shares no flight with them; with one scope it captured the new
// generation at its lookup and stored the deleted deployment's answer for the new one.
func (st *Store) ForgetVersion(alias, version string) int {
	st.mu.Lock()
	var s *Scope
	if a := st.aliases[alias]; a != nil {
		s = a.versions[version]
		delete(a.versions, version)
	}
	st.mu.Unlock()
	if s == nil {
		return 0
	}
	s.gen.Add(1)
	return st.sweep(func(e *Entry) bool { return e.scope == s })
}

// sweep deletes the entries match selects. Invalidation has already happened (a generation
// bump); this only returns memory, so it may miss entries being set concurrently: they are
// stale and go on their next lookup or eviction. O(entries): admin path only.
func (st *Store) sweep(match func(*Entry) bool) int {
	var keys []uint64
	st.c.IterValues(func(e *Entry) bool {
		if match(e) {
			keys = append(keys, st.hash(e.key))
		}
		return false
	})
	for _, k := range keys {
		st.c.Del(k)
	}
	st.c.Wait()
	return len(keys)
}

// Stats is a snapshot of the store's counters.
type Stats struct {
	Hits, Misses uint64 // lookups; a lookup that found an invalidated entry is a miss
	Coalesced    uint64 // lookups that missed and were answered by their flight's leader (not in Misses)
	Stale        uint64 // entries found invalidated on lookup
	Stores       uint64 // entries stored: accepted by Set and not refused by the admission policy (see storesSoFar)
	Dropped      uint64 // entries Set refused: too large, no ttl, or dropped under contention
	NotAdmitted  uint64 // answers not stored because the store was nearly full and their request new (see Admit)
	Evictions    uint64 // entries removed for room or on expiry
	Bytes        int64  // Entry.Size of the entries held
	Entries      int64
	MaxBytes     int64
	Aliases      []AliasStats // sorted by alias
}

// AliasStats are one alias's counters.
type AliasStats struct {
	Alias                           string
	Hits, Misses, Coalesced, Stores uint64
	Bytes, Entries                  int64
}

// HitRatio returns the share of lookups answered without a backend call of their own: hits
// and coalesced requests over all lookups, 0 before any lookup.
func (s AliasStats) HitRatio() float64 { return ratio(s.Hits+s.Coalesced, s.Misses) }

// HitRatio returns the share of lookups answered without a backend call of their own: hits
// and coalesced requests over all lookups, 0 before any lookup.
func (s Stats) HitRatio() float64 { return ratio(s.Hits+s.Coalesced, s.Misses) }

func ratio(h, m uint64) float64 {
	if h+m == 0 {
		return 0
	}
	return float64(h) / float64(h+m)
}

// storesSoFar returns the entries stored: those Set took less those the admission policy
// refused, which it judges asynchronously, after Set counted them. A total that went down
// would read as a counter reset on /metrics, so one counted while pending and refused after
// it was reported does not lower the next report: the report catches up as stores go on.
func storesSoFar(stores, refused, storesShown *atomic.Uint64) uint64 {
	r := refused.Load() // first: every refusal is of an entry stores counts already
	n := stores.Load() - r
	for {
		shown := storesShown.Load()
		if n <= shown {
			return shown
		}
		if storesShown.CompareAndSwap(shown, n) {
			return n
		}
	}
}

// Stats returns the store's counters. It allocates; call it from /metrics and the admin API,
// not per request.
func (st *Store) Stats() Stats {
	// Coalesced before misses: every coalesced request is a miss counted already.
	coalesced := st.coalesced.Load()
	s := Stats{
		Hits: st.hits.Load(), Misses: st.misses.Load() - coalesced, Coalesced: coalesced, Stale: st.stale.Load(),
		Stores: storesSoFar(&st.stores, &st.refused, &st.storesShown), Dropped: st.dropped.Load(), NotAdmitted: st.notAdmitted.Load(), Evictions: st.evictions.Load(),
		Bytes: st.bytes.Load(), Entries: st.entries.Load(), MaxBytes: st.maxBytes,
	}
	st.mu.RLock()
	for _, a := range st.aliases {
		coalesced := a.coalesced.Load()
		s.Aliases = append(s.Aliases, AliasStats{
			Alias: a.name, Hits: a.hits.Load(), Misses: a.misses.Load() - coalesced, Coalesced: coalesced, Stores: storesSoFar(&a.stores, &a.refused, &a.storesShown),
			Bytes: a.bytes.Load(), Entries: a.entries.Load(),
		})
	}
	st.mu.RUnlock()
	slices.SortFunc(s.Aliases, func(x, y AliasStats) int { return strings.Compare(x.Alias, y.Alias) })
	return s
}
