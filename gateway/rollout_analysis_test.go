package gateway

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/drift"
)

// window records n requests: latencies around base (log-normal), a share of errors and, with
// stream set, TTFT around base/4.
func window(t *testing.T, seed uint64, n int, base time.Duration, errShare float64, stream bool) *drift.Snapshot {
	t.Helper()
	return windowWith(t, seed, n, base, errShare, stream, nil)
}

// windowWith is window with edit applied to each sample before it is recorded.
func windowWith(t *testing.T, seed uint64, n int, base time.Duration, errShare float64, stream bool, edit func(i int, s *drift.Sample)) *drift.Snapshot {
	t.Helper()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	rec := drift.NewRecorder(drift.Options{Window: 15 * time.Minute, Slice: time.Minute, Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(seed, 7))
	var s drift.Sample
	for i := range n {
		s.Reset()
		s.At = now
		s.Latency = time.Duration(float64(base) * (0.7 + 0.6*rng.Float64()))
		if stream {
			s.TTFT = s.Latency / 4
		}
		s.Status = drift.StatusOK
		if rng.Float64() < errShare {
			s.Status = drift.StatusUpstreamError
		}
		if edit != nil {
			edit(i, &s)
		}
		rec.Observe(&s)
	}
	var snap drift.Snapshot
	rec.Live(&snap)
	return &snap
}

func TestAnalyzeCanary(t *testing.T) {
	p := drift.DefaultPolicy()
	stable := window(t, 1, 600, 100*time.Millisecond, 0.01, true)
	tests := []struct {
		name        string
		canary      *drift.Snapshot
		want        string
		failedCheck string
	}{
		{"healthy canary", window(t, 2, 600, 100*time.Millisecond, 0.01, true), analysisPass, ""},
		{"more errors", window(t, 3, 600, 100*time.Millisecond, 0.10, true), analysisFail, "error_rate"},
		{"twice as slow", window(t, 4, 600, 200*time.Millisecond, 0.01, true), analysisFail, "p95_latency"},
		{"slightly slower, within the margin", window(t, 5, 600, 115*time.Millisecond, 0.01, true), analysisPass, ""},
		{"too few requests yet", window(t, 6, 20, 300*time.Millisecond, 0.1, true), analysisWait, ""},
		// Before the minimum sample, only a canary worse beyond doubt fails: most of 20 requests.
		{"plainly broken after 20 requests", window(t, 20, 20, 100*time.Millisecond, 0.9, true), analysisFail, "error_rate"},
		{"faster is never a failure", window(t, 7, 600, 40*time.Millisecond, 0.0, true), analysisPass, ""},
	}
	unsafe := windowWith(t, 8, 600, 100*time.Millisecond, 0.01, true, func(i int, s *drift.Sample) {
		if i%5 == 0 {
			s.Safety = 1 << 14 // a prompt-attack category on a fifth of the requests
		}
	})
	longer := windowWith(t, 9, 600, 100*time.Millisecond, 0.01, true, func(i int, s *drift.Sample) {
		s.PromptBytes, s.CompletionTokens = int64(2000+i), int64(900+i%50)
	})
	shorter := windowWith(t, 10, 600, 100*time.Millisecond, 0.01, true, func(i int, s *drift.Sample) {
		s.PromptBytes, s.CompletionTokens = int64(2000+i), int64(100+i%50)
	})
	tests = append(tests, []struct {
		name        string
		canary      *drift.Snapshot
		want        string
		failedCheck string
	}{
		{"more safety hits", unsafe, analysisFail, "safety_rate"},
	}...)
	// A check that waits says for what: the minimum sample, which an operator's --step-requests
	// does not lower, so that a step waiting past its min_requests is not a mystery.
	few := analyzeCanary(stable, window(t, 21, 15, 100*time.Millisecond, 0, true), rolloutChecks{}, &p, false)
	for _, c := range few.Checks {
		if c.Verdict == analysisWait && !strings.Contains(c.Rationale, "drift.min_samples") {
			t.Errorf("15 canary requests: check %s waits with rationale %q, want it to name drift.min_samples", c.Check, c.Rationale)
		}
	}
	if few.Verdict != analysisWait {
		t.Errorf("15 canary requests: verdict %s, want wait", few.Verdict)
	}
	// Buffered traffic on stable has no TTFT: a canary that streams a little must not wait forever.
	if a := analyzeCanary(window(t, 11, 600, 100*time.Millisecond, 0.01, false), window(t, 12, 600, 100*time.Millisecond, 0.01, true), rolloutChecks{}, &p, false); a.Verdict != analysisPass {
		t.Errorf("stable without streams: verdict %s: %+v", a.Verdict, a.Checks)
	}
	// ... nor a canary whose share gets buffered requests only while stable streams.
	if a := analyzeCanary(window(t, 13, 600, 100*time.Millisecond, 0.01, true), window(t, 14, 600, 100*time.Millisecond, 0.01, false), rolloutChecks{}, &p, false); a.Verdict != analysisPass {
		t.Errorf("canary without streams: verdict %s: %+v", a.Verdict, a.Checks)
	}
	// Twice as slow but by a fraction of a millisecond is no reason to roll back.
	if a := analyzeCanary(window(t, 16, 600, 200*time.Microsecond, 0.01, true), window(t, 17, 600, 400*time.Microsecond, 0.01, true), rolloutChecks{}, &p, false); a.Verdict != analysisPass {
		t.Errorf("0.2 vs 0.4 ms: verdict %s: %s", a.Verdict, a.reason())
	}
	// A regression of the slowest requests only fails: the median is stable's, the p95 20
	// times it.
	even := windowWith(t, 18, 600, 100*time.Millisecond, 0, false, func(i int, s *drift.Sample) { s.Latency = 100 * time.Millisecond })
	tail := windowWith(t, 19, 600, 100*time.Millisecond, 0, false, func(i int, s *drift.Sample) {
		if s.Latency = 100 * time.Millisecond; i%10 == 0 {
			s.Latency = 2 * time.Second
		}
	})
	if a := analyzeCanary(even, tail, rolloutChecks{}, &p, false); a.Verdict != analysisFail || !strings.Contains(a.reason(), "p95_latency") {
		t.Errorf("a tenth of the canary's requests 20 times slower: verdict %s: %s", a.Verdict, a.reason())
	}
	// Users who stop a stream ("stop generating") are not the canary's errors.
	stopped := windowWith(t, 15, 600, 100*time.Millisecond, 0.01, true, func(i int, s *drift.Sample) {
		if i%3 == 0 {
			s.Status = drift.StatusCanceled
		}
	})
	if a := analyzeCanary(stable, stopped, rolloutChecks{}, &p, false); a.Verdict != analysisPass {
		t.Errorf("a third of the canary's streams stopped by their users: verdict %s: %s", a.Verdict, a.reason())
	}
	if a := analyzeCanary(shorter, longer, rolloutChecks{FailOnDrift: true}, &p, false); a.Verdict != analysisFail || !strings.Contains(a.reason(), "drift from stable") {
		t.Errorf("fail_on_drift: verdict %s reason %q", a.Verdict, a.reason())
	}
	// Features with one value on both sides are left out of the overall drift share, but they
	// are decided: a canary whose measured features are all constant passes the drift check
	// rather than wait for it for ever.
	constant := func(seed uint64) *drift.Snapshot {
		return windowWith(t, seed, 600, 100*time.Millisecond, 0, false, func(i int, s *drift.Sample) {
			s.Latency, s.PromptBytes, s.CompletionTokens = 100*time.Millisecond, 2000, 100
		})
	}
	if a := analyzeCanary(constant(21), constant(22), rolloutChecks{FailOnDrift: true}, &p, false); a.Verdict != analysisPass {
		t.Errorf("fail_on_drift, every feature constant on both sides: verdict %s: %+v", a.Verdict, a.Checks)
	}
	// Stable answers most of its share from its warm cache, a new canary from its backends,
	// which fail as often as stable's: neither the hit ratio nor the status diluted by hits is
	// drift of the canary's.
	cached := windowWith(t, 23, 3000, 100*time.Millisecond, 0.2, false, func(i int, s *drift.Sample) {
		s.PromptBytes, s.CompletionTokens, s.Cache = int64(2000+i%300), int64(100+i%50), drift.CacheMiss
		if i%5 != 0 {
			s.Latency, s.Status, s.Cache = -1, drift.StatusOK, drift.CacheHit
		}
	})
	cold := windowWith(t, 24, 600, 100*time.Millisecond, 0.2, false, func(i int, s *drift.Sample) {
		s.PromptBytes, s.CompletionTokens, s.Cache = int64(2000+i%300), int64(100+i%50), drift.CacheMiss
	})
	if a := analyzeCanary(cached, cold, rolloutChecks{FailOnDrift: true}, &p, false); a.Verdict != analysisPass {
		t.Errorf("fail_on_drift, stable's cache warm and the canary's cold: verdict %s: %s", a.Verdict, a.reason())
	}
	if a := analyzeCanary(shorter, longer, rolloutChecks{}, &p, false); a.Verdict == analysisFail {
		t.Errorf("drift failed a canary without fail_on_drift: %s", a.reason())
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := analyzeCanary(stable, tt.canary, rolloutChecks{}, &p, false)
			if a.Verdict != tt.want {
				t.Fatalf("verdict %s, want %s: %+v", a.Verdict, tt.want, a.Checks)
			}
			if tt.failedCheck != "" && !strings.Contains(a.reason(), tt.failedCheck) {
				t.Fatalf("reason %q, want it to name %s", a.reason(), tt.failedCheck)
			}
		})
	}
}

