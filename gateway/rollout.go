package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
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
//
// The plan and how far it got are part of the deploy state (router.ModelState.Rollout),
// written in the same commit as the change each transition makes (a step's split, the promote,
// the rollback; pause and resume alone), so an acknowledged start or verb and every step
// survive a restart or a kill -9. The samples the analysis reads are in memory: after a
// restart the rollout resumes at its step and that step's evidence starts over.

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

// UnmarshalJSON reads a non-negative duration string; null leaves d as it is. Anything else is
// a *json.UnmarshalTypeError, which the decoder completes with the field's name, so the admin
// API's 400 names it in param as it does every field of the wrong type.
func (d *duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		if v, err := time.ParseDuration(s); err == nil && v >= 0 {
			*d = duration(v)
			return nil
		}
	}
	return &json.UnmarshalTypeError{Value: jsonValue(b), Type: reflect.TypeFor[duration]()}
}

// jsonValue describes a JSON value for an error: the value itself when it is a short string or
// number ("soon", 5), else its kind.
func jsonValue(b []byte) string {
	switch {
	case len(b) == 0:
		return "nothing"
	case b[0] == '{':
		return "an object"
	case b[0] == '[':
		return "an array"
	case b[0] == 't' || b[0] == 'f':
		return "a boolean"
	case len(b) > 40:
		if b[0] == '"' {
			return "a long string"
		}
		return "a long number"
	}
	return string(b)
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
	// StickySet: the split had no sticky key when the rollout started, so its steps split by
	// user (see setCanaryPercent); its promote or rollback sets it back to none, as the
	// operator left it, rather than leave a key nobody asked for.
	StickySet bool      `json:"sticky_set,omitempty"`
	Last      *analysis `json:"last_analysis,omitempty"`
	// ActionError says why the last action the analysis called for (the next step, the
	// promote, an automatic rollback) could not be committed, such as a full disk: the rollout
	// stays where it is and tries again at every tick. "" once an action commits. Not part of
	// the record, as Last.
	ActionError string `json:"action_error,omitempty"`
	stepBase    uint64 // canaryRequests when the step started

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

// record is r as the deploy state keeps it: the plan and where it stands, without the last
// analysis, which the next tick makes again.
func (r *rollout) record() *json.RawMessage {
	c := *r
	c.Last, c.ActionError = nil, ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic(err) // plain fields: cannot fail
	}
	raw := json.RawMessage(b)
	return &raw
}

// end moves r to a final state and stops the recording watch started.
func (r *rollout) end(state, reason string) {
	r.State, r.Reason, r.ActionError = state, reason, ""
	if r.stableVS != nil {
		r.stableVS.rollout.CompareAndSwap(r.stableRec, nil)
		r.canaryVS.rollout.CompareAndSwap(r.canaryRec, nil)
	}
}

// rolloutActions are what a rollout does to the deploy state; the deploy API implements them.
// Each commits rec, the rollout's record after the action, with the change it makes. ifMatch,
// when not 0, is the alias's revision the operator's If-Match names: the change commits only
// if the alias is still there then (router.Change.IfMatch).
type rolloutActions interface {
	setCanaryPercent(alias, canary string, percent int, actor, reason string, rec *json.RawMessage, ifMatch uint64) error
	promote(alias, actor, reason string, rec *json.RawMessage) error
	rollback(alias, actor, reason string, rec *json.RawMessage, ifMatch uint64) error
	// recordRollout commits rec alone (pause, resume), with a history entry from -> to.
	recordRollout(alias, actor, reason, from, to string, rec *json.RawMessage, ifMatch uint64) error
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
	log      *slog.Logger // nil: slog.Default()
	stop     chan struct{}
	done     chan struct{}
	wake     chan struct{} // a tick now (tests, admin verbs)
}

var errRolloutRunning = errors.New("a rollout is already running for this model; pause, abort or wait for it")

// rolloutStateError is a verb the rollout's state does not allow (a 409); an error of the
// change the verb makes (the store's) is not one.
type rolloutStateError string

func (e rolloutStateError) Error() string { return string(e) }

// start begins r; the first step's traffic is set at once.
func (rs *rollouts) start(r *rollout) error { return rs.startIf(r, 0, nil) }

// startIf is start after check (the admin API's If-Match), which runs under the rollouts' lock
// so that no rollout step or operator change of the split comes between the two. A deploy or
// shadow change does not take that lock, so the first step's change also carries ifMatch (0:
// none), checked again as it commits.
func (rs *rollouts) startIf(r *rollout, ifMatch uint64, check func() error) error {
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
	r.State, r.Step, r.Started, r.StepStart, r.Reason, r.Last = rolloutRunning, 0, rs.now(), rs.now(), "", nil
	if err := rs.actions.setCanaryPercent(r.Alias, r.Canary, r.Steps[0].CanaryPercent, r.Actor, "rollout step 1", r.record(), ifMatch); err != nil {
		return err
	}
	r.watch(rs.stats(r.Alias, rs.stableOf(r.Alias)), rs.stats(r.Alias, r.Canary))
	r.stepBase = rs.canaryRequests(r)
	rs.byAlias[r.Alias] = r
	return nil
}

