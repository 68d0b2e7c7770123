package router

import (
	"errors"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// ejectAll ejects the backends at idx (the threshold of hc must be 1).
func ejectAll(v *Version, idx []int) {
	for _, i := range idx {
		v.Backends[i].ReportFailure()
	}
}

func backendsAt(v *Version, idx []int) []*Backend {
	var out []*Backend
	for _, i := range idx {
		out = append(out, v.Backends[i])
	}
	return out
}

func TestPickSingleBackend(t *testing.T) {
	hc := testHealth
	hc.FailureThreshold = 1
	tests := []struct {
		name    string
		tried   bool
		ejected bool
		wantErr error
	}{
		{name: "available"},
		{name: "already tried", tried: true, wantErr: ErrNoBackend},
		{name: "ejected", ejected: true, wantErr: ErrNoBackend},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testPoolVersion(t, newTestPool(newFakeClock()), hc, 1)
			only := v.Backends[0]
			var tried []*Backend
			if tt.tried {
				tried = append(tried, only)
			}
			if tt.ejected {
				only.ReportFailure()
			}
			got, err := v.Pick(tried)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Pick error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && got != only {
				t.Errorf("Pick = %v, want the only backend", got)
			}
		})
	}
}

// Retries go to another backend, and ejected or drained ones get no traffic, however the dice fall.
func TestPickSkipsTriedEjectedAndDrained(t *testing.T) {
	hc := testHealth
	hc.FailureThreshold = 1
	tests := []struct {
		name    string
		weights []int
		tried   []int
		ejected []int
		want    []int // the set of backends picks must spread over; nil means ErrNoBackend
	}{
		{name: "all in", weights: []int{1, 1, 1, 1}, want: []int{0, 1, 2, 3}},
		{name: "one tried", weights: []int{1, 1, 1, 1}, tried: []int{0}, want: []int{1, 2, 3}},
		{name: "heaviest tried", weights: []int{100, 1, 1, 1}, tried: []int{0}, want: []int{1, 2, 3}},
		{name: "one ejected", weights: []int{1, 1, 1, 1}, ejected: []int{2}, want: []int{0, 1, 3}},
		{name: "heaviest ejected", weights: []int{1, 1, 1, 100}, ejected: []int{3}, want: []int{0, 1, 2}},
		{name: "tried and ejected leave one", weights: []int{1, 1, 1, 1}, tried: []int{0, 1}, ejected: []int{3}, want: []int{2}},
		{name: "three ejected", weights: []int{1, 1, 1, 1}, ejected: []int{0, 1, 2}, want: []int{3}},
		{name: "drained gets nothing", weights: []int{1, 0, 1}, want: []int{0, 2}},
		{name: "drained is not a fallback", weights: []int{1, 0}, ejected: []int{0}},
		{name: "all tried", weights: []int{1, 1, 1}, tried: []int{0, 1, 2}},
		{name: "all ejected", weights: []int{1, 1, 1}, ejected: []int{0, 1, 2}},
		{name: "tried plus ejected", weights: []int{1, 2, 3, 4}, tried: []int{0, 3}, ejected: []int{1, 2}},
		{name: "all drained", weights: []int{0, 0}},
		{name: "single drained", weights: []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testPoolVersion(t, newTestPool(newFakeClock()), hc, tt.weights...)
			ejectAll(v, tt.ejected)
			tried := backendsAt(v, tt.tried)
			seen := map[int]int{}
			for range 2000 {
				b, err := v.Pick(tried)
				if tt.want == nil {
					if !errors.Is(err, ErrNoBackend) {
						t.Fatalf("Pick = %v, %v; want ErrNoBackend", b, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Pick error = %v, want a backend", err)
				}
				seen[b.Index]++
			}
			var got []int
			for i := range seen {
				got = append(got, i)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("picked backends %v (counts %v), want %v", got, seen, tt.want)
			}
		})
	}
}

// Pick follows the weights when the backends are equally busy per unit of weight, and prefers
// the backend with less work per unit of weight otherwise. Statistical: 20000 picks with bounds
// far wider than the sampling error (about 0.4 percentage points).
func TestPickDistribution(t *testing.T) {
	const picks = 20000
	tests := []struct {
		name     string
		weights  []int
		inFlight []int64
		want     []float64 // share of picks per backend
		tol      float64
	}{
		{name: "equal weights", weights: []int{1, 1}, want: []float64{0.5, 0.5}, tol: 0.05},
		{name: "one to three", weights: []int{1, 3}, want: []float64{0.25, 0.75}, tol: 0.05},
		{name: "canary split", weights: []int{90, 10}, want: []float64{0.9, 0.1}, tol: 0.04},
		{name: "three way", weights: []int{1, 2, 5}, want: []float64{0.125, 0.25, 0.625}, tol: 0.05},
		{name: "drained backend", weights: []int{1, 0, 1}, want: []float64{0.5, 0, 0.5}, tol: 0.05},
		{name: "equal load per weight keeps weights", weights: []int{3, 1}, inFlight: []int64{6, 2}, want: []float64{0.75, 0.25}, tol: 0.05},
		{name: "idle backend takes the traffic", weights: []int{1, 1}, inFlight: []int64{50, 0}, want: []float64{0, 1}, tol: 0.01},
		{name: "idle light backend beats busy heavy one", weights: []int{9, 1}, inFlight: []int64{1, 0}, want: []float64{0, 1}, tol: 0.01},
		{name: "load is scaled by weight", weights: []int{4, 1}, inFlight: []int64{3, 1}, want: []float64{1, 0}, tol: 0.01},
		// Two random choices, not a scan of all: the idle backend wins whenever it is one of the
		// two drawn, which is 2 picks in 3 here.
		{name: "idle one of three", weights: []int{1, 1, 1}, inFlight: []int64{5, 5, 0}, want: []float64{1. / 6, 1. / 6, 2. / 3}, tol: 0.05},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testPoolVersion(t, newTestPool(newFakeClock()), testHealth, tt.weights...)
			for i, n := range tt.inFlight {
				for range n {
					v.Backends[i].Acquire()
				}
			}
			counts := make([]int, len(v.Backends))
			for range picks {
				b, err := v.Pick(nil)
				if err != nil {
					t.Fatalf("Pick error = %v", err)
				}
				counts[b.Index]++
			}
			for i, want := range tt.want {
				got := float64(counts[i]) / picks
				if math.Abs(got-want) > tt.tol {
					t.Errorf("backend %d got %.3f of picks, want %.3f±%.2f (counts %v)", i, got, want, tt.tol, counts)
				}
			}
		})
	}
}

