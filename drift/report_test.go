package drift

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// window draws n requests: log-normal prompt lengths (median 400 tokens,
// times lenScale) and a script mix with share newScript of Cyrillic.
func window(rng *rand.Rand, n int, lenScale, newScript float64) *Snapshot {
	s := new(Snapshot)
	for range n {
		tok := int64(lenScale * math.Exp(6+0.6*rng.NormFloat64()))
		s.Num[FeaturePromptTokens].Add(tok, 1)
		s.Num[FeaturePromptBytes].Add(4*tok+int64(rng.IntN(8)), 1)
		s.Num[FeatureLatency].Add(int64(2e5*math.Exp(0.5*rng.NormFloat64())), 1)
		sc := ScriptLatin
		switch u := rng.Float64(); {
		case u < newScript:
			sc = ScriptCyrillic
		case u < newScript+0.1:
			sc = ScriptHan
		case u < newScript+0.15:
			sc = ScriptArabic
		}
		s.Categorical(FeatureScript)[sc]++
		s.Categorical(FeatureStatus)[StatusOK]++
		s.Categorical(FeatureRefusal)[b2u(rng.IntN(20) == 0)]++
	}
	return s
}

// Under no drift the false alarm rate of each p-value test stays at or below
// the significance (0.05), over many seeded trials. KS (exact) is
// conservative; chi-square and z are asymptotic, so their true rate is about
// alpha and the estimate is allowed its own sampling error (3 standard
// errors of a binomial share over the trials), not more.
func TestFalseAlarmRate(t *testing.T) {
	const trials = 1000
	pol := DefaultPolicy()
	alarms := map[string]int{}
	for seed := range uint64(trials) {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 100 + int(seed%9)*100 // 100..900: the p-value regime
		rep := Evaluate(window(rng, n, 1, 0), window(rng, n+int(seed%7)*13, 1, 0), &pol)
		for _, f := range []Feature{FeaturePromptTokens, FeatureLatency, FeatureScript, FeatureRefusal} {
			r := rep.Features[f]
			if r.Verdict == VerdictInsufficient {
				t.Fatalf("%s insufficient at n=%d", r.Feature, n)
			}
			if r.Verdict == VerdictDrift {
				alarms[r.Feature+"/"+string(r.Method)]++
			}
		}
	}
	for k, v := range alarms {
		slack := 3 * math.Sqrt(pol.Alpha*(1-pol.Alpha)/trials)
		if rate := float64(v) / trials; rate > pol.Alpha+slack {
			t.Errorf("%s false alarm rate %.3f > %.2f", k, rate, pol.Alpha)
		}
	}
	t.Logf("false alarms in %d trials: %v", trials, alarms)
}

// Beyond LargeReference the distance tests take over; they must stay quiet
// on same-distribution windows too.
func TestNoAlarmLargeWindows(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		rep := Evaluate(window(rng, 3000, 1, 0), window(rng, 2500, 1, 0), nil)
		if rep.Drifted != 0 {
			t.Fatalf("seed %d: %d features drift: %+v", seed, rep.Drifted, rep.Features)
		}
		if m := rep.Features[FeaturePromptTokens].Method; m != MethodWasserstein {
			t.Fatalf("method %s for a large numerical reference", m)
		}
		if m := rep.Features[FeatureScript].Method; m != MethodJensenShannon {
			t.Fatalf("method %s for a large categorical reference", m)
		}
	}
}

