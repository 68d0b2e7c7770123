package gateway

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/llmgate/llmgate/drift"
	"github.com/llmgate/llmgate/router"
)

// A progressive rollout moves an alias's canary through steps of traffic, checking it against
// stable before each step and at every tick: a failed check rolls back at once, a passed last
// step promotes. One goroutine (the rollouts' owner, started in New and stopped in Close) runs
// every rollout; with several replicas only the elected one would (the distributed store's
// issue).

// rolloutStep is one step of a plan.
type rolloutStep struct {
	CanaryPercent int      `json:"canary_percent"`
	MinDuration   duration `json:"min_duration"`
	MinRequests   uint64   `json:"min_requests"`
}

// duration is a time.Duration written as "5m" in JSON.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

func (d *duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New(`want a duration string such as "5m"`)
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil || v < 0 {
		return fmt.Errorf("want a duration such as \"5m\", got %s", b)
	}
	*d = duration(v)
	return nil
}

// Rollout states.
const (
	rolloutRunning    = "running"
	rolloutPaused     = "paused"
	rolloutPromoted   = "promoted"
	rolloutRolledBack = "rolled_back"
	rolloutAborted    = "aborted"
)

// rollout is one alias's plan and where it stands.
type rollout struct {
	Alias     string        `json:"alias"`
	Canary    string        `json:"canary"`
	Steps     []rolloutStep `json:"steps"`
	Checks    rolloutChecks `json:"checks"`
	Step      int           `json:"step"` // index into Steps
	State     string        `json:"state"`
	Reason    string        `json:"reason,omitempty"`
	StepStart time.Time     `json:"step_started"`
	Started   time.Time     `json:"started"`
	Actor     string        `json:"actor"`
	Last      *analysis     `json:"last_analysis,omitempty"`
	stepBase  uint64        // canary requests when the step started

	// What the analysis reads: stable's and the canary's samples since the rollout started
	// (see versionStats.rollout); nil without statistics.
	stableVS, canaryVS   *versionStats
	stableRec, canaryRec *drift.Recorder
}

// watch starts recording stable's and the canary's samples for r alone.
func (r *rollout) watch(stable, canary *versionStats) {
	if stable == nil || canary == nil {
		return
	}
	opts := func(vs *versionStats) drift.Options {
		o := vs.opts
		o.Rolling = false // the analysis reads the live window only
		return o
	}
	r.stableVS, r.canaryVS = stable, canary
	r.stableRec, r.canaryRec = drift.NewRecorder(opts(stable)), drift.NewRecorder(opts(canary))
	stable.rollout.Store(r.stableRec)
	canary.rollout.Store(r.canaryRec)
}

// end moves r to a final state and stops the recording watch started.
func (r *rollout) end(state, reason string) {
	r.State, r.Reason = state, reason
	if r.stableVS != nil {
		r.stableVS.rollout.CompareAndSwap(r.stableRec, nil)
		r.canaryVS.rollout.CompareAndSwap(r.canaryRec, nil)
	}
}

// rolloutActions are what a rollout does to the deploy state; the deploy API implements them.
type rolloutActions interface {
	setCanaryPercent(alias, canary string, percent int, actor, reason string) error
	promote(alias, actor, reason string) error
	rollback(alias, actor, reason string) error
}

// rollouts runs every alias's rollout.
type rollouts struct {
	mu       sync.Mutex
	byAlias  map[string]*rollout
	actions  rolloutActions
	stats    func(alias, version string) *versionStats
	stableOf func(alias string) string // the alias's stable version now
	policy   drift.Policy
	now      func() time.Time
	stop     chan struct{}
	done     chan struct{}
	wake     chan struct{} // a tick now (tests, admin verbs)
}

var errRolloutRunning = errors.New("a rollout is already running for this model; pause, abort or wait for it")

// start begins r; the first step's traffic is set at once.
func (rs *rollouts) start(r *rollout) error { return rs.startIf(r, nil) }

// startIf is start after check (the admin API's If-Match), which runs under the rollouts' lock
// so that no rollout step or operator change of the split comes between the two.
func (rs *rollouts) startIf(r *rollout, check func() error) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if cur := rs.byAlias[r.Alias]; cur != nil && (cur.State == rolloutRunning || cur.State == rolloutPaused) {
		return errRolloutRunning
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	r.State, r.Step, r.Started, r.StepStart = rolloutRunning, 0, rs.now(), rs.now()
	if err := rs.actions.setCanaryPercent(r.Alias, r.Canary, r.Steps[0].CanaryPercent, r.Actor, "rollout step 1"); err != nil {
		return err
	}
	r.watch(rs.stats(r.Alias, rs.stableOf(r.Alias)), rs.stats(r.Alias, r.Canary))
	r.stepBase = rs.canaryRequests(r)
	rs.byAlias[r.Alias] = r
	return nil
}

// verb pauses, resumes or aborts alias's rollout after check (the admin API's If-Match; nil
// for none), which runs under the rollouts' lock as in startIf.
func (rs *rollouts) verb(alias, verb, actor string, check func() error) (*rollout, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.byAlias[alias]
	if r == nil {
		return nil, errors.New("no rollout for this model")
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, err
		}
	}
	switch {
	case verb == "pause" && r.State == rolloutRunning:
		r.State = rolloutPaused
	case verb == "resume" && r.State == rolloutPaused:
		r.State, r.StepStart, r.stepBase = rolloutRunning, rs.now(), rs.canaryRequests(r)
	case verb == "abort" && (r.State == rolloutRunning || r.State == rolloutPaused):
		if err := rs.actions.rollback(alias, actor, "rollout aborted by "+actor); err != nil {
			return nil, err
		}
		r.end(rolloutAborted, "aborted by "+actor)
	default:
		return nil, fmt.Errorf("cannot %s a rollout that is %s", verb, r.State)
	}
	c := *r
	return &c, nil
}

