package gateway_test

import (
	"strings"
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

// A value found by its context in one message and bare in another reaches the backend in
// neither, whatever the prompt action: hashed or masked where it is bare too.
func TestPrivacyKnownValueEveryAction(t *testing.T) {
	for _, action := range []string{"redact", "hash", "mask"} {
		f := startFake(t, fakellm.Options{})
		g := startGateway(t, newConfig(t, nil, guarded(config.Guard{PII: config.PIIGuard{Prompt: action}}, f.backend())))
		body := `{"model":"chat","messages":[{"role":"user","content":"my phone number is 4155550132"},{"role":"user","content":"again 4155550132 ok"}]}`
		res := g.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-Echo", "1")
		if got := string(receivedBody(t, res.header)); strings.Contains(got, "4155550132") {
			t.Errorf("%s: the backend saw the phone number: %s", action, got)
		}
	}
}
