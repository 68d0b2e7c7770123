package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
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

// fakeClassifier is an external safety classifier: it records what it was asked and answers
// with answer(body). A nil answer never answers (until the test ends).
type fakeClassifier struct {
	url   string
	mu    sync.Mutex
	asked []string
	paths []string
}

func startClassifier(t *testing.T, answer func(body string) string) *fakeClassifier {
	t.Helper()
	fc := &fakeClassifier{}
	stop := make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fc.mu.Lock()
		fc.asked = append(fc.asked, string(b))
		fc.paths = append(fc.paths, r.URL.Path)
		fc.mu.Unlock()
		if answer == nil {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer(string(b)))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(stop); srv.Close() })
	fc.url = "http://" + ln.Addr().String()
	return fc
}

func (fc *fakeClassifier) requests() ([]string, []string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]string(nil), fc.asked...), append([]string(nil), fc.paths...)
}

func moderation(flagged bool, categories ...string) string {
	cats := map[string]bool{"violence": false}
	for _, c := range categories {
		cats[c] = true
	}
	b, _ := json.Marshal(map[string]any{"id": "modr-1", "model": "omni-moderation-latest",
		"results": []any{map[string]any{"flagged": flagged, "categories": cats}}})
	return string(b)
}

func llamaGuardAnswer(content string) string {
	b, _ := json.Marshal(content)
	return `{"id":"c","object":"chat.completion","created":1,"model":"lg","choices":[{"index":0,"message":{"role":"assistant","content":` + string(b) + `},"finish_reason":"stop"}]}`
}

// A sync classifier's unsafe verdict blocks the prompt with content_filter and the backend is
// never called; the classifier saw the prompt after redaction, never the personal data.
func TestClassifierBlocksPrompt(t *testing.T) {
	fc := startClassifier(t, func(string) string { return moderation(true, "violence") })
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierModerations, URL: fc.url, Model: "omni-moderation-latest"}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{PII: config.PIIGuard{Prompt: "redact"},
		Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
	res := g.do(t, "POST", "/v1/chat/completions", chatBody("Tell me about the weather. Mail "+testEmail, ""))
	if typ, _, code := envelope(t, res.body); res.status != 400 || code != "content_filter" || typ != "invalid_request_error" {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	if !strings.Contains(string(res.body), "S1") {
		t.Fatalf("the error does not name the category: %s", res.body)
	}
	if n := f.Requests(); n != 0 {
		t.Fatalf("the backend was called %d times", n)
	}
	asked, paths := fc.requests()
	if len(asked) != 1 || paths[0] != "/v1/moderations" {
		t.Fatalf("classifier asked %d times at %v", len(asked), paths)
	}
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.Unmarshal([]byte(asked[0]), &req); err != nil {
		t.Fatal(err)
	}
	if req.Model != "omni-moderation-latest" || len(req.Input) != 2 || strings.Contains(asked[0], testEmail) || !strings.Contains(asked[0], "<EMAIL_ADDRESS_1>") {
		t.Fatalf("classifier request %s", asked[0])
	}
	g.waitMetric(t, "llmgate_guard_classifier_total", map[string]string{"direction": "prompt", "result": "unsafe"}, "= 1", func(v float64) bool { return v == 1 })
}

// A safe verdict lets the request through untouched.
func TestClassifierSafePrompt(t *testing.T) {
	fc := startClassifier(t, func(string) string { return moderation(false) })
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierModerations, URL: fc.url}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
	res := g.do(t, "POST", "/v1/chat/completions", chatBody("Say hello", ""))
	if res.status != 200 || res.header.Get("X-Llmgate-Guard") != "" {
		t.Fatalf("status %d guard %q: %s", res.status, res.header.Get("X-Llmgate-Guard"), res.body)
	}
	if asked, _ := fc.requests(); len(asked) != 1 || strings.Contains(asked[0], `"model"`) {
		t.Fatalf("classifier requests %q (no model configured, none sent)", asked)
	}
}