// The early stop looks after every canary request until the minimum sample: a canary exactly
// at the limit (stable's error rate plus max_error_rate_increase) must rarely be rolled back
// by it over all those looks, and one failing most requests must be within a few dozen.
func TestPlainlyWorseSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const runs, stableN, limit = 4000, 600, 0.02
	// A stable with errors, and a clean one, whose narrow bound makes the stop quickest.
	for _, stableRate := range []float64{0.02, 0} {
		falseStops := 0
		for range runs {
			var xs uint64
			for range stableN {
				if rng.Float64() < stableRate {
					xs++
				}
			}
			var xc uint64
			for n := uint64(1); n <= 100; n++ {
				if rng.Float64() < stableRate+limit {
					xc++
				}
				if plainlyWorse(xs, stableN, xc, n, limit) {
					falseStops++
					break
				}
			}
		}
		if rate := float64(falseStops) / runs; rate > 0.005 {
			t.Errorf("stable at %.0f %% errors: a canary at the limit was stopped early in %.2f %% of rollouts, want under 0.5 %%", 100*stableRate, 100*rate)
		}
	}
	var xc, n uint64
	for n < 100 && !plainlyWorse(12, stableN, xc, n, limit) {
		n++
		if rng.Float64() < 0.9 {
			xc++
		}
	}
	if n > 30 {
		t.Errorf("a canary failing 90 %% of requests was stopped after %d, want within 30", n)
	}
}
