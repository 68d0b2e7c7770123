package gateway_test

// End-to-end tests of the OpenAI API as a go-openai user sees it through the gateway: typed
// results, routing by alias and version, request ids and the request log.

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/router/store"
)

func TestChatCompletionRoutesByVersion(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	tests := []struct {
		name        string
		model       string
		headers     []string
		wantVersion string
		wantBackend func() *fake
	}{
		{"alias goes to stable", "chat", nil, "v1", func() *fake { return s.v1 }},
		{"alias@version pin", "chat@v2", nil, "v2", func() *fake { return s.v2 }},
		{"header pin", "chat", []string{"X-Llmgate-Version", "v2"}, "v2", func() *fake { return s.v2 }},
		{"alias@stable pin", "chat@v1", nil, "v1", func() *fake { return s.v1 }},
		{"model pin wins over header", "chat@v1", []string{"X-Llmgate-Version", "v2"}, "v1", func() *fake { return s.v1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := s.gw.client(tt.headers...)
			backend := tt.wantBackend()
			before := backend.Requests()
			resp, err := c.CreateChatCompletion(ctx(t), chatRequest(tt.model, 5))
			if err != nil {
				t.Fatalf("CreateChatCompletion: %v", err)
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" {
				t.Errorf("choices = %+v, want one with content", resp.Choices)
			}
			if got := len(strings.Fields(resp.Choices[0].Message.Content)); got != 5 {
				t.Errorf("content %q has %d words, want max_tokens 5", resp.Choices[0].Message.Content, got)
			}
			if resp.Choices[0].FinishReason != openai.FinishReasonLength {
				t.Errorf("finish_reason = %q, want length", resp.Choices[0].FinishReason)
			}
			if resp.Usage.CompletionTokens != 5 || resp.Usage.PromptTokens == 0 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+5 {
				t.Errorf("usage = %+v, want 5 completion tokens and consistent totals", resp.Usage)
			}
			if got := rec.header().Get("X-Llmgate-Version"); got != tt.wantVersion {
				t.Errorf("x-llmgate-version = %q, want %q", got, tt.wantVersion)
			}
			if got := backend.Requests() - before; got != 1 {
				t.Errorf("backend %s got %d requests, want 1", backend.URL, got)
			}
		})
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	for _, m := range []string{"chat", "chat@v2"} {
		t.Run(m, func(t *testing.T) {
			c, _ := s.gw.client()
			resp, err := c.CreateCompletion(ctx(t), openai.CompletionRequest{Model: m, Prompt: "Once upon a time", MaxTokens: 3})
			if err != nil {
				t.Fatalf("CreateCompletion: %v", err)
			}
			if resp.Object != "text_completion" || len(resp.Choices) != 1 || len(strings.Fields(resp.Choices[0].Text)) != 3 {
				t.Errorf("got %+v, want one text_completion choice of 3 words", resp)
			}
			if resp.Usage.CompletionTokens != 3 || resp.Usage.PromptTokens != 4 {
				t.Errorf("usage = %+v, want 4 prompt and 3 completion tokens", resp.Usage)
			}
		})
	}
}

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	input := []string{"The quick brown fox.", "Jumped over the lazy dog."}
	for _, m := range []string{"chat", "chat@v2"} {
		t.Run(m, func(t *testing.T) {
			c, _ := s.gw.client()
			byFormat := map[openai.EmbeddingEncodingFormat]openai.EmbeddingResponse{}
			for _, format := range []openai.EmbeddingEncodingFormat{openai.EmbeddingEncodingFormatFloat, openai.EmbeddingEncodingFormatBase64} {
				resp, err := c.CreateEmbeddings(ctx(t), openai.EmbeddingRequestStrings{Model: openai.EmbeddingModel(m), Input: input, EncodingFormat: format})
				if err != nil {
					t.Fatalf("CreateEmbeddings %s: %v", format, err)
				}
				if len(resp.Data) != 2 {
					t.Fatalf("%s: got %d embeddings, want 2", format, len(resp.Data))
				}
				for i, d := range resp.Data {
					if d.Index != i || len(d.Embedding) != 8 {
						t.Errorf("%s: data[%d] index %d dim %d, want index %d dim 8", format, i, d.Index, len(d.Embedding), i)
					}
				}
				if resp.Usage.PromptTokens == 0 {
					t.Errorf("%s: usage = %+v, want prompt tokens", format, resp.Usage)
				}
				byFormat[format] = resp
			}
			// The same input gives the same vector whichever way it travels.
			f, b := byFormat[openai.EmbeddingEncodingFormatFloat], byFormat[openai.EmbeddingEncodingFormatBase64]
			for i := range f.Data {
				if !slices.Equal(f.Data[i].Embedding, b.Data[i].Embedding) {
					t.Errorf("embedding %d: float %v, base64 %v", i, f.Data[i].Embedding, b.Data[i].Embedding)
				}
			}
		})
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	c, _ := s.gw.client()

	list, err := c.ListModels(ctx(t))
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	var ids []string
	for _, m := range list.Models {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.CreatedAt == 0 || m.OwnedBy == "" {
			t.Errorf("model %+v: want object model, created and owned_by set", m)
		}
	}
	slices.Sort(ids)
	if want := []string{"chat", "chat@v1", "chat@v2"}; !slices.Equal(ids, want) {
		t.Errorf("ListModels ids = %v, want %v", ids, want)
	}

	for _, tt := range []struct {
		id         string
		wantStatus int
	}{
		{"chat", 200},
		{"chat@v2", 200},
		{"nope", 404},
		{"chat@v9", 404},
	} {
		t.Run(tt.id, func(t *testing.T) {
			m, err := c.GetModel(ctx(t), tt.id)
			if tt.wantStatus == 200 {
				if err != nil || m.ID != tt.id || m.Object != "model" {
					t.Errorf("GetModel = %+v, %v; want id %q", m, err, tt.id)
				}
				return
			}
			ae := asAPIError(t, err)
			if ae.HTTPStatusCode != 404 || codeString(ae.Code) != "model_not_found" || ae.Type != "invalid_request_error" {
				t.Errorf("GetModel(%q) error = %d %v %q, want 404 model_not_found invalid_request_error", tt.id, ae.HTTPStatusCode, ae.Code, ae.Type)
			}
		})
	}
	// HEAD answers as GET does, without the body (a monitor's probe, curl -I).
	for _, path := range []string{"/v1/models", "/v1/models/chat"} {
		if res := s.gw.do(t, "HEAD", path, ""); res.status != 200 || len(res.body) != 0 {
			t.Errorf("HEAD %s: %d with %d bytes, want 200 and no body", path, res.status, len(res.body))
		}
	}
}

func TestUnknownModelAndVersion(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	tests := []struct {
		name    string
		model   string
		headers []string
	}{
		{"unknown alias", "gpt-4o", nil},
		{"unknown version in model", "chat@v9", nil},
		{"unknown version in header", "chat", []string{"X-Llmgate-Version", "v9"}},
		{"version of unknown alias", "nope@v1", nil},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s stream=%v", tt.name, stream), func(t *testing.T) {
				c, _ := s.gw.client(tt.headers...)
				req := chatRequest(tt.model, 5)
				err := createChat(t, c, req, stream)
				ae := asAPIError(t, err)
				// A version asked for in the header is no fault of the model parameter.
				wantParam := "model"
				if tt.headers != nil {
					wantParam = ""
				}
				if ae.HTTPStatusCode != 404 || codeString(ae.Code) != "model_not_found" || deref(ae.Param) != wantParam || ae.Type != "invalid_request_error" {
					t.Errorf("got %d code %v param %q type %q, want 404 model_not_found param %q invalid_request_error",
						ae.HTTPStatusCode, ae.Code, deref(ae.Param), ae.Type, wantParam)
				}
				if tt.headers != nil && !strings.Contains(ae.Message, "x-llmgate-version") {
					t.Errorf("message %q does not name the header", ae.Message)
				}
			})
		}
	}
	// With stream:true the answer is a plain JSON error, not an event stream.
	res := s.gw.do(t, "POST", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if res.status != 404 || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
		t.Errorf("stream to unknown model: %d %q %s, want a 404 JSON answer", res.status, res.header.Get("Content-Type"), res.body)
	}
	envelope(t, res.body)
	if n := s.v1.Requests() + s.v2.Requests(); n != 0 {
		t.Errorf("backends got %d requests for unknown models, want 0", n)
	}
}

