package gateway_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// An answer's refusal is the model's text as its content is, buffered or streamed: a leaked
// address in it is rewritten and the request's placeholders are restored, also when both are
// split across stream events. It used to reach the client as the backend wrote it.
func TestGuardRefusal(t *testing.T) {
	const leak = "carol.third@example.net"
	buffered := `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":null,` +
		`"refusal":"I will not mail <EMAIL_ADDRESS_1> nor ` + leak + `"},"finish_reason":"stop"}]}`
	chunk := func(delta, finish string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	streamed := chunk(`{"role":"assistant","content":null,"refusal":"I will not mail <EMAIL_"}`, "null") +
		chunk(`{"refusal":"ADDRESS_1> nor carol.third@exam"}`, "null") +
		chunk(`{"refusal":"ple.net"}`, "null") +
		chunk(`{}`, `"stop"`) + "data: [DONE]\n\n"
	all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	g := answerShapes(t, all, buffered, streamed)
	for _, tt := range shapes {
		res := g.do(t, "POST", "/v1/chat/completions", strings.Replace(chatBody("mail "+testEmail, tt.extra), `"chat"`, `"`+tt.alias+`"`, 1))
		if res.status != 200 {
			t.Fatalf("%s: status %d: %s", tt.shape, res.status, res.body)
		}
		var refusal string
		if tt.stream {
			for _, ev := range events(res.body) {
				var c struct {
					Choices []struct {
						Delta struct{ Refusal string }
					}
				}
				if ev = strings.TrimPrefix(ev, "data: "); ev == "[DONE]" || json.Unmarshal([]byte(ev), &c) != nil {
					continue
				}
				for _, ch := range c.Choices {
					refusal += ch.Delta.Refusal
				}
			}
		} else {
			var c struct {
				Choices []struct {
					Message struct{ Refusal string }
				}
			}
			if err := json.Unmarshal(res.body, &c); err != nil || len(c.Choices) != 1 {
				t.Fatalf("%s: %s (%v)", tt.shape, res.body, err)
			}
			refusal = c.Choices[0].Message.Refusal
		}
		if !strings.HasPrefix(refusal, "I will not mail "+testEmail+" nor ") || strings.Contains(refusal, "carol") {
			t.Errorf("%s: refusal %q, want the address restored and the leak rewritten:\n%s", tt.shape, refusal, res.body)
		}
	}
}
