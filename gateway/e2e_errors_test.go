package gateway_test

// Errors as clients see them: always OpenAI's envelope with code a string or null, the
// status SDKs act on, and Retry-After where waiting helps.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

func TestBadRequests(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantParam  string
		wantCode   string
		wantAllow  string
	}{
		{"malformed JSON", "POST", "/v1/chat/completions", `{"model":"chat",` + msgs, 400, "", "", ""},
		{"not an object", "POST", "/v1/chat/completions", `["chat"]`, 400, "", "", ""},
		{"empty body", "POST", "/v1/chat/completions", ``, 400, "", "", ""},
		{"missing model", "POST", "/v1/chat/completions", `{` + msgs + `}`, 400, "model", "", ""},
		{"model not a string", "POST", "/v1/chat/completions", `{"model":5,` + msgs + `}`, 400, "model", "", ""},
		{"missing messages", "POST", "/v1/chat/completions", `{"model":"chat"}`, 400, "messages", "", ""},
		{"messages not an array", "POST", "/v1/chat/completions", `{"model":"chat","messages":"hi"}`, 400, "messages", "", ""},
		{"empty messages", "POST", "/v1/chat/completions", `{"model":"chat","messages":[]}`, 400, "messages", "", ""},
		{"stream not a boolean", "POST", "/v1/chat/completions", `{"model":"chat","stream":"yes",` + msgs + `}`, 400, "stream", "", ""},
		{"stream_options without stream", "POST", "/v1/chat/completions", `{"model":"chat","stream_options":{"include_usage":true},` + msgs + `}`, 400, "stream_options", "", ""},
		// Content the guard could not read (one part not in an array, a text that is no string)
		// would reach the backend unchecked: refused as OpenAI refuses it.
		{"content an object", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":{"type":"text","text":"mail jane@example.com"}}]}`, 400, "messages[0].content", "", ""},
		{"content a number", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":5}]}`, 400, "messages[1].content", "", ""},
		{"content part a string", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":["hi"]}]}`, 400, "messages[0].content[0]", "", ""},
		{"content part text an object", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":[{"type":"text","text":{"value":"mail jane@example.com"}}]}]}`, 400, "messages[0].content[0].text", "", ""},
		{"tool call arguments an object", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"to":"jane@example.com"}}}]}]}`, 400, "messages[1].tool_calls[0].function.arguments", "", ""},
		{"completion without prompt", "POST", "/v1/completions", `{"model":"chat"}`, 400, "prompt", "", ""},
		{"embeddings without input", "POST", "/v1/embeddings", `{"model":"chat"}`, 400, "input", "", ""},
		{"streamed embeddings", "POST", "/v1/embeddings", `{"model":"chat","input":"x","stream":true}`, 400, "stream", "", ""},
		// Escaped keys mean the same to JSON parsers; the gateway must not crash on them.
		{"escaped model key", "POST", "/v1/chat/completions", `{"mod\u0065l":"chat",` + msgs + `}`, 400, "model", "", ""},
		{"duplicate model keys", "POST", "/v1/chat/completions", `{"model":"chat","model":5,` + msgs + `}`, 400, "model", "", ""},
		// A repeated key: the guard would read the first copy, the backend the last.
		{"repeated messages", "POST", "/v1/chat/completions", `{"model":"chat",` + msgs + `,` + msgs + `}`, 400, "messages", "", ""},
		{"repeated stream", "POST", "/v1/chat/completions", `{"model":"chat","stream":false,"stream":true,` + msgs + `}`, 400, "stream", "", ""},
		{"repeated content", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi","content":"bye"}]}`, 400, "content", "", ""},
		{"repeated escaped content", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi","cont\u0065nt":"bye"}]}`, 400, "content", "", ""},
		{"repeated text in a part", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]}`, 400, "text", "", ""},
		{"repeated arguments", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}","arguments":"{}"}}]}]}`, 400, "arguments", "", ""},
		{"repeated prompt", "POST", "/v1/completions", `{"model":"chat","prompt":"a","prompt":"b"}`, 400, "prompt", "", ""},
		{"repeated input", "POST", "/v1/embeddings", `{"model":"chat","input":"a","input":"b"}`, 400, "input", "", ""},
		{"GET on chat", "GET", "/v1/chat/completions", ``, 405, "", "", "POST"},
		{"PUT on embeddings", "PUT", "/v1/embeddings", `{}`, 405, "", "", "POST"},
		{"POST on models", "POST", "/v1/models", `{}`, 405, "", "", "GET, HEAD"},
		{"DELETE on a model", "DELETE", "/v1/models/chat", ``, 405, "", "", "GET, HEAD"},
		{"unknown path", "POST", "/v1/nope", `{}`, 404, "", "unknown_url", ""},
		// vLLM and Ollama serve unauthenticated operational paths; the data plane is not a
		// pass-through to them.
		{"vLLM health", "GET", "/health", ``, 404, "", "unknown_url", ""},
		{"vLLM metrics", "GET", "/metrics", ``, 404, "", "unknown_url", ""},
		{"vLLM tokenize", "POST", "/tokenize", `{"model":"chat","prompt":"hi"}`, 404, "", "unknown_url", ""},
		{"vLLM version", "GET", "/version", ``, 404, "", "unknown_url", ""},
		{"vLLM load_lora_adapter", "POST", "/v1/load_lora_adapter", `{"lora_name":"x","lora_path":"/tmp"}`, 404, "", "unknown_url", ""},
		{"Ollama tags", "GET", "/api/tags", ``, 404, "", "unknown_url", ""},
		{"Ollama pull", "POST", "/api/pull", `{"model":"x"}`, 404, "", "unknown_url", ""},
		{"chat under a prefix", "POST", "/x/v1/chat/completions", `{"model":"chat",` + msgs + `}`, 404, "", "unknown_url", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.gw.do(t, tt.method, tt.path, tt.body)
			if res.status != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", res.status, res.body, tt.wantStatus)
			}
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content-type %q, want application/json", ct)
			}
			typ, param, code := envelope(t, res.body)
			if typ != "invalid_request_error" || param != tt.wantParam || code != tt.wantCode {
				t.Errorf("error type %q param %q code %q, want invalid_request_error %q %q", typ, param, code, tt.wantParam, tt.wantCode)
			}
			if got := res.header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if res.header.Get("X-Request-Id") == "" {
				t.Errorf("no x-request-id on the error")
			}
		})
	}
	// Nothing above reached a backend, not even a connection.
	if n := s.v1.accept.Load() + s.v2.accept.Load(); n != 0 {
		t.Errorf("backends accepted %d connections, want 0", n)
	}
}

