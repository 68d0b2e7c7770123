package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/internal/testtools"
)

// TestMetrics: after real traffic, /metrics on the admin listener has the series dashboards
// are built on, labelled by model, version and backend, in a format Prometheus accepts.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	c, _ := s.gw.client()
	for range 3 {
		if _, err := c.CreateChatCompletion(ctx(t), chatRequest("chat", 4)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		req := chatRequest("chat@v2", 5)
		req.Stream = true
		st, err := c.CreateChatCompletionStream(ctx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readStream(st); err != nil {
			t.Fatal(err)
		}
	}
	s.gw.do(t, "POST", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`)
	s.gw.do(t, "POST", "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		"X-Fakellm-Status", "500")

	// Streams finish (and are counted) just after the client read [DONE].
	v2 := map[string]string{"model": "chat", "version": "v2"}
	s.gw.waitMetric(t, "gen_ai_server_time_to_first_token_seconds_count", v2, "= 2", func(v float64) bool { return v == 2 })
	text := s.gw.metrics(t)
	samples := parseMetrics(t, text)

	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"llmgate_requests_total", map[string]string{"model": "chat", "version": "v1", "backend": s.v1.URL, "status": "2xx"}, 3},
		{"llmgate_requests_total", map[string]string{"model": "chat", "version": "v1", "backend": s.v1.URL, "status": "5xx"}, 1},
		{"llmgate_requests_total", map[string]string{"model": "chat", "version": "v2", "backend": s.v2.URL, "status": "2xx"}, 2},
		{"llmgate_tokens_total", map[string]string{"model": "chat", "version": "v1", "type": "output"}, 3 * 4},
		{"llmgate_tokens_total", map[string]string{"model": "chat", "version": "v2", "type": "output"}, 2 * 5},
		{"gen_ai_client_token_usage_count", map[string]string{"model": "chat", "version": "v1", "gen_ai_token_type": "output"}, 3},
		{"gen_ai_server_time_to_first_token_seconds_count", v2, 2},
		// Every request falls in the +Inf bucket.
		{"gen_ai_server_time_to_first_token_seconds_bucket", map[string]string{"model": "chat", "version": "v2", "le": "+Inf"}, 2},
		{"gen_ai_server_request_duration_seconds_bucket", map[string]string{"model": "chat", "version": "v1", "le": "+Inf"}, 4},
		{"llmgate_rejected_requests_total", map[string]string{"reason": "unknown_model"}, 1},
		{"llmgate_backend_up", map[string]string{"backend": s.v2.URL}, 1},
		{"llmgate_backend_in_flight", map[string]string{"backend": s.v1.URL}, 0},
	}
	for _, tt := range tests {
		series := seriesName(tt.name, tt.labels)
		t.Run(series, func(t *testing.T) {
			got, found := metricValue(samples, tt.name, tt.labels)
			if !found || got != tt.want {
				t.Errorf("%s = %v (found %v), want %v", series, got, found, tt.want)
			}
		})
	}
	// Histograms are Prometheus histograms: cumulative buckets with the le label, not
	// VictoriaMetrics' vmrange.
	buckets := 0
	for _, smp := range samples {
		if _, ok := smp.labels["vmrange"]; ok {
			t.Errorf("%s has a vmrange label; want le buckets", smp.name)
		}
		if smp.name == "gen_ai_server_time_to_first_token_seconds_bucket" && smp.labels["le"] != "" {
			buckets++
		}
	}
	if buckets < 2 {
		t.Errorf("got %d TTFT buckets with le, want the full bucket list", buckets)
	}
	for _, fam := range []string{"llmgate_requests_total", "gen_ai_server_time_to_first_token_seconds", "llmgate_tokens_total"} {
		if !strings.Contains(text, "# TYPE "+fam+" ") {
			t.Errorf("no # TYPE line for %s", fam)
		}
	}

	t.Run("promtool", func(t *testing.T) { promtoolCheck(t, text) })
}

// seriesName writes a series as Prometheus would, labels sorted.
func seriesName(name string, labels map[string]string) string {
	var ls []string
	for k, v := range labels {
		ls = append(ls, k+"="+strconv.Quote(v))
	}
	slices.Sort(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// Errors show on /metrics per model version and code, including the two kinds
// llmgate_requests_total cannot show: no backend in service (nothing answered) and a stream
// that failed after its 200.
func TestRequestErrorsCounted(t *testing.T) {
	cut := cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}},
		`data: {"id":"s","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`+"\n\n")
	g := startGateway(t, newConfig(t, nil, model("dead", "v1", version("v1", closedBackend(t))), model("cut", "v1", version("v1", cut))))
	const n = 6
	for range n {
		if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"dead","messages":[{"role":"user","content":"hi"}]}`); res.status < 500 {
			t.Fatalf("dead backend: status %d", res.status)
		}
	}
	res := g.do(t, "POST", "/v1/chat/completions", `{"model":"cut","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if res.status != 200 || !strings.Contains(string(res.body), `"code":"upstream_error"`) {
		t.Fatalf("cut stream: status %d: %s", res.status, res.body)
	}
	samples := parseMetrics(t, g.metrics(t))
	var dead float64
	for _, code := range []string{"upstream_error", "server_is_overloaded"} {
		v, _ := metricValue(samples, "llmgate_request_errors_total", map[string]string{"model": "dead", "version": "v1", "code": code})
		dead += v
	}
	if dead != n {
		t.Errorf("llmgate_request_errors_total for the dead backend = %v, want %d", dead, n)
	}
	if v, _ := metricValue(samples, "llmgate_request_errors_total", map[string]string{"model": "cut", "version": "v1", "code": "upstream_error"}); v != 1 {
		t.Errorf("llmgate_request_errors_total for the cut stream = %v, want 1", v)
	}
}

// A backend URL with non-ASCII characters is written raw in its labels, as the text format
// wants (strconv.Quote wrote a no-break space as \u00a0, which Prometheus rejects), and
// /metrics still passes promtool when it is installed.
func TestMetricsNonASCIILabel(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{})
	b := f.backend()
	b.URL += "/café\u00a0v1"
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	text := g.metrics(t)
	if want := `backend="` + b.URL + `"`; !strings.Contains(text, want) {
		t.Errorf("/metrics has no label %s:\n%s", want, text)
	}
	if strings.Contains(text, `\u00a0`) {
		t.Errorf("/metrics escapes a no-break space as \\u00a0, which the text format does not know")
	}
	if got, found := metricValue(parseMetrics(t, text), "llmgate_backend_in_flight", map[string]string{"backend": b.URL}); !found || got != 0 {
		t.Errorf("llmgate_backend_in_flight{backend=%q} = %v (found %v), want 0", b.URL, got, found)
	}
	t.Run("promtool", func(t *testing.T) { promtoolCheck(t, text) })
}

// promtoolCheck runs Prometheus's own format check on a /metrics text.
func promtoolCheck(t *testing.T, text string) {
	promtool := testtools.Require(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// A backend's 5xx with no error code of its own (an HTML 500 from a crashed server, a proxy's
// 503) reaches the client with code null, as the backend sent it, but is a failed request all
// the same: counted in llmgate_request_errors_total and named in the log line, as the
// gateway's own 502s are. An alert on that series must not miss a backend that fails.
func TestBackendServerErrorWithoutCodeCounted(t *testing.T) {
	t.Parallel()
	for _, status := range []int{500, 503} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			b := cannedBackend(t, status, http.Header{"Content-Type": {"text/html"}}, `<html><body>oops</body></html>`)
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
			res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
			if res.status < 500 {
				t.Fatalf("status %d %s, want 5xx", res.status, res.body)
			}
			if _, _, code := envelope(t, res.body); code != "" {
				t.Errorf("code %q, want null (as the backend sent it)", code)
			}
			samples := parseMetrics(t, g.metrics(t))
			if v, _ := metricValue(samples, "llmgate_request_errors_total", map[string]string{"model": "chat", "version": "v1", "code": "upstream_error"}); v != 1 {
				t.Errorf("llmgate_request_errors_total{code=upstream_error} = %v, want 1", v)
			}
			lines := g.logLines(t)
			if len(lines) != 1 || lines[0]["error"] != "upstream_error" {
				t.Errorf("log lines %v: want one with error upstream_error", lines)
			}
		})
	}
}

// A backend's 4xx without a code of its own (vLLM's 400s carry the status as an int, passed on
// as code null) is counted in llmgate_request_errors_total and logged by its type, as is an
// error event of that type after a stream's 200; neither was counted, or the event was counted
// as the backend's failure (upstream_error).
func TestBackendClientErrorWithoutCodeCounted(t *testing.T) {
	t.Parallel()
	const vllm400 = `{"error":{"message":"'messages' must not be empty.","type":"BadRequestError","param":"messages","code":400}}`
	for _, tt := range []struct {
		name   string
		status int
		header http.Header
		body   string
		stream bool
	}{
		{"400", 400, http.Header{"Content-Type": {"application/json"}}, vllm400, false},
		{"403 flat", 403, http.Header{"Content-Type": {"application/json"}}, `{"object":"error","message":"no","type":"Forbidden","param":null,"code":403}`, false},
		{"error event", 200, http.Header{"Content-Type": {"text/event-stream"}}, "data: " + vllm400 + "\n\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := cannedBackend(t, tt.status, tt.header, tt.body)
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
			body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
			if tt.stream {
				body = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
			}
			g.do(t, "POST", "/v1/chat/completions", body)
			want := "invalid_request_error"
			if tt.status == 403 {
				want = "permission_error"
			}
			samples := parseMetrics(t, g.metrics(t))
			if v, _ := metricValue(samples, "llmgate_request_errors_total", map[string]string{"model": "chat", "version": "v1", "code": want}); v != 1 {
				t.Errorf("llmgate_request_errors_total{code=%s} = %v, want 1", want, v)
			}
			lines := g.logLines(t)
			if len(lines) != 1 || lines[0]["error"] != want {
				t.Errorf("log lines %v: want one with error %s", lines, want)
			}
		})
	}
}

