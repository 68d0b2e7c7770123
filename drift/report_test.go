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
	off := noFloor(pol)
	alarms, today := map[string]int{}, map[string]int{}
	for seed := range uint64(trials) {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 100 + int(seed%9)*100 // 100..900: the p-value regime
		ref, cur := window(rng, n, 1, 0), window(rng, n+int(seed%7)*13, 1, 0)
		rep, was := Evaluate(ref, cur, &pol), Evaluate(ref, cur, &off)
		for _, f := range []Feature{FeaturePromptTokens, FeatureLatency, FeatureScript, FeatureRefusal} {
			r := rep.Features[f]
			if r.Verdict == VerdictInsufficient {
				t.Fatalf("%s insufficient at n=%d", r.Feature, n)
			}
			k := r.Feature + "/" + string(r.Method)
			if r.Verdict == VerdictDrift {
				alarms[k]++
			}
			if was.Features[f].Verdict == VerdictDrift {
				today[k]++
			}
		}
	}
	for k, v := range alarms {
		slack := 3 * math.Sqrt(pol.Alpha*(1-pol.Alpha)/trials)
		if rate := float64(v) / trials; rate > pol.Alpha+slack {
			t.Errorf("%s false alarm rate %.3f > %.2f", k, rate, pol.Alpha)
		}
		// The floors only ever turn a drift verdict stable.
		if v > today[k] {
			t.Errorf("%s: %d false alarms with the effect floors, %d without", k, v, today[k])
		}
	}
	t.Logf("false alarms in %d trials: %v; without the effect floors: %v", trials, alarms, today)
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
		// And the effect floor it will need, not 0 (which reads as "any difference drifts").
		f, _ := FeatureByName(r.Feature)
		want := 0.0
		switch {
		case f.Numeric():
			want = pol.MinShift
		case pValueMethod(r.Method):
			want = pol.MinTVD
		}
		if r.MinEffect != want {
			t.Errorf("%s (%s): min_effect %v, want %v", r.Feature, r.Method, r.MinEffect, want)
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

// The error rate is of the requests a backend answered: stable's warm cache, which never
// fails, must not make its backends look better than the canary's same ones.
func TestRolloutErrorRateLeavesCacheHitsOut(t *testing.T) {
	stable, canary := new(Snapshot), new(Snapshot)
	for i := range 5000 {
		stable.Categorical(FeatureStatus)[StatusOK]++
		stable.Categorical(FeatureCache)[CacheHit]++ // 5,000 hits, and 1,000 backend answers below
		if i >= 1000 {
			continue
		}
		for _, s := range []*Snapshot{stable, canary} {
			st := StatusOK
			if i%20 == 0 { // 5 % errors on both
				st = StatusUpstreamError
			}
			s.Categorical(FeatureStatus)[st]++
			s.Categorical(FeatureCache)[CacheMiss]++
		}
	}
	if n := stable.Answered(); n != 1000 {
		t.Fatalf("stable answered %d, want 1000", n)
	}
	for _, r := range Rollout(stable, canary, nil) {
		if r.Feature == "error_rate" && (r.Verdict != VerdictStable || r.RefN != 1000 || r.CurN != 1000) {
			t.Errorf("error_rate: %s over %d and %d requests, want stable over 1000 each", r.Verdict, r.RefN, r.CurN)
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
	if !strings.Contains(string(b), `"p_value":null`) || !strings.Contains(string(b), `"effect":null`) || !strings.Contains(string(b), `"verdict":"insufficient"`) {
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

// timing draws n latencies (log-normal around med microseconds, log-sd sigma, times scale)
// and as many gateway overheads (150 us times scale, jitter of sigma/10 around it: a nearly
// constant feature, tested on its buckets).
func timing(rng *rand.Rand, n int, med, sigma, scale float64) *Snapshot {
	s := new(Snapshot)
	for range n {
		s.Num[FeatureLatency].Add(int64(scale*med*math.Exp(sigma*rng.NormFloat64())), 1)
		s.Num[FeatureOverhead].Add(int64(scale*150*math.Exp(sigma/10*rng.NormFloat64())), 1)
	}
	return s
}

// noFloor is pol as it was before the effect floors: p-values alone.
func noFloor(pol Policy) Policy {
	pol.MinShift, pol.MinTVD = -1, -1
	return pol
}

// alarmRate runs trials of ref against cur windows drawn by draw and returns the share of
// trials in which feature f drifts under pol and under noFloor(pol).
func alarmRate(t *testing.T, trials int, f Feature, pol Policy, draw func(rng *rand.Rand) (ref, cur *Snapshot)) (floored, today float64) {
	t.Helper()
	off := noFloor(pol)
	var a, b int
	for seed := range uint64(trials) {
		ref, cur := draw(rand.New(rand.NewPCG(seed, 31)))
		x, y := Evaluate(ref, cur, &pol).Features[f], Evaluate(ref, cur, &off).Features[f]
		if x.Verdict == VerdictDrift {
			a++
			if y.Verdict != VerdictDrift {
				t.Fatalf("%s drifts with the floor (%+v) and not without (%+v)", f, x, y)
			}
		}
		if y.Verdict == VerdictDrift {
			b++
		}
	}
	return float64(a) / float64(trials), float64(b) / float64(trials)
}

// A small shift of a timing feature is not drift, however significant: latencies 3 % higher
// (a busier CPU) on a narrow distribution, where KS reads D ~ 0.3 and p < 1e-10, and a nearly
// constant overhead whose values cross a bucket boundary, where chi-square on the buckets
// does the same. Without the floor both alarm in most trials; with it, in none.
func TestSmallTimingShiftNoAlarm(t *testing.T) {
	pol := DefaultPolicy()
	for _, tc := range []struct {
		name  string
		f     Feature
		sigma float64
		want  Method
	}{{"latency +3%, log-sd 0.05", FeatureLatency, 0.05, MethodKS}, {"latency +3%, log-sd 0.2", FeatureLatency, 0.2, MethodKS},
		{"overhead +3%, jitter 0.5%", FeatureOverhead, 0.05, MethodChiSquare}} {
		for _, n := range []int{100, 300, 1000} {
			floored, today := alarmRate(t, 200, tc.f, pol, func(rng *rand.Rand) (*Snapshot, *Snapshot) {
				return timing(rng, n, 2e5, tc.sigma, 1), timing(rng, n, 2e5, tc.sigma, 1.03)
			})
			t.Logf("%s, n=%d: drift in %.3f of trials, %.3f without the floor", tc.name, n, floored, today)
			if floored > 0.01 {
				t.Errorf("%s, n=%d: drift in %.3f of trials", tc.name, n, floored)
			}
		}
		rng := rand.New(rand.NewPCG(1, 1))
		r := Evaluate(timing(rng, 500, 2e5, tc.sigma, 1), timing(rng, 500, 2e5, tc.sigma, 1.03), &pol).Features[tc.f]
		if r.Method != tc.want || r.MinEffect != pol.MinShift || !(r.Effect > 0.02 && r.Effect < 0.05) {
			t.Errorf("%s: %s effect %v (floor %v), want %s with an effect near 0.03", tc.name, r.Method, r.Effect, r.MinEffect, tc.want)
		}
	}
}

// Real latency regressions, x1.2 and x2 on a narrow and a wide distribution, are detected as
// often as without the floor (within 2 % of the trials), at the sizes of the p-value regime.
func TestTimingRegressionDetected(t *testing.T) {
	pol := DefaultPolicy()
	for _, scale := range []float64{1.2, 2} {
		for _, sigma := range []float64{0.5, 1} {
			for _, n := range []int{100, 300, 1000} {
				floored, today := alarmRate(t, 200, FeatureLatency, pol, func(rng *rand.Rand) (*Snapshot, *Snapshot) {
					return timing(rng, n, 2e5, sigma, 1), timing(rng, n, 2e5, sigma, scale)
				})
				t.Logf("latency x%v, log-sd %v, n=%d: detected in %.3f of trials, %.3f without the floor", scale, sigma, n, floored, today)
				if floored < today-0.02 {
					t.Errorf("latency x%v, log-sd %v, n=%d: detected in %.3f of trials, %.3f without the floor", scale, sigma, n, floored, today)
				}
			}
		}
	}
}

// mix draws n requests' statuses and scripts: a share errs of upstream errors, and scripts
// from shares (Latin, Cyrillic, Han, Arabic).
func mix(rng *rand.Rand, n int, errs float64, shares [4]float64) *Snapshot {
	s := new(Snapshot)
	for range n {
		st := StatusOK
		if rng.Float64() < errs {
			st = StatusUpstreamError
		}
		s.Categorical(FeatureStatus)[st]++
		sc, u := ScriptArabic, rng.Float64()
		for i, x := range []Script{ScriptLatin, ScriptCyrillic, ScriptHan} {
			if u < shares[i] {
				sc = x
				break
			}
			u -= shares[i]
		}
		s.Categorical(FeatureScript)[sc]++
	}
	return s
}

// A category's share that moves by 10 points is drift as often as without the floor, and so,
// within 5 % of the trials, is an error rate that goes from 1 % to 4 % (3 % of traffic, near
// the 2 % floor: 0.965 of 200 trials at 1,000 requests, 0.995 without the floor). An error
// rate from 0.2 % to 1 %, significant in two trials of three at 1,000 requests but under 2 %
// of traffic, is not.
func TestCategoryShift(t *testing.T) {
	pol := DefaultPolicy()
	base := [4]float64{0.75, 0.1, 0.1, 0.05}
	for _, tc := range []struct {
		name       string
		f          Feature
		errs       float64
		shares     [4]float64
		wantRatio  bool // detected as often as without the floor
		wantMethod Method
	}{
		{"Han 10 % -> 20 %", FeatureScript, 0, [4]float64{0.65, 0.1, 0.2, 0.05}, true, MethodChiSquare},
		{"new script at 10 %", FeatureScript, 0, [4]float64{0.65, 0.2, 0.1, 0.05}, true, MethodChiSquare},
		{"errors 1 % -> 4 %", FeatureStatus, 0.04, base, true, MethodZ},
		{"errors 0.2 % -> 1 %", FeatureStatus, 0.01, base, false, MethodZ},
	} {
		for _, n := range []int{100, 300, 1000} {
			errs0 := 0.01
			if !tc.wantRatio {
				errs0 = 0.002
			}
			floored, today := alarmRate(t, 200, tc.f, pol, func(rng *rand.Rand) (*Snapshot, *Snapshot) {
				return mix(rng, n, errs0, base), mix(rng, n, max(tc.errs, errs0), tc.shares)
			})
			t.Logf("%s, n=%d: drift in %.3f of trials, %.3f without the floor", tc.name, n, floored, today)
			switch {
			case tc.wantRatio && floored < today-0.05:
				t.Errorf("%s, n=%d: detected in %.3f of trials, %.3f without the floor", tc.name, n, floored, today)
			case !tc.wantRatio && n == 1000 && floored > 0.01:
				t.Errorf("%s, n=%d: drift in %.3f of trials", tc.name, n, floored)
			}
		}
		rng := rand.New(rand.NewPCG(2, 2))
		r := Evaluate(mix(rng, 1000, 0.01, base), mix(rng, 1000, max(tc.errs, 0.01), tc.shares), &pol).Features[tc.f]
		if r.Method != tc.wantMethod || r.MinEffect != pol.MinTVD || !(r.Effect > 0) {
			t.Errorf("%s: %s effect %v (floor %v), want %s", tc.name, r.Method, r.Effect, r.MinEffect, tc.wantMethod)
		}
	}
}

// Above LargeReference the distances judge numerical features, and the same floor holds:
// normalised Wasserstein divides by the reference's spread, so a narrow latency distribution
// moved by 3 % read far past its threshold of 0.1, while a x1.2 regression must still drift.
func TestLargeWindowTimingFloor(t *testing.T) {
	pol := DefaultPolicy()
	const n = 3000
	for _, sigma := range []float64{0.05, 0.2} {
		small, _ := alarmRate(t, 50, FeatureLatency, pol, func(rng *rand.Rand) (*Snapshot, *Snapshot) {
			return timing(rng, n, 2e5, sigma, 1), timing(rng, n, 2e5, sigma, 1.03)
		})
		big, _ := alarmRate(t, 50, FeatureLatency, pol, func(rng *rand.Rand) (*Snapshot, *Snapshot) {
			return timing(rng, n, 2e5, sigma, 1), timing(rng, n, 2e5, sigma, 1.2)
		})
		if small > 0 || big < 1 {
			t.Errorf("log-sd %v, n=%d: +3 %% drifted in %.2f of trials (want 0), x1.2 in %.2f (want all)", sigma, n, small, big)
		}
	}
	rng := rand.New(rand.NewPCG(3, 3))
	if r := Evaluate(timing(rng, n, 2e5, 0.05, 1), timing(rng, n, 2e5, 0.05, 1.03), &pol).Features[FeatureLatency]; r.Method != MethodWasserstein || !(r.Effect > 0.02 && r.Effect < 0.05) {
		t.Errorf("%s effect %v, want Wasserstein with an effect near 0.03", r.Method, r.Effect)
	}
}

// The refusal rate is of the answers given: a version failing half its requests refuses no
// less often when it does answer. Divided by every request, its errors halved its refusal rate
// in the summary, and a canary that both failed and refused more passed the rollout's check.
func TestRefusalRateOfAnswers(t *testing.T) {
	stable, canary := new(Snapshot), new(Snapshot)
	for i := range 1000 {
		stable.Categorical(FeatureStatus)[StatusOK]++
		stable.Categorical(FeatureRefusal)[b2u(i%10 == 0)]++ // 10 % of its answers
		// The canary fails every other request and refuses 20 % of the answers it gives.
		st, refused := StatusOK, i%10 < 2
		if i%2 == 1 {
			st, refused = StatusUpstreamError, false
		}
		canary.Categorical(FeatureStatus)[st]++
		canary.Categorical(FeatureRefusal)[b2u(refused)]++
	}
	if got := canary.Summary().RefusalRate; !near(got, 0.2) {
		t.Errorf("canary refusal_rate %v, want 0.2: 100 refusals in 500 answers", got)
	}
	for _, r := range Rollout(stable, canary, nil) {
		if r.Feature == "refusal_rate" && (r.Verdict != VerdictDrift || r.RefN != 1000 || r.CurN != 500) {
			t.Errorf("refusal_rate: %s over %d and %d answers, want drift over 1000 and 500", r.Verdict, r.RefN, r.CurN)
		}
	}
}