// verb pauses, resumes or aborts alias's rollout after check (the admin API's If-Match; nil
// for none), which runs under the rollouts' lock, its change carrying ifMatch, as in startIf.
func (rs *rollouts) verb(alias, verb, actor string, ifMatch uint64, check func() error) (*rollout, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.byAlias[alias]
	if r == nil {
		return nil, rolloutStateError("no rollout for this model")
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, err
		}
	}
	next := *r
	switch {
	case verb == "pause" && r.State == rolloutRunning:
		next.State = rolloutPaused
		if err := rs.actions.recordRollout(alias, actor, "rollout paused by "+actor, r.State, next.State, next.record(), ifMatch); err != nil {
			return nil, err
		}
		r.State = next.State
	case verb == "resume" && r.State == rolloutPaused:
		next.State, next.StepStart = rolloutRunning, rs.now()
		if err := rs.actions.recordRollout(alias, actor, "rollout resumed by "+actor, r.State, next.State, next.record(), ifMatch); err != nil {
			return nil, err
		}
		r.State, r.StepStart, r.stepBase = next.State, next.StepStart, rs.canaryRequests(r)
	case verb == "abort" && (r.State == rolloutRunning || r.State == rolloutPaused):
		next.State, next.Reason = rolloutAborted, "aborted by "+actor
		if err := rs.actions.rollback(alias, actor, "rollout aborted by "+actor, next.record(), ifMatch); err != nil {
			return nil, err
		}
		r.end(next.State, next.Reason)
	default:
		return nil, rolloutStateError(fmt.Sprintf("cannot %s a rollout that is %s", verb, r.State))
	}
	c := *r
	return &c, nil
}

// operatorChange runs change, an operator's change of alias's split (traffic, promote,
// rollback), under the rollouts' lock so it never interleaves with a rollout's step. When it
// succeeds, alias's running or paused rollout ends: the operator took over, and the rollout
// must not set its own split again at its next step, nor roll back what was just promoted.
// change gets the ended rollout's record to commit with its change (nil when none runs).
// A rollout that had finished (promoted, rolled back, aborted) is over as well: the split is no
// longer what it made, and the change gets an empty record (noRollout), which clears it, so that
// the model no longer shows it as if it still described the split (GET /admin/models,
// llmgate admin status); history keeps what it did.
func (rs *rollouts) operatorChange(alias, actor, verb string, change func(ended *json.RawMessage) (*router.State, error)) (*router.State, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.byAlias[alias]
	active := r != nil && (r.State == rolloutRunning || r.State == rolloutPaused)
	var ended *json.RawMessage
	reason := "ended by " + actor + "'s " + verb
	switch {
	case active:
		e := *r
		e.State, e.Reason = rolloutAborted, reason
		ended = e.record()
	case r != nil:
		ended = new(json.RawMessage) // noRollout
	}
	next, err := change(ended)
	if err != nil {
		return nil, err
	}
	switch {
	case active:
		r.end(rolloutAborted, reason)
	case r != nil:
		delete(rs.byAlias, alias)
	}
	return next, nil
}

// noRollout reports whether rec, a rollout record a change commits, is the empty one that
// clears a finished rollout (see operatorChange, finishedOf).
func noRollout(rec *json.RawMessage) bool { return rec != nil && len(*rec) == 0 }

// finishedOf reports whether rec, an alias's rollout record in the deploy state, is of a
// finished rollout (promoted, rolled back, aborted) of version: once version is deleted, it
// describes nothing the model has, and its deletion clears it (see forgetFinished).
func finishedOf(rec json.RawMessage, version string) bool {
	var r struct {
		Canary string `json:"canary"`
		State  string `json:"state"`
	}
	return len(rec) > 0 && json.Unmarshal(rec, &r) == nil && r.Canary == version &&
		r.State != "" && r.State != rolloutRunning && r.State != rolloutPaused
}

// forgetFinished forgets alias's finished rollout of version, once the deletion of version
// committed its cleared record (see finishedOf).
func (rs *rollouts) forgetFinished(alias, version string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.byAlias[alias]; r != nil && r.Canary == version && r.State != rolloutRunning && r.State != rolloutPaused {
		delete(rs.byAlias, alias)
	}
}

