package router

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/llmgate/llmgate/config"
)

// ProbePath is the health endpoint each backend kind answers: vLLM's /health, Ollama's root
// ("Ollama is running"), and /v1/models for any other OpenAI-compatible server.
func ProbePath(kind string) string {
	switch kind {
	case config.KindVLLM:
		return "/health"
	case config.KindOllama:
		return "/"
	default:
		return "/v1/models"
	}
}

// Probe checks one backend once. It returns nil when the backend answers its health endpoint
// with a 2xx status.
func Probe(ctx context.Context, client *http.Client, b *Backend) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+ProbePath(b.Kind), nil)
	if err != nil {
		return err
	}
	if b.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return &ProbeStatusError{URL: b.URL + ProbePath(b.Kind), Status: resp.StatusCode}
	}
	return nil
}

// ProbeStatusError is a health check that reached the backend and got a non-2xx answer: the
// backend is up but unhealthy, or not the kind the config says.
type ProbeStatusError struct {
	URL    string
	Status int
}

func (e *ProbeStatusError) Error() string { return fmt.Sprintf("GET %s: status %d", e.URL, e.Status) }

// Prober runs active health checks on every backend of the current table. Failures count
// toward ejection as request failures do, on a count of their own; a passing probe ends an
// ejection that failed probes started (see health.probeSuccess).
type Prober struct {
	table    func() *Table
	interval time.Duration
	client   func(*Backend) *http.Client

	// Start runs in the serving goroutine and Close in the one shutting down, possibly first
	// (a signal right after start): mu orders them, and a closed prober never starts.
	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc
	done   chan struct{}
}

// NewProber returns a prober for the table that current returns at each round. client returns
// the client that probes a backend (whose connections may be held to rules of the backend's
// own); nil probes every backend with one client of http.DefaultTransport.
func NewProber(current func() *Table, hc config.HealthCheck, client func(*Backend) *http.Client) *Prober {
	if client == nil {
		c := &http.Client{Timeout: hc.Timeout, CheckRedirect: noRedirects}
		client = func(*Backend) *http.Client { return c }
	}
	return &Prober{table: current, interval: hc.Interval, client: client}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Start launches the probe loop, once; Close stops it. Start after Close does nothing.
func (p *Prober) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.run(ctx, p.done)
}

// Close stops the probe loop and waits for it.
func (p *Prober) Close() {
	p.mu.Lock()
	p.closed = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (p *Prober) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.Round(ctx)
		}
	}
}

// Round probes every distinct backend address once, concurrently, and records the results.
func (p *Prober) Round(ctx context.Context) {
	var wg sync.WaitGroup
	seen := map[*health]bool{}
	for _, b := range p.table().Backends() {
		if seen[b.health] {
			continue
		}
		seen[b.health] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Probe(ctx, p.client(b), b); err != nil {
				if ctx.Err() == nil {
					b.ReportProbeFailure()
				}
				return
			}
			b.health.probeSuccess()
		}()
	}
	wg.Wait()
}

// probeSuccess records a passing probe: the probe failure count starts over, and an ejection
// that failed probes started ends at once. An ejection that failed requests started is not
// the probe's to end, even once it has run out: /health answering says nothing of whether
// requests succeed, so the half-open trial request decides, and the backoff keeps growing
// for a backend that passes /health but fails requests.
func (h *health) probeSuccess() {
	h.mu.Lock()
	h.probeFailures = 0
	if h.ejectedUntil.Load() == 0 || !h.byProbe {
		h.mu.Unlock()
		return
	}
	h.restore()
	h.mu.Unlock()
	h.notify(0, "")
}
