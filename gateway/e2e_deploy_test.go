package gateway_test

// The deploy lifecycle (issue 5) against a running gateway: every verb of the admin API, its
// auth and If-Match, the sticky canary split and shadow mirrors as clients see them, a restart
// on the same state file, and traffic while the split changes under it.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway"
)

// The admin tokens of these tests: an operator who may change things and a viewer who may look.
const (
	opsToken    = "ops-s3cret"
	viewerToken = "viewer-s3cret"
)

// withAdminTokens configures the two tokens; their secrets come from the environment.
func withAdminTokens(t *testing.T) func(*config.Config) {
	t.Setenv("LLMGATE_E2E_OPS_TOKEN", opsToken)
	t.Setenv("LLMGATE_E2E_VIEWER_TOKEN", viewerToken)
	return func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{
			{Name: "ops", TokenEnv: "LLMGATE_E2E_OPS_TOKEN", Role: "admin"},
			{Name: "viewer", TokenEnv: "LLMGATE_E2E_VIEWER_TOKEN", Role: "read"},
		}
	}
}

// call sends one admin request; an empty token sends no Authorization header.
func (g *gw) call(t testing.TB, method, path, token, body string, headers ...string) response {
	t.Helper()
	if token != "" {
		headers = append(headers, "Authorization", "Bearer "+token)
	}
	return doURL(t, g.http, method, g.Admin+path, body, headers...)
}

// modelDoc is one alias as GET /admin/models/{alias} shows it.
type modelDoc struct {
	Alias         string  `json:"alias"`
	Revision      uint64  `json:"revision"`
	Stable        string  `json:"stable"`
	Canary        string  `json:"canary"`
	CanaryPercent float64 `json:"canary_percent"`
	Sticky        string  `json:"sticky"`
	Shadow        struct {
		Version string  `json:"version"`
		Percent float64 `json:"percent"`
	} `json:"shadow"`
	Versions []struct {
		Name     string `json:"version"`
		Actor    string `json:"actor"`
		Backends []struct {
			URL     string `json:"url"`
			Healthy bool   `json:"healthy"`
		} `json:"backends"`
	} `json:"versions"`
	Rollout *rolloutDoc `json:"rollout"`
}

type rolloutDoc struct {
	Canary string `json:"canary"`
	State  string `json:"state"`
	Step   int    `json:"step"`
	Reason string `json:"reason"`
}

func (m *modelDoc) versionNames() string {
	var names []string
	for _, v := range m.Versions {
		names = append(names, v.Name)
	}
	return strings.Join(names, ",")
}

// historyEntry is one entry of GET /admin/models/{alias}/history.
type historyEntry struct {
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Reason   string    `json:"reason"`
}

func decode(t testing.TB, res response, v any) {
	t.Helper()
	if err := json.Unmarshal(res.body, v); err != nil {
		t.Fatalf("answer %d is not the JSON expected: %v\n%s", res.status, err, res.body)
	}
}

// getModel reads alias and checks that its ETag is its revision.
func (g *gw) getModel(t testing.TB, alias string) (modelDoc, response) {
	t.Helper()
	res := g.call(t, "GET", "/admin/models/"+alias, viewerToken, "")
	if res.status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", alias, res.status, res.body)
	}
	var m modelDoc
	decode(t, res, &m)
	if got, want := res.header.Get("ETag"), etagOf(m.Revision); got != want {
		t.Errorf("GET %s: ETag %s, want %s (the alias's revision)", alias, got, want)
	}
	return m, res
}

func (g *gw) history(t testing.TB, alias string) []historyEntry {
	t.Helper()
	res := g.call(t, "GET", "/admin/models/"+alias+"/history", viewerToken, "")
	if res.status != http.StatusOK {
		t.Fatalf("history: status %d: %s", res.status, res.body)
	}
	var h struct {
		Model   string         `json:"model"`
		Entries []historyEntry `json:"entries"`
	}
	decode(t, res, &h)
	return h.Entries
}

func etagOf(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// write sends a change as ops and returns the model it answered, checking that the answer
// carries the new revision in its body and its ETag.
func (g *gw) write(t testing.TB, method, path, body string, headers ...string) modelDoc {
	t.Helper()
	res := g.call(t, method, path, opsToken, body, headers...)
	if res.status != http.StatusOK {
		t.Fatalf("%s %s %s: status %d: %s", method, path, body, res.status, res.body)
	}
	var w struct {
		Revision uint64   `json:"revision"`
		Model    modelDoc `json:"model"`
	}
	decode(t, res, &w)
	if w.Revision == 0 || w.Model.Revision != w.Revision {
		t.Errorf("%s %s: revision %d, model revision %d: want the new revision in both", method, path, w.Revision, w.Model.Revision)
	}
	if got := res.header.Get("ETag"); got != etagOf(w.Model.Revision) {
		t.Errorf("%s %s: ETag %s, want %s", method, path, got, etagOf(w.Model.Revision))
	}
	return w.Model
}

// refused sends a change that must fail with status and the error param named, and checks that
// nothing changed: the same revision and the same GET answer.
func (g *gw) refused(t testing.TB, status int, param, method, path, token, body string, headers ...string) response {
	t.Helper()
	alias := strings.Split(strings.TrimPrefix(path, "/admin/models/"), "/")[0]
	before, beforeRes := g.getModel(t, alias)
	res := g.call(t, method, path, token, body, headers...)
	if res.status != status {
		t.Fatalf("%s %s %s: status %d, want %d: %s", method, path, body, res.status, status, res.body)
	}
	if _, gotParam, _ := envelope(t, res.body); gotParam != param {
		t.Errorf("%s %s %s: error param %q, want %q: %s", method, path, body, gotParam, param, res.body)
	}
	after, afterRes := g.getModel(t, alias)
	if after.Revision != before.Revision || string(afterRes.body) != string(beforeRes.body) {
		t.Errorf("%s %s %s was refused but changed the model:\nbefore %s\nafter  %s", method, path, body, beforeRes.body, afterRes.body)
	}
	return res
}

// deployBody is a POST /admin/models/{alias}/versions body for f.
func deployBody(name string, f *fake) string {
	return `{"version":"` + name + `","backends":[{"url":"` + f.URL + `","kind":"` + f.Kind + `","model":"` + f.Model + `"}]}`
}

// chatAs is a small chat request from user.
func chatAs(user string, stream bool) string {
	s := ""
	if stream {
		s = `,"stream":true`
	}
	return `{"model":"chat","user":"` + user + `","max_tokens":4,"messages":[{"role":"user","content":"Say hello."}]` + s + `}`
}

// served sends one chat request from user and returns the version that answered.
func (g *gw) served(t testing.TB, user string) string {
	t.Helper()
	v, err := g.chat(user, false)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// chat sends one chat request from user and returns the version that answered it with a 200,
// or an error; it is safe to call from any goroutine.
func (g *gw) chat(user string, stream bool) (string, error) {
	resp, err := g.http.Post(g.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatAs(user, stream)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("user %s: reading the answer: %w", user, err)
	}
	v := resp.Header.Get("X-Llmgate-Version")
	switch {
	case resp.StatusCode != http.StatusOK:
		return v, fmt.Errorf("user %s: status %d from %q: %s", user, resp.StatusCode, v, body)
	case v == "":
		return v, fmt.Errorf("user %s: no x-llmgate-version header", user)
	case stream && !strings.Contains(string(body), "data: [DONE]"):
		return v, fmt.Errorf("user %s: stream without [DONE]: %s", user, body)
	}
	return v, nil
}

// Every verb of the deploy API against a running gateway, as the operator "ops": each write
// answers the new revision, refused writes change nothing, and history records every change
// with its actor, from, to and reason.
func TestDeployAdminVerbs(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1", Seed: 1})
	v2 := startFake(t, fakellm.Options{Model: "m2", Seed: 2})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()))))

	res := g.call(t, "GET", "/admin/models", viewerToken, "")
	var list struct {
		Revision uint64     `json:"revision"`
		Models   []modelDoc `json:"models"`
	}
	decode(t, res, &list)
	if res.status != 200 || list.Revision != 1 || len(list.Models) != 1 || list.Models[0].Alias != "chat" || list.Models[0].Stable != "v1" ||
		list.Models[0].Sticky != "none" || len(list.Models[0].Versions) != 1 || list.Models[0].Versions[0].Backends[0].URL != v1.URL {
		t.Fatalf("GET /admin/models: %d %s", res.status, res.body)
	}
	m, _ := g.getModel(t, "chat")
	if m.Revision != 1 || m.Stable != "v1" || m.versionNames() != "v1" || !m.Versions[0].Backends[0].Healthy || m.Rollout != nil {
		t.Fatalf("GET /admin/models/chat: %+v", m)
	}
	if res := g.call(t, "GET", "/admin/models/nope", viewerToken, ""); res.status != 404 {
		t.Errorf("unknown alias: status %d", res.status)
	}

	// Deploy: probed, guarded against SSRF, validated; refused deploys change nothing.
	m = g.write(t, "POST", "/admin/models/chat/versions", deployBody("v2", v2))
	if m.versionNames() != "v1,v2" || m.Stable != "v1" || m.Versions[1].Actor != "ops" {
		t.Fatalf("after deploy: %+v", m)
	}
	dead := closedBackend(t)
	deadBody := `{"version":"v3","backends":[{"url":"` + dead.URL + `","kind":"vllm","model":"gone"}]}`
	g.refused(t, 400, "backends", "POST", "/admin/models/chat/versions", opsToken, deadBody)
	// A backend that answers but does not serve the model would 404 every request of the version.
	typo := `{"version":"v3","backends":[{"url":"` + v2.URL + `","kind":"` + v2.Kind + `","model":"m2-typo"}]}`
	if res := g.refused(t, 400, "backends", "POST", "/admin/models/chat/versions", opsToken, typo); !strings.Contains(string(res.body), `does not serve model \"m2-typo\"; its /v1/models lists m2`) {
		t.Errorf("a deploy of a model the backend does not serve: %s", res.body)
	}
	// An OpenAI-style base URL ending in /v1 is asked for /v1/v1/...: the error says so.
	withV1 := `{"version":"v3","backends":[{"url":"` + v2.URL + `/v1","kind":"` + v2.Kind + `","model":"m2"}]}`
	if res := g.refused(t, 400, "backends", "POST", "/admin/models/chat/versions", opsToken, withV1); !strings.Contains(string(res.body), "the URL ends in /v1, which llmgate adds itself") {
		t.Errorf("a deploy of a backend URL ending in /v1: %s", res.body)
	}
	for _, url := range []string{"http://169.254.169.254/latest/meta-data", "http://metadata.google.internal", "http://[fe80::1]:8000", "file:///etc/passwd"} {
		body := `{"version":"v3","backends":[{"url":"` + url + `","model":"x"}]}`
		g.refused(t, 400, "backends[0].url", "POST", "/admin/models/chat/versions?probe=false", opsToken, body)
	}
	for _, tt := range []struct{ body, param string }{
		{`{"version":"v3","backends":"` + v2.URL + `"}`, "backends"},
		{`{"version":"v3","backend":[]}`, "backend"},
		{`{"version":"v3","backends":[]}`, "backends"},
		{`{"version":"v3","backends":[{"url":"` + v2.URL + `","model":"m2","kind":"tgi"}]}`, "backends[0].kind"},
		{`{"version":"v@3","backends":[{"url":"` + v2.URL + `","model":"m2"}]}`, "version"},
		{`{"version":"v3","backends":[{"url":"` + v2.URL + `","model":"m2"}]} {"version":"v4"}`, ""},
	} {
		g.refused(t, 400, tt.param, "POST", "/admin/models/chat/versions?probe=false", opsToken, tt.body)
	}
	g.refused(t, 409, "version", "POST", "/admin/models/chat/versions", opsToken, deployBody("v2", v2)) // versions are immutable
	m = g.write(t, "POST", "/admin/models/chat/versions?probe=false", deadBody)
	if m.versionNames() != "v1,v2,v3" {
		t.Fatalf("deploy with probe=false: %+v", m)
	}

	// Traffic and shadow.
	g.refused(t, 400, "canary_percent", "PUT", "/admin/models/chat/traffic", opsToken, `{"stable":"v1","canary":"v2","canary_percent":101}`)
	g.refused(t, 404, "canary", "PUT", "/admin/models/chat/traffic", opsToken, `{"stable":"v1","canary":"v9","canary_percent":10}`)
	g.refused(t, 400, "canary_percent", "PUT", "/admin/models/chat/traffic", opsToken, `{"stable":"v1","canary":"v2","canary_percent":"ten"}`)
	m = g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10,"sticky":"user"}`)
	if m.Stable != "v1" || m.Canary != "v2" || m.CanaryPercent != 10 || m.Sticky != "user" {
		t.Fatalf("after traffic: %+v", m)
	}
	g.refused(t, 400, "version", "PUT", "/admin/models/chat/shadow", opsToken, `{"version":"v1","percent":5}`) // the stable
	m = g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v3","percent":0.5}`)
	if m.Shadow.Version != "v3" || m.Shadow.Percent != 0.5 {
		t.Fatalf("after shadow: %+v", m)
	}
	g.refused(t, 409, "version", "DELETE", "/admin/models/chat/versions/v3", opsToken, "") // the shadow
	m = g.write(t, "PUT", "/admin/models/chat/shadow", `{}`)
	if m.Shadow.Version != "" {
		t.Fatalf("after clearing the shadow: %+v", m)
	}

	// Delete is refused while the version serves traffic.
	g.refused(t, 409, "version", "DELETE", "/admin/models/chat/versions/v2", opsToken, "")
	g.refused(t, 409, "version", "DELETE", "/admin/models/chat/versions/v1", opsToken, "")
	g.refused(t, 404, "version", "DELETE", "/admin/models/chat/versions/v9", opsToken, "")

	// Promote, roll back to the previous stable, roll back to a named version.
	m = g.write(t, "POST", "/admin/models/chat/promote", `{"reason":"canary looks good"}`)
	if m.Stable != "v2" || m.Canary != "" {
		t.Fatalf("after promote: %+v", m)
	}
	if v := g.served(t, "u1"); v != "v2" {
		t.Fatalf("after promote served by %s", v)
	}
	g.refused(t, 409, "canary", "POST", "/admin/models/chat/promote", opsToken, "")
	m = g.write(t, "POST", "/admin/models/chat/rollback", `{"reason":"p95 doubled"}`)
	if m.Stable != "v1" {
		t.Fatalf("after rollback: %+v", m)
	}
	if v := g.served(t, "u1"); v != "v1" {
		t.Fatalf("after rollback served by %s", v)
	}
	g.refused(t, 404, "to", "POST", "/admin/models/chat/rollback", opsToken, `{"to":"v9"}`)
	g.refused(t, 400, "too", "POST", "/admin/models/chat/rollback", opsToken, `{"too":"v2"}`)
	m = g.write(t, "POST", "/admin/models/chat/rollback", `{"to":"v2"}`)
	if m.Stable != "v2" {
		t.Fatalf("after rollback to v2: %+v", m)
	}
	if v := g.served(t, "u1"); v != "v2" {
		t.Fatalf("after rollback to v2 served by %s", v)
	}
	m = g.write(t, "DELETE", "/admin/models/chat/versions/v3", "")
	if m.versionNames() != "v1,v2" {
		t.Fatalf("after delete: %+v", m)
	}
	m = g.write(t, "DELETE", "/admin/models/chat/versions/v1", "") // refused while it was the stable
	if m.versionNames() != "v2" {
		t.Fatalf("after deleting v1: %+v", m)
	}
	g.refused(t, 409, "to", "POST", "/admin/models/chat/rollback", opsToken, "") // v1 is gone

	// History: every change, in order, by ops, with from, to and reason.
	type row struct{ actor, action, from, to, reason string }
	want := []row{
		{"config", "seed", "", "v1", "seeded from config"},
		{"ops", "deploy", "", "v2", ""},
		{"ops", "deploy", "", "v3", ""},
		{"ops", "traffic", "v1", "v1 + canary v2 10% sticky user", ""},
		{"ops", "shadow", "", "v3 0.5%", ""},
		{"ops", "shadow", "v3 0.5%", "", ""},
		{"ops", "promote", "v1 + canary v2 10% sticky user", "v2", "canary looks good"},
		{"ops", "rollback", "v2", "v1", "p95 doubled"},
		{"ops", "rollback", "v1", "v2", ""},
		{"ops", "delete", "v3", "", ""},
		{"ops", "delete", "v1", "", ""},
	}
	h := g.history(t, "chat")
	if len(h) != len(want) {
		t.Fatalf("history has %d entries, want %d: %+v", len(h), len(want), h)
	}
	for i, e := range h {
		got := row{e.Actor, e.Action, e.From, e.To, e.Reason}
		if got != want[i] || e.Revision != uint64(i+1) || e.Time.IsZero() {
			t.Errorf("history[%d] = %+v (revision %d), want %+v at revision %d", i, got, e.Revision, want[i], i+1)
		}
	}
	if m, _ := g.getModel(t, "chat"); m.Revision != uint64(len(want)) {
		t.Errorf("revision %d after %d changes", m.Revision, len(want))
	}
}