var requestIDChars = regexp.MustCompile(`^[A-Za-z0-9._:/+=-]{1,128}$`)

func TestRequestID(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	const prompt = "Tell me about the secret codeword xyzzy-7."
	body := `{"model":"chat","max_tokens":3,"messages":[{"role":"user","content":"` + prompt + `"}]}`
	streamBody := `{"model":"chat","max_tokens":3,"stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`
	const chatPath = "/v1/chat/completions"
	tests := []struct {
		name       string
		sent       string // "" sends none
		path, body string
		wantEcho   bool // the sent id comes back
		wantStatus int
		toBackend  bool
		logLines   int // proxied requests have one; the router's 404 for a path has none
	}{
		{"generated when absent", "", chatPath, body, false, 200, true, 1},
		{"echoed when valid", "client-id_1.2:3/4+5=", chatPath, body, true, 200, true, 1},
		{"replaced when too long", strings.Repeat("a", 129), chatPath, body, false, 200, true, 1},
		{"replaced when it has spaces", "has space", chatPath, body, false, 200, true, 1},
		{"replaced when it has a quote", `a"b`, chatPath, body, false, 200, true, 1},
		{"replaced when it has a semicolon", "a;b", chatPath, body, false, 200, true, 1},
		{"echoed on a stream", "stream-id-1", chatPath, streamBody, true, 200, true, 1},
		{"generated on a stream", "", chatPath, streamBody, false, 200, true, 1},
		{"echoed on an error", "error-id-1", chatPath, `{"model":"nope","messages":[{"role":"user","content":"` + prompt + `"}]}`, true, 404, false, 1},
		{"generated on an error", "", chatPath, `{"model":"chat"`, false, 400, false, 1},
		{"echoed on an unknown path", "path-id-1", "/v1/nope", `{}`, true, 404, false, 0},
	}
	seen := map[string]int{} // id -> log lines wanted
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdrs []string
			if tt.sent != "" {
				hdrs = []string{"X-Request-Id", tt.sent}
			}
			res := s.gw.do(t, "POST", tt.path, tt.body, hdrs...)
			if res.status != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", res.status, res.body, tt.wantStatus)
			}
			got := res.header.Get("X-Request-Id")
			switch {
			case tt.wantEcho && got != tt.sent:
				t.Errorf("x-request-id = %q, want the client's %q", got, tt.sent)
			case !tt.wantEcho && (got == "" || got == tt.sent || !requestIDChars.MatchString(got)):
				t.Errorf("x-request-id = %q, want a new valid id (sent %q)", got, tt.sent)
			}
			if _, dup := seen[got]; dup {
				t.Errorf("x-request-id %q answered two requests", got)
			}
			seen[got] = tt.logLines
			backendID := res.header.Get("X-Fakellm-Request-Id")
			if tt.toBackend && backendID != got {
				t.Errorf("backend saw x-request-id %q, client got %q", backendID, got)
			}
			if !tt.toBackend && backendID != "" {
				t.Errorf("request reached a backend (id %q), want it answered by the gateway", backendID)
			}
		})
	}

	// One JSON log line per request, carrying its id and no prompt text.
	lines := s.gw.logLines(t)
	perID := map[string]int{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		perID[id]++
	}
	for id, want := range seen {
		if perID[id] != want {
			t.Errorf("%d log lines with request_id %q, want %d", perID[id], id, want)
		}
	}
	if logs := s.gw.logs.String(); strings.Contains(logs, "xyzzy") {
		t.Errorf("the log contains prompt text:\n%s", logs)
	}
	for _, l := range lines {
		if _, ok := l["status"].(float64); !ok {
			t.Errorf("log line %v has no numeric status", l)
		}
	}
}

