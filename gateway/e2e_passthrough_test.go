package gateway_test

// The gateway never round-trips bodies through a typed struct: fields it does not know reach
// the backend and the client byte for byte.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

// vllmChatBody is a vLLM-style request: sampling extras, structured outputs, template kwargs,
// tools, odd number spellings, escapes and whitespace, and "model" keys nested below the top.
const vllmChatBody = `{
  "model": "chat",
  "messages": [{"role": "user", "content": "caf\u00e9 \ud83d\ude00 \"quoted\" \\ ok"}],
  "max_tokens": 3,
  "temperature": 0.10,
  "top_k": 40, "min_p": 1e-5, "repetition_penalty": 1.10,
  "structured_outputs": {"json": {"type": "object", "properties": {"model": {"type": "string"}}}},
  "chat_template_kwargs": {"enable_thinking": false},
  "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
  "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"model": {"type": "string"}}}}}],
  "metadata": {"model": "not-this-one"},
  "seed": 12345678901234567890
}`

// ollamaChatBody is an Ollama-style request pinned to v2.
const ollamaChatBody = `{"model":"chat@v2","messages":[{"role":"user","content":"hi"}],"max_tokens":3,` +
	`"options":{"num_ctx":8192,"temperature":0.2,"stop":["\n\n"]},"keep_alive":"5m","format":"json","think":false}`

var topLevelModel = regexp.MustCompile(`^\{\s*"model"\s*:\s*("[^"]*")`)

func TestRequestBodyPassthrough(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	const served1, served2 = `"meta-llama/Llama-3.1-8B-Instruct"`, `"llama3.2:latest"`
	tests := []struct {
		name   string
		path   string
		body   string
		served string // JSON of the model name the backend serves
		// addUsage: the client did not ask for the usage chunk, so the gateway asks for it;
		// wantOptions is then the stream_options the backend must see.
		wantOptions string
	}{
		{"vllm chat extras", "/v1/chat/completions", vllmChatBody, served1, ""},
		{"ollama chat options", "/v1/chat/completions", ollamaChatBody, served2, ""},
		{"completion extras", "/v1/completions",
			`{"model":"chat","prompt":"hi there","max_tokens":2,"top_k":3,"guided_json":{"type":"object"},"echo":false,"logprobs":null}`, served1, ""},
		{"embeddings extras", "/v1/embeddings",
			`{"model":"chat","input":["a b"],"encoding_format":"float","truncate_prompt_tokens":64,"dimensions":8,"user":"u-1"}`, served1, ""},
		{"stream with include_usage", "/v1/chat/completions",
			`{"model":"chat","stream":true,"stream_options":{"include_usage":true},"max_tokens":3,"top_k":5,"messages":[{"role":"user","content":"hi"}]}`, served1, ""},
		{"stream without stream_options", "/v1/chat/completions",
			`{"model" : "chat" ,"stream":true,"max_tokens":3,"top_k":5,"messages":[{"role":"user","content":"hi"}] }`, served1, `{"include_usage":true}`},
		{"stream keeps other stream_options", "/v1/chat/completions",
			`{"model":"chat","stream":true,"stream_options":{"continuous_usage_stats":false},"max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`,
			served1, `{"include_usage":true,"continuous_usage_stats":false}`},
		{"stream with include_usage false", "/v1/chat/completions",
			`{"model":"chat","stream":true,"stream_options":{"include_usage":false},"max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`,
			served1, `{"include_usage":true}`},
		{"ollama stream", "/v1/chat/completions",
			`{"model":"chat@v2","stream":true,"options":{"num_ctx":4096},"messages":[{"role":"user","content":"hi"}]}`, served2, `{"include_usage":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.gw.do(t, "POST", tt.path, tt.body, "X-Fakellm-Echo", "1")
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			got := receivedBody(t, res.header)

			// As JSON, the backend got the client's body with only model (and, for streams
			// without usage, stream_options) changed.
			want := decodeObject(t, []byte(tt.body))
			if tt.wantOptions != "" {
				want["stream_options"] = json.RawMessage(tt.wantOptions)
			}
			want["model"] = json.RawMessage(tt.served)
			if gotObj := decodeObject(t, got); !jsonEqual(t, gotObj, want) {
				t.Errorf("backend received\n%s\nwant (as JSON)\n%s", got, mustMarshal(t, want))
			}

			// As bytes, everything before the model value is untouched, and so is everything
			// after it when the gateway had nothing to add.
			m := topLevelModel.FindStringSubmatchIndex(tt.body)
			if m == nil {
				t.Fatalf("test body does not start with model: %s", tt.body)
			}
			before, after := tt.body[:m[2]], tt.body[m[3]:]
			if !bytes.HasPrefix(got, []byte(before+tt.served)) {
				t.Errorf("backend body starts %q, want %q", got[:min(len(got), len(before)+len(tt.served))], before+tt.served)
			}
			switch {
			case tt.wantOptions == "":
				if string(got) != before+tt.served+after {
					t.Errorf("backend received\n%s\nwant byte for byte\n%s", got, before+tt.served+after)
				}
			case !strings.Contains(tt.body, "stream_options"):
				// The addition goes at the end; the client's members keep their bytes.
				untouched := after[:strings.LastIndexByte(after, '}')]
				if !bytes.Contains(got, []byte(untouched)) {
					t.Errorf("backend body %s lost the client's bytes %q", got, untouched)
				}
			}
		})
	}
}

func decodeObject(t testing.TB, b []byte) map[string]json.RawMessage {
	t.Helper()
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %s: %v", b, err)
	}
	return m
}

// jsonEqual compares two objects as JSON values, numbers by their text (no float rounding).
func jsonEqual(t testing.TB, a, b map[string]json.RawMessage) bool {
	t.Helper()
	norm := func(m map[string]json.RawMessage) any {
		dec := json.NewDecoder(bytes.NewReader(mustMarshal(t, m)))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A vLLM answer full of fields OpenAI does not define, with values (fakellm sends them null).
const vllmVendorResponse = `{"id":"chatcmpl-1","object":"chat.completion","created":1760000000,"model":"canned",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning":"The user greets me.","reasoning_content":"The user greets me."},` +
	`"logprobs":null,"finish_reason":"stop","stop_reason":128009,"token_ids":[15339,0]}],` +
	`"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0}},` +
	`"prompt_token_ids":[1,2,3],"kv_transfer_params":{"remote_host":"10.0.0.1","remote_port":5557},"metrics":{"ttft":0.01}}`

const vendorStreamHead = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"hmm"},"logprobs":null,"finish_reason":null}],"prompt_token_ids":[1,2]}

