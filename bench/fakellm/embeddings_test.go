package fakellm

import (
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
