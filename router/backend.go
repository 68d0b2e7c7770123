package router

import (
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
	health    *health
	threshold int
	ejectBase time.Duration
	now       func() time.Time // the Pool's clock
}

// InFlight reports the requests this gateway has open on the backend's address.
func (b *Backend) InFlight() int64 { return b.health.inFlight.Load() }

// Acquire counts one more request in flight; Release must follow.
func (b *Backend) Acquire() { b.health.inFlight.Add(1) }

// Release counts one request as done.
func (b *Backend) Release() { b.health.inFlight.Add(-1) }

// Healthy reports whether the backend takes traffic now (not ejected and probes pass).
func (b *Backend) Healthy() bool { return b.health.available(b.now().UnixNano()) }

// ReportSuccess records a successful response: it ends an ejection and resets the failure count.
func (b *Backend) ReportSuccess() { b.health.success() }

// ReportFailure records a connect error, timeout or 5xx. After threshold consecutive failures
// the backend is ejected; each repeated ejection lasts twice as long (capped at maxEject).
func (b *Backend) ReportFailure() { b.health.failure(b.now(), b.threshold, b.ejectBase, false) }

// ReportProbeFailure records a failed health probe (see health.byProbe).
func (b *Backend) ReportProbeFailure() { b.health.failure(b.now(), b.threshold, b.ejectBase, true) }

// maxEject caps exponential ejection so a recovered backend is retried within minutes.
const maxEject = 5 * time.Minute

// health is the load and health of one backend address, shared by every table that names it.
type health struct {
	inFlight atomic.Int64
	// ejectedUntil is a unix-nano time; 0 when the backend is in service. Read lock-free on the
	// hot path; written under mu.
	ejectedUntil atomic.Int64
	// halfOpen is set once an ejection has expired until the next success: only one request at a
	// time may try the backend then.
	halfOpen atomic.Bool
	pool     *Pool  // for its onChange hook
	url      string // the pool's key: scheme://host:port

	mu       sync.Mutex
	failures int // consecutive
	ejected  int // consecutive ejections, for backoff
	// byProbe: the running ejection was started by a failed health probe, not by a request. A
	// passing probe may end such an ejection at once: the backend came back (a restarted vLLM
	// that loaded its model) and nothing says it fails requests.
	byProbe bool
}

func (h *health) available(now int64) bool {
	until := h.ejectedUntil.Load()
	if until == 0 {
		return true
	}
	if now < until {
		return false
	}
	// Half-open: the ejection has expired; let a single trial request through.
	h.halfOpen.Store(true)
	return h.inFlight.Load() == 0
}

// inService reports whether the backend takes requests at now: not ejected, or its ejection
// has run out (a trial may go). Unlike available, it changes nothing.
func (h *health) inService(now int64) bool {
	until := h.ejectedUntil.Load()
	return until == 0 || now >= until
}

// success records a success and reports whether it put an ejected backend back in service.
func (h *health) success() bool {
	if h.ejectedUntil.Load() == 0 && !h.halfOpen.Load() {
		h.mu.Lock()
		h.failures = 0
		h.mu.Unlock()
		return false
	}
	h.mu.Lock()
	restored := h.ejected > 0
	h.failures, h.ejected = 0, 0
	h.ejectedUntil.Store(0)
	h.halfOpen.Store(false)
	h.mu.Unlock()
	if restored {
		h.notify(0)
	}
	return restored
}

// notify tells the pool's hook about an ejection (d > 0) or a return to service (d == 0).
func (h *health) notify(d time.Duration) {
	if h.pool != nil && h.pool.onChange != nil {
		h.pool.onChange(h.url, d)
	}
}

func (h *health) failure(now time.Time, threshold int, base time.Duration, probe bool) {
	if d := h.recordFailure(now, threshold, base, probe); d > 0 {
		h.notify(d)
	}
}

// recordFailure counts a failure and returns the ejection it started, or 0.
func (h *health) recordFailure(now time.Time, threshold int, base time.Duration, probe bool) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.UnixNano() < h.ejectedUntil.Load() {
		// Already out: requests that were in flight when the backend was ejected, and probes,
		// fail too. Counting them would double the backoff once per failure, so one burst of
		// errors would eject for maxEject instead of base.
		return 0
	}
	h.failures++
	if h.failures < threshold && !h.halfOpen.Load() {
		return 0
	}
	h.ejected++
	d := base << (h.ejected - 1)
	if d > maxEject || d <= 0 {
		d = maxEject
	}
	h.ejectedUntil.Store(now.Add(d).UnixNano())
	h.halfOpen.Store(false)
	h.byProbe = probe
	return d
}

// Pool holds the health of every backend address across table swaps. It is safe for concurrent use.
type Pool struct {
	mu     sync.Mutex
	byAddr map[string]*health
	// now is the clock of every table built on the pool: time.Now, replaced by tests before
	// they build a table so ejection times can be crossed without sleeping.
	now func() time.Time
	// onChange, when set, hears of every ejection (for how long) and return to service (0).
	onChange func(url string, ejectedFor time.Duration)
}

// OnHealthChange sets f to be called when a backend address is ejected (ejectedFor > 0) or put
// back in service (ejectedFor == 0). Set it before building tables; f must not block.
func (p *Pool) OnHealthChange(f func(url string, ejectedFor time.Duration)) { p.onChange = f }

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{byAddr: map[string]*health{}, now: time.Now} }

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