: keep-alive

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":"stop","stop_reason":128009,"token_ids":[15339]}],"kv_transfer_params":{"remote_port":5557}}

`

const vendorStreamUsage = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"canned","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}

`

const vendorStreamDone = "data: [DONE]\n\n"

func TestResponsePassthrough(t *testing.T) {
	t.Parallel()
	buffered := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, vllmVendorResponse)
	streamed := cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream; charset=utf-8"}},
		vendorStreamHead+vendorStreamUsage+vendorStreamDone)
	g := startGateway(t, newConfig(t, nil, model("buffered", "v1", version("v1", buffered)), model("streamed", "v1", version("v1", streamed))))
	tests := []struct {
		name, body, want string
	}{
		{"buffered", `{"model":"buffered","messages":[{"role":"user","content":"hi"}]}`, vllmVendorResponse},
		{"stream with usage", `{"model":"streamed","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			vendorStreamHead + vendorStreamUsage + vendorStreamDone},
		// The gateway asked for the usage chunk for its metrics; the client did not get it.
		{"stream without usage", `{"model":"streamed","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			vendorStreamHead + vendorStreamDone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := g.do(t, "POST", "/v1/chat/completions", tt.body)
			if res.status != 200 || string(res.body) != tt.want {
				t.Errorf("got %d\n%s\nwant 200 with the backend's bytes\n%s", res.status, res.body, tt.want)
			}
		})
	}
}

