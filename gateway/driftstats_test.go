package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/drift"
)

// A drift score whose statistic becomes undefined (the live window empties) leaves /metrics,
// as it was before the first score: it neither keeps its last value, which would show a drift
// that nothing measures any more, nor turns NaN, which would make sums and averages over the
// series NaN. The verdict series stays, at 0.
func TestDriftScoreLeavesMetricsWhenUndefined(t *testing.T) {
	set := metrics.NewSet()
	s := newStatsRegistry(config.Default(), set, slog.New(slog.DiscardHandler))
	now := time.Unix(1_700_000_000, 0)
	vs, observe := driftVersion(s, &now)
	scrape := func() string {
		var b bytes.Buffer
		set.WritePrometheus(&b)
		return b.String()
	}
	const score = `llmgate_drift_score{model="chat",version="v1",feature="prompt_bytes",`
	const detected = `llmgate_drift_detected{model="chat",version="v1",feature="prompt_bytes"} `

	observe(300, 100)
	vs.rec.FreezeReference()
	now = now.Add(time.Minute)
	observe(300, 400)
	s.evaluate()
	if text := scrape(); !strings.Contains(text, score) || !strings.Contains(text, detected+"1") {
		t.Fatalf("after drifted traffic, /metrics has no prompt_bytes score or no drift verdict:\n%s", text)
	}

	now = now.Add(time.Hour) // the live window empties; the frozen reference stays
	s.evaluate()
	text := scrape()
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, score) {
			t.Errorf("with an empty live window, /metrics still reports %s", line)
		}
	}
	if !strings.Contains(text, detected+"0") {
		t.Errorf("with an empty live window, want %s0:\n%s", detected, text)
	}

	now = now.Add(time.Minute) // traffic again: the score is back
	observe(300, 400)
	s.evaluate()
	if text := scrape(); !strings.Contains(text, score) || !strings.Contains(text, detected+"1") {
		t.Errorf("after traffic again, /metrics has no prompt_bytes score or no drift verdict:\n%s", text)
	}
}

// testHook makes s queue its webhook events without delivering them, and returns a function
// that takes the events queued so far.
func testHook(t *testing.T, s *statsRegistry) func() []driftEvent {
	t.Helper()
	s.hook.url = "http://hook.invalid/"
	s.hook.queue = make(chan []byte, webhookQueue)
	return func() []driftEvent {
		var out []driftEvent
		for {
			select {
			case b := <-s.hook.queue:
				var ev driftEvent
				if err := json.Unmarshal(b, &ev); err != nil {
					t.Fatalf("webhook body %s: %v", b, err)
				}
				out = append(out, ev)
			default:
				return out
			}
		}
	}
}

// The webhook says what a p-value test compared with its threshold: the p-value. Alone, a
// chi-square statistic of 300 next to "threshold": 0.05 reads as far past it whether or not
// it drifted; a distance has no p-value (null) and its statistic is what the threshold bounds.
func TestDriftWebhookCarriesPValue(t *testing.T) {
	s := newStatsRegistry(config.Default(), metrics.NewSet(), slog.New(slog.DiscardHandler))
	events := testHook(t, s)
	now := time.Unix(1_700_000_000, 0)
	driftedVersion(s, &now)
	s.evaluate()
	evs := events()
	if len(evs) != 1 || len(evs[0].Changes) == 0 {
		t.Fatalf("events %+v, want one", evs)
	}
	c := evs[0].Changes[0]
	if c.Feature != "prompt_bytes" || c.Method != "ks" || c.To != "drift" || c.PValue == nil || *c.PValue >= c.Threshold {
		t.Errorf("change %+v (p_value %v): want a ks drift with its p-value below the threshold", c, derefOrNaN(c.PValue))
	}
}

