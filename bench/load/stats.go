package load

import (
	"math"
	"slices"
	"time"
)

// Class is the outcome class of one request.
type Class uint8

// Outcome classes. A request is OK when it got a 2xx status and, for a stream, a clean end.
const (
	OK Class = iota
	ErrConnect
	ErrTimeout
	Err429 // too many requests: the target sheds load, which no other 4xx means
	Err4xx
	Err5xx
	ErrStream
	ErrClosed // the target closed or reset the connection before the response was complete
	ErrOther
	numClasses
)

var classNames = [numClasses]string{"ok", "connect", "timeout", "429", "4xx", "5xx", "stream-error", "closed", "other"}

// String returns the class name used in reports.
func (c Class) String() string { return classNames[c] }

// Dist summarises a set of durations with exact percentiles (nearest rank).
type Dist struct {
	N    int           `json:"n"`
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// Summarize sorts d in place and returns its distribution.
func Summarize(d []time.Duration) Dist {
	if len(d) == 0 {
		return Dist{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return Dist{
		N:    len(d),
		Mean: sum / time.Duration(len(d)),
		P50:  Percentile(d, 0.50),
		P90:  Percentile(d, 0.90),
		P99:  Percentile(d, 0.99),
		P999: Percentile(d, 0.999),
		Max:  d[len(d)-1],
	}
}

// Percentile returns the q-quantile (0 < q <= 1) of sorted by nearest rank: the smallest value
// with at least q of the samples at or below it. It returns 0 for no samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// ceil(q*n), less an epsilon so that float error in e.g. 0.99*100 cannot push the rank
	// one past the intended sample.
	rank := int(math.Ceil(q*float64(n) - 1e-9))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// medianDist returns the field-wise median of ds (rounds of one target); N is summed. A round
// without samples (every request failed) has no latency, not a latency of 0: it is left out.
func medianDist(ds []Dist) Dist {
	ds = slices.DeleteFunc(slices.Clone(ds), func(d Dist) bool { return d.N == 0 })
	var m Dist
	for _, d := range ds {
		m.N += d.N
	}
	get := func(f func(Dist) time.Duration) time.Duration {
		v := make([]time.Duration, len(ds))
		for i, d := range ds {
			v[i] = f(d)
		}
		slices.Sort(v)
		return medianOf(v)
	}
	m.Mean = get(func(d Dist) time.Duration { return d.Mean })
	m.P50 = get(func(d Dist) time.Duration { return d.P50 })
	m.P90 = get(func(d Dist) time.Duration { return d.P90 })
	m.P99 = get(func(d Dist) time.Duration { return d.P99 })
	m.P999 = get(func(d Dist) time.Duration { return d.P999 })
	m.Max = get(func(d Dist) time.Duration { return d.Max })
	return m
}

// medianOf returns the median of sorted values (mean of the middle two for an even count).
func medianOf[T time.Duration | float64](sorted []T) T {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	default:
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
}

// sortedCopy returns a sorted copy of d.
func sortedCopy[T time.Duration | float64](d []T) []T {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