func TestBadRequestTyped(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	c, _ := s.gw.client()
	_, err := c.CreateChatCompletion(ctx(t), openai.ChatCompletionRequest{Model: "chat"})
	ae := asAPIError(t, err)
	if ae.HTTPStatusCode != 400 || ae.Type != "invalid_request_error" || deref(ae.Param) != "messages" || codeString(ae.Code) != "" {
		t.Errorf("got %d %q param %q code %v, want 400 invalid_request_error param messages", ae.HTTPStatusCode, ae.Type, deref(ae.Param), ae.Code)
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{})
	const limit = 4096
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Limits.MaxBodyBytes = limit },
		model("chat", "v1", version("v1", f.backend()))))
	c, _ := g.client()
	for _, tt := range []struct {
		name    string
		content int // bytes of message content
		want    int
	}{
		{"under the limit", limit - 200, 200},
		{"over the limit", 2 * limit, 413},
		// Still arriving when it is refused: the rest is read and thrown away, so the client
		// gets the 413 rather than a connection reset (which SDKs retry).
		{"far over the limit", 4 << 20, 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := chatRequest("chat", 2)
			req.Messages[0].Content = strings.Repeat("a", tt.content)
			_, err := c.CreateChatCompletion(ctx(t), req)
			if tt.want == 200 {
				if err != nil {
					t.Fatalf("CreateChatCompletion: %v", err)
				}
				return
			}
			ae := asAPIError(t, err)
			if ae.HTTPStatusCode != 413 || ae.Type != "invalid_request_error" || codeString(ae.Code) != "request_too_large" {
				t.Errorf("got %d %q %v, want 413 invalid_request_error request_too_large", ae.HTTPStatusCode, ae.Type, ae.Code)
			}
			if !strings.Contains(ae.Message, "at most 4096 bytes") {
				t.Errorf("413 message %q does not say the limit", ae.Message)
			}
		})
	}
	if got := f.Requests(); got != 1 {
		t.Errorf("backend got %d requests, want 1 (the one under the limit)", got)
	}
}

// TestBackendErrorsNormalised checks that vLLM's and Ollama's error bodies reach clients in
// OpenAI's shape: snake_case type, code a string or null (vLLM sends the status as a number,
// which breaks typed clients), and the status SDKs act on.
func TestBackendErrorsNormalised(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flavor     string
		status     int // what the backend answers
		wantStatus int
		wantType   string
		wantCode   string
		retryAfter bool
	}{
		{"vllm", 400, 400, "invalid_request_error", "", false},
		{"vllm", 404, 404, "invalid_request_error", "model_not_found", false},
		{"vllm", 422, 422, "invalid_request_error", "", false},
		{"vllm", 429, 429, "rate_limit_error", "rate_limit_exceeded", true},
		{"vllm", 500, 502, "server_error", "", false},
		{"vllm", 503, 503, "server_error", "", true},
		{"ollama", 400, 400, "invalid_request_error", "", false},
		{"ollama", 404, 404, "invalid_request_error", "model_not_found", false},
		{"ollama", 429, 429, "rate_limit_error", "rate_limit_exceeded", true},
		{"ollama", 500, 502, "server_error", "", false},
		{"ollama", 503, 503, "server_error", "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %d", tt.flavor, tt.status), func(t *testing.T) {
			t.Parallel()
			// A gateway per case: 5xx answers count toward ejecting the backend.
			f := startFake(t, fakellm.Options{Flavor: tt.flavor, Model: "m"})
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
			for _, stream := range []bool{false, true} {
				body := fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
				res := g.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-Status", strconv.Itoa(tt.status))
				if res.status != tt.wantStatus {
					t.Fatalf("stream=%v: status %d %s, want %d", stream, res.status, res.body, tt.wantStatus)
				}
				typ, _, code := envelope(t, res.body) // fails on a numeric code
				if typ != tt.wantType || code != tt.wantCode {
					t.Errorf("stream=%v: type %q code %q, want %q %q (body %s)", stream, typ, code, tt.wantType, tt.wantCode, res.body)
				}
				checkRetryAfter(t, res.header, tt.retryAfter)
			}
			// And typed, as go-openai sees it.
			c, _ := g.client("X-Fakellm-Status", strconv.Itoa(tt.status))
			_, err := c.CreateChatCompletion(ctx(t), chatRequest("chat", 2))
			ae := asAPIError(t, err)
			if ae.HTTPStatusCode != tt.wantStatus || ae.Type != tt.wantType || codeString(ae.Code) != tt.wantCode || ae.Message == "" {
				t.Errorf("go-openai: %d %q %#v %q, want %d %q %q", ae.HTTPStatusCode, ae.Type, ae.Code, ae.Message, tt.wantStatus, tt.wantType, tt.wantCode)
			}
		})
	}
}

