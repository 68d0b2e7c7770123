package fakellm

import (
	"strconv"
	"strings"
	"testing"
)

// choiceTexts returns the text of each choice of a buffered chat or
// completion body, by index, failing unless the indices are 0..len-1.
func choiceTexts(t *testing.T, body []byte) []string {
	t.Helper()
	v := mustJSON(t, body)
	var out []string
	for i, c := range v.GetArray("choices") {
		if got := c.GetInt("index"); got != i {
			t.Fatalf("choice %d has index %d: %s", i, got, body)
		}
		out = append(out, string(c.GetStringBytes("message", "content"))+string(c.GetStringBytes("text")))
	}
	return out
}

// streamChoices splits an SSE body by choice index: the text of each choice,
// and how many role and finish chunks each got. It fails on a chunk that
// carries more than one choice, which vLLM never sends.
func streamChoices(t *testing.T, body []byte) (texts map[int]string, roles, finishes map[int]int, completionTokens int) {
	t.Helper()
	texts, roles, finishes = map[int]string{}, map[int]int{}, map[int]int{}
	completionTokens = -1
	for _, ev := range events(t, body) {
		if string(ev) == "[DONE]" {
			continue
		}
		v := mustJSON(t, ev)
		cs := v.GetArray("choices")
		if len(cs) == 0 {
			completionTokens = v.GetInt("usage", "completion_tokens")
			continue
		}
		if len(cs) != 1 {
			t.Fatalf("chunk with %d choices: %s", len(cs), ev)
		}
		c := cs[0]
		i := c.GetInt("index")
		texts[i] += string(c.GetStringBytes("delta", "content")) + string(c.GetStringBytes("text"))
		if c.Get("delta", "role") != nil {
			roles[i]++
		}
		if f := c.Get("finish_reason"); f != nil && f.String() != "null" {
			finishes[i]++
		}
	}
	return texts, roles, finishes, completionTokens
}

// vLLM returns n choices, buffered and streamed, and counts all their
// tokens in usage; Ollama's OpenAI layer has no n and answers one choice.
func TestNChoices(t *testing.T) {
	t.Parallel()
	const tokens, n = 5, 3
	tests := []struct {
		name, flavor, path, body string
		choices                  int
	}{
		{"vllm chat", "vllm", "/v1/chat/completions", chatBody, n},
		{"vllm chat capped", "vllm", "/v1/chat/completions", chatWith(`"max_tokens":2`), n},
		{"vllm completion", "vllm", "/v1/completions", `{"model":"m","prompt":"once upon a time","max_tokens":100}`, n},
		{"ollama chat", "ollama", "/v1/chat/completions", chatBody, 1},
		{"ollama completion", "ollama", "/v1/completions", `{"model":"m","prompt":"once upon a time"}`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m", OutputTokens: tokens, Seed: 5})
			withN := strings.TrimSuffix(tt.body, "}") + `,"n":` + strconv.Itoa(n) + `}`

			single := choiceTexts(t, h.do(t, "POST", tt.path, tt.body).body)
			res := h.do(t, "POST", tt.path, withN)
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			texts := choiceTexts(t, res.body)
			if len(texts) != tt.choices {
				t.Fatalf("%d choices, want %d: %s", len(texts), tt.choices, res.body)
			}
			if texts[0] != single[0] {
				t.Errorf("choice 0 %q differs from the n=1 answer %q", texts[0], single[0])
			}
			perChoice := len(strings.Fields(texts[0]))
			for i := 1; i < len(texts); i++ {
				if texts[i] == texts[0] || len(strings.Fields(texts[i])) != perChoice {
					t.Errorf("choice %d %q: want a different sample of %d words than %q", i, texts[i], perChoice, texts[0])
				}
			}
			v := mustJSON(t, res.body)
			if string(v.GetStringBytes("choices", "0", "finish_reason")) == "stop" {
				perChoice++ // usage counts the EOS token of a natural stop (reply.generated)
			}
			if got, want := v.GetInt("usage", "completion_tokens"), perChoice*tt.choices; got != want {
				t.Errorf("usage.completion_tokens %d, want %d", got, want)
			}

			stream := strings.TrimSuffix(withN, "}") + `,"stream":true,"stream_options":{"include_usage":true}}`
			res = h.do(t, "POST", tt.path, stream)
			st, roles, finishes, completion := streamChoices(t, res.body)
			if len(st) != tt.choices {
				t.Fatalf("stream has %d choice indices, want %d: %s", len(st), tt.choices, res.body)
			}
			for i, want := range texts {
				if st[i] != want {
					t.Errorf("stream choice %d text %q, want the buffered %q", i, st[i], want)
				}
				if finishes[i] != 1 {
					t.Errorf("stream choice %d has %d finish chunks, want 1", i, finishes[i])
				}
				if wantRoles := map[bool]int{true: 1, false: 0}[tt.flavor == "vllm" && tt.path == "/v1/chat/completions"]; tt.flavor == "vllm" && roles[i] != wantRoles {
					t.Errorf("stream choice %d has %d role chunks, want %d", i, roles[i], wantRoles)
				}
			}
			if want := perChoice * tt.choices; completion != want {
				t.Errorf("stream usage completion_tokens %d, want %d", completion, want)
			}
		})
	}
}