// A feature whose verdict flips between drift and stable from one evaluation to the next (a
// statistic near its threshold, overlapping windows) sends one webhook event for the onset and
// one for the end, once it has read stable for a whole window; not one per flip. A drift after
// that end is a new onset. The WARN log line goes with the webhook's event: one per flip filled
// the log every few seconds.
func TestDriftWebhookOncePerEpisode(t *testing.T) {
	var warnings bytes.Buffer
	s := newStatsRegistry(config.Default(), metrics.NewSet(), slog.New(slog.NewJSONHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn})))
	events := testHook(t, s)
	now := time.Unix(1_700_000_000, 0)
	vs, observe := driftVersion(s, &now)
	const like, unlike = 100, 400 // prompt sizes like the reference's and far from them
	observe(300, like)
	vs.rec.FreezeReference()
	type step struct {
		wait     time.Duration
		base     int64
		verdict  drift.Verdict // prompt_bytes's, as evaluated after the step
		sent, to string        // the webhook event's change for prompt_bytes, if any
	}
	for i, st := range []step{
		{time.Minute, unlike, drift.VerdictDrift, "yes", "drift"},     // onset
		{16 * time.Minute, like, drift.VerdictStable, "", ""},         // the drift left the window
		{time.Minute, unlike, drift.VerdictDrift, "", ""},             // back: same episode
		{16 * time.Minute, like, drift.VerdictStable, "", ""},         // calm from here
		{5 * time.Minute, like, drift.VerdictStable, "", ""},          // ...
		{5 * time.Minute, like, drift.VerdictStable, "", ""},          // ...
		{5 * time.Minute, like, drift.VerdictStable, "yes", "stable"}, // a whole window calm: end
		{5 * time.Minute, like, drift.VerdictStable, "", ""},          // nothing more
		{time.Minute, unlike, drift.VerdictDrift, "yes", "drift"},     // a new onset
	} {
		now = now.Add(st.wait)
		observe(300, st.base)
		s.evaluate()
		if v := vs.verdicts[drift.FeaturePromptBytes]; v != st.verdict {
			t.Fatalf("step %d: prompt_bytes reads %s, want %s", i, v, st.verdict)
		}
		var got []verdictChange
		for _, ev := range events() {
			for _, c := range ev.Changes {
				if c.Feature == "prompt_bytes" {
					got = append(got, c)
				}
			}
		}
		switch {
		case st.sent == "" && len(got) != 0:
			t.Errorf("step %d: webhook sent %+v, want nothing", i, got)
		case st.sent != "" && (len(got) != 1 || got[0].To != st.to):
			t.Errorf("step %d: webhook sent %+v, want one change to %s", i, got, st.to)
		}
		var logged []string
		for _, line := range strings.Split(strings.TrimSpace(warnings.String()), "\n") {
			if strings.Contains(line, `"msg":"drift verdict changed"`) && strings.Contains(line, `"feature":"prompt_bytes"`) {
				logged = append(logged, line)
			}
		}
		warnings.Reset()
		switch {
		case st.sent == "" && len(logged) != 0:
			t.Errorf("step %d: logged %q at WARN, want nothing", i, logged)
		case st.sent != "" && (len(logged) != 1 || !strings.Contains(logged[0], `"to":"`+st.to+`"`)):
			t.Errorf("step %d: logged %q at WARN, want one change to %s", i, logged, st.to)
		}
	}
}

// A version deleted while an evaluation that listed it is under way gets no drift series after
// its drop: forgetVersionStats removes the version's series once drop returns, and a gauge put
// back after that (llmgate_drift_detected 1) would stay on /metrics, and alert, for ever.
func TestDriftSeriesNotBackAfterDrop(t *testing.T) {
	set := metrics.NewSet()
	s := newStatsRegistry(config.Default(), set, slog.New(slog.DiscardHandler))
	now := time.Unix(1_700_000_000, 0)
	vs := driftedVersion(s, &now)
	s.evaluate()
	scrape := func() string {
		var b bytes.Buffer
		set.WritePrometheus(&b)
		return b.String()
	}
	if !strings.Contains(scrape(), `llmgate_drift_detected{model="chat",version="v1",feature="prompt_bytes"} 1`) {
		t.Fatalf("no drift series before the drop:\n%s", scrape())
	}
	// What forgetVersionStats does, then the rest of an evaluation that listed the version.
	s.drop("chat", "v1")
	for _, name := range set.ListMetricNames() {
		if strings.Contains(name, `model="chat",version="v1"`) {
			set.UnregisterMetric(name)
		}
	}
	s.evaluateVersion(vs)
	if text := scrape(); strings.Contains(text, `model="chat",version="v1"`) {
		t.Errorf("a dropped version's series are back:\n%s", text)
	}
}

