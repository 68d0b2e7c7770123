package cache

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

func newStore(t testing.TB, maxBytes int64) *Store {
	t.Helper()
	st, err := New(Config{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// answer returns a buffered chat answer whose content names the request it answers.
func answer(t testing.TB, content string) *Entry {
	t.Helper()
	body := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		content + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`
	e, err := NewEntry(KindChat, []byte(body), 1)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func contentOf(t testing.TB, e *Entry) string {
	t.Helper()
	r := parseChat(t, e.AppendJSON(nil, []byte("x"), 1))
	return r.Choices[0].Message.Content
}

func prepared(t testing.TB, alias, version, body string) *Request {
	t.Helper()
	r := new(Request)
	if err := Prepare(r, KindChat, alias, version, []byte(body)); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStoreHitMiss(t *testing.T) {
	st := newStore(t, 1<<20)
	s := st.Scope("chat", "v1")
	if st.Scope("chat", "v1") != s {
		t.Fatal("Scope is not stable")
	}
	req := prepared(t, "chat", "v1", `{"messages":[{"role":"user","content":"hi"}],"temperature":0}`)
	if _, ok := st.Get(s, req); ok {
		t.Fatal("hit in an empty store")
	}
	if !st.Set(s, req, answer(t, "A"), 0) {
		t.Fatal("Set refused")
	}
	st.Wait()
	same := prepared(t, "chat", "v1", `{ "temperature":0.0, "messages":[{"role":"user","content":"hi"}], "user":"bob", "stream":true }`)
	e, ok := st.Get(s, same)
	if !ok || contentOf(t, e) != "A" {
		t.Fatal("equivalent request missed")
	}
	if p, c := e.Tokens(); p != 3 || c != 4 {
		t.Fatalf("tokens %d %d", p, c)
	}
	other := prepared(t, "chat", "v1", `{"messages":[{"role":"user","content":"hi!"}],"temperature":0}`)
	if _, ok := st.Get(s, other); ok {
		t.Fatal("different request hit")
	}
	// The same key under another scope must not hit, even if the caller mixes them up.
	if _, ok := st.Get(st.Scope("chat", "v2"), same); ok {
		t.Fatal("hit across versions")
	}
	stats := st.Stats()
	if stats.Hits != 1 || stats.Misses != 3 || stats.Stores != 1 || stats.Entries != 1 || stats.Bytes != e.Size() {
		t.Fatalf("stats %+v", stats)
	}
	if len(stats.Aliases) != 1 || stats.Aliases[0].Alias != "chat" || stats.Aliases[0].Hits != 1 || stats.Aliases[0].Misses != 3 {
		t.Fatalf("alias stats %+v", stats.Aliases)
	}
}

func TestStoreSetRules(t *testing.T) {
	// A one-word answer accounts for about 800 bytes (Entry.Size counts the entry's real
	// memory), one of 1000 bytes for about 1800.
	st, err := New(Config{MaxBytes: 1 << 20, MaxEntryBytes: 1200})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := st.Scope("a", "v")
	req := prepared(t, "a", "v", `{"temperature":0}`)
	if st.Set(s, req, answer(t, strings.Repeat("x", 1000)), 0) {
		t.Fatal("entry over MaxEntryBytes stored")
	}
	var bad Request
	_ = Prepare(&bad, KindChat, "a", "v", []byte(`{`))
	if st.Set(s, &bad, answer(t, "x"), 0) {
		t.Fatal("stored under an unprepared request")
	}
	e := answer(t, "x")
	st.Set(s, req, e, 0)
	defer func() {
		if recover() == nil {
			t.Fatal("second Set of one entry did not panic")
		}
	}()
	st.Set(s, req, e, 0)
}

func TestStoreTTL(t *testing.T) {
	st := newStore(t, 1<<20)
	s := st.Scope("a", "v")
	req := prepared(t, "a", "v", `{"temperature":0}`)
	st.Set(s, req, answer(t, "x"), 1) // 1ns: expired by the time it is read
	st.Wait()
	if _, ok := st.Get(s, req); ok {
		t.Fatal("expired entry served")
	}
}

func TestStoreEviction(t *testing.T) {
	const max = 32 << 10
	st := newStore(t, max)
	s := st.Scope("a", "v")
	var size int64
	for i := range 300 {
		req := prepared(t, "a", "v", fmt.Sprintf(`{"temperature":0,"i":%d}`, i))
		e := answer(t, strings.Repeat("y", 500)+fmt.Sprintf("%03d", i))
		size = e.Size()
		st.Set(s, req, e, 0)
		if i%50 == 0 {
			st.Wait() // let the policy keep up, as a steady load would
		}
	}
	st.Wait()
	stats := st.Stats()
	if stats.Bytes > max || stats.Bytes < 0 {
		t.Fatalf("bytes %d over MaxBytes %d", stats.Bytes, max)
	}
	if stats.Evictions == 0 || stats.Entries >= 300 || stats.Entries < 1 {
		t.Fatalf("no eviction under pressure: %+v", stats)
	}
	if stats.Bytes != stats.Entries*size {
		t.Fatalf("bytes %d != %d entries * %d", stats.Bytes, stats.Entries, size)
	}
	// What is left still answers correctly.
	hits := 0
	for i := range 300 {
		req := prepared(t, "a", "v", fmt.Sprintf(`{"temperature":0,"i":%d}`, i))
		if e, ok := st.Get(s, req); ok {
			hits++
			if got := contentOf(t, e); got != strings.Repeat("y", 500)+fmt.Sprintf("%03d", i) {
				t.Fatalf("request %d got %q", i, got)
			}
		}
	}
	if int64(hits) != stats.Entries {
		t.Fatalf("%d hits for %d entries", hits, stats.Entries)
	}
}

// Stores counts the answers the store took. A full store's admission policy refuses an answer
// looked up less often than the entries it would evict (as the gateway does, each request is
// looked up before its answer is set): those are not stored.
func TestStoreCountsRefusedAnswers(t *testing.T) {
	const max = 32 << 10
	st := newStore(t, max)
	s := st.Scope("a", "v")
	req := func(i int) *Request { return prepared(t, "a", "v", fmt.Sprintf(`{"temperature":0,"i":%d}`, i)) }
	offer := func(from, to int) {
		for i := from; i < to; i++ {
			st.Get(s, req(i))
			st.Set(s, req(i), answer(t, strings.Repeat("y", 500)+fmt.Sprintf("%03d", i)), 0)
		}
		st.Wait() // the policy has judged every answer: what it stored is known
		stats := st.Stats()
		if stats.Stores != uint64(stats.Entries)+stats.Evictions {
			t.Fatalf("after %d answers: %d stores, but %d entries and %d evictions", to, stats.Stores, stats.Entries, stats.Evictions)
		}
		if a := stats.Aliases[0]; a.Stores != stats.Stores {
			t.Fatalf("after %d answers: the alias counts %d stores, the store %d", to, a.Stores, stats.Stores)
		}
	}
	offer(0, 20)     // they fit
	for range 1000 { // hot entries
		for i := range 20 {
			st.Get(s, req(i))
		}
	}
	for i := 20; i < 120; i += 20 {
		offer(i, i+20) // each looked up once: colder than what it would evict
	}
	// The race detector makes sync.Pool drop items, and with them the lookups ristretto's
	// buffers count: no entry is hot then, and the store refuses nothing.
	if n := st.Stats().Stores; n == 120 && !raceEnabled {
		t.Fatalf("every answer counted as stored: the test's store never refused one")
	}
	// An answer reported while the policy had yet to judge it, and refused then, does not lower
	// the next report, which /metrics would read as a counter reset; later stores catch up.
	pending := newStore(t, max)
	for _, c := range []struct{ stores, refused, want uint64 }{{10, 0, 10}, {10, 3, 10}, {12, 3, 10}, {15, 3, 12}} {
		pending.stores.Store(c.stores)
		pending.refused.Store(c.refused)
		if got := pending.Stats().Stores; got != c.want {
			t.Errorf("%d set, %d refused: Stores %d, want %d", c.stores, c.refused, got, c.want)
		}
	}
}

// A version deleted from the deploy state and deployed again under its name gets a scope of its
// own: an answer a request routed to the deleted one stores after the delete is not the new
// version's.
func TestStoreForgetVersion(t *testing.T) {
	st := newStore(t, 1<<20)
	old := st.Scope("a", "v1")
	st.Set(old, prepared(t, "a", "v1", `{"temperature":0,"seed":1}`), answer(t, "stored before"), 0)
	st.Wait()
	if n := st.ForgetVersion("a", "v1"); n != 1 {
		t.Fatalf("ForgetVersion removed %d", n)
	}
	nu := st.Scope("a", "v1")
	if nu == old {
		t.Fatal("the version deployed again has the deleted one's scope")
	}
	late := prepared(t, "a", "v1", `{"temperature":0}`)
	st.Get(old, late) // routed to the deleted version, it looks up after the delete
	st.Set(old, late, answer(t, "from the deleted version"), 0)
	st.Wait()
	if e, ok := st.Get(nu, prepared(t, "a", "v1", `{"temperature":0}`)); ok {
		t.Fatalf("the new version got the deleted one's answer %q", contentOf(t, e))
	}
	if st.ForgetVersion("a", "nope") != 0 || st.ForgetVersion("nope", "v1") != 0 {
		t.Fatal("forgot something unknown")
	}
}

func TestStoreDelete(t *testing.T) {
	st := newStore(t, 1<<20)
	scopes := []*Scope{st.Scope("a", "v1"), st.Scope("a", "v2"), st.Scope("b", "v1")}
	names := [][2]string{{"a", "v1"}, {"a", "v2"}, {"b", "v1"}}
	fill := func() {
		for i, s := range scopes {
			st.Set(s, prepared(t, names[i][0], names[i][1], `{"temperature":0}`), answer(t, "x"), 0)
		}
		st.Wait()
	}
	present := func() (got [3]bool) {
		for i, s := range scopes {
			_, got[i] = st.Get(s, prepared(t, names[i][0], names[i][1], `{"temperature":0}`))
		}
		return got
	}
	fill()
	if got := present(); got != [3]bool{true, true, true} {
		t.Fatalf("after fill %v", got)
	}
	if n := st.DeleteVersion("a", "v1"); n != 1 {
		t.Fatalf("DeleteVersion removed %d", n)
	}
	if got := present(); got != [3]bool{false, true, true} {
		t.Fatalf("after DeleteVersion %v", got)
	}
	fill()
	st.DeleteAlias("a")
	if got := present(); got != [3]bool{false, false, true} {
		t.Fatalf("after DeleteAlias %v", got)
	}
	fill()
	st.DeleteAll()
	if got := present(); got != [3]bool{false, false, false} {
		t.Fatalf("after DeleteAll %v", got)
	}
	if s := st.Stats(); s.Bytes != 0 || s.Entries != 0 {
		t.Fatalf("memory not returned: %+v", s)
	}
	if st.DeleteAlias("nope") != 0 || st.DeleteVersion("a", "nope") != 0 {
		t.Fatal("deleted something unknown")
	}

	// An answer computed before an invalidation is not stored as fresh.
	req := prepared(t, "b", "v1", `{"temperature":0,"late":true}`)
	st.Get(scopes[2], req) // miss: records the generation
	st.DeleteAlias("b")
	st.Set(scopes[2], req, answer(t, "old"), 0)
	st.Wait()
	if _, ok := st.Get(scopes[2], prepared(t, "b", "v1", `{"temperature":0,"late":true}`)); ok {
		t.Fatal("answer from before DeleteAlias served")
	}
}

// TestStoreNeverWrongAnswer is the cache's safety property: whatever is stored and however
// keys collide in the underlying map, a hit returns the answer stored for that same request.
// Every request maps to one ristretto key here, so each lookup meets other requests' entries.
func TestStoreNeverWrongAnswer(t *testing.T) {
	for _, collide := range []bool{false, true} {
		st := newStore(t, 4<<20)
		if collide {
			st.hash = func(Key) uint64 { return 42 }
		}
		rng := rand.New(rand.NewPCG(1, 2))
		words := []string{"a", "b", "hello", "é", "1", "1.0", "true", "null", "\\u00e9", "x y"}
		bodies := map[string]string{} // canonical form -> content stored for it
		var reqs []string
		for range 400 {
			body := fmt.Sprintf(`{"messages":[{"role":"user","content":"%s %s"}],"temperature":%s,"top_k":%d}`,
				words[rng.IntN(len(words))], words[rng.IntN(len(words))], []string{"0", "0.0", "0e1", "0.5"}[rng.IntN(4)], rng.IntN(3))
			alias := []string{"a", "b"}[rng.IntN(2)]
			version := []string{"v1", "v2"}[rng.IntN(2)]
			reqs = append(reqs, alias+"|"+version+"|"+body)
			s := st.Scope(alias, version)
			req := prepared(t, alias, version, body)
			id := alias + "|" + version + "|" + canon(t, body)
			if rng.IntN(2) == 0 {
				if want, stored := bodies[id]; stored {
					if e, ok := st.Get(s, req); ok && contentOf(t, e) != want {
						t.Fatalf("wrong answer: got %q want %q", contentOf(t, e), want)
					}
				}
				continue
			}
			content := fmt.Sprintf("answer %d", len(bodies))
			if st.Set(s, req, answer(t, content), 0) {
				bodies[id] = content
			}
			st.Wait()
		}
		for _, r := range reqs {
			parts := strings.SplitN(r, "|", 3)
			s := st.Scope(parts[0], parts[1])
			e, ok := st.Get(s, prepared(t, parts[0], parts[1], parts[2]))
			if !ok {
				continue
			}
			want, stored := bodies[parts[0]+"|"+parts[1]+"|"+canon(t, parts[2])]
			if !stored || contentOf(t, e) != want {
				t.Fatalf("collide=%v: %s got %q, want %q (stored %v)", collide, r, contentOf(t, e), want, stored)
			}
		}
	}
}

// liveHeap returns the bytes of live heap objects.
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // a second cycle also empties sync.Pool victim caches
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestStoreMemory checks that MaxBytes bounds the memory a full store really holds: Entry.Size
// must count what an entry costs (the entry, its document, ristretto's bookkeeping per item),
// or a store configured for 16 MiB holds much more. It fills a store with realistic buffered
// answers, three times over, under the gateway's default TTL, and compares the heap it holds
// with MaxBytes and with the sum of the entries' sizes.
func TestStoreMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation")
	}
	tests := []struct {
		name   string
		tokens func(*rand.Rand) int
	}{
		// The gateway's benchmark answer: small entries, where bookkeeping weighs most.
		{"16 tokens", func(*rand.Rand) int { return 16 }},
		// 16 to about 1000 tokens, most of them short: a log-uniform length.
		{"mixed", func(rng *rand.Rand) int { return int(16 * float64(uint(1)<<rng.IntN(6)) * (1 + rng.Float64())) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const maxBytes = 16 << 20
			before := liveHeap()
			st, err := New(Config{MaxBytes: maxBytes})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			empty := liveHeap() - before
			s := st.Scope("chat", "v1")
			rng := rand.New(rand.NewPCG(3, 4))
			words := strings.Fields(strings.Repeat("the cache answers a repeated request from memory without the GPU ", 200))
			var req Request
			var body []byte
			var stored int64
			for i := 0; stored < 3*maxBytes; i++ {
				body = append(body[:0], `{"id":"chatcmpl-`...)
				body = fmt.Appendf(body, "%032x", i)
				body = append(body, `","object":"chat.completion","created":1760000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"message":{"role":"assistant","content":"`...)
				body = append(body, strings.Join(words[:min(tt.tokens(rng), len(words))], " ")...)
				body = append(body, `","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":42,"total_tokens":52,"completion_tokens":10,"prompt_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`...)
				e, err := NewEntry(KindChat, body, 1)
				if err != nil {
					t.Fatal(err)
				}
				if err := Prepare(&req, KindChat, "chat", "v1", fmt.Appendf(nil, `{"messages":[{"role":"user","content":"question %d"}],"temperature":0}`, i)); err != nil {
					t.Fatal(err)
				}
				if st.Set(s, &req, e, 10*time.Minute) {
					stored += e.Size()
				}
				if i%64 == 0 {
					st.Wait() // let the policy keep up, as a steady load would
				}
			}
			st.Wait()
			heap := liveHeap() - before
			stats := st.Stats()
			runtime.KeepAlive(st)
			t.Logf("%d entries, Size sum %d (%.2f of MaxBytes); heap %d (%d of it an empty store's): %.3fx the Size sum, %.3fx MaxBytes; %.0f bytes per entry unaccounted beyond the empty store",
				stats.Entries, stats.Bytes, float64(stats.Bytes)/maxBytes, heap, empty, float64(heap)/float64(stats.Bytes), float64(heap)/maxBytes,
				float64(heap-empty-stats.Bytes)/float64(stats.Entries))
			if stats.Bytes > maxBytes || stats.Bytes < maxBytes/2 {
				t.Errorf("store holds %d bytes of entries, want about MaxBytes %d", stats.Bytes, maxBytes)
			}
			// Memory, not timing: the bounds need no slack for a noisy machine, only for the
			// heap's own granularity (ristretto's maps grow by doubling) and an empty store's
			// counters (about 4%). Entry.Size used to miss about 20% for small entries.
			if heap > maxBytes*5/4 {
				t.Errorf("store holds %d bytes of heap, over 1.25x MaxBytes %d", heap, maxBytes)
			}
			if float64(heap) > 1.12*float64(stats.Bytes) {
				t.Errorf("store holds %d bytes of heap for entries of Size %d: Entry.Size undercounts", heap, stats.Bytes)
			}
		})
	}
}

// Admit takes every answer while the store has room; once it is nearly full, only answers to
// requests looked up before, so a stream of unique prompts neither churns the store nor pushes
// out the entries that get hits.
func TestStoreAdmit(t *testing.T) {
	const max = 32 << 10
	st := newStore(t, max)
	s := st.Scope("a", "v")
	req := func(i int) *Request { return prepared(t, "a", "v", fmt.Sprintf(`{"temperature":0,"i":%d}`, i)) }
	i := 0
	for ; st.Stats().Bytes < max-max/8; i++ {
		r := req(i)
		if _, ok := st.Get(s, r); ok {
			t.Fatalf("request %d hit before it was stored", i)
		}
		if !st.Admit(r) {
			t.Fatalf("request %d not admitted with %d of %d bytes held", i, st.Stats().Bytes, int64(max))
		}
		st.Set(s, r, answer(t, strings.Repeat("y", 500)), 0)
		st.Wait()
	}
	full := st.Stats()
	for k := range 20 {
		r := req(i + k)
		st.Get(s, r)
		if st.Admit(r) {
			t.Fatalf("new request %d admitted into a full store", i+k)
		}
	}
	r := req(i) // the first of them, asked again
	if _, ok := st.Get(s, r); ok {
		t.Fatal("a request that was not admitted hit")
	}
	if !st.Admit(r) {
		t.Fatal("a request asked for the second time was not admitted")
	}
	if got := st.Stats(); got.NotAdmitted != 20 || got.Stores != full.Stores {
		t.Fatalf("not admitted %d, stores %d (were %d): want 20 and no store", got.NotAdmitted, got.Stores, full.Stores)
	}
}

// The doorkeeper remembers as many keys as it was sized for (the entries the store holds), then
// forgets: after that many new keys it starts over, so a key seen once long ago is new again,
// and its false positives stay few.
func TestDoorkeeper(t *testing.T) {
	var d doorkeeper
	const keys = 1000
	d.init(keys)
	n := int(d.limit)
	if d.seen(Key{1, 2}) || !d.seen(Key{1, 2}) {
		t.Fatal("a key is seen only after it was added")
	}
	key := func(i int) Key { return Key{uint64(i)*0x9e3779b97f4a7c15 + 7, uint64(i)*0xbf58476d1ce4e5b9 + 11} }
	falsePositives := 0
	for i := range keys - 2 {
		if d.seen(key(i)) {
			falsePositives++
		}
	}
	if falsePositives > keys/20 {
		t.Errorf("%d of %d new keys read as seen", falsePositives, keys-2)
	}
	if !d.seen(Key{1, 2}) || !d.seen(key(0)) {
		t.Fatalf("a key was forgotten within the %d keys the doorkeeper was sized for", keys)
	}
	for i := keys; d.adds.Load() != 0; i++ { // on to the clear
		if i > 4*n {
			t.Fatalf("no clear after %d keys (limit %d)", i, n)
		}
		d.seen(key(i))
	}
	if d.seen(Key{1, 2}) {
		t.Error("a key from before the clear is still seen")
	}
}

// A lookup that missed and was then answered by its flight's leader counts as coalesced, not
// as a miss, and as answered without a backend call in the hit ratio.
func TestStoreCountsCoalesced(t *testing.T) {
	st := newStore(t, 1<<20)
	s := st.Scope("a", "v")
	for range 2 {
		st.Get(s, prepared(t, "a", "v", `{"temperature":0}`))
	}
	st.Coalesced(s)
	got := st.Stats()
	if got.Misses != 1 || got.Coalesced != 1 || got.HitRatio() != 0.5 {
		t.Errorf("store: %d misses, %d coalesced, hit ratio %v; want 1, 1, 0.5", got.Misses, got.Coalesced, got.HitRatio())
	}
	if a := got.Aliases[0]; a.Misses != 1 || a.Coalesced != 1 || a.HitRatio() != 0.5 {
		t.Errorf("alias: %d misses, %d coalesced, hit ratio %v; want 1, 1, 0.5", a.Misses, a.Coalesced, a.HitRatio())
	}
}