// No token or a wrong one: 401 on every path; a read token reads and gets 403 on every write,
// which changes nothing.
func TestDeployAdminAuth(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	reads := []string{"/admin/models", "/admin/models/chat", "/admin/models/chat/history", "/admin/models/chat/rollout"}
	writes := []struct{ method, path, body string }{
		{"POST", "/admin/models/chat/versions?probe=false", deployBody("v3", f)},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10}`},
		{"PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":10}`},
		{"POST", "/admin/models/chat/promote", ""},
		{"POST", "/admin/models/chat/rollback", `{"to":"v2"}`},
		{"DELETE", "/admin/models/chat/versions/v2", ""},
		{"POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":10}]}`},
		{"POST", "/admin/models/chat/rollout/abort", ""},
	}
	for _, token := range []string{"", "nope", opsToken[:len(opsToken)-1], viewerToken + "x"} {
		for _, p := range reads {
			if res := g.call(t, "GET", p, token, ""); res.status != 401 {
				t.Errorf("GET %s with token %q: status %d, want 401", p, token, res.status)
			}
		}
		for _, w := range writes {
			g.refused(t, 401, "", w.method, w.path, token, w.body)
		}
	}
	for _, p := range reads {
		if res := g.call(t, "GET", p, viewerToken, ""); res.status != 200 {
			t.Errorf("GET %s as viewer: status %d: %s", p, res.status, res.body)
		}
	}
	// A method that writes nothing is the viewer's to try: a 405 saying what the URL takes, not
	// a 403 saying the token's role is short.
	for _, tt := range []struct{ method, path, allow string }{
		{"HEAD", "/admin/models/chat", "GET, DELETE"},
		{"OPTIONS", "/admin/models/chat", "GET, DELETE"},
		{"HEAD", "/admin/drift", "GET"},
		{"OPTIONS", "/admin/drift/chat/v1", "GET"},
		{"HEAD", "/admin/stats/chat", "GET"},
		{"OPTIONS", "/admin/stats/chat", "GET"},
		{"GET", "/admin/drift/chat/v1/reference", "POST"},
		{"HEAD", "/admin/drift/chat/v1/reference", "POST"},
		{"OPTIONS", "/admin/drift/chat/v1/reference", "POST"},
		{"HEAD", "/admin/cache", "GET, DELETE"},
		{"OPTIONS", "/admin/cache", "GET, DELETE"},
	} {
		if res := g.call(t, tt.method, tt.path, viewerToken, ""); res.status != 405 || res.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s as viewer: status %d, Allow %q, want 405 with Allow %q: %s", tt.method, tt.path, res.status, res.header.Get("Allow"), tt.allow, res.body)
		}
	}
	for _, w := range writes {
		res := g.refused(t, 403, "", w.method, w.path, viewerToken, w.body)
		if typ, _, code := envelope(t, res.body); typ == "" || code != "insufficient_role" {
			t.Errorf("%s %s as viewer: %s", w.method, w.path, res.body)
		}
	}
	if h := g.history(t, "chat"); len(h) != 1 {
		t.Errorf("history after refused writes: %+v", h)
	}
	if res := g.do(t, "GET", "/admin/models", "", "Authorization", "Bearer "+opsToken); res.status == 200 {
		t.Errorf("the data plane served /admin/models: %s", res.body)
	}
}

// If-Match: a stale revision gets 412 with the current ETag and changes nothing; the current
// one succeeds. Revisions are per alias: a change to another alias does not fail it.
func TestDeployIfMatch(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens,
		model("chat", "v1", version("v1", f.backend()), version("v2", f.backend())),
		model("embed", "e1", version("e1", f.backend()))))
	m, _ := g.getModel(t, "chat")
	stale := m.Revision
	m = g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":5}`, "If-Match", etagOf(stale))
	current := m.Revision
	for _, w := range []struct{ method, path, body string }{
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":50}`},
		{"PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":1}`},
		{"POST", "/admin/models/chat/promote", ""},
		{"POST", "/admin/models/chat/rollback", ""},
		{"POST", "/admin/models/chat/versions?probe=false", deployBody("v3", f)},
		{"DELETE", "/admin/models/chat/versions/v2", ""},
		{"POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":10}]}`},
	} {
		res := g.refused(t, 412, "If-Match", w.method, w.path, opsToken, w.body, "If-Match", etagOf(stale))
		if got := res.header.Get("ETag"); got != etagOf(current) {
			t.Errorf("%s %s: 412 with ETag %s, want the current %s", w.method, w.path, got, etagOf(current))
		}
	}
	g.refused(t, 400, "If-Match", "PUT", "/admin/models/chat/traffic", opsToken, `{}`, "If-Match", "yesterday")

	// A change to another alias moves the global revision, not chat's ETag.
	e := g.write(t, "PUT", "/admin/models/embed/traffic", `{"stable":"e1","sticky":"api_key"}`)
	if e.Revision <= current {
		t.Fatalf("embed revision %d, want > %d", e.Revision, current)
	}
	// If-Match compares strongly (RFC 9110 13.1.1): the current revision as a weak tag is a 412.
	res := g.refused(t, 412, "If-Match", "PUT", "/admin/models/chat/traffic", opsToken, `{"stable":"v1","canary":"v2","canary_percent":50}`, "If-Match", `W/`+etagOf(current))
	if got := res.header.Get("ETag"); got != etagOf(current) {
		t.Errorf("weak If-Match: 412 with ETag %s, want the current %s", got, etagOf(current))
	}
	g.refused(t, 400, "If-Match", "PUT", "/admin/models/chat/traffic", opsToken, `{}`, "If-Match", "W/*")
	// On an alias that does not exist, a weak tag answers as a stale revision: a deploy (which
	// would create it) is the 412, a write the absence refuses anyway stays a 404.
	if res := g.call(t, "POST", "/admin/models/nope/versions?probe=false", opsToken, deployBody("v1", f), "If-Match", `W/"1"`); res.status != 412 {
		t.Errorf("deploy of a new alias with a weak If-Match: status %d %s, want 412", res.status, res.body)
	}
	if res := g.call(t, "PUT", "/admin/models/nope/traffic", opsToken, `{"stable":"v1"}`, "If-Match", `W/"1"`); res.status != 404 {
		t.Errorf("traffic of no alias with a weak If-Match: status %d %s, want 404", res.status, res.body)
	}
	m = g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":50}`, "If-Match", etagOf(current))
	if m.CanaryPercent != 50 || m.Revision != e.Revision+1 {
		t.Fatalf("write with the current revision: %+v", m)
	}
}

