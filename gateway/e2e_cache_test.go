package gateway_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

// cached turns the alias's response cache on.
func cached(m config.Model) config.Model {
	m.Cache = config.ModelCache{Enabled: true, TTL: time.Hour}
	return m
}

func cacheBody(content, extra string) string {
	return chatBody(content, `,"temperature":0`+extra)
}

// untilHit repeats a request until the cache answers it (stores are applied asynchronously,
// microseconds after the answer that made them) and returns that answer.
func (g *gw) untilHit(t *testing.T, body string, headers ...string) response {
	t.Helper()
	var res response
	// only-if-cached: a poll that comes before the store has applied the entry must not reach
	// the backend, whose request counts the tests check.
	headers = append(headers, "X-Llmgate-Cache", "only-if-cached")
	waitFor(t, "a cache hit", func() bool {
		res = g.do(t, "POST", "/v1/chat/completions", body, headers...)
		return res.header.Get("X-Llmgate-Cache") == "hit"
	})
	return res
}

func chatContent(t *testing.T, body []byte) (id, content string) {
	t.Helper()
	var c openai.ChatCompletionResponse
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) == 0 {
		t.Fatalf("not a chat completion (%v): %s", err, body)
	}
	return c.ID, c.Choices[0].Message.Content
}

// A deterministic request is answered once by the backend; the same request again is a hit
// with the same content and usage, a fresh id, in either shape; another version, another
// prompt or a changed parameter is a miss.
func TestCacheHitBothShapes(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend()), version("v2", f.backend())))))
	// What go-openai sends for the request below (it cannot send temperature 0, so: a seed).
	body := `{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is a cache?"}],"seed":7}`
	first := g.do(t, "POST", "/v1/chat/completions", body)
	if first.status != 200 || first.header.Get("X-Llmgate-Cache") != "miss" {
		t.Fatalf("first: status %d cache %q", first.status, first.header.Get("X-Llmgate-Cache"))
	}
	hit := g.untilHit(t, body)
	calls := f.Requests()
	firstID, want := chatContent(t, first.body)
	hitID, got := chatContent(t, hit.body)
	if got != want || hitID == firstID {
		t.Fatalf("hit content %q id %q; first %q id %q", got, hitID, want, firstID)
	}
	var u1, u2 struct{ Usage openai.Usage }
	_ = json.Unmarshal(first.body, &u1)
	_ = json.Unmarshal(hit.body, &u2)
	if u1.Usage != u2.Usage || u2.Usage.TotalTokens == 0 {
		t.Fatalf("usage %+v, want what the answer cost: %+v", u2.Usage, u1.Usage)
	}

	// The buffered entry replays as a stream, read with go-openai's stream reader.
	c, rec := g.client()
	seed := 7
	req := openai.ChatCompletionRequest{Model: "chat", Seed: &seed, Messages: []openai.ChatCompletionMessage{
		{Role: "system", Content: "Be brief."}, {Role: "user", Content: "What is a cache?"}}}
	var text strings.Builder
	stream, err := c.CreateChatCompletionStream(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chunk.Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	stream.Close()
	if rec.header().Get("X-Llmgate-Cache") != "hit" || text.String() != want {
		t.Fatalf("stream: cache %q text %q, want a hit with %q", rec.header().Get("X-Llmgate-Cache"), text.String(), want)
	}
	if f.Requests() != calls {
		t.Fatalf("the backend was called for a hit")
	}

	for name, b := range map[string]string{
		"other version":   strings.Replace(body, `"model":"chat"`, `"model":"chat@v2"`, 1),
		"other prompt":    cacheBody("What is a cache line?", ""),
		"other parameter": strings.Replace(body, `"seed":7`, `"seed":8`, 1),
	} {
		if res := g.do(t, "POST", "/v1/chat/completions", b); res.header.Get("X-Llmgate-Cache") != "miss" {
			t.Errorf("%s: cache %q, want miss", name, res.header.Get("X-Llmgate-Cache"))
		}
	}
}

// A completed stream answers a later buffered request.
func TestCacheStreamAnswersBuffered(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	res := g.do(t, "POST", "/v1/chat/completions", cacheBody("Stream it", `,"stream":true`))
	if res.status != 200 || res.header.Get("X-Llmgate-Cache") != "miss" {
		t.Fatalf("status %d cache %q", res.status, res.header.Get("X-Llmgate-Cache"))
	}
	streamed, _ := choiceTexts(t, res.body)
	hit := g.untilHit(t, cacheBody("Stream it", ""))
	if _, got := chatContent(t, hit.body); got != streamed[0] {
		t.Fatalf("buffered hit %q, stream said %q", got, streamed[0])
	}
}

// What must not be cached is not, and the per-request header controls are honoured.
func TestCacheRules(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	cases := []struct {
		name, body string
		headers    []string
		status     int
		result     string
	}{
		{"non-deterministic", chatBody("hi", ""), nil, 200, "bypass"},
		{"temperature above 0", chatBody("hi", `,"temperature":0.7`), nil, 200, "bypass"},
		{"bypass header", cacheBody("hi", ""), []string{"X-Llmgate-Cache", "bypass"}, 200, "bypass"},
		{"only-if-cached miss", cacheBody("never sent", ""), []string{"X-Llmgate-Cache", "only-if-cached"}, 504, "miss"},
		// Not cacheable: nothing was looked up, so no miss (the hit ratio must not count it).
		{"only-if-cached not cacheable", chatBody("hi", `,"temperature":0.7`), []string{"X-Llmgate-Cache", "only-if-cached"}, 504, "bypass"},
		{"unknown header value", cacheBody("hi", ""), []string{"X-Llmgate-Cache", "sometimes"}, 400, ""},
		{"backend error", cacheBody("hi", ""), []string{"X-Fakellm-Status", "500", "X-Llmgate-Cache", "refresh"}, 502, "refresh"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			res := g.do(t, "POST", "/v1/chat/completions", tt.body, tt.headers...)
			if res.status != tt.status || res.header.Get("X-Llmgate-Cache") != tt.result {
				t.Fatalf("status %d cache %q, want %d %q: %s", res.status, res.header.Get("X-Llmgate-Cache"), tt.status, tt.result, res.body)
			}
			// The OpenAI SDKs retry a 504 unless told not to; an only-if-cached miss is final.
			if res.status == 504 && res.header.Get("X-Should-Retry") != "false" {
				t.Errorf("only-if-cached miss without x-should-retry: false")
			}
		})
	}
	// The failed answer was not stored: the same request is a miss, then (stored) a hit.
	if res := g.do(t, "POST", "/v1/chat/completions", cacheBody("hi", ""), "X-Llmgate-Cache", "only-if-cached"); res.status != 504 {
		t.Fatalf("an error was cached: status %d", res.status)
	}
	// no-store: looked up, never stored.
	for range 3 {
		res := g.do(t, "POST", "/v1/chat/completions", cacheBody("private", ""), "Cache-Control", "no-store")
		if res.header.Get("X-Llmgate-Cache") != "miss" {
			t.Fatalf("no-store: cache %q", res.header.Get("X-Llmgate-Cache"))
		}
	}
}