func TestFakellmVendorFieldsReachClient(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	res := s.gw.do(t, "POST", "/v1/chat/completions", `{"model":"chat","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	// Present (null in fakellm's answer) at each level: top, choice and message.
	top := decodeObject(t, res.body)
	var choices []map[string]json.RawMessage
	if err := json.Unmarshal(top["choices"], &choices); err != nil || len(choices) != 1 {
		t.Fatalf("choices in %s: %v", res.body, err)
	}
	msg := decodeObject(t, choices[0]["message"])
	for _, f := range []struct {
		obj  map[string]json.RawMessage
		name string
	}{
		{top, "kv_transfer_params"}, {top, "prompt_token_ids"},
		{choices[0], "stop_reason"}, {choices[0], "token_ids"}, {msg, "reasoning"},
	} {
		if _, ok := f.obj[f.name]; !ok {
			t.Errorf("%s is missing from the client's response: %s", f.name, res.body)
		}
	}
}

// Ollama's OpenAI API reads max_tokens only: a limit sent as max_completion_tokens (what the
// SDKs send now) reaches an Ollama backend as max_tokens, so the answer still stops there. A
// vLLM backend gets the body as it came; a body with both keeps both.
func TestMaxCompletionTokensOnOllama(t *testing.T) {
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m", OutputTokens: 12})
	vllm := startFake(t, fakellm.Options{Model: "m", OutputTokens: 12})
	g := startGateway(t, newConfig(t, nil, model("o", "v1", version("v1", ollama.backend())), model("v", "v1", version("v1", vllm.backend()))))
	for _, tc := range []struct {
		alias, extra, sent string
		tokens             int
	}{
		{"o", `"max_completion_tokens": 3`, `"max_tokens": 3`, 3},
		{"o", `"max_completion_tokens":3,"max_tokens":5`, `"max_completion_tokens":3,"max_tokens":5`, 5},
		{"v", `"max_completion_tokens": 3`, `"max_completion_tokens": 3`, 3},
	} {
		for _, stream := range []string{"", `,"stream":true,"stream_options":{"include_usage":true}`} {
			body := `{"model":"` + tc.alias + `","messages":[{"role":"user","content":"count"}],` + tc.extra + stream + `}`
			res := g.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-Echo", "1")
			if res.status != 200 {
				t.Fatalf("%s %s: status %d: %s", tc.alias, tc.extra, res.status, res.body)
			}
			if got := string(receivedBody(t, res.header)); !strings.Contains(got, tc.sent) {
				t.Errorf("%s %s%s: the backend received %s, want it to hold %s", tc.alias, tc.extra, stream, got, tc.sent)
			}
			if want := `"completion_tokens":` + strconv.Itoa(tc.tokens) + `[,}]`; !regexp.MustCompile(want).Match(res.body) {
				t.Errorf("%s %s%s: want usage with %s: %s", tc.alias, tc.extra, stream, want, res.body)
			}
		}
	}
}

// Ollama answers one choice whatever n asks: a model served only by Ollama refuses n above 1
// with a 400 naming n, rather than answer fewer choices without a word; n of 1, embeddings,
// and a vLLM model are unaffected.
func TestOllamaRefusesSeveralChoices(t *testing.T) {
	t.Parallel()
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m"})
	vllm := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil, model("o", "v1", version("v1", ollama.backend())), model("v", "v1", version("v1", vllm.backend()))))
	for _, tc := range []struct {
		alias, extra string
		want         int
	}{
		{"o", `,"n":2`, 400},
		{"o", `,"n":2,"stream":true`, 400},
		{"o", `,"n":1`, 200},
		{"v", `,"n":2`, 200},
	} {
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"`+tc.alias+`","messages":[{"role":"user","content":"hi"}]`+tc.extra+`}`)
		if res.status != tc.want {
			t.Errorf("%s%s: status %d %s, want %d", tc.alias, tc.extra, res.status, res.body, tc.want)
			continue
		}
		if tc.want == 400 {
			if _, param, code := envelope(t, res.body); param != "n" || code != "unsupported_parameter" {
				t.Errorf("%s%s: param %q code %q, want n unsupported_parameter", tc.alias, tc.extra, param, code)
			}
		}
	}
	if got := ollama.Requests(); got != 1 {
		t.Errorf("the Ollama backend got %d requests, want 1 (the n:1 one)", got)
	}
}