// Under load, requests that Acquire what they Pick spread so that in-flight work follows the weights.
func TestPickBalancesInFlight(t *testing.T) {
	v := testPoolVersion(t, newTestPool(newFakeClock()), testHealth, 1, 3)
	for range 400 {
		b, err := v.Pick(nil)
		if err != nil {
			t.Fatalf("Pick error = %v", err)
		}
		b.Acquire() // never released: every request is still running
	}
	got := []int64{v.Backends[0].InFlight(), v.Backends[1].InFlight()}
	// Power of two choices keeps each backend within a few requests of its share (100, 300).
	if got[0] < 90 || got[0] > 110 {
		t.Errorf("in flight after 400 picks = %v, want about [100 300]", got)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	hc := testHealth
	hc.FailureThreshold = 1
	v := testPoolVersion(t, newTestPool(newFakeClock()), hc, 1, 2, 3, 4)
	v.Backends[3].ReportFailure()
	tried := []*Backend{v.Backends[0]}
	if got := testing.AllocsPerRun(1000, func() { _, _ = v.Pick(tried) }); got != 0 {
		t.Errorf("Pick allocates %v times per call, want 0", got)
	}
}

// Run with -race: picks, load accounting, reports and probes may all happen at once.
func TestConcurrentUse(t *testing.T) {
	hc := testHealth
	hc.FailureThreshold = 2
	pool := newTestPool(newFakeClock())
	cfg := &config.Config{Health: hc, Models: []config.Model{
		testModel("m", "", testVersion("v1", testBackend("http://b0:8000", 1), testBackend("http://b1:8000", 2), testBackend("http://b2:8000", 3))),
	}}
	tbl := mustTable(t, cfg, pool)
	v := tbl.Model("m").Stable
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				b, err := v.Pick(nil)
				if err != nil {
					continue // everything ejected for a moment
				}
				hold := b.Acquire()
				if (g+i)%5 == 0 {
					hold.ReportFailure()
				} else {
					hold.ReportSuccess()
				}
				_ = b.Healthy()
				hold.Release()
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			if _, err := NewTable(cfg, pool); err != nil { // reloads while traffic flows
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	for _, b := range tbl.Backends() {
		if n := b.InFlight(); n != 0 {
			t.Errorf("%s InFlight() = %d after every request released, want 0", b.Addr, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	v := testPoolVersion(b, NewPool(), testHealth, 1, 1, 2, 4)
	tried := []*Backend{v.Backends[0]}
	b.ReportAllocs()
	for b.Loop() {
		be, err := v.Pick(tried)
		if err != nil {
			b.Fatal(err)
		}
		be.Acquire().Release()
	}
}

// A version may name one server twice under URLs that differ only in spelling (a trailing
// slash, the default port): a retry after that server failed must not be sent to it again.
func TestPickRetryNeverSameServer(t *testing.T) {
	for _, urls := range [][2]string{
		{"http://gpu1:8000", "http://gpu1:8000/"},
		{"http://gpu1", "http://gpu1:80"},
	} {
		t.Run(urls[1], func(t *testing.T) {
			cfg := &config.Config{Health: testHealth, Models: []config.Model{testModel("m", "",
				testVersion("v1", testBackend(urls[0], 1), testBackend(urls[1], 1)))}}
			v := mustTable(t, cfg, newTestPool(newFakeClock())).Model("m").Stable
			for range 50 {
				first, err := v.Pick(nil)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := v.Pick([]*Backend{first}); err == nil {
					t.Fatalf("retry after %s failed went to %s, the same server", first.URL, b.URL)
				}
			}
		})
	}
}

// A proxy that routes by path prefix is one address for several servers: after one path failed
// a request, the retry may go to the other.
func TestPickRetryOtherPathSameAddress(t *testing.T) {
	cfg := &config.Config{Health: testHealth, Models: []config.Model{testModel("m", "",
		testVersion("v1", testBackend("http://lb:8000/east", 1), testBackend("http://lb:8000/west", 1)))}}
	v := mustTable(t, cfg, newTestPool(newFakeClock())).Model("m").Stable
	first, err := v.Pick(nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := v.Pick([]*Backend{first}); err != nil || b == first {
		t.Fatalf("retry after %s failed: %v, %v; want the other path", first.URL, b, err)
	}
}