// 100 identical requests at once reach the backend once; every client gets the answer.
func TestCacheCoalescing(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "buffered", true: "stream"}[stream], func(t *testing.T) {
			f := startFake(t, fakellm.Options{TTFT: 300 * time.Millisecond})
			g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
			extra := ""
			if stream {
				extra = `,"stream":true`
			}
			body := cacheBody("Everyone asks this", extra)
			const n = 100
			var wg sync.WaitGroup
			results := make([]response, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = g.do(t, "POST", "/v1/chat/completions", body)
				}()
			}
			wg.Wait()
			counts := map[string]int{}
			texts := map[string]int{}
			for _, res := range results {
				if res.status != 200 {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
				counts[res.header.Get("X-Llmgate-Cache")]++
				if stream {
					text, done := choiceTexts(t, res.body)
					if !done {
						t.Fatalf("stream without [DONE]: %s", res.body)
					}
					texts[text[0]]++
				} else {
					_, c := chatContent(t, res.body)
					texts[c]++
				}
			}
			if got := f.Requests(); got != 1 {
				t.Errorf("backend saw %d requests, want 1 (results %v)", got, counts)
			}
			if len(texts) != 1 || counts["coalesced"]+counts["hit"] != n-1 || counts["miss"] != 1 {
				t.Errorf("results %v, %d distinct answers", counts, len(texts))
			}
		})
	}
}

// only-if-cached on a model without a cache says so, rather than reporting a plain miss.
func TestCacheOnlyIfCachedWithoutCache(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	// "other" has a cache, so the store exists; "chat" has none.
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend())), cached(model("other", "o1", version("o1", f.backend())))))
	res := g.do(t, "POST", "/v1/chat/completions", cacheBody("hi", ""), "X-Llmgate-Cache", "only-if-cached")
	if res.status != 504 || !strings.Contains(string(res.body), "has no response cache") || res.header.Get("X-Should-Retry") != "false" {
		t.Fatalf("status %d, x-should-retry %q: %s", res.status, res.header.Get("X-Should-Retry"), res.body)
	}
	if n := f.Requests(); n != 0 {
		t.Errorf("the backend got %d requests", n)
	}
	// No cache was missed: the hit ratio a dashboard computes must not count it.
	if n, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_cache_requests_total", map[string]string{"model": "chat", "result": "miss"}); n != 0 {
		t.Errorf("llmgate_cache_requests_total{model=chat,result=miss} = %v, want 0", n)
	}
}

// Answers from the cache count in the version's latency histogram like any other answer, so
// that request rates and latencies on dashboards do not drop as the hit ratio rises.
func TestCacheHitsInLatencyMetric(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	body := cacheBody("Count me in", "")
	g.do(t, "POST", "/v1/chat/completions", body)
	for range 2 { // plain requests, not untilHit's only-if-cached polls: every one is answered
		waitFor(t, "a cache hit", func() bool {
			return g.do(t, "POST", "/v1/chat/completions", body).header.Get("X-Llmgate-Cache") == "hit"
		})
	}
	m := parseMetrics(t, g.metrics(t))
	v := map[string]string{"model": "chat", "version": "v1"}
	answered := 0.0
	for _, result := range []string{"hit", "miss", "coalesced", "bypass"} {
		n, _ := metricValue(m, "llmgate_cache_requests_total", map[string]string{"model": "chat", "version": "v1", "result": result})
		answered += n
	}
	hits, _ := metricValue(m, "llmgate_cache_requests_total", map[string]string{"model": "chat", "version": "v1", "result": "hit"})
	if n, _ := metricValue(m, "gen_ai_server_request_duration_seconds_count", v); n != answered || hits < 2 {
		t.Errorf("gen_ai_server_request_duration_seconds_count = %v for %v answers (%v hits)", n, answered, hits)
	}
}

// A stream leader whose client goes away does not cut its followers' answers: the backend's
// stream goes on for them, and the complete answer is stored.
func TestCacheCoalescedStreamSurvivesLeaderDisconnect(t *testing.T) {
	f := startFake(t, fakellm.Options{TTFT: 200 * time.Millisecond, OutputTokens: 20, TokensPerSecond: 100})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	body := cacheBody("Tell everyone the same story", `,"stream":true`)
	leader, follower, leave := g.coalescedPair(t, body)
	leave() // mid-stream
	leader.Body.Close()
	got, err := io.ReadAll(follower.Body)
	if err != nil {
		t.Fatal(err)
	}
	texts, done := choiceTexts(t, got)
	if !done || strings.Contains(string(got), `"error"`) || len(strings.Fields(texts[0])) != 20 {
		t.Fatalf("the follower's stream was cut when the leader's client left:\n%s", got)
	}
	if res := g.untilHit(t, body); !strings.Contains(string(res.body), "[DONE]") {
		t.Errorf("the completed answer was not stored: %s", res.body)
	}
	if n := f.Requests(); n != 1 {
		t.Errorf("backend saw %d requests, want 1", n)
	}
}

// Prompts that differ only in personal data share one entry (the backend saw placeholders),
// and each client gets its own values back in the answer.
func TestCacheWithPseudonyms(t *testing.T) {
	answer := `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"I will write to <EMAIL_ADDRESS_1>."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`
	b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, answer)
	m := cached(guarded(config.Guard{PII: config.PIIGuard{Prompt: "redact", Restore: true}}, b))
	g := startGateway(t, newConfig(t, nil, m))
	first := g.do(t, "POST", "/v1/chat/completions", cacheBody("Write to alice@example.com", ""))
	if _, c := chatContent(t, first.body); c != "I will write to alice@example.com." {
		t.Fatalf("first: %q", c)
	}
	hit := g.untilHit(t, cacheBody("Write to bob@example.org", ""))
	if _, c := chatContent(t, hit.body); c != "I will write to bob@example.org." {
		t.Fatalf("hit restored %q, want bob's own address", c)
	}
}

// The admin API shows the cache and empties it by model.
func TestCacheAdmin(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend()))), model("plain", "p1", version("p1", f.backend()))))
	body := cacheBody("Keep this", "")
	g.do(t, "POST", "/v1/chat/completions", body)
	g.untilHit(t, body)
	res := g.admin(t, "GET", "/admin/cache", "cache-admin")
	var v struct {
		Entries int64 `json:"entries"`
		Models  []struct {
			Model   string `json:"model"`
			Enabled bool   `json:"enabled"`
			Hits    uint64 `json:"hits"`
		} `json:"models"`
	}
	if err := json.Unmarshal(res.body, &v); err != nil || v.Entries != 1 {
		t.Fatalf("GET /admin/cache %d: %s", res.status, res.body)
	}
	// A model whose cache is off says so rather than look like a cache that is never hit.
	for _, m := range v.Models {
		if want := m.Model == "chat"; m.Enabled != want || (m.Model == "chat") != (m.Hits > 0) {
			t.Fatalf("GET /admin/cache: model %q enabled %v with %d hits: %s", m.Model, m.Enabled, m.Hits, res.body)
		}
	}
	if len(v.Models) == 0 || v.Models[0].Model != "chat" && (len(v.Models) < 2 || v.Models[1].Model != "chat") {
		t.Fatalf("GET /admin/cache lists no chat model: %s", res.body)
	}
	if res := g.admin(t, "DELETE", "/admin/cache?model=chat", "cache-admin"); res.status != 200 {
		t.Fatalf("DELETE: %d %s", res.status, res.body)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", body, "X-Llmgate-Cache", "only-if-cached"); res.status != 504 {
		t.Fatalf("after DELETE: status %d, want a miss", res.status)
	}
	g.waitMetric(t, "llmgate_cache_requests_total", map[string]string{"model": "chat", "result": "hit"}, ">= 1", func(v float64) bool { return v >= 1 })
}