// A version may mix vLLM and Ollama servers of one model (--backend discovery builds such a
// pool). A request with n above 1 goes to a backend that answers n choices, never to the
// Ollama one, which would answer one without a word; other requests still use both.
func TestSeveralChoicesAvoidOllamaInMixedPool(t *testing.T) {
	t.Parallel()
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m"})
	vllm := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", ollama.backend(), vllm.backend()))))
	for i := range 20 {
		stream := i%2 == 1
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","n":3,"stream":`+strconv.FormatBool(stream)+`,"messages":[{"role":"user","content":"hi"}]}`)
		if res.status != 200 || !strings.Contains(string(res.body), `"index":2`) {
			t.Fatalf("request %d (stream=%v) with n=3: status %d, want 3 choices: %s", i, stream, res.status, res.body)
		}
	}
	if n := ollama.Requests(); n != 0 {
		t.Errorf("the Ollama backend got %d requests with n=3, want 0", n)
	}
	for range 40 {
		if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 200 {
			t.Fatalf("status %d %s", res.status, res.body)
		}
	}
	if ollama.Requests() == 0 {
		t.Error("the Ollama backend got none of 40 requests without n: it is left out of the pool")
	}
}

// The refusal is the version's like any other: /admin/stats counts it, as
// llmgate_request_errors_total does (it was refused before the request reached the statistics).
func TestOllamaSeveralChoicesInStats(t *testing.T) {
	tokens := withAdminTokens(t)
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m"})
	g := startGateway(t, newConfig(t, tokens, model("o", "v1", version("v1", ollama.backend()))))
	for _, extra := range []string{`,"n":2`, `,"n":2,"stream":true`, `,"n":1`} {
		g.do(t, "POST", "/v1/chat/completions", `{"model":"o","messages":[{"role":"user","content":"hi"}]`+extra+`}`)
	}
	refused, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_request_errors_total",
		map[string]string{"model": "o", "version": "v1", "code": "unsupported_parameter"})
	var stats struct {
		Versions []struct {
			Summary struct {
				Requests uint64 `json:"requests"`
			} `json:"summary"`
		} `json:"versions"`
	}
	decode(t, g.call(t, "GET", "/admin/stats/o", viewerToken, ""), &stats)
	if refused != 2 || len(stats.Versions) != 1 || stats.Versions[0].Summary.Requests != 3 {
		t.Errorf("llmgate_request_errors_total{code=unsupported_parameter} = %v and /admin/stats %+v, want 2 and 3 requests", refused, stats.Versions)
	}
}

// A shadow on Ollama gets the same translation as a served request: it generates what the
// client asked for, not Ollama's own limit, so its length and latency compare with stable's.
func TestMaxCompletionTokensOnOllamaShadow(t *testing.T) {
	tokens := withAdminTokens(t)
	vllm := startFake(t, fakellm.Options{Model: "m", OutputTokens: 12})
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m", OutputTokens: 12})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", vllm.backend()), version("v2", ollama.backend()))))
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)
	res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"count"}],"max_completion_tokens":3}`)
	if res.status != 200 || res.header.Get("X-Llmgate-Version") != "v1" {
		t.Fatalf("status %d version %q: %s", res.status, res.header.Get("X-Llmgate-Version"), res.body)
	}
	out := g.waitMetric(t, "llmgate_tokens_total", map[string]string{"model": "chat", "version": "v2", "type": "output"}, "> 0",
		func(v float64) bool { return v > 0 })
	if out != 3 {
		t.Errorf("the Ollama shadow generated %v tokens, want the 3 the client asked for", out)
	}
}

// A body compressed with gzip or deflate (Content-Encoding) reaches the backend decompressed,
// without the header that no longer describes it; the decompressed body is bounded like a
// plain one, and an encoding the gateway cannot read is refused as such, not as bad JSON.
func TestCompressedRequestBody(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{Model: "m"})
	const limit = 64 << 10
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Limits.MaxBodyBytes = limit },
		model("chat", "v1", version("v1", f.backend()))))
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"top_k":40}`
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.String()
	}
	deflate := func(s string) string {
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.String()
	}
	rawDeflate := func(s string) string {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, flate.DefaultCompression)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.String()
	}
	// Far over the limit once decompressed, a few hundred bytes compressed.
	bomb := gz(`{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", 4*limit) + `"}]}`)
	tests := []struct {
		name, encoding, body string
		want                 int
	}{
		{"gzip", "gzip", gz(body), 200},
		{"gzip upper case", "GZIP", gz(body), 200},
		{"deflate", "deflate", deflate(body), 200},
		{"raw deflate, as some clients send it", "deflate", rawDeflate(body), 200},
		{"not deflate", "deflate", body, 400},
		{"identity", "identity", body, 200},
		{"over the limit decompressed", "gzip", bomb, 413},
		{"not gzip", "gzip", body, 400},
		{"truncated gzip", "gzip", gz(body)[:20], 400},
		{"unsupported", "br", body, 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := g.do(t, "POST", "/v1/chat/completions", tt.body, "Content-Encoding", tt.encoding, "X-Fakellm-Echo", "1")
			if res.status != tt.want {
				t.Fatalf("status %d, want %d: %s", res.status, tt.want, res.body)
			}
			if tt.want != 200 {
				if typ, _, _ := envelope(t, res.body); typ != "invalid_request_error" {
					t.Errorf("error type %q, want invalid_request_error", typ)
				}
				return
			}
			want := strings.Replace(body, `"chat"`, `"m"`, 1)
			if got := string(receivedBody(t, res.header)); got != want {
				t.Errorf("the backend received %q, want %q", got, want)
			}
			if h := receivedHeaders(t, res.header); h["content-encoding"] != "" {
				t.Errorf("the backend received Content-Encoding %q with a decompressed body", h["content-encoding"])
			}
		})
	}
}

