package gateway_test

import (
	"strings"
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

// A completions prompt or an embeddings input of token ids, vLLM's prompt_embeds and its
// embeddings of a conversation (messages) are prompts the prompt guard does not read: on a model whose guard checks prompts it is refused, naming the field, instead of
// reaching the model unchecked; text, in a string or an array, is checked as before.
func TestGuardRefusesTokenIDPrompts(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{
		PII:    config.PIIGuard{Prompt: "redact"},
		Safety: config.SafetyGuard{Prompt: "block"},
	}, f.backend())))
	for _, tc := range []struct {
		path, body string
		param      string // refused naming it; "" when served
	}{
		{"/v1/completions", `"prompt":[9125,682,3766,11470]`, "prompt"},
		{"/v1/completions", `"prompt":[[9125,682],[3766]]`, "prompt"},
		{"/v1/embeddings", `"input":[9125,682,3766,11470]`, "input"},
		{"/v1/embeddings", `"input":[[9125,682],[3766]]`, "input"},
		{"/v1/embeddings", `"input":["hi",[3766]]`, "input"},
		{"/v1/completions", `"prompt":"hi","prompt_embeds":"AAAA"`, "prompt_embeds"},
		{"/v1/embeddings", `"messages":[{"role":"user","content":"hi"}]`, "messages"},
		{"/v1/completions", `"prompt":["hi","yo"]`, ""},
		{"/v1/embeddings", `"input":"hi"`, ""},
	} {
		res := g.do(t, "POST", tc.path, `{"model":"chat",`+tc.body+`}`)
		if tc.param == "" {
			if res.status != 200 {
				t.Errorf("%s %s: status %d %s, want 200", tc.path, tc.body, res.status, res.body)
			}
			continue
		}
		if _, param, code := envelope(t, res.body); res.status != 400 || param != tc.param || code != "unsupported_parameter" || !strings.Contains(string(res.body), "guard") {
			t.Errorf("%s %s: status %d %s, want 400 unsupported_parameter naming %q and the guard", tc.path, tc.body, res.status, res.body, tc.param)
		}
	}
	if got := f.Requests(); got != 2 {
		t.Errorf("the backend got %d requests, want 2 (the text ones)", got)
	}
}