// /metrics says what the gateway was built from, as llmgate_build_info 1 with the version and
// Go's: "dev" unless the command passes its own.
func TestBuildInfo(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
	text := g.metrics(t)
	if v, ok := metricValue(parseMetrics(t, text), "llmgate_build_info", map[string]string{"version": "dev", "goversion": runtime.Version()}); !ok || v != 1 {
		t.Errorf("llmgate_build_info{version=dev,goversion=%s} = %v (%v), want 1 in\n%s", runtime.Version(), v, ok, text)
	}
	if !strings.Contains(text, "# TYPE llmgate_build_info gauge") {
		t.Errorf("llmgate_build_info is not typed a gauge:\n%s", text)
	}
}

// A backend's error code becomes a label only when it is a code: a name of letters, digits and
// _ . : -, at most 64 bytes. One with a byte that is not UTF-8 made /metrics a page that
// Prometheus refuses whole (every series of the gateway lost from the first such answer on),
// and one with spaces or a request id in it is no class to count by; both count as "other".
func TestBackendErrorCodeLabelIsSafe(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, code string }{
		{"not utf-8", "bad\xffcode"},
		{"sentence", "Request 7f3a9 failed, try again"},
		{"long", strings.Repeat("x", 200)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := cannedBackend(t, 500, http.Header{"Content-Type": {"application/json"}},
				`{"error":{"message":"boom","type":"server_error","code":"`+tt.code+`"}}`)
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
			if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", "")); res.status < 500 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			text := g.metrics(t)
			if !utf8.ValidString(text) || strings.Contains(text, tt.code) {
				t.Fatalf("/metrics has the backend's code %q in a label", tt.code)
			}
			if v, _ := metricValue(parseMetrics(t, text), "llmgate_request_errors_total", map[string]string{"model": "chat", "version": "v1", "code": "other"}); v != 1 {
				t.Errorf(`llmgate_request_errors_total{code="other"} = %v, want 1`, v)
			}
			t.Run("promtool", func(t *testing.T) { promtoolCheck(t, text) })
		})
	}
}

