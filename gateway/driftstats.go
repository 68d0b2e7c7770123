package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/drift"
)

// versionStats is one model version's statistics. It outlives snapshots: a table swap keeps the
// windows of the versions that stay.
type versionStats struct {
	alias, version string
	rec            *drift.Recorder
	opts           drift.Options // rec's, for a rollout's recorder
	reference      string        // config.Reference*
	// rollout is set while a rollout judges this version: a recorder of the samples since it
	// started, so that traffic from before (pinned tests, an earlier canary of the same name)
	// neither fails nor passes it.
	rollout atomic.Pointer[drift.Recorder]
	// rolloutN counts the samples recorded for rollouts, ever: a step counts its requests by
	// it, as the recorder's window lets old samples go.
	rolloutN atomic.Uint64

	// Written by the evaluator only.
	verdicts [drift.NumFeatures]drift.Verdict
	series   [drift.NumFeatures]string // the score series in use per feature (its method may change)
	// alarm is set while a feature's drift episode is open: its onset went to the webhook and
	// its end has not. calm is when the feature last left drift while its episode is open
	// (zero while it reads drift); the end is sent once it has read something else for a whole
	// window (see evaluate).
	alarm [drift.NumFeatures]bool
	calm  [drift.NumFeatures]time.Time
	// dropped is set (under statsRegistry.evalMu) when the version's statistics are dropped.
	dropped bool
	created time.Time // by the recorder's clock: a whole window must pass before a first reference
}

// statsRegistry owns every version's statistics and what works on them off the request path:
// the evaluation loop, the token counter and the webhook. Started in New, stopped in Close.
type statsRegistry struct {
	mu    sync.Mutex
	byKey map[string]*versionStats
	// evalMu is held while the evaluator writes a version's series and by drop, which marks
	// the version dropped: an evaluation that listed a version before its drop must not put
	// back series that forgetVersionStats removes after it (a stale llmgate_drift_detected 1
	// for a deleted version would alert for ever).
	evalMu sync.Mutex
	policy drift.Policy
	// refusal is shared by every request; Match is safe for concurrent use.
	refusal  *drift.RefusalDetector
	interval time.Duration
	tokens   tokenCounter
	hook     webhook
	set      *metrics.Set
	log      *slog.Logger
	stop     chan struct{}
	done     chan struct{}
	// stableOf returns the alias's stable version ("" when none); set before start.
	stableOf func(alias string) string
}

func newStatsRegistry(cfg *config.Config, set *metrics.Set, log *slog.Logger) *statsRegistry {
	p := drift.DefaultPolicy()
	p.MinSamples = uint64(cfg.Drift.MinSamples)
	phrases := cfg.Drift.RefusalPhrases
	if len(phrases) == 0 {
		phrases = drift.DefaultRefusalPhrases
	}
	s := &statsRegistry{
		byKey:    map[string]*versionStats{},
		policy:   p,
		refusal:  drift.NewRefusalDetector(phrases, headBytes),
		interval: cfg.Drift.Interval,
		set:      set,
		log:      log,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.tokens.dropped = set.NewCounter("llmgate_drift_samples_dropped_total")
	s.hook.url = cfg.Drift.Webhook
	s.hook.log = log
	set.NewGauge("llmgate_drift_memory_bytes", func() float64 { return float64(s.memory()) })
	return s
}

// forVersion returns the version's statistics, creating them on first sight.
func (s *statsRegistry) forVersion(alias, version string, md config.ModelDrift) *versionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := alias + "@" + version
	if vs := s.byKey[key]; vs != nil {
		return vs
	}
	ref := md.Reference
	if ref == "" { // an alias the admin API created has no settings in the config file
		ref = config.DefaultDriftReference
	}
	opts := drift.Options{Window: md.Window, Slice: md.Window / 15, Rolling: ref == config.ReferenceRolling}
	vs := &versionStats{alias: alias, version: version, reference: ref, opts: opts, rec: drift.NewRecorder(opts), created: now(opts)}
	s.byKey[key] = vs
	return vs
}

