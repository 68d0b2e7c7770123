package drift

import (
	"encoding/json"
	"math"
	"time"
)

// Method names a drift test; the values are stable JSON and metric labels.
type Method string

// Methods. MethodAuto picks by sample size as Evidently does (see Policy).
const (
	MethodAuto          Method = ""
	MethodKS            Method = "ks"            // two-sample Kolmogorov-Smirnov, p-value
	MethodChiSquare     Method = "chisquare"     // chi-square homogeneity, p-value
	MethodZ             Method = "z"             // two-proportion z-test, p-value
	MethodWasserstein   Method = "wasserstein"   // Wasserstein / reference std, distance
	MethodJensenShannon Method = "jensenshannon" // Jensen-Shannon distance
	MethodPSI           Method = "psi"           // population stability index
	MethodMannWhitney   Method = "mannwhitney"   // Mann-Whitney U, p-value
)

// Verdict is a test's conclusion.
type Verdict string

// Verdicts; VerdictModerate is only given by PSI (between its two bands).
const (
	VerdictInsufficient Verdict = "insufficient" // below Policy.MinSamples, or no data
	VerdictStable       Verdict = "stable"
	VerdictModerate     Verdict = "moderate"
	VerdictDrift        Verdict = "drift"
)

// Policy selects tests and thresholds. Zero fields take the defaults below.
//
// With MethodAuto a feature gets Evidently's default: when the reference has
// at most LargeReference values, KS (numerical with more than 5 distinct
// buckets), else chi-square, or the z-test when at most two categories occur,
// drifting at p < Alpha; beyond, the normalised Wasserstein distance
// (numerical) or the Jensen-Shannon distance (categorical), drifting at
// >= Distance.
//
// A p-value test's drift verdict also needs a minimum effect (Result.Effect),
// as the rollout checks need a margin besides significance: a significant
// difference smaller than that is stable. Timings depend on load and their
// samples are not independent, so a shift of a few percent, or jitter across
// a bucket boundary, reads p < 1e-10 on an unchanged backend.
type Policy struct {
	Alpha          float64 // significance of p-value tests; default 0.05
	Distance       float64 // Wasserstein and JS threshold; default 0.1
	PSIModerate    float64 // PSI "moderate" band start; default 0.1
	PSIDrift       float64 // PSI "drift" band start; default 0.25
	LargeReference uint64  // p-values up to this reference size; default 1000
	MinSamples     uint64  // no verdict below this on either side; default 100
	Bins           int     // reference-quantile bins for numerical PSI/JS; default 10
	KSMode         KSMode  // default KSAuto (exact up to 10,000 values)
	DriftShare     float64 // report drift when this share of features drift; default 0.5
	// MinShift is the effect a numerical feature needs to drift: the Wasserstein distance
	// over the reference's mean (values moved by 10 % of the mean on average), whatever the
	// test (KS, chi-square and z on the buckets of a nearly constant feature, or a distance).
	// Default 0.1; negative: no floor.
	MinShift float64
	// MinTVD is the effect a chi-square or z-test on a categorical feature needs to drift:
	// the total variation distance, the share of requests that would have to change category
	// (a 10-point move from one category to another is 0.1). Default 0.02: rare categories
	// (errors at 1 %, refusals at 5 %) still drift when they double or more; negative: no floor.
	MinTVD  float64
	Methods [NumFeatures]Method // per-feature override; MethodAuto by default
}

// DefaultPolicy returns the defaults documented on Policy.
func DefaultPolicy() Policy {
	return Policy{Alpha: 0.05, Distance: 0.1, PSIModerate: 0.1, PSIDrift: 0.25,
		LargeReference: 1000, MinSamples: 100, Bins: 10, DriftShare: 0.5, MinShift: 0.1, MinTVD: 0.02}
}

