package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

// answerView is what a user reads of an answer in either shape: per choice index its text and
// finish_reason, how many role deltas it had, and the usage.
type answerView struct {
	Choices map[int]string
	Finish  map[int]string
	Roles   map[int]int
	Usage   string
	Done    bool
}

func (a answerView) String() string {
	keys := []int{}
	for k := range a.Choices {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "[%d %q %s roles=%d] ", k, a.Choices[k], a.Finish[k], a.Roles[k])
	}
	fmt.Fprintf(&b, "usage=%s", a.Usage)
	return b.String()
}

// viewOf reads a buffered chat/completion body or an SSE stream into an answerView.
func viewOf(t *testing.T, body []byte) answerView {
	t.Helper()
	v := answerView{Choices: map[int]string{}, Finish: map[int]string{}, Roles: map[int]int{}}
	type choice struct {
		Index   int `json:"index"`
		Text    *string
		Message *struct{ Content string }
		Delta   *struct {
			Role    string
			Content string
		}
		FinishReason *string `json:"finish_reason"`
	}
	type doc struct {
		Choices []choice
		Usage   json.RawMessage
		Error   json.RawMessage
	}
	add := func(d doc) {
		if d.Error != nil {
			t.Fatalf("error in answer: %s", body)
		}
		if len(d.Usage) > 0 && string(d.Usage) != "null" {
			v.Usage = string(d.Usage)
		}
		for _, c := range d.Choices {
			switch {
			case c.Text != nil:
				v.Choices[c.Index] += *c.Text
			case c.Message != nil:
				v.Choices[c.Index] += c.Message.Content
			case c.Delta != nil:
				v.Choices[c.Index] += c.Delta.Content
				if c.Delta.Role != "" {
					v.Roles[c.Index]++
				}
			}
			if c.FinishReason != nil {
				v.Finish[c.Index] += *c.FinishReason
			}
		}
	}
	if !strings.HasPrefix(strings.TrimSpace(string(body)), "data:") {
		var d doc
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		add(d)
		v.Done = true
		return v
	}
	for _, ev := range events(body) {
		ev = strings.TrimPrefix(ev, "data: ")
		if ev == "[DONE]" {
			v.Done = true
			continue
		}
		var d doc
		if err := json.Unmarshal([]byte(ev), &d); err != nil {
			t.Fatalf("event %q: %v", ev, err)
		}
		add(d)
	}
	return v
}