// Known shifts are detected within the minimum sample size: prompt lengths
// x1.5, and a new script taking 20 % of traffic, at MinSamples (100) per
// side and at large sizes; unrelated features stay stable.
func TestShiftDetected(t *testing.T) {
	pol := DefaultPolicy()
	for _, n := range []int{int(pol.MinSamples), 3000} {
		miss := map[Feature]int{}
		for seed := range uint64(50) {
			rng := rand.New(rand.NewPCG(seed, 11))
			ref := window(rng, n, 1, 0)
			if r := Evaluate(ref, window(rng, n, 1.5, 0), &pol); r.Features[FeaturePromptTokens].Verdict != VerdictDrift {
				miss[FeaturePromptTokens]++
			}
			r := Evaluate(ref, window(rng, n, 1, 0.2), &pol)
			if r.Features[FeatureScript].Verdict != VerdictDrift {
				miss[FeatureScript]++
			}
			if n > 1000 && r.Features[FeaturePromptTokens].Verdict != VerdictStable {
				t.Errorf("n=%d seed %d: prompt tokens %s under a script shift", n, seed, r.Features[FeaturePromptTokens].Verdict)
			}
		}
		// Power of at least 95 % at the minimum size, all at large sizes.
		for f, m := range miss {
			if (n > 1000 && m > 0) || m > 2 {
				t.Errorf("n=%d: %s missed in %d of 50", n, f, m)
			}
		}
	}
}

func TestInsufficientBelowMinSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	rep := Evaluate(window(rng, 99, 1, 0), window(rng, 500, 3, 0.5), nil)
	for _, r := range rep.Features {
		if r.Verdict != VerdictInsufficient {
			t.Errorf("%s: verdict %s below MinSamples", r.Feature, r.Verdict)
		}
	}
	if rep.Drift || rep.Decided != 0 {
		t.Error("report decided below MinSamples")
	}
	// Statistics are still computed, for display.
	if math.IsNaN(rep.Features[FeaturePromptTokens].Statistic) {
		t.Error("no statistic below MinSamples")
	}
}

// A version never frozen has an empty reference: nothing is decided, but each feature still
// says the threshold its test will use, not 0.
func TestEmptyReferenceKeepsThresholds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pol := DefaultPolicy()
	rep := Evaluate(new(Snapshot), window(rng, 500, 1, 0), &pol)
	for _, r := range rep.Features {
		if r.Verdict != VerdictInsufficient {
			t.Errorf("%s: verdict %s with an empty reference", r.Feature, r.Verdict)
		}
		if r.Threshold != threshold(Method(r.Method), &pol) || r.Threshold <= 0 {
			t.Errorf("%s (%s): threshold %v, want %v", r.Feature, r.Method, r.Threshold, threshold(Method(r.Method), &pol))
		}
	}
}

func TestPSIBandsAndOverrides(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	pol := DefaultPolicy()
	pol.Methods[FeaturePromptTokens] = MethodPSI
	pol.Methods[FeatureScript] = MethodPSI
	ref := window(rng, 5000, 1, 0)
	for _, tc := range []struct {
		scale float64
		want  Verdict
	}{{1, VerdictStable}, {1.2, VerdictModerate}, {2, VerdictDrift}} {
		r := Evaluate(ref, window(rng, 5000, tc.scale, 0), &pol).Features[FeaturePromptTokens]
		if r.Method != MethodPSI || r.Verdict != tc.want || r.Threshold != 0.25 {
			t.Errorf("scale %v: %s %v -> %s, want %s", tc.scale, r.Method, r.Statistic, r.Verdict, tc.want)
		}
	}
	// A category absent from the reference is smoothed, not infinite.
	r := Evaluate(ref, window(rng, 5000, 1, 0.2), &pol).Features[FeatureScript]
	if math.IsInf(r.Statistic, 0) || r.Verdict != VerdictDrift {
		t.Errorf("script PSI %v %s", r.Statistic, r.Verdict)
	}
}