// vLLM's SamplingParams checks on n, max_tokens and greedy sampling.
func TestSamplingParamErrors(t *testing.T) {
	t.Parallel()
	const completion = `{"model":"m","prompt":"hi",`
	tests := []struct {
		name, path, body string
		typ, param, msg  string // want; status 200 when typ is ""
	}{
		{"n zero", "/v1/chat/completions", chatWith(`"n":0`), "BadRequestError", "null", "n must be at least 1, got 0."},
		{"n zero completion", "/v1/completions", completion + `"n":0}`, "BadRequestError", "null", "n must be at least 1, got 0."},
		{"n too large", "/v1/chat/completions", chatWith(`"n":16385`), "BadRequestError", "null",
			"n must be at most 16384, got 16385. To increase this limit, set the VLLM_MAX_N_SEQUENCES environment variable."},
		{"n not an int", "/v1/chat/completions", chatWith(`"n":"two"`), "Bad Request", `"body.n"`, ""},
		{"n null", "/v1/chat/completions", chatWith(`"n":null`), "", "", ""},
		{"max_tokens zero", "/v1/chat/completions", chatWith(`"max_tokens":0`), "BadRequestError", `"max_tokens"`,
			"max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"},
		{"max_completion_tokens zero wins", "/v1/chat/completions", chatWith(`"max_tokens":5,"max_completion_tokens":0`), "BadRequestError", `"max_tokens"`,
			"max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"},
		{"max_tokens negative completion", "/v1/completions", completion + `"max_tokens":-3}`, "BadRequestError", `"max_tokens"`,
			"max_tokens must be at least 1, got -3. (parameter=max_tokens, value=-3)"},
		{"greedy n", "/v1/chat/completions", chatWith(`"n":2,"temperature":0`), "BadRequestError", "null", "n must be 1 when using greedy sampling, got 2."},
		{"greedy single", "/v1/chat/completions", chatWith(`"n":1,"temperature":0`), "", "", ""},
		{"sampled n", "/v1/completions", completion + `"n":2,"temperature":0.7}`, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Model: "m"})
			res := h.do(t, "POST", tt.path, tt.body)
			if tt.typ == "" {
				if res.status != 200 {
					t.Errorf("status %d, want 200: %s", res.status, res.body)
				}
				return
			}
			e := mustJSON(t, res.body).Get("error")
			if res.status != 400 || e == nil || string(e.GetStringBytes("type")) != tt.typ || e.Get("param").String() != tt.param ||
				(tt.msg != "" && string(e.GetStringBytes("message")) != tt.msg) || e.GetInt("code") != 400 {
				t.Errorf("got %d %s\nwant 400 %s param %s %q", res.status, res.body, tt.typ, tt.param, tt.msg)
			}
		})
	}
}

// vLLM answers a list of prompts with n choices per prompt, numbered from
// prompt*n, and reads token-id prompts as one prompt token per id.
func TestCompletionPromptLists(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Model: "m", OutputTokens: 4, Seed: 5})
	complete := func(prompt string, extra string) ([]string, int) {
		t.Helper()
		res := h.do(t, "POST", "/v1/completions", `{"model":"m","prompt":`+prompt+extra+`}`)
		if res.status != 200 {
			t.Fatalf("prompt %s: %d %s", prompt, res.status, res.body)
		}
		return choiceTexts(t, res.body), mustJSON(t, res.body).GetInt("usage", "prompt_tokens")
	}
	a, _ := complete(`"one two"`, "")
	b, _ := complete(`"three four five"`, "")
	aN, _ := complete(`"one two"`, `,"n":2`)
	got, promptTokens := complete(`["one two","three four five"]`, `,"n":2`)
	if len(got) != 4 || got[0] != a[0] || got[1] != aN[1] || got[2] != b[0] || promptTokens != 5 {
		t.Errorf("two prompts, n=2: %q, prompt_tokens %d; want [%q %q %q ...], 5", got, promptTokens, a[0], aN[1], b[0])
	}
	res := h.do(t, "POST", "/v1/completions", `{"model":"m","prompt":["one two","three four five"],"n":2,"stream":true}`)
	texts, _, finishes, _ := streamChoices(t, res.body)
	for i, want := range got {
		if texts[i] != want || finishes[i] != 1 {
			t.Errorf("stream choice %d: %q with %d finish chunks, want %q and 1", i, texts[i], finishes[i], want)
		}
	}

	ids, promptTokens := complete(`[1,2,3]`, "")
	if len(ids) != 1 || promptTokens != 3 {
		t.Errorf("token prompt: %d choices, prompt_tokens %d; want 1 and 3", len(ids), promptTokens)
	}
	other, _ := complete(`[1,2,4]`, "")
	batch, promptTokens := complete(`[[1,2,3],[1,2,4]]`, "")
	if ids[0] == other[0] || len(batch) != 2 || batch[0] != ids[0] || batch[1] != other[0] || promptTokens != 6 {
		t.Errorf("token prompts: %q %q batch %q prompt_tokens %d", ids, other, batch, promptTokens)
	}

	for _, bad := range []string{`["a",[1]]`, `[1,"a"]`, `[[]]`, `[{"a":1}]`} {
		res := h.do(t, "POST", "/v1/completions", `{"model":"m","prompt":`+bad+`}`)
		if e := mustJSON(t, res.body).Get("error"); res.status != 400 || e == nil {
			t.Errorf("prompt %s: %d %s, want a 400 error", bad, res.status, res.body)
		}
	}
}