func compactJSON(s string) string {
	var m map[string]any
	if json.Unmarshal([]byte(s), &m) != nil {
		return s
	}
	for k, v := range m {
		if v == nil {
			delete(m, k)
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func sameAnswer(t *testing.T, what string, got, want answerView) {
	t.Helper()
	if fmt.Sprint(got.Choices) != fmt.Sprint(want.Choices) || fmt.Sprint(got.Finish) != fmt.Sprint(want.Finish) ||
		compactJSON(got.Usage) != compactJSON(want.Usage) || !got.Done {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// A completion with a list of prompts is answered with n choices per prompt; the whole answer
// is cached, from a stream or a buffered answer, and replays in either shape as the backend
// answered it.
func TestCacheCompletionPromptList(t *testing.T) {
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))
	for _, first := range []string{"buffered", "stream"} {
		t.Run(first, func(t *testing.T) {
			base := `{"model":"chat","prompt":["` + first + `","and another"],"seed":5,"n":2`
			buffered, stream := base+`}`, base+`,"stream":true,"stream_options":{"include_usage":true}}`
			want := viewOf(t, g.do(t, "POST", "/v1/completions", buffered, "X-Llmgate-Cache", "bypass").body)
			if len(want.Choices) != 4 {
				t.Fatalf("the backend answered %v, want 4 choices", want)
			}
			req := map[string]string{"buffered": buffered, "stream": stream}[first]
			if res := g.do(t, "POST", "/v1/completions", req); res.header.Get("X-Llmgate-Cache") != "miss" {
				t.Fatalf("first: cache %q", res.header.Get("X-Llmgate-Cache"))
			}
			var hit response
			waitFor(t, "a cache hit", func() bool {
				hit = g.do(t, "POST", "/v1/completions", buffered)
				return hit.header.Get("X-Llmgate-Cache") == "hit"
			})
			sameAnswer(t, "buffered hit", viewOf(t, hit.body), want)
			res := g.do(t, "POST", "/v1/completions", stream)
			if res.header.Get("X-Llmgate-Cache") != "hit" {
				t.Fatalf("stream: cache %q", res.header.Get("X-Llmgate-Cache"))
			}
			sameAnswer(t, "stream hit", viewOf(t, res.body), want)
		})
	}
}

// gatedStreamBackend answers chat completions with a two-choice vLLM stream (or buffered
// body) whose texts carry <EMAIL_ADDRESS_1>, once release is closed.
func gatedStreamBackend(t *testing.T) (b config.Backend, calls *atomic.Int64, release chan struct{}) {
	t.Helper()
	calls, release = new(atomic.Int64), make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls.Add(1)
		<-release
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[`+
				`{"index":0,"message":{"role":"assistant","content":"Zero to <EMAIL_ADDRESS_1> ok"},"finish_reason":"stop"},`+
				`{"index":1,"message":{"role":"assistant","content":"One to <EMAIL_ADDRESS_1> ok"},"finish_reason":"length"}],`+
				`"usage":{"prompt_tokens":5,"completion_tokens":12,"total_tokens":17}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		chunk := func(i int, delta, finish string) {
			fmt.Fprintf(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":%d,"delta":%s,"logprobs":null,"finish_reason":%s}]}`+"\n\n", i, delta, finish)
			fl.Flush()
		}
		chunk(0, `{"role":"assistant","content":""}`, "null")
		chunk(1, `{"role":"assistant","content":""}`, "null")
		chunk(0, `{"content":"Zero to <EMAIL_"}`, "null")
		chunk(1, `{"content":"One to <EMAIL_ADDR"}`, "null")
		chunk(0, `{"content":"ADDRESS_1> ok"}`, "null")
		chunk(1, `{"content":"ESS_1> ok"}`, "null")
		chunk(0, `{"content":""}`, `"stop"`)
		chunk(1, `{"content":""}`, `"length"`)
		_, _ = io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":12,"total_tokens":17}}`+"\n\ndata: [DONE]\n\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}, calls, release
}

// Two-choice answers with placeholders: the coalesced followers of a stream, buffered and
// streamed, and later hits in either shape each get their own user's address back.
func TestCacheChoicesRestoreOwnValues(t *testing.T) {
	t.Setenv("LLMGATE_ADMIN_TOKEN", "cache-admin")
	b, calls, release := gatedStreamBackend(t)
	m := cached(guarded(config.Guard{PII: config.PIIGuard{Prompt: "redact", Restore: true}}, b))
	g := startGateway(t, newConfig(t, nil, m))
	body := func(mail string, stream bool) string {
		s := `{"model":"chat","messages":[{"role":"user","content":"Write to ` + mail + `"}],"seed":1,"n":2`
		if stream {
			s += `,"stream":true`
		}
		return s + `}`
	}
	users := []string{"alice@example.com", "bob@example.org", "carol@example.net"}
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	lc, fc, bufc := make(chan response, 1), make(chan response, 1), make(chan response, 1)
	go func() { lc <- g.do(t, "POST", "/v1/chat/completions", body(users[0], true)) }()
	waitFor(t, "the leader at the backend", func() bool { return calls.Load() == 1 })
	go func() { fc <- g.do(t, "POST", "/v1/chat/completions", body(users[1], true)) }()
	go func() { bufc <- g.do(t, "POST", "/v1/chat/completions", body(users[2], false)) }()
	g.waitFollowers(t, "two followers", 2)
	open()
	check := func(who, mail string, raw []byte) {
		v := viewOf(t, raw)
		want := map[int]string{0: "Zero to " + mail + " ok", 1: "One to " + mail + " ok"}
		if fmt.Sprint(v.Choices) != fmt.Sprint(want) || v.Finish[0] != "stop" || v.Finish[1] != "length" {
			t.Errorf("%s: %v\n%s", who, v, raw)
		}
	}
	l, fo := <-lc, <-fc
	check("leader", users[0], l.body)
	check("stream follower "+fo.header.Get("X-Llmgate-Cache"), users[1], fo.body)
	r := <-bufc
	check("buffered follower "+r.header.Get("X-Llmgate-Cache"), users[2], r.body)
	h := g.untilHit(t, body("dave@example.com", false))
	check("buffered hit", "dave@example.com", h.body)
	s := g.do(t, "POST", "/v1/chat/completions", body("erin@example.com", true))
	check("stream hit "+s.header.Get("X-Llmgate-Cache"), "erin@example.com", s.body)
	if n := calls.Load(); n != 1 {
		t.Errorf("the backend got %d requests, want 1", n)
	}
}
