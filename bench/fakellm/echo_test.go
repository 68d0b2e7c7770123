package fakellm

import (
	"strings"
	"testing"
)

// vLLM's completions with echo return each choice's prompt before its text, buffered and
// streamed (with the choice's first token); Ollama's
// CompletionRequest has no echo and ignores it. fakellm ignored it in both flavors, so a
// gateway that lost the prompt of an echoed answer passed its tests.
func TestCompletionEcho(t *testing.T) {
	t.Parallel()
	prompts := []string{`say "hi"`, "tell me\na story"}
	const body = `{"model":"m","prompt":["say \"hi\"","tell me\na story"],"n":2`
	tests := []struct {
		name, flavor, extra string
		echoed              bool
	}{
		{"vllm", "vllm", `,"max_tokens":3`, true},
		{"vllm capped at 1", "vllm", `,"max_tokens":1`, true},
		{"ollama", "ollama", `,"max_tokens":3`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m", Seed: 3})
			req := body + tt.extra
			if tt.flavor == "ollama" {
				req = `{"model":"m","prompt":"say \"hi\""` + tt.extra // one string prompt, no n
			}
			plain := choiceTexts(t, h.do(t, "POST", "/v1/completions", req+`}`).body)
			res := h.do(t, "POST", "/v1/completions", req+`,"echo":true}`)
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			echoed := choiceTexts(t, res.body)
			if len(echoed) != len(plain) {
				t.Fatalf("%d choices with echo, %d without", len(echoed), len(plain))
			}
			for i := range echoed {
				want := plain[i]
				if tt.echoed {
					want = prompts[i/2] + plain[i]
				}
				if echoed[i] != want {
					t.Errorf("choice %d: %q, want %q", i, echoed[i], want)
				}
			}
			stream := h.do(t, "POST", "/v1/completions", req+`,"echo":true,"stream":true}`)
			texts, _, _, _ := streamChoices(t, stream.body)
			for i := range echoed {
				if texts[i] != echoed[i] {
					t.Errorf("streamed choice %d: %q, want %q as buffered", i, texts[i], echoed[i])
				}
			}
			if tt.echoed && strings.Contains(string(stream.body), `"text":"`+`say \"hi\"`+`","logprobs":null,"finish_reason":null`) {
				t.Errorf("the prompt came in a chunk of its own, not with the first token: %s", stream.body)
			}
		})
	}
}
