package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router/store"
)

// A stop drains as shutdown says: for drain_delay the gateway still serves, new connections
// included, while /readyz says shutting_down (Kubernetes removes a pod's endpoints
// asynchronously); then its listener closes. A second signal during the drain stops at once,
// as operators expect Ctrl-C twice to.
func TestStopDrains(t *testing.T) {
	backend := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m"})
	tests := []struct {
		name       string
		drainDelay time.Duration
		second     os.Signal // sent once /readyz says shutting_down; nil: none
		wantRC     int
		wantStderr string
	}{
		{"second signal during the drain", time.Hour, syscall.SIGINT, 1, "second signal: stopped at once"},
		{"sighup during the drain is not a second signal", time.Hour, syscall.SIGHUP, -1, "SIGHUP ignored"},
		{"drain delay over", 10 * time.Millisecond, nil, 0, ""},
		{"no drain delay", 0, nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := buildServeConfig("", []string{backend}, nil, "127.0.0.1:0", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Shutdown = config.Shutdown{DrainDelay: tt.drainDelay, Grace: 30 * time.Second}
			stderr := &syncBuffer{}
			g, lns, err := start(cfg, stderr, store.NewMemory())
			if err != nil {
				t.Fatal(err)
			}
			base := "http://" + lns[0].Addr().String()
			sig := make(chan os.Signal, 1)
			rc, returned := make(chan int, 1), make(chan struct{})
			go func() { rc <- waitForSignal(g, cfg.Shutdown, stderr, sig, false); close(returned) }()
			t.Cleanup(func() {
				select {
				case <-returned:
				default: // still draining (a failed test): end it
					sig <- syscall.SIGTERM
					<-returned
				}
				g.Close()
			})
			sig <- syscall.SIGTERM
			if tt.drainDelay > time.Minute {
				fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
				waitUntil(t, "/readyz says shutting_down", func() bool {
					resp, err := fresh.Get(base + "/readyz")
					if err != nil {
						t.Fatalf("/readyz while draining: %v", err)
					}
					resp.Body.Close()
					return resp.StatusCode == http.StatusServiceUnavailable
				})
				resp, err := fresh.Post(base+"/v1/chat/completions", "application/json",
					strings.NewReader(`{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
				if err != nil {
					t.Fatalf("a request on a new connection while draining: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("a request on a new connection while draining: %d, want 200", resp.StatusCode)
				}
			}
			if tt.second != nil {
				sig <- tt.second
			}
			if tt.wantRC < 0 {
				// Still draining: the SIGHUP is said, and a SIGTERM then stops at once.
				waitUntil(t, "the SIGHUP said", func() bool { return strings.Contains(stderr.String(), tt.wantStderr) })
				sig <- syscall.SIGTERM
				if got := <-rc; got != 1 {
					t.Errorf("exit status %d after SIGHUP then SIGTERM, want 1", got)
				}
				return
			}
			if got := <-rc; got != tt.wantRC {
				t.Errorf("exit status %d, want %d; stderr %s", got, tt.wantRC, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.wantStderr)
			}
			if tt.second == nil {
				if c, err := net.Dial("tcp", lns[0].Addr().String()); err == nil {
					c.Close()
					t.Errorf("the listener still accepts after the stop")
				}
			}
		})
	}
}

// waitUntil polls cond until it holds, for at most 10 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		<-tick.C
	}
}

// A second signal while requests in flight have their grace stops at once too: Ctrl-C twice
// does not wait out shutdown.grace for a stream that will not end.
func TestSecondSignalDuringGraceStopsAtOnce(t *testing.T) {
	// One token every 1,000 seconds after the first: a stream that has begun (the client has
	// its 200, which waits for the first event) and outlasts the test.
	backend := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m", TokensPerSecond: 0.001})
	cfg, err := buildServeConfig("", []string{backend}, nil, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shutdown = config.Shutdown{Grace: time.Hour}
	stderr := &syncBuffer{}
	g, lns, err := start(cfg, stderr, store.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The stream is still waiting for its next token: cut it.
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		g.Shutdown(ctx) //nolint:errcheck
	})
	req, _ := http.NewRequest("POST", "http://"+lns[0].Addr().String()+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sig := make(chan os.Signal, 2)
	sig <- syscall.SIGTERM
	sig <- syscall.SIGINT
	rc := make(chan int, 1)
	go func() { rc <- waitForSignal(g, cfg.Shutdown, stderr, sig, false) }()
	select {
	case got := <-rc:
		if got != 1 || !strings.Contains(stderr.String(), "second signal: stopped at once, with requests in flight") {
			t.Errorf("exit status %d, stderr %q; want 1, saying the second signal stopped it", got, stderr.String())
		}
	case <-time.After(20 * time.Second): // a bound on a failing test, not a synchronisation
		t.Fatal("the second signal did not stop the grace")
	}
}