// restore takes up a rollout from its record in the deploy state at start. A running or paused
// one goes on from its step; the samples its analysis read were in memory, so the step's
// minimum duration and requests count from now. It returns the rollout, or an error for a
// record it cannot read.
func (rs *rollouts) restore(alias string, raw json.RawMessage) (*rollout, error) {
	r := &rollout{}
	if err := json.Unmarshal(raw, r); err != nil {
		return nil, err
	}
	if r.Alias != alias || len(r.Steps) == 0 || r.Step < 0 || r.Step >= len(r.Steps) {
		return nil, fmt.Errorf("rollout record of %q names alias %q at step %d of %d", alias, r.Alias, r.Step+1, len(r.Steps))
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r.State == rolloutRunning || r.State == rolloutPaused {
		r.StepStart = rs.now()
		r.watch(rs.stats(alias, rs.stableOf(alias)), rs.stats(alias, r.Canary))
		r.stepBase = rs.canaryRequests(r)
	}
	rs.byAlias[alias] = r
	return r, nil
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

// canaryRequests counts the canary's requests recorded for rollouts so far. Not its window's
// count: samples leave the window, and a step asking for more requests than a window holds at
// the canary's rate never ended.
func (rs *rollouts) canaryRequests(r *rollout) uint64 {
	if r.canaryVS == nil {
		return 0
	}
	return r.canaryVS.rolloutN.Load()
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
	a := analyzeCanary(&stable, &canary, r.Checks, &rs.policy, r.Steps[r.Step].CanaryPercent == 100)
	r.Last = &a
	next := *r
	if a.Verdict == analysisFail {
		next.State, next.Reason = rolloutRolledBack, "automatic rollback: "+a.reason()
		if rs.acted(r, "automatic rollback", rs.actions.rollback(r.Alias, "rollout", next.Reason, next.record(), 0)) {
			r.end(next.State, next.Reason)
		}
		return
	}
	step := r.Steps[r.Step]
	var stepRequests uint64
	if n := rs.canaryRequests(r); n > r.stepBase { // never wraps around to "plenty"
		stepRequests = n - r.stepBase
	}
	if rs.now().Sub(r.StepStart) < time.Duration(step.MinDuration) || stepRequests < step.MinRequests {
		return
	}
	if a.Verdict != analysisPass {
		return // not enough evidence yet: stay on this step
	}
	if r.Step == len(r.Steps)-1 {
		next.State, next.Reason = rolloutPromoted, "passed every step"
		if rs.acted(r, "promote", rs.actions.promote(r.Alias, "rollout", "rollout passed every step", next.record())) {
			r.end(next.State, next.Reason)
		}
		return
	}
	next.Step, next.StepStart = r.Step+1, rs.now()
	err := rs.actions.setCanaryPercent(r.Alias, r.Canary, r.Steps[next.Step].CanaryPercent, "rollout",
		fmt.Sprintf("rollout step %d of %d", next.Step+1, len(r.Steps)), next.record(), 0)
	if rs.acted(r, fmt.Sprintf("step %d", next.Step+1), err) {
		r.Step, r.StepStart, r.stepBase = next.Step, next.StepStart, rs.canaryRequests(r)
	}
}

// acted notes how the action what, which r's analysis called for, went, and reports whether it
// was committed. A failed one (the store refused the commit: a full or read-only disk) leaves r
// where it was, to try again at the next tick; it must not go unseen, least of all an automatic
// rollback that leaves a failing canary serving: it shows in r's action_error, and the log has
// it once per distinct error rather than at every tick.
func (rs *rollouts) acted(r *rollout, what string, err error) bool {
	log := rs.log
	if log == nil {
		log = slog.Default()
	}
	if err == nil {
		if r.ActionError != "" {
			log.Info("rollout action committed after failing", "model", r.Alias, "action", what)
			r.ActionError = ""
		}
		return true
	}
	msg := what + " could not be committed: " + err.Error()
	if msg != r.ActionError {
		log.Error("rollout action could not be committed; it is tried again at every tick", "model", r.Alias,
			"canary", r.Canary, "action", what, "err", err)
		r.ActionError = msg
	}
	return false
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
	if r.Steps[0].CanaryPercent == 100 {
		// Each check compares the canary with stable since the start: with all the traffic
		// on the canary from the first step, stable has no samples, and the rollout waited
		// for them forever, never promoting.
		return badRequest("steps[0].canary_percent", "The first step must leave stable some traffic (below 100): the checks compare the canary with it. To switch at once, use traffic and promote.")
	}
	for name, v := range map[string]float64{"checks.max_error_rate_increase": r.Checks.MaxErrorRateIncrease,
		"checks.max_refusal_rate_increase": r.Checks.MaxRefusalRateIncrease, "checks.max_blocked_rate_increase": r.Checks.MaxBlockedRateIncrease,
		"checks.max_safety_rate_increase": r.Checks.MaxSafetyRateIncrease, "checks.max_pii_rate_increase": r.Checks.MaxPIIRateIncrease} {
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

// RolloutSummary says where alias's rollout stands when it runs or is paused ("rollout running,
// step 2 of 4"); "" when it has none under way. Serve's start-up summary shows it.
func (g *Gateway) RolloutSummary(alias string) string {
	if g.rollouts == nil {
		return ""
	}
	r := g.rollouts.get(alias)
	if r == nil || (r.State != rolloutRunning && r.State != rolloutPaused) {
		return ""
	}
	return fmt.Sprintf("rollout of %s %s, step %d of %d", r.Canary, r.State, r.Step+1, len(r.Steps))
}
