package drift

import (
	"encoding/json"
	"math"
	"time"
)

// Snapshot is a plain copy of a window's counters: what reports are computed
// from and what replicas exchange. Snapshots merge exactly (counts add), so
// merging per-replica snapshots of one window equals the snapshot a single
// replica would have recorded. A Snapshot is about 52 KiB; reuse one with
// Reset where that matters.
type Snapshot struct {
	Start time.Time              // start of the oldest slice in the window
	End   time.Time              // when the window was read
	Num   [NumNumeric]Histogram  // numerical features, by Feature
	Cat   [numCatCounters]uint64 // categorical counters, see Categorical, then NotForwarded's
}

// Reset zeroes s.
func (s *Snapshot) Reset() { *s = Snapshot{} }

// Merge adds o's counts to s and widens s's bounds to cover o's.
func (s *Snapshot) Merge(o *Snapshot) {
	for f := range s.Num {
		s.Num[f].Merge(&o.Num[f])
	}
	for i, c := range o.Cat {
		s.Cat[i] += c
	}
	if s.Start.IsZero() || (!o.Start.IsZero() && o.Start.Before(s.Start)) {
		s.Start = o.Start
	}
	if o.End.After(s.End) {
		s.End = o.End
	}
}

// subtract takes o's counts out of s, never below zero; s must have been read after o from
// the same counters (which only grow), as Recorder.Report does with a slice.
func (s *Snapshot) subtract(o *Snapshot) {
	for f := range s.Num {
		for i, c := range o.Num[f] {
			s.Num[f][i] -= min(c, s.Num[f][i])
		}
	}
	for i, c := range o.Cat {
		s.Cat[i] -= min(c, s.Cat[i])
	}
}

// Numeric returns the histogram of numerical feature f.
func (s *Snapshot) Numeric(f Feature) *Histogram { return &s.Num[f] }

// Categorical returns the counters of categorical feature f, in the order
// of f.Categories(). The slice aliases s.
func (s *Snapshot) Categorical(f Feature) []uint64 {
	i := int(f) - NumNumeric
	return s.Cat[catOffset[i]:catOffset[i+1]]
}

// Count returns the number of requests in s (every request has one status).
func (s *Snapshot) Count() uint64 { return sum(s.Categorical(FeatureStatus)) }

// Share returns the fraction of requests whose feature f has category c
// (for the guard bitsets: requests with bit c-1 set). NaN when empty.
func (s *Snapshot) Share(f Feature, c int) float64 {
	n := s.Count()
	if n == 0 {
		return math.NaN()
	}
	return float64(s.Categorical(f)[c]) / float64(n)
}

// Summary is the side-by-side view of one version for /admin/stats.
// Latencies are in seconds. Fields are NaN when there is no data.
type Summary struct {
	Requests        uint64  `json:"requests"`
	RequestRate     float64 `json:"request_rate"` // per second over the window
	ErrorRate       float64 `json:"error_rate"`   // Failures over Answered: the rate a rollout judges
	LatencyP50      float64 `json:"latency_p50"`
	LatencyP95      float64 `json:"latency_p95"`
	LatencyP99      float64 `json:"latency_p99"`
	TTFTP50         float64 `json:"ttft_p50"`
	TTFTP95         float64 `json:"ttft_p95"`
	TTFTP99         float64 `json:"ttft_p99"`
	TokensPerSecond float64 `json:"tokens_per_second"` // 1 / mean inter-token latency
	CacheHitRatio   float64 `json:"cache_hit_ratio"`   // hits / (hits + misses)
	GuardHitRate    float64 `json:"guard_hit_rate"`    // share with any PII entity
	SafetyHitRate   float64 `json:"safety_hit_rate"`   // share with any safety category
	RefusalRate     float64 `json:"refusal_rate"`      // of the answers given (Answers)
}

// Failures returns the requests the model version is to blame for: backend errors, timeouts,
// no backend in service, rate limiting and other failures. A client that went away (a chat UI's
// "stop"), a client's bad request and a guard block are not the version's failures; the guard
// has its own rate.
func (s *Snapshot) Failures() uint64 {
	c := s.Categorical(FeatureStatus)
	return c[StatusUpstreamError] + c[StatusTimeout] + c[StatusUnavailable] + c[StatusRateLimited] + c[StatusOther]
}

// Failure reports whether st is one of the statuses Failures counts.
func (st Status) Failure() bool {
	switch st {
	case StatusUpstreamError, StatusTimeout, StatusUnavailable, StatusRateLimited, StatusOther:
		return true
	}
	return false
}