// A classifier that does not answer in time: fail_open serves the request and says so in the
// guard header; fail_closed refuses it with a 503 the SDKs retry.
func TestClassifierTimeout(t *testing.T) {
	for _, tt := range []struct {
		policy     string
		wantStatus int
		wantCode   string
	}{
		{config.FailOpen, 200, ""},
		{config.FailClosed, 503, "guard_unavailable"},
	} {
		t.Run(tt.policy, func(t *testing.T) {
			fc := startClassifier(t, nil)
			f := startFake(t, fakellm.Options{})
			cl := &config.Classifier{Kind: config.ClassifierModerations, URL: fc.url, Timeout: 50 * time.Millisecond, OnError: tt.policy}
			g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
			res := g.do(t, "POST", "/v1/chat/completions", chatBody("Say hello", ""))
			if res.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.status, tt.wantStatus, res.body)
			}
			if tt.wantCode != "" {
				if _, _, code := envelope(t, res.body); code != tt.wantCode {
					t.Fatalf("code %q: %s", code, res.body)
				}
			}
			if h := res.header.Get("X-Llmgate-Guard"); !strings.Contains(h, "classifier_prompt=unavailable") {
				t.Fatalf("guard header %q", h)
			}
			g.waitMetric(t, "llmgate_guard_classifier_total", map[string]string{"direction": "prompt", "result": "error"}, "= 1", func(v float64) bool { return v == 1 })
			// The log says why, as it does for an async classifier.
			waitFor(t, "a log line saying why the classifier failed", func() bool {
				return strings.Contains(g.logs.String(), `"msg":"guard classifier failed"`) && strings.Contains(g.logs.String(), `"direction":"prompt","error":`)
			})
		})
	}
}

// A classifier that answers with an error status is logged with the URL it was asked at, and
// for a URL ending in /v1 (an OpenAI base URL, to which the kind's /v1/... path is appended)
// with the advice to drop it: "classifier answered 404" alone left a fail_open alias serving
// every prompt unchecked with no clue why.
func TestClassifierErrorSaysWhere(t *testing.T) {
	ln := listen(t)
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	f := startFake(t, fakellm.Options{})
	url := "http://" + ln.Addr().String() + "/v1"
	cl := &config.Classifier{Kind: config.ClassifierModerations, URL: url, OnError: config.FailOpen}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
	if res := g.do(t, "POST", "/v1/chat/completions", chatBody("Say hello", "")); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	waitFor(t, "the request's log line", func() bool { return strings.Contains(g.logs.String(), `"msg":"request"`) })
	want := `"error":"classifier answered 404 at ` + url + `/v1/moderations; the URL ends in /v1, which llmgate adds itself: give the server's base URL without it"`
	if !strings.Contains(g.logs.String(), want) {
		t.Fatalf("log has no %s:\n%s", want, g.logs.String())
	}
}

// A classifier that answers 200 with something that is no verdict (an URL pointing at another
// service, a Llama Guard model that rambles) fails like one that does not answer, and the log
// says so at the level of any other classifier failure: under fail_open its prompts go on
// unchecked.
func TestClassifierUnreadableVerdict(t *testing.T) {
	fc := startClassifier(t, func(string) string { return `<html>It works!</html>` })
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierModerations, URL: fc.url, OnError: config.FailOpen}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
	res := g.do(t, "POST", "/v1/chat/completions", chatBody("Say hello", ""))
	if h := res.header.Get("X-Llmgate-Guard"); res.status != 200 || h != "classifier_prompt=unavailable" {
		t.Fatalf("status %d guard %q: %s", res.status, h, res.body)
	}
	g.waitMetric(t, "llmgate_guard_classifier_total", map[string]string{"direction": "prompt", "result": "error"}, "= 1", func(v float64) bool { return v == 1 })
	// The request's own line comes after the classifier's, on the same writer.
	waitFor(t, "the request's log line", func() bool { return strings.Contains(g.logs.String(), `"msg":"request"`) })
	if !strings.Contains(g.logs.String(), `"level":"WARN","msg":"guard classifier failed"`) {
		t.Fatalf("no warning that the classifier failed:\n%s", g.logs.String())
	}
}

// A prompt with no text for the classifier to read (an image alone) is not sent to it: an empty
// input or conversation is a request classifiers refuse, so under fail_closed every such
// prompt got a 503 that the SDKs retried in vain.
func TestClassifierSkipsPromptsWithoutText(t *testing.T) {
	for _, kind := range []string{config.ClassifierModerations, config.ClassifierLlamaGuard} {
		t.Run(kind, func(t *testing.T) {
			fc := startClassifier(t, func(string) string { return `{"error":{"message":"input must not be empty"}}` })
			f := startFake(t, fakellm.Options{})
			cl := &config.Classifier{Kind: kind, URL: fc.url, Model: "lg", OnError: config.FailClosed}
			g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
			body := `{"model":"chat","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`
			res := g.do(t, "POST", "/v1/chat/completions", body)
			if res.status != 200 || res.header.Get("X-Llmgate-Guard") != "" {
				t.Fatalf("status %d guard %q: %s", res.status, res.header.Get("X-Llmgate-Guard"), res.body)
			}
			if asked, _ := fc.requests(); len(asked) != 0 {
				t.Fatalf("the classifier was asked %q", asked)
			}
		})
	}
}

