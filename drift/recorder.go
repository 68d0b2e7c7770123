package drift

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Options configure a Recorder. The zero value is valid: 15 minutes in
// 1-minute slices, no rolling reference, wall clock.
type Options struct {
	Window  time.Duration    // live window length; default 15m
	Slice   time.Duration    // slice length, the window's time resolution; default 1m
	Rolling bool             // keep the previous window as a rolling reference
	Now     func() time.Time // clock, injectable for tests; default time.Now
}

// Recorder keeps the live window (and optionally the previous one) of one
// (alias, version) in a ring of time slices of atomic counters. Observe is
// safe for concurrent use; the read methods may run concurrently with it
// and see a slightly inconsistent (never torn) view.
type Recorder struct {
	now   func() time.Time
	slice int64 // nanoseconds
	n     int64 // slices per window
	slots []slot
	mu    sync.Mutex // serialises slot rotation only
	ref   atomic.Pointer[Snapshot]
	// refSlice is what a reference frozen here took of the slice it was frozen in, which goes
	// on filling: Report takes it out of the current window, so that the two windows share no
	// sample. Nil for a reference set from outside (SetReference).
	refSlice atomic.Pointer[frozenSlice]
	rolling  bool
	dropped  atomic.Uint64
}

// slot is one time slice. Counters are 32-bit: a slice of a minute would
// need 70 M requests per second to wrap one.
type slot struct {
	epoch atomic.Int64 // slice number (UnixNano / slice); emptyEpoch or resetting otherwise
	num   [NumNumeric][NumBuckets]atomic.Uint32
	cat   [catShards]catBlock
}

// catBlock is one shard of the categorical counters, padded so shards do not
// share cache lines. Every request bumps about ten of these counters; with
// one copy per P (see shardOf) cores stop bouncing the same lines.
type catBlock struct {
	c [numCatCounters]atomic.Uint32
	_ [64 - (numCatCounters*4)%64]byte
}

// catShards bounds the categorical shards; more Ps than this share them.
const catShards = 16

// shardIDs backs shardPool: sync.Pool keeps one item per P, which is the only
// per-P hint Go exposes. Losing items at GC only reassigns shards.
var (
	shardIDs  [catShards]int
	nextShard atomic.Uint32
	shardPool = sync.Pool{New: func() any {
		return &shardIDs[nextShard.Add(1)%catShards]
	}}
)

func init() {
	for i := range shardIDs {
		shardIDs[i] = i
	}
}

const (
	emptyEpoch = -1 << 63
	resetting  = -1<<63 + 1
)

