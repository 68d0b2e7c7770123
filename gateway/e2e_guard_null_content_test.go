package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// A tool call answer streamed through the completion guard keeps its content null: the finish
// chunk that releases the arguments' held-back tail adds no "content":"", which clients
// accumulate into an empty text where the backend's answer (and a cached replay) has null.
func TestGuardToolCallStreamKeepsNullContent(t *testing.T) {
	chunk := func(delta, finish string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	streamed := chunk(`{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"send","arguments":"{\"to\":\"<EMAIL_"}}]}`, "null") +
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"ADDRESS_1>\"}"}}]}`, "null") +
		chunk(`{}`, `"tool_calls"`) + "data: [DONE]\n\n"
	all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	g := startGateway(t, newConfig(t, nil, guarded(all, cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, streamed))))
	res := g.do(t, "POST", "/v1/chat/completions", chatBody("mail "+testEmail, `,"stream":true`))
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	args := ""
	for _, ev := range events(res.body) {
		if ev = strings.TrimPrefix(ev, "data: "); ev == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						Function struct{ Arguments string } `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("event %q: %v", ev, err)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				t.Errorf("a chunk carries content %q; the answer's content is null:\n%s", *ch.Delta.Content, res.body)
			}
			for _, tc := range ch.Delta.ToolCalls {
				args += tc.Function.Arguments
			}
		}
	}
	if args != `{"to":"`+testEmail+`"}` {
		t.Fatalf("arguments %q, want the address restored:\n%s", args, res.body)
	}
}