func (p *Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p == nil {
		return d
	}
	q := *p
	for _, f := range []struct{ v, def *float64 }{{&q.Alpha, &d.Alpha}, {&q.Distance, &d.Distance},
		{&q.PSIModerate, &d.PSIModerate}, {&q.PSIDrift, &d.PSIDrift}, {&q.DriftShare, &d.DriftShare}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	// Floors: zero takes the default, negative turns the floor off.
	for _, f := range []struct{ v, def *float64 }{{&q.MinShift, &d.MinShift}, {&q.MinTVD, &d.MinTVD}} {
		switch {
		case *f.v == 0:
			*f.v = *f.def
		case *f.v < 0:
			*f.v = 0
		}
	}
	if q.LargeReference == 0 {
		q.LargeReference = d.LargeReference
	}
	if q.MinSamples == 0 {
		q.MinSamples = d.MinSamples
	}
	if q.Bins <= 1 {
		q.Bins = d.Bins
	}
	return q
}

// Result is one test on one feature (Feature is empty for rollout tests
// run directly). Statistic, PValue and Effect are NaN when undefined (JSON
// null).
type Result struct {
	Feature   string  `json:"feature,omitempty"`
	Method    Method  `json:"method"`
	Statistic float64 `json:"statistic"`
	PValue    float64 `json:"p_value"`   // p-value methods only
	Threshold float64 `json:"threshold"` // alpha, distance, or the PSI drift band
	// Effect is what MinEffect bounds in Evaluate (drift needs the test's verdict and
	// Effect >= MinEffect): the relative shift (Wasserstein over the reference mean) of a
	// numerical feature, whatever the test; the total variation distance of a categorical
	// one under a p-value test. NaN, and MinEffect 0, for a categorical distance.
	Effect    float64 `json:"effect"`
	MinEffect float64 `json:"min_effect"`
	Verdict   Verdict `json:"verdict"`
	RefN      uint64  `json:"ref_n"` // values in the reference (mentions for bitsets)
	CurN      uint64  `json:"cur_n"`
}

// MarshalJSON writes NaN statistics, p-values and effects as null.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		Statistic *float64 `json:"statistic"`
		PValue    *float64 `json:"p_value"`
		Effect    *float64 `json:"effect"`
	}{plain(r), finite(r.Statistic), finite(r.PValue), finite(r.Effect)})
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Window describes one side of a comparison.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	N     uint64    `json:"requests"`
}

// Report is the drift of one version: every feature, reference vs current.
type Report struct {
	Reference Window   `json:"reference"`
	Current   Window   `json:"current"`
	Features  []Result `json:"features"` // in Feature order
	Drifted   int      `json:"drifted"`  // features with VerdictDrift
	Decided   int      `json:"decided"`  // features with a verdict other than insufficient, and more than one value seen
	Drift     bool     `json:"drift"`    // Drifted >= DriftShare * Decided, Decided > 0
}

// Evaluate runs each feature's test between ref and cur under p (nil means
// DefaultPolicy). The same call compares a canary's live window (cur) with
// stable's (ref) for the deploy lifecycle. It allocates; run it off the
// request path.
func Evaluate(ref, cur *Snapshot, p *Policy) Report {
	pol := p.withDefaults()
	rep := Report{
		Reference: Window{ref.Start, ref.End, ref.Count()},
		Current:   Window{cur.Start, cur.End, cur.Count()},
		Features:  make([]Result, 0, NumFeatures),
	}
	for f := range Feature(NumFeatures) {
		var r Result
		if f.Numeric() {
			r = evalNumeric(&ref.Num[f], &cur.Num[f], pol.Methods[f], &pol)
		} else {
			rc, cc := ref.Categorical(f), cur.Categorical(f)
			r = categoricalEffect(evalCategorical(rc, cc, pol.Methods[f], &pol), rc, cc, &pol)
		}
		r.Feature = f.String()
		switch r.Verdict {
		case VerdictDrift:
			rep.Drifted++
			rep.Decided++
		case VerdictStable, VerdictModerate:
			// A feature with one value in both windows (no tools ever requested, every
			// answer a 200) is stable by construction and says nothing about the rest: counted
			// as decided, such features kept the drifted share under DriftShare when half the
			// features that vary had drifted.
			if !oneValue(ref, cur, f) {
				rep.Decided++
			}
		}
		rep.Features = append(rep.Features, r)
	}
	rep.Drift = rep.Decided > 0 && float64(rep.Drifted) >= pol.DriftShare*float64(rep.Decided)
	return rep
}

// oneValue reports whether feature f has at most one value (a category, or a histogram
// bucket) over both ref and cur.
func oneValue(ref, cur *Snapshot, f Feature) bool {
	var r, c []uint64
	if f.Numeric() {
		r, c = ref.Num[f][:], cur.Num[f][:]
	} else {
		r, c = ref.Categorical(f), cur.Categorical(f)
	}
	seen := 0
	for i := range r {
		if r[i]+c[i] > 0 {
			if seen++; seen > 1 {
				return false
			}
		}
	}
	return true
}