// If-Match: * (RFC 9110) passes every write to an alias that exists, whatever its revision; on
// an alias that does not exist, a deploy (which would create it) fails with the 412 of a stale
// revision and creates nothing, and a write the alias's absence refuses anyway stays a 404.
func TestDeployIfMatchAny(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	m := g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":5}`, "If-Match", "*")
	if m.CanaryPercent != 5 {
		t.Fatalf("traffic with If-Match: *: %+v", m)
	}
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":1}`, "If-Match", "*")
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", deployBody("v3", f), "If-Match", "*")
	g.write(t, "POST", "/admin/models/chat/versions", deployBody("v4", f), "If-Match", "*")
	g.write(t, "DELETE", "/admin/models/chat/versions/v3", "", "If-Match", "*")
	g.write(t, "POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":10},{"canary_percent":50}]}`, "If-Match", "*")
	g.write(t, "POST", "/admin/models/chat/rollout/pause", "", "If-Match", "*")
	g.write(t, "POST", "/admin/models/chat/promote", "", "If-Match", "*")

	for _, path := range []string{"/admin/models/typo/versions?probe=false", "/admin/models/typo/versions"} {
		res := g.call(t, "POST", path, opsToken, deployBody("v1", f), "If-Match", "*")
		if res.status != http.StatusPreconditionFailed {
			t.Fatalf("deploy to a new alias with If-Match: *: status %d, want 412: %s", res.status, res.body)
		}
		if typ, param, code := envelope(t, res.body); typ != "invalid_request_error" || param != "If-Match" || code != "revision_conflict" {
			t.Errorf("deploy to a new alias with If-Match: *: %s, want the envelope of a stale revision", res.body)
		}
	}
	if res := g.call(t, "GET", "/admin/models/typo", viewerToken, ""); res.status != http.StatusNotFound {
		t.Errorf("a refused deploy created the alias: GET status %d: %s", res.status, res.body)
	}
	for _, w := range []struct{ method, path, body string }{
		{"PUT", "/admin/models/typo/traffic", `{"stable":"v1"}`},
		{"DELETE", "/admin/models/typo", ""},
	} {
		if res := g.call(t, w.method, w.path, opsToken, w.body, "If-Match", "*"); res.status != http.StatusNotFound {
			t.Errorf("%s %s with If-Match: *: status %d, want 404 as without it: %s", w.method, w.path, res.status, res.body)
		}
	}
	if res := g.call(t, "DELETE", "/admin/models/chat", opsToken, "", "If-Match", "*"); res.status != http.StatusOK {
		t.Errorf("DELETE /admin/models/chat with If-Match: *: status %d, want 200: %s", res.status, res.body)
	}
}

// With 10% canary sticky by the OpenAI user field, every user sees one version on every
// request, about 10% see the canary, and raising to 25% keeps them all there.
func TestDeployStickySplit(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	v2 := startFake(t, fakellm.Options{Model: "m2"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", v2.backend()))))
	const users = 300
	assign := func() []string {
		out := make([]string, users)
		parallel(t, 8, users, func(i int) {
			user := "user-" + strconv.Itoa(i)
			a, err := g.chat(user, false)
			if err != nil {
				t.Error(err)
			}
			b, err := g.chat(user, i%2 == 0)
			if err != nil {
				t.Error(err)
			}
			if a != b {
				t.Errorf("%s was served by %s, then by %s", user, a, b)
			}
			out[i] = a
		})
		return out
	}
	count := func(vs []string, v string) (n int) {
		for _, x := range vs {
			if x == v {
				n++
			}
		}
		return n
	}

	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10,"sticky":"user"}`)
	at10 := assign()
	// Binomial(300, 0.1): mean 30, sd 5.2; these bounds are 4 sd wide.
	if n := count(at10, "v2"); n < 9 || n > 51 || n+count(at10, "v1") != users {
		t.Fatalf("%d of %d users on the 10%% canary", n, users)
	}
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":25,"sticky":"user"}`)
	at25 := assign()
	for i := range users {
		if at10[i] == "v2" && at25[i] != "v2" {
			t.Errorf("user-%d left the canary when it grew to 25%%", i)
		}
	}
	if n10, n25 := count(at10, "v2"), count(at25, "v2"); n25 <= n10 || n25 < 45 || n25 > 105 {
		t.Fatalf("%d users on the canary at 10%%, %d at 25%%", n10, n25)
	}
	if got := v1.Requests() + v2.Requests(); got != 4*users {
		t.Errorf("backends saw %d requests, want %d", got, 4*users)
	}
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(t testing.TB, workers, n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// With shadow 100% to v2, every answer comes from v1 while v2 receives a copy of each request,
// and a shadow that takes seconds to answer does not slow the client down.
func TestDeployShadow(t *testing.T) {
	tokens := withAdminTokens(t)
	const shadowTTFT = 4 * time.Second
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	v2 := startFake(t, fakellm.Options{Model: "m2", TTFT: shadowTTFT})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", v2.backend()))))
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)

	const n = 20
	for i := range n {
		start := time.Now()
		res := g.do(t, "POST", "/v1/chat/completions", chatAs("u"+strconv.Itoa(i), i%2 == 1))
		took := time.Since(start)
		if res.status != 200 || res.header.Get("X-Llmgate-Version") != "v1" {
			t.Fatalf("request %d: status %d version %q: %s", i, res.status, res.header.Get("X-Llmgate-Version"), res.body)
		}
		if took >= shadowTTFT/4 {
			t.Fatalf("request %d took %v with a shadow whose first token takes %v", i, took, shadowTTFT)
		}
	}
	if got := v1.Requests(); got != n {
		t.Errorf("v1 saw %d requests, want %d", got, n)
	}
	waitFor(t, "the shadow to receive every request", func() bool { return v2.Requests() == n })
	// The shadow version's answers show in its own series, as any version's do.
	g.waitMetric(t, "llmgate_requests_total", map[string]string{"model": "chat", "version": "v2", "status": "2xx"}, "= n",
		func(v float64) bool { return v == n })
	// Streams too: a mirrored stream is asked for whole, so its tokens count (they did not,
	// read as events): v2 generates what v1 did for every request.
	v1Out, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_tokens_total", map[string]string{"model": "chat", "version": "v1", "type": "output"})
	g.waitMetric(t, "llmgate_tokens_total", map[string]string{"model": "chat", "version": "v2", "type": "output"}, "= v1's",
		func(v float64) bool { return v1Out > 0 && v == v1Out })
	// Per request too: gen_ai_client_token_usage holds the same tokens, one sample per mirror
	// (it had none, while llmgate_tokens_total counted them).
	m := parseMetrics(t, g.metrics(t))
	v2Out := map[string]string{"model": "chat", "version": "v2", "gen_ai_token_type": "output"}
	if got, _ := metricValue(m, "gen_ai_client_token_usage_sum", v2Out); got != v1Out {
		t.Errorf("gen_ai_client_token_usage_sum of the shadow = %v, want llmgate_tokens_total's %v", got, v1Out)
	}
	if got, _ := metricValue(m, "gen_ai_client_token_usage_count", v2Out); got != n {
		t.Errorf("gen_ai_client_token_usage_count of the shadow = %v, want %d", got, n)
	}

	// Turning the shadow off stops the copies.
	g.write(t, "PUT", "/admin/models/chat/shadow", `{}`)
	g.served(t, "after")
	if got := v2.Requests(); got != n {
		t.Errorf("v2 saw %d requests after the shadow was turned off, want %d", got, n)
	}
}

// Admin changes survive a restart on the same state file, and the config file (which still
// says v1) no longer wins: the store is the truth, and the log says they differ.
func TestDeployStateSurvivesRestart(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	v2 := startFake(t, fakellm.Options{Model: "m2"})
	path := filepath.Join(t.TempDir(), "state", "llmgate.db")
	cfg := newConfig(t, func(c *config.Config) {
		tokens(c)
		c.State.Path = path
	}, model("chat", "v1", version("v1", v1.backend())))

	g := startGatewayOpts(t, cfg, gateway.Options{})
	g.write(t, "POST", "/admin/models/chat/versions", deployBody("v2", v2))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":30,"sticky":"user"}`)
	g.write(t, "POST", "/admin/models/chat/promote", `{"reason":"before restart"}`)
	last := g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v1","percent":1}`)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	g2 := startGatewayOpts(t, cfg, gateway.Options{})
	m, _ := g2.getModel(t, "chat")
	if m.Revision != last.Revision || m.Stable != "v2" || m.versionNames() != "v1,v2" || m.Shadow.Version != "v1" {
		t.Fatalf("after restart: %+v, want revision %d with stable v2", m, last.Revision)
	}
	if h := g2.history(t, "chat"); len(h) != 5 || h[3].Reason != "before restart" || h[3].Actor != "ops" {
		t.Fatalf("history after restart: %+v", h)
	}
	if v := g2.served(t, "u1"); v != "v2" {
		t.Fatalf("after restart served by %s, want v2 (the store, not the config file)", v)
	}
	g2.write(t, "POST", "/admin/models/chat/rollback", "")
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
	if logs := g2.logs.String(); !strings.Contains(logs, "store differs from config") || !strings.Contains(logs, `stable \"v1\" in config, \"v2\" in store`) {
		t.Errorf("the restart did not log that the store differs from the config:\n%s", logs)
	}
}

// Traffic at full rate from several clients while the split changes every few milliseconds:
// no client sees an error, every answer names one of the two versions, and the last split is
// the one served.
func TestDeployTrafficWhileWeightsChange(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	v2 := startFake(t, fakellm.Options{Model: "m2"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", v2.backend()))))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, errs atomic.Int64
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				v, err := g.chat("w"+strconv.Itoa(w)+"-"+strconv.Itoa(i), i%4 == 0)
				sent.Add(1)
				if err == nil && v != "v1" && v != "v2" {
					err = fmt.Errorf("served by %q", v)
				}
				if err != nil {
					errs.Add(1)
					t.Error(err)
				}
			}
		}()
	}
	const changes = 150
	for i := range changes {
		pct := (i * 37) % 101
		sticky := []string{"user", "none", "api_key"}[i%3]
		body := `{"stable":"v1","canary":"v2","canary_percent":` + strconv.Itoa(pct) + `,"sticky":"` + sticky + `"}`
		if i%10 == 9 {
			body = `{"stable":"v1"}` // all on stable
		}
		g.write(t, "PUT", "/admin/models/chat/traffic", body)
	}
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100}`)
	close(stop)
	wg.Wait()
	if sent.Load() < changes || errs.Load() > 0 {
		t.Fatalf("%d requests, %d errors", sent.Load(), errs.Load())
	}
	for i := range 5 {
		if v := g.served(t, "after-"+strconv.Itoa(i)); v != "v2" {
			t.Fatalf("after the last change (100%% canary) served by %s", v)
		}
	}
}

// A deploy waits for its probes without holding up the rest of the admin API: while a backend
// that accepted the probe's connection says nothing, reads and other writes are answered.
func TestDeployProbeDoesNotBlockOtherChanges(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		c.Health.Timeout = time.Minute // the probe below ends when its connection is closed
	}, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))

	ln := listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	deployed := make(chan response, 1)
	go func() {
		res, err := g.http.Do(mustRequest(t, "POST", g.Admin+"/admin/models/chat/versions", `{"version":"v3","backends":[{"url":"http://`+ln.Addr().String()+`","model":"m"}]}`, opsToken))
		if err != nil {
			deployed <- response{status: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		deployed <- response{status: res.StatusCode, body: b}
	}()
	conn := <-accepted // the probe is waiting on this connection now

	g.getModel(t, "chat")
	m := g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10}`)
	select {
	case res := <-deployed:
		t.Fatalf("the deploy finished (%d %s) before its probe was answered", res.status, res.body)
	default:
	}
	conn.Close()
	res := <-deployed
	if res.status != 400 || !strings.Contains(string(res.body), "backend_unhealthy") {
		t.Fatalf("deploy with a silent backend: %d %s", res.status, res.body)
	}
	if after, _ := g.getModel(t, "chat"); after.Revision != m.Revision || after.versionNames() != "v1,v2" {
		t.Fatalf("the refused deploy changed the model: %+v", after)
	}
}

