package drift

import (
	"math"
	"slices"
)

// KSStatistic returns the two-sample Kolmogorov-Smirnov statistic
// sup |F_ref - F_cur| over bucket boundaries: the exact statistic of the
// bucketed data. Against the raw data it can only be smaller, by at most the
// largest single-bucket mass of either histogram.
func KSStatistic(ref, cur *Histogram) float64 {
	n1, n2 := float64(ref.Count()), float64(cur.Count())
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	var c1, c2 uint64
	d := 0.0
	lo, hi := span(ref, cur)
	for i := lo; i < hi; i++ {
		c1 += ref[i]
		c2 += cur[i]
		d = math.Max(d, math.Abs(float64(c1)/n1-float64(c2)/n2))
	}
	return d
}

// KS returns the KS statistic and two-sided p-value of two histograms
// (see KSStatistic and KSSamples for the p-value modes).
func KS(ref, cur *Histogram, mode KSMode) (d, p float64) {
	d = KSStatistic(ref, cur)
	if math.IsNaN(d) {
		return d, d
	}
	p, d, _ = ksPValue(d, ref.Count(), cur.Count(), mode)
	return d, p
}

// KSSamples is scipy.stats.ks_2samp(a, b, method=...) for two-sided tests on
// raw values: statistic and p-value. It sorts copies of a and b.
func KSSamples(a, b []float64, mode KSMode) (d, p float64) {
	if len(a) == 0 || len(b) == 0 {
		return math.NaN(), math.NaN()
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	n1, n2 := float64(len(x)), float64(len(y))
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		// Step past every copy of the next value in both samples (ties).
		v := math.Inf(1)
		if i < len(x) {
			v = x[i]
		}
		if j < len(y) && y[j] < v {
			v = y[j]
		}
		for i < len(x) && x[i] == v {
			i++
		}
		for j < len(y) && y[j] == v {
			j++
		}
		d = math.Max(d, math.Abs(float64(i)/n1-float64(j)/n2))
	}
	p, d, _ = ksPValue(d, uint64(len(x)), uint64(len(y)), mode)
	return d, p
}

// ChiSquare is the Pearson chi-square test of homogeneity on the 2 x k
// contingency table of two count vectors, as scipy.stats.chi2_contingency:
// categories empty in both are dropped, and with yates the continuity
// correction applies when there is one degree of freedom. p is NaN and dof
// 0 when fewer than two categories remain or a row is empty.
func ChiSquare(ref, cur []uint64, yates bool) (stat, p float64, dof int) {
	var n1, n2 float64
	k := 0
	for i := range ref {
		if ref[i]+cur[i] > 0 {
			k++
			n1 += float64(ref[i])
			n2 += float64(cur[i])
		}
	}
	if k < 2 || n1 == 0 || n2 == 0 {
		return math.NaN(), math.NaN(), 0
	}
	dof = k - 1
	n := n1 + n2
	for i := range ref {
		col := float64(ref[i] + cur[i])
		if col == 0 {
			continue
		}
		for r, o := range [2]float64{float64(ref[i]), float64(cur[i])} {
			e := col * [2]float64{n1, n2}[r] / n
			if yates && dof == 1 {
				diff := e - o
				o += math.Copysign(math.Min(0.5, math.Abs(diff)), diff)
			}
			stat += (o - e) * (o - e) / e
		}
	}
	return stat, chi2SF(stat, float64(dof)), dof
}

// chi2SF is the chi-square survival function: the regularized upper
// incomplete gamma Q(dof/2, x/2).
func chi2SF(x, dof float64) float64 {
	if x <= 0 {
		return 1
	}
	return gammaQ(dof/2, x/2)
}

