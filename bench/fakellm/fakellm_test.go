package fakellm

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

const chatBody = `{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"what is the answer"}]}`

func chatWith(extra string) string {
	return strings.TrimSuffix(chatBody, "}") + "," + extra + "}"
}

func mustJSON(t *testing.T, b []byte) *fastjson.Value {
	t.Helper()
	v, err := fastjson.ParseBytes(b)
	if err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
	return v
}

// streamText joins the generated text of an SSE body and returns the usage
// chunk, if any.
func streamText(t *testing.T, body []byte) (text string, usage *fastjson.Value, done bool) {
	t.Helper()
	for _, ev := range events(t, body) {
		if string(ev) == "[DONE]" {
			done = true
			continue
		}
		v := mustJSON(t, ev)
		if u := v.Get("usage"); u != nil && u.Type() == fastjson.TypeObject && len(v.GetArray("choices")) == 0 {
			usage = u
		}
		for _, c := range v.GetArray("choices") {
			text += string(c.GetStringBytes("delta", "content")) + string(c.GetStringBytes("text"))
		}
	}
	return text, usage, done
}

func TestEndpointsPerFlavor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flavor, method, path string
		status               int
		body                 string // substring expected in the body
		contentType          string // "": not checked
	}{
		{"vllm", "GET", "/health", 200, "", ""},
		{"vllm", "GET", "/version", 200, `"version":"` + vllmVersion + `"`, "application/json"},
		{"vllm", "GET", "/v1/models", 200, `"owned_by":"vllm"`, "application/json"},
		{"vllm", "POST", "/v1/models", 405, `Method Not Allowed`, "application/json"},
		{"vllm", "GET", "/v1/chat/completions", 405, `Method Not Allowed`, "application/json"},
		{"vllm", "GET", "/api/tags", 404, `{"detail":"Not Found"}`, "application/json"},
		{"ollama", "GET", "/", 200, "Ollama is running", "text/plain; charset=utf-8"},
		{"ollama", "HEAD", "/", 200, "", "text/plain; charset=utf-8"},
		{"ollama", "GET", "/api/version", 200, `"version":"` + ollamaVersion + `"`, "application/json; charset=utf-8"},
		{"ollama", "GET", "/api/tags", 200, `"name":"m"`, "application/json; charset=utf-8"},
		{"ollama", "GET", "/v1/models", 200, `"owned_by":"library"`, "application/json"},
		{"ollama", "GET", "/health", 404, "404 page not found", "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.flavor+" "+tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m"})
			res := h.do(t, tt.method, tt.path, "")
			if res.status != tt.status || !bytes.Contains(res.body, []byte(tt.body)) {
				t.Errorf("got %d %q, want %d containing %q", res.status, res.body, tt.status, tt.body)
			}
			// gin's c.JSON (Ollama's native routes) adds the charset; its OpenAI layer,
			// FastAPI's JSONResponse and error handlers do not.
			if ct := res.header.Get("Content-Type"); tt.contentType != "" && ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			if tt.path == "/health" && tt.status == 200 && len(res.body) != 0 {
				t.Errorf("/health body %q, want empty", res.body)
			}
			if got := h.s.Requests(); got != 0 {
				t.Errorf("Requests() = %d after a probe, want 0", got)
			}
		})
	}
}

