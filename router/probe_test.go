package router

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

// probeRecorder is a backend that records the probes it gets and answers them with status.
type probeRecorder struct {
	status atomic.Int32
	mu     sync.Mutex
	paths  []string
	auths  []string
}

func newProbeServer(t *testing.T, status int) (*httptest.Server, *probeRecorder) {
	t.Helper()
	rec := &probeRecorder{}
	rec.status.Store(int32(status))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.paths = append(rec.paths, r.Method+" "+r.URL.Path)
		rec.auths = append(rec.auths, r.Header.Get("Authorization"))
		rec.mu.Unlock()
		w.WriteHeader(int(rec.status.Load()))
	}))
	t.Cleanup(srv.Close)
	return srv, rec
}

func (r *probeRecorder) requests() (paths, auths []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.paths...), append([]string(nil), r.auths...)
}

// probeTable builds a table with one model per backend config and a prober over it.
func probeTable(t *testing.T, clock *fakeClock, hc config.HealthCheck, backends ...config.Backend) (*Table, *Prober) {
	t.Helper()
	cfg := &config.Config{Health: hc}
	for i, b := range backends {
		cfg.Models = append(cfg.Models, testModel("m"+string(rune('a'+i)), "", testVersion("v1", b)))
	}
	tbl := mustTable(t, cfg, newTestPool(clock))
	return tbl, NewProber(func() *Table { return tbl }, hc, nil)
}

func TestProbeRequestPerKind(t *testing.T) {
	t.Setenv("LLMGATE_ROUTER_TEST_KEY", "sk-probe")
	tests := []struct {
		kind     string
		keyEnv   string
		wantPath string
		wantAuth string
	}{
		{kind: config.KindVLLM, wantPath: "GET /health"},
		{kind: config.KindOllama, wantPath: "GET /"},
		{kind: config.KindOpenAI, keyEnv: "LLMGATE_ROUTER_TEST_KEY", wantPath: "GET /v1/models", wantAuth: "Bearer sk-probe"},
		{kind: config.KindOpenAI, wantPath: "GET /v1/models"},
		{kind: "", wantPath: "GET /v1/models"}, // kind left out: openai
		{kind: config.KindVLLM, keyEnv: "LLMGATE_ROUTER_TEST_KEY", wantPath: "GET /health", wantAuth: "Bearer sk-probe"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.keyEnv, func(t *testing.T) {
			srv, rec := newProbeServer(t, http.StatusOK)
			be := config.Backend{URL: srv.URL + "/", Kind: tt.kind, Model: "served", APIKeyEnv: tt.keyEnv, Weight: 1}
			_, p := probeTable(t, newFakeClock(), testHealth, be)
			p.Round(context.Background())
			paths, auths := rec.requests()
			if len(paths) != 1 || paths[0] != tt.wantPath || auths[0] != tt.wantAuth {
				t.Errorf("probes = %q with Authorization %q; want one %q with %q", paths, auths, tt.wantPath, tt.wantAuth)
			}
		})
	}
}

func TestProberRoundMarksFailing(t *testing.T) {
	hc := testHealth
	hc.FailureThreshold = 1
	tests := []struct {
		name        string
		status      int // 0: nothing listens
		wantHealthy bool
	}{
		{name: "200", status: http.StatusOK, wantHealthy: true},
		{name: "204", status: http.StatusNoContent, wantHealthy: true},
		{name: "500", status: http.StatusInternalServerError},
		{name: "503 while loading the model", status: http.StatusServiceUnavailable},
		{name: "404 wrong kind", status: http.StatusNotFound},
		{name: "401 bad key", status: http.StatusUnauthorized},
		{name: "redirect is not followed", status: http.StatusFound},
		{name: "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newProbeServer(t, tt.status)
			url := srv.URL
			if tt.status == 0 {
				srv.Close() // the port is free now: connecting is refused
			}
			good, _ := newProbeServer(t, http.StatusOK)
			tbl, p := probeTable(t, newFakeClock(), hc, testBackend(url, 1), testBackend(good.URL, 1))
			p.Round(context.Background())
			if got := tbl.Backends()[0].Healthy(); got != tt.wantHealthy {
				t.Errorf("probed backend Healthy() = %v, want %v", got, tt.wantHealthy)
			}
			if !tbl.Backends()[1].Healthy() {
				t.Errorf("a failing neighbour ejected a healthy backend")
			}
		})
	}
}

func TestProberThreshold(t *testing.T) {
	srv, _ := newProbeServer(t, http.StatusInternalServerError)
	tbl, p := probeTable(t, newFakeClock(), testHealth, testBackend(srv.URL, 1)) // threshold 3
	b := tbl.Backends()[0]
	for round, want := range []bool{true, true, false} {
		p.Round(context.Background())
		if got := b.Healthy(); got != want {
			t.Errorf("after round %d Healthy() = %v, want %v", round+1, got, want)
		}
	}
}