// Once the guard rewrote one text, the body goes out marshalled again: every other string must
// mean what it meant. A lone surrogate escape (which Python clients write for a broken emoji)
// came out as a backslash and "ud800" as text, or swallowed the escape after it.
func TestGuardRewriteKeepsOtherStrings(t *testing.T) {
	t.Parallel()
	const odd = `"a \ud800 b \udc00\u0041 c \ud83d\ude00"`
	var want string // as encoding/json reads it: U+FFFD for each lone surrogate
	if err := json.Unmarshal([]byte(odd), &want); err != nil {
		t.Fatal(err)
	}
	pii := config.Guard{PII: config.PIIGuard{Prompt: "redact", Restore: true}}

	t.Run("prompt", func(t *testing.T) {
		f := startFake(t, fakellm.Options{Model: "m"})
		g := startGateway(t, newConfig(t, nil, guarded(pii, f.backend())))
		body := `{"model":"chat","messages":[{"role":"user","content":"mail ` + testEmail + `"},{"role":"user","content":` + odd + `}],"max_tokens":2}`
		res := g.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-Echo", "1")
		if res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		var got struct{ Messages []struct{ Content string } }
		if err := json.Unmarshal(receivedBody(t, res.header), &got); err != nil || len(got.Messages) != 2 {
			t.Fatalf("backend body %s: %v", receivedBody(t, res.header), err)
		}
		if strings.Contains(got.Messages[0].Content, testEmail) {
			t.Fatalf("not redacted: %q", got.Messages[0].Content)
		}
		if got.Messages[1].Content != want {
			t.Errorf("the untouched message reached the backend as %q, want %q", got.Messages[1].Content, want)
		}
	})
	t.Run("completion", func(t *testing.T) {
		answer := `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"to <EMAIL_ADDRESS_1>","reasoning_content":` + odd + `},"finish_reason":"stop"}]}`
		b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, answer)
		g := startGateway(t, newConfig(t, nil, guarded(pii, b)))
		res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"mail `+testEmail+`"}]}`)
		var got struct {
			Choices []struct {
				Message struct {
					Content          string
					ReasoningContent string `json:"reasoning_content"`
				}
			}
		}
		if err := json.Unmarshal(res.body, &got); res.status != 200 || err != nil || len(got.Choices) != 1 {
			t.Fatalf("status %d (%v): %s", res.status, err, res.body)
		}
		if got.Choices[0].Message.Content != "to "+testEmail {
			t.Fatalf("content %q, want the e-mail restored", got.Choices[0].Message.Content)
		}
		if got.Choices[0].Message.ReasoningContent != want {
			t.Errorf("the untouched reasoning reached the client as %q, want %q", got.Choices[0].Message.ReasoningContent, want)
		}
	})
}

// A shadow sent on a pooled connection its backend closed while idle goes again on a new one,
// as a served request does: the backend never saw it, and counted as an upstream error it would
// put errors the shadow version did not make into the comparison with stable.
func TestShadowOnStaleConnection(t *testing.T) {
	tokens := withAdminTokens(t)
	stable := startFake(t, fakellm.Options{Model: "m"})
	const answer = `{"id":"s","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	shadow := rawBackend(t, func(c net.Conn) {
		if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			_, _ = io.Copy(io.Discard, req.Body)
			// A keep-alive answer, then the connection closed as an idle timeout closes it:
			// whether before or after the gateway sends the next request on it, that one
			// fails there (EOF, or a reset).
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(answer))+"\r\n\r\n"+answer)
		}
		c.Close()
	})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", stable.backend()), version("v2", shadow))))
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)
	for i := 1; i <= 2; i++ {
		if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 200 {
			t.Fatalf("request %d: %d %s", i, res.status, res.body)
		}
		g.waitMetric(t, "llmgate_shadow_requests_total", nil, "the shadow's answer", func(v float64) bool { return v >= float64(i) })
	}
	samples := parseMetrics(t, g.metrics(t))
	labels := func(status string) map[string]string { return map[string]string{"version": "v2", "status": status} }
	if ok, _ := metricValue(samples, "llmgate_requests_total", labels("2xx")); ok != 2 {
		errs, _ := metricValue(samples, "llmgate_requests_total", labels("error"))
		t.Errorf("shadow answers: %v 2xx and %v errors, want 2 and 0", ok, errs)
	}
}

