package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(v int64) {
		i := bucketOf(v)
		lo, hi := bucketBounds(i)
		if float64(v) < lo || float64(v) >= hi {
			t.Fatalf("v=%d in bucket %d [%v,%v)", v, i, lo, hi)
		}
		rep := bucketRep(i)
		if v < exactLimit && rep != float64(v) {
			t.Fatalf("v=%d not exact: rep %v", v, rep)
		}
		if e := math.Abs(rep-float64(v)) / float64(v); v > 0 && e > RelativeError {
			t.Fatalf("v=%d rep %v relative error %v > %v", v, rep, e, RelativeError)
		}
	}
	for v := int64(0); v < 5000; v++ {
		check(v)
	}
	for range 100000 {
		check(rng.Int64N(MaxValue + 1))
	}
	check(MaxValue)
	if bucketOf(MaxValue) != NumBuckets-1 || bucketOf(1<<40) != NumBuckets-1 || bucketOf(-5) != 0 {
		t.Fatal("clamping")
	}
	for i := 1; i < NumBuckets; i++ {
		if _, hi := bucketBounds(i - 1); hi != func() float64 { lo, _ := bucketBounds(i); return lo }() {
			t.Fatalf("gap between buckets %d and %d", i-1, i)
		}
	}
}

// exactWasserstein is the 1-Wasserstein distance of two raw samples.
func exactWasserstein(a, b []float64) float64 {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	all := slices.Sorted(slices.Values(append(slices.Clone(x), y...)))
	w := 0.0
	for k := 0; k+1 < len(all); k++ {
		fx := float64(upper(x, all[k])) / float64(len(x))
		fy := float64(upper(y, all[k])) / float64(len(y))
		w += math.Abs(fx-fy) * (all[k+1] - all[k])
	}
	return w
}

func upper(s []float64, v float64) int {
	i, _ := slices.BinarySearchFunc(s, v, func(e, t float64) int {
		if e <= t {
			return -1
		}
		return 1
	})
	return i
}

// On sketched (bucketed) windows the statistics stay within the stated error
// of the exact ones: KS within the largest bucket mass, Wasserstein within
// RelativeError*(mean_ref+mean_cur), quantiles within RelativeError.
func TestSketchWithinStatedError(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 20 {
		n1, n2 := 300+rng.IntN(700), 300+rng.IntN(700)
		scale := 1.0 + 0.3*float64(trial%4)
		a, b := make([]float64, n1), make([]float64, n2)
		ha, hb := new(Histogram), new(Histogram)
		for i := range a {
			a[i] = math.Floor(math.Exp(6 + rng.NormFloat64()))
			ha.Add(int64(a[i]), 1)
		}
		for i := range b {
			b[i] = math.Floor(scale * math.Exp(6+rng.NormFloat64()))
			hb.Add(int64(b[i]), 1)
		}
		dExact, _ := KSSamples(a, b, KSAsymp)
		dSketch := KSStatistic(ha, hb)
		bound := 0.0
		for i := range ha {
			bound = math.Max(bound, math.Max(float64(ha[i])/float64(n1), float64(hb[i])/float64(n2)))
		}
		if dSketch > dExact+1e-12 || dExact-dSketch > bound+1e-12 {
			t.Errorf("trial %d: KS sketch %v exact %v bound %v", trial, dSketch, dExact, bound)
		}
		wExact, wSketch := exactWasserstein(a, b), Wasserstein(ha, hb)
		meanA, meanB := mean(a), mean(b)
		if math.Abs(wExact-wSketch) > RelativeError*(meanA+meanB) {
			t.Errorf("trial %d: W sketch %v exact %v", trial, wSketch, wExact)
		}
		slices.Sort(a)
		for _, q := range []float64{0.5, 0.9, 0.99} {
			exact := a[int(math.Ceil(q*float64(n1)))-1]
			if got := ha.Quantile(q); math.Abs(got-exact) > RelativeError*exact {
				t.Errorf("trial %d: q%v %v exact %v", trial, q, got, exact)
			}
		}
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func TestQuantileBins(t *testing.T) {
	ref, cur := new(Histogram), new(Histogram)
	for v := int64(0); v < 1000; v++ {
		ref.Add(v, 1)
		cur.Add(v, 1)
	}
	r, c := quantileBins(ref, cur, 10)
	if len(r) != 10 || sum(r) != 1000 || sum(c) != 1000 {
		t.Fatalf("bins %v %v", r, c)
	}
	for _, x := range r {
		if x < 80 || x > 120 {
			t.Errorf("unequal reference bins %v", r)
			break
		}
	}
	if PSI(r, c) != 0 || JensenShannon(r, c) != 0 {
		t.Error("identical windows score non-zero")
	}
	// One value only, on both sides: a single bin, which scores zero.
	one := new(Histogram)
	one.Add(7, 50)
	if r, _ := quantileBins(one, one, 10); len(r) != 1 {
		t.Errorf("constant reference gave %d bins", len(r))
	}
}

// A point mass in the reference (a constant TTFT, completions all cut at max_tokens) is a bin
// of its own: lumped with what lies above or below it, a current window that left it scored 0.
func TestQuantileBinsPointMass(t *testing.T) {
	constant := new(Histogram)
	constant.Add(256, 500)
	mostly := new(Histogram) // 95 % at 256, the rest spread below
	mostly.Add(256, 950)
	for v := int64(100); v < 150; v++ {
		mostly.Add(v, 1)
	}
	for _, tc := range []struct {
		name     string
		ref, cur *Histogram
	}{
		{"constant, current above", constant, histOf(repeat(1000, 300))},
		{"constant, current below", constant, histOf(repeat(40, 300))},
		{"95% point mass, current above", mostly, histOf(repeat(1000, 300))},
		{"95% point mass, current between", mostly, histOf(repeat(200, 300))},
	} {
		r, c := quantileBins(tc.ref, tc.cur, 10)
		if sum(r) != tc.ref.Count() || sum(c) != tc.cur.Count() {
			t.Errorf("%s: bins %v %v lose counts", tc.name, r, c)
		}
		if psi, js := PSI(r, c), JensenShannon(r, c); psi < 0.25 || js < 0.1 {
			t.Errorf("%s: bins %v %v score PSI %v, JS %v: the shift is not seen", tc.name, r, c, psi, js)
		}
	}
	// Unchanged windows still score 0.
	if r, c := quantileBins(mostly, mostly, 10); PSI(r, c) != 0 || JensenShannon(r, c) != 0 {
		t.Errorf("identical windows: bins %v %v score non-zero", r, c)
	}
	// Through Evaluate, with PSI and JS chosen for a feature.
	for _, m := range []Method{MethodPSI, MethodJensenShannon} {
		pol := DefaultPolicy()
		pol.Methods[FeatureCompletionTokens] = m
		var ref, cur Snapshot
		ref.Num[FeatureCompletionTokens] = *constant
		cur.Num[FeatureCompletionTokens] = *histOf(repeat(1000, 300))
		if res := Evaluate(&ref, &cur, &pol).Features[FeatureCompletionTokens]; res.Verdict != VerdictDrift {
			t.Errorf("%s: constant 256 tokens, then 1000: %v %s, want drift", m, res.Statistic, res.Verdict)
		}
	}
}

func repeat(v int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