// gen_ai_server_time_to_first_token_seconds is the gateway's, as the OpenTelemetry GenAI
// conventions have a server's: until its client got the first token. The completion guard
// holds back text that may be the start of a placeholder, so the client's first token comes
// with the backend's second chunk, which the backend sends only once the client has the
// stream's headers (sent after the backend's first event is in). The backend's first event is
// gen_ai_client_operation_time_to_first_chunk_seconds (the gateway as the backend's client).
// The server's TTFT timed the backend's first event, which the client never saw.
func TestServerTTFTIsTheClientsFirstToken(t *testing.T) {
	chunk := func(delta string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]}` + "\n\n"
	}
	release := make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, chunk(`{"role":"assistant","content":"<EMAIL_"}`)) // all held back
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, chunk(`{"content":"ADDRESS_1> ok"}`)+"data: [DONE]\n\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "canned"}
	pii := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	m := model("chat", "v1", version("v1", b))
	m.Guard = pii
	g := startGateway(t, newConfig(t, nil, m))

	req, err := http.NewRequest("POST", g.URL+"/v1/chat/completions", strings.NewReader(chatBody("mail "+testEmail, `,"stream":true`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req) // returns with the headers
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), testEmail) {
		t.Fatalf("status %d, want the stream with the address restored: %s", res.StatusCode, body)
	}
	v1 := map[string]string{"model": "chat", "version": "v1"}
	g.waitMetric(t, "gen_ai_server_time_to_first_token_seconds_count", v1, "= 1", func(v float64) bool { return v == 1 })
	samples := parseMetrics(t, g.metrics(t))
	server, _ := metricValue(samples, "gen_ai_server_time_to_first_token_seconds_sum", v1)
	backend, found := metricValue(samples, "gen_ai_client_operation_time_to_first_chunk_seconds_sum", v1)
	if !found || !(server > backend) {
		t.Fatalf("server TTFT %v s, backend's first chunk %v s (found %v): want the server's later, at the client's first token", server, backend, found)
	}
}
