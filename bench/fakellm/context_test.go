package fakellm

import (
	"strconv"
	"strings"
	"testing"
)

// vLLM refuses a request whose prompt and output tokens do not fit
// max_model_len (vllm/renderers/params.py TokenizeParams: __post_init__ and
// _token_len_check raise VLLMValidationError, a 400 BadRequestError whose
// param is the error's parameter). The messages are the ones vLLM 0.18 and
// later write, e.g. as logged by a client:
//
//	{"error":{"message":"This model's maximum context length is 16384 tokens. However, you requested 8192
//	output tokens and your prompt contains at least 8193 input tokens, for a total of at least 16385 tokens.
//	Please reduce the length of the input prompt or the number of requested output tokens.
//	(parameter=input_tokens, value=8193)","type":"BadRequestError","param":"input_tokens","code":400}}
//
// Ollama truncates such a prompt instead (num_ctx), so it answers.
func TestContextLengthExceeded(t *testing.T) {
	t.Parallel()
	words := func(n int) string { return strings.TrimSpace(strings.Repeat("w ", n)) }
	ids := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("7,", n), ",") + "]" }
	chat := func(n int, extra string) string {
		return `{"model":"m","messages":[{"role":"user","content":"` + words(n) + `"}]` + extra + `}`
	}
	const over = "This model's maximum context length is 8192 tokens. However, you requested "
	tests := []struct {
		name, flavor, path, body string
		param, msg               string // want; 200 when param is ""
	}{
		{"chat fits", "vllm", "/v1/chat/completions", chat(8192, ""), "", ""},
		{"chat prompt too long", "vllm", "/v1/chat/completions", chat(8193, ""), "input_tokens",
			over + "0 output tokens and your prompt contains at least 8193 input tokens, for a total of at least 8193 tokens. " +
				"Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=8193)"},
		{"chat prompt and max_tokens", "vllm", "/v1/chat/completions", chat(8000, `,"max_tokens":500`), "input_tokens",
			over + "500 output tokens and your prompt contains at least 7693 input tokens, for a total of at least 8193 tokens. " +
				"Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=7693)"},
		{"chat fits with max_tokens", "vllm", "/v1/chat/completions", chat(8000, `,"max_tokens":192`), "", ""},
		{"max_tokens past max_model_len", "vllm", "/v1/chat/completions", chat(1, `,"max_tokens":9000`), "max_tokens",
			"max_tokens=9000cannot be greater than max_model_len=max_total_tokens=8192. Please request fewer output tokens. (parameter=max_tokens, value=9000)"},
		{"max_completion_tokens past max_model_len", "vllm", "/v1/chat/completions", chat(1, `,"max_tokens":5,"max_completion_tokens":9000`), "max_completion_tokens",
			"max_completion_tokens=9000cannot be greater than max_model_len=max_total_tokens=8192. Please request fewer output tokens. (parameter=max_completion_tokens, value=9000)"},
		// Completions budget vLLM's default max_tokens of 16.
		{"completion default budget", "vllm", "/v1/completions", `{"model":"m","prompt":"` + words(8177) + `"}`, "input_tokens",
			over + "16 output tokens and your prompt contains at least 8177 input tokens, for a total of at least 8193 tokens. " +
				"Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=8177)"},
		// Token ids are not truncated: vLLM counts them all.
		{"completion token ids", "vllm", "/v1/completions", `{"model":"m","prompt":` + ids(9000) + `,"max_tokens":8}`, "input_tokens",
			over + "8 output tokens and your prompt contains 9000 input tokens, for a total of 9008 tokens. " +
				"Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=9000)"},
		{"ollama truncates", "ollama", "/v1/chat/completions", chat(9000, `,"max_tokens":4`), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, Options{Flavor: tt.flavor, Model: "m", OutputTokens: 4})
			res := h.do(t, "POST", tt.path, tt.body)
			if tt.param == "" {
				if res.status != 200 {
					t.Errorf("status %d, want 200: %.300s", res.status, res.body)
				}
				return
			}
			e := mustJSON(t, res.body).Get("error")
			if res.status != 400 || e == nil || string(e.GetStringBytes("type")) != "BadRequestError" ||
				e.Get("param").String() != strconv.Quote(tt.param) || e.GetInt("code") != 400 ||
				string(e.GetStringBytes("message")) != tt.msg {
				t.Errorf("got %d %s\nwant 400 BadRequestError param %q: %q", res.status, res.body, tt.param, tt.msg)
			}
		})
	}
}

// vLLM's OpenAIServingCompletion.create_completion refuses a completions
// suffix ("suffix is not currently supported", a 400 BadRequestError with
// param null) after checking the model; Ollama takes it.
func TestCompletionSuffix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		flavor, body string
		status       int
	}{
		{"vllm", `{"model":"m","prompt":"def f(","suffix":"return x"}`, 400},
		{"vllm", `{"model":"m","prompt":"def f(","suffix":null}`, 200},
		{"vllm", `{"model":"other","prompt":"def f(","suffix":"return x"}`, 404},
		{"ollama", `{"model":"m","prompt":"def f(","suffix":"return x"}`, 200},
	} {
		h := start(t, Options{Flavor: tt.flavor, Model: "m", OutputTokens: 4})
		res := h.do(t, "POST", "/v1/completions", tt.body)
		if res.status != tt.status {
			t.Errorf("%s %s: status %d, want %d: %s", tt.flavor, tt.body, res.status, tt.status, res.body)
			continue
		}
		if tt.status != 400 {
			continue
		}
		const want = `{"error":{"message":"suffix is not currently supported","type":"BadRequestError","param":null,"code":400}}`
		if string(res.body) != want {
			t.Errorf("%s %s: body %s, want %s", tt.flavor, tt.body, res.body, want)
		}
	}
}