func TestGenerationPerFlavor(t *testing.T) {
	t.Parallel()
	for _, flavor := range []string{"vllm", "ollama"} {
		t.Run(flavor, func(t *testing.T) {
			h := start(t, Options{Flavor: flavor, Model: "m", OutputTokens: 6, Seed: 3})

			res := h.do(t, "POST", "/v1/chat/completions", chatWith(`"top_k":5,"chat_template_kwargs":{"x":1}`))
			if res.status != 200 {
				t.Fatalf("chat: %d %s", res.status, res.body)
			}
			v := mustJSON(t, res.body)
			content := string(v.GetStringBytes("choices", "0", "message", "content"))
			if n := len(strings.Fields(content)); n != 6 {
				t.Errorf("content %q has %d words, want 6", content, n)
			}
			if got := v.GetInt("usage", "prompt_tokens"); got != 6 {
				t.Errorf("prompt_tokens %d, want 6 (words in the prompt)", got)
			}
			// Both count the EOS token that ends a natural stop (reply.generated).
			if got := v.GetInt("usage", "completion_tokens"); got != 7 {
				t.Errorf("completion_tokens %d, want 7", got)
			}

			// Streamed text equals the buffered text for the same prompt and seed.
			res = h.do(t, "POST", "/v1/chat/completions", chatWith(`"stream":true`))
			text, usage, done := streamText(t, res.body)
			if text != content || usage != nil || !done {
				t.Errorf("stream text %q usage %v done %v, want %q, no usage, [DONE]", text, usage, done, content)
			}

			res = h.do(t, "POST", "/v1/chat/completions", chatWith(`"stream":true,"max_tokens":4,"stream_options":{"include_usage":true}`))
			text, usage, done = streamText(t, res.body)
			if len(strings.Fields(text)) != 4 || usage == nil || usage.GetInt("completion_tokens") != 4 || !done {
				t.Errorf("capped stream: text %q usage %v done %v", text, usage, done)
			}
			if !bytes.Contains(res.body, []byte(`"finish_reason":"length"`)) {
				t.Errorf("capped stream lacks finish_reason length: %s", res.body)
			}

			res = h.do(t, "POST", "/v1/completions", `{"model":"m","prompt":"once upon a time","max_tokens":3}`)
			v = mustJSON(t, res.body)
			if got := string(v.GetStringBytes("choices", "0", "finish_reason")); got != "length" || v.GetInt("usage", "completion_tokens") != 3 || v.GetInt("usage", "prompt_tokens") != 4 {
				t.Errorf("completion: %s", res.body)
			}

			res = h.do(t, "POST", "/v1/embeddings", `{"model":"m","input":["one two","three"]}`)
			v = mustJSON(t, res.body)
			data := v.GetArray("data")
			if len(data) != 2 || len(data[0].GetArray("embedding")) != 8 || v.GetInt("usage", "prompt_tokens") != 3 || v.GetInt("usage", "total_tokens") != 3 {
				t.Errorf("embeddings: %s", res.body)
			}
			res2 := h.do(t, "POST", "/v1/embeddings", `{"model":"m","input":"one two"}`)
			first := mustJSON(t, res2.body).Get("data", "0", "embedding").String()
			if first != data[0].Get("embedding").String() {
				t.Errorf("embedding of the same input differs: %s vs %s", first, data[0].Get("embedding"))
			}

			if got := h.s.Requests(); got != 6 {
				t.Errorf("Requests() = %d, want 6", got)
			}
		})
	}
}

func TestMaxCompletionTokens(t *testing.T) {
	t.Parallel()
	body := chatWith(`"max_tokens":5,"max_completion_tokens":2`)
	for flavor, want := range map[string]int{"vllm": 2, "ollama": 5} {
		h := start(t, Options{Flavor: flavor, Model: "m", OutputTokens: 8})
		v := mustJSON(t, h.do(t, "POST", "/v1/chat/completions", body).body)
		// vLLM prefers max_completion_tokens; Ollama's request struct lacks it.
		if got := v.GetInt("usage", "completion_tokens"); got != want {
			t.Errorf("%s: completion_tokens %d, want %d", flavor, got, want)
		}
	}
}