func TestRequestLogLine(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		id   string
		body string
		want map[string]any
	}{
		{"log-buffered", `{"model":"chat@v2","max_tokens":4,` + msgs + `}`, map[string]any{
			"model": "chat@v2", "version": "v2", "status": 200.0, "backend": s.v2.URL, "stream": false, "completion_tokens": 4.0}},
		{"log-stream", `{"model":"chat","max_tokens":3,"stream":true,` + msgs + `}`, map[string]any{
			"model": "chat", "version": "v1", "status": 200.0, "backend": s.v1.URL, "stream": true, "completion_tokens": 3.0}},
		{"log-unknown", `{"model":"nope",` + msgs + `}`, map[string]any{
			"model": "nope", "status": 404.0, "error": "model_not_found"}},
		{"log-bad", `{"model":"chat"}`, map[string]any{"status": 400.0}},
	}
	for _, tt := range tests {
		if res := s.gw.do(t, "POST", "/v1/chat/completions", tt.body, "X-Request-Id", tt.id); res.status != int(tt.want["status"].(float64)) {
			t.Fatalf("%s: status %d %s", tt.id, res.status, res.body)
		}
	}
	lines := s.gw.logLines(t)
	if len(lines) != len(tests) {
		t.Errorf("got %d request log lines, want %d: %v", len(lines), len(tests), lines)
	}
	byID := map[string]map[string]any{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		byID[id] = l
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			l := byID[tt.id]
			if l == nil {
				t.Fatalf("no log line with request_id %q", tt.id)
			}
			for k, v := range tt.want {
				if l[k] != v {
					t.Errorf("log %s = %v, want %v (line %v)", k, l[k], v, l)
				}
			}
		})
	}
}

