package gateway

import "testing"

// Only a 404 that says the backend has no such model takes it out of the model's pool: a 404
// for a path it lacks (the client's own request) names no model.
func TestSaysModelMissing(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       bool
	}{
		{"vLLM", `{"object":"error","message":"The model ` + "`m1`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}`, true},
		{"Ollama", `{"error":{"message":"model \"m1\" not found, try pulling it first","type":"api_error","param":null,"code":null}}`, true},
		{"OpenAI", `{"error":{"message":"The model m1 does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}`, true},
		{"no route", `{"detail":"Not Found"}`, false},
		{"plain text", `404 page not found`, false},
		{"another model", `{"object":"error","message":"The model ` + "`m10`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := normalizeBackendError(404, []byte(tt.body), 0)
			if got := saysModelMissing([]byte(tt.body), e.message, "m1"); got != tt.want {
				t.Errorf("saysModelMissing(%s) = %v, want %v", tt.body, got, tt.want)
			}
		})
	}
}
