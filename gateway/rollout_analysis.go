package gateway

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/llmgate/llmgate/drift"
)

// rolloutChecks are a rollout's analysis thresholds against stable, in the spirit of Kayenta
// and Argo Rollouts: a check fails only when the canary is worse by more than its margin AND the
// difference is statistically significant (Mann-Whitney U for latencies, two-proportion z-test
// for rates), with both sides above the policy's minimum sample size.
type rolloutChecks struct {
	MaxErrorRateIncrease   float64 `json:"max_error_rate_increase"`   // absolute, e.g. 0.02
	MaxP95LatencyRatio     float64 `json:"max_p95_latency_ratio"`     // canary p95 / stable p95
	MaxTTFTP95Ratio        float64 `json:"max_ttft_p95_ratio"`        // streams
	MaxRefusalRateIncrease float64 `json:"max_refusal_rate_increase"` // absolute
	MaxBlockedRateIncrease float64 `json:"max_blocked_rate_increase"` // guard blocks, absolute
	MaxSafetyRateIncrease  float64 `json:"max_safety_rate_increase"`  // requests with a safety hit
	MaxPIIRateIncrease     float64 `json:"max_pii_rate_increase"`     // requests with personal data
	// FailOnDrift also fails the canary when any feature of its traffic or answers has drifted
	// from stable's (the drift package's tests); off by default, since a new model is expected
	// to answer somewhat differently.
	FailOnDrift bool `json:"fail_on_drift"`
}

// defaultRolloutChecks are used for the thresholds a rollout leaves at zero.
var defaultRolloutChecks = rolloutChecks{MaxErrorRateIncrease: 0.02, MaxP95LatencyRatio: 1.5, MaxTTFTP95Ratio: 1.5,
	MaxRefusalRateIncrease: 0.05, MaxBlockedRateIncrease: 0.05, MaxSafetyRateIncrease: 0.05, MaxPIIRateIncrease: 0.05}

func (c rolloutChecks) withDefaults() rolloutChecks {
	d := defaultRolloutChecks
	pick := func(v, def float64) float64 {
		if v > 0 {
			return v
		}
		return def
	}
	return rolloutChecks{pick(c.MaxErrorRateIncrease, d.MaxErrorRateIncrease), pick(c.MaxP95LatencyRatio, d.MaxP95LatencyRatio),
		pick(c.MaxTTFTP95Ratio, d.MaxTTFTP95Ratio), pick(c.MaxRefusalRateIncrease, d.MaxRefusalRateIncrease),
		pick(c.MaxBlockedRateIncrease, d.MaxBlockedRateIncrease), pick(c.MaxSafetyRateIncrease, d.MaxSafetyRateIncrease),
		pick(c.MaxPIIRateIncrease, d.MaxPIIRateIncrease), c.FailOnDrift}
}

// minLatencyIncrease is the least p95 increase a latency check fails on, whatever the ratio:
// against a backend answering in 0.2 ms, 0.3 ms is 1.5x and means nothing to a user.
const minLatencyIncrease = 5 * time.Millisecond

// waitRationale says what a check that waits is waiting for: drift.min_samples requests on each
// side, a figure a rollout's own --step-requests does not lower, so that an operator who sees a
// step wait past its min_requests knows why and for how many more.
func waitRationale(minSamples uint64) string {
	return fmt.Sprintf("waiting for %d requests on each side (drift.min_samples)", minSamples)
}

// Analysis verdicts.
const (
	analysisPass = "pass" // every check decided and none failed
	analysisFail = "fail" // a check failed: roll back
	analysisWait = "wait" // not enough samples yet for some check; nothing failed
)

// checkResult is one check of an analysis, as history and the admin API show it.
type checkResult struct {
	Check     string   `json:"check"`
	Method    string   `json:"method"`
	Stable    *float64 `json:"stable"` // the compared figure on each side (rate or p95 seconds)
	Canary    *float64 `json:"canary"`
	Limit     float64  `json:"limit"` // the margin: an absolute increase or a ratio
	PValue    *float64 `json:"p_value"`
	Verdict   string   `json:"verdict"` // pass | fail | wait
	StableN   uint64   `json:"stable_n"`
	CanaryN   uint64   `json:"canary_n"`
	Rationale string   `json:"rationale,omitempty"`
}