func evalNumeric(r, c *Histogram, m Method, p *Policy) Result {
	nR, nC := r.Count(), c.Count()
	if m == MethodAuto {
		switch small, many := nR <= p.LargeReference, r.Distinct() > 5; {
		case many && small:
			m = MethodKS
		case many:
			m = MethodWasserstein
		default:
			// Few distinct values: treat buckets as categories, as Evidently.
			return numericEffect(evalCategorical(r[:], c[:], MethodAuto, p), r, c, p)
		}
	}
	res := Result{Method: m, RefN: nR, CurN: nC, Statistic: math.NaN(), PValue: math.NaN(), Effect: math.NaN()}
	if nR == 0 || nC == 0 {
		// Nothing to test yet; the threshold is still the one the test will use.
		res.Verdict, res.Threshold = VerdictInsufficient, threshold(m, p)
		return res
	}
	switch m {
	case MethodKS:
		res.Statistic, res.PValue = KS(r, c, p.KSMode)
	case MethodWasserstein:
		res.Statistic = NormalizedWasserstein(r, c)
	case MethodMannWhitney:
		mw := MannWhitney(r, c, p.Alpha, p.MinSamples)
		res.Statistic, res.PValue = mw.Statistic, mw.PValue
	case MethodPSI, MethodJensenShannon:
		br, bc := quantileBins(r, c, p.Bins)
		return numericEffect(finishBinned(res, br, bc, p), r, c, p)
	default: // chi-square or z on the buckets
		return numericEffect(evalCategorical(r[:], c[:], m, p), r, c, p)
	}
	return numericEffect(decide(res, p), r, c, p)
}

// numericEffect puts the relative shift of a numerical feature in its result, whichever test
// judged it, and turns its drift verdict stable when the shift is below p.MinShift. The
// distances above LargeReference need it too: normalised Wasserstein divides by the reference's
// spread, so a narrow timing distribution moved by 3 % reads far past its 0.1. On the buckets of
// a nearly constant feature it replaces whatever effect the categorical test used: a value that
// moves to the next bucket is a category change there, and a 3 % shift here.
func numericEffect(res Result, r, c *Histogram, p *Policy) Result {
	res.MinEffect = p.MinShift // shown before a verdict too, as the threshold is
	if res.Verdict == VerdictInsufficient {
		return res
	}
	res.Effect = RelativeShift(r, c)
	return applyFloor(res)
}

// categoricalEffect puts the total variation distance of a categorical feature in a p-value
// test's result, and turns its drift verdict stable when it is below p.MinTVD.
func categoricalEffect(res Result, r, c []uint64, p *Policy) Result {
	if !pValueMethod(res.Method) {
		return res
	}
	res.MinEffect = p.MinTVD // shown before a verdict too, as the threshold is
	if res.Verdict == VerdictInsufficient {
		return res
	}
	res.Effect = TotalVariation(r, c)
	return applyFloor(res)
}

// applyFloor turns a drift verdict stable when the result's effect is below its floor.
func applyFloor(res Result) Result {
	if res.Verdict == VerdictDrift && res.Effect < res.MinEffect {
		res.Verdict = VerdictStable
	}
	return res
}

// RelativeShift returns the Wasserstein distance between two histograms over the
// reference's mean: how far values moved on average, as a share of their usual size (0.2
// for every value x1.2, 0.03 for +3 %). Scale-free like KS's D but, unlike D, it stays
// small for a small shift of a narrow distribution (a constant overhead moving by a bucket)
// and large for a large shift of a wide one. The buckets' 1/64 error makes it read up to
// about 1/32 for values that moved within a bucket. +Inf when the reference is all zeros
// and the current window is not; NaN when either is empty.
func RelativeShift(ref, cur *Histogram) float64 {
	w := Wasserstein(ref, cur)
	switch m := ref.Mean(); {
	case math.IsNaN(w) || w == 0:
		return w
	case m <= 0:
		return math.Inf(1)
	default:
		return w / m
	}
}

func pValueMethod(m Method) bool {
	switch m {
	case MethodKS, MethodChiSquare, MethodZ, MethodMannWhitney:
		return true
	}
	return false
}