// Answered returns the requests a backend of the version was asked to answer, and its
// failures: all but the cache's answers (hits, and requests answered by another request's
// backend call), which never fail the way a backend does, and the requests the gateway answered
// without asking a backend (NotForwarded: blocked prompts, bad requests). Rates of Failures
// that judge a version's backends divide by it: divided by every request, a warm cache or a
// wave of blocked prompts dilutes them, and a new version starts with an empty cache.
func (s *Snapshot) Answered() uint64 {
	n := s.Count()
	return n - min(s.Categorical(FeatureCache)[CacheHit]+s.NotForwarded(), n)
}

// NotForwarded returns the requests the gateway answered without asking a backend and not as
// a failure of the version (Sample.NotForwarded).
func (s *Snapshot) NotForwarded() uint64 { return s.Cat[catNotForwarded] }

// Answers returns the answers given: the requests answered with status OK, the cache's
// replays included. A refusal rate divides by it: a refusal is read from an answer's text, and
// divided by every request, a version's errors and blocked prompts diluted it.
func (s *Snapshot) Answers() uint64 { return s.Categorical(FeatureStatus)[StatusOK] }

// Refusals returns the answers that read as a refusal.
func (s *Snapshot) Refusals() uint64 { return s.Categorical(FeatureRefusal)[1] }

// Summary computes s's summary. Quantiles carry the histogram's relative
// error (RelativeError).
func (s *Snapshot) Summary() Summary {
	n := s.Count()
	nan := math.NaN()
	out := Summary{Requests: n, RequestRate: nan, ErrorRate: nan, CacheHitRatio: nan,
		GuardHitRate: nan, SafetyHitRate: nan, RefusalRate: nan}
	if d := s.End.Sub(s.Start).Seconds(); d > 0 {
		out.RequestRate = float64(n) / d
	}
	if a := s.Answered(); a > 0 {
		// Of the answers a backend gave, as a rollout's analysis divides: over every request,
		// a warm cache diluted the figure, and the same version read one error rate here and
		// another in its rollout's checks.
		out.ErrorRate = float64(s.Failures()) / float64(a)
	}
	if n > 0 {
		out.GuardHitRate = 1 - s.Share(FeatureEntities, 0)
		out.SafetyHitRate = 1 - s.Share(FeatureSafety, 0)
	}
	if a := s.Answers(); a > 0 {
		out.RefusalRate = float64(s.Refusals()) / float64(a)
	}
	// The bitset features count one per set bit, so "any" is 1 - none share.
	cache := s.Categorical(FeatureCache)
	if h, m := cache[CacheHit], cache[CacheMiss]; h+m > 0 {
		out.CacheHitRatio = float64(h) / float64(h+m)
	}
	const us = 1e-6
	lat, ttft := &s.Num[FeatureLatency], &s.Num[FeatureTTFT]
	out.LatencyP50, out.LatencyP95, out.LatencyP99 = lat.Quantile(.5)*us, lat.Quantile(.95)*us, lat.Quantile(.99)*us
	out.TTFTP50, out.TTFTP95, out.TTFTP99 = ttft.Quantile(.5)*us, ttft.Quantile(.95)*us, ttft.Quantile(.99)*us
	out.TokensPerSecond = 1 / (s.Num[FeatureInterToken].Mean() * us)
	return out
}

func sum(c []uint64) uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// MarshalJSON writes figures that are not defined (NaN: no data yet) as null.
func (s Summary) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Requests        uint64   `json:"requests"`
		RequestRate     *float64 `json:"request_rate"`
		ErrorRate       *float64 `json:"error_rate"`
		LatencyP50      *float64 `json:"latency_p50"`
		LatencyP95      *float64 `json:"latency_p95"`
		LatencyP99      *float64 `json:"latency_p99"`
		TTFTP50         *float64 `json:"ttft_p50"`
		TTFTP95         *float64 `json:"ttft_p95"`
		TTFTP99         *float64 `json:"ttft_p99"`
		TokensPerSecond *float64 `json:"tokens_per_second"`
		CacheHitRatio   *float64 `json:"cache_hit_ratio"`
		GuardHitRate    *float64 `json:"guard_hit_rate"`
		SafetyHitRate   *float64 `json:"safety_hit_rate"`
		RefusalRate     *float64 `json:"refusal_rate"`
	}{s.Requests, finite(s.RequestRate), finite(s.ErrorRate), finite(s.LatencyP50), finite(s.LatencyP95),
		finite(s.LatencyP99), finite(s.TTFTP50), finite(s.TTFTP95), finite(s.TTFTP99), finite(s.TokensPerSecond),
		finite(s.CacheHitRatio), finite(s.GuardHitRate), finite(s.SafetyHitRate), finite(s.RefusalRate)})
}