func mustRequest(t testing.TB, method, url, body, token string) *http.Request {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// PUT traffic sets the whole split: a body without stable, {} included, is a 400 naming
// stable; a misspelt field or query parameter is a 400 naming it; other writes with {} or a
// missing required field are refused too. Each leaves the model, its revision and its history
// as they were.
func TestDeployIncompleteBodiesAreRefused(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10,"sticky":"user"}`)
	history := len(g.history(t, "chat"))
	for _, tt := range []struct{ method, path, body, param string }{
		{"PUT", "/admin/models/chat/traffic", `{}`, "stable"},
		{"PUT", "/admin/models/chat/traffic", ``, "stable"},
		{"PUT", "/admin/models/chat/traffic", `{"canary":"v2","canary_percent":20}`, "stable"},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"","canary":"v2","canary_percent":20}`, "stable"},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_precent":20}`, "canary_precent"},
		{"PUT", "/admin/models/chat/shadow", `{"version":"v2","precent":5}`, "precent"},
		{"POST", "/admin/models/chat/versions?probe=false", `{}`, "version"},
		{"POST", "/admin/models/chat/versions?probe=false", `{"version":"v3"}`, "backends"},
		{"POST", "/admin/models/chat/rollouts", `{}`, "canary"},
		{"POST", "/admin/models/chat/rollback", `{"reasn":"typo"}`, "reasn"},
		{"POST", "/admin/models/chat/promote", `{"reasn":"typo"}`, "reasn"},
		{"POST", "/admin/models/chat/versions?prob=false", deployBody("v3", f), "prob"},
		{"POST", "/admin/models/chat/versions?probe=flase", deployBody("v3", f), "probe"},
		{"PUT", "/admin/models/chat/traffic?dry_run=1", `{"stable":"v2"}`, "dry_run"},
	} {
		g.refused(t, 400, tt.param, tt.method, tt.path, opsToken, tt.body)
	}
	// A rollout plan is canary, steps and checks: where a rollout stands is the gateway's to say.
	plan := `{"canary":"v2","steps":[{"canary_percent":20},{"canary_percent":100}]`
	for _, tt := range []struct{ method, path, body, param string }{
		{"POST", "/admin/models/chat/rollouts", plan + `,"state":"promoted"}`, "state"},
		{"POST", "/admin/models/chat/rollouts", plan + `,"step":1}`, "step"},
		{"POST", "/admin/models/chat/rollouts", plan + `,"reason":"x"}`, "reason"},
		{"POST", "/admin/models/chat/rollouts", plan + `,"actor":"someone else"}`, "actor"},
		{"POST", "/admin/models/chat/rollouts", plan + `,"alias":"other"}`, "alias"},
		{"POST", "/admin/models/chat/rollouts", plan + `,"started":"2020-01-01T00:00:00Z"}`, "started"},
		{"POST", "/admin/models/chat/rollouts", plan + `,"step_started":"2020-01-01T00:00:00Z"}`, "step_started"},
		{"POST", "/admin/models/chat/rollouts", plan + `,"last_analysis":{}}`, "last_analysis"},
	} {
		g.refused(t, 400, tt.param, tt.method, tt.path, opsToken, tt.body)
	}
	// A body past the admin limit is a 413 in the same envelope, not fasthttp's plain text.
	huge := `{"stable":"v2","pad":"` + strings.Repeat("x", 2<<20) + `"}`
	if res := g.refused(t, 413, "", "PUT", "/admin/models/chat/traffic", opsToken, huge); !strings.Contains(string(res.body), `"code":"request_too_large"`) {
		t.Errorf("a 2 MiB admin body: %.300s", res.body)
	}
	m, _ := g.getModel(t, "chat")
	if m.Stable != "v1" || m.Canary != "v2" || m.CanaryPercent != 10 || m.Sticky != "user" {
		t.Errorf("after refused writes: %+v, want the split set first", m)
	}
	if h := g.history(t, "chat"); len(h) != history {
		t.Errorf("refused writes added history: %+v", h)
	}
}

// A field of a rollout plan with a value of the wrong type is a 400 naming it in param as
// validation names a step's fields, index included: min_duration as a number or a word that is
// not a duration as much as canary_percent as a string. Nothing changes.
func TestRolloutPlanTypeErrorsNameTheField(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	for _, tt := range []struct{ body, param, says string }{
		{`{"canary":"v2","steps":[{"canary_percent":10,"min_duration":300}]}`, "steps[0].min_duration", `a duration such as \"5m\", not 300`},
		{`{"canary":"v2","steps":[{"canary_percent":10,"min_duration":"1m"},{"canary_percent":100,"min_duration":"soon"}]}`, "steps[1].min_duration", `not \"soon\"`},
		{`{"canary":"v2","steps":[{"canary_percent":10,"min_duration":"-5m"}]}`, "steps[0].min_duration", `not \"-5m\"`},
		{`{"canary":"v2","steps":[{"canary_percent":10,"min_duration":{"m":5}}]}`, "steps[0].min_duration", "not an object"},
		{`{"canary":"v2","steps":[{"canary_percent":10},{"canary_percent":"fifty"}]}`, "steps[1].canary_percent", "steps[1].canary_percent must be an integer, not a string."},
		{`{"canary":"v2","steps":[{"canary_percent":10},{"canary_percent":100,"MIN_REQUESTS":-1}]}`, "steps[1].MIN_REQUESTS", "steps[1].MIN_REQUESTS must be a non-negative integer, not -1."},
		{`{"canary":"v2","steps":[{"canary_percent":10}],"checks":{"max_p95_latency_ratio":"2"}}`, "checks.max_p95_latency_ratio", "checks.max_p95_latency_ratio must be a number, not a string."},
	} {
		res := g.refused(t, 400, tt.param, "POST", "/admin/models/chat/rollouts", opsToken, tt.body)
		if !strings.Contains(string(res.body), tt.says) {
			t.Errorf("%s: %s, want a message with %s", tt.body, res.body, tt.says)
		}
	}
	g.write(t, "POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":10,"min_duration":null},{"canary_percent":100,"min_duration":"1h"}]}`)
}

// A key given twice in an admin body, at any depth, is a 400 naming it: encoding/json would
// keep the last copy (matched without regard to case), so the write would do what a reader of
// the body's first copy did not expect. Nothing changes.
func TestDeployRepeatedKeysAreRefused(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	backend := `{"url":"` + f.URL + `","kind":"` + f.Kind + `","model":"` + f.Model + `"`
	for _, tt := range []struct{ method, path, body, param string }{
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","stable":"v2"}`, "stable"},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","Stable":"v2"}`, "Stable"},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","st\u0061ble":"v2"}`, "stable"},
		{"PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":5,"percent":50}`, "percent"},
		{"POST", "/admin/models/chat/versions?probe=false", `{"version":"v3","version":"v4","backends":[` + backend + `}]}`, "version"},
		{"POST", "/admin/models/chat/versions?probe=false", `{"version":"v3","backends":[` + backend + `,"url":"http://127.0.0.1:1"}]}`, "backends[0].url"},
		{"POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":100}],"steps":[{"canary_percent":10}]}`, "steps"},
		{"POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":10},{"canary_percent":100,"canary_percent":50}]}`, "steps[1].canary_percent"},
		{"POST", "/admin/models/chat/rollback", `{"to":"v2","to":"v1"}`, "to"},
	} {
		res := g.refused(t, 400, tt.param, tt.method, tt.path, opsToken, tt.body)
		if !strings.Contains(string(res.body), "more than once") {
			t.Errorf("%s %s %s: %s, want a message saying the key is repeated", tt.method, tt.path, tt.body, res.body)
		}
	}
	if m, _ := g.getModel(t, "chat"); m.Stable != "v1" || m.versionNames() != "v1,v2" || m.Rollout != nil {
		t.Errorf("after refused writes: %+v, want v1 stable, versions v1,v2 and no rollout", m)
	}
}

// Writing the split or shadow an alias already has answers 200 with the current state and
// revision, and records nothing; a stale If-Match still fails it. During a rollout, it leaves
// the rollout running.
func TestDeployRepeatedWriteIsNoOp(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()), version("v3", f.backend()))))
	split := `{"stable":"v1","canary":"v2","canary_percent":10,"sticky":"user"}`
	set := g.write(t, "PUT", "/admin/models/chat/traffic", split)
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v3","percent":5}`)
	before, beforeRes := g.getModel(t, "chat")
	history := g.history(t, "chat")
	for _, w := range []struct{ method, path, body string }{
		{"PUT", "/admin/models/chat/traffic", split},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10,"sticky":"user"}`},
		{"PUT", "/admin/models/chat/shadow", `{"version":"v3","percent":5}`},
	} {
		res := g.call(t, w.method, w.path, opsToken, w.body, "If-Match", etagOf(before.Revision))
		var got struct {
			Revision uint64   `json:"revision"`
			Model    modelDoc `json:"model"`
		}
		decode(t, res, &got)
		if res.status != 200 || got.Revision != before.Revision || got.Model.Revision != before.Revision || res.header.Get("ETag") != etagOf(before.Revision) {
			t.Errorf("%s %s again: %d %s, want 200 at revision %d", w.method, w.path, res.status, res.body, before.Revision)
		}
		g.refused(t, 412, "If-Match", w.method, w.path, opsToken, w.body, "If-Match", etagOf(set.Revision-1))
	}
	after, afterRes := g.getModel(t, "chat")
	if after.Revision != before.Revision || string(afterRes.body) != string(beforeRes.body) {
		t.Errorf("a repeated write changed the model:\nbefore %s\nafter  %s", beforeRes.body, afterRes.body)
	}
	if h := g.history(t, "chat"); len(h) != len(history) {
		t.Errorf("a repeated write added history: %+v", h[len(history):])
	}

	// A rollout at its first step: re-sending its split does not end it.
	g.write(t, "POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":20,"min_duration":"1h"},{"canary_percent":100}]}`)
	ro, _ := g.getModel(t, "chat")
	res := g.call(t, "PUT", "/admin/models/chat/traffic", opsToken, `{"stable":"v1","canary":"v2","canary_percent":20,"sticky":"user"}`)
	if res.status != 200 {
		t.Fatalf("the rollout's split again: %d %s", res.status, res.body)
	}
	if m, _ := g.getModel(t, "chat"); m.Rollout == nil || m.Rollout.State != "running" || m.Revision != ro.Revision {
		t.Errorf("after re-sending the rollout's split: revision %d (was %d), rollout %+v; want it running, unchanged", m.Revision, ro.Revision, m.Rollout)
	}
}

