package fakellm

import (
	"fmt"
	"testing"

	"github.com/valyala/fastjson"
)

// chunkUsage is one choice chunk of a stream with continuous usage.
type chunkUsage struct {
	index, prompt, completion int
	hasUsage                  bool
}

// continuousUsage returns each choice chunk's usage, failing if a chunk's
// usage is not the key right after choices (UsageInfo's place in vLLM's
// ChatCompletionStreamResponse and CompletionStreamResponse), and the
// completion_tokens of the final usage chunk (-1 if none).
func continuousUsage(t *testing.T, body []byte) (chunks []chunkUsage, final int) {
	t.Helper()
	final = -1
	for _, ev := range events(t, body) {
		if string(ev) == "[DONE]" {
			continue
		}
		v := mustJSON(t, ev)
		if cs := v.GetArray("choices"); len(cs) == 0 {
			final = v.GetInt("usage", "completion_tokens")
			continue
		}
		var keys []string
		o, _ := v.Object()
		o.Visit(func(k []byte, _ *fastjson.Value) { keys = append(keys, string(k)) })
		u := v.Get("usage")
		if u != nil && (len(keys) < 6 || keys[5] != "usage") {
			t.Errorf("usage is not the key after choices: %s", ev)
		}
		c := chunkUsage{index: v.GetInt("choices", "0", "index"), hasUsage: u != nil}
		if u != nil {
			c.prompt, c.completion = u.GetInt("prompt_tokens"), u.GetInt("completion_tokens")
			if u.GetInt("total_tokens") != c.prompt+c.completion {
				t.Errorf("total_tokens is not prompt+completion: %s", ev)
			}
		}
		chunks = append(chunks, c)
	}
	return chunks, final
}

// vLLM's stream_options.continuous_usage_stats puts the running usage of
// the chunk's choice on every chunk, when include_usage is on too.
func TestContinuousUsageStats(t *testing.T) {
	t.Parallel()
	const cont = `"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}`
	t.Run("vllm chat", func(t *testing.T) {
		t.Parallel()
		h := start(t, Options{Model: "m", OutputTokens: 3})
		chunks, final := continuousUsage(t, h.do(t, "POST", "/v1/chat/completions", chatWith(`"n":2,`+cont)).body)
		// Per choice: role (0 tokens), three tokens (1, 2, 3), finish (4: the EOS token, as
		// previous_num_tokens in chat_completion_stream_generator counts it).
		want := map[int][]int{0: {0, 1, 2, 3, 4}, 1: {0, 1, 2, 3, 4}}
		got := map[int][]int{}
		for _, c := range chunks {
			if !c.hasUsage || c.prompt != 6 {
				t.Fatalf("chunk without the prompt's usage: %+v", c)
			}
			got[c.index] = append(got[c.index], c.completion)
		}
		for i := range want {
			if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
				t.Errorf("choice %d completion_tokens per chunk %v, want %v", i, got[i], want[i])
			}
		}
		if final != 8 {
			t.Errorf("final usage completion_tokens %d, want 8", final)
		}
	})
	t.Run("vllm completion prompts", func(t *testing.T) {
		t.Parallel()
		h := start(t, Options{Model: "m", OutputTokens: 2})
		chunks, _ := continuousUsage(t, h.do(t, "POST", "/v1/completions", `{"model":"m","prompt":["a b","c d e"],`+cont+`}`).body)
		for _, c := range chunks {
			if wantPrompt := []int{2, 3}[c.index]; !c.hasUsage || c.prompt != wantPrompt {
				t.Errorf("choice %d chunk: %+v, want prompt_tokens %d", c.index, c, wantPrompt)
			}
		}
	})
	for _, tt := range []struct{ name, flavor, opts string }{
		{"vllm without include_usage", "vllm", `"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}`},
		{"ollama", "ollama", cont},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m", OutputTokens: 2})
			chunks, _ := continuousUsage(t, h.do(t, "POST", "/v1/chat/completions", chatWith(tt.opts)).body)
			for _, c := range chunks {
				if c.hasUsage {
					t.Errorf("choice chunk carries usage: %+v", c)
				}
			}
		})
	}
}
