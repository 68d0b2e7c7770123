package drift

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is an injectable clock; tests move it instead of sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func sampleWith(promptTokens int64, script Script) *Sample {
	s := new(Sample)
	s.Reset()
	s.PromptTokens = promptTokens
	s.Latency = 1500 * time.Millisecond
	s.Script = script
	return s
}

func TestLayoutConsistent(t *testing.T) {
	if catOffset[NumCategorical] != numFeatureCounters {
		t.Fatalf("numFeatureCounters %d, labels need %d", numFeatureCounters, catOffset[NumCategorical])
	}
	if len(featureNames) != NumFeatures || NumNumeric+NumCategorical != NumFeatures {
		t.Fatal("feature tables out of sync")
	}
	for f := range Feature(NumFeatures) {
		if g, ok := FeatureByName(f.String()); !ok || g != f {
			t.Errorf("FeatureByName(%q) = %v, %v", f, g, ok)
		}
	}
}

func TestRecorderSlidingWindow(t *testing.T) {
	clk := newFakeClock()
	r := NewRecorder(Options{Window: 3 * time.Minute, Slice: time.Minute, Rolling: true, Now: clk.Now})
	var live, prev Snapshot
	// One sample per minute for 7 minutes, prompt tokens = minute index.
	for m := range int64(7) {
		r.Observe(sampleWith(m, ScriptLatin))
		clk.Advance(time.Minute)
	}
	clk.Advance(-time.Minute) // stay in the last slice written
	r.Live(&live)
	if got := live.Count(); got != 3 {
		t.Fatalf("live count %d, want 3", got)
	}
	for m := int64(4); m < 7; m++ {
		if live.Num[FeaturePromptTokens][m] != 1 {
			t.Errorf("live misses minute %d", m)
		}
	}
	if !r.Rolling(&prev) || prev.Count() != 3 || prev.Num[FeaturePromptTokens][1] != 1 {
		t.Errorf("rolling reference: count %d, want minutes 1..3", prev.Count())
	}
	if !prev.End.Equal(live.Start) {
		t.Errorf("rolling ends %v, live starts %v", prev.End, live.Start)
	}
	// A sample older than the ring is dropped and counted, not misfiled.
	old := sampleWith(1, ScriptLatin)
	old.At = clk.Now().Add(-10 * time.Minute)
	r.Observe(old)
	if r.Dropped() != 1 {
		t.Errorf("dropped %d, want 1", r.Dropped())
	}
	// The window empties once traffic stops for a whole window.
	clk.Advance(3 * time.Minute)
	r.Live(&live)
	if live.Count() != 0 {
		t.Errorf("stale live count %d", live.Count())
	}
}

func TestFreezeReference(t *testing.T) {
	clk := newFakeClock()
	r := NewRecorder(Options{Now: clk.Now})
	if rep := r.Report(nil); rep.Decided != 0 {
		t.Fatalf("report without reference decided %d features", rep.Decided)
	}
	for i := range 500 {
		r.Observe(sampleWith(int64(100+i%50), ScriptLatin))
	}
	ref := r.FreezeReference()
	if ref.Count() != 500 || r.Frozen() != ref {
		t.Fatalf("frozen count %d", ref.Count())
	}
	clk.Advance(30 * time.Minute)
	for i := range 500 {
		r.Observe(sampleWith(int64(150+i%75), ScriptLatin))
	}
	rep := r.Report(nil)
	if rep.Reference.N != 500 || rep.Current.N != 500 {
		t.Fatalf("windows %d/%d", rep.Reference.N, rep.Current.N)
	}
	if v := rep.Features[FeaturePromptTokens].Verdict; v != VerdictDrift {
		t.Errorf("prompt tokens verdict %s, want drift", v)
	}
	if v := rep.Features[FeatureScript].Verdict; v != VerdictStable {
		t.Errorf("script verdict %s, want stable", v)
	}
	r.SetReference(nil)
	var s Snapshot
	if r.Reference(&s) {
		t.Error("reference after clearing without rolling")
	}
}