// DELETE /admin/cache with a misspelt parameter, an empty or repeated one, an unknown model or
// version is refused with the parameter named and deletes nothing; GET takes no parameters.
// A version's DELETE empties only that version.
func TestCacheAdminBadQueryDeletesNothing(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend()))), cached(model("other", "o1", version("o1", f.backend())))))
	chat := cacheBody("Keep this", "")
	other := strings.Replace(chat, `"model":"chat"`, `"model":"other"`, 1)
	for _, body := range []string{chat, other} {
		g.do(t, "POST", "/v1/chat/completions", body)
		g.untilHit(t, body)
	}
	entries := func() int64 {
		t.Helper()
		res := g.admin(t, "GET", "/admin/cache", "cache-admin")
		var v struct {
			Entries int64 `json:"entries"`
		}
		if err := json.Unmarshal(res.body, &v); err != nil || res.status != 200 {
			t.Fatalf("GET /admin/cache %d: %s", res.status, res.body)
		}
		return v.Entries
	}
	if n := entries(); n != 2 {
		t.Fatalf("%d entries, want one per model", n)
	}
	for _, tt := range []struct {
		method, query string
		status        int
		param, code   string
	}{
		{"DELETE", "?modle=chat", 400, "modle", ""},
		{"DELETE", "?model=chat&verison=v1", 400, "verison", ""},
		{"DELETE", "?model=", 400, "model", ""},
		{"DELETE", "?model=chat&model=other", 400, "model", ""},
		{"DELETE", "?version=v1", 400, "version", ""},
		{"DELETE", "?model=chat&version=", 400, "version", ""},
		{"DELETE", "?model=nosuch", 404, "model", "model_not_found"},
		{"DELETE", "?model=chat&version=v9", 404, "version", "version_not_found"},
		{"DELETE", "?model=chat&version=o1", 404, "version", "version_not_found"},
		{"GET", "?model=chat", 400, "model", ""},
	} {
		res := g.admin(t, tt.method, "/admin/cache"+tt.query, "cache-admin")
		if res.status != tt.status {
			t.Errorf("%s %s: status %d, want %d: %s", tt.method, tt.query, res.status, tt.status, res.body)
			continue
		}
		if _, param, code := envelope(t, res.body); param != tt.param || code != tt.code {
			t.Errorf("%s %s: param %q code %q, want %q %q: %s", tt.method, tt.query, param, code, tt.param, tt.code, res.body)
		}
		if n := entries(); n != 2 {
			t.Fatalf("%s %s deleted entries: %d left, want 2", tt.method, tt.query, n)
		}
	}
	res := g.admin(t, "DELETE", "/admin/cache?model=chat&version=v1", "cache-admin")
	var d struct {
		Deleted int `json:"deleted"`
	}
	if err := json.Unmarshal(res.body, &d); err != nil || res.status != 200 || d.Deleted != 1 {
		t.Fatalf("DELETE chat v1: %d %s", res.status, res.body)
	}
	if n := entries(); n != 1 {
		t.Errorf("%d entries after emptying chat v1, want other's 1", n)
	}
}

// The access log says how each request was answered: a miss carries the backend's share of
// its duration, a hit has none.
func TestCacheResultInAccessLog(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	body := cacheBody("What is a log line?", "")
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.header.Get("X-Llmgate-Cache") != "miss" {
		t.Fatalf("first request: cache %q", res.header.Get("X-Llmgate-Cache"))
	}
	g.untilHit(t, body)
	var miss, hit map[string]any
	waitFor(t, "log lines of a miss and a hit", func() bool {
		for _, line := range strings.Split(g.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "request" {
				continue
			}
			switch {
			case m["cache"] == "miss" && miss == nil: // the first request; untilHit's polls may miss too
				miss = m
			case m["cache"] == "hit":
				hit = m
			}
		}
		return miss != nil && hit != nil
	})
	if up, ok := miss["upstream_ms"].(float64); !ok || up <= 0 || up > miss["duration_ms"].(float64) {
		t.Errorf("miss: upstream_ms %v, duration_ms %v: want a backend share within the duration", miss["upstream_ms"], miss["duration_ms"])
	}
	if _, ok := hit["upstream_ms"]; ok || hit["backend"] != nil {
		t.Errorf("hit: %v: a hit never reached a backend", hit)
	}
}