// A backend that cannot be reached answers the client 502 upstream_error; the log line says
// why, so an operator need not guess between a dead server, a wrong port and a bad address.
func TestRequestLogSaysWhyTheBackendFailed(t *testing.T) {
	t.Parallel()
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", closedBackend(t)))))
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 502 {
		t.Fatalf("status %d %s, want 502", res.status, res.body)
	}
	lines := g.logLines(t)
	if len(lines) != 1 {
		t.Fatalf("got %d request log lines, want 1: %v", len(lines), lines)
	}
	if why, _ := lines[0]["upstream_error"].(string); lines[0]["error"] != "upstream_error" || !strings.Contains(why, "connection refused") {
		t.Fatalf("log line %v: want error upstream_error and the dial error in upstream_error", lines[0])
	}
}

func TestHeadersToBackend(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	c, rec := s.gw.client("X-Fakellm-Echo", "1", "X-Custom-Trace", "t-1", "X-Llmgate-Version", "v1", "Cookie", "session=secret")
	if _, err := c.CreateChatCompletion(ctx(t), chatRequest("chat", 2)); err != nil {
		t.Fatal(err)
	}
	got := receivedHeaders(t, rec.header())
	if got["x-custom-trace"] != "t-1" {
		t.Errorf("x-custom-trace = %q at the backend, want t-1 (client headers pass)", got["x-custom-trace"])
	}
	for _, h := range []string{"authorization", "cookie", "x-llmgate-version"} {
		if v, ok := got[h]; ok {
			t.Errorf("backend received %s: %q; the client's credentials and gateway headers must not pass", h, v)
		}
	}
	if got["content-type"] != "application/json" {
		t.Errorf("content-type at the backend = %q", got["content-type"])
	}
}

// TestBackendAPIKey: the backend gets its own key from api_key_env, never the client's.
func TestBackendAPIKey(t *testing.T) {
	t.Setenv("LLMGATE_E2E_BACKEND_KEY", "sk-backend-secret")
	f := startFake(t, fakellm.Options{})
	b := f.backend()
	b.APIKeyEnv = "LLMGATE_E2E_BACKEND_KEY"
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	c, rec := g.client("X-Fakellm-Echo", "1")
	if _, err := c.CreateChatCompletion(ctx(t), chatRequest("chat", 2)); err != nil {
		t.Fatal(err)
	}
	if got := receivedHeaders(t, rec.header())["authorization"]; got != "Bearer sk-backend-secret" {
		t.Errorf("backend received authorization %q, want the backend's key", got)
	}
}

// Close before Serve (a test that ends at once, a shutdown racing the start) leaves nothing
// serving: Serve returns instead of accepting for ever on a listener Close never saw.
func TestCloseBeforeServe(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g, err := gateway.New(newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))), gateway.Options{Store: store.NewMemory(), LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	data, admin := listen(t), listen(t)
	served := make(chan error, 2)
	go func() { served <- g.Serve(data) }()
	go func() { served <- g.ServeAdmin(admin) }()
	for range 2 {
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve after Close: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve after Close is still serving")
		}
	}
}

// A request that a backend could not take and another answered on a retry logs the first's
// dial error with that backend's URL (upstream_error_backend), next to backend, the one that
// answered: the line named only the one, with the other's error.
func TestRequestLogNamesTheBackendThatFailed(t *testing.T) {
	t.Parallel()
	down := closedBackend(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Health.FailureThreshold = 100 },
		model("chat", "v1", version("v1", down, f.backend()))))
	for range 16 {
		if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 200 {
			t.Fatalf("status %d %s, want 200 from the backend that is up", res.status, res.body)
		}
	}
	retried := 0
	for _, l := range g.logLines(t) {
		if l["upstream_error"] == nil {
			continue
		}
		retried++
		if l["upstream_error_backend"] != down.URL || l["backend"] != f.backend().URL {
			t.Errorf("log line %v: want upstream_error_backend %s (whose error it is) and backend %s", l, down.URL, f.backend().URL)
		}
	}
	if retried == 0 {
		t.Skip("no request tried the closed backend first") // 1 in 65536
	}
}
