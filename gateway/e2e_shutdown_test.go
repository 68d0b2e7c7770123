package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
)

// From Drain on (a stop's shutdown.drain_delay), /readyz says shutting_down so that the load
// balancer stops sending, while every request, on a new connection too, is still served:
// Kubernetes removes a pod's endpoints asynchronously, and for a few seconds after SIGTERM new
// connections still arrive.
func TestDrainServesWhileNotReady(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
	if r := g.do(t, "GET", "/readyz", ""); r.status != http.StatusOK {
		t.Fatalf("/readyz before Drain: %d %s", r.status, r.body)
	}
	g.Drain()
	if r := g.do(t, "GET", "/readyz", ""); r.status != http.StatusServiceUnavailable || string(r.body) != `{"status":"shutting_down"}` {
		t.Errorf("/readyz while draining: %d %s, want 503 shutting_down", r.status, r.body)
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	r := doURL(t, fresh, "POST", g.URL+"/v1/chat/completions", `{"model":"chat","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`,
		"Content-Type", "application/json")
	if r.status != http.StatusOK {
		t.Errorf("a request on a new connection while draining: %d %s, want 200", r.status, r.body)
	}
}

// A stream still running when the shutdown's grace is over ends with an error event the SDKs
// raise (server_shutting_down), not a connection cut without a word, and one log line says how
// many requests were cut. The backend's connection is closed, which frees its GPU slot.
func TestShutdownCutsStreamsAfterGrace(t *testing.T) {
	t.Parallel()
	const chunk = `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}` + "\n\n"
	backendGone := make(chan struct{})
	b := rawBackend(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(chunk), chunk)
		io.Copy(io.Discard, c) // a long answer: until the gateway closes the connection
		close(backendGone)
	})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	resp := g.postChat(t, ctx(t), `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	if err != nil || !strings.Contains(first, `"content":"hi"`) {
		t.Fatalf("first event %q, %v", first, err)
	}
	type result struct {
		cut int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		grace, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		cut, err := g.Shutdown(grace)
		done <- result{cut, err}
	}()
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("reading the rest of the stream: %v", err)
	}
	evs := events(rest)
	if len(evs) == 0 {
		t.Fatalf("the stream ended without an error event: %q", rest)
	}
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	last := evs[len(evs)-1]
	if err := json.Unmarshal([]byte(strings.TrimPrefix(last, "data: ")), &e); err != nil || e.Error.Code != "server_shutting_down" || e.Error.Type != "server_error" || !strings.Contains(e.Error.Message, "shut down") {
		t.Errorf("last event %s, want a server_error server_shutting_down", last)
	}
	res := <-done
	if res.err != nil || res.cut != 1 {
		t.Errorf("Shutdown: %d cut, %v; want 1, nil", res.cut, res.err)
	}
	<-backendGone
	var cutLines int
	for _, line := range strings.Split(strings.TrimSpace(g.logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		switch m["msg"] {
		case "shutdown grace over: requests cut":
			cutLines++
			if m["requests"] != 1.0 {
				t.Errorf("log line %s, want requests 1", line)
			}
		case "request":
			if m["error"] != "server_shutting_down" {
				t.Errorf("request log line %s, want error server_shutting_down", line)
			}
		}
	}
	if cutLines != 1 {
		t.Errorf("%d log lines say requests were cut, want 1:\n%s", cutLines, g.logs.String())
	}
}