// observe records s in the version's window and, during a rollout, in the rollout's.
func (vs *versionStats) observe(s *drift.Sample) {
	vs.rec.Observe(s)
	if r := vs.rollout.Load(); r != nil {
		r.Observe(s)
		vs.rolloutN.Add(1)
	}
}

// drop forgets a version's statistics once the version is deleted: a version deployed later
// under the same name starts afresh instead of inheriting them.
func (s *statsRegistry) drop(alias, version string) {
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	s.mu.Lock()
	vs := s.byKey[alias+"@"+version]
	delete(s.byKey, alias+"@"+version)
	s.mu.Unlock()
	if vs != nil {
		vs.dropped = true
	}
}

// get returns a version's statistics or nil.
func (s *statsRegistry) get(alias, version string) *versionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[alias+"@"+version]
}

// all returns every version's statistics in name order.
func (s *statsRegistry) all() []*versionStats {
	s.mu.Lock()
	out := make([]*versionStats, 0, len(s.byKey))
	for _, vs := range s.byKey {
		out = append(out, vs)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].alias != out[j].alias {
			return out[i].alias < out[j].alias
		}
		return out[i].version < out[j].version
	})
	return out
}

func (s *statsRegistry) memory() int {
	n := 0
	for _, vs := range s.all() {
		n += vs.memoryBytes()
	}
	return n
}

// memoryBytes is the memory of the version's windows: its own, and a rollout's while one
// judges it.
func (vs *versionStats) memoryBytes() int {
	n := vs.rec.MemoryBytes()
	if r := vs.rollout.Load(); r != nil {
		n += r.MemoryBytes()
	}
	return n
}

func (s *statsRegistry) start() {
	s.tokens.start()
	s.hook.start()
	go s.run()
}

func (s *statsRegistry) close() {
	close(s.stop)
	<-s.done
	s.tokens.close()
	s.hook.close()
}

// run evaluates drift every interval, off the request path.
func (s *statsRegistry) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.evaluate()
		}
	}
}

// verdictChange is one feature whose verdict changed, as logged and sent to the webhook.
type verdictChange struct {
	Feature   string   `json:"feature"`
	Method    string   `json:"method"`
	From      string   `json:"from"`
	To        string   `json:"to"`
	Statistic *float64 `json:"statistic"` // null when undefined (a window without samples), never a made-up 0
	// PValue is what a p-value test (ks, chisquare, z, mannwhitney) compares with threshold
	// (alpha); null for the distances (wasserstein, jensenshannon, psi), whose statistic is.
	PValue    *float64 `json:"p_value"`
	Threshold float64  `json:"threshold"`
}

// logChange logs one verdict change of vs at level.
func (s *statsRegistry) logChange(level slog.Level, vs *versionStats, c verdictChange) {
	s.log.Log(context.Background(), level, "drift verdict changed", "model", vs.alias, "version", vs.version, "feature", c.Feature,
		"method", c.Method, "from", c.From, "to", c.To, "statistic", derefOrNaN(c.Statistic), "p_value", derefOrNaN(c.PValue), "threshold", c.Threshold)
}

// evaluate runs every version's drift tests, updates the drift series, and logs at WARN and
// sends to the webhook each feature's drift episodes: its onset (the first drift verdict), and
// its end once it has read something else for a whole window. A verdict near its
// threshold flips back and forth from one evaluation to the next (the windows overlap, and
// at alpha 0.05 one unchanged feature in twenty reads drift by chance); sending every flip
// made a webhook call every few seconds for one change of the backend.
func (s *statsRegistry) evaluate() {
	for _, vs := range s.all() {
		s.evaluateVersion(vs)
	}
}