// Under on_promote, an alias's first stable version (seeded by the config, never promoted)
// gets the first whole window it served with enough requests as its reference; a canary and
// an alias whose reference is manual do not.
func TestDriftFirstReferenceOfStable(t *testing.T) {
	s := newStatsRegistry(config.Default(), metrics.NewSet(), slog.New(slog.DiscardHandler))
	s.stableOf = func(alias string) string { return "v1" }
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	track := func(alias, version, reference string) *versionStats {
		vs := s.forVersion(alias, version, config.ModelDrift{Window: 15 * time.Minute, Reference: reference})
		vs.opts.Now = clock
		vs.rec = drift.NewRecorder(vs.opts)
		vs.created = now
		return vs
	}
	stable := track("chat", "v1", config.ReferenceOnPromote)
	canary := track("chat", "v2", config.ReferenceOnPromote)
	manual := track("other", "v1", config.ReferenceManual)
	observe := func(n int) {
		for range n {
			var smp drift.Sample
			smp.Reset()
			smp.PromptBytes = 100
			for _, vs := range []*versionStats{stable, canary, manual} {
				vs.observe(&smp)
			}
		}
	}
	frozen := func() [3]bool {
		return [3]bool{stable.rec.Frozen() != nil, canary.rec.Frozen() != nil, manual.rec.Frozen() != nil}
	}
	observe(300)
	now = now.Add(10 * time.Minute)
	s.evaluate()
	if got := frozen(); got != [3]bool{} {
		t.Fatalf("frozen before a whole window passed: %v", got)
	}
	now = now.Add(20 * time.Minute) // a whole window, but it holds no request
	s.evaluate()
	if got := frozen(); got != [3]bool{} {
		t.Fatalf("frozen from a window without enough requests: %v", got)
	}
	observe(150)
	s.evaluate()
	if got := frozen(); got != [3]bool{true, false, false} {
		t.Fatalf("frozen (stable, canary, manual) = %v, want only the stable version's", got)
	}
	if n := stable.rec.Frozen().Count(); n != 150 {
		t.Errorf("the reference holds %d requests, want the live window's 150", n)
	}
}

// driftVersion returns chat/v1's statistics in s with a manual reference and its recorder on
// the clock *now, and observe, which records n requests whose prompt sizes run from base to
// base+99.
func driftVersion(s *statsRegistry, now *time.Time) (*versionStats, func(n int, base int64)) {
	vs := s.forVersion("chat", "v1", config.ModelDrift{Window: 15 * time.Minute, Reference: config.ReferenceManual})
	vs.rec = drift.NewRecorder(drift.Options{Window: vs.opts.Window, Slice: vs.opts.Slice, Now: func() time.Time { return *now }})
	return vs, func(n int, base int64) {
		for i := range n {
			var smp drift.Sample
			smp.Reset()
			smp.PromptBytes = base + int64(i%100)
			vs.observe(&smp)
		}
	}
}

// driftedVersion is driftVersion with 300 requests of 100-199 bytes frozen as its reference and,
// a minute on, 300 of 400-499 bytes in its live window: prompt_bytes has drifted.
func driftedVersion(s *statsRegistry, now *time.Time) *versionStats {
	vs, observe := driftVersion(s, now)
	observe(300, 100)
	vs.rec.FreezeReference()
	*now = now.Add(time.Minute)
	observe(300, 400)
	return vs
}

// A stable version whose reference holds fewer requests than min_samples (a canary promoted
// after a few requests: the promote froze what it had) gets a new one under on_promote once it
// has served enough, as a version without one does; with the small one kept, every verdict
// stayed insufficient for good.
func TestDriftReferenceTooSmallIsReplaced(t *testing.T) {
	s := newStatsRegistry(config.Default(), metrics.NewSet(), slog.New(slog.DiscardHandler))
	s.stableOf = func(alias string) string { return "v2" }
	now := time.Unix(1_700_000_000, 0)
	vs := s.forVersion("chat", "v2", config.ModelDrift{Window: 15 * time.Minute, Reference: config.ReferenceOnPromote})
	vs.opts.Now = func() time.Time { return now }
	vs.rec = drift.NewRecorder(vs.opts)
	vs.created = now
	observe := func(n int) {
		for range n {
			var smp drift.Sample
			smp.Reset()
			smp.PromptBytes = 100
			vs.observe(&smp)
		}
	}
	observe(20)
	vs.rec.FreezeReference() // the promote, after 20 requests as a canary
	now = now.Add(20 * time.Minute)
	observe(150)
	s.evaluate()
	if n := vs.rec.Frozen().Count(); n < s.policy.MinSamples {
		t.Fatalf("the reference still holds %d requests, fewer than min_samples %d: no verdict ever", n, s.policy.MinSamples)
	}
	if rep := vs.rec.Report(&s.policy); rep.Reference.N != 150 {
		t.Fatalf("reference of %d requests, want the 150 of the whole window served since", rep.Reference.N)
	}
}