// An alias created by mistake can be removed: DELETE /admin/models/{alias} takes it off the
// served table, /v1/models and the store, with its cache; it honours If-Match and the roles,
// and is refused while a rollout runs. An alias from the config file stays deleted after a
// restart: the config seeds only an empty store.
func TestDeployDeleteModel(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	path := filepath.Join(t.TempDir(), "llmgate.db")
	cfg := newConfig(t, func(c *config.Config) {
		tokens(c)
		c.State.Path = path
	}, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend())), cached(model("old", "o1", version("o1", f.backend()))))
	g := startGatewayOpts(t, cfg, gateway.Options{})

	g.write(t, "POST", "/admin/models/typoalias/versions?probe=false", deployBody("v1", f))
	g.refused(t, 409, "version", "DELETE", "/admin/models/typoalias/versions/v1", opsToken, "") // its stable
	typo, _ := g.getModel(t, "typoalias")
	g.refused(t, 412, "If-Match", "DELETE", "/admin/models/typoalias", opsToken, "", "If-Match", etagOf(typo.Revision-1))
	g.refused(t, 403, "", "DELETE", "/admin/models/typoalias", viewerToken, "")
	if res := g.call(t, "DELETE", "/admin/models/typoalias?force=1", opsToken, ""); res.status != 400 {
		t.Errorf("DELETE with an unknown parameter: %d %s", res.status, res.body)
	} else if _, param, _ := envelope(t, res.body); param != "force" {
		t.Errorf("DELETE with an unknown parameter: %s", res.body)
	}
	if res := g.call(t, "DELETE", "/admin/models/nosuch", opsToken, ""); res.status != 404 {
		t.Errorf("DELETE an unknown alias: %d %s", res.status, res.body)
	} else if _, param, code := envelope(t, res.body); param != "alias" || code != "model_not_found" {
		t.Errorf("DELETE an unknown alias: %s", res.body)
	}
	chatBefore := g.history(t, "chat")

	res := g.call(t, "DELETE", "/admin/models/typoalias", opsToken, "", "If-Match", etagOf(typo.Revision))
	var del struct {
		Revision uint64 `json:"revision"`
		Deleted  struct {
			Alias    string   `json:"alias"`
			Versions []string `json:"versions"`
		} `json:"deleted"`
	}
	decode(t, res, &del)
	if res.status != 200 || del.Revision != typo.Revision+1 || del.Deleted.Alias != "typoalias" || strings.Join(del.Deleted.Versions, ",") != "v1" {
		t.Fatalf("DELETE typoalias: %d %s", res.status, res.body)
	}
	if res := g.call(t, "GET", "/admin/models/typoalias", viewerToken, ""); res.status != 404 {
		t.Errorf("GET after DELETE: %d %s", res.status, res.body)
	}
	if res := g.do(t, "GET", "/v1/models", ""); strings.Contains(string(res.body), "typoalias") {
		t.Errorf("/v1/models still lists the deleted alias: %s", res.body)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", strings.Replace(chatAs("u", false), `"model":"chat"`, `"model":"typoalias"`, 1)); res.status != 404 {
		t.Errorf("a request to the deleted alias: %d %s", res.status, res.body)
	}
	if h := g.history(t, "chat"); len(h) != len(chatBefore) {
		t.Errorf("deleting typoalias changed chat's history: %+v", h)
	}

	// While a rollout runs (or is paused) the alias cannot be deleted; once it is aborted it can.
	g.write(t, "POST", "/admin/models/chat/rollouts", `{"canary":"v2","steps":[{"canary_percent":10,"min_duration":"1h"},{"canary_percent":100}]}`)
	res = g.refused(t, 409, "alias", "DELETE", "/admin/models/chat", opsToken, "")
	if _, _, code := envelope(t, res.body); code != "rollout_running" {
		t.Errorf("DELETE during a rollout: %s", res.body)
	}
	g.write(t, "POST", "/admin/models/chat/rollout/pause", "")
	g.refused(t, 409, "alias", "DELETE", "/admin/models/chat", opsToken, "")
	g.write(t, "POST", "/admin/models/chat/rollout/abort", "")

	// The config's alias, with a cached answer: deleted with its cache, and still gone after
	// a restart on the same state file.
	body := strings.Replace(cacheBody("Keep this", ""), `"model":"chat"`, `"model":"old"`, 1)
	g.do(t, "POST", "/v1/chat/completions", body)
	g.untilHit(t, body)
	g.write(t, "DELETE", "/admin/models/chat/versions/v2", "")
	if res := g.call(t, "DELETE", "/admin/models/old", opsToken, ""); res.status != 200 {
		t.Fatalf("DELETE old: %d %s", res.status, res.body)
	}
	if res := g.call(t, "GET", "/admin/cache", viewerToken, ""); !strings.Contains(string(res.body), `"entries": 0`) {
		t.Errorf("the deleted alias's cache entries are left: %s", res.body)
	}
	if err := g.Close(); err != nil { // flushes the log
		t.Fatal(err)
	}
	if logs := g.logs.String(); strings.Count(logs, `"msg":"model deleted"`) != 2 || !strings.Contains(logs, `"model":"typoalias"`) {
		t.Errorf("the deletions are not in the log:\n%s", logs)
	}
	g2 := startGatewayOpts(t, cfg, gateway.Options{})
	res = g2.call(t, "GET", "/admin/models", viewerToken, "")
	var list struct {
		Models []modelDoc `json:"models"`
	}
	decode(t, res, &list)
	if len(list.Models) != 1 || list.Models[0].Alias != "chat" || list.Models[0].versionNames() != "v1" {
		t.Fatalf("after a restart: %s, want chat (v1) alone", res.body)
	}
	if res := g2.do(t, "GET", "/v1/models", ""); strings.Contains(string(res.body), `"old`) {
		t.Errorf("the config's deleted alias came back on restart: %s", res.body)
	}
}

// Aliases and version names an admin URL could never address are refused at deploy, as the
// names rule of the config does for '@'; nothing is created.
func TestDeployRefusesUnaddressableNames(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()))))
	models := g.do(t, "GET", "/v1/models", "")
	for _, alias := range []string{"%2E%2E", "..%2Fx", "x%2F..", ".", "a%2F%2Fb", "%2Fa"} {
		res := g.call(t, "POST", "/admin/models/"+alias+"/versions?probe=false", opsToken, deployBody("v1", f))
		if res.status != 400 {
			t.Errorf("deploy to alias %s: %d %s", alias, res.status, res.body)
			continue
		}
		if _, param, _ := envelope(t, res.body); param != "alias" {
			t.Errorf("deploy to alias %s: %s", alias, res.body)
		}
	}
	for _, v := range []string{"..", "../v2", "./v2", "v2/"} {
		g.refused(t, 400, "version", "POST", "/admin/models/chat/versions?probe=false", opsToken, deployBody(v, f))
	}
	if after := g.do(t, "GET", "/v1/models", ""); string(after.body) != string(models.body) {
		t.Errorf("/v1/models changed:\nbefore %s\nafter  %s", models.body, after.body)
	}
}

// A deleted version takes its statistics with it: a version deployed later under the same name
// starts from nothing instead of showing the old one's requests.
func TestDeployDeletedVersionStatsForgotten(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1", Seed: 1})
	v2 := startFake(t, fakellm.Options{Model: "m2", Seed: 2})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()))))
	g.write(t, "POST", "/admin/models/chat/versions", deployBody("v2", v2))
	for range 3 {
		if res := g.do(t, "POST", "/v1/chat/completions", strings.Replace(chatBody("hello", ""), `"chat"`, `"chat@v2"`, 1)); res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
	}
	v2Requests := func() string {
		res := g.call(t, "GET", "/admin/stats/chat", viewerToken, "")
		var out struct {
			Versions []struct {
				Version string
				Summary map[string]any
			}
		}
		decode(t, res, &out)
		for _, v := range out.Versions {
			if v.Version == "v2" {
				return fmt.Sprint(v.Summary["requests"])
			}
		}
		return "absent"
	}
	waitFor(t, "v2's three requests in its statistics", func() bool { return v2Requests() == "3" })
	g.write(t, "DELETE", "/admin/models/chat/versions/v2", "")
	v1InFlight := false
	for _, s := range parseMetrics(t, g.metrics(t)) {
		if s.labels["model"] == "chat" && s.labels["version"] == "v2" {
			t.Fatalf("/metrics still has a series of the deleted v2: %s %v", s.name, s.labels)
		}
		// Labelled by backend alone: it goes with the last version that used the backend.
		if s.name == "llmgate_backend_in_flight" && s.labels["backend"] == v2.URL {
			t.Errorf("/metrics still has the in-flight gauge of v2's backend, which no version uses: %v", s.labels)
		}
		v1InFlight = v1InFlight || s.name == "llmgate_backend_in_flight" && s.labels["backend"] == v1.URL
	}
	if !v1InFlight {
		t.Errorf("/metrics lost the in-flight gauge of v1's backend, which v1 still uses")
	}
	g.write(t, "POST", "/admin/models/chat/versions", deployBody("v2", v2))
	if got := v2Requests(); got != "0" && got != "absent" {
		t.Fatalf("the redeployed v2 shows %s requests of the deleted one", got)
	}
}

// A canary whose backends are all out does not fail its share of users: a request the canary
// fails before the first byte goes to stable, and once the canary's backend is ejected, stable
// answers its share directly (each counted in llmgate_canary_fallbacks_total, and as an error
// in the canary's statistics so that its analysis still sees a canary that cannot answer),
// buffered and streamed. A request pinned to the canary is not moved.
func TestCanaryFallsBackToStable(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", closedBackend(t)))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for i := range 3 { // from the first request on, before the ejection too
		for _, extra := range []string{`,"user":"u1"`, `,"user":"u1","stream":true`} {
			res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", extra))
			if res.status != 200 || res.header.Get("X-Llmgate-Version") != "v1" || !strings.Contains(string(res.body), "m1") {
				t.Fatalf("request %d (%s) of the canary's share: status %d version %q: %s", i, extra, res.status, res.header.Get("X-Llmgate-Version"), res.body)
			}
		}
	}
	for _, v := range versionSummaries(t, g, "chat") {
		if v.Version == "v2" && (v.Summary.Requests != 6 || v.Summary.ErrorRate != 1) {
			t.Fatalf("the canary's statistics: %d requests, error rate %v; want its share's 6, all errors", v.Summary.Requests, v.Summary.ErrorRate)
		}
	}
	for range 5 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", `,"user":"u1"`)); res.status != 200 || res.header.Get("X-Llmgate-Version") != "v1" {
			t.Fatalf("with the canary out: status %d version %q: %s", res.status, res.header.Get("X-Llmgate-Version"), res.body)
		}
	}
	if n, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_canary_fallbacks_total", nil); n < 5 {
		t.Fatalf("llmgate_canary_fallbacks_total = %v, want at least 5", n)
	}
	waitFor(t, "the ejection's log line naming the version it takes out", func() bool {
		return strings.Contains(g.logs.String(), `"msg":"backend ejected"`) && strings.Contains(g.logs.String(), `"serves":["chat@v2"]`)
	})
	if res := g.do(t, "POST", "/v1/chat/completions", strings.Replace(chatBody("hello", ""), `"chat"`, `"chat@v2"`, 1)); res.status < 500 {
		t.Fatalf("a request pinned to the canary was moved: status %d: %s", res.status, res.body)
	}
}

// A canary at its limit (every backend answering 429) is the canary's failure, not the
// client's: its share goes to stable, which has room, rather than getting the 429.
func TestCanaryRateLimitedFallsBackToStable(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	limited := rawBackend(t, func(c net.Conn) {
		requestsOn(c, func(int, *http.Request, []byte) bool {
			writeJSONReply(c, "429 Too Many Requests", "Retry-After: 1\r\n", `{"error":{"message":"Too many requests","type":"RateLimitError","param":null,"code":429}}`)
			return true
		})
	})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", limited))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for _, extra := range []string{`,"user":"u1"`, `,"user":"u1","stream":true`} {
		res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", extra))
		if res.status != 200 || res.header.Get("X-Llmgate-Version") != "v1" {
			t.Fatalf("a request (%s) of the rate-limited canary's share: status %d version %q: %s", extra, res.status, res.header.Get("X-Llmgate-Version"), res.body)
		}
	}
	if n, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_canary_fallbacks_total", nil); n != 2 {
		t.Errorf("llmgate_canary_fallbacks_total = %v, want 2", n)
	}
}