func evalCategorical(r, c []uint64, m Method, p *Policy) Result {
	nR, nC := sum(r), sum(c)
	seen := 0
	first := -1
	for i := range r {
		if r[i]+c[i] > 0 {
			seen++
			if first < 0 {
				first = i
			}
		}
	}
	if m == MethodAuto {
		switch {
		case nR > p.LargeReference:
			m = MethodJensenShannon
		case seen <= 2:
			m = MethodZ
		default:
			m = MethodChiSquare
		}
	}
	res := Result{Method: m, RefN: nR, CurN: nC, Statistic: math.NaN(), PValue: math.NaN(), Effect: math.NaN()}
	if nR == 0 || nC == 0 {
		// Nothing to test yet; the threshold is still the one the test will use.
		res.Verdict, res.Threshold = VerdictInsufficient, threshold(m, p)
		return res
	}
	switch m {
	case MethodZ:
		if first < 0 {
			first = 0
		}
		z := TwoProportions(r[first], nR, c[first], nC, p.Alpha, p.MinSamples)
		res.Statistic, res.PValue = z.Statistic, z.PValue
	case MethodChiSquare:
		res.Statistic, res.PValue, _ = ChiSquare(r, c, true)
		if math.IsNaN(res.PValue) { // one category on both sides: identical
			res.Statistic, res.PValue = 0, 1
		}
	default:
		return finishBinned(res, r, c, p)
	}
	return decide(res, p)
}

// finishBinned computes a binned distance (PSI or JS) and decides.
func finishBinned(res Result, r, c []uint64, p *Policy) Result {
	if res.Method == MethodPSI {
		res.Statistic = PSI(r, c)
	} else {
		res.Method = MethodJensenShannon
		res.Statistic = JensenShannon(r, c)
	}
	return decide(res, p)
}

// threshold returns what method m's result is compared with: alpha for the tests with a
// p-value, the drift band for PSI, the distance for the other distances.
func threshold(m Method, p *Policy) float64 {
	switch m {
	case MethodKS, MethodChiSquare, MethodZ, MethodMannWhitney:
		return p.Alpha
	case MethodPSI:
		return p.PSIDrift
	}
	return p.Distance
}

// decide sets the threshold and the verdict from the method's statistic.
func decide(res Result, p *Policy) Result {
	insufficient := res.RefN < p.MinSamples || res.CurN < p.MinSamples
	res.Threshold = threshold(res.Method, p)
	switch res.Method {
	case MethodKS, MethodChiSquare, MethodZ, MethodMannWhitney:
		res.Verdict = pVerdict(res.PValue, p.Alpha, res.RefN, res.CurN, p.MinSamples)
		return res
	case MethodPSI:
		switch {
		case insufficient || math.IsNaN(res.Statistic):
			res.Verdict = VerdictInsufficient
		case res.Statistic >= p.PSIDrift:
			res.Verdict = VerdictDrift
		case res.Statistic >= p.PSIModerate:
			res.Verdict = VerdictModerate
		default:
			res.Verdict = VerdictStable
		}
		return res
	}
	switch {
	case insufficient || math.IsNaN(res.Statistic):
		res.Verdict = VerdictInsufficient
	case res.Statistic >= p.Distance:
		res.Verdict = VerdictDrift
	default:
		res.Verdict = VerdictStable
	}
	return res
}

// Rollout compares a canary's window with stable's for the deploy
// lifecycle: Mann-Whitney U on latency, TTFT and inter-token latency, and
// two-proportion z-tests on the error rate (of the requests a backend
// answered, see Answered), the refusal rate (of the answers given, see Answers) and the
// guard-block rate. Each
// result's Feature names what was compared; RefN is stable's side.
func Rollout(stable, canary *Snapshot, p *Policy) []Result {
	pol := p.withDefaults()
	out := make([]Result, 0, 6)
	for _, f := range []Feature{FeatureLatency, FeatureTTFT, FeatureInterToken} {
		r := MannWhitney(&stable.Num[f], &canary.Num[f], pol.Alpha, pol.MinSamples)
		r.Feature = f.String()
		out = append(out, r)
	}
	rate := func(name string, x, n func(*Snapshot) uint64) Result {
		r := TwoProportions(x(stable), n(stable), x(canary), n(canary), pol.Alpha, pol.MinSamples)
		r.Feature = name
		return r
	}
	out = append(out,
		// Of the backends' answers only: a cache never fails, and stable's is warm.
		rate("error_rate", (*Snapshot).Failures, (*Snapshot).Answered),
		rate("refusal_rate", (*Snapshot).Refusals, (*Snapshot).Answers),
		rate("blocked_rate", func(s *Snapshot) uint64 { return s.Categorical(FeatureStatus)[StatusBlocked] }, (*Snapshot).Count))
	return out
}
