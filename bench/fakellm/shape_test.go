package fakellm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// literalKeys are compared by value; everything else only by JSON type, so
// ids, timestamps, text and counts are normalised away.
var literalKeys = map[string]bool{"object": true, "role": true, "owned_by": true, "finish_reason": true}

// sameShape reports the first difference between want and got: key order
// and set of objects, JSON types, literal values of literalKeys. Every
// element of a got array must match the shape of want's first element.
func sameShape(path string, want, got *fastjson.Value) string {
	wt, gt := want.Type(), got.Type()
	if wt == fastjson.TypeFalse {
		wt = fastjson.TypeTrue
	}
	if gt == fastjson.TypeFalse {
		gt = fastjson.TypeTrue
	}
	if wt != gt {
		return path + ": type " + gt.String() + ", want " + wt.String()
	}
	switch wt {
	case fastjson.TypeObject:
		wo, _ := want.Object()
		gobj, _ := got.Object()
		var wk, gk []string
		wo.Visit(func(k []byte, _ *fastjson.Value) { wk = append(wk, string(k)) })
		gobj.Visit(func(k []byte, _ *fastjson.Value) { gk = append(gk, string(k)) })
		if strings.Join(wk, ",") != strings.Join(gk, ",") {
			return path + ": keys [" + strings.Join(gk, ",") + "], want [" + strings.Join(wk, ",") + "]"
		}
		for _, k := range wk {
			wv, gv := wo.Get(k), gobj.Get(k)
			if literalKeys[k] && wv.Type() == fastjson.TypeString && gv.String() != wv.String() {
				return path + "." + k + ": " + gv.String() + ", want " + wv.String()
			}
			if d := sameShape(path+"."+k, wv, gv); d != "" {
				return d
			}
		}
	case fastjson.TypeArray:
		wa, _ := want.Array()
		ga, _ := got.Array()
		if (len(wa) == 0) != (len(ga) == 0) {
			return path + ": emptiness differs"
		}
		for i, g := range ga {
			if d := sameShape(path+"["+string(rune('0'+i%10))+"]", wa[0], g); d != "" {
				return d
			}
		}
	}
	return ""
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compareJSON(t *testing.T, name string, want, got []byte) {
	t.Helper()
	var pw, pg fastjson.Parser
	wv, err := pw.ParseBytes(want)
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	gv, err := pg.ParseBytes(got)
	if err != nil {
		t.Fatalf("got invalid JSON %q: %v", got, err)
	}
	if d := sameShape("$", wv, gv); d != "" {
		t.Errorf("%s: %s\n got: %s\nwant: %s", name, d, got, want)
	}
}

func TestShapesMatchFixtures(t *testing.T) {
	t.Parallel()
	const (
		llama  = "meta-llama/Llama-3.1-8B-Instruct"
		hello  = `"messages":[{"role":"user","content":"Say hello"}]`
		prompt = `"prompt":"The capital of France is"`
	)
	tests := []struct {
		name    string
		flavor  string
		model   string
		tokens  int
		method  string
		path    string
		body    string
		headers []string
		status  int
		fixture string
	}{
		{"vllm chat", "vllm", llama, 10, "POST", "/v1/chat/completions", `{"model":"` + llama + `",` + hello + `}`, nil, 200, "vllm_chat.json"},
		{"vllm chat stream", "vllm", llama, 2, "POST", "/v1/chat/completions", `{"model":"` + llama + `",` + hello + `,"stream":true}`, nil, 200, "vllm_chat_stream.txt"},
		{"vllm chat stream usage length", "vllm", llama, 5, "POST", "/v1/chat/completions", `{"model":"` + llama + `",` + hello + `,"stream":true,"max_tokens":2,"stream_options":{"include_usage":true}}`, nil, 200, "vllm_chat_stream_usage.txt"},
		{"vllm completion", "vllm", llama, 32, "POST", "/v1/completions", `{"model":"` + llama + `",` + prompt + `,"max_tokens":7}`, nil, 200, "vllm_completion.json"},
		{"vllm completion stream usage", "vllm", llama, 2, "POST", "/v1/completions", `{"model":"` + llama + `",` + prompt + `,"stream":true,"stream_options":{"include_usage":true}}`, nil, 200, "vllm_completion_stream_usage.txt"},
		{"vllm embeddings", "vllm", "intfloat/e5-small-v2", 0, "POST", "/v1/embeddings", `{"model":"intfloat/e5-small-v2","input":"query: how are you"}`, nil, 200, "vllm_embeddings.json"},
		{"vllm models", "vllm", llama, 0, "GET", "/v1/models", "", nil, 200, "vllm_models.json"},
		{"vllm version", "vllm", llama, 0, "GET", "/version", "", nil, 200, "vllm_version.json"},
		{"vllm unknown model", "vllm", llama, 0, "POST", "/v1/chat/completions", `{"model":"gpt-4",` + hello + `}`, nil, 404, "vllm_error.json"},
		{"vllm missing messages", "vllm", llama, 0, "POST", "/v1/chat/completions", `{"model":"` + llama + `"}`, nil, 400, "vllm_error_validation.json"},
		{"vllm stream error", "vllm", llama, 3, "POST", "/v1/chat/completions", `{"model":"` + llama + `",` + hello + `,"stream":true}`, []string{"X-Fakellm-Stream-Error-After", "1"}, 200, "vllm_stream_error.txt"},

		{"ollama chat", "ollama", "llama3.2:latest", 10, "POST", "/v1/chat/completions", `{"model":"llama3.2",` + hello + `}`, nil, 200, "ollama_chat.json"},
		{"ollama chat stream", "ollama", "llama3.2:latest", 2, "POST", "/v1/chat/completions", `{"model":"llama3.2",` + hello + `,"stream":true}`, nil, 200, "ollama_chat_stream.txt"},
		{"ollama chat stream usage", "ollama", "llama3.2:latest", 2, "POST", "/v1/chat/completions", `{"model":"llama3.2",` + hello + `,"stream":true,"stream_options":{"include_usage":true}}`, nil, 200, "ollama_chat_stream_usage.txt"},
		{"ollama completion", "ollama", "llama3.2:latest", 8, "POST", "/v1/completions", `{"model":"llama3.2",` + prompt + `}`, nil, 200, "ollama_completion.json"},
		{"ollama completion stream usage", "ollama", "llama3.2:latest", 2, "POST", "/v1/completions", `{"model":"llama3.2",` + prompt + `,"stream":true,"stream_options":{"include_usage":true}}`, nil, 200, "ollama_completion_stream_usage.txt"},
		{"ollama embeddings", "ollama", "all-minilm", 0, "POST", "/v1/embeddings", `{"model":"all-minilm","input":["how are you"]}`, nil, 200, "ollama_embeddings.json"},
		{"ollama models", "ollama", "llama3.2:latest", 0, "GET", "/v1/models", "", nil, 200, "ollama_models.json"},
		{"ollama tags", "ollama", "llama3.2:latest", 0, "GET", "/api/tags", "", nil, 200, "ollama_tags.json"},
		{"ollama version", "ollama", "llama3.2:latest", 0, "GET", "/api/version", "", nil, 200, "ollama_version.json"},
		{"ollama unknown model", "ollama", "llama3.2:latest", 0, "POST", "/v1/chat/completions", `{"model":"gpt-4",` + hello + `}`, nil, 404, "ollama_error.json"},
		{"ollama stream error", "ollama", "llama3.2:latest", 3, "POST", "/v1/chat/completions", `{"model":"llama3.2",` + hello + `,"stream":true}`, []string{"X-Fakellm-Stream-Error-After", "1"}, 200, "ollama_stream_error.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: tt.model, OutputTokens: tt.tokens, Seed: 7})
			res := h.do(t, tt.method, tt.path, tt.body, tt.headers...)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.status, tt.status, res.body)
			}
			want := fixture(t, tt.fixture)
			if !strings.HasSuffix(tt.fixture, ".txt") {
				compareJSON(t, tt.fixture, want, res.body)
				return
			}
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Errorf("Content-Type %q", ct)
			}
			we, ge := events(t, want), events(t, res.body)
			if len(we) != len(ge) {
				t.Fatalf("%d events, want %d:\n%s", len(ge), len(we), res.body)
			}
			for i := range we {
				if bytes.Equal(we[i], []byte("[DONE]")) || bytes.Equal(ge[i], []byte("[DONE]")) {
					if !bytes.Equal(we[i], ge[i]) {
						t.Errorf("event %d: %s, want %s", i, ge[i], we[i])
					}
					continue
				}
				compareJSON(t, tt.fixture+" event "+string(rune('0'+i)), we[i], ge[i])
			}
		})
	}
}