// operatorChange runs change, an operator's change of alias's split (traffic, promote,
// rollback), under the rollouts' lock so it never interleaves with a rollout's step. When it
// succeeds, alias's running or paused rollout ends: the operator took over, and the rollout
// must not set its own split again at its next step, nor roll back what was just promoted.
func (rs *rollouts) operatorChange(alias, actor, verb string, change func() (*router.State, error)) (*router.State, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	next, err := change()
	if err != nil {
		return nil, err
	}
	if r := rs.byAlias[alias]; r != nil && (r.State == rolloutRunning || r.State == rolloutPaused) {
		r.end(rolloutAborted, "ended by "+actor+"'s "+verb)
	}
	return next, nil
}

// get returns a copy of alias's rollout, or nil.
func (rs *rollouts) get(alias string) *rollout {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.byAlias[alias]; r != nil {
		c := *r
		return &c
	}
	return nil
}

// snapshot returns state() and a copy of every alias's rollout, read under the rollouts' lock
// so that the two agree (see viewState).
func (rs *rollouts) snapshot(state func() *router.State) (*router.State, map[string]*rollout) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make(map[string]*rollout, len(rs.byAlias))
	for alias, r := range rs.byAlias {
		c := *r
		out[alias] = &c
	}
	return state(), out
}

func (rs *rollouts) canaryRequests(r *rollout) uint64 {
	if r.canaryRec == nil {
		return 0
	}
	var s drift.Snapshot
	r.canaryRec.Live(&s)
	return s.Count()
}

func (rs *rollouts) run(interval time.Duration) {
	defer close(rs.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-rs.stop:
			return
		case <-t.C:
		case <-rs.wake:
		}
		rs.tick()
	}
}

// tick advances every running rollout by what its analysis says.
func (rs *rollouts) tick() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.byAlias {
		if r.State == rolloutRunning {
			rs.advance(r)
		}
	}
}

func (rs *rollouts) advance(r *rollout) {
	if r.stableRec == nil {
		return // no statistics to judge by
	}
	var stable, canary drift.Snapshot
	r.stableRec.Live(&stable)
	r.canaryRec.Live(&canary)
	a := analyzeCanary(&stable, &canary, r.Checks, &rs.policy)
	r.Last = &a
	if a.Verdict == analysisFail {
		reason := "automatic rollback: " + a.reason()
		if err := rs.actions.rollback(r.Alias, "rollout", reason); err == nil {
			r.end(rolloutRolledBack, reason)
		}
		return
	}
	step := r.Steps[r.Step]
	// The live window slides: samples older than it leave the count, which can then fall below
	// the step's base. Count that as no requests yet rather than wrap around to "plenty".
	var stepRequests uint64
	if n := canary.Count(); n > r.stepBase {
		stepRequests = n - r.stepBase
	}
	if rs.now().Sub(r.StepStart) < time.Duration(step.MinDuration) || stepRequests < step.MinRequests {
		return
	}
	if a.Verdict != analysisPass {
		return // not enough evidence yet: stay on this step
	}
	if r.Step == len(r.Steps)-1 {
		if err := rs.actions.promote(r.Alias, "rollout", "rollout passed every step"); err == nil {
			r.end(rolloutPromoted, "passed every step")
		}
		return
	}
	r.Step++
	if err := rs.actions.setCanaryPercent(r.Alias, r.Canary, r.Steps[r.Step].CanaryPercent, "rollout",
		fmt.Sprintf("rollout step %d of %d", r.Step+1, len(r.Steps))); err == nil {
		r.StepStart, r.stepBase = rs.now(), canary.Count()
	}
}

// validate checks a plan from the admin API; the error names the field.
func (r *rollout) validate() *apiError {
	if r.Canary == "" {
		return badRequest("canary", "A rollout needs the canary version.")
	}
	if len(r.Steps) == 0 || len(r.Steps) > 20 {
		return badRequest("steps", "A rollout needs 1 to 20 steps.")
	}
	prev := 0
	for i, s := range r.Steps {
		if s.CanaryPercent <= prev || s.CanaryPercent > 100 {
			return badRequest(fmt.Sprintf("steps[%d].canary_percent", i), "Step percentages must rise, each within 1..100.")
		}
		prev = s.CanaryPercent
	}
	for name, v := range map[string]float64{"checks.max_error_rate_increase": r.Checks.MaxErrorRateIncrease,
		"checks.max_refusal_rate_increase": r.Checks.MaxRefusalRateIncrease, "checks.max_blocked_rate_increase": r.Checks.MaxBlockedRateIncrease} {
		if v < 0 || v > 1 {
			return badRequest(name, "A rate margin is within 0..1.")
		}
	}
	for name, v := range map[string]float64{"checks.max_p95_latency_ratio": r.Checks.MaxP95LatencyRatio, "checks.max_ttft_p95_ratio": r.Checks.MaxTTFTP95Ratio} {
		if v != 0 && v < 1 {
			return badRequest(name, "A latency ratio limit is at least 1.")
		}
	}
	return nil
}