// A hit passes the completion guard exactly as a backend answer does, whichever way it takes:
// a text the guard already found clean is served without parsing the replay again, one with
// JSON escapes goes through the whole guard, and a leak is redacted on every hit.
func TestCacheHitCompletionGuard(t *testing.T) {
	for _, tt := range []struct{ name, content, want string }{
		{"clean", "A write-ahead log records each change before the data pages are written.", ""},
		{"escaped", `First, the log is written.\nThen \"data\" pages follow, safely.`, ""},
		{"leak", "Sure, you can write to carol@example.net about the overdue invoice today.",
			"Sure, you can write to <EMAIL_ADDRESS_1> about the overdue invoice today."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answer := `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"` +
				tt.content + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`
			b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, answer)
			m := cached(guarded(config.Guard{
				PII:    config.PIIGuard{Prompt: "redact", Completion: "redact"},
				Safety: config.SafetyGuard{Prompt: "block", Completion: "block"},
			}, b))
			g := startGateway(t, newConfig(t, nil, m))
			body := cacheBody("How does a database survive a crash?", "")
			first := g.do(t, "POST", "/v1/chat/completions", body)
			_, served := chatContent(t, first.body)
			if tt.want != "" && served != tt.want {
				t.Fatalf("miss served %q, want %q", served, tt.want)
			}
			for range 3 {
				hit := g.untilHit(t, body)
				if _, c := chatContent(t, hit.body); c != served {
					t.Fatalf("hit served %q, the miss %q", c, served)
				}
				if got, want := hit.header.Get("X-Llmgate-Guard"), first.header.Get("X-Llmgate-Guard"); got != want {
					t.Fatalf("hit guard header %q, the miss %q", got, want)
				}
			}
		})
	}
}

// Cache hits count in the refusal rate as the answer they replay: a refusal replayed is a
// refusal every time (the entry remembers what its answer was read as), and an ordinary
// answer replayed is not.
func TestCacheHitRefusals(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	answer := func(text string) string {
		return `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"` +
			text + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`
	}
	h := http.Header{"Content-Type": {"application/json"}}
	refuses := cannedBackend(t, 200, h, answer("I'm sorry, but I can't help with that."))
	helps := cannedBackend(t, 200, h, answer("Sure: a cache keeps answers."))
	g := startGateway(t, newConfig(t, nil, cached(model("no", "v1", version("v1", refuses))), cached(model("yes", "v1", version("v1", helps)))))
	for _, alias := range []string{"no", "yes"} {
		body := strings.Replace(cacheBody("What is a cache?", ""), `"model":"chat"`, `"model":"`+alias+`"`, 1)
		g.do(t, "POST", "/v1/chat/completions", body)
		g.untilHit(t, body)
		for range 3 {
			if res := g.do(t, "POST", "/v1/chat/completions", body); res.header.Get("X-Llmgate-Cache") != "hit" {
				t.Fatalf("%s: x-llmgate-cache %q, want hit", alias, res.header.Get("X-Llmgate-Cache"))
			}
		}
	}
	for alias, want := range map[string]float64{"no": 1, "yes": 0} {
		res := g.admin(t, "GET", "/admin/stats/"+alias, "cache-admin")
		var v struct {
			Versions []struct {
				Summary struct {
					Requests    uint64   `json:"requests"`
					RefusalRate *float64 `json:"refusal_rate"`
				} `json:"summary"`
			} `json:"versions"`
		}
		if err := json.Unmarshal(res.body, &v); err != nil || len(v.Versions) != 1 {
			t.Fatalf("%s: stats %d (%v): %s", alias, res.status, err, res.body)
		}
		s := v.Versions[0].Summary
		if s.Requests < 5 || s.RefusalRate == nil || *s.RefusalRate != want {
			t.Errorf("%s: refusal rate over %d requests %v, want %v: %s", alias, s.Requests, s.RefusalRate, want, res.body)
		}
	}
}

// An answer whose message carries OpenAI's refusal member (content null) is a refusal when the
// cache replays it too, as it was when the backend sent it and as a replayed stream's is: the
// buffered replays counted as answers, which halved the refusal rate of a version whose users
// repeat what it refuses.
func TestCacheHitRefusalMember(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	refuses := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}},
		`{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"That is not something I can do."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`)
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", refuses)))))
	body := cacheBody("What is a cache?", "")
	g.do(t, "POST", "/v1/chat/completions", body)
	g.untilHit(t, body)
	for range 2 {
		if res := g.do(t, "POST", "/v1/chat/completions", body); res.header.Get("X-Llmgate-Cache") != "hit" || !strings.Contains(string(res.body), `"refusal":"That is not`) {
			t.Fatalf("x-llmgate-cache %q: %s", res.header.Get("X-Llmgate-Cache"), res.body)
		}
	}
	s := g.statsAfter(t, 4, "the samples of the answer and its three hits", "chat", "v1", "cache-admin")
	if s.RefusalRate == nil || *s.RefusalRate != 1 {
		t.Fatalf("refusal rate %v over an answer and its hits that all refuse, want 1", deref64(s.RefusalRate))
	}
}

// gatedBackend answers a chat completion with text, but only once release is closed; calls
// counts the requests it got.
func gatedBackend(t *testing.T, text string) (b config.Backend, calls *atomic.Int64, release chan struct{}) {
	t.Helper()
	calls, release = new(atomic.Int64), make(chan struct{})
	enc, _ := json.Marshal(text)
	answer := `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":` + string(enc) + `},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		calls.Add(1)
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}, calls, release
}

// An answer fetched by x-llmgate-cache: refresh while DELETE /admin/cache runs is from before
// the delete: it is not stored, as a looked-up request's is not.
func TestCacheRefreshAcrossDelete(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	b, calls, release := gatedBackend(t, "from before the delete")
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b))), cached(model("marker", "m1", version("m1", f.backend())))))
	body := cacheBody("Refresh me", "")
	done := make(chan response, 1)
	go func() { done <- g.do(t, "POST", "/v1/chat/completions", body, "X-Llmgate-Cache", "refresh") }()
	waitFor(t, "the refresh at the backend", func() bool { return calls.Load() == 1 })
	if res := g.admin(t, "DELETE", "/admin/cache", "cache-admin"); res.status != 200 {
		t.Fatalf("DELETE /admin/cache: %d %s", res.status, res.body)
	}
	close(release)
	if res := <-done; res.status != 200 {
		t.Fatalf("refresh: %d %s", res.status, res.body)
	}
	// The store applies sets in order: once a later answer is a hit, the refresh's set is done.
	marker := strings.Replace(cacheBody("After", ""), `"model":"chat"`, `"model":"marker"`, 1)
	g.do(t, "POST", "/v1/chat/completions", marker)
	g.untilHit(t, marker)
	if res := g.do(t, "POST", "/v1/chat/completions", body, "X-Llmgate-Cache", "only-if-cached"); res.status != 504 {
		t.Fatalf("only-if-cached after the delete: %d %s; the refresh stored its answer from before it", res.status, res.body)
	}
}

// A request to a model deleted and deployed again under the same name does not follow a
// request still in flight to the old deployment: the new deployment answers it.
func TestCacheFlightAcrossModelRedeploy(t *testing.T) {
	tokens := withAdminTokens(t)
	old, oldCalls, release := gatedBackend(t, "from the old deployment")
	defer close(release)
	nu := startFake(t, fakellm.Options{Model: "m"})
	g := startGateway(t, newConfig(t, tokens, cached(model("chat", "v1", version("v1", old)))))
	body := cacheBody("Which deployment are you?", "")
	first := make(chan response, 1)
	go func() { first <- g.do(t, "POST", "/v1/chat/completions", body) }()
	waitFor(t, "the first request at the old backend", func() bool { return oldCalls.Load() == 1 })
	if res := g.call(t, "DELETE", "/admin/models/chat", opsToken, ""); res.status != 200 {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	dep := `{"version":"v1","backends":[{"url":"` + nu.URL + `","kind":"vllm","model":"m"}]}`
	if res := g.call(t, "POST", "/admin/models/chat/versions?probe=false", opsToken, dep); res.status != 200 {
		t.Fatalf("deploy: %d %s", res.status, res.body)
	}
	second := make(chan response, 1)
	go func() { second <- g.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-Echo", "1") }()
	var res response
	select {
	case res = <-second:
	case <-time.After(waitTimeout): // a follower of the old flight waits for the gated backend
		t.Fatal("the redeployed model's request is still waiting: it follows the old deployment's request")
	}
	if res.status != 200 || res.header.Get("X-Llmgate-Cache") == "coalesced" || res.header.Get("X-Fakellm-Received-Body") == "" {
		t.Fatalf("the redeployed model's request: status %d, cache %q, not answered by the new backend: %s", res.status, res.header.Get("X-Llmgate-Cache"), res.body)
	}
}

// A stream replayed from the cache has no first token of its own: the version's TTFT in
// /admin/stats is the backend's, as in the TTFT metrics, however many hits follow.
func TestCacheHitsKeepTTFT(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	f := startFake(t, fakellm.Options{TTFT: 50 * time.Millisecond})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	body := cacheBody("Time my first token", `,"stream":true`)
	g.do(t, "POST", "/v1/chat/completions", body)
	g.untilHit(t, body)
	for range 8 {
		g.do(t, "POST", "/v1/chat/completions", body)
	}
	res := g.admin(t, "GET", "/admin/stats/chat", "cache-admin")
	var v struct {
		Versions []struct {
			Summary struct {
				Requests uint64   `json:"requests"`
				TTFT     *float64 `json:"ttft_p50"`
			} `json:"summary"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(res.body, &v); err != nil || len(v.Versions) != 1 {
		t.Fatalf("stats %d (%v): %s", res.status, err, res.body)
	}
	if s := v.Versions[0].Summary; s.Requests < 10 || s.TTFT == nil || *s.TTFT < 0.04 {
		t.Fatalf("TTFT p50 over %d requests: %s; want the backend's 50 ms, not a replay's", s.Requests, res.body)
	}
}

// A tool-call answer has content null, as the backend answers it buffered, whichever shape
// filled the cache: a streamed answer (vLLM opens every stream with "content":"") replayed as
// a buffered one, and a buffered one replayed as a stream, whose chunks must add up to null
// content as a client accumulates them (openai-python's final message has content None).
func TestCacheToolCallsKeepNullContent(t *testing.T) {
	const head = `{"id":"chatcmpl-t1","object":"chat.completion.chunk","created":1,"model":"canned","choices":[`
	stream := "data: " + head + `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
		"data: " + head + `{"index":0,"delta":{"tool_calls":[{"id":"call_1","type":"function","index":0,"function":{"name":"get_weather"}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
		"data: " + head + `{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
		"data: " + head + `{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"tool_calls","stop_reason":null}]}` + "\n\n" +
		"data: " + head + `],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}` + "\n\n" +
		"data: [DONE]\n\n"
	buffered := `{"id":"chatcmpl-t2","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":null,` +
		`"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],` +
		`"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, stream)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, buffered)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	backend := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "canned"}
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", backend)))))
	const tools = `,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`

	// Streamed first, then asked for buffered.
	if res := g.do(t, "POST", "/v1/chat/completions", cacheBody("Weather in Paris?", tools+`,"stream":true`)); res.status != 200 {
		t.Fatalf("stream: status %d: %s", res.status, res.body)
	}
	hit := g.untilHit(t, cacheBody("Weather in Paris?", tools))
	var answer struct {
		Choices []struct {
			Message struct {
				Content   json.RawMessage   `json:"content"`
				ToolCalls []json.RawMessage `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(hit.body, &answer); err != nil || len(answer.Choices) != 1 {
		t.Fatalf("buffered hit (%v): %s", err, hit.body)
	}
	if m := answer.Choices[0].Message; string(m.Content) != "null" || len(m.ToolCalls) != 1 {
		t.Errorf("buffered hit of a streamed tool call: content %s with %d tool calls, want null as the backend answers: %s", m.Content, len(m.ToolCalls), hit.body)
	}

	// Buffered first, then asked for a stream.
	if res := g.do(t, "POST", "/v1/chat/completions", cacheBody("Weather in Lyon?", tools)); res.status != 200 {
		t.Fatalf("buffered: status %d: %s", res.status, res.body)
	}
	hit = g.untilHit(t, cacheBody("Weather in Lyon?", tools+`,"stream":true`))
	var args strings.Builder
	for _, ev := range events(hit.body) {
		ev = strings.TrimPrefix(ev, "data: ")
		if ev == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content   json.RawMessage `json:"content"`
					ToolCalls []struct {
						Function struct {
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("stream hit: %v: %s", err, ev)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil && string(ch.Delta.Content) != "null" {
				t.Errorf("stream hit of a buffered tool call: a chunk with content %s, so the stream adds up to a string where the backend answered null: %s", ch.Delta.Content, ev)
			}
			for _, tc := range ch.Delta.ToolCalls {
				args.WriteString(tc.Function.Arguments)
			}
		}
	}
	if args.String() != `{"city": "Paris"}` {
		t.Errorf("stream hit: tool call arguments %q", args.String())
	}
}

// x-llmgate-cache: refresh goes to the backend though an answer is cached and says so: the response reports refresh, not miss (nothing was looked up), and so does
// llmgate_cache_requests_total, whose misses a hit ratio divides by.
func TestCacheRefreshIsReported(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	body := cacheBody("Refresh me", "")
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 || res.header.Get("X-Llmgate-Cache") != "miss" {
		t.Fatalf("first request: status %d cache %q", res.status, res.header.Get("X-Llmgate-Cache"))
	}
	g.untilHit(t, body)
	labels := func(result string) map[string]string {
		return map[string]string{"model": "chat", "version": "v1", "result": result}
	}
	misses, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_cache_requests_total", labels("miss"))
	for _, stream := range []string{"", `,"stream":true`} {
		res := g.do(t, "POST", "/v1/chat/completions", cacheBody("Refresh me", stream), "X-Llmgate-Cache", "refresh")
		if res.status != 200 || res.header.Get("X-Llmgate-Cache") != "refresh" {
			t.Errorf("refresh (stream %v): status %d, x-llmgate-cache %q, want refresh: %s", stream != "", res.status, res.header.Get("X-Llmgate-Cache"), res.body)
		}
	}
	g.waitMetric(t, "llmgate_cache_requests_total", labels("refresh"), "= 2", func(v float64) bool { return v == 2 })
	if got, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_cache_requests_total", labels("miss")); got != misses {
		t.Errorf("refreshes counted as misses: %v misses, want %v", got, misses)
	}
}

// Once the cache is nearly full, an answer to a request seen for the first time is not stored
// (a stream of unique prompts would otherwise evict an entry per request); asked again, the
// request is stored, and hits from then on.
func TestCacheFullAdmitsRepeatedRequests(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	f := startFake(t, fakellm.Options{OutputTokens: 200})
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Cache.MaxBytes = 1 << 20 },
		cached(model("chat", "v1", version("v1", f.backend())))))
	type view struct {
		Bytes       int64  `json:"bytes"`
		MaxBytes    int64  `json:"max_bytes"`
		Stores      uint64 `json:"stores"`
		NotAdmitted uint64 `json:"not_admitted"`
	}
	stats := func() view {
		t.Helper()
		var v view
		if res := g.admin(t, "GET", "/admin/cache", "cache-admin"); json.Unmarshal(res.body, &v) != nil || res.status != 200 {
			t.Fatalf("GET /admin/cache %d: %s", res.status, res.body)
		}
		return v
	}
	ask := func(prompt, want string) {
		t.Helper()
		if res := g.do(t, "POST", "/v1/chat/completions", cacheBody(prompt, "")); res.status != 200 || res.header.Get("X-Llmgate-Cache") != want {
			t.Fatalf("%q: status %d, x-llmgate-cache %q, want %s: %s", prompt, res.status, res.header.Get("X-Llmgate-Cache"), want, res.body)
		}
	}
	for i := 0; ; i++ {
		if v := stats(); v.Bytes >= v.MaxBytes-v.MaxBytes/8 {
			break
		} else if i > 5000 {
			t.Fatalf("the cache did not fill: %+v", v)
		}
		ask(fmt.Sprintf("fill %d", i), "miss")
	}
	// The doorkeeper is a Bloom filter with per-process hash seeds: a new request reads as seen
	// now and then (about one in forty here) and is stored at once. Of a few new prompts, one
	// is turned away; a doorkeeper that took them all fails.
	before, prompt := stats(), ""
	for k := 0; k < 8 && prompt == ""; k++ {
		p := fmt.Sprintf("asked twice %d", k)
		ask(p, "miss")
		v := stats()
		if v.NotAdmitted == before.NotAdmitted+1 && v.Stores == before.Stores {
			prompt = p
		}
		before = v
	}
	if prompt == "" {
		t.Fatalf("eight new prompts asked once in a nearly full cache were all stored: %+v", before)
	}
	// Only-if-cached misses of new prompts never reach the backend: there is no answer to turn
	// away, and they do not count as asked.
	for k := range 3 {
		if res := g.do(t, "POST", "/v1/chat/completions", cacheBody(fmt.Sprintf("only polled %d", k), ""), "X-Llmgate-Cache", "only-if-cached"); res.status != 504 {
			t.Fatalf("only-if-cached: status %d: %s", res.status, res.body)
		}
	}
	if v := stats(); v.NotAdmitted != before.NotAdmitted {
		t.Fatalf("only-if-cached misses counted as answers not admitted: %+v after %+v", v, before)
	}
	ask(prompt, "miss")
	if v := stats(); v.Stores != before.Stores+1 {
		t.Fatalf("second time: %+v after %+v, want it stored", v, before)
	}
	g.untilHit(t, cacheBody(prompt, ""))
}