// Replicas merge exactly: two recorders each seeing half the traffic, merged,
// equal one recorder seeing all of it, bucket for bucket.
func TestMergeAcrossReplicas(t *testing.T) {
	clk := newFakeClock()
	all := NewRecorder(Options{Now: clk.Now})
	a, b := NewRecorder(Options{Now: clk.Now}), NewRecorder(Options{Now: clk.Now})
	for i, s := range benchSamples(3000) {
		s.At = clk.Now().Add(time.Duration(i) * 200 * time.Millisecond) // spans 10 slices
		all.Observe(&s)
		if i%3 == 0 {
			a.Observe(&s)
		} else {
			b.Observe(&s)
		}
	}
	clk.Advance(10 * time.Minute)
	var want, got, sb Snapshot
	all.Live(&want)
	a.Live(&got)
	b.Live(&sb)
	got.Merge(&sb)
	if got.Num != want.Num || got.Cat != want.Cat {
		t.Fatal("merged replicas differ from a single recorder")
	}
	if want.Count() != 3000 {
		t.Fatalf("count %d", want.Count())
	}
}

func TestConcurrentObserve(t *testing.T) {
	clk := newFakeClock()
	r := NewRecorder(Options{Now: clk.Now})
	samples := benchSamples(256)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // a concurrent reader, as the evaluation loop
		var s Snapshot
		for {
			select {
			case <-stop:
				return
			default:
				r.Live(&s)
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r.Observe(&samples[(w*each+i)%len(samples)])
			}
		}()
	}
	wg.Wait()
	close(stop)
	var s Snapshot
	r.Live(&s)
	if s.Count() != workers*each {
		t.Fatalf("count %d, want %d", s.Count(), workers*each)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	r := NewRecorder(Options{})
	samples := benchSamples(64)
	i := 0
	if n := testing.AllocsPerRun(1000, func() { r.Observe(&samples[i%64]); i++ }); n != 0 {
		t.Fatalf("Observe allocates %v times", n)
	}
}

func TestMemoryBounded(t *testing.T) {
	clk := newFakeClock()
	r := NewRecorder(Options{Now: clk.Now})
	before := r.MemoryBytes()
	for _, s := range benchSamples(5000) {
		r.Observe(&s)
		clk.Advance(time.Second)
	}
	if r.MemoryBytes() != before {
		t.Errorf("memory grew from %d to %d", before, r.MemoryBytes())
	}
	r.FreezeReference()
	t.Logf("memory per version: %d KiB (15 x 1m), %d KiB with a frozen reference", before>>10, r.MemoryBytes()>>10)
	if r.MemoryBytes() > 1<<20 {
		t.Errorf("memory %d over 1 MiB", r.MemoryBytes())
	}
}

func TestSummary(t *testing.T) {
	var s Snapshot
	s.Start = time.Unix(0, 0)
	s.End = s.Start.Add(10 * time.Second)
	for i := range 100 {
		x := sampleWith(10, ScriptLatin)
		x.InterToken = 20 * time.Millisecond
		x.TTFT = 100 * time.Millisecond
		x.Refusal = i >= 10 && i < 15 // of the 90 answers given
		if i < 10 {
			x.Status = StatusUpstreamError
		}
		x.Cache = CacheHit
		if i%4 == 0 {
			x.Cache = CacheMiss
		}
		r := NewRecorder(Options{})
		r.Observe(x)
		var one Snapshot
		r.Live(&one)
		one.Start, one.End = s.Start, s.End
		s.Merge(&one)
	}
	got := s.Summary()
	// The error rate is of the backend's answers, the 25 that missed the cache, as a
	// rollout's analysis reads it: 10 / 25. The refusal rate is of the 90 answers given.
	if got.Requests != 100 || got.RequestRate != 10 || !near(got.ErrorRate, 0.4) || !near(got.RefusalRate, 5.0/90) ||
		!near(got.CacheHitRatio, 0.75) {
		t.Errorf("summary %+v", got)
	}
	if rel := got.TokensPerSecond/50 - 1; rel > RelativeError || rel < -RelativeError {
		t.Errorf("tokens/s %v, want 50", got.TokensPerSecond)
	}
	if rel := got.LatencyP99/1.5 - 1; rel > RelativeError || rel < -RelativeError {
		t.Errorf("p99 %v, want 1.5", got.LatencyP99)
	}
}

