package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// vLLM's structured_outputs (which replaced guided_json) asks for JSON text as response_format
// does: a restored value's newlines are written as JSON escapes there too, so the content
// stays valid JSON. A structured output that is not JSON (a regex, a choice) is plain text.
func TestGuardRestoresIntoStructuredOutputs(t *testing.T) {
	key := "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
	all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	buffered := `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"{\"key\":\"<SECRET_1>\"}"},"finish_reason":"stop"}]}`
	g := startGateway(t, newConfig(t, nil, guarded(all, cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, buffered))))
	for _, tc := range []struct {
		name, extra string
		json        bool
	}{
		{"json schema", `,"structured_outputs":{"json":{"type":"object","properties":{"key":{"type":"string"}}}}`, true},
		{"json object", `,"structured_outputs":{"json_object":true}`, true},
		{"regex", `,"structured_outputs":{"regex":".*"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content, _, _ := answerParts(t, g.do(t, "POST", "/v1/chat/completions", chatBody("save my key:\n"+key, tc.extra)), false)
			var c struct{ Key string }
			err := json.Unmarshal([]byte(content), &c)
			if tc.json && (err != nil || c.Key != key) {
				t.Errorf("content %q (%v), want the key restored in valid JSON", content, err)
			}
			if !tc.json && !strings.Contains(content, key) {
				t.Errorf("content %q, want the key restored as it was", content)
			}
		})
	}
}
