package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// The chunk that finishes a choice releases what the guard of each of its tool calls holds
// back, also when it continues a call without an arguments member (a delta that carries only
// the call's index, or an empty function object): the arguments reach the client whole.
func TestGuardStreamReleasesToolArgumentsAtAFinishWithoutArguments(t *testing.T) {
	all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}, Safety: config.SafetyGuard{Completion: "block"}}
	chunk := func(delta string, finish string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	for name, last := range map[string]string{
		"empty function": `{"tool_calls":[{"index":0,"function":{}}]}`,
		"index only":     `{"tool_calls":[{"index":0}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			streamed := chunk(`{"role":"assistant","tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"send","arguments":"{\"to\":\"<EMAIL"}}]}`, "null") +
				chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"_ADDRESS_1>\"}"}}]}`, "null") +
				chunk(last, `"tool_calls"`) + "data: [DONE]\n\n"
			g := startGateway(t, newConfig(t, nil, guarded(all, cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, streamed))))
			res := g.do(t, "POST", "/v1/chat/completions", chatBody("mail "+testEmail, `,"stream":true`))
			_, _, args := answerParts(t, res, true)
			var a struct{ To string }
			if err := json.Unmarshal([]byte(args), &a); err != nil || a.To != testEmail {
				t.Fatalf("tool call arguments = %q (%v), want {\"to\":%q}: %s", args, err, testEmail, res.body)
			}
			if strings.Count(string(res.body), `"finish_reason":"tool_calls"`) != 1 {
				t.Fatalf("want one finish chunk: %s", res.body)
			}
		})
	}
}