// In a nearly full cache, a request that another joined while it was in flight was asked again:
// its answer is stored, as Admit stores a request's the second time it is asked, and the next
// request hits. Buffered and streamed.
func TestCacheFullAdmitsCoalescedRequests(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "buffered", true: "stream"}[stream], func(t *testing.T) {
			t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
			fast := startFake(t, fakellm.Options{OutputTokens: 200})
			slow := startFake(t, fakellm.Options{TTFT: 300 * time.Millisecond})
			g := startGateway(t, newConfig(t, func(c *config.Config) { c.Cache.MaxBytes = 1 << 20 },
				cached(model("fill", "v1", version("v1", fast.backend()))),
				cached(model("chat", "v1", version("v1", slow.backend())))))
			var v struct {
				Bytes, MaxBytes int64
				Stores          uint64
			}
			stats := func() {
				t.Helper()
				res := g.admin(t, "GET", "/admin/cache", "cache-admin")
				var raw struct {
					Bytes    int64  `json:"bytes"`
					MaxBytes int64  `json:"max_bytes"`
					Stores   uint64 `json:"stores"`
				}
				if json.Unmarshal(res.body, &raw) != nil || res.status != 200 {
					t.Fatalf("GET /admin/cache %d: %s", res.status, res.body)
				}
				v.Bytes, v.MaxBytes, v.Stores = raw.Bytes, raw.MaxBytes, raw.Stores
			}
			for i := 0; ; i++ {
				if stats(); v.Bytes >= v.MaxBytes-v.MaxBytes/8 {
					break
				} else if i > 5000 {
					t.Fatalf("the cache did not fill: %+v", v)
				}
				body := strings.Replace(cacheBody(fmt.Sprintf("fill %d", i), ""), `"chat"`, `"fill"`, 1)
				if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
					t.Fatalf("fill: %d %s", res.status, res.body)
				}
			}
			stores := v.Stores
			extra := ""
			if stream {
				extra = `,"stream":true`
			}
			body := cacheBody("asked by two at once", extra)
			var leader response
			done := make(chan struct{})
			go func() {
				defer close(done)
				leader = g.do(t, "POST", "/v1/chat/completions", body)
			}()
			time.Sleep(100 * time.Millisecond) // the leader is waiting for its first token
			follower := g.do(t, "POST", "/v1/chat/completions", body)
			<-done
			if got := [2]string{leader.header.Get("X-Llmgate-Cache"), follower.header.Get("X-Llmgate-Cache")}; got != [2]string{"miss", "coalesced"} {
				t.Fatalf("x-llmgate-cache %v, want [miss coalesced]", got)
			}
			if stats(); v.Stores != stores+1 {
				t.Fatalf("stores %d after %d: the answer asked for twice was not stored", v.Stores, stores)
			}
			g.untilHit(t, body)
			if n := slow.Requests(); n != 1 {
				t.Errorf("the backend saw %d requests, want 1", n)
			}
		})
	}
}