// analysis is the outcome of comparing a canary's live window with stable's.
type analysis struct {
	Verdict string        `json:"verdict"`
	Checks  []checkResult `json:"checks"`
}

// reason names the failed checks for history and the log.
func (a analysis) reason() string {
	s := ""
	for _, c := range a.Checks {
		if c.Verdict == analysisFail {
			if s != "" {
				s += "; "
			}
			s += c.Rationale
		}
	}
	return s
}

// analyzeCanary runs the checks of c on the two live windows. allCanary says the canary takes
// all the traffic (a step of 100%): stable then gets none, and where it has too few samples
// to compare with (after a restart at that step, or once its earlier samples have left the
// window) the canary's error rate is judged against its margin alone, and the other checks
// pass, rather than wait forever. The same holds for the error rate and latency while stable
// answers (nearly) all its requests from its cache: they judge the backends' answers only.
func analyzeCanary(stable, canary *drift.Snapshot, c rolloutChecks, p *drift.Policy, allCanary bool) analysis {
	c = c.withDefaults()
	tests := map[string]drift.Result{}
	for _, r := range drift.Rollout(stable, canary, p) {
		tests[r.Feature] = r
	}
	var out analysis
	// rate checks the share of x in n, the requests that could have x.
	rate := func(name, test string, x, n func(*drift.Snapshot) uint64, limit float64) {
		r := tests[test]
		sn, cn := n(stable), n(canary)
		cr := checkResult{Check: name, Method: string(r.Method), Limit: limit, PValue: finiteFloat(r.PValue), StableN: sn, CanaryN: cn}
		var sv, cv float64
		if sn > 0 {
			sv = float64(x(stable)) / float64(sn)
			cr.Stable = &sv
		}
		if cn > 0 {
			cv = float64(x(canary)) / float64(cn)
			cr.Canary = &cv
		}
		switch {
		case r.Verdict == drift.VerdictInsufficient && name == "error_rate" && plainlyWorse(x(stable), sn, x(canary), cn, limit):
			// Too few samples for the test, but a canary failing this plainly must not keep
			// failing its users until it has the minimum.
			cr.Verdict = analysisFail
			cr.Rationale = fmt.Sprintf("%s %.3f on the canary vs %.3f on stable after %d answers from the canary's backends: worse beyond doubt before the minimum sample (limit +%.3f)", name, cv, sv, cn, limit)
		case r.Verdict == drift.VerdictInsufficient && (allCanary || stable.Count() >= p.MinSamples) && sn < p.MinSamples && cn >= earlyMinCanary:
			// The error rate as if stable had no failures: a canary worse than that by the
			// margin beyond doubt fails, from as few requests as the early check above judges.
			// Any other rate passes: refusals, blocks, safety and PII hits have an every-day
			// level that the users' prompts set, not the canary. Stable has too few requests
			// here at 100%, or too few its backends answered while its warm cache answers the
			// rest (the error rate's n): waiting would hold the step for as long as its cache
			// stays warm, and the early check, with nothing on stable's side, never fires.
			lo, _ := wilson(x(canary), cn, earlyZ)
			switch {
			case name == "error_rate" && lo > limit && allCanary:
				cr.Verdict = analysisFail
				cr.Rationale = fmt.Sprintf("%s %.3f on the canary after %d requests at 100%%, with no stable traffic to compare: above the limit %.3f beyond doubt", name, cv, cn, limit)
			case name == "error_rate" && lo > limit:
				cr.Verdict = analysisFail
				cr.Rationale = fmt.Sprintf("%s %.3f on the canary after %d backend answers, with %d on stable to compare (its cache answers the rest): above the limit %.3f beyond doubt", name, cv, cn, sn, limit)
			case cn < p.MinSamples:
				cr.Verdict, cr.Rationale = analysisWait, waitRationale(p.MinSamples)
			case allCanary:
				cr.Verdict, cr.Rationale = analysisPass, "stable takes no traffic at 100%: nothing to compare with"
			default:
				cr.Verdict, cr.Rationale = analysisPass, "too few backend answers on stable to compare: its cache answers the rest"
			}
		case r.Verdict == drift.VerdictInsufficient:
			cr.Verdict, cr.Rationale = analysisWait, waitRationale(p.MinSamples)
		case r.Verdict == drift.VerdictDrift && cv-sv > limit:
			cr.Verdict = analysisFail
			cr.Rationale = fmt.Sprintf("%s %.3f on the canary vs %.3f on stable (limit +%.3f, p=%.2g)", name, cv, sv, limit, r.PValue)
		default:
			cr.Verdict = analysisPass
		}
		out.Checks = append(out.Checks, cr)
	}
	latency := func(name, test string, f drift.Feature, limit float64) {
		r := tests[test]
		sh, ch := &stable.Num[f], &canary.Num[f]
		cr := checkResult{Check: name, Method: string(r.Method), Limit: limit, PValue: finiteFloat(r.PValue), StableN: sh.Count(), CanaryN: ch.Count()}
		sp, cp := sh.Quantile(0.95)*1e-6, ch.Quantile(0.95)*1e-6 // histograms hold microseconds
		cr.Stable, cr.Canary = finiteFloat(sp), finiteFloat(cp)
		switch {
		case f == drift.FeatureTTFT && sh.Count() < p.MinSamples:
			// TTFT exists for streams only: without enough of them on stable there is nothing
			// to compare with, and waiting would stall a rollout of buffered traffic forever.
			cr.Verdict, cr.Rationale = analysisPass, "too few streams on stable to compare TTFT"
		case f == drift.FeatureTTFT && ch.Count() < p.MinSamples && canary.Count() >= p.MinSamples:
			// The same on the canary's side: its share may get buffered requests only.
			cr.Verdict, cr.Rationale = analysisPass, "too few streams on the canary to compare TTFT"
		case f == drift.FeatureLatency && sh.Count() < p.MinSamples && stable.Count() >= p.MinSamples:
			// Latency leaves the cache's answers out: while stable's warm cache answers (nearly)
			// all its share, its backends have nothing to compare with, and waiting would hold
			// the step for as long as its cache stays warm.
			cr.Verdict, cr.Rationale = analysisPass, "too few backend answers on stable to compare latency: its cache answers the rest"
		case allCanary && sh.Count() < p.MinSamples && ch.Count() >= p.MinSamples:
			cr.Verdict, cr.Rationale = analysisPass, "stable takes no traffic at 100%: nothing to compare with"
		case r.Verdict == drift.VerdictInsufficient:
			cr.Verdict, cr.Rationale = analysisWait, waitRationale(p.MinSamples)
		case sp == 0 || math.IsNaN(sp) || math.IsNaN(cp):
			cr.Verdict = analysisWait
		case r.Verdict == drift.VerdictDrift && cp/sp > limit && cp-sp > minLatencyIncrease.Seconds():
			cr.Verdict = analysisFail
			cr.Rationale = fmt.Sprintf("%s %.1f ms on the canary vs %.1f ms on stable (limit x%.2f, p=%.2g)", name, cp*1e3, sp*1e3, limit, r.PValue)
		default:
			cr.Verdict = analysisPass
		}
		out.Checks = append(out.Checks, cr)
	}
	// Failures of the backends' answers: the cache's never fail, and stable's is warm, so
	// divided by every request its error rate read as a fraction of the canary's with the
	// same backends, which rolled the canary back.
	rate("error_rate", "error_rate", (*drift.Snapshot).Failures, (*drift.Snapshot).Answered, c.MaxErrorRateIncrease)
	latency("p95_latency", "latency_us", drift.FeatureLatency, c.MaxP95LatencyRatio)
	latency("p95_ttft", "ttft_us", drift.FeatureTTFT, c.MaxTTFTP95Ratio)
	// Refusals of the answers given: divided by every request, a canary's failures lowered its
	// refusal rate.
	rate("refusal_rate", "refusal_rate", (*drift.Snapshot).Refusals, (*drift.Snapshot).Answers, c.MaxRefusalRateIncrease)
	rate("blocked_rate", "blocked_rate", func(s *drift.Snapshot) uint64 {
		return s.Categorical(drift.FeatureStatus)[drift.StatusBlocked]
	}, (*drift.Snapshot).Count, c.MaxBlockedRateIncrease)
	// Requests with any safety category or PII entity: the bitset features count "none" once
	// per request without a hit.
	anyHit := func(f drift.Feature) func(*drift.Snapshot) uint64 {
		return func(s *drift.Snapshot) uint64 { return s.Count() - s.Categorical(f)[0] }
	}
	for _, h := range []struct {
		name  string
		f     drift.Feature
		limit float64
	}{{"safety_rate", drift.FeatureSafety, c.MaxSafetyRateIncrease}, {"pii_rate", drift.FeatureEntities, c.MaxPIIRateIncrease}} {
		x := anyHit(h.f)
		alpha := p.Alpha
		if alpha == 0 {
			alpha = drift.DefaultPolicy().Alpha
		}
		tests[h.name] = drift.TwoProportions(x(stable), stable.Count(), x(canary), canary.Count(), alpha, p.MinSamples)
		rate(h.name, h.name, x, (*drift.Snapshot).Count, h.limit)
	}
	if c.FailOnDrift {
		rep := drift.Evaluate(backendAnswers(stable), backendAnswers(canary), p)
		cr := checkResult{Check: "drift", Method: "evaluate", StableN: rep.Reference.N, CanaryN: rep.Current.N, Verdict: analysisPass}
		var drifted []string
		decided := false // not rep.Decided, which leaves out features with one value
		for _, f := range rep.Features {
			if f.Verdict == drift.VerdictDrift {
				drifted = append(drifted, f.Feature)
			}
			decided = decided || f.Verdict != drift.VerdictInsufficient
		}
		switch {
		case !decided && allCanary && stable.Count() < p.MinSamples && canary.Count() >= p.MinSamples:
			cr.Rationale = "stable takes no traffic at 100%: nothing to compare with"
		case !decided:
			cr.Verdict = analysisWait
		case len(drifted) > 0:
			cr.Verdict = analysisFail
			cr.Rationale = fmt.Sprintf("drift from stable on %s", strings.Join(drifted, ", "))
		}
		out.Checks = append(out.Checks, cr)
	}

	out.Verdict = analysisPass
	for _, cr := range out.Checks {
		switch cr.Verdict {
		case analysisFail:
			out.Verdict = analysisFail
			return out
		case analysisWait:
			out.Verdict = analysisWait
		}
	}
	return out
}