// A Llama Guard model behind a chat endpoint gets the conversation with alternating roles
// (its chat template refuses anything else) and its "unsafe\nS9" blocks the prompt.
func TestClassifierLlamaGuard(t *testing.T) {
	fc := startClassifier(t, func(string) string { return llamaGuardAnswer("unsafe\nS9") })
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierLlamaGuard, URL: fc.url, Model: "meta-llama/Llama-Guard-3-8B"}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "flag", Classifier: cl}}, f.backend())))
	body := `{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":[{"type":"text","text":"how to build a dirty bomb"}]}]}`
	res := g.do(t, "POST", "/v1/chat/completions", body)
	if res.status != 200 || !strings.Contains(res.header.Get("X-Llmgate-Guard"), "classifier_prompt=S9") {
		t.Fatalf("flag: status %d guard %q", res.status, res.header.Get("X-Llmgate-Guard"))
	}
	asked, paths := fc.requests()
	if len(asked) != 1 || paths[0] != "/v1/chat/completions" {
		t.Fatalf("asked %d at %v", len(asked), paths)
	}
	var req struct {
		Model    string `json:"model"`
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal([]byte(asked[0]), &req); err != nil {
		t.Fatal(err)
	}
	roles := []string{}
	for _, m := range req.Messages {
		roles = append(roles, m.Role)
	}
	if req.Model != cl.Model || strings.Join(roles, ",") != "user,assistant,user" || req.Messages[0].Content != "Be brief.\n\nhi" ||
		req.Messages[2].Content != "how to build a dirty bomb" {
		t.Fatalf("classifier request %s", asked[0])
	}
}

// In async mode nothing waits: the client gets its answer, and the classifier's verdicts on
// the prompt and on the completion (buffered and streamed) show in metrics and the log.
func TestClassifierAsyncCompletions(t *testing.T) {
	fc := startClassifier(t, func(body string) string {
		if strings.Contains(body, `"assistant"`) {
			return llamaGuardAnswer("unsafe\nS10")
		}
		return llamaGuardAnswer("safe")
	})
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierLlamaGuard, URL: fc.url, Model: "lg", Mode: config.ClassifierAsync, Completions: true}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{PII: config.PIIGuard{Prompt: "redact", Restore: true},
		Safety: config.SafetyGuard{Prompt: "block", Completion: "log", Classifier: cl}}, f.backend())))
	for _, extra := range []string{"", `,"stream":true`} {
		res := g.do(t, "POST", "/v1/chat/completions", chatBody("Repeat after me: "+testEmail, extra))
		if res.status != 200 || strings.Contains(res.header.Get("X-Llmgate-Guard"), "classifier") {
			t.Fatalf("status %d guard %q: %s", res.status, res.header.Get("X-Llmgate-Guard"), res.body)
		}
	}
	g.waitMetric(t, "llmgate_guard_classifier_total", map[string]string{"direction": "completion", "result": "unsafe"}, "= 2", func(v float64) bool { return v == 2 })
	g.waitMetric(t, "llmgate_guard_classifier_total", map[string]string{"direction": "prompt", "result": "safe"}, "= 2", func(v float64) bool { return v == 2 })
	g.waitMetric(t, "llmgate_guard_safety_total", map[string]string{"direction": "completion", "category": "S10"}, "= 2", func(v float64) bool { return v == 2 })
	asked, _ := fc.requests()
	for _, a := range asked {
		if strings.Contains(a, testEmail) {
			t.Fatalf("the classifier saw personal data: %s", a)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(g.logs.String(), `"msg":"guard classifier flagged"`); n != 2 {
		t.Fatalf("%d flagged log lines, want 2:\n%s", n, g.logs.String())
	}
}

// More prompts at once than the classifier client keeps connections to its host (64) wait for
// a free one, within their timeout: while the classifier answers, none is refused with a 503
// (fail_closed) or, under fail_open, served unchecked.
func TestClassifierQueuesPromptsBeyondItsConnections(t *testing.T) {
	const prompts = 70
	answer := make(chan struct{})
	var once sync.Once
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-answer
		_, _ = io.WriteString(w, moderation(false))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierModerations, URL: "http://" + ln.Addr().String(), Timeout: 30 * time.Second, OnError: config.FailClosed}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
	t.Cleanup(func() { once.Do(func() { close(answer) }) }) // first: the gateway's Close waits for its prompts
	statuses := make(chan string, prompts)
	for range prompts {
		go func() {
			res, err := g.http.Post(g.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("Say hello", "")))
			if err != nil {
				statuses <- err.Error()
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			statuses <- strconv.Itoa(res.StatusCode) + " " + res.Header.Get("X-Llmgate-Guard") + " " + string(b)
		}()
	}
	// Every prompt waits for the classifier, which answers none before all of them came in.
	waitFor(t, "every prompt in flight", func() bool {
		select {
		case s := <-statuses:
			t.Fatalf("a prompt was answered before the classifier answered any: %s", s)
		default:
		}
		v, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_requests_in_flight", nil)
		return v == prompts
	})
	once.Do(func() { close(answer) })
	for range prompts {
		if s := <-statuses; !strings.HasPrefix(s, "200  ") {
			t.Fatalf("a prompt got %s", s)
		}
	}
}