// An only-if-cached request that is never answered from the cache gets a 504 that says why,
// rather than "no cached answer exists", which reads as if asking again could help.
func TestCacheOnlyIfCachedSaysWhy(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	for _, tt := range []struct{ body, says string }{
		{chatBody("hi", `,"temperature":0.7`), "not deterministic"},
		{cacheBody("hi", `,"n":0`), "its n is not a small positive integer"},
		{cacheBody("hi", ""), "no cached answer exists"},
	} {
		res := g.do(t, "POST", "/v1/chat/completions", tt.body, "X-Llmgate-Cache", "only-if-cached")
		if res.status != 504 || !strings.Contains(string(res.body), tt.says) {
			t.Errorf("%s: status %d, want 504 saying %q: %s", tt.body, res.status, tt.says, res.body)
		}
	}
}

// A stream leader whose backend fails before its answer begins (an error as its first event)
// has sent this follower nothing yet: the follower goes to the backend itself and gets a whole
// answer, as when a leader fails before its 200, instead of the leader's error.
func TestCacheCoalescedStreamLeaderFailsAtFirstEvent(t *testing.T) {
	f := startFake(t, fakellm.Options{Flavor: "ollama"}) // Ollama streams no role chunk before an error
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	body := cacheBody("Tell everyone the same story", `,"stream":true`)
	lc := make(chan response, 1)
	go func() {
		lc <- g.do(t, "POST", "/v1/chat/completions", body, "X-Fakellm-TTFT", "400ms", "X-Fakellm-Stream-Error-After", "0")
	}()
	waitFor(t, "the leader at the backend", func() bool { return f.Requests() == 1 })
	fo := g.do(t, "POST", "/v1/chat/completions", body)
	leader := <-lc
	if !strings.Contains(string(leader.body), `"error"`) {
		t.Fatalf("the leader's stream did not fail:\n%s", leader.body)
	}
	texts, done := choiceTexts(t, fo.body)
	if !done || strings.Contains(string(fo.body), `"error"`) || texts[0] == "" {
		t.Fatalf("follower (x-llmgate-cache %s) got the leader's failure instead of its own answer:\n%s", fo.header.Get("X-Llmgate-Cache"), fo.body)
	}
	if n := f.Requests(); n != 2 {
		t.Errorf("backend saw %d requests, want 2", n)
	}
}