// A long prompt (past fasthttp's default 4 MiB body limit) is answered, as uvicorn and Go's
// net/http answer it, not refused mid-upload: Ollama truncates it to its context, vLLM reads it
// whole and refuses it as longer than max_model_len (TestContextLengthExceeded).
func TestLongPrompt(t *testing.T) {
	for flavor, want := range map[string]int{"vllm": 400, "ollama": 200} {
		h := start(t, Options{Flavor: flavor, Model: "m"})
		body := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("word ", 2<<20) + `"}],"max_tokens":4}`
		if res := h.do(t, "POST", "/v1/chat/completions", body); res.status != want || res.readErr != nil {
			t.Errorf("%s: a %d MiB prompt got %d (%v), want %d: %.200s", flavor, len(body)>>20, res.status, res.readErr, want, res.body)
		}
	}
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	content := func(seed int64, body string) string {
		h := start(t, Options{Model: "m", Seed: seed})
		v := mustJSON(t, h.do(t, "POST", "/v1/chat/completions", body).body)
		return string(v.GetStringBytes("choices", "0", "message", "content"))
	}
	a := content(1, chatBody)
	if b := content(1, chatBody); a != b {
		t.Errorf("same seed and prompt: %q then %q", a, b)
	}
	if b := content(2, chatBody); a == b {
		t.Errorf("different seeds gave the same text %q", a)
	}
	if b := content(1, strings.Replace(chatBody, "answer", "question", 1)); a == b {
		t.Errorf("different prompts gave the same text %q", a)
	}
	// Unknown fields do not change the text: only the prompt does.
	if b := content(1, chatWith(`"temperature":0.2,"vendor_extra":{"a":[1,2]}`)); a != b {
		t.Errorf("extra fields changed the text: %q vs %q", a, b)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, flavor, path, body string
		headers                  []string
		status                   int
		typ                      string
		code                     string // JSON of error.code
		msg                      string
	}{
		{"vllm unknown model", "vllm", "/v1/chat/completions", `{"model":"x","messages":[]}`, nil, 404, "NotFoundError", "404", "The model `x` does not exist."},
		{"vllm malformed", "vllm", "/v1/chat/completions", `{"model":`, nil, 400, "Bad Request", "400", ""},
		{"vllm no messages", "vllm", "/v1/chat/completions", `{"model":"m"}`, nil, 400, "Bad Request", "400", ""},
		{"vllm no prompt", "vllm", "/v1/completions", `{"model":"m"}`, nil, 400, "Bad Request", "400", ""},
		{"vllm no input", "vllm", "/v1/embeddings", `{"model":"m"}`, nil, 400, "Bad Request", "400", ""},
		{"vllm stream_options without stream", "vllm", "/v1/chat/completions", chatWith(`"stream_options":{"include_usage":true}`), nil, 400, "Bad Request", "400", ""},
		{"vllm forced 503", "vllm", "/v1/chat/completions", chatBody, []string{"X-Fakellm-Status", "503"}, 503, "Service Unavailable", "503", ""},
		{"vllm forced 500", "vllm", "/v1/embeddings", "", []string{"X-Fakellm-Status", "500"}, 500, "InternalServerError", "500", ""},
		{"ollama unknown model", "ollama", "/v1/chat/completions", `{"model":"x","messages":[{"role":"user","content":"hi"}]}`, nil, 404, "not_found_error", "null", "model 'x' not found"},
		{"ollama no model", "ollama", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request_error", "null", "model is required"},
		{"ollama malformed", "ollama", "/v1/completions", `[`, nil, 400, "invalid_request_error", "null", ""},
		{"ollama empty messages", "ollama", "/v1/chat/completions", `{"model":"m","messages":[]}`, nil, 400, "invalid_request_error", "null", "[] is too short - 'messages'"},
		{"ollama no input", "ollama", "/v1/embeddings", `{"model":"m","input":[]}`, nil, 400, "invalid_request_error", "null", "invalid input"},
		{"ollama forced 429", "ollama", "/v1/chat/completions", chatBody, []string{"X-Fakellm-Status", "429"}, 429, "api_error", "null", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m"})
			res := h.do(t, "POST", tt.path, tt.body, tt.headers...)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.body)
			}
			if ct := res.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			e := mustJSON(t, res.body).Get("error")
			if e == nil {
				t.Fatalf("no error object: %s", res.body)
			}
			if got := string(e.GetStringBytes("type")); got != tt.typ {
				t.Errorf("type %q, want %q", got, tt.typ)
			}
			if got := e.Get("code").String(); got != tt.code {
				t.Errorf("code %s, want %s", got, tt.code)
			}
			if tt.msg != "" && string(e.GetStringBytes("message")) != tt.msg {
				t.Errorf("message %q, want %q", e.GetStringBytes("message"), tt.msg)
			}
			retry := tt.status == 429 || tt.status == 503
			if got := res.header.Get("Retry-After"); (got == "1") != retry {
				t.Errorf("Retry-After %q for status %d", got, tt.status)
			}
		})
	}
}