// NewRecorder returns a Recorder with o's settings, defaults filled in.
// Window is rounded up to a whole number of slices.
func NewRecorder(o Options) *Recorder {
	if o.Slice <= 0 {
		o.Slice = time.Minute
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	n := int64((o.Window + o.Slice - 1) / o.Slice)
	ring := n
	if o.Rolling {
		ring = 2 * n
	}
	r := &Recorder{now: o.Now, slice: int64(o.Slice), n: n, rolling: o.Rolling,
		slots: make([]slot, ring)}
	for i := range r.slots {
		r.slots[i].epoch.Store(emptyEpoch)
	}
	return r
}

// Observe records s in the current slice. It never blocks on readers, never
// allocates, and drops (and counts) a sample whose time is older than the
// ring. s is not retained.
func (r *Recorder) Observe(s *Sample) {
	at := s.At
	if at.IsZero() {
		at = r.now()
	}
	e := at.UnixNano() / r.slice
	sl := &r.slots[uint64(e)%uint64(len(r.slots))]
	if sl.epoch.Load() != e && !r.rotate(sl, e) {
		r.dropped.Add(1)
		return
	}
	addNum(&sl.num[FeaturePromptTokens], s.PromptTokens)
	addNum(&sl.num[FeatureCompletionTokens], s.CompletionTokens)
	addNum(&sl.num[FeaturePromptBytes], s.PromptBytes)
	addNum(&sl.num[FeatureLatency], micros(s.Latency))
	addNum(&sl.num[FeatureTTFT], micros(s.TTFT))
	addNum(&sl.num[FeatureInterToken], micros(s.InterToken))
	addNum(&sl.num[FeatureOverhead], micros(s.Overhead))
	id := shardPool.Get().(*int)
	c := &sl.cat[*id].c
	shardPool.Put(id)
	c[catIndex(FeatureFinishReason, uint8(s.FinishReason))].Add(1)
	c[catIndex(FeatureStatus, uint8(s.Status))].Add(1)
	c[catIndex(FeatureCache, uint8(s.Cache))].Add(1)
	addBits(c, FeatureEntities, s.Entities)
	addBits(c, FeatureSafety, s.Safety)
	c[catIndex(FeatureRefusal, b2u(s.Refusal))].Add(1)
	c[catIndex(FeatureScript, uint8(s.Script))].Add(1)
	c[catIndex(FeatureTools, b2u(s.Tools))].Add(1)
	c[catIndex(FeatureStream, b2u(s.Stream))].Add(1)
	if s.NotForwarded {
		c[catNotForwarded].Add(1)
	}
}

func micros(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return int64(d / time.Microsecond)
}

func addNum(h *[NumBuckets]atomic.Uint32, v int64) {
	if v >= 0 {
		h[bucketOf(v)].Add(1)
	}
}

// catIndex maps a categorical value to its counter; out-of-range values go to
// the feature's last category ("other"), so a newer gateway enum cannot
// index out of bounds.
func catIndex(f Feature, v uint8) int {
	i := int(f) - NumNumeric
	n := catOffset[i+1] - catOffset[i]
	if int(v) >= n {
		v = uint8(n - 1)
	}
	return catOffset[i] + int(v)
}

// addBits counts "none" or one per set bit: a multi-label feature.
func addBits(c *[numCatCounters]atomic.Uint32, f Feature, b uint16) {
	off := catOffset[int(f)-NumNumeric]
	if b == 0 {
		c[off].Add(1)
		return
	}
	for ; b != 0; b &= b - 1 {
		c[off+1+bits.TrailingZeros16(b)].Add(1)
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// rotate claims sl for slice e, zeroing what it held. It returns false when
// sl already holds a newer slice (the sample is too old for the ring).
func (r *Recorder) rotate(sl *slot, e int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := sl.epoch.Load()
	if cur == e {
		return true
	}
	if cur > e && cur != resetting {
		return false
	}
	// Readers skip a slot while it reads resetting; writers of slice e only
	// write after the final Store, so no count of e is lost.
	sl.epoch.Store(resetting)
	for f := range sl.num {
		for i := range sl.num[f] {
			sl.num[f][i].Store(0)
		}
	}
	for k := range sl.cat {
		for i := range sl.cat[k].c {
			sl.cat[k].c[i].Store(0)
		}
	}
	sl.epoch.Store(e)
	return true
}

// Dropped returns how many samples were too old for the ring.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Window returns the live window's nominal length.
func (r *Recorder) Window() time.Duration { return time.Duration(r.n * r.slice) }

// Live fills dst with the live window: the current slice and the n-1 before.
func (r *Recorder) Live(dst *Snapshot) {
	now := r.now()
	e := now.UnixNano() / r.slice
	r.collect(dst, e-r.n+1, e, now)
}

// Rolling fills dst with the window before the live one and reports whether
// the Recorder keeps it (Options.Rolling).
func (r *Recorder) Rolling(dst *Snapshot) bool {
	if !r.rolling {
		return false
	}
	e := r.now().UnixNano() / r.slice
	r.collect(dst, e-2*r.n+1, e-r.n, time.Unix(0, (e-r.n+1)*r.slice))
	return true
}

// collect sums the slots of slices from..to into dst.
func (r *Recorder) collect(dst *Snapshot, from, to int64, end time.Time) {
	dst.Reset()
	first := to + 1
	for i := range r.slots {
		sl := &r.slots[i]
		e := sl.epoch.Load()
		if e < from || e > to {
			continue
		}
		first = min(first, e)
		for f := range sl.num {
			h := &dst.Num[f]
			for b := range sl.num[f] {
				if c := sl.num[f][b].Load(); c != 0 {
					h[b] += uint64(c)
				}
			}
		}
		for k := range sl.cat {
			for i := range sl.cat[k].c {
				dst.Cat[i] += uint64(sl.cat[k].c[i].Load())
			}
		}
	}
	if first > to {
		first = from
	}
	dst.Start = time.Unix(0, first*r.slice).UTC()
	dst.End = end.UTC()
}

// FreezeReference makes the current live window the frozen reference (on
// demand, or when the version is promoted) and returns it. The returned
// Snapshot must not be modified.
func (r *Recorder) FreezeReference() *Snapshot {
	now := r.now()
	e := now.UnixNano() / r.slice
	s := new(Snapshot)
	r.collect(s, e-r.n+1, e, now)
	part := &frozenSlice{epoch: e}
	r.collect(&part.snap, e, e, now)
	r.refSlice.Store(part)
	r.ref.Store(s)
	return s
}

// frozenSlice is the part of one slice a frozen reference holds.
type frozenSlice struct {
	epoch int64
	snap  Snapshot
}

// SetReference installs s (for example merged from all replicas, or loaded
// from the deploy store) as the frozen reference; nil clears it. s must not
// be modified afterwards.
func (r *Recorder) SetReference(s *Snapshot) {
	r.refSlice.Store(nil)
	r.ref.Store(s)
}

// Reference fills dst with the frozen reference if there is one, else the
// rolling one; it returns false when there is neither.
func (r *Recorder) Reference(dst *Snapshot) bool {
	if s := r.ref.Load(); s != nil {
		*dst = *s
		return true
	}
	return r.Rolling(dst)
}

// Frozen returns the frozen reference or nil. It must not be modified.
func (r *Recorder) Frozen() *Snapshot { return r.ref.Load() }

// Report evaluates the live window against the reference under p (nil means
// DefaultPolicy). Run it off the request path: it reads every counter.
// Without a reference every feature's verdict is VerdictInsufficient.
//
// Against a frozen reference the current window holds only the slices that began after the
// reference ended: samples in both would pull the two towards each other, and right after a
// freeze every verdict would read "stable".
func (r *Recorder) Report(p *Policy) Report {
	var ref, cur Snapshot
	if frozen := r.ref.Load(); frozen != nil {
		ref = *frozen
		part := r.refSlice.Load()
		if part == nil {
			r.liveAfter(&cur, frozen.End.UnixNano()/r.slice) // whole slices after it only
			return Evaluate(&ref, &cur, p)
		}
		r.liveAfter(&cur, part.epoch)
		// The freeze's own slice, less what the reference holds of it, while the slice is in
		// the live window: its slot keeps the samples until it is reused, after the window
		// has moved past it.
		now := r.now()
		if e := now.UnixNano() / r.slice; part.epoch >= e-r.n+1 {
			var rest Snapshot
			r.collect(&rest, part.epoch, part.epoch, now)
			if rest.Count() > 0 {
				rest.subtract(&part.snap)
				cur.Merge(&rest)
			}
		}
		return Evaluate(&ref, &cur, p)
	}
	r.Live(&cur)
	if !r.Rolling(&ref) {
		ref.Start, ref.End = cur.Start, cur.Start
	}
	return Evaluate(&ref, &cur, p)
}

// liveAfter fills dst with the live window's slices after slice epoch.
func (r *Recorder) liveAfter(dst *Snapshot, epoch int64) {
	now := r.now()
	e := now.UnixNano() / r.slice
	r.collect(dst, max(e-r.n+1, epoch+1), e, now)
}

// MemoryBytes returns the memory held by r: the slot ring, which is fixed at
// construction, plus the frozen reference (and its slice) if any.
func (r *Recorder) MemoryBytes() int {
	n := int(unsafe.Sizeof(*r)) + len(r.slots)*int(unsafe.Sizeof(slot{}))
	if r.ref.Load() != nil {
		n += int(unsafe.Sizeof(Snapshot{}))
	}
	if r.refSlice.Load() != nil {
		n += int(unsafe.Sizeof(frozenSlice{}))
	}
	return n
}