// A sample whose tokens the counter has no room to count is recorded without them, not lost:
// only successful answers without usage wait for the counter, so under overload losing them
// left the version's failures alone in its window, and its error rate in /admin/stats and in a
// rollout's analysis (which rolls a canary back on it) rose with the load.
func TestDriftSampleKeptWhenTokenQueueFull(t *testing.T) {
	set := metrics.NewSet()
	s := newStatsRegistry(config.Default(), set, slog.New(slog.DiscardHandler))
	s.tokens.queue = make(chan tokenJob) // no worker: the queue is full
	now := time.Unix(1_700_000_000, 0)
	vs, _ := driftVersion(s, &now)
	var smp drift.Sample
	smp.Reset()
	smp.Status, smp.Latency = drift.StatusOK, time.Second
	s.tokens.push(nil, vs, &smp, &request{stream: true, tokenEvents: 7}, nil)
	var live drift.Snapshot
	vs.rec.Live(&live)
	if live.Count() != 1 || live.Failures() != 0 {
		t.Fatalf("window holds %d requests (%d failures) after one successful answer the token counter had no room for, want 1 (0)", live.Count(), live.Failures())
	}
	if h := live.Numeric(drift.FeatureCompletionTokens); h.Count() != 1 || h.Quantile(1) != 7 {
		t.Errorf("completion tokens %d recorded (max %v), want the stream's 7 token events", h.Count(), h.Quantile(1))
	}
	if got := s.tokens.dropped.Get(); got != 1 {
		t.Errorf("llmgate_drift_samples_dropped_total %d, want 1", got)
	}
}

// The windows a rollout records while it judges a version are drift memory too: left out,
// llmgate_drift_memory_bytes and a version's memory_bytes in /admin/drift read half of what
// a rollout holds (two more windows of about 450 KiB).
func TestDriftMemoryCountsRolloutWindows(t *testing.T) {
	set := metrics.NewSet()
	s := newStatsRegistry(config.Default(), set, slog.New(slog.DiscardHandler))
	vs := s.forVersion("chat", "v1", config.ModelDrift{Window: 15 * time.Minute})
	before := s.memory()
	r := drift.NewRecorder(vs.opts)
	vs.rollout.Store(r)
	if got, want := s.memory(), before+r.MemoryBytes(); got != want {
		t.Fatalf("drift memory %d during a rollout, want %d: the version's window %d and the rollout's %d", got, want, before, r.MemoryBytes())
	}
	if got := vs.memoryBytes(); got != s.memory() {
		t.Errorf("the version's memory_bytes %d, want %d", got, s.memory())
	}
}

// The webhook outlives nothing that sends to it: at shutdown the statistics (and their webhook)
// close before the rollout controller stops, and a rollback it decided in between sent its
// event on the closed queue, a panic that took the process down with a stack trace instead of
// exiting cleanly. An event sent after close is dropped.
func TestWebhookSendAfterClose(t *testing.T) {
	w := webhook{url: "http://127.0.0.1:1/hook", log: slog.New(slog.DiscardHandler)}
	w.start()
	w.close()
	w.send(map[string]any{"event": "rollback", "model": "chat"})
}

// A request that ends after shutdown closed the statistics (one still in flight when the grace
// ran out) hands its sample to the token counter without a panic: the counter's queue was
// closed, and sending on it took the process down with a stack trace.
func TestTokenCounterPushAfterClose(t *testing.T) {
	s := newStatsRegistry(config.Default(), metrics.NewSet(), slog.New(slog.DiscardHandler))
	s.tokens.start()
	s.tokens.close()
	now := time.Unix(1_700_000_000, 0)
	vs, _ := driftVersion(s, &now)
	var smp drift.Sample
	smp.Reset()
	smp.Status = drift.StatusOK
	s.tokens.push(nil, vs, &smp, &request{stream: true, tokenEvents: 3}, nil)
}
