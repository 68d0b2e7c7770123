package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

// echoLLM is a backend model that repeats the last user message it was sent (placeholders and
// all) after a delay, buffered or streamed in pieces of piece bytes, once per choice; suffix is
// added to every answer (what a model adds on its own: invented placeholders, someone's
// address). It records the bodies it received.
type echoLLM struct {
	delay  time.Duration
	piece  int
	suffix string
	mu     sync.Mutex
	bodies []string
	// arrived gets a value as each request reaches the backend (see askTogether).
	arrived chan struct{}
}

// askTogether sends bodies[0] and, once the backend has it (so it leads its flight), bodies[1]
// while the first answer is still delayed, and returns both responses.
func (e *echoLLM) askTogether(t *testing.T, g *gw, bodies [2]string) [2]response {
	t.Helper()
	var got [2]response
	var wg sync.WaitGroup
	for i, body := range bodies {
		if i == 1 {
			<-e.arrived
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = g.do(t, "POST", "/v1/chat/completions", body)
		}()
	}
	wg.Wait()
	return got
}

func (e *echoLLM) received() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.bodies, "\n")
}

func (e *echoLLM) backend(t *testing.T) config.Backend {
	t.Helper()
	ln := listen(t)
	e.arrived = make(chan struct{}, 64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.bodies = append(e.bodies, string(raw))
		e.mu.Unlock()
		select {
		case e.arrived <- struct{}{}:
		default:
		}
		var req struct {
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
			N      int  `json:"n"`
			Stream bool `json:"stream"`
		}
		if err := json.Unmarshal(raw, &req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if req.N == 0 {
			req.N = 1
		}
		last := ""
		for _, m := range req.Messages {
			if m.Role == "user" {
				last = m.Content
			}
		}
		time.Sleep(e.delay)
		answer := "You said: " + last + e.suffix
		if !req.Stream {
			var choices []string
			for i := range req.N {
				c, _ := json.Marshal(answer + fmt.Sprint(" #", i))
				choices = append(choices, fmt.Sprintf(`{"index":%d,"message":{"role":"assistant","content":%s},"finish_reason":"stop"}`, i, c))
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"e1","object":"chat.completion","created":1,"model":"echo","choices":[%s],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`, strings.Join(choices, ","))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		piece := max(e.piece, 1)
		texts := make([]string, req.N)
		for i := range texts {
			texts[i] = answer + fmt.Sprint(" #", i)
		}
		for off := 0; ; off += piece {
			any := false
			for i, text := range texts {
				if off >= len(text) {
					continue
				}
				any = true
				c, _ := json.Marshal(text[off:min(off+piece, len(text))])
				fmt.Fprintf(w, "data: {\"id\":\"e1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"echo\",\"choices\":[{\"index\":%d,\"delta\":{\"content\":%s},\"finish_reason\":null}]}\n\n", i, c)
			}
			fl.Flush()
			if !any {
				break
			}
		}
		for i := range texts {
			fmt.Fprintf(w, "data: {\"id\":\"e1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"echo\",\"choices\":[{\"index\":%d,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", i)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "echo"}
}

type persona struct{ email, phone, card string }

var (
	userA = persona{"alice.private@example.com", "(415) 555-0132", "4111 1111 1111 1111"}
	userB = persona{"bob.other@example.org", "(212) 555-0187", "5500 0000 0000 0004"}
)

func (p persona) prompt() string {
	return "Write to " + p.email + ", call me on my phone " + p.phone + ", charge my card " + p.card + "."
}

func (p persona) values() []string { return []string{p.email, p.phone, p.card} }

// answerText is the text of every choice of a buffered or streamed chat answer, joined.
func answerText(t *testing.T, body []byte) string {
	t.Helper()
	if strings.HasPrefix(strings.TrimSpace(string(body)), "{") {
		var c struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatalf("not JSON: %s", body)
		}
		var b strings.Builder
		for _, ch := range c.Choices {
			b.WriteString(ch.Message.Content + "\n")
		}
		return b.String()
	}
	texts, done := streamTexts(t, body)
	if !done {
		t.Fatalf("stream not done: %s", body)
	}
	var b strings.Builder
	for i := range len(texts) {
		b.WriteString(texts[i] + "\n")
	}
	return b.String()
}

func checkOwn(t *testing.T, who string, got string, own, other persona, n int) {
	t.Helper()
	for _, v := range other.values() {
		if strings.Contains(got, v) {
			t.Errorf("%s got the other user's %q:\n%s", who, v, got)
		}
	}
	for _, v := range own.values() {
		if strings.Count(got, v) != n {
			t.Errorf("%s: own %q %d times, want %d:\n%s", who, v, strings.Count(got, v), n, got)
		}
	}
	if strings.Contains(got, "<") {
		t.Errorf("%s: placeholder left:\n%s", who, got)
	}
}

// Two users whose prompts differ only in personal data, sent together so that one coalesces
// onto the other's flight, then again as cache hits, in every pairing of buffered and streamed,
// against a model that echoes the prompt (placeholders) split across stream events at every
// width: each gets only their own values back, and the backend saw neither.
func TestPrivacyCoalescedAndCachedEcho(t *testing.T) {
	for _, piece := range []int{1, 3, 7} {
		for _, shapes := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			for _, n := range []int{1, 2} {
				t.Run(fmt.Sprintf("piece%d-stream%v-%v-n%d", piece, shapes[0], shapes[1], n), func(t *testing.T) {
					e := &echoLLM{delay: 300 * time.Millisecond, piece: piece}
					m := cached(guarded(config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}, e.backend(t)))
					g := startGateway(t, newConfig(t, nil, m))
					body := func(p persona, stream bool) string {
						extra := fmt.Sprintf(`,"n":%d`, n)
						if stream {
							extra += `,"stream":true`
						}
						return cacheBody(p.prompt(), extra)
					}
					got := e.askTogether(t, g, [2]string{body(userA, shapes[0]), body(userB, shapes[1])})
					if h := [2]string{got[0].header.Get("X-Llmgate-Cache"), got[1].header.Get("X-Llmgate-Cache")}; h != [2]string{"miss", "coalesced"} {
						t.Fatalf("cache %v, want miss then coalesced", h)
					}
					checkOwn(t, "leader A", answerText(t, got[0].body), userA, userB, n)
					checkOwn(t, "follower B", answerText(t, got[1].body), userB, userA, n)
					for i, p := range []persona{userB, userA} {
						hit := g.untilHit(t, body(p, shapes[i]))
						checkOwn(t, "hit", answerText(t, hit.body), p, [2]persona{userA, userB}[i], n)
					}
					for _, v := range append(userA.values(), userB.values()...) {
						if strings.Contains(e.received(), v) {
							t.Errorf("backend saw %q", v)
						}
					}
				})
			}
		}
	}
}

// A model that adds placeholders of its own (a number the prompt never had, a hashed one) and
// someone else's address, to users whose values are redacted or hashed, coalesced and streamed
// in one-byte pieces: the invented placeholders stay as written, the stranger's address is
// rewritten, and each user gets only their own values.
func TestPrivacyInventedPlaceholdersAndLeaks(t *testing.T) {
	for _, action := range []string{"redact", "hash"} {
		t.Run(action, func(t *testing.T) {
			e := &echoLLM{delay: 300 * time.Millisecond, piece: 1,
				suffix: " cc <EMAIL_ADDRESS_2> <EMAIL_ADDRESS_h:0badcafe> <PHONE_NUMBER_9> carol.third@example.net"}
			restore := action == "redact" // hashes are not restored
			m := cached(guarded(config.Guard{PII: config.PIIGuard{Prompt: action, Completion: "redact", Restore: restore}}, e.backend(t)))
			g := startGateway(t, newConfig(t, nil, m))
			// Same prompt but for the values: with hash they differ in the key, so each leads.
			res := e.askTogether(t, g, [2]string{cacheBody(userA.prompt(), `,"stream":true`), cacheBody(userB.prompt(), `,"stream":true`)})
			got := [2]string{answerText(t, res[0].body), answerText(t, res[1].body)}
			for i, own := range []persona{userA, userB} {
				other := []persona{userB, userA}[i]
				for _, v := range other.values() {
					if strings.Contains(got[i], v) {
						t.Errorf("user %d got %q: %s", i, v, got[i])
					}
				}
				if restore != strings.Contains(got[i], own.email) || strings.Contains(got[i], "carol.third") ||
					!strings.Contains(got[i], "<EMAIL_ADDRESS_h:0badcafe> <PHONE_NUMBER_9>") {
					t.Errorf("user %d: %s", i, got[i])
				}
			}
			if r := e.received(); strings.Contains(r, userA.email) || strings.Contains(r, userB.email) {
				t.Errorf("backend saw an address")
			}
		})
	}
}