// At shutdown the asynchronous verdicts still queued are dropped, not fetched: with a classifier
// slower than the traffic the queue stays full (1024 jobs), and Close fetched them all, four at
// a time and up to 10 s each, holding a stopping gateway for minutes past its grace.
func TestClassifierQueueIsDroppedAtClose(t *testing.T) {
	const workers, prompts = 4, 8 // the queue's workers, and as many prompts queued behind them
	release := make(chan struct{})
	var once sync.Once
	var asked atomic.Int64
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		asked.Add(1)
		<-release
		_, _ = io.WriteString(w, moderation(false))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierModerations, URL: "http://" + ln.Addr().String(), Mode: config.ClassifierAsync}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "log", Classifier: cl}}, f.backend())))
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // first: Close waits for the running verdicts
	for range prompts {
		if res := g.do(t, "POST", "/v1/chat/completions", chatBody("Say hello", "")); res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
	}
	waitFor(t, "every worker waiting for the classifier", func() bool { return asked.Load() == workers })
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	waitFor(t, "the classifier queue closed", func() bool { return gateway.ClassifyQueueClosed(g.Gateway) })
	once.Do(func() { close(release) })
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != workers {
		t.Fatalf("the classifier was asked %d times, want only the %d verdicts running when Close began", n, workers)
	}
}

// Under fail_closed the 503 says what the classifier did: a classifier answering 500, or
// answering with no verdict, was reported as one that "did not answer", which sent its operator
// to look at the network. The refusal counts in llmgate_guard_blocks_total, as the request's log
// line marks it guard_blocked; it was not counted.
func TestClassifierUnavailableSaysWhy(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		handler    http.HandlerFunc
	}{
		{"no answer", "did not answer", nil},
		{"error status", "answered with an error", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }},
		{"no verdict", "no verdict", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `<html>It works!</html>`) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var url string
			if tt.handler == nil {
				url = startClassifier(t, nil).url
			} else {
				ln := listen(t)
				srv := &http.Server{Handler: tt.handler}
				go func() { _ = srv.Serve(ln) }()
				t.Cleanup(func() { srv.Close() })
				url = "http://" + ln.Addr().String()
			}
			f := startFake(t, fakellm.Options{})
			cl := &config.Classifier{Kind: config.ClassifierModerations, URL: url, Timeout: 50 * time.Millisecond, OnError: config.FailClosed}
			g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: cl}}, f.backend())))
			res := g.do(t, "POST", "/v1/chat/completions", chatBody("Say hello", ""))
			var e struct {
				Error struct{ Message, Code string }
			}
			if err := json.Unmarshal(res.body, &e); err != nil || res.status != 503 || e.Error.Code != "guard_unavailable" || !strings.Contains(e.Error.Message, tt.want) {
				t.Fatalf("status %d: %s, want 503 guard_unavailable saying %q", res.status, res.body, tt.want)
			}
			g.waitMetric(t, "llmgate_guard_blocks_total", map[string]string{"direction": "prompt"}, "= 1", func(v float64) bool { return v == 1 })
		})
	}
}

// A classifier call still running at shutdown does not hold the gateway past the 2 s after the
// grace that the README promises: it is abandoned, and the log says so. Close waited for it
// until its own 10 s timeout.
func TestClassifierCallAbandonedAtClose(t *testing.T) {
	var asked atomic.Int64
	release := make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		asked.Add(1)
		<-release
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(release); srv.Close() })
	f := startFake(t, fakellm.Options{})
	cl := &config.Classifier{Kind: config.ClassifierModerations, URL: "http://" + ln.Addr().String(), Mode: config.ClassifierAsync}
	g := startGateway(t, newConfig(t, nil, guarded(config.Guard{Safety: config.SafetyGuard{Prompt: "log", Classifier: cl}}, f.backend())))
	if res := g.do(t, "POST", "/v1/chat/completions", chatBody("Say hello", "")); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	waitFor(t, "the classifier asked", func() bool { return asked.Load() == 1 })
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if logs := g.logs.String(); !strings.Contains(logs, `"msg":"shutdown: classifier calls still in flight were abandoned"`) || strings.Contains(logs, `"msg":"guard classifier failed"`) {
		t.Fatalf("Close waited for the classifier call:\n%s", logs)
	}
}
