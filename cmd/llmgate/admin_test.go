package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// adminRequest is what the fake admin API saw of one request.
type adminRequest struct {
	Method, Path, Query, Auth, IfMatch, ContentType, Body string
}

// fakeAdmin records requests and answers every one with the same canned response.
type fakeAdmin struct {
	status int
	body   string
	header map[string]string

	mu   sync.Mutex // the handler runs on the server's goroutines
	reqs []adminRequest
}

func startFakeAdmin(t *testing.T, status int, body string, header map[string]string) (*fakeAdmin, string) {
	t.Helper()
	f := &fakeAdmin{status: status, body: body, header: header}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, adminRequest{r.Method, r.URL.EscapedPath(), r.URL.RawQuery,
			r.Header.Get("Authorization"), r.Header.Get("If-Match"), r.Header.Get("Content-Type"), string(b)})
		f.mu.Unlock()
		for k, v := range f.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		io.WriteString(w, f.body) //nolint:errcheck
	}))
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeAdmin) requests() []adminRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]adminRequest(nil), f.reqs...)
}

var adminEnv = map[string]string{"LLMGATE_ADMIN_TOKEN": "s3cret", "OPS_TOKEN": "ops-token"}

// runAdminArgs runs llmgate admin against url: an argument starting "URL" has that replaced by
// it, and without one "--url URL" goes first.
func runAdminArgs(url string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	full := []string{"--url", url}
	for _, a := range args {
		if strings.HasPrefix(a, "URL") {
			full = nil
			break
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "URL") {
			a = url + a[len("URL"):]
		}
		full = append(full, a)
	}
	var out, errOut bytes.Buffer
	code = adminMain(full, &out, &errOut, func(k string) string { return env[k] })
	return code, out.String(), errOut.String()
}

// sameJSON reports whether a and b hold the same JSON value: same fields, none extra.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// hasRow reports whether some line of out has exactly these whitespace-separated fields.
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if reflect.DeepEqual(strings.Fields(line), fields) {
			return true
		}
	}
	return false
}

const writeAnswer = `{"revision":13,"model":{"alias":"chat","revision":13,"stable":"v3","canary":"v4","canary_percent":10,"sticky":"user",
"shadow":{"version":"","percent":0},"versions":[{"version":"v3","backends":[]}],"rollout":null}}`

