package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/config"
)

// The SDKs' stream helpers (openai-node and openai-python chat.completions.stream, runTools,
// parse) take a tool call that opens as the end of the content and of the calls before it:
// they emit content.done and tool_calls.function.arguments.done then, parsing a strict tool's
// arguments as JSON. What the guard holds back of those texts goes out no later than the chunk
// that opens the next call, or the helper reads cut text (openai-node threw "Unexpected end of
// JSON input" on a model that answered with two tool calls).
func TestGuardStreamReleasesTextBeforeTheNextToolCall(t *testing.T) {
	chunk := func(delta string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":null}]}` + "\n\n"
	}
	args := func(i string) string {
		return chunk(`{"tool_calls":[{"index":`+i+`,"function":{"arguments":"{\"to\":\"<EMAIL"}}]}`) +
			chunk(`{"tool_calls":[{"index":`+i+`,"function":{"arguments":"_ADDRESS_1>\",\"cc\":\"<EMAIL_ADDRESS_1>\"}"}}]}`)
	}
	open := func(i string) string {
		return chunk(`{"tool_calls":[{"id":"call_` + i + `","type":"function","index":` + i + `,"function":{"name":"send"}}]}`)
	}
	// As vLLM streams parallel tool calls: content first, then each call whole in turn.
	streamed := chunk(`{"role":"assistant","content":""}`) +
		chunk(`{"content":"Mailing <EMAIL_"}`) + chunk(`{"content":"ADDRESS_1> now"}`) +
		open("0") + args("0") + open("1") + args("1") +
		`data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"tool_calls"}]}` + "\n\n" +
		"data: [DONE]\n\n"
	all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	g := startGateway(t, newConfig(t, nil, guarded(all, cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, streamed))))
	res := g.do(t, "POST", "/v1/chat/completions", chatBody("mail "+testEmail, `,"stream":true`))
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	wantArgs := `{"to":"` + testEmail + `","cc":"` + testEmail + `"}`
	var content string
	var calls []string // arguments so far, by index
	for _, ev := range events(res.body) {
		if ev = strings.TrimPrefix(ev, "data: "); ev == "[DONE]" {
			break
		}
		var c openai.ChatCompletionStreamResponse
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("event %q: %v", ev, err)
		}
		for _, ch := range c.Choices {
			content += ch.Delta.Content
			for _, tc := range ch.Delta.ToolCalls {
				i := *tc.Index
				if i == len(calls) {
					// A call opens: as a stream helper does, take what came before as whole
					// (the chunk's own text included, as the helpers add it first).
					if content != "Mailing "+testEmail+" now" {
						t.Errorf("call %d opens after content %q, want it whole", i, content)
					}
					for k, a := range calls {
						if a != wantArgs {
							t.Errorf("call %d opens after call %d's arguments %q, want them whole: %s\n%s", i, k, a, wantArgs, res.body)
						}
					}
					calls = append(calls, "")
				}
				if i >= len(calls) {
					t.Fatalf("event %q: tool call %d before %d", ev, i, len(calls))
				}
				calls[i] += tc.Function.Arguments
			}
		}
	}
	if len(calls) != 2 || calls[0] != wantArgs || calls[1] != wantArgs {
		t.Errorf("arguments %q, want two calls with %s:\n%s", calls, wantArgs, res.body)
	}
}
