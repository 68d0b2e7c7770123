package gateway_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
)

// /readyz says whether a load balancer should send this gateway requests. Every replica serves
// the same models from the same backends, so one model that cannot serve must not make the
// gateway not ready: that would take every replica, and every other model, out with it. It is
// ready while one model can serve, and names those that cannot; ?model= asks for one strictly.
func TestReadyWithOneModelDown(t *testing.T) {
	t.Parallel()
	up := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, healthConfig(1),
		model("chat", "v1", version("v1", closedBackend(t))),
		model("embed", "v1", version("v1", up.backend())),
		model("rerank", "v1", version("v1", closedBackend(t)))))
	for _, alias := range []string{"chat", "rerank"} {
		if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"`+alias+`","messages":[{"role":"user","content":"hi"}]}`); res.status != 502 {
			t.Fatalf("%s, its only backend refusing connections: status %d %s, want 502", alias, res.status, res.body)
		}
	}
	type ready struct {
		Status      string   `json:"status"`
		Unavailable []string `json:"unavailable"`
		Model       string   `json:"model"`
		Version     string   `json:"version"`
	}
	for _, tt := range []struct {
		method, path string
		status       int
		want         ready
	}{
		{"GET", "/readyz", 200, ready{Status: "degraded", Unavailable: []string{"chat", "rerank"}}},
		{"GET", "/readyz?model=embed", 200, ready{Status: "ready", Model: "embed", Version: "v1"}},
		{"GET", "/readyz?model=chat", 503, ready{Status: "unavailable", Model: "chat", Version: "v1"}},
		{"GET", "/readyz?model=chat@v1", 503, ready{Status: "unavailable", Model: "chat@v1", Version: "v1"}},
		{"HEAD", "/readyz?model=chat", 503, ready{}},
		{"HEAD", "/readyz", 200, ready{}},
	} {
		res := g.do(t, tt.method, tt.path, "")
		if res.status != tt.status {
			t.Errorf("%s %s: status %d %s, want %d", tt.method, tt.path, res.status, res.body, tt.status)
			continue
		}
		if tt.method == "HEAD" {
			continue
		}
		var got ready
		if err := json.Unmarshal(res.body, &got); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %s: %s, want %+v", tt.method, tt.path, res.body, tt.want)
		}
	}
	res := g.do(t, "GET", "/readyz?model=nope", "")
	if _, _, code := envelope(t, res.body); res.status != 404 || code != "model_not_found" {
		t.Errorf("/readyz?model=nope: %d %s, want 404 model_not_found", res.status, res.body)
	}
}
