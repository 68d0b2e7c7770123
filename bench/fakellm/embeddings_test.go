package fakellm

import (
	"math"
	"testing"
)

// embeddingsOf posts body to /v1/embeddings and returns each vector as its
// JSON text and usage.prompt_tokens.
func embeddingsOf(t *testing.T, h *harness, body string) (vecs []string, promptTokens int) {
	t.Helper()
	res := h.do(t, "POST", "/v1/embeddings", body)
	if res.status != 200 {
		t.Fatalf("%s: %d %s", body, res.status, res.body)
	}
	v := mustJSON(t, res.body)
	for _, d := range v.GetArray("data") {
		vecs = append(vecs, d.Get("embedding").String())
	}
	return vecs, v.GetInt("usage", "prompt_tokens")
}

// vLLM embeds token-id inputs from their ids and counts one prompt token
// per id.
func TestEmbeddingTokenInput(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m"})
	one, n := embeddingsOf(t, h, `{"model":"m","input":[1,2,3]}`)
	if len(one) != 1 || n != 3 {
		t.Fatalf("[1,2,3]: %d vectors, prompt_tokens %d; want 1 and 3", len(one), n)
	}
	batch, n := embeddingsOf(t, h, `{"model":"m","input":[[1,2,3],[3,2,1],[1,2,3,4]]}`)
	if len(batch) != 3 || n != 10 {
		t.Fatalf("batch: %d vectors, prompt_tokens %d; want 3 and 10", len(batch), n)
	}
	if batch[0] != one[0] {
		t.Errorf("[[1,2,3]] and [1,2,3] embed differently: %s vs %s", batch[0], one[0])
	}
	if batch[0] == batch[1] || batch[0] == batch[2] || batch[1] == batch[2] {
		t.Errorf("different token arrays share a vector: %v", batch)
	}
	empty, _ := embeddingsOf(t, h, `{"model":"m","input":""}`)
	if empty[0] == one[0] {
		t.Errorf("token ids embed like the empty string")
	}
}

func TestEmbeddingInputErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flavor, input string
		typ, msg      string
	}{
		{"vllm", `["a",1]`, "Bad Request", ""},
		{"vllm", `[[1,"a"]]`, "Bad Request", ""},
		{"vllm", `[1.5]`, "Bad Request", ""},
		{"vllm", `7`, "Bad Request", ""},
		// Ollama's EmbedHandler takes strings only.
		{"ollama", `[1,2,3]`, "invalid_request_error", "invalid input type"},
		{"ollama", `["a",[1]]`, "invalid_request_error", "invalid input type"},
		{"ollama", `7`, "invalid_request_error", "invalid input type"},
	}
	for _, tt := range tests {
		t.Run(tt.flavor+" "+tt.input, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m"})
			res := h.do(t, "POST", "/v1/embeddings", `{"model":"m","input":`+tt.input+`}`)
			e := mustJSON(t, res.body).Get("error")
			if res.status != 400 || e == nil || string(e.GetStringBytes("type")) != tt.typ ||
				(tt.msg != "" && string(e.GetStringBytes("message")) != tt.msg) {
				t.Errorf("got %d %s, want 400 %s %q", res.status, res.body, tt.typ, tt.msg)
			}
		})
	}
}

// floats parses a JSON array of numbers.
func floats(t *testing.T, js string) []float64 {
	t.Helper()
	var out []float64
	for _, x := range mustJSON(t, []byte(js)).GetArray() {
		out = append(out, x.GetFloat64())
	}
	return out
}

// isTruncationOf reports whether short is full's first len(short)
// components rescaled to unit length.
func isTruncationOf(short, full []float64) bool {
	var norm, sum float64
	for i, x := range short {
		norm += full[i] * full[i]
		sum += x * x
	}
	if math.Abs(sum-1) > 1e-5 {
		return false
	}
	norm = math.Sqrt(norm)
	for i, x := range short {
		if math.Abs(x-full[i]/norm) > 1e-5 {
			return false
		}
	}
	return true
}

func TestEmbeddingDimensions(t *testing.T) {
	t.Parallel()
	const in = `{"model":"m","input":"how are you"`
	tests := []struct {
		name       string
		opts       Options
		dimensions string
		status     int
		want       int    // vector length
		msg        string // error message
	}{
		{"vllm refuses without matryoshka", Options{}, "4", 400, 0, `Model "m" does not support matryoshka representation, changing output dimensions will lead to poor results.`},
		{"vllm null is not given", Options{}, "null", 200, 8, ""},
		{"vllm matryoshka truncates", Options{Matryoshka: true}, "4", 200, 4, ""},
		{"vllm matryoshka larger than the model", Options{Matryoshka: true}, "100", 200, 8, ""},
		{"vllm matryoshka zero", Options{Matryoshka: true}, "0", 400, 0, "Dimensions must be greater than 0"},
		{"ollama truncates", Options{Flavor: "ollama"}, "4", 200, 4, ""},
		{"ollama larger than the model", Options{Flavor: "ollama"}, "100", 200, 8, ""},
		{"ollama zero", Options{Flavor: "ollama"}, "0", 200, 8, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Model = "m"
			h := start(t, tt.opts)
			full, _ := embeddingsOf(t, h, in+`}`)
			res := h.do(t, "POST", "/v1/embeddings", in+`,"dimensions":`+tt.dimensions+`}`)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.body)
			}
			v := mustJSON(t, res.body)
			if tt.status != 200 {
				e := v.Get("error")
				if string(e.GetStringBytes("type")) != "BadRequestError" || string(e.GetStringBytes("message")) != tt.msg || e.GetInt("code") != 400 {
					t.Errorf("error %s, want BadRequestError %q", res.body, tt.msg)
				}
				return
			}
			got := floats(t, v.Get("data", "0", "embedding").String())
			if len(got) != tt.want || !isTruncationOf(got, floats(t, full[0])) {
				t.Errorf("embedding %v: want the first %d components of %s, renormalised", got, tt.want, full[0])
			}
		})
	}
}

// vLLM's /v1/embeddings also takes a conversation as messages
// (EmbeddingChatRequest), embedded as one input; Ollama's takes input only.
func TestEmbeddingMessages(t *testing.T) {
	t.Parallel()
	const msgs = `"messages":[{"role":"user","content":"how are you"},{"role":"assistant","content":"fine"}]`
	h := start(t, Options{Model: "m"})
	vecs, n := embeddingsOf(t, h, `{"model":"m",`+msgs+`}`)
	if len(vecs) != 1 || n != 4 {
		t.Fatalf("messages: %d vectors, prompt_tokens %d; want 1 and 4", len(vecs), n)
	}
	if other, _ := embeddingsOf(t, h, `{"model":"m","messages":[{"role":"user","content":"something else"}]}`); other[0] == vecs[0] {
		t.Errorf("two conversations share a vector")
	}
	o := start(t, Options{Flavor: "ollama", Model: "m"})
	res := o.do(t, "POST", "/v1/embeddings", `{"model":"m",`+msgs+`}`)
	if e := mustJSON(t, res.body).Get("error"); res.status != 400 || e == nil || string(e.GetStringBytes("message")) != "invalid input" {
		t.Errorf("ollama: got %d %s, want 400 invalid input", res.status, res.body)
	}
}