// A passing probe does not end an ejection that failed requests started, neither while it runs
// nor once it has run out: /health answering says nothing of whether requests succeed. The
// half-open trial request decides, and its failure doubles the ejection, so a backend that
// passes /health but fails requests backs off instead of coming back every eject_for.
func TestProberLeavesRequestEjectionToTrial(t *testing.T) {
	clock := newFakeClock()
	srv, _ := newProbeServer(t, http.StatusOK)
	tbl, p := probeTable(t, clock, testHealth, testBackend(srv.URL, 1))
	b := tbl.Backends()[0]
	v := tbl.Model("ma").Stable
	stuck := b.Acquire() // a request stuck since before the ejection holds off no trial
	for range 3 {
		b.ReportFailure()
	}

	clock.Advance(9 * time.Second)
	p.Round(context.Background())
	if b.Healthy() {
		t.Fatalf("a passing probe ended an ejection with 1s left")
	}

	clock.Advance(time.Second)
	p.Round(context.Background())
	if !b.Healthy() {
		t.Fatalf("backend out after its ejection expired")
	}
	trial, err := v.Pick(nil)
	if err != nil {
		t.Fatalf("Pick after the ejection expired: %v; want the trial", err)
	}
	hold := trial.Acquire()
	hold.ReportFailure() // the trial fails: out again, for twice as long
	hold.Release()
	stuck.Release()
	if b.Healthy() {
		t.Fatalf("a failed trial after a passing probe did not eject again: the probe restored the backend")
	}
	clock.Advance(20*time.Second - time.Nanosecond)
	p.Round(context.Background())
	if b.Healthy() {
		t.Errorf("second ejection shorter than 2 x eject_for: the probe reset the backoff")
	}
	clock.Advance(time.Nanosecond)
	trial, err = v.Pick(nil)
	if err != nil {
		t.Fatalf("Pick after the second ejection: %v; want the trial", err)
	}
	hold = trial.Acquire()
	hold.ReportSuccess() // the trial passes: back in full service, the backoff starts over
	hold.Release()
	b.ReportFailure()
	b.ReportFailure()
	if !b.Healthy() {
		t.Errorf("two failures ejected a restored backend; the threshold is 3")
	}
	b.ReportFailure()
	clock.Advance(10 * time.Second)
	if !b.Healthy() {
		t.Errorf("ejection after recovery lasted longer than eject_for; the backoff was not reset")
	}
}

// Probe and request failures are counted apart: a passing probe does not forgive failed
// requests, nor a successful request failed probes, so a backend that passes /health but
// answers 500 (or the reverse) is ejected at the threshold however the two interleave.
func TestProbeAndRequestFailuresCountApart(t *testing.T) {
	tests := []struct {
		name   string
		status int      // the probe's answer
		events []string // "fail", "ok": a request's verdict; "probe": a probe round
	}{
		{name: "passing probes do not reset request failures", status: http.StatusOK,
			events: []string{"fail", "fail", "probe", "fail"}},
		{name: "successful requests do not reset probe failures", status: http.StatusServiceUnavailable,
			events: []string{"probe", "probe", "ok", "probe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newProbeServer(t, tt.status)
			tbl, p := probeTable(t, newFakeClock(), testHealth, testBackend(srv.URL, 1)) // threshold 3
			b := tbl.Backends()[0]
			for _, ev := range tt.events {
				switch ev {
				case "fail":
					b.ReportFailure()
				case "ok":
					b.ReportSuccess()
				case "probe":
					p.Round(context.Background())
				}
			}
			if b.Healthy() {
				t.Errorf("after %v the backend is in service; want it ejected (threshold 3)", tt.events)
			}
		})
	}
}

// Probes that fail while the backend is already out neither extend its ejection nor double the
// next one.
func TestProberFailureDuringEjection(t *testing.T) {
	clock := newFakeClock()
	srv, _ := newProbeServer(t, http.StatusServiceUnavailable)
	tbl, p := probeTable(t, clock, testHealth, testBackend(srv.URL, 1))
	b := tbl.Backends()[0]
	for range 3 {
		b.ReportFailure()
	}
	for range 9 {
		clock.Advance(time.Second)
		p.Round(context.Background())
	}
	clock.Advance(time.Second)
	if !b.Healthy() {
		t.Fatalf("probes during the ejection extended it past eject_for")
	}
	p.Round(context.Background()) // the backend is still down: out again, for twice as long
	if b.Healthy() {
		t.Fatalf("a failing probe after the ejection expired did not eject again")
	}
	clock.Advance(20*time.Second - time.Nanosecond)
	if b.Healthy() {
		t.Errorf("second ejection shorter than 2 x eject_for")
	}
	clock.Advance(time.Nanosecond)
	if !b.Healthy() {
		t.Errorf("second ejection longer than 2 x eject_for")
	}
}