func TestDefaultsAndAliases(t *testing.T) {
	t.Parallel()
	// vLLM serves its default model when none is named.
	h := start(t, Options{Model: "m"})
	res := h.do(t, "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`)
	if v := mustJSON(t, res.body); res.status != 200 || string(v.GetStringBytes("model")) != "m" {
		t.Errorf("vllm without model: %d %s", res.status, res.body)
	}
	// Ollama resolves "name" to "name:latest" and echoes the requested name.
	h = start(t, Options{Flavor: "ollama", Model: "llama3.2:latest"})
	res = h.do(t, "POST", "/v1/chat/completions", `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}`)
	if v := mustJSON(t, res.body); res.status != 200 || string(v.GetStringBytes("model")) != "llama3.2" {
		t.Errorf("ollama alias: %d %s", res.status, res.body)
	}
	// Ollama ignores stream_options on a buffered request.
	res = h.do(t, "POST", "/v1/chat/completions", `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`)
	if res.status != 200 {
		t.Errorf("ollama stream_options without stream: %d %s", res.status, res.body)
	}
}

func TestStreamControls(t *testing.T) {
	t.Parallel()
	for _, flavor := range []string{"vllm", "ollama"} {
		t.Run(flavor, func(t *testing.T) {
			h := start(t, Options{Flavor: flavor, Model: "m", OutputTokens: 6})
			body := chatWith(`"stream":true,"stream_options":{"include_usage":true}`)

			res := h.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-Disconnect-After", "2")
			if !errors.Is(res.readErr, io.ErrUnexpectedEOF) {
				t.Errorf("cut stream read error %v, want unexpected EOF", res.readErr)
			}
			text, usage, done := streamText(t, res.body)
			if len(strings.Fields(text)) != 2 || usage != nil || done {
				t.Errorf("cut stream: text %q usage %v done %v", text, usage, done)
			}

			res = h.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-Stream-Error-After", "3")
			if res.readErr != nil {
				t.Errorf("stream error read: %v", res.readErr)
			}
			evs := events(t, res.body)
			last := evs[len(evs)-1]
			if flavor == "vllm" {
				if string(last) != "[DONE]" {
					t.Errorf("vLLM sends [DONE] after an error event, got %s", last)
				}
				last = evs[len(evs)-2]
			}
			if flavor == "vllm" {
				if e := mustJSON(t, last).Get("error"); e == nil || e.GetInt("code") != 500 {
					t.Errorf("last event %s, want vLLM's error event", last)
				}
			} else if v := mustJSON(t, last); v.Get("error") != nil || string(v.GetStringBytes("model")) != "" ||
				v.Get("choices", "0", "finish_reason").Type() != fastjson.TypeNull {
				// Ollama's OpenAI layer turns the error line into an empty chunk (ollamaBrokenChunk).
				t.Errorf("last event %s, want Ollama's empty chunk without a model", last)
			}
			var content []byte
			for _, ev := range evs {
				if bytes.Contains(ev, []byte(`"choices"`)) {
					content = append(append(content, "data: "...), ev...)
					content = append(content, "\n\n"...)
				}
			}
			if text, _, _ := streamText(t, content); len(strings.Fields(text)) != 3 {
				t.Errorf("text before the error %q, want 3 words", text)
			}
		})
	}
}

func TestDisconnectRate(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m", OutputTokens: 8, DisconnectRate: 1})
	res := h.do(t, "POST", "/v1/chat/completions", chatWith(`"stream":true`))
	text, _, done := streamText(t, res.body)
	if !errors.Is(res.readErr, io.ErrUnexpectedEOF) || done || len(strings.Fields(text)) != 4 {
		t.Errorf("read err %v done %v text %q: want a cut after 4 of 8 tokens", res.readErr, done, text)
	}
	// Buffered requests are never cut.
	if res := h.do(t, "POST", "/v1/chat/completions", chatBody); res.status != 200 {
		t.Errorf("buffered request: %d", res.status)
	}
}

func TestErrorRate(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0, 1} {
		h := start(t, Options{Model: "m", ErrorRate: rate})
		want := map[float64]int{0: 200, 1: 500}[rate]
		for i := 0; i < 5; i++ {
			if res := h.do(t, "POST", "/v1/chat/completions", chatBody); res.status != want {
				t.Fatalf("rate %v: status %d, want %d", rate, res.status, want)
			}
		}
	}
}

func TestForceStatus(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m"})
	h.s.ForceStatus(503)
	if res := h.do(t, "GET", "/health", ""); res.status != 503 || res.header.Get("Retry-After") != "1" {
		t.Errorf("forced /health: %d %v", res.status, res.header)
	}
	h.s.ForceStatus(0)
	if res := h.do(t, "GET", "/health", ""); res.status != 200 {
		t.Errorf("restored /health: %d", res.status)
	}
}

