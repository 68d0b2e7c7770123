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
	call := func(i, args string) string {
		return `{"id":"call_` + i + `","type":"function","index":` + i + `,"function":{"name":"send","arguments":"` + args + `"}}`
	}
	args := func(i, args string) string {
		return chunk(`{"tool_calls":[{"index":` + i + `,"function":{"arguments":"` + args + `"}}]}`)
	}
	const args1, args2 = `{\"to\":\"<EMAIL`, `_ADDRESS_1>\",\"cc\":\"<EMAIL_ADDRESS_1>\"}`
	content := chunk(`{"role":"assistant","content":""}`) + chunk(`{"content":"Mailing <EMAIL_"}`) + chunk(`{"content":"ADDRESS_1> now"}`)
	finish := `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"tool_calls"}]}` + "\n\n" +
		"data: [DONE]\n\n"
	for _, tc := range []struct{ name, stream string }{
		// vLLM: each call opens with its name, then its arguments stream, one call after the other.
		{"vllm", content + chunk(`{"tool_calls":[`+call("0", "")+`]}`) + args("0", args1) + args("0", args2) +
			chunk(`{"tool_calls":[`+call("1", "")+`]}`) + args("1", args1) + args("1", args2) + finish},
		// Ollama: the calls whole, in one delta.
		{"ollama", content + chunk(`{"tool_calls":[`+call("0", args1+args2)+`,`+call("1", args1+args2)+`]}`) + finish},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
			g := startGateway(t, newConfig(t, nil, guarded(all, cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, tc.stream))))
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
					// As a stream helper does: the chunk's texts are added first, then a call
					// that opens ends what came before it.
					for _, tc := range ch.Delta.ToolCalls {
						for len(calls) <= *tc.Index {
							calls = append(calls, "")
						}
						calls[*tc.Index] += tc.Function.Arguments
					}
					for _, tc := range ch.Delta.ToolCalls {
						if tc.ID == "" {
							continue
						}
						if content != "Mailing "+testEmail+" now" {
							t.Errorf("call %d opens after content %q, want it whole", *tc.Index, content)
						}
						for k, a := range calls[:*tc.Index] {
							if a != wantArgs {
								t.Errorf("call %d opens after call %d's arguments %q, want them whole: %s\n%s", *tc.Index, k, a, wantArgs, res.body)
							}
						}
					}
				}
			}
			if len(calls) != 2 || calls[0] != wantArgs || calls[1] != wantArgs {
				t.Errorf("arguments %q, want two calls with %s:\n%s", calls, wantArgs, res.body)
			}
		})
	}
}

// A reasoning model's stream gives its reasoning first, then its answer; a client that shows
// the thinking apart from the answer (collapsed once the answer starts) needs all of it before
// the first answer delta. What the guard holds back of the reasoning goes out with that delta,
// not with the finish chunk after the whole answer.
func TestGuardStreamReleasesReasoningBeforeTheAnswer(t *testing.T) {
	chunk := func(delta string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":null}]}` + "\n\n"
	}
	for _, key := range []string{"reasoning_content", "reasoning"} {
		t.Run(key, func(t *testing.T) {
			streamed := chunk(`{"role":"assistant","content":""}`) +
				chunk(`{"`+key+`":"The user is <EMAIL_"}`) + chunk(`{"`+key+`":"ADDRESS_1>, so"}`) +
				chunk(`{"`+key+`":null,"content":"Hello <EMAIL_"}`) + chunk(`{"content":"ADDRESS_1>."}`) +
				`data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n" +
				"data: [DONE]\n\n"
			all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
			g := startGateway(t, newConfig(t, nil, guarded(all, cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, streamed))))
			res := g.do(t, "POST", "/v1/chat/completions", chatBody("mail "+testEmail, `,"stream":true`))
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			wantReasoning := "The user is " + testEmail + ", so"
			var reasoning, content string
			for _, ev := range events(res.body) {
				if ev = strings.TrimPrefix(ev, "data: "); ev == "[DONE]" {
					break
				}
				var c struct {
					Choices []struct{ Delta map[string]any }
				}
				if err := json.Unmarshal([]byte(ev), &c); err != nil {
					t.Fatalf("event %q: %v", ev, err)
				}
				for _, ch := range c.Choices {
					r, _ := ch.Delta[key].(string)
					if r != "" && content != "" {
						t.Errorf("reasoning %q comes after the answer began (%q)", r, content)
					}
					reasoning += r
					s, _ := ch.Delta["content"].(string)
					if s != "" && content == "" && reasoning != wantReasoning {
						t.Errorf("the answer begins after reasoning %q, want it whole: %q\n%s", reasoning, wantReasoning, res.body)
					}
					content += s
				}
			}
			if reasoning != wantReasoning || content != "Hello "+testEmail+"." {
				t.Errorf("reasoning %q, content %q; want %q and the answer restored:\n%s", reasoning, content, wantReasoning, res.body)
			}
		})
	}
}