// ... and so is one whose backend fails after a chunk that only opened the answer with its role
// (a server that sends it before its prefill): the follower, whether it joined before or after
// that chunk, has had nothing of the answer, and goes to the backend itself instead of getting
// the leader's error.
func TestCacheCoalescedStreamLeaderFailsAfterRoleChunk(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	chunk := func(delta, finish string) string {
		return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	var calls atomic.Int64
	release := make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/v1/chat/completions" {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, chunk(`{"role":"assistant","content":""}`, "null"))
		if calls.Add(1) == 1 {
			w.(http.Flusher).Flush()
			<-release
			_, _ = io.WriteString(w, `data: {"error": {"message": "EngineCore encountered an issue.", "type": "InternalServerError", "param": null, "code": 500}}`+"\n\ndata: [DONE]\n\n")
			return
		}
		_, _ = io.WriteString(w, chunk(`{"content":"Once upon a time."}`, "null")+chunk(`{}`, `"stop"`)+"data: [DONE]\n\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b)))))
	body := cacheBody("Tell everyone the same story", `,"stream":true`)
	leader := g.postChat(t, ctx(t), body)
	defer leader.Body.Close()
	rd := bufio.NewReader(leader.Body)
	if line, err := rd.ReadString('\n'); err != nil || !strings.Contains(line, `"role":"assistant"`) {
		t.Fatalf("the leader's first event %q (%v), want its role chunk", line, err)
	}
	fc := make(chan response, 1)
	go func() { fc <- g.do(t, "POST", "/v1/chat/completions", body) }()
	g.waitFollowers(t, "the follower on the leader's flight", 1)
	open()
	if rest, _ := io.ReadAll(rd); !strings.Contains(string(rest), `"error"`) {
		t.Fatalf("the leader's stream did not fail:\n%s", rest)
	}
	fo := <-fc
	texts, done := choiceTexts(t, fo.body)
	if !done || strings.Contains(string(fo.body), `"error"`) || texts[0] != "Once upon a time." {
		t.Fatalf("follower (x-llmgate-cache %s) got the leader's failure instead of its own answer:\n%s", fo.header.Get("X-Llmgate-Cache"), fo.body)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("backend saw %d requests, want 2", n)
	}
}

// A request with x-llmgate-cache: only-if-cached that the cache cannot answer (a 504 no model
// was asked for) is no sample of the version's statistics: polls of the cache would otherwise
// lower its refusal and error rates, as if the model had answered them.
func TestOnlyIfCachedMissIsNoSample(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, `{"id":"c1","object":"chat.completion","created":1,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"I'm sorry, but I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`)
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b)))))
	for i := range 3 {
		res := g.do(t, "POST", "/v1/chat/completions", cacheBody("never asked "+strconv.Itoa(i), ""), "X-Llmgate-Cache", "only-if-cached")
		if res.status != 504 {
			t.Fatalf("only-if-cached of an answer never stored: %d %s", res.status, res.body)
		}
	}
	if res := g.do(t, "POST", "/v1/chat/completions", cacheBody("asked", "")); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var s statsSummary
	waitFor(t, "the answer's sample", func() bool {
		s = g.statsOf(t, "chat", "v1", "cache-admin")
		return s.Requests > 0
	})
	if s.Requests != 1 || s.RefusalRate == nil || *s.RefusalRate != 1 {
		t.Errorf("after 3 only-if-cached misses and 1 refused answer: %d requests, refusal rate %v; want 1 and 1", s.Requests, deref64(s.RefusalRate))
	}
}

// A backend that echoes the requester's own members (user, metadata) in its stream chunks: a
// stream coalesced onto another requester's gets that stream without them, as a replay from the
// cache is (TestReplayDropsCallerFields), never the first requester's user or metadata.
func TestCacheCoalescedStreamWithoutLeaderEcho(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	calls, release := new(atomic.Int64), make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ User string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		calls.Add(1)
		<-release
		user, _ := json.Marshal(req.User)
		w.Header().Set("Content-Type", "text/event-stream")
		for _, chunk := range []string{
			`"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]`,
			`"choices":[{"index":0,"delta":{"content":"Hello there"},"finish_reason":null}]`,
			`"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]`,
		} {
			fmt.Fprintf(w, `data: {"user":%s,"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","metadata":{"tenant":%s},%s}`+"\n\n", user, user, chunk)
			w.(http.Flusher).Flush()
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b)))))
	body := func(user string) string { return cacheBody("Say hello", `,"stream":true,"user":"`+user+`"`) }
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	lc, fc := make(chan response, 1), make(chan response, 1)
	go func() { lc <- g.do(t, "POST", "/v1/chat/completions", body("alice@example.com")) }()
	waitFor(t, "the leader at the backend", func() bool { return calls.Load() == 1 })
	go func() { fc <- g.do(t, "POST", "/v1/chat/completions", body("bob@example.org")) }()
	g.waitFollowers(t, "a follower", 1)
	open()
	<-lc
	f := <-fc
	texts, done := streamTexts(t, f.body)
	if f.header.Get("X-Llmgate-Cache") != "coalesced" || !done || texts[0] != "Hello there" {
		t.Fatalf("follower: cache %q, texts %v, [DONE] %v:\n%s", f.header.Get("X-Llmgate-Cache"), texts, done, f.body)
	}
	if strings.Contains(string(f.body), "alice") || strings.Contains(string(f.body), `"metadata"`) {
		t.Errorf("the follower got the leader's user or metadata:\n%s", f.body)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the backend got %d requests, want 1", n)
	}
	// /admin/cache counts the follower as llmgate_cache_requests_total does: coalesced, not a
	// miss, and answered without a backend call of its own.
	var v struct {
		Misses, Coalesced int
		HitRatio          float64 `json:"hit_ratio"`
		Models            []struct {
			Misses, Coalesced int
			HitRatio          float64 `json:"hit_ratio"`
		}
	}
	_ = json.Unmarshal(g.admin(t, "GET", "/admin/cache", "cache-admin").body, &v)
	if v.Misses != 1 || v.Coalesced != 1 || v.HitRatio != 0.5 || len(v.Models) != 1 ||
		v.Models[0].Misses != 1 || v.Models[0].Coalesced != 1 || v.Models[0].HitRatio != 0.5 {
		t.Errorf("/admin/cache after a miss and a follower: %+v, want 1 miss, 1 coalesced and a hit ratio of 0.5, per model too", v)
	}
}