// Ollama ignores echo without a word, and refuses a completions prompt that is not one string
// and embeddings input given as token ids with a Go decoding error ("invalid input type"), and
// vLLM's embeddings of a conversation (messages) as "invalid input". A
// model served only by Ollama refuses them with a 400 naming the parameter and saying what to
// send; the same requests to a vLLM model, and what Ollama does take, are unaffected.
func TestOllamaRefusesWhatItCannotHonour(t *testing.T) {
	t.Parallel()
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m"})
	vllm := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil, model("o", "v1", version("v1", ollama.backend())), model("v", "v1", version("v1", vllm.backend()))))
	for _, tc := range []struct {
		path, body string
		param      string // refused on Ollama naming it; "" when Ollama serves it
		says       string // what the refusal says is not supported
	}{
		{"/v1/completions", `"prompt":"hi","echo":true`, "echo", "'echo' is not supported"},
		{"/v1/completions", `"prompt":"hi","echo":true,"stream":true`, "echo", "'echo' is not supported"},
		{"/v1/completions", `"prompt":["hi","yo"]`, "prompt", "'prompt' as a list or as token ids is not supported"},
		{"/v1/completions", `"prompt":[1,2,3]`, "prompt", "'prompt' as a list or as token ids is not supported"},
		{"/v1/embeddings", `"input":[1,2,3]`, "input", "'input' as token ids is not supported"},
		{"/v1/embeddings", `"input":[[1,2],[3]]`, "input", "'input' as token ids is not supported"},
		{"/v1/embeddings", `"messages":[{"role":"user","content":"hi"}]`, "messages", "'messages' (a conversation to embed) is not supported"},
		{"/v1/completions", `"prompt":"hi","echo":false`, "", ""},
		{"/v1/embeddings", `"input":["hi","yo"]`, "", ""},
		{"/v1/embeddings", `"input":"hi"`, "", ""},
	} {
		res := g.do(t, "POST", tc.path, `{"model":"o",`+tc.body+`}`)
		if tc.param == "" {
			if res.status != 200 {
				t.Errorf("o %s %s: status %d %s, want 200", tc.path, tc.body, res.status, res.body)
			}
		} else if _, param, code := envelope(t, res.body); res.status != 400 || param != tc.param || code != "unsupported_parameter" ||
			!strings.Contains(string(res.body), tc.says) || !strings.Contains(string(res.body), "(Ollama)") {
			t.Errorf("o %s %s: status %d %s, want 400 unsupported_parameter naming %q, saying %q and Ollama", tc.path, tc.body, res.status, res.body, tc.param, tc.says)
		}
		if res := g.do(t, "POST", tc.path, `{"model":"v",`+tc.body+`}`); res.status != 200 {
			t.Errorf("v %s %s: status %d %s, want 200", tc.path, tc.body, res.status, res.body)
		}
	}
	if got := ollama.Requests(); got != 3 {
		t.Errorf("the Ollama backend got %d requests, want 3 (those it serves)", got)
	}
}