// The error rate counts what the version is to blame for: a client that went away, a client's
// bad request or a guard block is not a failure of the model version.
func TestFailures(t *testing.T) {
	r := NewRecorder(Options{})
	for _, st := range []Status{StatusOK, StatusOK, StatusCanceled, StatusCanceled, StatusClientError, StatusBlocked,
		StatusUpstreamError, StatusTimeout, StatusUnavailable, StatusRateLimited} {
		x := sampleWith(10, ScriptLatin)
		x.Status = st
		r.Observe(x)
	}
	var s Snapshot
	r.Live(&s)
	if got := s.Failures(); got != 4 {
		t.Fatalf("Failures() = %d, want 4 (upstream error, timeout, unavailable, rate limited)", got)
	}
	if got := s.Summary().ErrorRate; !near(got, 0.4) {
		t.Fatalf("error rate %v, want 0.4", got)
	}
}

// After a freeze, the current window holds only what came after it, also within the slice the
// freeze happened in: the two windows share no sample.
func TestFreezeLeavesCurrentWindowDisjoint(t *testing.T) {
	clk := newFakeClock()
	r := NewRecorder(Options{Now: clk.Now})
	for i := range 300 {
		r.Observe(sampleWith(int64(100+i%50), ScriptLatin))
	}
	r.FreezeReference()
	if rep := r.Report(nil); rep.Current.N != 0 {
		t.Fatalf("right after the freeze the current window holds %d samples, want 0", rep.Current.N)
	}
	for i := range 200 { // same slice
		r.Observe(sampleWith(int64(100+i%50), ScriptLatin))
	}
	clk.Advance(90 * time.Second)
	for i := range 100 { // a later slice
		r.Observe(sampleWith(int64(100+i%50), ScriptLatin))
	}
	if rep := r.Report(nil); rep.Reference.N != 300 || rep.Current.N != 300 {
		t.Fatalf("windows %d/%d, want 300 reference and 300 current", rep.Reference.N, rep.Current.N)
	}
	// Once the live window has moved past the freeze's slice, its samples are no longer
	// current, though its slot still holds them until it is reused.
	clk.Advance(20 * time.Minute)
	for i := range 120 {
		r.Observe(sampleWith(int64(100+i%50), ScriptLatin))
	}
	if rep := r.Report(nil); rep.Reference.N != 300 || rep.Current.N != 120 {
		t.Fatalf("20 minutes on, windows %d/%d, want 300 reference and the last 120 current", rep.Reference.N, rep.Current.N)
	}
	// A reference from outside (another replica, the store) has no slice to take out: the
	// current window starts with the next whole slice.
	var ext Snapshot
	r.Live(&ext)
	r.SetReference(&ext)
	if rep := r.Report(nil); rep.Current.N != 0 {
		t.Fatalf("current window %d after an outside reference, want 0", rep.Current.N)
	}
}

// The error rate is of the requests a backend of the version was asked to answer: prompts the
// guard blocked and bad requests the gateway refused before asking one (NotForwarded) are not
// in it, or a wave of them diluted the version's failures; a failure with no backend asked (none
// in service) is. The flag survives both encodings.
func TestErrorRateLeavesNotForwardedOut(t *testing.T) {
	r := NewRecorder(Options{})
	for i := range 40 {
		x := sampleWith(10, ScriptLatin)
		switch {
		case i < 10: // answered
		case i < 15:
			x.Status = StatusUpstreamError
		case i < 20:
			x.Status = StatusUnavailable // no backend in service: asked none, still a failure
		case i < 30:
			x.Status, x.NotForwarded = StatusBlocked, true
		default:
			x.Status, x.NotForwarded = StatusClientError, true
		}
		r.Observe(x)
	}
	var s Snapshot
	r.Live(&s)
	if got := s.Answered(); got != 20 {
		t.Fatalf("Answered() = %d, want 20 (10 answers, 10 failures)", got)
	}
	if got := s.Summary().ErrorRate; !near(got, 0.5) {
		t.Errorf("error rate %v, want 0.5", got)
	}
	var bin, js Snapshot
	b, _ := s.MarshalBinary()
	j, _ := s.MarshalJSON()
	if err := bin.UnmarshalBinary(b); err != nil || bin.Answered() != 20 {
		t.Errorf("after the binary encoding: answered %d (%v), want 20", bin.Answered(), err)
	}
	if err := js.UnmarshalJSON(j); err != nil || js.Answered() != 20 {
		t.Errorf("after the JSON encoding: answered %d (%v), want 20", js.Answered(), err)
	}
}
