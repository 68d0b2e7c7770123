package gateway_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// TestRepeatedHeadersPassed checks that a header sent more than once passes with every value:
// a backend's several Vary or Link lines reach the client, and a client's repeated vendor
// header (several X-Tag lines) reaches the backend, buffered and streamed.
func TestRepeatedHeadersPassed(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	var mu sync.Mutex
	var seen []string
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = r.Header.Values("X-Tag")
		mu.Unlock()
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Vary"] = []string{"Origin", "X-Custom"}
		w.Header()["Link"] = []string{"<a>; rel=a", "<b>; rel=b"}
		_, _ = io.WriteString(w, answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "canned"}
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	req, err := http.NewRequest("POST", g.URL+"/v1/chat/completions", strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("X-Tag", "one")
	req.Header.Add("X-Tag", "two")
	resp, err := g.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for h, want := range map[string][]string{"Vary": {"Origin", "X-Custom"}, "Link": {"<a>; rel=a", "<b>; rel=b"}} {
		var got []string
		for _, v := range resp.Header.Values(h) {
			for _, part := range strings.Split(v, ",") {
				got = append(got, strings.TrimSpace(part))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: client got %q, backend sent %q", h, got, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, v := range seen {
		for _, part := range strings.Split(v, ",") {
			got = append(got, strings.TrimSpace(part))
		}
	}
	if !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("X-Tag: backend got %q, client sent [one two]", got)
	}
}

// TestClientKeyHeadersNotForwarded checks that a client's api-key and x-api-key headers (the
// Azure and Anthropic SDKs' way of sending their key, and API gateways' in front of this one)
// stay with the gateway, as its Authorization does: they are the client's credentials to the
// gateway, which a hosted backend must not receive.
func TestClientKeyHeadersNotForwarded(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	var mu sync.Mutex
	var seen []string
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		for _, h := range []string{"Api-Key", "X-Api-Key"} {
			if v := r.Header.Values(h); len(v) > 0 {
				seen = append(seen, h+": "+strings.Join(v, ","))
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindOpenAI, Model: "m"}
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	for _, stream := range []string{"false", "true"} {
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`,
			"Api-Key", "client-secret-1", "X-Api-Key", "client-secret-2")
		if res.status != 200 {
			t.Fatalf("stream %s: status %d %s", stream, res.status, res.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) > 0 {
		t.Errorf("the backend received the client's keys: %q", seen)
	}
}

// TestConnectionNamedHeadersNotForwarded checks that a header the client's Connection header
// names is dropped with it (RFC 9110 7.6.1: such a header belongs to the client's connection
// to the gateway), while the rest pass.
func TestConnectionNamedHeadersNotForwarded(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	var mu sync.Mutex
	var hop, kept []string
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		hop = append(hop, r.Header.Values("X-Hop")...)
		hop = append(hop, r.Header.Values("X-Proxy-Hint")...)
		kept = append(kept, r.Header.Values("X-Tag")...)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	for _, conn := range []string{"keep-alive, X-Hop, x-proxy-hint", "close, X-Hop,X-Proxy-Hint"} {
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
			"Connection", conn, "X-Hop", "client-side", "X-Proxy-Hint", "client-side", "X-Tag", "kept")
		if res.status != 200 {
			t.Fatalf("Connection %q: status %d %s", conn, res.status, res.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hop) > 0 {
		t.Errorf("the backend received headers the client's Connection named: %q", hop)
	}
	if len(kept) != 2 {
		t.Errorf("X-Tag reached the backend %d times, want 2", len(kept))
	}
}

// A stream's Cache-Control and X-Accel-Buffering are the gateway's (an SSE stream is never to be
// cached or buffered by a proxy), whatever lines the backend sent: one of each, not the
// gateway's beside the backend's second line.
func TestStreamHeadersReplaceRepeatedBackendLines(t *testing.T) {
	t.Parallel()
	const chunk = `{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}`
	b := cannedBackend(t, 200, http.Header{
		"Content-Type":      {"text/event-stream"},
		"Cache-Control":     {"no-store", "private"},
		"X-Accel-Buffering": {"yes", "yes"},
	}, "data: "+chunk+"\n\ndata: [DONE]\n\n")
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if res.status != 200 || !strings.Contains(string(res.body), "[DONE]") {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	for h, want := range map[string]string{"Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := res.header.Values(h); !slices.Equal(got, []string{want}) {
			t.Errorf("%s: client got %q, want only %q", h, got, want)
		}
	}
}