// A backend that fails a stream with an error event after the leader's client left: the
// coalesced followers still reading the answer get that error, as they would have had the
// leader stayed, not a stream the backend "closed early".
func TestCacheCoalescedStreamBackendErrorAfterLeaderLeft(t *testing.T) {
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		time.Sleep(200 * time.Millisecond) // the prefill, during which the follower joins
		// A word every 10 ms, as a backend generates: the gateway sees the leader's client gone
		// at a write well before the error.
		for i := range 40 {
			fmt.Fprintf(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"w%d "},"finish_reason":null}]}`+"\n\n", i)
			fl.Flush()
			time.Sleep(10 * time.Millisecond)
		}
		_, _ = io.WriteString(w, `data: {"error":{"message":"KV cache exhausted: request preempted","type":"server_error","code":"kv_cache_exhausted"}}`+"\n\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b)))))
	leader, follower, leave := g.coalescedPair(t, cacheBody("Fail late", `,"stream":true`))
	if _, err := bufio.NewReader(leader.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	leave()
	leader.Body.Close()
	got, err := io.ReadAll(follower.Body)
	if err != nil {
		t.Fatal(err)
	}
	evs := events(got)
	last := strings.TrimPrefix(evs[len(evs)-1], "data: ")
	if !strings.Contains(last, "KV cache exhausted") {
		t.Fatalf("the follower's stream ended with %s, not the backend's error:\n%s", last, got)
	}
}

// A request that joins the flight of one sent with Cache-Control: no-store gets that answer,
// which is its own answer too: it is stored for it, as it would be had it gone first, while
// the no-store request alone stores nothing. Buffered and streamed.
func TestCacheNoStoreLeaderStoresForFollower(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "buffered", true: "stream"}[stream], func(t *testing.T) {
			t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
			b, calls, release := gatedBackend(t, "the same answer for both")
			g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b)))))
			extra := ""
			if stream {
				extra = `,"stream":true`
			}
			body := cacheBody("Asked privately and not", extra)
			var once sync.Once
			open := func() { once.Do(func() { close(release) }) }
			defer open()
			lc, fc := make(chan response, 1), make(chan response, 1)
			go func() { lc <- g.do(t, "POST", "/v1/chat/completions", body, "Cache-Control", "no-store") }()
			waitFor(t, "the no-store request at the backend", func() bool { return calls.Load() == 1 })
			go func() { fc <- g.do(t, "POST", "/v1/chat/completions", body) }()
			g.waitFollowers(t, "a follower", 1)
			open()
			if l, f := <-lc, <-fc; l.status != 200 || f.status != 200 || f.header.Get("X-Llmgate-Cache") != "coalesced" {
				t.Fatalf("leader %d, follower %d %q: %s", l.status, f.status, f.header.Get("X-Llmgate-Cache"), f.body)
			}
			g.untilHit(t, body)
			if n := calls.Load(); n != 1 {
				t.Errorf("the backend got %d requests, want 1", n)
			}
		})
	}
}

// A request routed to a version before it was deleted and deployed again under the same name
// (here held by the prompt classifier meanwhile) is answered by the deleted deployment: its
// answer is not stored for the new one, whose next request its backend answers.
func TestCacheVersionRedeployedWhileRequestRouted(t *testing.T) {
	tokens := withAdminTokens(t)
	verdict := make(chan struct{})
	var asked atomic.Int64
	classifier := startClassifier(t, func(string) string {
		if asked.Add(1) == 1 {
			<-verdict
		}
		return moderation(false)
	})
	oldV2 := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"from the deleted v2"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}`)
	newV2 := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, `{"id":"c2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"from the new v2"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}`)
	stable := startFake(t, fakellm.Options{Model: "m"})
	m := cached(model("chat", "v1", version("v1", stable.backend()), version("v2", oldV2)))
	m.Guard = config.Guard{Safety: config.SafetyGuard{Prompt: "block", Classifier: &config.Classifier{Kind: config.ClassifierModerations, URL: classifier.url, Timeout: time.Minute}}}
	g := startGateway(t, newConfig(t, tokens, m, cached(model("marker", "m1", version("m1", stable.backend())))))
	body := strings.Replace(cacheBody("Which v2 are you?", ""), `"model":"chat"`, `"model":"chat@v2"`, 1)
	first := make(chan response, 1)
	go func() { first <- g.do(t, "POST", "/v1/chat/completions", body) }()
	waitFor(t, "the first request at the classifier", func() bool { return asked.Load() == 1 })
	if res := g.call(t, "DELETE", "/admin/models/chat/versions/v2", opsToken, ""); res.status != 200 {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	dep := `{"version":"v2","backends":[{"url":"` + newV2.URL + `","kind":"vllm","model":"m"}]}`
	if res := g.call(t, "POST", "/admin/models/chat/versions?probe=false", opsToken, dep); res.status != 200 {
		t.Fatalf("deploy: %d %s", res.status, res.body)
	}
	close(verdict)
	if res := <-first; res.status != 200 || !strings.Contains(string(res.body), "from the deleted v2") {
		t.Fatalf("first: %d %s", res.status, res.body)
	}
	// The store applies sets in order: once a later answer is a hit, the first one's set is done.
	marker := strings.Replace(cacheBody("After", ""), `"model":"chat"`, `"model":"marker"`, 1)
	g.do(t, "POST", "/v1/chat/completions", marker)
	g.untilHit(t, marker)
	res := g.do(t, "POST", "/v1/chat/completions", body)
	if res.status != 200 || !strings.Contains(string(res.body), "from the new v2") {
		t.Fatalf("the redeployed v2 answered with the deleted one's answer (x-llmgate-cache %q): %s", res.header.Get("X-Llmgate-Cache"), res.body)
	}
}

// A buffered request that joined a stream the backend cut with content_filter, which is not
// stored, gets that answer as the stream followers do: it used to call the backend again.
func TestCacheCoalescedBufferedFollowerOfUnstoredStream(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	calls, release := new(atomic.Int64), make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		calls.Add(1)
		<-release
		w.Header().Set("Content-Type", "text/event-stream")
		for _, chunk := range []string{
			`{"role":"assistant","content":""},"finish_reason":null`,
			`{"content":"Here is how"},"finish_reason":null`,
			`{},"finish_reason":"content_filter"`,
		} {
			fmt.Fprintf(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":%s}]}`+"\n\n", chunk)
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	b := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b)))))
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	lc, fc := make(chan response, 1), make(chan response, 1)
	go func() { lc <- g.do(t, "POST", "/v1/chat/completions", cacheBody("Tell me", `,"stream":true`)) }()
	waitFor(t, "the leader at the backend", func() bool { return calls.Load() == 1 })
	go func() { fc <- g.do(t, "POST", "/v1/chat/completions", cacheBody("Tell me", "")) }()
	g.waitFollowers(t, "a follower", 1)
	open()
	<-lc
	f := <-fc
	var got struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal(f.body, &got); err != nil || len(got.Choices) != 1 || got.Choices[0].Message.Content != "Here is how" ||
		got.Choices[0].FinishReason != "content_filter" || f.header.Get("X-Llmgate-Cache") != "coalesced" {
		t.Fatalf("buffered follower (x-llmgate-cache %q, %v):\n%s", f.header.Get("X-Llmgate-Cache"), err, f.body)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the backend got %d requests, want 1", n)
	}
}