// evaluateVersion is evaluate for one version; it does nothing once the version is dropped.
func (s *statsRegistry) evaluateVersion(vs *versionStats) {
	s.firstReference(vs)
	rep := vs.rec.Report(&s.policy)
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	if vs.dropped {
		return
	}
	at, hold := rep.Current.End, vs.rec.Window() // the recorder's clock
	var changes, episodes []verdictChange
	for _, res := range rep.Features {
		f, ok := drift.FeatureByName(res.Feature)
		if !ok {
			continue
		}
		labels := `{model=` + promLabel(vs.alias) + `,version=` + promLabel(vs.version) + `,feature="` + res.Feature + `"`
		score := `llmgate_drift_score` + labels + `,method="` + string(res.Method) + `"}`
		// An undefined statistic (NaN: a window without samples) drops the series, as it
		// is before the first defined one, rather than keep the last value or export NaN:
		// NaN turns sum() and avg() over the series into NaN, and the Prometheus authors
		// advise removing a series over a NaN that stands for "no value".
		defined := !math.IsNaN(res.Statistic)
		if old := vs.series[f]; old != "" && (old != score || !defined) {
			s.set.UnregisterMetric(old) // the method changed with the sample size, or no statistic
		}
		vs.series[f] = ""
		if defined {
			s.set.GetOrCreateGauge(score, nil).Set(res.Statistic)
			vs.series[f] = score
		}
		s.set.GetOrCreateGauge(`llmgate_drift_detected`+labels+`}`, nil).Set(boolFloat(res.Verdict == drift.VerdictDrift))
		change := func(from drift.Verdict) verdictChange {
			return verdictChange{Feature: res.Feature, Method: string(res.Method), From: string(from),
				To: string(res.Verdict), Statistic: definedOrNil(res.Statistic), PValue: definedOrNil(res.PValue), Threshold: res.Threshold}
		}
		prev := vs.verdicts[f]
		flipped := prev != res.Verdict && (prev == drift.VerdictDrift || res.Verdict == drift.VerdictDrift)
		switch {
		case res.Verdict == drift.VerdictDrift:
			vs.calm[f] = time.Time{}
			if !vs.alarm[f] {
				vs.alarm[f], flipped = true, false
				episodes = append(episodes, change(prev))
			}
		case vs.alarm[f]:
			if vs.calm[f].IsZero() {
				vs.calm[f] = at
			}
			if at.Sub(vs.calm[f]) >= hold {
				vs.alarm[f], vs.calm[f] = false, time.Time{}
				episodes = append(episodes, change(drift.VerdictDrift))
			}
		}
		if flipped {
			changes = append(changes, change(prev))
		}
		vs.verdicts[f] = res.Verdict
	}
	// The WARN line is the webhook's event: an episode's onset and end. The flips inside an
	// episode (a feature near its threshold, such as overhead_us on an idle box, flips every few
	// evaluations) go at debug level: at WARN they filled the log with a change every few
	// seconds for one change of the backend.
	for _, c := range episodes {
		s.logChange(slog.LevelWarn, vs, c)
	}
	for _, c := range changes {
		s.logChange(slog.LevelDebug, vs, c)
	}
	if len(episodes) > 0 {
		s.hook.send(driftEvent{Event: "drift_verdict_changed", Model: vs.alias, Version: vs.version,
			Drift: rep.Drift, Changes: episodes, Time: time.Now().UTC()})
	}
}