func TestRollout(t *testing.T) {
	stable, canary := new(Snapshot), new(Snapshot)
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range 2000 {
		for k, s := range []*Snapshot{stable, canary} {
			slow := 1 + 0.3*float64(k) // canary 30 % slower
			s.Num[FeatureLatency].Add(int64(slow*2e5*math.Exp(0.4*rng.NormFloat64())), 1)
			s.Num[FeatureTTFT].Add(int64(5e4*math.Exp(0.4*rng.NormFloat64())), 1)
			st := StatusOK
			if rng.IntN(100) < 1+3*k { // 1 % vs 4 % errors
				st = StatusUpstreamError
			}
			s.Categorical(FeatureStatus)[st]++
			s.Categorical(FeatureRefusal)[b2u(i%50 == 0)]++
		}
	}
	got := map[string]Verdict{}
	for _, r := range Rollout(stable, canary, nil) {
		got[r.Feature] = r.Verdict
	}
	want := map[string]Verdict{"latency_us": VerdictDrift, "ttft_us": VerdictStable,
		"inter_token_us": VerdictInsufficient, "error_rate": VerdictDrift, "refusal_rate": VerdictStable,
		"blocked_rate": VerdictStable}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
}

func TestTwoProportionsEdges(t *testing.T) {
	for _, tc := range []struct {
		name           string
		x1, n1, x2, n2 uint64
		want           Verdict
	}{
		{"both zero", 0, 500, 0, 500, VerdictStable},
		{"too few", 0, 10, 10, 10, VerdictInsufficient},
		{"empty", 0, 0, 1, 200, VerdictInsufficient},
		{"jump", 5, 1000, 40, 1000, VerdictDrift},
	} {
		if r := TwoProportions(tc.x1, tc.n1, tc.x2, tc.n2, 0.05, 100); r.Verdict != tc.want {
			t.Errorf("%s: %s (z=%v p=%v)", tc.name, r.Verdict, r.Statistic, r.PValue)
		}
	}
	// z against a hand computation: p1=.1, p2=.15, n=400 each.
	r := TwoProportions(40, 400, 60, 400, 0.05, 1)
	p := 0.125
	z := 0.05 / math.Sqrt(p*(1-p)*(2.0/400))
	if !near(r.Statistic, z) || !near(r.PValue, math.Erfc(z/math.Sqrt2)) {
		t.Errorf("z=%v p=%v, want z=%v", r.Statistic, r.PValue, z)
	}
}

func TestReportJSON(t *testing.T) {
	clk := newFakeClock()
	r := NewRecorder(Options{Now: clk.Now})
	b, err := json.Marshal(r.Report(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"p_value":null`) || !strings.Contains(string(b), `"verdict":"insufficient"`) {
		t.Errorf("json %s", b)
	}
}

// A summary of an empty window marshals: undefined figures are null, not an encoding error.
func TestSummaryJSONEmpty(t *testing.T) {
	var s Snapshot
	b, err := json.Marshal(s.Summary())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"requests":0`) || !strings.Contains(string(b), `"latency_p50":null`) {
		t.Fatalf("%s", b)
	}
}

// The overall verdict is the share of drifted features among those that vary: features with
// one value on both sides (every request without tools, every answer a 200) are stable by
// construction and do not dilute it. Here three of the five varying features drift.
func TestDriftShareCountsVaryingFeatures(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ref, cur := window(rng, 600, 1, 0), window(rng, 600, 3, 0.4)
	for _, s := range []*Snapshot{ref, cur} {
		s.Categorical(FeatureTools)[0] = s.Count()
		s.Categorical(FeatureStream)[0] = s.Count()
		s.Categorical(FeatureCache)[0] = s.Count()
	}
	rep := Evaluate(ref, cur, nil)
	verdicts := map[string]Verdict{}
	for _, f := range rep.Features {
		verdicts[f.Feature] = f.Verdict
	}
	if verdicts["prompt_tokens"] != VerdictDrift || verdicts["script"] != VerdictDrift || verdicts["tools"] != VerdictStable || verdicts["latency_us"] == VerdictDrift {
		t.Fatalf("verdicts %v", verdicts)
	}
	if !rep.Drift || rep.Drifted != 3 || rep.Decided != 5 {
		t.Errorf("drift %v with %d of %d decided features drifted, want drift with 3 of the 5 varying ones: %v", rep.Drift, rep.Drifted, rep.Decided, verdicts)
	}
}
