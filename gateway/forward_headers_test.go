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
	b, requests := headersBackend(t, config.KindVLLM, http.Header{"Vary": {"Origin", "X-Custom"}, "Link": {"<a>; rel=a", "<b>; rel=b"}})
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
	var got []string
	for _, v := range requests()[0].Values("X-Tag") {
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
	b, requests := headersBackend(t, config.KindOpenAI, nil)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	for _, stream := range []string{"false", "true"} {
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`,
			"Api-Key", "client-secret-1", "X-Api-Key", "client-secret-2")
		if res.status != 200 {
			t.Fatalf("stream %s: status %d %s", stream, res.status, res.body)
		}
	}
	var seen []string
	for _, h := range requests() {
		for _, k := range []string{"Api-Key", "X-Api-Key"} {
			if v := h.Values(k); len(v) > 0 {
				seen = append(seen, k+": "+strings.Join(v, ","))
			}
		}
	}
	if len(seen) > 0 {
		t.Errorf("the backend received the client's keys: %q", seen)
	}
}

// TestConnectionNamedHeadersNotForwarded checks that a header the client's Connection header
// names is dropped with it (RFC 9110 7.6.1: such a header belongs to the client's connection
// to the gateway), while the rest pass.
func TestConnectionNamedHeadersNotForwarded(t *testing.T) {
	t.Parallel()
	b, requests := headersBackend(t, config.KindVLLM, nil)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	for _, conn := range []string{"keep-alive, X-Hop, x-proxy-hint", "close, X-Hop,X-Proxy-Hint"} {
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
			"Connection", conn, "X-Hop", "client-side", "X-Proxy-Hint", "client-side", "X-Tag", "kept")
		if res.status != 200 {
			t.Fatalf("Connection %q: status %d %s", conn, res.status, res.body)
		}
	}
	var hop, kept []string
	for _, h := range requests() {
		hop = append(hop, h.Values("X-Hop")...)
		hop = append(hop, h.Values("X-Proxy-Hint")...)
		kept = append(kept, h.Values("X-Tag")...)
	}
	if len(hop) > 0 {
		t.Errorf("the backend received headers the client's Connection named: %q", hop)
	}
	if len(kept) != 2 {
		t.Errorf("X-Tag reached the backend %d times, want 2", len(kept))
	}
}

// TestBackendConnectionNamedHeadersNotPassed checks the other direction: a header the
// backend's Connection header names belongs to the backend's connection to the gateway and
// does not reach the client, while the backend's other headers do.
func TestBackendConnectionNamedHeadersNotPassed(t *testing.T) {
	t.Parallel()
	b, _ := headersBackend(t, config.KindVLLM, http.Header{
		"Connection": {"keep-alive, X-Backend-Hop"}, "X-Backend-Hop": {"backend-side"}, "X-Kept": {"yes"},
	})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if res.status != 200 {
		t.Fatalf("status %d %s", res.status, res.body)
	}
	if v := res.header.Values("X-Backend-Hop"); len(v) > 0 {
		t.Errorf("the client got X-Backend-Hop %q, which the backend's Connection header named", v)
	}
	if v := res.header.Get("X-Kept"); v != "yes" {
		t.Errorf("X-Kept = %q, want the backend's yes", v)
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

// headersBackend is a backend of kind that answers every request with a one-choice chat answer
// (and extra's response headers) and records the headers of each request it gets; requests
// returns them in order.
func headersBackend(t *testing.T, kind string, extra http.Header) (b config.Backend, requests func() []http.Header) {
	t.Helper()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	var mu sync.Mutex
	var seen []http.Header
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		for k, v := range extra {
			w.Header()[k] = v
		}
		_, _ = io.WriteString(w, answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return config.Backend{URL: "http://" + ln.Addr().String(), Kind: kind, Model: "m"}, func() []http.Header {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}