// In a version that mixes vLLM and Ollama servers, what Ollama cannot honour goes to the vLLM
// one, as n above 1 does, instead of failing or losing its echo when Ollama is picked.
func TestOllamaUnsupportedAvoidOllamaInMixedPool(t *testing.T) {
	t.Parallel()
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m"})
	vllm := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, nil, model("m", "v1", version("v1", ollama.backend(), vllm.backend()))))
	for i := range 20 {
		path, body := "/v1/embeddings", `{"model":"m","input":[[1,2],[3]]}`
		if i%2 == 1 {
			path, body = "/v1/completions", `{"model":"m","prompt":"hi","echo":true}`
		}
		if res := g.do(t, "POST", path, body); res.status != 200 {
			t.Fatalf("%s %s: status %d %s", path, body, res.status, res.body)
		}
	}
	if n := ollama.Requests(); n != 0 {
		t.Errorf("the Ollama backend got %d requests it cannot honour, want 0", n)
	}
}

// When every backend of a mixed pool that could serve a request Ollama cannot honour is down,
// the 503 says which parameter no healthy backend supports: a bare "No healthy backend" read
// as a lie while the Ollama backends were up and answering other requests.
func TestOllamaUnsupportedWithItsOtherBackendsDown(t *testing.T) {
	t.Parallel()
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m"})
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Health.FailureThreshold = 1 },
		model("chat", "v1", version("v1", ollama.backend(), closedBackend(t)))))
	body := `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`
	res := g.do(t, "POST", "/v1/chat/completions", body) // the vLLM backend refuses it, and is ejected
	if res.status != 502 {
		t.Fatalf("n=2 on the down vLLM backend: status %d %s, want 502", res.status, res.body)
	}
	res = g.do(t, "POST", "/v1/chat/completions", body)
	typ, param, code := envelope(t, res.body)
	if res.status != 503 || typ != "server_error" || code != "server_is_overloaded" || param != "n" || !strings.Contains(string(res.body), "'n' above 1") {
		t.Errorf("n=2 with only the Ollama backend up: status %d %s, want 503 server_is_overloaded naming 'n'", res.status, res.body)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); res.status != 200 {
		t.Errorf("without n: status %d %s, want 200 from the Ollama backend", res.status, res.body)
	}
	if n := ollama.Requests(); n != 1 {
		t.Errorf("the Ollama backend got %d requests, want 1 (the one without n)", n)
	}
}

// vLLM takes prompt_embeds in place of a completions prompt (--enable-prompt-embeds): such a
// request reaches a vLLM backend, not the gateway's "Missing required parameter: 'prompt'";
// Ollama, which would complete an empty prompt, refuses it by name; with neither, the 400 stays.
func TestCompletionPromptEmbeds(t *testing.T) {
	t.Parallel()
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m"})
	canned := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}},
		`{"id":"cmpl-1","object":"text_completion","created":1,"model":"canned","choices":[{"index":0,"text":"ok","finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	g := startGateway(t, newConfig(t, nil, model("v", "v1", version("v1", canned)), model("o", "v1", version("v1", ollama.backend()))))
	const embeds = `"prompt_embeds":"AACAPwAAAEA="`
	if res := g.do(t, "POST", "/v1/completions", `{"model":"v",`+embeds+`}`); res.status != 200 {
		t.Errorf("vLLM with prompt_embeds only: status %d %s, want 200", res.status, res.body)
	}
	res := g.do(t, "POST", "/v1/completions", `{"model":"o",`+embeds+`}`)
	if _, param, code := envelope(t, res.body); res.status != 400 || param != "prompt_embeds" || code != "unsupported_parameter" {
		t.Errorf("Ollama with prompt_embeds: status %d %s, want 400 unsupported_parameter prompt_embeds", res.status, res.body)
	}
	res = g.do(t, "POST", "/v1/completions", `{"model":"v","prompt_embeds":null}`)
	if _, param, _ := envelope(t, res.body); res.status != 400 || param != "prompt" {
		t.Errorf("neither prompt nor prompt_embeds: status %d %s, want 400 param prompt", res.status, res.body)
	}
	if n := ollama.Requests(); n != 0 {
		t.Errorf("the Ollama backend got %d requests, want 0", n)
	}
}
