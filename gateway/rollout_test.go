package gateway

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/drift"
)

// fakeActions records what a rollout did to the deploy state, and the state and step of the
// rollout record each action would have committed with its change.
type fakeActions struct {
	log  []string
	fail error // every action returns it, having committed nothing, while set
}

func (f *fakeActions) note(action string, rec *json.RawMessage) {
	var r rollout
	if rec == nil || json.Unmarshal(*rec, &r) != nil {
		f.log = append(f.log, action+" without a record")
		return
	}
	f.log = append(f.log, action+" ["+r.State+" "+strconv.Itoa(r.Step+1)+"]")
}

func (f *fakeActions) setCanaryPercent(alias, canary string, percent int, actor, reason string, rec *json.RawMessage, _ uint64) error {
	if f.fail != nil {
		return f.fail
	}
	f.note("traffic "+canary+" "+strconv.Itoa(percent), rec)
	return nil
}
func (f *fakeActions) promote(alias, actor, reason string, rec *json.RawMessage) error {
	if f.fail != nil {
		return f.fail
	}
	f.note("promote", rec)
	return nil
}
func (f *fakeActions) rollback(alias, actor, reason string, rec *json.RawMessage, _ uint64) error {
	if f.fail != nil {
		return f.fail
	}
	f.note("rollback: "+reason, rec)
	return nil
}
func (f *fakeActions) recordRollout(alias, actor, reason, from, to string, rec *json.RawMessage, _ uint64) error {
	if f.fail != nil {
		return f.fail
	}
	f.note(from+" -> "+to, rec)
	return nil
}

// A rollout on a fake clock: a healthy canary climbs every step and is promoted; a canary with
// a higher error rate is rolled back with the failed check as the reason.
func TestRolloutController(t *testing.T) {
	for _, tt := range []struct {
		name      string
		canaryErr float64
		want      []string
		state     string
	}{
		{"healthy canary is promoted", 0.01, []string{"traffic v2 10 [running 1]", "traffic v2 50 [running 2]", "promote [promoted 2]"}, rolloutPromoted},
		{"failing canary is rolled back", 0.20, []string{"traffic v2 10 [running 1]", "rollback: automatic rollback: error_rate"}, rolloutRolledBack},
		// Failures of v2 from before the rollout (pinned tests, an earlier canary of that name)
		// are not the canary's: the analysis reads samples since the start only.
		{"failures before the start do not count", -0.9, []string{"traffic v2 10 [running 1]", "traffic v2 50 [running 2]", "promote [promoted 2]"}, rolloutPromoted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			recs := map[string]*versionStats{
				"v1": {alias: "chat", version: "v1", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
				"v2": {alias: "chat", version: "v2", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
			}
			traffic := func(v string, n int, errShare float64) {
				var s drift.Sample
				for i := range n {
					s.Reset()
					s.At = now
					s.Latency = time.Duration(90+i%20) * time.Millisecond
					s.Status = drift.StatusOK
					if float64(i%100) < errShare*100 {
						s.Status = drift.StatusUpstreamError
					}
					recs[v].observe(&s)
				}
			}
			acts := &fakeActions{}
			rs := &rollouts{byAlias: map[string]*rollout{}, actions: acts, policy: drift.DefaultPolicy(), now: clock,
				stats: func(_, v string) *versionStats { return recs[v] }, stableOf: func(string) string { return "v1" }}
			r := &rollout{Alias: "chat", Canary: "v2", Actor: "ops", Steps: []rolloutStep{
				{CanaryPercent: 10, MinDuration: duration(time.Minute), MinRequests: 200},
				{CanaryPercent: 50, MinDuration: duration(time.Minute), MinRequests: 200},
			}}
			if err := r.validate(); err != nil {
				t.Fatal(err)
			}
			if tt.canaryErr < 0 {
				traffic("v2", 1000, -tt.canaryErr)
				tt.canaryErr = 0.01
			}
			if err := rs.start(r); err != nil {
				t.Fatal(err)
			}
			if err := rs.start(&rollout{Alias: "chat", Canary: "v2", Steps: r.Steps}); err != errRolloutRunning {
				t.Fatalf("second rollout: %v", err)
			}
			for range 3 {
				traffic("v1", 1000, 0.01)
				traffic("v2", 300, tt.canaryErr)
				rs.tick() // before the step's minimum duration: only failures act
				now = now.Add(61 * time.Second)
				rs.tick()
			}
			got := rs.get("chat")
			if got.State != tt.state || len(acts.log) != len(tt.want) || !prefixes(acts.log, tt.want) {
				t.Fatalf("state %s, actions %q; want %s, %q", got.State, acts.log, tt.state, tt.want)
			}
			if last := acts.log[len(acts.log)-1]; !strings.Contains(last, "["+tt.state+" ") {
				t.Fatalf("the last action %q did not record the rollout as %s", last, tt.state)
			}
		})
	}
}

func TestRolloutValidate(t *testing.T) {
	for _, tt := range []struct {
		name  string
		r     rollout
		param string
	}{
		{"no canary", rollout{Steps: []rolloutStep{{CanaryPercent: 10}}}, "canary"},
		{"no steps", rollout{Canary: "v2"}, "steps"},
		{"falling steps", rollout{Canary: "v2", Steps: []rolloutStep{{CanaryPercent: 50}, {CanaryPercent: 10}}}, "steps[1].canary_percent"},
		{"first step takes all traffic", rollout{Canary: "v2", Steps: []rolloutStep{{CanaryPercent: 100}}}, "steps[0].canary_percent"},
		{"over 100", rollout{Canary: "v2", Steps: []rolloutStep{{CanaryPercent: 120}}}, "steps[0].canary_percent"},
		{"ratio below 1", rollout{Canary: "v2", Steps: []rolloutStep{{CanaryPercent: 10}}, Checks: rolloutChecks{MaxP95LatencyRatio: 0.5}}, "checks.max_p95_latency_ratio"},
		{"safety rate over 1", rollout{Canary: "v2", Steps: []rolloutStep{{CanaryPercent: 10}}, Checks: rolloutChecks{MaxSafetyRateIncrease: 2}}, "checks.max_safety_rate_increase"},
		{"negative PII rate", rollout{Canary: "v2", Steps: []rolloutStep{{CanaryPercent: 10}}, Checks: rolloutChecks{MaxPIIRateIncrease: -0.1}}, "checks.max_pii_rate_increase"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.validate()
			if err == nil || err.param != tt.param {
				t.Fatalf("err %v, want param %s", err, tt.param)
			}
		})
	}
}