// A broken canary version fails on every backend it has. With the default two attempts and a
// canary of two backends, its users got the second backend's 502 where stable had room: stable
// gets an attempt once the canary's have failed. A canary backend that fails beside one that
// works is retried on the canary, as stable's are: its users stay on their version, and the
// canary's statistics do not count a failure its sibling absorbed, which stable's never do.
func TestCanaryWithEveryBackendFailingFallsBackToStable(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	b1 := startFake(t, fakellm.Options{Model: "m2", ErrorRate: 1})
	b2 := startFake(t, fakellm.Options{Model: "m2", ErrorRate: 1})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", b1.backend(), b2.backend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for i := range 4 {
		for _, extra := range []string{`,"user":"u1"`, `,"user":"u1","stream":true`} {
			res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", extra))
			if res.status != 200 || res.header.Get("X-Llmgate-Version") != "v1" {
				t.Fatalf("request %d (%s) of the broken canary's share: status %d version %q: %s", i, extra, res.status, res.header.Get("X-Llmgate-Version"), res.body)
			}
		}
	}
	// Pinned requests are never moved, and get every attempt on their version.
	if res := g.do(t, "POST", "/v1/chat/completions", strings.Replace(chatBody("hello", ""), `"chat"`, `"chat@v2"`, 1)); res.status < 500 {
		t.Fatalf("a request pinned to the broken canary: status %d: %s", res.status, res.body)
	}

	flaky := startFake(t, fakellm.Options{Model: "m3", ErrorRate: 1})
	works := startFake(t, fakellm.Options{Model: "m3"})
	g = startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v3", flaky.backend(), works.backend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v3","canary_percent":100,"sticky":"user"}`)
	for i := range 6 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", `,"user":"u1"`)); res.status != 200 || res.header.Get("X-Llmgate-Version") != "v3" {
			t.Fatalf("request %d with one canary backend failing beside one that works: status %d version %q, want 200 from v3", i, res.status, res.header.Get("X-Llmgate-Version"))
		}
	}
}

// A canary that does not serve its model (its backend answers 404) fails its share as a canary
// that is down does: stable answers them, and the canary's statistics count the errors.
func TestCanaryNotServingItsModelFallsBackToStable(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", notServedBackend(t)))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for _, extra := range []string{`,"user":"u1"`, `,"user":"u1","stream":true`} {
		res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", extra))
		if res.status != 200 || res.header.Get("X-Llmgate-Version") != "v1" {
			t.Fatalf("a request (%s) of the canary's share: status %d version %q: %s", extra, res.status, res.header.Get("X-Llmgate-Version"), res.body)
		}
	}
	if n, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_canary_fallbacks_total", nil); n != 2 {
		t.Errorf("llmgate_canary_fallbacks_total = %v, want 2", n)
	}
}

// A promote freezes the new stable's drift reference (reference: on_promote); frozen from too
// few requests, every verdict would stay insufficient, and the log says so as a manual freeze does.
func TestPromoteWarnsOfThinReference(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	v2 := startFake(t, fakellm.Options{Model: "m2"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", v2.backend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10}`)
	if res := g.do(t, "POST", "/v1/chat/completions", strings.Replace(chatBody("hello", ""), `"chat"`, `"chat@v2"`, 1)); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	g.write(t, "POST", "/admin/models/chat/promote", "")
	waitFor(t, "the warning about the thin reference", func() bool {
		return strings.Contains(g.logs.String(), `"msg":"drift reference frozen at promote with too few requests","model":"chat","version":"v2"`)
	})
}

// Admin URLs answer as HTTP says: one that does not exist (an unknown rollout action, a drift
// or stats path of the wrong length) is a 404 unknown_url, one that exists asked with the wrong
// method a 405 naming the methods it takes in Allow, and an unknown query parameter a 400
// naming it. None of them changes anything.
func TestAdminURLs(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	g.served(t, "u1") // statistics for chat v1
	before, beforeRes := g.getModel(t, "chat")
	for _, tt := range []struct {
		method, path string
		status       int
		code, param  string
		allow        string
	}{
		{"POST", "/admin/models/chat/rollout/frobnicate", 404, "unknown_url", "", ""},
		{"POST", "/admin/models/chat/frobnicate", 404, "unknown_url", "", ""},
		{"POST", "/admin/models/chat/traffic/v2", 404, "unknown_url", "", ""},
		{"GET", "/admin/models/chat/rollout/pause", 405, "", "", "POST"},
		{"POST", "/admin/models/chat/traffic", 405, "", "", "PUT"},
		{"GET", "/admin/models/chat/promote", 405, "", "", "POST"},
		{"PUT", "/admin/models/chat", 405, "", "", "GET, DELETE"},
		{"GET", "/admin/models/chat/versions/v2", 405, "", "", "DELETE"},
		{"POST", "/admin/models", 405, "", "", "GET"},
		{"GET", "/admin/drift/chat", 404, "unknown_url", "", ""},
		{"GET", "/admin/stats", 404, "unknown_url", "", ""},
		{"GET", "/admin/stats/chat/v1", 404, "unknown_url", "", ""},
		{"GET", "/admin/drift/chat/v1/frobnicate", 404, "unknown_url", "", ""},
		{"POST", "/admin/drift", 405, "", "", "GET"},
		{"GET", "/admin/drift/chat/v1/reference", 405, "", "", "POST"},
		{"DELETE", "/admin/stats/chat", 405, "", "", "GET"},
		{"PUT", "/admin/cache", 405, "", "", "GET, DELETE"},
		{"POST", "/metrics", 405, "", "", "GET, HEAD"},
		{"DELETE", "/healthz", 405, "", "", "GET, HEAD"},
		{"GET", "/admin/drift?model=chat", 400, "", "model", ""},
		{"GET", "/admin/drift/chat/v1?window=1h", 400, "", "window", ""},
		{"GET", "/admin/stats/chat?since=1h", 400, "", "since", ""},
		{"POST", "/admin/drift/chat/v1/reference?dry_run=1", 400, "", "dry_run", ""},
	} {
		res := g.call(t, tt.method, tt.path, opsToken, "")
		if res.status != tt.status {
			t.Errorf("%s %s: status %d %s, want %d", tt.method, tt.path, res.status, res.body, tt.status)
			continue
		}
		if _, param, code := envelope(t, res.body); code != tt.code || param != tt.param {
			t.Errorf("%s %s: code %q param %q, want %q %q: %s", tt.method, tt.path, code, param, tt.code, tt.param, res.body)
		}
		if got := res.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
	if after, afterRes := g.getModel(t, "chat"); after.Revision != before.Revision || string(afterRes.body) != string(beforeRes.body) {
		t.Errorf("refused requests changed the model:\nbefore %s\nafter  %s", beforeRes.body, afterRes.body)
	}
	if res := g.call(t, "GET", "/admin/drift/chat/v1", viewerToken, ""); res.status != 200 {
		t.Errorf("GET /admin/drift/chat/v1: %d %s", res.status, res.body)
	}
}

// An admin deploy keeps an explicit "weight": 0, which drains the backend as it does in the
// config file; a weight left out is 1. A version whose backends are all drained is refused, as
// the config refuses it, and the server-only fields of a version are unknown fields.
func TestDeployDrainedBackend(t *testing.T) {
	tokens := withAdminTokens(t)
	live := startFake(t, fakellm.Options{Model: "live"})
	drained := startFake(t, fakellm.Options{Model: "drained"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", live.backend()))))
	spec := func(f *fake, weight string) string {
		return `{"url":"` + f.URL + `","kind":"` + f.Kind + `","model":"` + f.Model + `"` + weight + `}`
	}
	g.refused(t, 400, "backends", "POST", "/admin/models/chat/versions?probe=false", opsToken,
		`{"version":"v2","backends":[`+spec(drained, `,"weight":0`)+`]}`)
	g.refused(t, 400, "created", "POST", "/admin/models/chat/versions?probe=false", opsToken,
		`{"version":"v2","created":"2020-01-01T00:00:00Z","backends":[`+spec(live, ``)+`]}`)
	// A misspelt key inside a list is named where it is.
	g.refused(t, 400, "backends[1].wieght", "POST", "/admin/models/chat/versions?probe=false", opsToken,
		`{"version":"v2","backends":[`+spec(live, ``)+`,`+spec(drained, `,"wieght":2`)+`]}`)
	g.refused(t, 400, "steps[1].canary_pct", "POST", "/admin/models/chat/rollouts", opsToken,
		`{"canary":"v1","steps":[{"canary_percent":10},{"canary_pct":50}]}`)
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", `{"version":"v2","backends":[`+spec(drained, `,"weight":0`)+`,`+spec(live, ``)+`]}`)

	res := g.call(t, "GET", "/admin/models/chat", viewerToken, "")
	var m struct {
		Versions []struct {
			Name     string `json:"version"`
			Backends []struct {
				URL    string `json:"url"`
				Weight int    `json:"weight"`
			} `json:"backends"`
		} `json:"versions"`
	}
	decode(t, res, &m)
	if len(m.Versions) != 2 || len(m.Versions[1].Backends) != 2 || m.Versions[1].Backends[0].Weight != 0 || m.Versions[1].Backends[1].Weight != 1 {
		t.Fatalf("v2 as deployed: %s; want the drained backend at weight 0 and the other at 1", res.body)
	}
	before := drained.accept.Load()
	for i := range 10 {
		body := `{"model":"chat@v2","user":"u` + strconv.Itoa(i) + `","max_tokens":4,"messages":[{"role":"user","content":"Say hello."}]}`
		if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
			t.Fatalf("chat@v2: %d %s", res.status, res.body)
		}
	}
	if n := drained.accept.Load() - before; n != 0 {
		t.Errorf("the drained backend accepted %d connections, want 0", n)
	}
}

// Deleting an alias drops its cache counters: GET /admin/cache no longer lists it, and an alias
// deployed later under the name starts from zero instead of inheriting the old hits and misses.
func TestDeployDeleteModelForgetsCacheStats(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend())), cached(model("old", "o1", version("o1", f.backend())))))
	type cacheDoc struct {
		Models []struct {
			Model  string `json:"model"`
			Hits   uint64 `json:"hits"`
			Misses uint64 `json:"misses"`
		} `json:"models"`
	}
	cacheOf := func(alias string) (hits, misses uint64, listed bool) {
		t.Helper()
		var c cacheDoc
		decode(t, g.call(t, "GET", "/admin/cache", viewerToken, ""), &c)
		for _, m := range c.Models {
			if m.Model == alias {
				return m.Hits, m.Misses, true
			}
		}
		return 0, 0, false
	}
	body := strings.Replace(cacheBody("Keep this", ""), `"model":"chat"`, `"model":"old"`, 1)
	g.do(t, "POST", "/v1/chat/completions", body)
	g.untilHit(t, body)
	if hits, _, listed := cacheOf("old"); !listed || hits == 0 {
		t.Fatalf("before the delete: old listed %v with %d hits, want a hit counted", listed, hits)
	}
	if res := g.call(t, "DELETE", "/admin/models/old", opsToken, ""); res.status != 200 {
		t.Fatalf("DELETE old: %d %s", res.status, res.body)
	}
	if hits, misses, listed := cacheOf("old"); listed {
		t.Errorf("GET /admin/cache still lists the deleted alias (hits %d, misses %d)", hits, misses)
	}
	g.write(t, "POST", "/admin/models/old/versions?probe=false", deployBody("o2", f))
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 || res.header.Get("X-Llmgate-Cache") != "miss" {
		t.Fatalf("the re-created alias: %d cache %q, want a miss", res.status, res.header.Get("X-Llmgate-Cache"))
	}
	if hits, misses, _ := cacheOf("old"); hits != 0 || misses != 1 {
		t.Errorf("the re-created alias: %d hits, %d misses; want 0 and 1 (its own request alone)", hits, misses)
	}
}