// gammaQ is the regularized upper incomplete gamma function, by its series
// below a+1 and Lentz's continued fraction above (Numerical Recipes 6.2).
func gammaQ(a, x float64) float64 {
	lg, _ := math.Lgamma(a)
	pre := math.Exp(-x + a*math.Log(x) - lg)
	if x < a+1 {
		sum, del := 1/a, 1/a
		for ap := a; math.Abs(del) > math.Abs(sum)*1e-17; {
			ap++
			del *= x / ap
			sum += del
		}
		return math.Max(0, 1-sum*pre)
	}
	const tiny = 1e-300
	b := x + 1 - a
	c, d := 1/tiny, 1/b
	h := d
	for i := 1.0; i < 10000; i++ {
		an := -i * (i - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-16 {
			break
		}
	}
	return pre * h
}

// normSF is the standard normal survival function.
func normSF(z float64) float64 { return math.Erfc(z/math.Sqrt2) / 2 }

// PSIEpsilon replaces empty bins' proportions before PSI, as Evidently's
// legacy default: without it one empty bin makes PSI infinite. The
// proportions are not renormalised; the bias is at most bins*PSIEpsilon*ln.
const PSIEpsilon = 1e-4

// PSI returns the population stability index sum (c-r)*ln(c/r) over the
// bins' proportions, empty bins smoothed to PSIEpsilon. NaN when either
// side is empty.
func PSI(ref, cur []uint64) float64 {
	n1, n2 := float64(sum(ref)), float64(sum(cur))
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	psi := 0.0
	for i := range ref {
		r := math.Max(float64(ref[i])/n1, PSIEpsilon)
		c := math.Max(float64(cur[i])/n2, PSIEpsilon)
		psi += (c - r) * math.Log(c/r)
	}
	return psi
}

// TotalVariation returns the total variation distance between two count vectors' shares:
// half the sum of their absolute differences, the share of one side that would have to move
// to another category to match the other. NaN when either side is empty.
func TotalVariation(ref, cur []uint64) float64 {
	n1, n2 := float64(sum(ref)), float64(sum(cur))
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	d := 0.0
	for i := range ref {
		d += math.Abs(float64(ref[i])/n1 - float64(cur[i])/n2)
	}
	return d / 2
}

// JensenShannon returns the Jensen-Shannon distance (natural log, so in
// [0, sqrt(ln 2)]) between two count vectors, as
// scipy.spatial.distance.jensenshannon. No smoothing is needed: 0 ln 0 = 0.
func JensenShannon(ref, cur []uint64) float64 {
	n1, n2 := float64(sum(ref)), float64(sum(cur))
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	js := 0.0
	for i := range ref {
		p, q := float64(ref[i])/n1, float64(cur[i])/n2
		m := (p + q) / 2
		if p > 0 {
			js += p * math.Log(p/m)
		}
		if q > 0 {
			js += q * math.Log(q/m)
		}
	}
	return math.Sqrt(math.Max(js/2, 0))
}

// Wasserstein returns the 1-Wasserstein distance between two histograms
// with every value at its bucket representative: integral of |F_ref - F_cur|.
// Against the raw data the error is at most RelativeError*(mean_ref+mean_cur)
// (each value moved by at most that fraction of itself).
func Wasserstein(ref, cur *Histogram) float64 {
	n1, n2 := float64(ref.Count()), float64(cur.Count())
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	lo, hi := span(ref, cur)
	var c1, c2 uint64
	w := 0.0
	for i := lo; i < hi-1; i++ {
		c1 += ref[i]
		c2 += cur[i]
		w += math.Abs(float64(c1)/n1-float64(c2)/n2) * (bucketRep(i+1) - bucketRep(i))
	}
	return w
}

// NormalizedWasserstein is Wasserstein divided by the reference's standard
// deviation (population, ddof=0) floored at 0.001 feature units, as
// Evidently's wasserstein stattest: a shift of 0.1 reference sigma scores 0.1.
func NormalizedWasserstein(ref, cur *Histogram) float64 {
	return Wasserstein(ref, cur) / math.Max(ref.Std(), 0.001)
}

// quantileBins cuts both histograms at the reference's k-quantiles (bucket
// boundaries; ties merge bins) and returns the per-bin counts. Equal-mass
// reference bins keep PSI and JS meaningful on heavy-tailed latencies and
// lengths, where equal-width bins put almost everything in the first bin.
//
// A bucket holding at least 1/k of the reference (a point mass: a constant
// TTFT, completions cut at max_tokens) is a bin of its own, with what lies
// below it and what lies above it in other bins. Merged into one bin with its
// neighbours, it would hide a current window that moved away from it: with a
// constant reference everything would be one bin, and PSI and JS would read 0
// whatever the current window holds.
func quantileBins(ref, cur *Histogram, k int) (r, c []uint64) {
	n := ref.Count()
	if n == 0 {
		return nil, nil
	}
	r, c = make([]uint64, 0, k+2), make([]uint64, 0, k+2)
	var cum, br, bc uint64
	next := 1
	flush := func() {
		r, c = append(r, br), append(c, bc)
		br, bc = 0, 0
		for next < k && cum*uint64(k) >= uint64(next)*n {
			next++
		}
	}
	for i := range ref {
		heavy := ref[i]*uint64(k) >= n
		if heavy && br+bc > 0 {
			flush() // what lies below the point mass
		}
		cum += ref[i]
		br += ref[i]
		bc += cur[i]
		// Close the bin at the last bucket reaching the next quantile, or at a point mass.
		if heavy || (next < k && cum*uint64(k) >= uint64(next)*n && cum < n) {
			flush()
		}
	}
	if br+bc > 0 || len(r) == 0 {
		r, c = append(r, br), append(c, bc)
	}
	return r, c
}

// MannWhitney compares two histograms with the Mann-Whitney U test (two
// sided, normal approximation with tie correction and continuity correction,
// as scipy.stats.mannwhitneyu(method="asymptotic")). Values in one bucket are
// ties. The statistic is U of a. Below minN values on either side the verdict
// is VerdictInsufficient.
func MannWhitney(a, b *Histogram, alpha float64, minN uint64) Result {
	n1, n2 := a.Count(), b.Count()
	res := Result{Method: MethodMannWhitney, Threshold: alpha, RefN: n1, CurN: n2,
		Statistic: math.NaN(), PValue: math.NaN(), Effect: math.NaN(), Verdict: VerdictInsufficient}
	if n1 == 0 || n2 == 0 {
		return res
	}
	f1, f2 := float64(n1), float64(n2)
	n := f1 + f2
	var before, r1, ties float64
	lo, hi := span(a, b)
	for i := lo; i < hi; i++ {
		t := float64(a[i] + b[i])
		if t == 0 {
			continue
		}
		r1 += float64(a[i]) * (before + (t+1)/2)
		ties += t*t*t - t
		before += t
	}
	u1 := r1 - f1*(f1+1)/2
	u := math.Max(u1, f1*f2-u1)
	mu := f1 * f2 / 2
	sd := math.Sqrt(f1 * f2 / 12 * ((n + 1) - ties/(n*(n-1))))
	res.Statistic = u1
	res.PValue = 1
	if sd > 0 {
		res.PValue = clip01(2 * normSF((u-mu-0.5)/sd))
	}
	res.Verdict = pVerdict(res.PValue, alpha, n1, n2, minN)
	return res
}

// TwoProportions is the pooled two-proportion z-test of x1/n1 against x2/n2
// (two sided), for rates such as errors or refusals. The statistic is z
// (positive when the second rate is higher); p is 1 when both rates are 0 or 1.
func TwoProportions(x1, n1, x2, n2 uint64, alpha float64, minN uint64) Result {
	res := Result{Method: MethodZ, Threshold: alpha, RefN: n1, CurN: n2,
		Statistic: math.NaN(), PValue: math.NaN(), Effect: math.NaN(), Verdict: VerdictInsufficient}
	if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
		return res
	}
	f1, f2 := float64(n1), float64(n2)
	p := float64(x1+x2) / (f1 + f2)
	se := math.Sqrt(p * (1 - p) * (1/f1 + 1/f2))
	res.Statistic, res.PValue = 0, 1
	if se > 0 {
		res.Statistic = (float64(x2)/f2 - float64(x1)/f1) / se
		res.PValue = clip01(2 * normSF(math.Abs(res.Statistic)))
	}
	res.Verdict = pVerdict(res.PValue, alpha, n1, n2, minN)
	return res
}

func pVerdict(p, alpha float64, n1, n2, minN uint64) Verdict {
	switch {
	case n1 < minN || n2 < minN || math.IsNaN(p):
		return VerdictInsufficient
	case p < alpha:
		return VerdictDrift
	}
	return VerdictStable
}