// checkRetryAfter checks that Retry-After is absent, or present as seconds within 1..60 (the
// Node SDK ignores larger values).
func checkRetryAfter(t testing.TB, h http.Header, want bool) {
	t.Helper()
	v := h.Get("Retry-After")
	if !want {
		if v != "" {
			t.Errorf("Retry-After %q, want none", v)
		}
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 60 {
		t.Errorf("Retry-After %q, want seconds within 1..60", v)
	}
}

func TestBackendErrorShapes(t *testing.T) {
	t.Parallel()
	js := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name           string
		status         int
		header         http.Header
		body           string
		wantStatus     int
		wantType       string
		wantParam      string
		wantCode       string
		wantRetryAfter string
	}{
		{"vLLM validation error keeps param", 400, js,
			`{"error":{"message":"Either prompt or prompt_embeds must be provided and non-empty.","type":"BadRequestError","param":"prompt","code":400}}`,
			400, "invalid_request_error", "prompt", "", ""},
		{"old flat vLLM error", 400, js, `{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}`,
			400, "invalid_request_error", "", "", ""},
		{"Ollama native error", 404, js, `{"error":"model \"llama3\" not found, try pulling it first"}`,
			404, "invalid_request_error", "", "model_not_found", ""},
		{"string code kept", 400, js, `{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
			400, "invalid_request_error", "messages", "context_length_exceeded", ""},
		{"HTML 502 from a proxy", 502, http.Header{"Content-Type": {"text/html"}}, `<html><body>Bad Gateway</body></html>`,
			502, "server_error", "", "", ""},
		{"429 with a long Retry-After is capped", 429, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"3600"}},
			`{"error":{"message":"slow down","type":"RateLimitError","param":null,"code":429}}`, 429, "rate_limit_error", "", "rate_limit_exceeded", "60"},
		{"429 with an HTTP-date Retry-After", 429, http.Header{"Retry-After": {"Wed, 21 Oct 2015 07:28:00 GMT"}},
			`{"error":{"message":"slow down"}}`, 429, "rate_limit_error", "", "rate_limit_exceeded", "1"},
		// A hosted provider's: milliseconds only, rounded up to the seconds of Retry-After; a
		// date ten minutes ahead, which is past what the SDKs wait for.
		{"429 with retry-after-ms only", 429, http.Header{"Retry-After-Ms": {"2500"}},
			`{"error":{"message":"slow down"}}`, 429, "rate_limit_error", "", "rate_limit_exceeded", "3"},
		{"429 with a future HTTP-date Retry-After", 429, http.Header{"Retry-After": {time.Now().Add(10 * time.Minute).UTC().Format(http.TimeFormat)}},
			`{"error":{"message":"slow down"}}`, 429, "rate_limit_error", "", "rate_limit_exceeded", "60"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := cannedBackend(t, tt.status, tt.header, tt.body)
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
			res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
			if res.status != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", res.status, res.body, tt.wantStatus)
			}
			typ, param, code := envelope(t, res.body)
			if typ != tt.wantType || param != tt.wantParam || code != tt.wantCode {
				t.Errorf("type %q param %q code %q, want %q %q %q (body %s)", typ, param, code, tt.wantType, tt.wantParam, tt.wantCode, res.body)
			}
			if got := res.header.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetryAfter)
			}
		})
	}
}

// TestAllBackendsDown: every backend of the version refuses connections. Clients get a 5xx
// with Retry-After each time, and once the backends are ejected the gateway answers 503 at once.
func TestAllBackendsDown(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", closedBackend(t), closedBackend(t)))))
			body := fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
			if res := g.do(t, "GET", "/readyz", ""); res.status != 200 {
				t.Errorf("/readyz before any failure: %d %s, want 200", res.status, res.body)
			}
			var last response
			for i := range 4 {
				last = g.do(t, "POST", "/v1/chat/completions", body)
				if last.status != 502 && last.status != 503 {
					t.Fatalf("request %d: status %d %s, want 502 or 503", i, last.status, last.body)
				}
				if typ, _, _ := envelope(t, last.body); typ != "server_error" {
					t.Errorf("request %d: type %q, want server_error", i, typ)
				}
				checkRetryAfter(t, last.header, true)
			}
			if last.status != 503 {
				t.Errorf("after the backends were ejected: status %d, want 503", last.status)
			}
			// A load balancer sees the gateway cannot serve its models.
			if res := g.do(t, "GET", "/readyz", ""); res.status != 503 {
				t.Errorf("/readyz with every backend ejected: %d %s, want 503", res.status, res.body)
			}
			if res := g.do(t, "GET", "/healthz", ""); res.status != 200 {
				t.Errorf("/healthz: %d, want 200 (the gateway itself is alive)", res.status)
			}
		})
	}
}

// TestRetryAndEjection: one of two backends fails; every request still succeeds on the other,
// and once the bad backend is ejected it gets no more traffic.
func TestRetryAndEjection(t *testing.T) {
	t.Parallel()
	const threshold = 2
	tests := []struct {
		name string
		bad  func(t *testing.T) (config.Backend, func() int64) // the backend and its request count
	}{
		{"backend answers 500", func(t *testing.T) (config.Backend, func() int64) {
			f := startFake(t, fakellm.Options{Model: "bad"})
			f.ForceStatus(500)
			return f.backend(), f.Requests
		}},
		{"backend answers 503", func(t *testing.T) (config.Backend, func() int64) {
			f := startFake(t, fakellm.Options{Flavor: "ollama", Model: "bad"})
			f.ForceStatus(503)
			return f.backend(), f.Requests
		}},
		{"connection refused", func(t *testing.T) (config.Backend, func() int64) {
			return closedBackend(t), nil
		}},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s stream=%v", tt.name, stream), func(t *testing.T) {
				t.Parallel()
				good := startFake(t, fakellm.Options{Model: "good"})
				bad, badRequests := tt.bad(t)
				g := startGateway(t, newConfig(t, func(c *config.Config) {
					c.Health.FailureThreshold = threshold
					c.Health.EjectFor = time.Hour
				}, model("chat", "v1", version("v1", good.backend(), bad))))
				c, _ := g.client()
				send := func() {
					t.Helper()
					req := chatRequest("chat", 2)
					if !stream {
						resp, err := c.CreateChatCompletion(ctx(t), req)
						if err != nil || resp.Choices[0].Message.Content == "" {
							t.Fatalf("request failed although a healthy backend remained: %v", err)
						}
						return
					}
					req.Stream = true
					st, err := c.CreateChatCompletionStream(ctx(t), req)
					if err != nil {
						t.Fatalf("stream failed although a healthy backend remained: %v", err)
					}
					if chunks, err := readStream(st); err != nil || len(chunks) == 0 {
						t.Fatalf("stream: %d chunks, %v", len(chunks), err)
					}
				}
				up := map[string]string{"backend": bad.URL}
				// The bad backend is picked at random until it has failed threshold times.
				for i := 0; ; i++ {
					if i == 200 {
						t.Fatalf("bad backend still in service after %d requests", i)
					}
					send()
					if v, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_backend_up", up); v == 0 {
						break
					}
				}
				var before int64
				if badRequests != nil {
					before = badRequests()
					if before != threshold {
						t.Errorf("bad backend got %d requests before ejection, want %d", before, threshold)
					}
				}
				failed, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_requests_total", up)
				if failed != threshold {
					t.Errorf("llmgate_requests_total for the bad backend = %v, want %d", failed, threshold)
				}
				goodBefore := good.Requests()
				for range 10 {
					send()
				}
				if badRequests != nil && badRequests() != before {
					t.Errorf("ejected backend got %d more requests", badRequests()-before)
				}
				if got := good.Requests() - goodBefore; got != 10 {
					t.Errorf("good backend got %d of 10 requests after the ejection", got)
				}
				if after, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_requests_total", up); after != failed {
					t.Errorf("requests to the ejected backend went from %v to %v", failed, after)
				}
			})
		}
	}
}

// Time spent on a backend that failed before another answered is the backends', not the
// gateway's: llmgate_gateway_overhead_seconds stays in the gateway's own microseconds when a
// request is retried.
func TestOverheadLeavesOutFailedAttempts(t *testing.T) {
	ln := listen(t)
	slowFailure := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-time.After(100 * time.Millisecond) // a backend that takes 100 ms to fail
		w.WriteHeader(503)
	})}
	go func() { _ = slowFailure.Serve(ln) }()
	t.Cleanup(func() { _ = slowFailure.Close() })
	failing := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "fake-model"}
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Retry.Attempts = 2 },
		model("chat", "v1", version("v1", failing, f.backend()))))
	retried := 0
	for range 12 {
		res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", ""))
		if res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
	}
	samples := parseMetrics(t, g.metrics(t))
	labels := map[string]string{"model": "chat", "version": "v1"}
	all, _ := metricValue(samples, "llmgate_gateway_overhead_seconds_count", labels)
	fast, _ := metricValue(samples, "llmgate_gateway_overhead_seconds_bucket", map[string]string{"model": "chat", "version": "v1", "le": "0.025"})
	if n, _ := metricValue(samples, "llmgate_requests_total", map[string]string{"model": "chat", "version": "v1", "backend": failing.URL, "status": "5xx"}); n > 0 {
		retried = int(n)
	}
	if all != 12 || fast != all {
		t.Fatalf("%v of %v requests under 25 ms of overhead (%d retried after a 100 ms failure)", fast, all, retried)
	}
	if retried == 0 {
		t.Skip("no request tried the failing backend first; nothing was measured") // about 1 in 4,000
	}
}

// TestShouldRetry: when the gateway gives up, x-should-retry tells the OpenAI SDKs (which obey
// it before their own rules) whether another try can help. True where waiting helps and a try
// costs the backends nothing or was asked for; false where the gateway already retried on
// another backend, or where a retry repeats the failure or adds load to a struggling backend.
func TestShouldRetry(t *testing.T) {
	t.Parallel()
	js := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name       string
		backends   func(t *testing.T) []config.Backend
		stream     bool
		wantStatus int
		want       string // x-should-retry; "" for none
	}{
		{"connection refused everywhere", func(t *testing.T) []config.Backend {
			return []config.Backend{closedBackend(t), closedBackend(t)}
		}, false, 502, "true"},
		{"500 from the only backend", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 500, js, `{"error":{"message":"boom"}}`)}
		}, false, 502, "true"},
		{"500 after the gateway retried", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 500, js, `{"error":{"message":"boom"}}`), cannedBackend(t, 500, js, `{"error":{"message":"boom"}}`)}
		}, false, 502, "false"},
		{"500 stream after the gateway retried", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 500, js, `{"error":{"message":"boom"}}`), cannedBackend(t, 500, js, `{"error":{"message":"boom"}}`)}
		}, true, 502, "false"},
		{"backend 504", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 504, nil, `upstream timed out`)}
		}, false, 504, "false"},
		{"first byte timeout", func(t *testing.T) []config.Backend {
			return []config.Backend{silentBackend(t), silentBackend(t)}
		}, true, 504, "false"},
		{"503 overloaded", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 503, http.Header{"Retry-After": {"3"}}, `{"error":"server busy"}`)}
		}, false, 503, "true"},
		{"429 with Retry-After", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 429, http.Header{"Retry-After": {"10"}}, `{"error":{"message":"slow down"}}`)}
		}, false, 429, "true"},
		{"429 with a Retry-After past what the SDKs wait", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 429, http.Header{"Retry-After": {"3600"}}, `{"error":{"message":"slow down"}}`)}
		}, false, 429, "false"},
		{"429 quota exhausted", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 429, js, `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}`)}
		}, false, 429, "false"},
		{"429 quota exhausted, said by its type only", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 429, js, `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":null}}`)}
		}, false, 429, "false"},
		{"400 is the client's", func(t *testing.T) []config.Backend {
			return []config.Backend{cannedBackend(t, 400, js, `{"error":{"message":"bad"}}`)}
		}, false, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, newConfig(t, func(c *config.Config) {
				c.Timeouts.FirstByte = 50 * time.Millisecond // the silent backends never answer
				c.Health.FailureThreshold = 100
			}, model("chat", "v1", version("v1", tt.backends(t)...))))
			body := fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, tt.stream)
			res := g.do(t, "POST", "/v1/chat/completions", body)
			if res.status != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", res.status, res.body, tt.wantStatus)
			}
			if got := res.header.Get("X-Should-Retry"); got != tt.want {
				t.Errorf("x-should-retry %q, want %q (body %s)", got, tt.want, res.body)
			}
			if strings.Contains(tt.name, "quota") {
				if typ, _, code := envelope(t, res.body); typ != "insufficient_quota" || code != "insufficient_quota" {
					t.Errorf("type %q code %q, want insufficient_quota for both (OpenAI's)", typ, code)
				}
			}
			if res.header.Get("X-Request-Id") == "" {
				t.Error("no x-request-id")
			}
		})
	}
	t.Run("no backend in service", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, newConfig(t, func(c *config.Config) {
			c.Health.FailureThreshold = 1
			c.Health.EjectFor = time.Hour
		}, model("chat", "v1", version("v1", closedBackend(t)))))
		g.do(t, "POST", "/v1/chat/completions", chatBody("hi", "")) // ejects the backend
		res := g.do(t, "POST", "/v1/chat/completions", chatBody("hi", ""))
		if res.status != 503 || res.header.Get("X-Should-Retry") != "true" {
			t.Errorf("status %d x-should-retry %q, want 503 true", res.status, res.header.Get("X-Should-Retry"))
		}
		checkRetryAfter(t, res.header, true)
	})
}