// An admin deploy may name as api_key_env only a variable a backend of the config file uses or
// one listed in admin.api_key_envs: the gateway sends its value to the URL the deploy gives, so
// naming the admin token's variable (or any other secret of the process) would hand it to
// whoever runs that URL.
func TestDeployAPIKeyEnvRestricted(t *testing.T) {
	tokens := withAdminTokens(t)
	t.Setenv("LLMGATE_E2E_CFG_KEY", "cfg-key")
	t.Setenv("LLMGATE_E2E_EXTRA_KEY", "extra-key")
	t.Setenv("LLMGATE_E2E_OTHER_SECRET", "other")
	f := startFake(t, fakellm.Options{})
	b := f.backend()
	b.APIKeyEnv = "LLMGATE_E2E_CFG_KEY"
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		c.Admin.APIKeyEnvs = []string{"LLMGATE_E2E_EXTRA_KEY"}
	}, model("chat", "v1", version("v1", b))))
	body := func(name, env string) string {
		return `{"version":"` + name + `","backends":[{"url":"` + f.URL + `","kind":"` + f.Kind + `","model":"` + f.Model + `"},` +
			`{"url":"` + f.URL + `/v2","kind":"` + f.Kind + `","model":"` + f.Model + `","api_key_env":"` + env + `"}]}`
	}
	for _, env := range []string{"LLMGATE_E2E_OPS_TOKEN", "LLMGATE_E2E_OTHER_SECRET", "HOME"} {
		res := g.refused(t, 400, "backends[1].api_key_env", "POST", "/admin/models/chat/versions?probe=false", opsToken, body("v2", env))
		if !strings.Contains(string(res.body), "admin.api_key_envs") {
			t.Errorf("api_key_env %s refused without saying how to allow it: %s", env, res.body)
		}
	}
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", body("v2", "LLMGATE_E2E_CFG_KEY"))
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", body("v3", "LLMGATE_E2E_EXTRA_KEY"))
}

// A restart whose config no longer allows a stored backend's api_key_env says so: the store
// keeps the backend and its key, and the operator learns which version still gets the value.
func TestDeployRevokedAPIKeyEnvWarned(t *testing.T) {
	tokens := withAdminTokens(t)
	t.Setenv("LLMGATE_E2E_EXTRA_KEY", "extra-key")
	f := startFake(t, fakellm.Options{})
	path := filepath.Join(t.TempDir(), "llmgate.db")
	allow := func(envs ...string) *config.Config {
		return newConfig(t, func(c *config.Config) {
			tokens(c)
			c.State.Path = path
			c.Admin.APIKeyEnvs = envs
		}, model("chat", "v1", version("v1", f.backend())))
	}
	g := startGatewayOpts(t, allow("LLMGATE_E2E_EXTRA_KEY"), gateway.Options{})
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", `{"version":"v2","backends":[{"url":"`+f.URL+
		`","kind":"`+f.Kind+`","model":"`+f.Model+`","api_key_env":"LLMGATE_E2E_EXTRA_KEY"}]}`)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		envs []string
		warn bool
	}{{[]string{"LLMGATE_E2E_EXTRA_KEY"}, false}, {nil, true}} {
		g := startGatewayOpts(t, allow(tt.envs...), gateway.Options{})
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		logs := g.logs.String()
		warned := strings.Contains(logs, "no longer allows") && strings.Contains(logs, `"version":"v2"`) && strings.Contains(logs, "LLMGATE_E2E_EXTRA_KEY")
		if warned != tt.warn {
			t.Errorf("admin.api_key_envs %v: warned %v, want %v:\n%s", tt.envs, warned, tt.warn, logs)
		}
		if strings.Contains(logs, "extra-key") {
			t.Errorf("the log holds the variable's value:\n%s", logs)
		}
	}
}

// A restart whose admin.allow_backends no longer allows a backend an admin deploy added says
// which version still points there; the config file's own backends are not checked.
func TestDeployDisallowedBackendWarned(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	path := filepath.Join(t.TempDir(), "llmgate.db")
	allow := func(nets ...string) *config.Config {
		return newConfig(t, func(c *config.Config) {
			tokens(c)
			c.State.Path = path
			c.Admin.AllowBackends = nets
		}, model("chat", "v1", version("v1", f.backend())))
	}
	g := startGatewayOpts(t, allow("127.0.0.0/8"), gateway.Options{})
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", `{"version":"v2","backends":[{"url":"`+f.URL+
		`/v2","kind":"`+f.Kind+`","model":"`+f.Model+`"}]}`)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		nets []string
		warn bool
	}{{[]string{"127.0.0.0/8"}, false}, {nil, false}, {[]string{"10.0.0.0/8"}, true}} {
		g := startGatewayOpts(t, allow(tt.nets...), gateway.Options{})
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		logs := g.logs.String()
		warned := strings.Contains(logs, "outside admin.allow_backends")
		if warned != tt.warn {
			t.Errorf("admin.allow_backends %v: warned %v, want %v:\n%s", tt.nets, warned, tt.warn, logs)
		}
		if warned && (!strings.Contains(logs, `"version":"v2"`) || strings.Contains(logs, `"version":"v1"`)) {
			t.Errorf("the warning should name v2, the admin deploy, and not v1 from the config file:\n%s", logs)
		}
	}
}

// A value of the wrong type in any admin body is a 400 that names the field and says, in JSON's
// words, what it wants and what it got: no Go type, struct or package names. Nothing changes.
func TestAdminTypeErrorsSpeakJSON(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	backend := `{"url":"` + f.URL + `","model":"` + f.Model + `"`
	for _, tt := range []struct{ method, path, body, param, says string }{
		{"POST", "/admin/models/chat/versions?probe=false", `{"version":"v3","backends":{"url":"x"}}`, "backends", "backends must be an array, not an object."},
		{"POST", "/admin/models/chat/versions?probe=false", `{"version":"v3","backends":[` + backend + `,"weight":1.5}]}`, "backends[0].weight", "backends[0].weight must be an integer, not 1.5."},
		{"POST", "/admin/models/chat/versions?probe=false", `{"version":3,"backends":[` + backend + `}]}`, "version", "version must be a string, not a number."},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":"10"}`, "canary_percent", "canary_percent must be a number, not a string."},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":1e400}`, "canary_percent", "canary_percent must be a number in range, not 1e400."},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":true}`, "canary_percent", "canary_percent must be a number, not a boolean."},
		{"PUT", "/admin/models/chat/traffic", `[]`, "", "the body must be an object, not an array."},
		{"PUT", "/admin/models/chat/shadow", `{"version":["v2"],"percent":5}`, "version", "version must be a string, not an array."},
		{"POST", "/admin/models/chat/rollback", `{"to":1}`, "to", "to must be a string, not a number."},
	} {
		res := g.refused(t, 400, tt.param, tt.method, tt.path, opsToken, tt.body)
		msg := string(res.body)
		if !strings.Contains(msg, tt.says) || strings.Contains(msg, "Go ") || strings.Contains(msg, "unmarshal") {
			t.Errorf("%s %s %s: %s, want a message with %q and no Go words", tt.method, tt.path, tt.body, msg, tt.says)
		}
	}
	if m, _ := g.getModel(t, "chat"); m.Stable != "v1" || m.versionNames() != "v1,v2" || m.Canary != "" {
		t.Errorf("after refused writes: %+v", m)
	}
}

// A backend's 404 may be the client's own: an endpoint the model lacks (embeddings on a chat
// model, which vLLM serves no route for) answers 404 on stable as on the canary. The canary's
// share goes to stable, whose 404 the client gets, but the canary did not fail what stable
// serves: its statistics must not count those requests as its errors, or clients calling the
// wrong endpoint roll back a good canary (stable's count them as the client's).
func TestCanaryNotChargedForAClientsOwn404(t *testing.T) {
	tokens := withAdminTokens(t)
	const notFound = `{"detail":"Not Found"}`
	stable, canary := cannedBackend(t, 404, http.Header{"Content-Type": {"application/json"}}, notFound), cannedBackend(t, 404, http.Header{"Content-Type": {"application/json"}}, notFound)
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", stable), version("v2", canary))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for i := range 4 {
		res := g.do(t, "POST", "/v1/embeddings", `{"model":"chat","input":"hello","user":"u1"}`)
		if res.status != 404 {
			t.Fatalf("request %d for an endpoint no version serves: status %d: %s, want 404", i, res.status, res.body)
		}
	}
	for _, v := range versionSummaries(t, g, "chat") {
		if v.Summary.ErrorRate != 0 {
			t.Errorf("%s's statistics: %d requests, error rate %v; want no errors for the client's 404s", v.Version, v.Summary.Requests, v.Summary.ErrorRate)
		}
	}

	// A canary that does not serve what stable serves is still charged.
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	g = startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", notServedBackend(t)))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for i := range 2 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", `,"user":"u1"`)); res.status != 200 {
			t.Fatalf("request %d of a canary not serving its model: status %d: %s", i, res.status, res.body)
		}
	}
	for _, v := range versionSummaries(t, g, "chat") {
		if v.Version == "v2" && (v.Summary.Requests != 2 || v.Summary.ErrorRate != 1) {
			t.Errorf("the canary not serving its model: %d requests, error rate %v; want 2, all errors", v.Summary.Requests, v.Summary.ErrorRate)
		}
	}
}

// versionSummary is one version's summary in /admin/stats/ALIAS.
type versionSummary struct {
	Version string
	Summary struct {
		Requests  int     `json:"requests"`
		ErrorRate float64 `json:"error_rate"`
	}
}

// versionSummaries reads /admin/stats/alias with the viewer token.
func versionSummaries(t *testing.T, g *gw, alias string) []versionSummary {
	t.Helper()
	var stats struct{ Versions []versionSummary }
	if err := json.Unmarshal(g.call(t, "GET", "/admin/stats/"+alias, viewerToken, "").body, &stats); err != nil {
		t.Fatal(err)
	}
	return stats.Versions
}