func TestProberProbesEachAddressOnce(t *testing.T) {
	srv, rec := newProbeServer(t, http.StatusOK)
	b := testBackend(srv.URL, 1)
	b2 := b
	b2.URL += "/" // same server, spelled differently, serving another model
	b2.Model = "other"
	_, p := probeTable(t, newFakeClock(), testHealth, b, b2)
	p.Round(context.Background())
	if paths, _ := rec.requests(); len(paths) != 1 {
		t.Errorf("one round sent %d probes to one address, want 1", len(paths))
	}
}

// The prober follows table swaps: each round probes the table current returns then.
func TestProberFollowsCurrentTable(t *testing.T) {
	srvA, recA := newProbeServer(t, http.StatusOK)
	srvB, recB := newProbeServer(t, http.StatusOK)
	pool := newTestPool(newFakeClock())
	tblA := mustTable(t, &config.Config{Health: testHealth, Models: []config.Model{testModel("m", "", testVersion("v1", testBackend(srvA.URL, 1)))}}, pool)
	tblB := mustTable(t, &config.Config{Health: testHealth, Models: []config.Model{testModel("m", "", testVersion("v1", testBackend(srvB.URL, 1)))}}, pool)
	var cur atomic.Pointer[Table]
	cur.Store(tblA)
	p := NewProber(cur.Load, testHealth, nil)
	p.Round(context.Background())
	cur.Store(tblB)
	p.Round(context.Background())
	a, _ := recA.requests()
	b, _ := recB.requests()
	if len(a) != 1 || len(b) != 1 {
		t.Errorf("probes per server = %d, %d; want 1, 1", len(a), len(b))
	}
}

func TestProberStartClose(t *testing.T) {
	probed := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case probed <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	hc := testHealth
	hc.Interval = time.Millisecond
	_, p := probeTable(t, newFakeClock(), hc, testBackend(srv.URL, 1))

	p.Start()
	p.Start()          // once is enough: a second Start adds no loop
	for i := range 3 { // the loop keeps probing
		select {
		case <-probed:
		case <-time.After(10 * time.Second):
			t.Fatalf("probe %d never arrived", i+1)
		}
	}
	p.Close() // returns only once the loop has stopped
	p.Close()
}

// Stopping the gateway while a probe hangs neither waits for the probe's timeout nor counts the
// aborted probe against the backend.
func TestProberCloseAbortsHungProbe(t *testing.T) {
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-r.Context().Done() // hangs until the prober gives up
	}))
	t.Cleanup(srv.Close)
	hc := testHealth
	hc.Interval = time.Millisecond
	hc.Timeout = time.Hour
	hc.FailureThreshold = 1
	tbl, p := probeTable(t, newFakeClock(), hc, testBackend(srv.URL, 1))
	p.Start()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("probe never arrived")
	}
	p.Close()
	if !tbl.Backends()[0].Healthy() {
		t.Errorf("the probe aborted by Close ejected the backend")
	}
}

// A gateway told to stop right after it started closes its prober while the serving goroutine
// may not have started it yet: the two must not race, and a closed prober must not start.
func TestProberCloseBeforeStart(t *testing.T) {
	for range 50 {
		p := NewProber(func() *Table { return nil }, testHealth, nil)
		started := make(chan struct{})
		go func() {
			p.Start()
			close(started)
		}()
		p.Close()
		<-started
		p.Close() // whichever ran first, the loop is stopped or never ran
		p.mu.Lock()
		running := p.cancel != nil && !p.closed
		p.mu.Unlock()
		if running {
			t.Fatal("the prober runs after Close")
		}
	}
	p := NewProber(func() *Table { return nil }, testHealth, nil)
	p.Close()
	p.Start()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		t.Fatal("Start after Close started the probe loop")
	}
}

// A backend taken out by failed probes alone (no requests, e.g. a vLLM restarting) is back at
// the first passing probe, however long its backoff has grown; one taken out by failed requests
// keeps its ejection (TestProberLeavesRequestEjectionToTrial).
func TestProberEndsProbeEjection(t *testing.T) {
	clock := newFakeClock()
	srv, rec := newProbeServer(t, http.StatusServiceUnavailable)
	tbl, p := probeTable(t, clock, testHealth, testBackend(srv.URL, 1))
	b := tbl.Backends()[0]
	for range 20 { // down for a while: ejections back off while probes keep failing
		p.Round(context.Background())
		clock.Advance(5 * time.Second)
	}
	if b.Healthy() {
		t.Fatal("a backend failing every probe is in service")
	}
	rec.status.Store(http.StatusOK) // it came back
	p.Round(context.Background())
	if !b.Healthy() {
		t.Fatal("a passing probe did not end an ejection that only probes started")
	}
}