// firstReference freezes the reference of a stable version that has none, under on_promote,
// once it has served a whole window with enough requests: the first stable version of an alias
// is never promoted (the config seeds it), and without this its every verdict would stay
// insufficient until an operator froze one by hand. A reference with fewer than min_samples
// requests counts as none: a canary promoted after a few requests (or one frozen by hand too
// early) would otherwise keep every verdict insufficient for good, drift detection off
// without a word.
func (s *statsRegistry) firstReference(vs *versionStats) {
	if vs.reference != "" && vs.reference != config.ReferenceOnPromote || s.stableOf == nil || s.stableOf(vs.alias) != vs.version {
		return
	}
	old := vs.rec.Frozen()
	if old != nil && old.Count() >= s.policy.MinSamples {
		return
	}
	if now(vs.opts).Sub(vs.created) < vs.rec.Window() {
		return
	}
	var live drift.Snapshot
	vs.rec.Live(&live)
	if live.Count() < s.policy.MinSamples {
		return
	}
	vs.rec.FreezeReference()
	msg := "drift reference frozen: the stable version's first full window"
	if old != nil {
		msg = "drift reference frozen again: the one frozen before held fewer requests than drift.min_samples"
	}
	s.log.Info(msg, "model", vs.alias, "version", vs.version, "requests", live.Count())
}

// now reads the clock of a recorder made with opts.
func now(opts drift.Options) time.Time {
	if opts.Now != nil {
		return opts.Now()
	}
	return time.Now()
}

// definedOrNil returns v, or nil when it is NaN: the webhook says null rather than 0, which
// would read as "no drift at all".
func definedOrNil(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	return &v
}

func derefOrNaN(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}

// driftEvent is the webhook's JSON body.
type driftEvent struct {
	Event   string          `json:"event"`
	Model   string          `json:"model"`
	Version string          `json:"version"`
	Drift   bool            `json:"drift"` // the version's overall verdict
	Changes []verdictChange `json:"changes"`
	Time    time.Time       `json:"time"`
}

// webhook posts events to a URL from one goroutine, retrying with backoff; it never blocks the
// caller: when its queue is full the event is dropped and logged.
type webhook struct {
	url   string
	log   *slog.Logger
	queue chan []byte
	stop  chan struct{} // ends retries at shutdown
	done  chan struct{}
	// mu guards closed and the queue's close: a rollback the rollout controller decides during
	// shutdown may send after the statistics (and this webhook) closed.
	mu     sync.Mutex
	closed bool
	client fasthttp.Client
}

const (
	webhookQueue    = 64
	webhookAttempts = 4
	webhookTimeout  = 5 * time.Second
)

// webhookBackoff is the wait before retry i (1-based); a variable so tests need not wait.
var webhookBackoff = func(i int) time.Duration { return time.Duration(1<<(i-1)) * time.Second }

func (w *webhook) start() {
	w.queue = make(chan []byte, webhookQueue)
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		for body := range w.queue {
			w.deliver(body)
		}
	}()
}

func (w *webhook) close() {
	w.mu.Lock()
	w.closed = true
	close(w.stop)
	close(w.queue)
	w.mu.Unlock()
	<-w.done
}

// send queues ev (a JSON-marshalable event) for delivery; after close it drops it.
func (w *webhook) send(ev any) {
	if w.url == "" {
		return
	}
	body, err := json.Marshal(ev)
	if err != nil {
		panic("BUG: webhook event does not marshal: " + err.Error())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.log.Warn("webhook closed at shutdown: event dropped")
		return
	}
	select {
	case w.queue <- body:
	default:
		w.log.Warn("webhook queue full: event dropped")
	}
}

func (w *webhook) deliver(body []byte) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var lastErr string
	for i := 1; i <= webhookAttempts; i++ {
		if i > 1 {
			t := time.NewTimer(webhookBackoff(i - 1))
			select {
			case <-t.C:
			case <-w.stop:
				t.Stop()
				return
			}
		}
		req.Reset()
		req.SetRequestURI(w.url)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBody(body)
		err := w.client.DoTimeout(req, resp, webhookTimeout)
		if err == nil && resp.StatusCode() < 300 {
			return
		}
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = "status " + strconv.Itoa(resp.StatusCode())
		}
	}
	w.log.Warn("drift webhook failed", "url", w.url, "attempts", webhookAttempts, "error", lastErr)
}

// encodeJSON writes v as the admin API's JSON answer.
func encodeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		writeError(ctx, errInternal)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(buf.Bytes())
}
