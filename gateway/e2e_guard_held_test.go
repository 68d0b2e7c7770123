package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/config"
)

// A stream that ends with [DONE] but no finish_reason for its choice releases what the guard
// still holds back of the choice's reasoning and tool call arguments, not only of its content:
// the client's arguments are whole JSON with the value restored, not cut where the hold-back
// began.
func TestGuardStreamEndReleasesHeldArguments(t *testing.T) {
	chunk := func(delta string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"canned","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]}` + "\n\n"
	}
	streamed := chunk(`{"role":"assistant","reasoning_content":"Write to <EMAIL_"}`) +
		chunk(`{"reasoning_content":"ADDRESS_1> then"}`) +
		chunk(`{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"send","arguments":"{\"to\":\"<EMAIL_"}}]}`) +
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"ADDRESS_1>\"}"}}]}`) +
		"data: [DONE]\n\n"
	all := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	g := startGateway(t, newConfig(t, nil, guarded(all, cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, streamed))))
	res := g.do(t, "POST", "/v1/chat/completions", chatBody("mail "+testEmail, `,"stream":true`))
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var reasoning, args string
	done := false
	for _, ev := range events(res.body) {
		var c openai.ChatCompletionStreamResponse
		if ev = strings.TrimPrefix(ev, "data: "); ev == "[DONE]" {
			done = true
			continue
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("event %q: %v", ev, err)
		}
		for _, ch := range c.Choices {
			reasoning += ch.Delta.ReasoningContent
			for _, tc := range ch.Delta.ToolCalls {
				args += tc.Function.Arguments
			}
		}
	}
	var a struct{ To string }
	if err := json.Unmarshal([]byte(args), &a); err != nil || a.To != testEmail || reasoning != "Write to "+testEmail+" then" || !done {
		t.Fatalf("reasoning %q, arguments %q (%v), done %v; want both whole with the address restored:\n%s", reasoning, args, err, done, res.body)
	}
}

// A stream whose first event the completion guard holds back whole (a placeholder not yet
// complete) still gets its 200 and headers when that event is in: the client is not kept
// waiting, as during the prefill, until the guard lets text through. The backend sends the rest
// only once the client has the headers.
func TestGuardHeldFirstEventSendsHeaders(t *testing.T) {
	chunk := func(delta, finish string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	headersIn := make(chan struct{})
	b := gatedStream(t, chunk(`{"content":"<EMAIL_"}`, "null"), headersIn,
		chunk(`{"content":"ADDRESS_1> wrote"}`, "null")+chunk(`{}`, `"stop"`)+"data: [DONE]\n\n")
	pii := config.Guard{PII: config.PIIGuard{Prompt: "redact", Completion: "redact", Restore: true}}
	g := startGateway(t, newConfig(t, func(c *config.Config) { c.Timeouts.Idle = 2 * time.Second }, guarded(pii, b)))
	resp := g.postChat(t, ctx(t), chatBody("mail "+testEmail, `,"stream":true`))
	defer resp.Body.Close()
	close(headersIn)
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || strings.Contains(string(body), `"error"`) || !strings.Contains(string(body), testEmail+" wrote") {
		t.Fatalf("status %d, %v; want the whole stream, the address restored, after headers that came with the held first event:\n%s", resp.StatusCode, err, body)
	}
}

// With pii.completion detect, the stream's text goes out with the event that carried it: the
// leak scanner counts what it finds and holds nothing back (there is nothing it would change),
// so a value split across events does not delay the text before it. The backend sends its
// second event only once the client has read the first one's text.
func TestGuardDetectOnlyHoldsNothingBack(t *testing.T) {
	chunk := func(content, finish string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":` + finish + `}]}` + "\n\n"
	}
	firstRead := make(chan struct{})
	b := gatedStream(t, chunk("write to bob@exa", "null"), firstRead, chunk("mple.org today", "null")+chunk("", `"stop"`)+"data: [DONE]\n\n")
	detect := config.Guard{PII: config.PIIGuard{Completion: "detect"}}
	g := startGateway(t, newConfig(t, nil, guarded(detect, b)))
	resp := g.postChat(t, ctx(t), chatBody("hello", `,"stream":true`))
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended before the first event's text: %v", err)
		}
		if strings.Contains(line, "write to bob@exa") {
			break
		}
	}
	close(firstRead)
	rest, err := io.ReadAll(r)
	if err != nil || !strings.Contains(string(rest), "mple.org today") || strings.Contains(string(rest), `"error"`) {
		t.Fatalf("rest of the stream (%v):\n%s", err, rest)
	}
	labels := map[string]string{"model": "chat", "version": "v1", "direction": "completion", "entity": "EMAIL_ADDRESS", "action": "detect"}
	g.waitMetric(t, "llmgate_guard_pii_total", labels, "= 1", func(v float64) bool { return v == 1 })
}

// gatedStream is a backend that streams first, then rest once gate is closed (or a minute has
// passed: a bound on a failed run, not a synchronisation).
func gatedStream(t *testing.T, first string, gate <-chan struct{}, rest string) config.Backend {
	return rawBackend(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		writeChunk := func(s string) { fmt.Fprintf(c, "%x\r\n%s\r\n", len(s), s) }
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		writeChunk(first)
		select {
		case <-gate:
		case <-time.After(time.Minute):
			return
		}
		writeChunk(rest)
		fmt.Fprint(c, "0\r\n\r\n")
	})
}
