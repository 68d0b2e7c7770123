package router

import (
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one server of a version's pool as the current table sees it. Its load and health
// live in a shared *health record keyed by address, so they survive table swaps.
type Backend struct {
	// Index is unique within one Table, dense from 0, so callers can keep per-backend data in a slice.
	Index     int
	URL       string // scheme://host[:port][/path] as configured, no trailing slash
	Addr      string // host:port, the port filled in from the scheme when the URL has none
	TLS       bool
	Kind      string
	Model     string // served model name
	APIKey    string // sent as a bearer token when non-empty
	Weight    int
	Alias     string
	Version   string
	path      string // of URL, no trailing slash: with health, which server and endpoint
	health    *health
	served    *served // whether the server still serves Model
	threshold int
	ejectBase time.Duration
	now       func() time.Time // the Pool's clock
}

// InFlight reports the requests this gateway has open on the backend's address.
func (b *Backend) InFlight() int64 { return b.health.inFlight.Load() }

// Acquire counts one more request in flight and returns its hold, which the request's verdict
// (Hold.ReportSuccess, Hold.ReportFailure) and its Release take. Call it right after Pick:
// when Pick admitted the backend's half-open trial, the hold carries the trial.
func (b *Backend) Acquire() Hold {
	h := b.health
	h.inFlight.Add(1)
	hold := Hold{b: b, epoch: h.epoch.Load()}
	// A Load first: a trial is rarely pending, and the Swap would write the line every time.
	if h.pendingTrial.Load() == 0 {
		return hold
	}
	if t := h.pendingTrial.Swap(0); t != 0 && h.trial.Load() == t {
		hold.trial = t
	}
	return hold
}

// Healthy reports whether the backend is in service now: not ejected, or its ejection has run
// out (a trial may be in flight), and not out of the pool for answering that it does not serve
// its model (see Hold.ReportModelMissing). It reads the state and changes nothing, so /metrics and
// readiness checks may call it at any rate.
func (b *Backend) Healthy() bool {
	now := b.now().UnixNano()
	return b.health.inService(now) && b.served.serves(now)
}

// ReportSuccess records the success of a request that started now, with no hold (tests, and
// callers without one): it ends an ejection and resets the request failure count.
func (b *Backend) ReportSuccess() {
	b.served.found()
	b.health.success(b.health.epoch.Load(), b.now(), false)
}

// ReportFailure records a connect error, timeout or 5xx of a request that started now. After
// threshold consecutive failures the backend is ejected; each repeated ejection lasts twice as
// long (capped at maxEject).
func (b *Backend) ReportFailure() { b.reportFailure(b.health.epoch.Load()) }

func (b *Backend) reportFailure(epoch uint64) {
	b.health.failure(b.now(), b.threshold, b.ejectBase, false, epoch)
}

// ReportProbeFailure records a failed health probe. Probe failures have their own count, which
// only a passing probe resets: a backend that passes /health while failing requests, or the
// reverse, is ejected at threshold failures of either kind.
func (b *Backend) ReportProbeFailure() {
	b.health.failure(b.now(), b.threshold, b.ejectBase, true, b.health.epoch.Load())
}

// ReportDown takes the backend out of service at once, as health.failure_threshold failed
// probes in a row would, and says why in the health hook: for a backend found down before any
// request is sent to it (the checks of a restart), so that none is until a probe passes, which
// ends the ejection at once. A backend out already is left as it is.
func (b *Backend) ReportDown(why string) {
	h := b.health
	h.mu.Lock()
	if h.ejectedUntil.Load() != 0 {
		h.mu.Unlock()
		return
	}
	d := h.eject(b.now(), b.ejectBase, true)
	h.mu.Unlock()
	h.notify(d, why)
}

// Hold is one request's use of a backend, from Acquire to Release. Its verdict counts only
// when the request started after the backend's latest ejection: a request that was already
// running when the backend was ejected says nothing about whether it has recovered. The zero
// Hold holds nothing; its methods do nothing.
type Hold struct {
	b     *Backend
	epoch uint64 // the backend's ejection count when the request started
	trial uint64 // the half-open trial the request holds; 0 for none
	// passed: the held stream was its backend's half-open trial and passed it at its first
	// event (StreamStarted); how the stream ends still counts as the trial's verdict.
	passed bool
}

// Backend returns the held backend, nil for the zero Hold.
func (h Hold) Backend() *Backend { return h.b }

// ReportSuccess records the request's success (see Backend.ReportSuccess).
func (h Hold) ReportSuccess() {
	if h.b != nil {
		h.b.served.found()
		h.b.health.success(h.epoch, h.b.now(), false)
	}
}

// ReportFailure records the request's failure (see Backend.ReportFailure).
func (h Hold) ReportFailure() {
	if h.b != nil {
		h.b.reportFailure(h.epoch)
	}
}

// StreamStarted records that the held stream's first event arrived. When the stream is its
// backend's half-open trial, the backend is back in service now rather than at the stream's
// end, which may be minutes away while every other request to it would be refused: it
// answers. A break of the stream still fails the trial: the backend is ejected again at once,
// for twice as long as before; the backoff starts over when the stream ends otherwise.
func (h *Hold) StreamStarted() {
	if h.b == nil || h.trial == 0 {
		return
	}
	if h.b.health.passTrial(h.trial, h.epoch, h.b.now()) {
		h.trial, h.passed = 0, true
		h.b.health.notify(0, "")
	}
}

// ReportStreamSuccess records a stream that ran to its end: a success, and a good outcome in
// the backend's window of stream outcomes (see ReportStreamFailure).
func (h Hold) ReportStreamSuccess() {
	if h.b != nil {
		h.b.served.found()
		h.b.health.success(h.epoch, h.b.now(), true)
	}
}

// ReportStreamFailure records a stream the backend broke after its 200: cut, stalled or ended
// by a server error. These count by share, not in a row: the backend is ejected when at least
// half of its latest streams (streamWindowMin at least, up to 64) broke, or at once when the
// stream was its half-open trial. A vLLM that cuts one stream in twenty is not ejected by a
// run of bad luck (three in a row would happen every few seconds at a few hundred streams a
// second, and eject a version's only backend); one that cuts them all is, within a window.
func (h Hold) ReportStreamFailure() {
	if h.b != nil {
		if d, why := h.b.health.streamFailure(h.b.now(), h.epoch, h.b.ejectBase, h.passed); d > 0 {
			h.b.health.notify(d, why)
		}
	}
}

// streamWindowMin is the fewest stream outcomes a share of broken streams is judged on.
const streamWindowMin = 20

// Release ends the request: it no longer counts in flight, and a half-open trial it held
// without a verdict (a 429, a client that left) lets the next request try.
func (h Hold) Release() {
	if h.b == nil {
		return
	}
	hl := h.b.health
	if h.trial != 0 {
		hl.trial.CompareAndSwap(h.trial, 0)
	}
	if h.passed {
		hl.endBackoff(h.epoch) // unless its break ejected the backend again
	}
	hl.inFlight.Add(-1)
}

// maxEject caps exponential ejection so a recovered backend is retried within minutes.
const maxEject = 5 * time.Minute

// health is the load and health of one backend address, shared by every table that names it.
type health struct {
	inFlight atomic.Int64
	// ejectedUntil is a unix-nano time; 0 when the backend is in service. Read lock-free on the
	// hot path; written under mu. Once it has passed, the backend is half-open: one trial
	// request at a time may try it, and its verdict decides.
	ejectedUntil atomic.Int64
	// epoch counts ejections: a Hold remembers it, so verdicts of requests that started before
	// the latest ejection are ignored. Written under mu.
	epoch atomic.Uint64
	// trial is the id of the half-open trial in flight, 0 when none. Pick takes it with a
	// compare-and-swap, so concurrent picks admit one trial; a verdict, a new ejection or the
	// trial's Release clears it.
	trial        atomic.Uint64
	trialSeq     atomic.Uint64 // the last trial id handed out
	pendingTrial atomic.Uint64 // a trial Pick took and the next Acquire carries
	pool         *Pool         // for its onChange hook
	url          string        // the pool's key: scheme://host:port

	mu            sync.Mutex
	failures      int // consecutive request failures
	probeFailures int // consecutive probe failures
	// The outcomes of the latest streams that got their 200 (bit set: cut, stalled or ended by
	// a server error after it), newest in bit 0, and how many of the 64 bits are outcomes.
	streams  uint64
	nstreams int
	ejected  int // consecutive ejections, for backoff
	// byProbe: the running ejection was started by a failed health probe, not by a request. A
	// passing probe may end such an ejection at once: the backend came back (a restarted vLLM
	// that loaded its model) and nothing says it fails requests.
	byProbe bool
}

// eligible reports, without changing anything, whether a request could be admitted at now:
// the backend is not ejected, or its ejection has run out and no trial is in flight.
func (h *health) eligible(now int64) bool {
	until := h.ejectedUntil.Load()
	return until == 0 || (now >= until && h.trial.Load() == 0)
}

// admit admits a request picked at now: always when the backend is in service; when it is
// half-open, only the one that takes the trial. The taken trial waits for the next Acquire.
func (h *health) admit(now int64) bool {
	until := h.ejectedUntil.Load()
	if until == 0 {
		return true
	}
	if now < until {
		return false
	}
	id := h.trialSeq.Add(1)
	if !h.trial.CompareAndSwap(0, id) {
		return false
	}
	h.pendingTrial.Store(id)
	return true
}

// inService reports whether the backend takes requests at now: not ejected, or its ejection
// has run out (a trial may go). It changes nothing.
func (h *health) inService(now int64) bool {
	until := h.ejectedUntil.Load()
	return until == 0 || now >= until
}

// success records the success of a request that started in epoch; a whole stream's also goes
// into the window of stream outcomes.
func (h *health) success(epoch uint64, now time.Time, stream bool) {
	h.mu.Lock()
	until := h.ejectedUntil.Load()
	if epoch != h.epoch.Load() || now.UnixNano() < until {
		// Started before the latest ejection, or picked just before it and held just after
		// (its epoch is the new one): it says nothing of the backend now. Only a request
		// admitted once the ejection ran out, the trial, may end it.
		h.mu.Unlock()
		return
	}
	if until == 0 {
		h.failures = 0
		if stream {
			h.noteStream(false)
		}
		h.mu.Unlock()
		return
	}
	h.restore() // the trial passed
	h.mu.Unlock()
	h.notify(0, "")
}

// restore puts an ejected backend back in full service: failure counts and backoff start over.
// mu must be held.
func (h *health) restore() {
	h.reopen()
	h.ejected = 0
}

// reopen puts an ejected backend back in service with fresh failure counts, keeping its
// backoff. mu must be held.
func (h *health) reopen() {
	h.failures, h.probeFailures, h.byProbe = 0, 0, false
	h.streams, h.nstreams = 0, 0
	h.ejectedUntil.Store(0)
	h.trial.Store(0)
	h.pendingTrial.Store(0)
}

// passTrial puts the backend back in service when trial, of a stream that started in epoch,
// is its half-open trial still, and reports whether it did (see Hold.StreamStarted). The
// backoff is kept until the stream ends.
func (h *health) passTrial(trial, epoch uint64, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	until := h.ejectedUntil.Load()
	if until == 0 || now.UnixNano() < until || epoch != h.epoch.Load() || h.trial.Load() != trial {
		return false
	}
	h.reopen()
	return true
}

// endBackoff resets the backoff once a trial stream that passed at its first event is over,
// unless the backend was ejected since the stream started.
func (h *health) endBackoff(epoch uint64) {
	h.mu.Lock()
	if epoch == h.epoch.Load() && h.ejectedUntil.Load() == 0 {
		h.ejected = 0
	}
	h.mu.Unlock()
}

// notify tells the pool's hook about an ejection (d > 0, for the reason why) or a return to
// service (d == 0).
func (h *health) notify(d time.Duration, why string) {
	if h.pool != nil && h.pool.onChange != nil {
		h.pool.onChange(h.url, d, why)
	}
}

func (h *health) failure(now time.Time, threshold int, base time.Duration, probe bool, epoch uint64) {
	if d, why := h.recordFailure(now, threshold, base, probe, epoch); d > 0 {
		h.notify(d, why)
	}
}

// recordFailure counts a failure of a request that started in epoch (or of a probe) and
// returns the ejection it started and why, or 0.
func (h *health) recordFailure(now time.Time, threshold int, base time.Duration, probe bool, epoch uint64) (time.Duration, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	until := h.ejectedUntil.Load()
	if now.UnixNano() < until || epoch != h.epoch.Load() {
		// Already out, or the request started before the latest ejection: requests that were
		// in flight when the backend was ejected, and probes, fail too. Counting them would
		// double the backoff once per failure, so one burst of errors would eject for
		// maxEject instead of base.
		return 0, ""
	}
	halfOpen := until != 0
	count := &h.failures
	if probe {
		count = &h.probeFailures
	}
	*count++
	if *count < threshold && !halfOpen {
		return 0, ""
	}
	var why string
	switch {
	case halfOpen && !probe:
		why = "its trial request failed"
	case halfOpen:
		why = "a health probe failed once its ejection had run out"
	case probe:
		why = strconv.Itoa(*count) + " failed health probes in a row"
	default:
		why = strconv.Itoa(*count) + " failed requests in a row"
	}
	return h.eject(now, base, probe), why
}

// streamFailure adds a broken stream that started in epoch to the window of stream outcomes
// and returns the ejection it started and why, or 0 (see Hold.ReportStreamFailure). trial: the
// stream was the half-open trial that passed at its first event, whose break ejects at once.
func (h *health) streamFailure(now time.Time, epoch uint64, base time.Duration, trial bool) (time.Duration, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	until := h.ejectedUntil.Load()
	if now.UnixNano() < until || epoch != h.epoch.Load() {
		return 0, "" // as recordFailure: out already, or started before the latest ejection
	}
	h.noteStream(true)
	switch {
	case until != 0 || trial: // the half-open trial broke
		return h.eject(now, base, false), "its trial stream broke"
	case h.nstreams >= streamWindowMin && 2*bits.OnesCount64(h.streams) >= h.nstreams:
		why := strconv.Itoa(bits.OnesCount64(h.streams)) + " of its latest " + strconv.Itoa(h.nstreams) + " streams broke"
		return h.eject(now, base, false), why
	}
	return 0, ""
}

// noteStream adds a stream's outcome to the window, newest in bit 0. mu must be held.
func (h *health) noteStream(broken bool) {
	h.streams <<= 1
	if broken {
		h.streams |= 1
	}
	h.nstreams = min(h.nstreams+1, 64)
}

// eject takes the backend out of service for base, doubled for each ejection in a row (capped
// at maxEject), and returns for how long. mu must be held.
func (h *health) eject(now time.Time, base time.Duration, probe bool) time.Duration {
	h.ejected++
	d := base << (h.ejected - 1)
	if d > maxEject || d <= 0 {
		d = maxEject
	}
	h.failures, h.probeFailures = 0, 0
	h.streams, h.nstreams = 0, 0
	h.epoch.Add(1)
	h.ejectedUntil.Store(now.Add(d).UnixNano())
	h.trial.Store(0)
	h.pendingTrial.Store(0)
	h.byProbe = probe
	return d
}

// Pool holds the health of every backend address across table swaps. It is safe for concurrent use.
type Pool struct {
	mu      sync.Mutex
	byAddr  map[string]*health
	byModel map[string]*served // by servedKey
	// now is the clock of every table built on the pool: time.Now, replaced by tests before
	// they build a table so ejection times can be crossed without sleeping.
	now func() time.Time
	// onChange, when set, hears of every ejection (for how long, and why) and return to
	// service (0).
	onChange func(url string, ejectedFor time.Duration, why string)
}

// OnHealthChange sets f to be called when a backend address is ejected (ejectedFor > 0; why
// says what ejected it: failed requests, failed probes, broken streams or a failed trial) or
// put back in service (ejectedFor == 0, why empty). Set it before building tables; f must not
// block.
func (p *Pool) OnHealthChange(f func(url string, ejectedFor time.Duration, why string)) {
	p.onChange = f
}

// NewPool returns an empty pool.
func NewPool() *Pool {
	return &Pool{byAddr: map[string]*health{}, byModel: map[string]*served{}, now: time.Now}
}

func (p *Pool) get(url string) *health {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.byAddr[url]
	if h == nil {
		h = &health{pool: p, url: url}
		p.byAddr[url] = h
	}
	return h
}