func TestStatusUnlessRetry(t *testing.T) {
	tests := []struct {
		name       string
		retryCount string // x-stainless-retry-count; "" for none
		status     int
		retryAfter string
	}{
		{"first attempt", "", 429, "0"},
		{"first attempt counted", "0", 429, "0"},
		{"first retry", "1", 200, ""},
		{"garbage count", "x", 429, "0"},
	}
	h := start(t, Options{Model: "m"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdrs := []string{"X-Fakellm-Status-Unless-Retry", "429"}
			if tt.retryCount != "" {
				hdrs = append(hdrs, "X-Stainless-Retry-Count", tt.retryCount)
			}
			res := h.do(t, "POST", "/v1/chat/completions", chatBody, hdrs...)
			if res.status != tt.status || res.header.Get("Retry-After") != tt.retryAfter {
				t.Errorf("got %d Retry-After %q, want %d %q (body %s)", res.status, res.header.Get("Retry-After"), tt.status, tt.retryAfter, res.body)
			}
		})
	}
}

func TestEchoAndRequestID(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m"})
	res := h.do(t, "POST", "/v1/chat/completions", chatBody,
		"X-Fakellm-Echo", "1", "X-Request-Id", "req-42", "X-Custom", "a", "X-Custom", "b")
	if got := res.header.Get("X-Fakellm-Request-Id"); got != "req-42" {
		t.Errorf("X-Fakellm-Request-Id %q", got)
	}
	// vLLM builds the response id from X-Request-Id.
	if id := string(mustJSON(t, res.body).GetStringBytes("id")); id != "chatcmpl-req-42" {
		t.Errorf("id %q, want chatcmpl-req-42", id)
	}
	body, err := base64.StdEncoding.DecodeString(res.header.Get("X-Fakellm-Received-Body"))
	if err != nil || string(body) != chatBody {
		t.Errorf("received body %q (%v), want %q", body, err, chatBody)
	}
	raw, err := base64.StdEncoding.DecodeString(res.header.Get("X-Fakellm-Received-Headers"))
	var hdrs map[string]string
	if err != nil || json.Unmarshal(raw, &hdrs) != nil {
		t.Fatalf("received headers %q: %v", raw, err)
	}
	if hdrs["x-custom"] != "a, b" || hdrs["x-request-id"] != "req-42" || hdrs["content-type"] != "application/json" {
		t.Errorf("received headers %v", hdrs)
	}
	// Without the echo header nothing is echoed.
	if res := h.do(t, "POST", "/v1/chat/completions", chatBody); res.header.Get("X-Fakellm-Received-Body") != "" {
		t.Error("echo headers without X-Fakellm-Echo")
	}
}

func TestTiming(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m", OutputTokens: 5, TokensPerSecond: 200})
	began := time.Now()
	res := h.do(t, "POST", "/v1/chat/completions", chatBody, "X-Fakellm-TTFT", "30ms")
	// 30ms to the first token, then 4 gaps of 5ms.
	if took := time.Since(began); res.status != 200 || took < 50*time.Millisecond {
		t.Errorf("buffered reply after %v, want >= 50ms", took)
	}

	req, _ := http.NewRequest("POST", "http://fakellm/v1/chat/completions", strings.NewReader(chatWith(`"stream":true`)))
	req.Header.Set("X-Fakellm-TTFT", "40ms")
	began = time.Now()
	resp, err := h.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 1)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 40*time.Millisecond {
		t.Errorf("first stream byte after %v, want >= 40ms", took)
	}
}

func TestStreamStopsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m", OutputTokens: 100000, TokensPerSecond: 1000})
	ended := make(chan [2]int, 1)
	h.s.streamEnd = func(contents int, completed bool) {
		c := 0
		if completed {
			c = 1
		}
		ended <- [2]int{contents, c}
	}
	req, _ := http.NewRequest("POST", "http://fakellm/v1/chat/completions", strings.NewReader(chatWith(`"stream":true`)))
	resp, err := h.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the client goes away mid-stream
	select {
	case got := <-ended:
		if got[1] == 1 || got[0] >= 100000 {
			t.Errorf("stream ended with %d events, completed=%d; want an early stop", got[0], got[1])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream kept running after the client left")
	}
}