// TestRetryAttemptsAsConfigured: retry.attempts allows up to 10 tries; each one goes to another
// backend while the version has untried ones.
func TestRetryAttemptsAsConfigured(t *testing.T) {
	t.Parallel()
	const n = 6
	var hits atomic.Int64
	var backends []config.Backend
	for range n {
		ln := listen(t)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			hits.Add(1)
			w.WriteHeader(500)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		backends = append(backends, config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"})
	}
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		c.Retry.Attempts = n
		c.Health.FailureThreshold = 100
	}, model("chat", "v1", version("v1", backends...))))
	res := g.do(t, "POST", "/v1/chat/completions", chatBody("hi", ""))
	if res.status != 502 {
		t.Fatalf("status %d %s, want 502", res.status, res.body)
	}
	if got := hits.Load(); got != n {
		t.Errorf("%d backends tried, want retry.attempts = %d", got, n)
	}
}

// TestRateLimitedBackendRetried: a backend at its rate limit answers 429 before doing any work;
// another backend of the version with room answers instead, and the limited one stays in
// service (it is not broken).
func TestRateLimitedBackendRetried(t *testing.T) {
	t.Parallel()
	var limited atomic.Int64
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		limited.Add(1)
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(429)
		_, _ = io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	busy := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "fake-model"}
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Health.FailureThreshold = 1 },
		model("chat", "v1", version("v1", busy, f.backend()))))
	for i := range 20 {
		res := g.do(t, "POST", "/v1/chat/completions", chatBody("hi", ""))
		if res.status != 200 {
			t.Fatalf("request %d: status %d %s, want 200 from the backend with room", i, res.status, res.body)
		}
	}
	if v, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_backend_up", map[string]string{"backend": busy.URL}); v != 1 {
		t.Errorf("a rate-limited backend was ejected")
	}
	if limited.Load() == 0 {
		t.Skip("no request tried the rate-limited backend first") // 1 in a million
	}
}