// backendAnswers returns a copy of s without what its cache answered, for the drift check: a
// new version's cache is empty while stable's is warm, so the cache feature (the hit ratio)
// and the status (hits are answered 200, diluting the backends' failures) drifted for every
// canary, which fail_on_drift rolled back. The other features of a hit are the replayed
// answer's, or its prompt's, and stay.
func backendAnswers(s *drift.Snapshot) *drift.Snapshot {
	b := *s
	cache := b.Categorical(drift.FeatureCache)
	ok := &b.Categorical(drift.FeatureStatus)[drift.StatusOK]
	*ok -= min(cache[drift.CacheHit], *ok) // a hit is OK but for a rare block or stop
	clear(cache)
	return &b
}

// earlyMinCanary is the fewest canary backend answers plainlyWorse judges; earlyZ is how sure it must
// be: 3.89 standard errors, a one-sided 0.005 % per look, so that looking every second until
// the minimum sample (a hundred looks or so) still makes a false rollback rarer than 1 in 200.
const (
	earlyMinCanary = 10
	earlyZ         = 3.89
)

// plainlyWorse reports whether the canary's rate of x (xc of nc) is above stable's (xs of ns)
// by more than limit beyond doubt: the lower Wilson bound of the canary's rate exceeds the
// upper bound of stable's plus limit. It lets a rollout roll back a canary that fails most of
// its requests after a few of them, where the two-proportion test waits for its minimum
// sample; a canary a little worse still waits for the test.
func plainlyWorse(xs, ns, xc, nc uint64, limit float64) bool {
	if nc < earlyMinCanary {
		return false
	}
	lo, _ := wilson(xc, nc, earlyZ)
	_, hi := wilson(xs, ns, earlyZ)
	return lo > hi+limit
}

// wilson returns the Wilson score interval of x successes in n trials at z standard errors;
// [0, 1] when n is 0.
func wilson(x, n uint64, z float64) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	fn := float64(n)
	p := float64(x) / fn
	z2 := z * z
	center := p + z2/(2*fn)
	spread := z * math.Sqrt(p*(1-p)/fn+z2/(4*fn*fn))
	d := 1 + z2/fn
	return max(0, (center-spread)/d), min(1, (center+spread)/d)
}

func finiteFloat(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
