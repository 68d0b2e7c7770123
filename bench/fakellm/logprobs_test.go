package fakellm

import (
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// choiceLogprobs is what a choice (buffered, or gathered over a stream's chunks) says: its
// text, and the tokens, text offsets (completions only) and alternatives per token of its
// logprobs; asked is false when logprobs is null.
type choiceLogprobs struct {
	text                  string
	tokens                []string
	offsets, alternatives []int
	asked                 bool
}

// add reads choice c, of a buffered answer or of one chunk, into l.
func (l *choiceLogprobs) add(t *testing.T, c *fastjson.Value) {
	t.Helper()
	l.text += string(c.GetStringBytes("message", "content")) + string(c.GetStringBytes("delta", "content")) + string(c.GetStringBytes("text"))
	lp := c.Get("logprobs")
	if lp == nil || lp.Type() == fastjson.TypeNull {
		return
	}
	l.asked = true
	if content := lp.Get("content"); content != nil { // chat
		for _, e := range content.GetArray() {
			tok := string(e.GetStringBytes("token"))
			var b []byte
			for _, v := range e.GetArray("bytes") {
				b = append(b, byte(v.GetInt()))
			}
			if tok != string(b) || e.GetFloat64("logprob") >= 0 {
				t.Errorf("chat logprob %s: want its token's bytes and a negative logprob", e)
			}
			l.tokens = append(l.tokens, tok)
			l.alternatives = append(l.alternatives, len(e.GetArray("top_logprobs")))
		}
		return
	}
	for i, tok := range lp.GetArray("tokens") {
		n := strconv.Itoa(i)
		l.tokens = append(l.tokens, string(tok.GetStringBytes()))
		l.offsets = append(l.offsets, lp.GetInt("text_offset", n))
		top, _ := lp.Get("top_logprobs", n).Object()
		l.alternatives = append(l.alternatives, top.Len())
		if lp.GetFloat64("token_logprobs", n) >= 0 {
			t.Errorf("completion logprobs %s: want negative logprobs", lp)
		}
	}
}

// vLLM returns logprobs when asked (chat logprobs with top_logprobs alternatives, completions
// logprobs alternatives, at least the sampled token), buffered and in every token chunk of a
// stream; fakellm answered logprobs: null whatever the request, so a gateway that dropped or
// mangled them passed its tests. Ollama's flavor still answers null.
func TestLogprobs(t *testing.T) {
	t.Parallel()
	const chat = `{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2`
	const completion = `{"model":"m","prompt":"say hi","n":2`
	const tokens = 4
	tests := []struct {
		name, flavor, path, body string
		alternatives             int // per token; -1: logprobs null
		echo                     int // length of the prompt the text starts with
	}{
		{"chat", "vllm", "/v1/chat/completions", chat + `,"logprobs":true,"top_logprobs":3`, 3, 0},
		{"chat without top_logprobs", "vllm", "/v1/chat/completions", chat + `,"logprobs":true`, 0, 0},
		{"chat not asked", "vllm", "/v1/chat/completions", chat + `,"top_logprobs":null`, -1, 0},
		{"completion", "vllm", "/v1/completions", completion + `,"logprobs":2`, 2, 0},
		{"completion logprobs 0", "vllm", "/v1/completions", completion + `,"logprobs":0`, 1, 0},
		{"completion echoed", "vllm", "/v1/completions", completion + `,"logprobs":1,"echo":true`, 1, len("say hi")},
		{"completion not asked", "vllm", "/v1/completions", completion + `,"logprobs":null`, -1, 0},
		{"ollama chat", "ollama", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":3`, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m", OutputTokens: tokens, Seed: 7})
			check := func(how string, l *choiceLogprobs) {
				t.Helper()
				if l.asked != (tt.alternatives >= 0) {
					t.Fatalf("%s: logprobs given %v, want %v", how, l.asked, tt.alternatives >= 0)
				}
				if !l.asked {
					return
				}
				if got := strings.Join(l.tokens, ""); got != l.text[tt.echo:] || len(l.tokens) != tokens {
					t.Errorf("%s: logprobs tokens %q, want the %d of %q", how, l.tokens, tokens, l.text[tt.echo:])
				}
				for i, tok := range l.tokens {
					if l.alternatives[i] != tt.alternatives {
						t.Errorf("%s: token %d has %d alternatives, want %d", how, i, l.alternatives[i], tt.alternatives)
					}
					if l.offsets != nil && (l.offsets[i]+len(tok) > len(l.text) || l.text[l.offsets[i]:l.offsets[i]+len(tok)] != tok) {
						t.Errorf("%s: text_offset %d of %q is not where it is in %q", how, l.offsets[i], tok, l.text)
					}
				}
			}
			res := h.do(t, "POST", tt.path, tt.body+`}`)
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			choices := mustJSON(t, res.body).GetArray("choices")
			buffered := make([]choiceLogprobs, len(choices))
			for i, c := range choices {
				buffered[i].add(t, c)
				check("buffered", &buffered[i])
			}
			streamed := make([]choiceLogprobs, len(choices))
			for _, ev := range events(t, h.do(t, "POST", tt.path, tt.body+`,"stream":true}`).body) {
				if string(ev) == "[DONE]" {
					continue
				}
				for _, c := range mustJSON(t, ev).GetArray("choices") {
					i := c.GetInt("index")
					if i >= len(streamed) {
						t.Fatalf("stream: choice %d of %d: %s", i, len(streamed), ev)
					}
					streamed[i].add(t, c)
					if lp := c.Get("logprobs"); tt.alternatives >= 0 && lp.Type() == fastjson.TypeNull && c.Get("delta", "role") == nil {
						t.Errorf("stream: a chunk without logprobs: %s", ev)
					}
				}
			}
			for i := range streamed {
				if streamed[i].text != buffered[i].text {
					t.Errorf("stream: choice %d %q differs from the buffered %q", i, streamed[i].text, buffered[i].text)
				}
				check("stream", &streamed[i])
			}
		})
	}
}
