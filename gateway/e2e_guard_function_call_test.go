package gateway_test

import (
	"encoding/json"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/config"
)

// A legacy function_call (the functions API some OpenAI-compatible servers still stream) is
// guarded as tool call arguments are, buffered or streamed: placeholders restored in valid
// JSON, a leaked address rewritten, also when both are split across stream events.
func TestGuardFunctionCallArguments(t *testing.T) {
	const leak = "carol.third@example.net"
	buffered := `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":null,` +
		`"function_call":{"name":"send","arguments":"{\"to\":\"<EMAIL_ADDRESS_1>\",\"cc\":\"` + leak + `\"}"}},"finish_reason":"function_call"}]}`
	chunk := func(delta, finish string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	streamed := chunk(`{"role":"assistant","content":null,"function_call":{"name":"send","arguments":"{\"to\":\"<EMAIL_"}}`, "null") +
		chunk(`{"function_call":{"arguments":"ADDRESS_1>\",\"cc\":\"carol.third@exam"}}`, "null") +
		chunk(`{"function_call":{"arguments":"ple.net\"}"}}`, "null") +
		chunk(`{}`, `"function_call"`) + "data: [DONE]\n\n"
	all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	g := answerShapes(t, all, buffered, streamed)
	for _, tt := range shapes {
		res := g.do(t, "POST", "/v1/chat/completions", strings.Replace(chatBody("mail "+testEmail, tt.extra), `"chat"`, `"`+tt.alias+`"`, 1))
		if res.status != 200 {
			t.Fatalf("%s: status %d: %s", tt.shape, res.status, res.body)
		}
		var name, args string
		if tt.stream {
			for _, ev := range events(res.body) {
				var c openai.ChatCompletionStreamResponse
				if ev = strings.TrimPrefix(ev, "data: "); ev == "[DONE]" || json.Unmarshal([]byte(ev), &c) != nil {
					continue
				}
				for _, ch := range c.Choices {
					if fc := ch.Delta.FunctionCall; fc != nil {
						name += fc.Name
						args += fc.Arguments
					}
				}
			}
		} else {
			var c openai.ChatCompletionResponse
			if err := json.Unmarshal(res.body, &c); err != nil || len(c.Choices) != 1 || c.Choices[0].Message.FunctionCall == nil {
				t.Fatalf("%s: %s (%v)", tt.shape, res.body, err)
			}
			name, args = c.Choices[0].Message.FunctionCall.Name, c.Choices[0].Message.FunctionCall.Arguments
		}
		var a struct{ To, Cc string }
		if err := json.Unmarshal([]byte(args), &a); err != nil || name != "send" || a.To != testEmail || a.Cc == "" || strings.Contains(a.Cc, "carol") {
			t.Errorf("%s: function_call %q(%q) (%v), want the address restored and the leak rewritten:\n%s", tt.shape, name, args, err, res.body)
		}
	}
}
