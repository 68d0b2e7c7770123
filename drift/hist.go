package drift

import (
	"math"
	"math/bits"
)

// Histogram layout: log-linear buckets (HDR style). Values 0..63 have a
// bucket each; above, every power-of-two octave is cut into 32 equal
// buckets, so a bucket [lo, hi) has (hi-lo)/lo <= 1/32 and its midpoint is
// within a relative error of 1/64 of any value in it. Values are clamped to
// MaxValue. The index is a few shifts, no logarithm: Observe stays cheap.
const (
	subBits    = 5
	subCount   = 1 << subBits
	exactLimit = 2 * subCount // values below are stored exactly
	maxShift   = 32 - (subBits + 1)
	// NumBuckets is the number of buckets of every Histogram.
	NumBuckets = (maxShift+1)*subCount + subCount
	// MaxValue is the largest value a Histogram distinguishes (about 71
	// minutes in microseconds, 4 G tokens); larger values are clamped.
	MaxValue = 1<<32 - 1
	// RelativeError bounds |rep - v| / v for any value v >= 64 and the
	// representative rep of its bucket; values below 64 are exact.
	RelativeError = 1.0 / (2 * subCount)
)

// bucketOf returns the bucket index of v (v clamped to [0, MaxValue]).
func bucketOf(v int64) int {
	if v < exactLimit {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	if v > MaxValue {
		v = MaxValue
	}
	shift := bits.Len64(uint64(v)) - (subBits + 1)
	return shift*subCount + int(v>>uint(shift))
}

// bucketBounds returns the half-open value range [lo, hi) of bucket i.
func bucketBounds(i int) (lo, hi float64) {
	if i < exactLimit {
		return float64(i), float64(i + 1)
	}
	shift := i/subCount - 1
	mant := i - shift*subCount
	return float64(uint64(mant) << uint(shift)), float64(uint64(mant+1) << uint(shift))
}

// bucketRep returns the representative value of bucket i: the value itself
// for exact buckets, else the midpoint of [lo, hi-1] (integers are stored).
func bucketRep(i int) float64 {
	lo, hi := bucketBounds(i)
	if i < exactLimit {
		return lo
	}
	return (lo + hi - 1) / 2
}

// BucketValue returns the representative value of bucket i of a Histogram.
func BucketValue(i int) float64 { return bucketRep(i) }

// Histogram is a plain (not concurrent) count per bucket of one numerical
// feature. It merges exactly by adding counts.
type Histogram [NumBuckets]uint64

// Add records value v (in the feature's unit) n times.
func (h *Histogram) Add(v int64, n uint64) { h[bucketOf(v)] += n }

// Merge adds the counts of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o {
		h[i] += c
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// Distinct returns the number of non-empty buckets (the "unique values"
// Evidently's method choice looks at).
func (h *Histogram) Distinct() int {
	d := 0
	for _, c := range h {
		if c != 0 {
			d++
		}
	}
	return d
}

// Mean returns the mean of the bucket representatives (NaN when empty).
func (h *Histogram) Mean() float64 {
	m, _ := h.meanStd()
	return m
}

// Std returns the population standard deviation (ddof=0) of the bucket
// representatives, like numpy's std.
func (h *Histogram) Std() float64 {
	_, s := h.meanStd()
	return s
}

func (h *Histogram) meanStd() (mean, std float64) {
	var n, sum float64
	for i, c := range h {
		if c != 0 {
			n += float64(c)
			sum += float64(c) * bucketRep(i)
		}
	}
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	mean = sum / n
	var ss float64
	for i, c := range h {
		if c != 0 {
			d := bucketRep(i) - mean
			ss += float64(c) * d * d
		}
	}
	return mean, math.Sqrt(ss / n)
}

// Quantile returns the representative of the bucket holding the q-quantile
// (lower quantile, 0 <= q <= 1), or NaN when empty. Its relative error is at
// most RelativeError.
func (h *Histogram) Quantile(q float64) float64 {
	n := h.Count()
	if n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h {
		cum += c
		if cum >= rank {
			return bucketRep(i)
		}
	}
	return bucketRep(NumBuckets - 1)
}

// span returns the first and one past the last non-empty bucket of h or o.
func span(h, o *Histogram) (lo, hi int) {
	lo, hi = NumBuckets, 0
	for i := range h {
		if h[i] != 0 || o[i] != 0 {
			if i < lo {
				lo = i
			}
			hi = i + 1
		}
	}
	return lo, hi
}