func TestOptions(t *testing.T) {
	fs := flag.NewFlagSet("fakellm", flag.ContinueOnError)
	o := RegisterFlags(fs)
	err := fs.Parse([]string{"--flavor=ollama", "--model=llama3.2:latest", "--ttft=150ms", "--tokens-per-second=40",
		"--output-tokens=32", "--error-rate=0.1", "--disconnect-rate=0.2", "--seed=9", "--embedding-dim=16", "--matryoshka"})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Flavor: "ollama", Model: "llama3.2:latest", TTFT: 150 * time.Millisecond, TokensPerSecond: 40,
		OutputTokens: 32, ErrorRate: 0.1, DisconnectRate: 0.2, Seed: 9, EmbeddingDim: 16, Matryoshka: true}
	if *o != want {
		t.Errorf("parsed %+v, want %+v", *o, want)
	}
	// In Options 0 means the default; a flag of 0 was accepted and served 8 dimensions, or 16 tokens.
	for _, flagName := range []string{"embedding-dim", "output-tokens"} {
		for _, v := range []string{"0", "-1", "x"} {
			fs := flag.NewFlagSet("fakellm", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o := RegisterFlags(fs)
			if err := fs.Parse([]string{"--" + flagName + "=" + v}); err == nil {
				t.Errorf("--%s=%s accepted: %d dimensions, %d tokens", flagName, v, o.EmbeddingDim, o.OutputTokens)
			}
		}
	}
	// Left out, they are the defaults.
	fs = flag.NewFlagSet("fakellm", flag.ContinueOnError)
	if o := RegisterFlags(fs); fs.Parse(nil) != nil || o.EmbeddingDim != 8 || o.OutputTokens != 16 {
		t.Errorf("defaults: %d dimensions, %d tokens, want 8 and 16", o.EmbeddingDim, o.OutputTokens)
	}
	nan := math.NaN()
	for _, bad := range []Options{{Flavor: "tgi"}, {ErrorRate: 2}, {DisconnectRate: -1}, {OutputTokens: -1},
		{ErrorRate: nan}, {DisconnectRate: nan}, {TokensPerSecond: nan}} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
}

// vLLM's error event after a stream started is json.dumps output (Python's
// ", " and ": " separators, create_streaming_error_response in
// vllm/entrypoints/openai/engine/serving.py), followed by [DONE]; a failure
// before the first token comes before the role chunk, which vLLM sends on
// the engine's first output (chat_completion_stream_generator).
func TestVLLMStreamErrorBytes(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m", OutputTokens: 4})
	const want = `data: {"error": {"message": "fakellm: injected stream error", "type": "InternalServerError", "param": null, "code": 500}}` +
		"\n\ndata: [DONE]\n\n"
	res := h.do(t, "POST", "/v1/chat/completions", chatWith(`"stream":true`), "X-Fakellm-Stream-Error-After", "0")
	if res.status != 200 || string(res.body) != want {
		t.Errorf("error before the first token: %d %q\nwant %q", res.status, res.body, want)
	}
	res = h.do(t, "POST", "/v1/chat/completions", chatWith(`"stream":true`), "X-Fakellm-Stream-Error-After", "1")
	evs := events(t, res.body)
	if len(evs) != 4 || !bytes.Contains(evs[0], []byte(`"role":"assistant"`)) || !strings.HasSuffix(string(res.body), want) {
		t.Errorf("error after one token: %q, want role chunk, token chunk, then %q", res.body, want)
	}
}

// vLLM's 200 and headers leave before prefill: its route returns a
// StreamingResponse over the not yet started generator, and Starlette sends
// http.response.start before iterating it. Ollama's OpenAI writer sends
// them with its first chunk (gin writes headers on the first Write), and
// answers an error before any content as a plain 500 (server/routes.go
// streamResponse: nothing written yet).
func TestStreamHeaderTiming(t *testing.T) {
	t.Parallel()
	const ttft = time.Second
	for _, tt := range []struct {
		flavor  string
		headers []string
		early   bool // headers well before the first token
		status  int
	}{
		{"vllm", nil, true, 200},
		{"vllm", []string{"X-Fakellm-Disconnect-After", "1"}, true, 200},
		{"ollama", nil, false, 200},
		{"ollama", []string{"X-Fakellm-Disconnect-After", "1"}, false, 200},
		{"ollama", []string{"X-Fakellm-Stream-Error-After", "0"}, false, 500},
	} {
		t.Run(tt.flavor+fmt.Sprint(tt.headers), func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m", TTFT: ttft})
			req, err := http.NewRequest("POST", "http://fakellm/v1/chat/completions", strings.NewReader(chatWith(`"stream":true`)))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header.Set(tt.headers[i], tt.headers[i+1])
			}
			begin := time.Now()
			resp, err := h.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(begin)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if early := took < ttft/2; early != tt.early || resp.StatusCode != tt.status {
				t.Errorf("status %d and headers after %s, want %d and early=%v (TTFT %s)", resp.StatusCode, took, tt.status, tt.early, ttft)
			}
		})
	}
}
