package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

type driftView struct {
	Model   string `json:"model"`
	Version string `json:"version"`
	Frozen  bool   `json:"reference_frozen"`
	Report  struct {
		Features []struct {
			Feature string   `json:"feature"`
			Method  string   `json:"method"`
			Verdict string   `json:"verdict"`
			PValue  *float64 `json:"p_value"`
			RefN    uint64   `json:"ref_n"`
			CurN    uint64   `json:"cur_n"`
		} `json:"features"`
	} `json:"report"`
}

func (g *gw) admin(t *testing.T, method, path, token string) response {
	t.Helper()
	return doURL(t, g.http, method, g.Admin+path, "", "Authorization", "Bearer "+token)
}

// Traffic A, reference frozen, then traffic B with longer prompts and a share in Cyrillic:
// drift is reported on the prompt features and not on the ones B left alone, in the admin
// API and in /metrics.
func TestDriftEndToEnd(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "drift-admin")
	hooks := make(chan string, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case hooks <- string(b):
		default:
		}
	}))
	t.Cleanup(hook.Close)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		c.Drift.Interval = time.Second
		c.Drift.Webhook = hook.URL
	}, model("chat", "v1", version("v1", f.backend()))))

	send := func(n int, text func(i int) string) {
		for i := range n {
			if res := g.do(t, "POST", "/v1/chat/completions", chatBody(text(i), "")); res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
		}
	}
	latin := strings.Repeat("the quick brown fox jumps over the lazy dog ", 10)
	cyrillic := strings.Repeat("съешь же ещё этих мягких французских булок ", 10)
	send(300, func(i int) string { return latin[:300+i%100] })

	if res := g.admin(t, "POST", "/admin/drift/chat/v1/reference", "wrong"); res.status != 401 {
		t.Fatalf("freeze with a wrong token: status %d", res.status)
	}
	if res := g.admin(t, "POST", "/admin/drift/chat/v1/reference", "drift-admin"); res.status != 200 {
		t.Fatalf("freeze: status %d: %s", res.status, res.body)
	}
	send(600, func(i int) string {
		if i%3 == 0 {
			return cyrillic[:500+i%100]
		}
		return latin[:400] + latin[:100+i%100]
	})

	res := g.admin(t, "GET", "/admin/drift/chat/v1", "drift-admin")
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var v driftView
	if err := json.Unmarshal(res.body, &v); err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]string{}
	for _, f := range v.Report.Features {
		verdicts[f.Feature] = f.Verdict
		// The live window holds only what came after the freeze: a sample in both windows
		// would pull them towards each other.
		if f.Feature == "prompt_bytes" && (f.RefN != 300 || f.CurN != 600) {
			t.Errorf("prompt_bytes sample sizes %d/%d, want 300 reference and 600 live", f.RefN, f.CurN)
		}
	}
	for _, feat := range []string{"prompt_bytes", "prompt_tokens", "script"} {
		if verdicts[feat] != "drift" {
			t.Errorf("%s: verdict %q, want drift\n%s", feat, verdicts[feat], res.body)
		}
	}
	for _, feat := range []string{"completion_tokens", "finish_reason", "status", "stream", "tools", "refusal", "cache"} {
		if verdicts[feat] == "drift" {
			t.Errorf("%s: drift reported on a feature traffic B did not change\n%s", feat, res.body)
		}
	}
	if !v.Frozen {
		t.Error("reference_frozen is false after the freeze")
	}
	g.waitMetric(t, "llmgate_drift_detected", map[string]string{"model": "chat", "version": "v1", "feature": "script"}, "= 1",
		func(v float64) bool { return v == 1 })
	select {
	case ev := <-hooks:
		if !strings.Contains(ev, `"event":"drift_verdict_changed"`) || !strings.Contains(ev, `"model":"chat"`) || !strings.Contains(ev, `"to":"drift"`) {
			t.Errorf("webhook event %s", ev)
		}
	case <-time.After(waitTimeout):
		t.Error("no webhook event for the verdict change")
	}
	if res := g.admin(t, "GET", "/admin/drift/chat/v9", "drift-admin"); res.status != 404 {
		t.Errorf("unknown version: status %d", res.status)
	}
	if res := g.admin(t, "GET", "/admin/stats/chat", "drift-admin"); res.status != 200 || !strings.Contains(string(res.body), `"requests": 900`) {
		t.Errorf("stats: status %d: %s", res.status, res.body)
	}
}

// A backend that reports no usage: the drift sample's token counts come from the tokenizer,
// off the request path, and the sample lands once counted.
func TestDriftTokensWithoutUsage(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "drift-admin")
	answer := `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend."},"finish_reason":"stop"}]}`
	b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, answer)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	if res := g.do(t, "POST", "/v1/chat/completions", chatBody("Count my tokens, please.", "")); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	waitFor(t, "the counted sample", func() bool {
		res := g.admin(t, "GET", "/admin/stats/chat", "drift-admin")
		return strings.Contains(string(res.body), `"requests": 1`)
	})
	res := g.admin(t, "GET", "/admin/drift/chat/v1", "drift-admin")
	var v driftView
	if err := json.Unmarshal(res.body, &v); err != nil {
		t.Fatal(err)
	}
	measured := map[string]uint64{}
	for _, f := range v.Report.Features {
		measured[f.Feature] = f.CurN
	}
	if measured["prompt_tokens"] != 1 || measured["completion_tokens"] != 1 {
		t.Fatalf("token features not measured: %v\n%s", measured, res.body)
	}
}

// A traffic change that makes another version stable freezes its drift reference, as a
// promote does (reference: on_promote, the default).
func TestDriftReferenceFrozenByStableChange(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "drift-admin")
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	frozen := func(version string) bool {
		t.Helper()
		res := g.admin(t, "GET", "/admin/drift/chat/"+version, "drift-admin")
		var v driftView
		if err := json.Unmarshal(res.body, &v); err != nil || res.status != 200 {
			t.Fatalf("status %d: %s (%v)", res.status, res.body, err)
		}
		return v.Frozen
	}
	if frozen("v2") {
		t.Fatal("v2's reference is frozen before it is stable")
	}
	res := doURL(t, g.http, "PUT", g.Admin+"/admin/models/chat/traffic", `{"stable":"v2"}`, "Authorization", "Bearer drift-admin")
	if res.status != 200 {
		t.Fatalf("traffic change: status %d: %s", res.status, res.body)
	}
	if !frozen("v2") {
		t.Error("v2 became stable by a traffic change and its reference is not frozen")
	}
}