// prefixes reports whether each got[i] starts with want[i].
func prefixes(got, want []string) bool {
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			return false
		}
	}
	return true
}

// An automatic rollback the store cannot commit (a full disk) leaves the failing canary
// serving; the rollout tries again at every tick, and the failure must show: in the rollout's
// action_error and once in the log, not silently at every tick.
func TestRolloutActionFailureShows(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	recs := map[string]*versionStats{
		"v1": {alias: "chat", version: "v1", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
		"v2": {alias: "chat", version: "v2", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
	}
	traffic := func(v string, n int, failing bool) {
		var s drift.Sample
		for i := range n {
			s.Reset()
			s.At, s.Latency, s.Status = now, time.Duration(90+i%20)*time.Millisecond, drift.StatusOK
			if failing {
				s.Status = drift.StatusUpstreamError
			}
			recs[v].observe(&s)
		}
	}
	var logged bytes.Buffer
	acts := &fakeActions{}
	rs := &rollouts{byAlias: map[string]*rollout{}, actions: acts, policy: drift.DefaultPolicy(), now: clock,
		log:   slog.New(slog.NewTextHandler(&logged, nil)),
		stats: func(_, v string) *versionStats { return recs[v] }, stableOf: func(string) string { return "v1" }}
	if err := rs.start(&rollout{Alias: "chat", Canary: "v2", Actor: "ops", Steps: []rolloutStep{{CanaryPercent: 10}, {CanaryPercent: 50}}}); err != nil {
		t.Fatal(err)
	}
	acts.fail = errors.New("state: write state.db: no space left on device")
	traffic("v1", 1000, false)
	traffic("v2", 300, true)
	for range 3 {
		rs.tick()
	}
	got := rs.get("chat")
	if got.State != rolloutRunning || !strings.Contains(got.ActionError, "automatic rollback could not be committed: state: write state.db: no space left on device") {
		t.Fatalf("state %s, action_error %q; want running with the rollback's failure", got.State, got.ActionError)
	}
	if n := strings.Count(logged.String(), "could not be committed"); n != 1 {
		t.Fatalf("the failure was logged %d times over 3 ticks, want once:\n%s", n, logged.String())
	}
	if rec := string(*got.record()); strings.Contains(rec, "action_error") {
		t.Fatalf("the committed record carries the action error: %s", rec)
	}
	acts.fail = nil
	rs.tick()
	if got := rs.get("chat"); got.State != rolloutRolledBack || got.ActionError != "" {
		t.Fatalf("after the store recovered: state %s, action_error %q; want rolled_back and none", got.State, got.ActionError)
	}
	if len(acts.log) != 2 || !strings.HasPrefix(acts.log[1], "rollback: automatic rollback") {
		t.Fatalf("actions %q", acts.log)
	}
}

// At a step of 100% stable gets no traffic, so after a restart there (its samples were in
// memory) or once its earlier samples have left the window, nothing on stable's side can be
// compared: the rollout waited at its last step forever and never promoted. There the canary
// is judged against the margins alone: a healthy one is promoted, one failing plainly more
// often than the error margin is still rolled back.
func TestRolloutLastStepWithIdleStable(t *testing.T) {
	for _, tt := range []struct {
		name      string
		canaryErr int // failed requests in every hundred
		hits      int // requests with personal data and a safety hit in every hundred: the users'
		want      string
		state     string
	}{
		{"healthy canary is promoted", 1, 0, "promote [promoted 2]", rolloutPromoted},
		// Rates whose every-day level is not zero are not judged against the margin alone:
		// the users' prompts decide them as much as the canary.
		{"users sending personal data do not fail it", 1, 20, "promote [promoted 2]", rolloutPromoted},
		{"failing canary is rolled back", 30, 0, "rollback: automatic rollback: error_rate", rolloutRolledBack},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			recs := map[string]*versionStats{
				"v1": {alias: "chat", version: "v1", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
				"v2": {alias: "chat", version: "v2", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
			}
			acts := &fakeActions{}
			rs := &rollouts{byAlias: map[string]*rollout{}, actions: acts, policy: drift.DefaultPolicy(), now: clock,
				stats: func(_, v string) *versionStats { return recs[v] }, stableOf: func(string) string { return "v1" }}
			// The record of a rollout at its last step, as a restart finds it in the state.
			rec := (&rollout{Alias: "chat", Canary: "v2", Actor: "ops", State: rolloutRunning, Step: 1, Steps: []rolloutStep{
				{CanaryPercent: 50, MinDuration: duration(time.Minute), MinRequests: 200},
				{CanaryPercent: 100, MinDuration: duration(time.Minute), MinRequests: 200},
			}}).record()
			if _, err := rs.restore("chat", *rec); err != nil {
				t.Fatal(err)
			}
			var s drift.Sample
			for range 3 {
				for i := range 300 { // all of it to the canary: stable gets nothing
					s.Reset()
					s.At, s.Latency, s.Status = now, time.Duration(90+i%20)*time.Millisecond, drift.StatusOK
					if i%100 < tt.canaryErr {
						s.Status = drift.StatusUpstreamError
					}
					if i%100 >= 100-tt.hits {
						s.Safety, s.Entities = 1<<14, 1
					}
					recs["v2"].observe(&s)
				}
				now = now.Add(61 * time.Second)
				rs.tick()
			}
			got := rs.get("chat")
			if got.State != tt.state || len(acts.log) != 1 || !strings.HasPrefix(acts.log[0], tt.want) {
				t.Fatalf("state %s, actions %q, last analysis %+v; want %s after %q", got.State, acts.log, got.Last, tt.state, tt.want)
			}
		})
	}
}

// A step's min_requests counts the canary's requests since the step started, however long it
// takes to get them: counted in the canary's live window (15 minutes here), a step asking for
// more requests than a window holds at the canary's rate never ended, with every check passed.
func TestRolloutStepRequestsOutlastTheWindow(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	recs := map[string]*versionStats{
		"v1": {alias: "chat", version: "v1", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
		"v2": {alias: "chat", version: "v2", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
	}
	acts := &fakeActions{}
	rs := &rollouts{byAlias: map[string]*rollout{}, actions: acts, policy: drift.DefaultPolicy(), now: clock,
		stats: func(_, v string) *versionStats { return recs[v] }, stableOf: func(string) string { return "v1" }}
	r := &rollout{Alias: "chat", Canary: "v2", Actor: "ops", Steps: []rolloutStep{
		{CanaryPercent: 10, MinRequests: 1000},
		{CanaryPercent: 50, MinRequests: 1000},
	}}
	if err := rs.start(r); err != nil {
		t.Fatal(err)
	}
	var s drift.Sample
	traffic := func(v string, n int) {
		for i := range n {
			s.Reset()
			s.At, s.Latency, s.Status = now, time.Duration(90+i%20)*time.Millisecond, drift.StatusOK
			recs[v].observe(&s)
		}
	}
	// 150 canary requests every 7.5 minutes: over the minimum sample in every window, and
	// 1,000 after 50 minutes.
	for range 10 {
		traffic("v1", 500)
		traffic("v2", 150)
		now = now.Add(15 * time.Minute / 2)
		rs.tick()
	}
	if got := rs.get("chat"); got.Step != 1 || len(acts.log) != 2 {
		t.Fatalf("after 1,500 canary requests at the first step asking for 1,000: step %d, actions %q, last analysis %+v", got.Step+1, acts.log, got.Last)
	}
}

// Stable, running longer, answers much of its share from a warm cache, while a new canary
// starts with an empty one. The cache never fails and its answers have no latency of the
// model's, so the checks that judge the backends compare the backends' answers only: divided
// by every request, stable's error rate was a fraction of a canary's with the same backends,
// which was rolled back ("error_rate 0.089 on the canary vs 0.005 on stable"); and while
// stable answered everything from its cache, the latency check had no stable sample and held
// the step for ever.
func TestRolloutStableCacheHits(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		stableHits, stableErr int // of every hundred requests: answered by the cache; failed of the rest
		canaryErr             int // failed requests in every hundred
		canaryN               int // requests per minute; 300 when 0
		want                  []string
		state                 string
	}{
		{"same backends, stable's cache warm", 80, 5, 5, 0, []string{"traffic v2 10 [running 1]", "traffic v2 50 [running 2]", "promote [promoted 2]"}, rolloutPromoted},
		{"more errors, stable's cache warm", 80, 1, 10, 0, []string{"traffic v2 10 [running 1]", "rollback: automatic rollback: error_rate 0.100 on the canary vs 0.010 on stable"}, rolloutRolledBack},
		// Stable's backends answer nothing: there is nothing to compare the canary's errors
		// with but the margin, and no latency at all (the latency check held the step).
		{"stable answers everything from its cache", 100, 0, 1, 0, []string{"traffic v2 10 [running 1]", "traffic v2 50 [running 2]", "promote [promoted 2]"}, rolloutPromoted},
		{"stable answers everything from its cache, failing canary", 100, 0, 20, 0, []string{"traffic v2 10 [running 1]", "rollback: automatic rollback: error_rate 0.200 on the canary after"}, rolloutRolledBack},
		// ... before the minimum sample too, as the early check does where stable has answers.
		{"stable answers everything from its cache, canary failing every request", 100, 0, 100, 30, []string{"traffic v2 10 [running 1]", "rollback: automatic rollback: error_rate 1.000 on the canary after 30 backend answers"}, rolloutRolledBack},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			recs := map[string]*versionStats{
				"v1": {alias: "chat", version: "v1", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
				"v2": {alias: "chat", version: "v2", rec: drift.NewRecorder(drift.Options{Now: clock}), opts: drift.Options{Now: clock}},
			}
			// traffic records n requests of v: hits in every hundred answered by the cache (no
			// latency, as the gateway records them), errs in every hundred of the rest failed.
			traffic := func(v string, n, hits, errs int) {
				var s drift.Sample
				answered := 0
				for i := range n {
					s.Reset()
					s.At, s.Status, s.Cache = now, drift.StatusOK, drift.CacheHit
					if i%100 >= hits {
						s.Latency, s.Cache = time.Duration(90+i%20)*time.Millisecond, drift.CacheMiss
						if answered%100 < errs {
							s.Status = drift.StatusUpstreamError
						}
						answered++
					}
					recs[v].observe(&s)
				}
			}
			acts := &fakeActions{}
			rs := &rollouts{byAlias: map[string]*rollout{}, actions: acts, policy: drift.DefaultPolicy(), now: clock,
				stats: func(_, v string) *versionStats { return recs[v] }, stableOf: func(string) string { return "v1" }}
			r := &rollout{Alias: "chat", Canary: "v2", Actor: "ops", Steps: []rolloutStep{
				{CanaryPercent: 10, MinDuration: duration(time.Minute), MinRequests: 200},
				{CanaryPercent: 50, MinDuration: duration(time.Minute), MinRequests: 200},
			}}
			if err := rs.start(r); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				traffic("v1", 1000, tt.stableHits, tt.stableErr)
				traffic("v2", cmp.Or(tt.canaryN, 300), 0, tt.canaryErr) // a new version's cache is empty
				now = now.Add(61 * time.Second)
				rs.tick()
			}
			got := rs.get("chat")
			if got.State != tt.state || len(acts.log) != len(tt.want) || !prefixes(acts.log, tt.want) {
				t.Fatalf("state %s, actions %q, last analysis %+v; want %s, %q", got.State, acts.log, got.Last, tt.state, tt.want)
			}
		})
	}
}