// Every verb sends exactly the documented request.
func TestAdminRequests(t *testing.T) {
	t.Parallel()
	const bearer = "Bearer s3cret"
	const jsonType = "application/json"
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want adminRequest
	}{
		{"status all", []string{"status"}, adminEnv,
			adminRequest{"GET", "/admin/models", "", bearer, "", "", ""}},
		{"status one", []string{"status", "chat"}, adminEnv,
			adminRequest{"GET", "/admin/models/chat", "", bearer, "", "", ""}},
		{"alias with a slash is escaped", []string{"status", "meta-llama/Llama-3.1-8B-Instruct"}, adminEnv,
			adminRequest{"GET", "/admin/models/meta-llama%2FLlama-3.1-8B-Instruct", "", bearer, "", "", ""}},
		{"deploy", []string{"deploy", "chat", "v3", "--backend", "http://10.0.0.5:8000", "--backend", "http://10.0.0.6:8000",
			"--kind", "vllm", "--model", "llama-3.1-8b", "--weight", "2", "--api-key-env", "VLLM_KEY"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/versions", "", bearer, "", jsonType,
				`{"version":"v3","backends":[
				{"url":"http://10.0.0.5:8000","kind":"vllm","model":"llama-3.1-8b","weight":2,"api_key_env":"VLLM_KEY"},
				{"url":"http://10.0.0.6:8000","kind":"vllm","model":"llama-3.1-8b","weight":2,"api_key_env":"VLLM_KEY"}]}`}},
		{"deploy with a value per backend", []string{"deploy", "chat", "v3", "--backend", "http://10.0.0.5:8000", "--backend", "http://10.0.0.6:11434",
			"--kind", "vllm", "--kind", "ollama", "--model", "llama-3.1-8b", "--model", "llama3.1:8b", "--weight", "3", "--weight", "1"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/versions", "", bearer, "", jsonType,
				`{"version":"v3","backends":[
				{"url":"http://10.0.0.5:8000","kind":"vllm","model":"llama-3.1-8b","weight":3,"api_key_env":""},
				{"url":"http://10.0.0.6:11434","kind":"ollama","model":"llama3.1:8b","weight":1,"api_key_env":""}]}`}},
		{"deploy defaults, no probe, if-match", []string{"deploy", "--no-probe", "chat", "--if-match", "12", "v3", "--backend", "http://b:8000", "--model", "m"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/versions", "probe=false", bearer, `"12"`, jsonType,
				`{"version":"v3","backends":[{"url":"http://b:8000","kind":"","model":"m","weight":1,"api_key_env":""}]}`}},
		{"traffic with canary", []string{"traffic", "chat", "--stable", "v3", "--canary", "v4", "--percent", "10", "--sticky", "user"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/traffic", "", bearer, "", jsonType,
				`{"stable":"v3","canary":"v4","canary_percent":10,"sticky":"user"}`}},
		{"traffic with a fractional percent", []string{"traffic", "chat", "--stable", "v3", "--canary", "v4", "--percent", "12.5"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/traffic", "", bearer, "", jsonType,
				`{"stable":"v3","canary":"v4","canary_percent":12.5,"sticky":""}`}},
		{"traffic sticky none, as status shows it", []string{"traffic", "chat", "--stable", "v3", "--canary", "v4", "--percent", "10", "--sticky", "none"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/traffic", "", bearer, "", jsonType,
				`{"stable":"v3","canary":"v4","canary_percent":10,"sticky":"none"}`}},
		{"traffic stable only", []string{"traffic", "chat", "--stable", "v3"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/traffic", "", bearer, "", jsonType,
				`{"stable":"v3","canary":"","canary_percent":0,"sticky":""}`}},
		{"traffic flags first, header sticky", []string{"traffic", "--stable", "v3", "--sticky", "header:X-Tenant", "--if-match", `"9"`, "chat"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/traffic", "", bearer, `"9"`, jsonType,
				`{"stable":"v3","canary":"","canary_percent":0,"sticky":"header:X-Tenant"}`}},
		{"shadow on", []string{"shadow", "chat", "v4", "--percent", "5"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/shadow", "", bearer, "", jsonType, `{"version":"v4","percent":5}`}},
		{"shadow with a fractional percent", []string{"shadow", "chat", "v4", "--percent", "0.5"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/shadow", "", bearer, "", jsonType, `{"version":"v4","percent":0.5}`}},
		{"shadow off", []string{"shadow", "chat", "--off"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/shadow", "", bearer, "", jsonType, `{"version":"","percent":0}`}},
		{"promote", []string{"promote", "chat"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/promote", "", bearer, "", jsonType, `{}`}},
		{"promote forced", []string{"promote", "chat", "--force"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/promote", "force=true", bearer, "", jsonType, `{}`}},
		{"promote with a reason", []string{"promote", "chat", "--reason", "canary p95 on par"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/promote", "", bearer, "", jsonType, `{"reason":"canary p95 on par"}`}},
		{"traffic forced", []string{"traffic", "chat", "--stable", "v4", "--force"}, adminEnv,
			adminRequest{"PUT", "/admin/models/chat/traffic", "force=true", bearer, "", jsonType,
				`{"stable":"v4","canary":"","canary_percent":0,"sticky":""}`}},
		{"rollback to", []string{"rollback", "chat", "--to", "v2", "--reason", "p95 doubled"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/rollback", "", bearer, "", jsonType, `{"to":"v2","reason":"p95 doubled"}`}},
		{"rollback bare", []string{"rollback", "chat"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/rollback", "", bearer, "", jsonType, `{"to":"","reason":""}`}},
		{"delete", []string{"delete", "chat", "v2", "--if-match", "13"}, adminEnv,
			adminRequest{"DELETE", "/admin/models/chat/versions/v2", "", bearer, `"13"`, "", ""}},
		{"delete, if the model exists", []string{"delete", "chat", "v2", "--if-match", "*"}, adminEnv,
			adminRequest{"DELETE", "/admin/models/chat/versions/v2", "", bearer, `*`, "", ""}},
		{"delete a model", []string{"delete", "meta-llama/typo", "--if-match", "13"}, adminEnv,
			adminRequest{"DELETE", "/admin/models/meta-llama%2Ftypo", "", bearer, `"13"`, "", ""}},
		{"history", []string{"history", "chat"}, adminEnv,
			adminRequest{"GET", "/admin/models/chat/history", "", bearer, "", "", ""}},
		{"rollout start defaults", []string{"rollout", "chat", "start", "--canary", "v4", "--steps", "10,25,50,100"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/rollouts", "", bearer, "", jsonType,
				`{"canary":"v4","steps":[
				{"canary_percent":10,"min_duration":"5m","min_requests":0},{"canary_percent":25,"min_duration":"5m","min_requests":0},
				{"canary_percent":50,"min_duration":"5m","min_requests":0},{"canary_percent":100,"min_duration":"5m","min_requests":0}],
				"checks":{"max_error_rate_increase":0.02,"max_p95_latency_ratio":1.5,"max_ttft_p95_ratio":1.5}}`}},
		{"rollout start tuned", []string{"rollout", "chat", "start", "--canary", "v4", "--steps", "5, 50", "--step-duration", "10m",
			"--step-requests", "500", "--max-error-rate-increase", "0.01", "--max-latency-ratio", "1.2", "--if-match", "7"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/rollouts", "", bearer, `"7"`, jsonType,
				`{"canary":"v4","steps":[{"canary_percent":5,"min_duration":"10m","min_requests":500},{"canary_percent":50,"min_duration":"10m","min_requests":500}],
				"checks":{"max_error_rate_increase":0.01,"max_p95_latency_ratio":1.2,"max_ttft_p95_ratio":1.2}}`}},
		{"rollout status", []string{"rollout", "chat", "status"}, adminEnv,
			adminRequest{"GET", "/admin/models/chat/rollout", "", bearer, "", "", ""}},
		{"rollout pause", []string{"rollout", "chat", "pause"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/rollout/pause", "", bearer, "", jsonType, `{}`}},
		{"rollout resume", []string{"rollout", "chat", "resume"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/rollout/resume", "", bearer, "", jsonType, `{}`}},
		{"rollout abort", []string{"rollout", "chat", "abort", "--if-match", "\"3\""}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/rollout/abort", "", bearer, `"3"`, jsonType, `{}`}},
		{"token from --token-env", []string{"--token-env", "OPS_TOKEN", "status"}, adminEnv,
			adminRequest{"GET", "/admin/models", "", "Bearer ops-token", "", "", ""}},
		{"no token", []string{"status"}, nil,
			adminRequest{"GET", "/admin/models", "", "", "", "", ""}},
		{"global flags after the verb", []string{"promote", "chat", "--url", "URL/", "--json"}, adminEnv,
			adminRequest{"POST", "/admin/models/chat/promote", "", bearer, "", jsonType, `{}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, url := startFakeAdmin(t, 200, writeAnswer, map[string]string{"ETag": `"13"`})
			code, _, stderr := runAdminArgs(url, tt.env, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d; stderr: %s", code, stderr)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1: %+v", len(reqs), reqs)
			}
			got, want := reqs[0], tt.want
			if (got.Body == "") != (want.Body == "") || (want.Body != "" && !sameJSON(t, got.Body, want.Body)) {
				t.Errorf("body %s, want %s", got.Body, want.Body)
			}
			got.Body, want.Body = "", ""
			if got != want {
				t.Errorf("request\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// status prints a block per alias: the split on one line, then a row per backend.
func TestAdminStatusTable(t *testing.T) {
	t.Parallel()
	const answer = `{"revision":12,"models":[
{"alias":"chat","revision":12,"stable":"v3","canary":"v4","canary_percent":10,"sticky":"user","shadow":{"version":"v5","percent":5},
 "versions":[
  {"version":"v3","backends":[{"url":"http://10.0.0.5:8000","kind":"vllm","model":"llama-3.1-8b","weight":1,"healthy":true,"in_flight":3},
                           {"url":"http://10.0.0.7:8000","kind":"vllm","model":"llama-3.1-8b","weight":2,"healthy":true,"in_flight":0}]},
  {"version":"v4","backends":[{"url":"http://10.0.0.6:11434","kind":"ollama","model":"llama3.1:8b","weight":1,"healthy":false,"in_flight":0}]},
  {"version":"v5","backends":[]}],
 "rollout":{"canary":"v4","step":1,"steps":[{"canary_percent":10,"min_duration":"5m","min_requests":0},{"canary_percent":25,"min_duration":"5m","min_requests":0},
   {"canary_percent":50,"min_duration":"5m","min_requests":0},{"canary_percent":100,"min_duration":"5m","min_requests":0}],"state":"running","reason":""}},
{"alias":"embed","revision":12,"stable":"v1","canary":"","canary_percent":0,"sticky":"","shadow":{"version":"","percent":0},
 "versions":[{"version":"v1","backends":[{"url":"http://10.0.0.9:8000","kind":"openai","model":"bge","weight":1,"healthy":true,"in_flight":1}]}],"rollout":null}]}`
	_, url := startFakeAdmin(t, 200, answer, nil)
	code, out, stderr := runAdminArgs(url, adminEnv, "status")
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	for _, want := range []string{
		"chat  revision 12  stable v3  canary v4 10%  sticky user  shadow v5 5%  rollout v4 running step 2/4 (25%)\n",
		"embed  revision 12  stable v1  canary none  sticky none  shadow off  rollout none\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, row := range [][]string{
		{"VERSION", "ROLE", "BACKEND", "KIND", "MODEL", "WEIGHT", "HEALTH", "IN-FLIGHT"},
		{"v3", "stable", "http://10.0.0.5:8000", "vllm", "llama-3.1-8b", "1", "healthy", "3"},
		{"v3", "stable", "http://10.0.0.7:8000", "vllm", "llama-3.1-8b", "2", "healthy", "0"},
		{"v4", "canary", "http://10.0.0.6:11434", "ollama", "llama3.1:8b", "1", "UNHEALTHY", "0"},
		{"v5", "shadow", "-", "-", "-", "-", "-", "-"},
		{"v1", "stable", "http://10.0.0.9:8000", "openai", "bge", "1", "healthy", "1"},
	} {
		if !hasRow(out, row...) {
			t.Errorf("output lacks row %q:\n%s", row, out)
		}
	}
}

// history prints a row per entry, newest as the gateway orders them.
func TestAdminHistoryTable(t *testing.T) {
	t.Parallel()
	const answer = `{"entries":[
{"revision":7,"time":"2025-05-01T10:00:00Z","actor":"ops","action":"traffic","from":"v3","to":"v4","reason":"canary looks good"},
{"revision":8,"time":"2025-05-01T11:00:00Z","actor":"rollout","action":"rollback","from":"v4","to":"v3","reason":"error rate +3%"},
{"revision":9,"time":"2025-05-01T12:00:00Z","actor":"","action":"deploy","from":"","to":"","reason":""}]}`
	_, url := startFakeAdmin(t, 200, answer, nil)
	code, out, stderr := runAdminArgs(url, adminEnv, "history", "chat")
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	for _, row := range [][]string{
		{"REVISION", "TIME", "ACTOR", "ACTION", "CHANGE", "REASON"},
		{"7", "2025-05-01T10:00:00Z", "ops", "traffic", "v3", "->", "v4", "canary", "looks", "good"},
		{"8", "2025-05-01T11:00:00Z", "rollout", "rollback", "v4", "->", "v3", "error", "rate", "+3%"},
		{"9", "2025-05-01T12:00:00Z", "-", "deploy"},
	} {
		if !hasRow(out, row...) {
			t.Errorf("output lacks row %q:\n%s", row, out)
		}
	}
}

// rollout status reads the rollout object, or says there is none.
func TestAdminRolloutStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer string
		wantLine     string
		wantRows     [][]string
	}{
		{"paused", `{"canary":"v4","step":1,"steps":[{"canary_percent":10,"min_duration":"5m","min_requests":100},
			{"canary_percent":25,"min_duration":"5m","min_requests":100}],"state":"paused","reason":"paused by ops"}`,
			"chat: rollout v4 paused step 2/2 (25%): paused by ops\n",
			[][]string{{"STEP", "CANARY", "MIN-DURATION", "MIN-REQUESTS"}, {"1", "10%", "5m", "100"}, {">", "2", "25%", "5m", "100"}}},
		{"none", `null`, "chat: no rollout\n", nil},
		{"action not committed", `{"canary":"v4","step":0,"steps":[{"canary_percent":10}],"state":"running",
			"action_error":"automatic rollback could not be committed: state: no space left on device"}`,
			"chat: rollout v4 running step 1/1 (10%)\n",
			[][]string{{"not", "committed,", "tried", "again", "every", "second:", "automatic", "rollback", "could", "not", "be", "committed:", "state:", "no", "space", "left", "on", "device"}}},
		{"wrapped in a model", `{"revision":4,"model":{"alias":"chat","rollout":{"canary":"v4","step":0,"steps":[{"canary_percent":10}],"state":"running"}}}`,
			"chat: rollout v4 running step 1/1 (10%)\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := startFakeAdmin(t, 200, tt.answer, nil)
			code, out, stderr := runAdminArgs(url, adminEnv, "rollout", "chat", "status")
			if code != 0 {
				t.Fatalf("exit %d; stderr: %s", code, stderr)
			}
			if !strings.HasPrefix(out, tt.wantLine) {
				t.Errorf("output %q, want it to start with %q", out, tt.wantLine)
			}
			for _, row := range tt.wantRows {
				if !hasRow(out, row...) {
					t.Errorf("output lacks row %q:\n%s", row, out)
				}
			}
		})
	}
}

// Writes print one line: alias, the new revision, and what the model now is.
func TestAdminWriteLines(t *testing.T) {
	t.Parallel()
	model := func(fields string) string {
		return `{"revision":13,"model":{"alias":"chat","revision":13,` + fields + `}}`
	}
	rollout := `"rollout":{"canary":"v4","step":0,"steps":[{"canary_percent":10},{"canary_percent":50}],"state":"%s"}`
	tests := []struct {
		name   string
		args   []string
		answer string
		etag   string
		want   string
	}{
		{"deploy", []string{"deploy", "chat", "v5", "--backend", "http://a:1", "--backend", "http://b:1", "--model", "m"},
			model(`"stable":"v3","versions":[{"version":"v5","backends":[{"url":"http://a:1"},{"url":"http://b:1"}]}]`), "",
			"chat: revision 13: deployed version v5, 2 backend(s)\n"},
		{"traffic", []string{"traffic", "chat", "--stable", "v3", "--canary", "v4", "--percent", "10", "--sticky", "user"},
			model(`"stable":"v3","canary":"v4","canary_percent":10,"sticky":"user"`), "",
			"chat: revision 13: stable v3, canary v4 10%, sticky user\n"},
		{"shadow", []string{"shadow", "chat", "v5", "--percent", "5"},
			model(`"stable":"v3","shadow":{"version":"v5","percent":5}`), "",
			"chat: revision 13: shadow v5 5%\n"},
		{"shadow off", []string{"shadow", "chat", "--off"},
			model(`"stable":"v3","shadow":{"version":"","percent":0}`), "",
			"chat: revision 13: shadow off\n"},
		{"promote", []string{"promote", "chat"},
			model(`"stable":"v4","canary":"","sticky":"user"`), "",
			"chat: revision 13: promoted; stable v4, canary none, sticky user\n"},
		{"traffic that ends a rollout", []string{"traffic", "chat", "--stable", "v3", "--canary", "v4", "--percent", "30"},
			`{"revision":13,"rollout_ended":"ended by ops's traffic change","model":{"alias":"chat","revision":13,"stable":"v3","canary":"v4","canary_percent":30}}`, "",
			"chat: revision 13: stable v3, canary v4 30%, sticky none\nchat: the rollout was aborted (ended by ops's traffic change)\n"},
		{"rollback", []string{"rollback", "chat", "--to", "v2"},
			model(`"stable":"v2"`), "",
			"chat: revision 13: rolled back; stable v2, canary none, sticky none\n"},
		{"delete", []string{"delete", "chat", "v2"},
			model(`"stable":"v3"`), "",
			"chat: revision 13: deleted version v2\n"},
		{"delete a model", []string{"delete", "typo"},
			`{"revision":14,"deleted":{"alias":"typo","versions":["v1","v2"]}}`, "",
			"typo: revision 14: deleted the model and its versions v1, v2\n"},
		{"rollout start", []string{"rollout", "chat", "start", "--canary", "v4", "--steps", "10,50"},
			model(strings.Replace(rollout, "%s", "running", 1)), "",
			"chat: revision 13: rollout started: v4 running step 1/2 (10%)\n"},
		{"rollout pause", []string{"rollout", "chat", "pause"},
			model(strings.Replace(rollout, "%s", "paused", 1)), "",
			"chat: revision 13: rollout v4 paused step 1/2 (10%)\n"},
		{"revision from ETag", []string{"promote", "chat"},
			`{"model":{"alias":"chat","stable":"v4"}}`, `"21"`,
			"chat: revision 21: promoted; stable v4, canary none, sticky none\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := startFakeAdmin(t, 200, tt.answer, map[string]string{"ETag": tt.etag})
			code, out, stderr := runAdminArgs(url, adminEnv, tt.args...)
			if code != 0 || out != tt.want {
				t.Fatalf("exit %d, output %q, want %q; stderr: %s", code, out, tt.want, stderr)
			}
		})
	}
}

// --json prints the answer itself, indented, for scripts.
func TestAdminJSON(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--json", "status", "chat"}, {"--json", "promote", "chat"}, {"history", "chat", "--json"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, url := startFakeAdmin(t, 200, writeAnswer, nil)
			code, out, stderr := runAdminArgs(url, adminEnv, args...)
			var want bytes.Buffer
			if err := json.Indent(&want, []byte(writeAnswer), "", "  "); err != nil {
				t.Fatal(err)
			}
			want.WriteByte('\n')
			if code != 0 || out != want.String() {
				t.Fatalf("exit %d, output:\n%s\nwant:\n%s\nstderr: %s", code, out, want.String(), stderr)
			}
		})
	}
}

// Refusals from the gateway are one stderr line and exit status 1.
func TestAdminAPIErrors(t *testing.T) {
	t.Parallel()
	envelope := func(msg, param string) string {
		p := "null"
		if param != "" {
			p = `"` + param + `"`
		}
		return `{"error":{"message":"` + msg + `","type":"invalid_request_error","param":` + p + `,"code":"x"}}`
	}
	tests := []struct {
		name   string
		status int
		body   string
		etag   string
		server string // the Server header; "" for none
		env    map[string]string
		args   []string
		want   string
	}{
		{"400 with field", 400, envelope("must be vllm, ollama or openai", "backends[0].kind"), "", "", adminEnv,
			[]string{"deploy", "chat", "v3", "--backend", "http://b:1", "--model", "m"},
			"llmgate admin: 400: must be vllm, ollama or openai (field backends[0].kind)\n"},
		{"404 without field", 404, envelope("unknown model alias nope", ""), "", "", adminEnv,
			[]string{"status", "nope"}, "llmgate admin: 404: unknown model alias nope\n"},
		{"409", 409, envelope("version v3 is stable; promote another first", "version"), "", "", adminEnv,
			[]string{"delete", "chat", "v3"}, "llmgate admin: 409: version v3 is stable; promote another first (field version)\n"},
		{"412", 412, envelope("revision mismatch", ""), `"14"`, "", adminEnv,
			[]string{"traffic", "chat", "--stable", "v3", "--if-match", "13"},
			"llmgate admin: conflict: the model changed (now revision 14); re-read and retry\n"},
		{"412 for a model that does not exist", 412, envelope(`If-Match: model \"new\" does not exist (If-Match: *)`, "If-Match"), "", "", adminEnv,
			[]string{"deploy", "new", "v1", "--backend", "http://b:1", "--model", "m", "--if-match", "*"},
			"llmgate admin: 412: If-Match: model \"new\" does not exist (If-Match: *) (field If-Match)\n"},
		{"401", 401, envelope("A valid admin bearer token is required (Authorization: Bearer <token>).", ""), "", "", adminEnv,
			[]string{"status"}, "llmgate admin: 401: A valid admin bearer token is required (Authorization: Bearer <token>).\n"},
		{"401 without a token", 401, envelope("A valid admin bearer token is required.", ""), "", "", nil,
			[]string{"status"}, "llmgate admin: 401: A valid admin bearer token is required. (no token was sent: LLMGATE_ADMIN_TOKEN is empty)\n"},
		{"403", 403, envelope("This admin token's role does not allow this request.", ""), "", "", adminEnv,
			[]string{"promote", "chat"}, "llmgate admin: 403: This admin token's role does not allow this request.\n"},
		{"not an envelope", 502, "upstream\nconnect error\n", "", "", adminEnv,
			[]string{"status"}, "llmgate admin: 502: Bad Gateway: upstream connect error\n"},
		{"unreadable answer", 200, "<html>", "", "", adminEnv,
			[]string{"status"}, "llmgate admin: unexpected answer from the admin API: invalid character '<' looking for beginning of value\n"},
		{"the data plane's 404", 404, `{"error":{"message":"Unknown request URL. Supported: POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models.","type":"invalid_request_error","param":null,"code":"unknown_url"}}`,
			"", "llmgate", adminEnv, []string{"status"},
			"llmgate admin: 404: Unknown request URL. Supported: POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models. (--url is llmgate's OpenAI API; the admin API listens on admin.listen, default 127.0.0.1:8081)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := startFakeAdmin(t, tt.status, tt.body, map[string]string{"ETag": tt.etag, "Server": tt.server})
			code, out, stderr := runAdminArgs(url, tt.env, tt.args...)
			if code != 1 || stderr != tt.want || out != "" {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit 1, stderr %q", code, stderr, out, tt.want)
			}
		})
	}
}

// An unreachable gateway is one line naming the URL, exit status 1.
func TestAdminUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()
	code, _, stderr := runAdminArgs(deadURL, adminEnv, "status")
	if code != 1 || !strings.HasPrefix(stderr, "llmgate admin: "+deadURL+" is unreachable: ") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// Bad flags and arguments are one stderr line and exit status 2, and send nothing.
func TestAdminUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no verb", nil, "missing verb"},
		{"unknown verb", []string{"frob"}, `unknown verb "frob"`},
		{"unknown flag", []string{"status", "--nope"}, "status: flag provided but not defined: -nope"},
		{"unknown global flag", []string{"--nope", "status"}, "flag provided but not defined: -nope"},
		{"too many arguments", []string{"promote", "chat", "extra"}, "usage: llmgate admin promote ALIAS"},
		{"empty alias", []string{"promote", ""}, "an argument is empty"},
		{"deploy without version", []string{"deploy", "chat", "--backend", "http://b:1"}, "usage: llmgate admin deploy ALIAS VERSION"},
		{"deploy without backend", []string{"deploy", "chat", "v3"}, "--backend is required"},
		{"deploy without model", []string{"deploy", "chat", "v3", "--backend", "http://b:1"}, "--model is required"},
		{"deploy with more models than one and fewer than backends", []string{"deploy", "chat", "v3", "--backend", "http://a:1", "--backend", "http://b:1", "--backend", "http://c:1",
			"--model", "m", "--model", "n"}, "--model given 2 times for 3 --backend"},
		{"deploy bad kind", []string{"deploy", "chat", "v3", "--backend", "http://b:1", "--kind", "tgi"}, `--kind "tgi"`},
		{"deploy bad weight", []string{"deploy", "chat", "v3", "--backend", "http://b:1", "--weight", "x"}, `invalid value "x" for flag -weight`},
		{"traffic without stable", []string{"traffic", "chat", "--canary", "v4", "--percent", "5"}, "--stable is required"},
		{"canary without percent", []string{"traffic", "chat", "--stable", "v3", "--canary", "v4"}, "--canary needs --percent"},
		{"percent without canary", []string{"traffic", "chat", "--stable", "v3", "--percent", "5"}, "--percent needs --canary"},
		{"percent out of range", []string{"traffic", "chat", "--stable", "v3", "--canary", "v4", "--percent", "101"}, "want 0..100"},
		{"bad sticky", []string{"traffic", "chat", "--stable", "v3", "--sticky", "header:"}, `--sticky "header:"`},
		{"shadow without percent", []string{"shadow", "chat", "v4"}, "--percent is required"},
		{"shadow without version", []string{"shadow", "chat"}, "usage: llmgate admin shadow"},
		{"shadow percent out of range", []string{"shadow", "chat", "v4", "--percent", "100.5"}, "want 0..100"},
		{"shadow off with version", []string{"shadow", "chat", "v4", "--off"}, "--off takes no VERSION"},
		{"rollout bad action", []string{"rollout", "chat", "go"}, `unknown action "go"`},
		{"rollout start without steps", []string{"rollout", "chat", "start", "--canary", "v4"}, "--canary and --steps are required"},
		{"rollout bad steps", []string{"rollout", "chat", "start", "--canary", "v4", "--steps", "10,x"}, `--steps "10,x"`},
		{"rollout bad duration", []string{"rollout", "chat", "start", "--canary", "v4", "--steps", "10", "--step-duration", "soon"}, `--step-duration "soon"`},
		{"start flag on pause", []string{"rollout", "chat", "pause", "--steps", "10"}, "--steps applies to rollout start only"},
		{"if-match on a read", []string{"rollout", "chat", "status", "--if-match", "3"}, "--if-match applies to writes only"},
		{"bad if-match", []string{"promote", "chat", "--if-match", "latest"}, `--if-match "latest"`},
		{"weak if-match", []string{"promote", "chat", "--if-match", `W/"3"`}, "a weak entity tag never matches"},
		{"bad url", []string{"--url", "ftp://x", "status"}, `--url "ftp://x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, url := startFakeAdmin(t, 200, writeAnswer, nil)
			code, _, stderr := runAdminArgs(url, adminEnv, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit 2 and one line with %q", code, stderr, tt.want)
			}
			if n := len(f.requests()); n != 0 {
				t.Fatalf("sent %d requests on a usage error", n)
			}
		})
	}
}

// -h prints usage on stdout and succeeds.
func TestAdminHelp(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "rollout ALIAS start --canary V"},
		{[]string{"help"}, "shadow ALIAS --off"},
		{[]string{"deploy", "-h"}, "-no-probe"},
	} {
		code, out, stderr := runAdminArgs("http://127.0.0.1:1", nil, tt.args...)
		if code != 0 || !strings.Contains(out, tt.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %q", tt.args, code, out, stderr, tt.want)
		}
	}
}

// A verb's -h shows the global flags' defaults, not the values given before the verb.
func TestAdminVerbHelpShowsDefaults(t *testing.T) {
	t.Parallel()
	code, out, stderr := runAdminArgs("http://127.0.0.1:1", nil, "--json", "--token-env", "OPS_TOKEN", "rollout", "chat", "start", "-h")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{`admin API URL (default "http://127.0.0.1:8081")`, `(default "LLMGATE_ADMIN_TOKEN")`} {
		if !strings.Contains(out, want) {
			t.Errorf("help does not say %q:\n%s", want, out)
		}
	}
	for _, given := range []string{"127.0.0.1:1", "OPS_TOKEN", "(default true)"} {
		if strings.Contains(out, given) {
			t.Errorf("help shows %q, given before the verb, as a default:\n%s", given, out)
		}
	}
}

// llmgate admin is dispatched from main and listed in its usage.
func TestAdminDispatch(t *testing.T) {
	t.Parallel()
	f, url := startFakeAdmin(t, 200, `{"revision":1,"models":[]}`, nil)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"admin", "--url", url, "status"}, &stdout, &stderr); code != 0 || stdout.String() != "no models\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	if reqs := f.requests(); len(reqs) != 1 || reqs[0].Path != "/admin/models" {
		t.Fatalf("requests %+v", reqs)
	}
	if !strings.Contains(usage, "llmgate admin VERB") {
		t.Fatal("usage does not list llmgate admin")
	}
}

// A gateway that takes a request and does not answer in time is no "unreachable" gateway: the
// request reached it, so a write may have been made. One stderr line says so, exit status 1.
// Not parallel: it shortens adminTimeout for its own run.
func TestAdminNoAnswerInTime(t *testing.T) {
	defer func(d time.Duration) { adminTimeout = d }(adminTimeout)
	adminTimeout = 100 * time.Millisecond
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for the handlers
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "llmgate admin: " + srv.URL + " took the request but did not answer within 100ms\n"},
		{[]string{"promote", "chat"}, "llmgate admin: " + srv.URL + " took the request but did not answer within 100ms: " +
			"the change may have been made or not; llmgate admin status and history say which\n"},
	}
	for _, tt := range tests {
		if code, out, stderr := runAdminArgs(srv.URL, adminEnv, tt.args...); code != 1 || stderr != tt.want || out != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want exit 1, stderr %q", tt.args, code, stderr, out, tt.want)
		}
	}
}