// A canary whose every backend answers 403 (a hosted canary whose key may not use the model)
// does not serve what stable serves: its share goes to stable, as for a canary's 404, and the
// canary is charged. A 403 stable gives as well (a content filter refusing the request) is the
// client's, which the client gets, and not the canary's error.
func TestCanary403GoesToStable(t *testing.T) {
	tokens := withAdminTokens(t)
	const forbidden = `{"error":{"message":"You are not allowed to sample from this model","type":"invalid_request_error","param":null,"code":null}}`
	forbiddenBackend := func() config.Backend {
		return cannedBackend(t, 403, http.Header{"Content-Type": {"application/json"}}, forbidden)
	}
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", forbiddenBackend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for i := range 2 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", `,"user":"u1"`)); res.status != 200 {
			t.Fatalf("request %d of a canary refusing every request: status %d: %s, want stable's 200", i, res.status, res.body)
		}
	}
	var stats struct {
		Versions []struct {
			Version string
			Summary struct {
				Requests  int     `json:"requests"`
				ErrorRate float64 `json:"error_rate"`
			}
		}
	}
	if err := json.Unmarshal(g.call(t, "GET", "/admin/stats/chat", viewerToken, "").body, &stats); err != nil {
		t.Fatal(err)
	}
	for _, v := range stats.Versions {
		if v.Version == "v2" && (v.Summary.Requests != 2 || v.Summary.ErrorRate != 1) {
			t.Errorf("the canary refusing every request: %d requests, error rate %v; want 2, all errors", v.Summary.Requests, v.Summary.ErrorRate)
		}
	}

	// Both refuse: the client's own request; it gets the 403 and neither version is charged.
	g = startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", forbiddenBackend()), version("v2", forbiddenBackend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":100,"sticky":"user"}`)
	for i := range 2 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", `,"user":"u1"`)); res.status != 403 {
			t.Fatalf("request %d both versions refuse: status %d: %s, want 403", i, res.status, res.body)
		}
	}
	stats.Versions = nil
	if err := json.Unmarshal(g.call(t, "GET", "/admin/stats/chat", viewerToken, "").body, &stats); err != nil {
		t.Fatal(err)
	}
	for _, v := range stats.Versions {
		if v.Summary.ErrorRate != 0 {
			t.Errorf("%s's statistics: %d requests, error rate %v; want no errors for the client's 403s", v.Version, v.Summary.Requests, v.Summary.ErrorRate)
		}
	}
}

// A shadow version whose backend refuses every mirror cannot serve what stable served: with
// 403 (a hosted backend whose key may not use the model) or 404 (a model name mistyped in the
// deploy, an Ollama that has not pulled it), its statistics show the refusals as its errors,
// not as client errors that leave its error rate at 0 next to stable's, which served the same
// requests.
func TestShadowRefusalsCountAsItsErrors(t *testing.T) {
	for _, tt := range []struct {
		status int
		body   string
	}{
		{403, `{"error":{"message":"You are not allowed to sample from this model","type":"invalid_request_error","param":null,"code":null}}`},
		{404, `{"object":"error","message":"The model ` + "`m2`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}`},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			tokens := withAdminTokens(t)
			v1 := startFake(t, fakellm.Options{Model: "m1"})
			v2 := cannedBackend(t, tt.status, http.Header{"Content-Type": {"application/json"}}, tt.body)
			g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", v2))))
			g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)
			const n = 2
			for i := range n {
				if res := g.do(t, "POST", "/v1/chat/completions", chatAs("u"+strconv.Itoa(i), false)); res.status != 200 {
					t.Fatalf("request %d: status %d: %s", i, res.status, res.body)
				}
			}
			var shadow versionSummary
			waitFor(t, "the shadow's statistics to count every mirror", func() bool {
				for _, v := range versionSummaries(t, g, "chat") {
					if v.Version == "v2" {
						shadow = v
						return v.Summary.Requests == n
					}
				}
				return false
			})
			if shadow.Summary.ErrorRate != 1 {
				t.Errorf("the shadow answering %d to every mirror: error rate %v over %d requests, want 1", tt.status, shadow.Summary.ErrorRate, shadow.Summary.Requests)
			}
		})
	}
}

// Every URL of an alias that does not exist is a 404 model_not_found naming the alias, reads
// and writes alike (a deploy, which creates the alias, aside): a rollout verb answered a 409
// "no rollout for this model", as if the model were there.
func TestDeployUnknownAliasIsNotFound(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()))))
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "", ""},
		{"GET", "/history", ""},
		{"GET", "/rollout", ""},
		{"DELETE", "", ""},
		{"DELETE", "/versions/v1", ""},
		{"PUT", "/traffic", `{"stable":"v1"}`},
		{"PUT", "/shadow", `{}`},
		{"POST", "/promote", ""},
		{"POST", "/rollback", ""},
		{"POST", "/rollouts", `{"canary":"v2","steps":[{"canary_percent":10}]}`},
		{"POST", "/rollout/pause", ""},
		{"POST", "/rollout/resume", ""},
		{"POST", "/rollout/abort", ""},
	} {
		res := g.call(t, tt.method, "/admin/models/nope"+tt.path, opsToken, tt.body)
		if _, param, code := envelope(t, res.body); res.status != 404 || code != "model_not_found" || param != "alias" {
			t.Errorf("%s /admin/models/nope%s: %d %s; want 404 model_not_found for param alias", tt.method, tt.path, res.status, res.body)
		}
	}
}

// A write answers the revision of its model, the one its ETag and If-Match carry, also when it
// changed nothing after another model changed: it answered the latest revision of any model,
// which the CLI printed and which, sent back as If-Match, failed with a 412.
func TestDeployWriteAnswersItsModelsRevision(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, tokens,
		model("chat", "v1", version("v1", f.backend()), version("v2", f.backend())),
		model("other", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	set := g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":5}`)
	g.write(t, "PUT", "/admin/models/other/shadow", `{"version":"v2","percent":5}`) // a later revision, of another model
	for _, w := range []struct{ method, path, body string }{
		{"PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":5}`},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v1"}`},
	} {
		m := g.write(t, w.method, w.path, w.body) // checks that body and ETag agree
		if m.Revision != set.Revision {
			t.Errorf("%s %s changed nothing but answered model revision %d, want %d", w.method, w.path, m.Revision, set.Revision)
		}
		g.write(t, w.method, w.path, w.body, "If-Match", etagOf(m.Revision))
	}
}

// Promoting a canary none of whose backends is in service, or naming it stable in a traffic
// change, would fail every request of the model (stable has nothing to fail over to): it is a
// 409 no_backend_in_service that changes nothing, unless ?force=true. A rollback is never
// refused.
func TestDeployRefusesStableWithoutBackends(t *testing.T) {
	tokens := withAdminTokens(t)
	good := startFake(t, fakellm.Options{Model: "m"})
	broken := cannedBackend(t, 500, http.Header{"Content-Type": {"application/json"}}, `{"error":{"message":"CUDA error: out of memory","type":"InternalServerError"}}`)
	broken.Model = "m"
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		healthConfig(1)(c)
	}, model("chat", "v1", version("v1", good.backend()), version("v2", broken))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":10}`)
	for i := 0; backendUp(t, g, broken.URL) != 0; i++ {
		if i == 20 {
			t.Fatal("the failing v2 backend was not ejected")
		}
		g.do(t, "POST", "/v1/chat/completions", `{"model":"chat@v2","messages":[{"role":"user","content":"hi"}]}`)
	}

	for _, w := range []struct{ method, path, body string }{
		{"POST", "/admin/models/chat/promote", `{}`},
		{"PUT", "/admin/models/chat/traffic", `{"stable":"v2"}`},
	} {
		res := g.refused(t, 409, "version", w.method, w.path, opsToken, w.body)
		if _, _, code := envelope(t, res.body); code != "no_backend_in_service" || !strings.Contains(string(res.body), "?force=true") {
			t.Errorf("%s %s: %s, want code no_backend_in_service naming ?force=true", w.method, w.path, res.body)
		}
	}
	g.refused(t, 400, "force", "POST", "/admin/models/chat/promote?force=yes", opsToken, `{}`)
	if m := g.write(t, "POST", "/admin/models/chat/promote?force=true", `{}`); m.Stable != "v2" {
		t.Fatalf("forced promote: stable %q, want v2", m.Stable)
	}
	if m := g.write(t, "POST", "/admin/models/chat/rollback", `{}`); m.Stable != "v1" {
		t.Fatalf("rollback: stable %q, want v1", m.Stable)
	}
	// A healthy canary is promoted as before.
	g.write(t, "POST", "/admin/models/chat/versions", deployBody("v3", good))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v3","canary_percent":10}`)
	if m := g.write(t, "POST", "/admin/models/chat/promote", `{}`); m.Stable != "v3" {
		t.Fatalf("promote of a healthy canary: stable %q, want v3", m.Stable)
	}
	// ?force= is true or false whatever the change: a traffic change keeping the stable too.
	g.refused(t, 400, "force", "PUT", "/admin/models/chat/traffic?force=yes", opsToken, `{"stable":"v3","canary":"v1","canary_percent":5}`)
}

// A backend URL that leads back to the gateway (its own listener, deployed without
// admin.allow_backends) is a request loop: each request would come back as a new one, again
// and again, each level holding a connection until the timeouts. The deploy's probe refuses
// it; deployed anyway (?probe=false), a request comes back once, is refused with 508, and the
// client gets a 502 at once, not the total timeout.
func TestGatewayAsItsOwnBackendIsNoLoop(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		c.Timeouts.Total, c.Timeouts.FirstByte, c.Timeouts.Idle = 5*time.Second, 5*time.Second, 5*time.Second
	}, model("chat", "v1", version("v1", f.backend()))))
	self := `{"version":"v2","backends":[{"url":"` + g.URL + `","kind":"openai","model":"chat"}]}`
	res := g.refused(t, 400, "backends", "POST", "/admin/models/chat/versions", opsToken, self)
	if !strings.Contains(string(res.body), "leads back to this gateway") {
		t.Errorf("the deploy of the gateway as its own backend was refused as: %s", res.body)
	}
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", self)
	loops := func() float64 {
		n, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_rejected_requests_total", map[string]string{"reason": "loop_detected"})
		return n
	}
	before := loops()
	start := time.Now()
	res = g.do(t, "POST", "/v1/chat/completions", chatBody("hello", ""), "x-llmgate-version", "v2")
	if res.status != 502 || time.Since(start) > 3*time.Second {
		t.Errorf("a request to the version whose backend is the gateway: status %d after %v: %s; want a 502 at once", res.status, time.Since(start), res.body)
	}
	if n := loops() - before; n != 1 {
		t.Errorf("llmgate_rejected_requests_total{reason=loop_detected} went up by %v, want 1 (the request came back once)", n)
	}
	// Stable, on its own backend, is not touched.
	if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", "")); res.status != 200 {
		t.Errorf("stable: status %d: %s", res.status, res.body)
	}
}

// A DELETE of a version and a deploy of the same name again, sent at once: the deleted
// version's statistics are dropped before the deploy can see them, so the new version starts
// afresh and keeps what it serves. Dropped after the delete's change let the deploy in, they
// were the ones the new version took over, and the drop made its statistics vanish from
// GET /admin/stats while it served.
func TestDeleteRacingRedeployKeepsTheNewStatistics(t *testing.T) {
	tokens := withAdminTokens(t)
	f := startFake(t, fakellm.Options{Model: "m1"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", f.backend()), version("v2", f.backend()))))
	pinned := strings.Replace(chatAs("u", false), `"model":"chat"`, `"model":"chat@v2"`, 1)
	if res := g.do(t, "POST", "/v1/chat/completions", pinned); res.status != 200 {
		t.Fatalf("pinned to v2: status %d: %s", res.status, res.body)
	}
	g.statsAfter(t, 1, "v2's sample", "chat", "v2", viewerToken)

	send := func(method, path, body string) <-chan string {
		done := make(chan string, 1)
		go func() {
			req, _ := http.NewRequest(method, g.Admin+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+opsToken)
			res, err := g.http.Do(req)
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			done <- strconv.Itoa(res.StatusCode) + " " + string(b)
		}()
		return done
	}
	served := func() bool {
		for _, v := range g.Table().Model("chat").Versions {
			if v.Name == "v2" {
				return true
			}
		}
		return false
	}
	// Each write waits, once its change is served, for the rollouts' lock (its answer names
	// the alias's rollout): the delete's clean-up cannot run before the deploy's change.
	var once sync.Once
	release := gateway.HoldRollouts(g.Gateway)
	defer once.Do(release)
	deleted := send("DELETE", "/admin/models/chat/versions/v2", "")
	waitFor(t, "v2 deleted", func() bool { return !served() })
	redeployed := send("POST", "/admin/models/chat/versions?probe=false", `{"version":"v2","backends":[{"url":"`+f.URL+`","kind":"vllm","model":"m1"}]}`)
	waitFor(t, "v2 deployed again", served)
	once.Do(release)
	for what, ch := range map[string]<-chan string{"delete": deleted, "deploy": redeployed} {
		if got := <-ch; !strings.HasPrefix(got, "200 ") {
			t.Fatalf("%s: %s", what, got)
		}
	}
	if res := g.do(t, "POST", "/v1/chat/completions", pinned); res.status != 200 {
		t.Fatalf("pinned to the new v2: status %d: %s", res.status, res.body)
	}
	g.statsAfter(t, 1, "the new v2's first sample, its statistics its own", "chat", "v2", viewerToken)
}