// TestRequestNotReplayedOnItsBackend: a backend that takes the request on a new connection and
// closes it without answering (it crashed, or a proxy before it gave up) has seen the request:
// the gateway must not send it to that backend again, which would run the generation twice.
// Only a pooled connection the backend closed while idle is retried there (see
// TestIdleConnectionClosedByBackend).
func TestRequestNotReplayedOnItsBackend(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			var got atomic.Int64
			b := rawBackend(t, func(c net.Conn) {
				if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					_, _ = io.Copy(io.Discard, req.Body)
					got.Add(1)
				}
				c.Close() // gone before answering
			})
			g := startGateway(t, newConfig(t, func(c *config.Config) { c.Retry.Attempts = 1 },
				model("chat", "v1", version("v1", b))))
			res := g.do(t, "POST", "/v1/chat/completions", fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream))
			if res.status != 502 {
				t.Errorf("status %d %s, want 502", res.status, res.body)
			}
			if n := got.Load(); n != 1 {
				t.Errorf("the backend received the request %d times, want 1 (retry.attempts is 1)", n)
			}
		})
	}
}

// A pooled connection on which part of the answer arrived before it broke carried the request
// to the backend: the gateway must not send it there again (the generation would run twice),
// however the connection had served earlier requests.
func TestPartialAnswerOnPooledConnectionNotReplayed(t *testing.T) {
	t.Parallel()
	var got atomic.Int64
	b := rawBackend(t, func(c net.Conn) {
		requestsOn(c, func(n int, _ *http.Request, _ []byte) bool {
			got.Add(1)
			if n == 0 { // the first request on a connection: a whole answer, kept alive
				writeJSONReply(c, "200 OK", "", `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
				return true
			}
			// The second: the start of an answer, then the backend is gone, with a reset (a
			// crash, or a proxy before it that gave up).
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":")
			_ = c.(*net.TCPConn).SetLinger(0)
			return false
		})
	})
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Retry.Attempts = 1 }, model("chat", "v1", version("v1", b))))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
		t.Fatalf("first request: %d %s", res.status, res.body)
	}
	res := g.do(t, "POST", "/v1/chat/completions", body)
	if res.status != 502 {
		t.Errorf("answer cut on a pooled connection: status %d %s, want 502", res.status, res.body)
	}
	if n := got.Load(); n != 2 {
		t.Errorf("the backend received %d requests, want 2 (the second one once: part of its answer had come)", n)
	}
}

// An error message can carry what a client or a backend wrote: a model name with a control
// character or bytes that are not UTF-8, a backend's message with them. The envelope must stay
// JSON the SDKs parse (strconv.Quote's \x01 and \a are not JSON), buffered and mid-stream.
func TestErrorEnvelopeEscapesAnyText(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	for _, m := range []string{"chat\x01", "chat\x07", "chat\x7f", "chat\xff"} {
		c, _ := s.gw.client()
		_, err := c.CreateChatCompletion(ctx(t), chatRequest(m, 2))
		if ae := asAPIError(t, err); ae.HTTPStatusCode != 404 || codeString(ae.Code) != "model_not_found" {
			t.Errorf("model %q: %d %v, want 404 model_not_found", m, ae.HTTPStatusCode, ae.Code)
		}
	}
	res := s.gw.do(t, "GET", "/v1/models/chat%01%ff", "")
	if res.status != 404 || !utf8.Valid(res.body) {
		t.Errorf("GET /v1/models/chat%%01%%ff: %d %q, want a 404 in UTF-8", res.status, res.body)
	}
	envelope(t, res.body)

	const msg = `{"error":{"message":"engine said \u0001\u0007 \ud83d\ude00 bye","type":"InternalServerError","param":null,"code":500}}`
	b := cannedBackend(t, 500, http.Header{"Content-Type": {"application/json"}}, msg)
	stream := rawBackend(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		ev := "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: " + msg + "\n\n"
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(ev), ev)
	})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b)), model("streamer", "v1", version("v1", stream))))
	c, _ := g.client()
	_, err := c.CreateChatCompletion(ctx(t), chatRequest("chat", 2))
	if ae := asAPIError(t, err); ae.HTTPStatusCode != 502 || !strings.Contains(ae.Message, "engine said \x01\x07 \U0001F600 bye") {
		t.Errorf("backend error: %d %q, want 502 with the backend's message", ae.HTTPStatusCode, ae.Message)
	}
	req := chatRequest("streamer", 2)
	req.Stream = true
	st, err := c.CreateChatCompletionStream(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for {
		_, err = st.Recv()
		if err != nil {
			break
		}
	}
	if ae := asAPIError(t, err); !strings.Contains(ae.Message, "engine said") {
		t.Errorf("mid-stream error: %q, want the backend's message", ae.Message)
	}
}

// notServedBackend answers like a vLLM that does not serve the model it was asked for (a vLLM
// restarted under another name; an Ollama answers alike once the model is removed).
func notServedBackend(t testing.TB) config.Backend {
	const body = `{"error":{"message":"The model ` + "`m`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}}`
	b := cannedBackend(t, 404, http.Header{"Content-Type": {"application/json"}}, body)
	b.Model = "m"
	return b
}

// A backend of the pool that does not serve the version's model answers 404. The client asked
// for a model the gateway serves: another backend of the version answers instead of the client
// getting a NotFoundError now and then; with no other, the 404 names the model the client asked
// for, not only the backend's name for it, which the client never sent.
func TestBackendNotServingItsModel(t *testing.T) {
	t.Parallel()
	good := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil,
		model("chat", "v1", version("v1", good.backend(), notServedBackend(t))),
		model("gone", "v3", version("v3", notServedBackend(t)))))
	for i := range 10 {
		body := fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, i%2 == 1)
		if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
			t.Fatalf("request %d: status %d %s, want 200 from the backend that serves the model", i, res.status, res.body)
		}
	}
	c, _ := g.client()
	_, err := c.CreateChatCompletion(ctx(t), chatRequest("gone", 2))
	ae := asAPIError(t, err)
	if ae.HTTPStatusCode != 404 || codeString(ae.Code) != "model_not_found" || !strings.Contains(ae.Message, "`gone` (version v3)") {
		t.Errorf("no backend serves the model: %d %v %q, want 404 model_not_found naming gone and v3", ae.HTTPStatusCode, ae.Code, ae.Message)
	}
}

// A backend that refuses the gateway's key (an api_key_env rotated at the provider) answers 401
// about that key, never the client's, which the gateway does not forward. The client must not
// get an AuthenticationError naming a key it never sent: another backend answers, the one with
// the stale key is ejected, and with none left the client gets a 502 without the backend's
// message (OpenAI's names the key's first characters).
func TestBackendRefusingTheGatewaysKey(t *testing.T) {
	t.Parallel()
	const refusal = `{"error":{"message":"Incorrect API key provided: sk-old-***-1234.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	good := startFake(t, fakellm.Options{Model: "m"})
	stale := cannedBackend(t, 401, http.Header{"Content-Type": {"application/json"}}, refusal)
	stale.Model = "m"
	g := startGateway(t, newConfig(t, healthConfig(2),
		model("chat", "v1", version("v1", good.backend(), stale)),
		model("solo", "v1", version("v1", cannedBackend(t, 401, http.Header{"Content-Type": {"application/json"}}, refusal)))))
	// The picker sends about half the requests to the stale backend; until the failure
	// threshold's worth have reached it (a few requests, rarely more than 10), it is in service.
	for i := 0; backendUp(t, g, stale.URL) != 0; i++ {
		if i == 200 {
			t.Fatal("the backend refusing the gateway's key was not ejected after 200 requests")
		}
		body := fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, i%2 == 1)
		if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
			t.Fatalf("request %d: status %d %s, want 200 from the backend whose key works", i, res.status, res.body)
		}
	}
	c, _ := g.client()
	_, err := c.CreateChatCompletion(ctx(t), chatRequest("solo", 2))
	ae := asAPIError(t, err)
	if ae.HTTPStatusCode != 502 || ae.Type != "server_error" || strings.Contains(ae.Message, "sk-") {
		t.Errorf("no backend takes the gateway's key: %d %q %q, want a 502 server_error without the backend's message", ae.HTTPStatusCode, ae.Type, ae.Message)
	}
}

// A backend's 403 is about the request, not the gateway's key: a hosted model the key may not
// use there, or a filter in front of a hosted API refusing the content. Another backend may
// take it; none is ejected (a client could otherwise take healthy backends out with what it
// sends), and when none takes it the client gets the backend's 403, not a 502 about the
// gateway's credentials.
func TestBackendForbiddingARequestIsNotEjected(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), "forbidden topic") {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"error":{"message":"This request was blocked by the provider's content policy.","type":"invalid_request_error","param":null,"code":"content_policy"}}`)
			return
		}
		_, _ = io.WriteString(w, answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, healthConfig(2), model("chat", "v1", version("v1", b))))
	for i := range 5 {
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"a forbidden topic"}]}`)
		if res.status != 403 || !strings.Contains(string(res.body), "content policy") {
			t.Fatalf("request %d refused by the backend: status %d %s, want its 403", i, res.status, res.body)
		}
	}
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 200 {
		t.Errorf("after five refused requests: status %d %s, want 200 (the backend is not ejected)", res.status, res.body)
	}
	if up := backendUp(t, g, b.URL); up != 1 {
		t.Errorf("llmgate_backend_up = %v, want 1", up)
	}
}

// /readyz tells a load balancer whether the gateway can serve a model. A drained backend
// (weight 0) takes no request however healthy it is: with the stable's other backend ejected,
// every request gets a 503, and so must /readyz.
func TestReadyIgnoresDrainedBackends(t *testing.T) {
	t.Parallel()
	drained := startFake(t, fakellm.Options{Model: "m"})
	gone := closedBackend(t)
	gone.Model = "m"
	cfg := newConfig(t, healthConfig(1), model("chat", "v1", version("v1", gone, drained.backend())))
	cfg.Models[0].Versions[0].Backends[1].Weight = 0 // after the defaults, which read 0 as left out
	g := startGateway(t, cfg)
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 502 {
		t.Fatalf("the only backend with weight, refusing connections: status %d %s, want 502", res.status, res.body)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 503 {
		t.Fatalf("with it ejected: status %d %s, want 503", res.status, res.body)
	}
	if res := g.do(t, "GET", "/readyz", ""); res.status != 503 {
		t.Errorf("/readyz with the stable's only backend in use ejected and the other drained: %d %s, want 503", res.status, res.body)
	}
}

// A hosted OpenAI-compatible backend answers with headers about the gateway's account with it:
// its rate limits, which clients (and client-side limiters) would read as their own, and its
// organisation and project. Those stay with the gateway, and so do the headers that speak for
// the backend's origin (Alt-Svc would point clients at a protocol and port of the gateway's
// host that the backend, not the gateway, offers; HSTS is the backend's policy, not the
// gateway's), a Trailer announcement for trailers the gateway never sends, and another
// gateway's x-llmgate-* headers; the backend's other headers pass.
func TestBackendAccountHeadersNotPassedOn(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	b := cannedBackend(t, 200, http.Header{
		"Content-Type":                   {"application/json"},
		"X-Ratelimit-Remaining-Requests": {"3"},
		"X-Ratelimit-Limit-Tokens":       {"30000"},
		"Openai-Organization":            {"org-operator"},
		"Openai-Project":                 {"proj_operator"},
		"Openai-Processing-Ms":           {"12"},
		"Alt-Svc":                        {`h3=":443"; ma=86400`},
		"Strict-Transport-Security":      {"max-age=31536000; includeSubDomains"},
		"Trailer":                        {"X-Checksum"},
		"X-Llmgate-Guard":                {"pii=9"},
	}, answer)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if res.status != 200 {
		t.Fatalf("status %d %s", res.status, res.body)
	}
	for _, h := range []string{"X-Ratelimit-Remaining-Requests", "X-Ratelimit-Limit-Tokens", "Openai-Organization", "Openai-Project",
		"Alt-Svc", "Strict-Transport-Security", "Trailer", "X-Llmgate-Guard"} {
		if v := res.header.Get(h); v != "" {
			t.Errorf("%s: %q reached the client", h, v)
		}
	}
	if res.header.Get("Openai-Processing-Ms") != "12" {
		t.Errorf("the backend's other headers: Openai-Processing-Ms %q, want it passed", res.header.Get("Openai-Processing-Ms"))
	}
}

// A backend's 401 ejects it (the gateway's key was refused), so nothing a client sends may make
// a healthy backend answer one. Ollama refuses a request whose Origin it does not
// allow with 403 (its CORS check), and OpenAI refuses an OpenAI-Organization or
// OpenAI-Project header that does not match the key with 401: forwarded, a browser client or
// an SDK with OPENAI_ORG_ID set got 502s, and a few such requests ejected the backend for
// everyone. Those headers are about the client's own origin and account, not the gateway's
// with the backend, and stay with the gateway.
func TestClientHeadersCannotEjectBackends(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Origin") != "":
			w.WriteHeader(http.StatusForbidden) // Ollama's CORS check
		case r.Header.Get("Openai-Organization") != "" || r.Header.Get("Openai-Project") != "":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"message":"OpenAI-Organization header should match organization for API key","type":"invalid_request_error","param":null,"code":"mismatched_organization"}}`)
		default:
			_, _ = io.WriteString(w, answer)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindOllama, Model: "m"}
	g := startGateway(t, newConfig(t, healthConfig(2), model("chat", "v1", version("v1", b))))
	for _, h := range [][]string{
		{"Origin", "https://app.example"},
		{"Origin", "https://app.example"},
		{"OpenAI-Organization", "org-client"},
		{"OpenAI-Organization", "org-client"},
		{"OpenAI-Project", "proj_client"},
		{"OpenAI-Project", "proj_client"},
	} {
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, h...)
		if res.status != 200 {
			t.Errorf("with %s: %q: status %d %s, want 200", h[0], h[1], res.status, res.body)
		}
	}
	if up := backendUp(t, g, b.URL); up != 1 {
		t.Errorf("llmgate_backend_up after clients' Origin and OpenAI-Organization headers = %v, want 1", up)
	}
}

// A prompt too long for the model's context is OpenAI's 400 with code context_length_exceeded,
// which clients and frameworks read to trim a conversation and try again: vLLM's refusal (its
// code is null) and llama.cpp's server's (type exceed_context_size_error) get it too, with the
// backend's message. The backend is not ejected: the request is the client's.
func TestContextLengthExceededCode(t *testing.T) {
	t.Parallel()
	vllm := startFake(t, fakellm.Options{Model: "m"})
	llamacpp := cannedBackend(t, 400, http.Header{"Content-Type": {"application/json"}},
		`{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}`)
	llamacpp.Model = "m"
	g := startGateway(t, newConfig(t, healthConfig(2),
		model("vllm", "v1", version("v1", vllm.backend())),
		model("llamacpp", "v1", version("v1", llamacpp))))
	long := strings.Repeat("word ", 9000)
	for _, alias := range []string{"vllm", "llamacpp", "vllm", "llamacpp"} {
		c, _ := g.client()
		req := chatRequest(alias, 16)
		req.Messages[0].Content = long
		_, err := c.CreateChatCompletion(ctx(t), req)
		ae := asAPIError(t, err)
		if ae.HTTPStatusCode != 400 || ae.Type != "invalid_request_error" || codeString(ae.Code) != "context_length_exceeded" || !strings.Contains(ae.Message, "context") {
			t.Errorf("%s: %d %q %v %q, want 400 invalid_request_error context_length_exceeded with the backend's message", alias, ae.HTTPStatusCode, ae.Type, ae.Code, ae.Message)
		}
	}
	if up := backendUp(t, g, vllm.URL); up != 1 {
		t.Errorf("llmgate_backend_up of the vLLM backend = %v after refusing long prompts, want 1", up)
	}
	// A short prompt still goes through.
	c, _ := g.client()
	if _, err := c.CreateChatCompletion(ctx(t), chatRequest("vllm", 16)); err != nil {
		t.Errorf("a short prompt after the long ones: %v", err)
	}
}

// A path with a trailing slash, as a base URL ending in "/" or a hand-written client builds it,
// is the same endpoint: a chat completion, the model list, one model.
func TestTrailingSlashPaths(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
	if res := g.do(t, "POST", "/v1/chat/completions/", `{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`); res.status != 200 || !strings.Contains(string(res.body), `"chat.completion"`) {
		t.Errorf("POST /v1/chat/completions/: %d %s", res.status, res.body)
	}
	if res := g.do(t, "GET", "/v1/models/", ""); res.status != 200 || !strings.Contains(string(res.body), `"id":"chat"`) {
		t.Errorf("GET /v1/models/: %d %s", res.status, res.body)
	}
	if res := g.do(t, "GET", "/v1/models/chat/", ""); res.status != 200 || !strings.Contains(string(res.body), `"id":"chat"`) {
		t.Errorf("GET /v1/models/chat/: %d %s", res.status, res.body)
	}
	if res := g.do(t, "GET", "/", ""); res.status != 404 {
		t.Errorf("GET /: %d, want 404 unknown_url", res.status)
	}
}

// The health URLs are GET (and HEAD) URLs, as GET /v1/models is: another method is a 405
// naming the ones they take, not a 200 that a mistyped check or a POST-only client takes for
// an answer.
func TestHealthURLsMethods(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
	for _, path := range []string{"/healthz", "/readyz"} {
		for _, m := range []string{"GET", "HEAD"} {
			if res := g.do(t, m, path, ""); res.status != 200 {
				t.Errorf("%s %s: %d %s, want 200", m, path, res.status, res.body)
			}
		}
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			res := g.do(t, m, path, "")
			if res.status != 405 || res.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q %s, want 405 with Allow GET, HEAD", m, path, res.status, res.header.Get("Allow"), res.body)
			}
		}
	}
}

// Request headers that do not fit the server's read buffer (a large cookie, a token a proxy
// added) are a 431 that says so, in OpenAI's envelope, not a 400 "could not be read".
func TestHeadersTooLarge(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
	res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
		"X-Big", strings.Repeat("a", 8<<10))
	if res.status != 431 {
		t.Fatalf("status %d %s, want 431", res.status, res.body)
	}
	if typ, _, code := envelope(t, res.body); typ != "invalid_request_error" || code != "request_headers_too_large" {
		t.Errorf("type %q code %q, want invalid_request_error request_headers_too_large: %s", typ, code, res.body)
	}
	if !strings.Contains(string(res.body), "4 KiB") {
		t.Errorf("message %s does not say the limit", res.body)
	}
	if got := f.Requests(); got != 0 {
		t.Errorf("backend got %d requests, want 0", got)
	}
}
