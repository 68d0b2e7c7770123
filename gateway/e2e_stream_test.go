package gateway_test

// Streaming as clients see it: chunks as they are generated, the usage chunk only on request,
// and failures after the first byte as one final error event in OpenAI's shape.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

// streamChat sends a streamed chat request for model chat, with maxTokens, through go-openai
// and drains it; err is the error that ended the stream (nil for [DONE]).
func streamChat(t *testing.T, g *gw, maxTokens int) ([]openai.ChatCompletionStreamResponse, error) {
	t.Helper()
	c, _ := g.client()
	req := chatRequest("chat", maxTokens)
	req.Stream = true
	st, err := c.CreateChatCompletionStream(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return readStream(st)
}

// readCompletionStream drains a go-openai completions stream. err is the error that ended it
// (nil for [DONE]).
func readCompletionStream(st *openai.CompletionStream) (chunks []openai.CompletionResponse, err error) {
	defer st.Close()
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return chunks, nil
		}
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, c)
	}
}

// readStream drains a go-openai chat stream. err is the error that ended it (nil for [DONE]).
func readStream(st *openai.ChatCompletionStream) (chunks []openai.ChatCompletionStreamResponse, err error) {
	defer st.Close()
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return chunks, nil
		}
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, c)
	}
}

func content(chunks []openai.ChatCompletionStreamResponse) (text string, deltas int) {
	for _, c := range chunks {
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" {
				deltas++
				text += ch.Delta.Content
			}
		}
	}
	return text, deltas
}

func TestStreamChat(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	const maxTokens = 6
	tests := []struct {
		model        string
		includeUsage bool
		version      string
	}{
		{"chat", false, "v1"},
		{"chat", true, "v1"},
		{"chat@v2", false, "v2"},
		{"chat@v2", true, "v2"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s include_usage=%v", tt.model, tt.includeUsage), func(t *testing.T) {
			c, rec := s.gw.client("X-Fakellm-Echo", "1")
			req := chatRequest(tt.model, maxTokens)
			req.Stream = true
			if tt.includeUsage {
				req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
			}
			st, err := c.CreateChatCompletionStream(ctx(t), req)
			if err != nil {
				t.Fatalf("CreateChatCompletionStream: %v", err)
			}
			chunks, err := readStream(st)
			if err != nil {
				t.Fatalf("stream ended with %v after %d chunks", err, len(chunks))
			}
			text, deltas := content(chunks)
			if deltas != maxTokens || len(strings.Fields(text)) != maxTokens {
				t.Errorf("got %d content deltas %q, want %d (one per token)", deltas, text, maxTokens)
			}
			h := rec.header()
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Errorf("content-type %q, want text/event-stream", ct)
			}
			if got := h.Get("X-Llmgate-Version"); got != tt.version {
				t.Errorf("x-llmgate-version %q, want %q", got, tt.version)
			}
			if h.Get("X-Request-Id") == "" {
				t.Errorf("stream has no x-request-id")
			}

			// The backend is always asked for usage, for the gateway's token metrics.
			var sent struct {
				StreamOptions struct {
					IncludeUsage bool `json:"include_usage"`
				} `json:"stream_options"`
			}
			if err := json.Unmarshal(receivedBody(t, h), &sent); err != nil || !sent.StreamOptions.IncludeUsage {
				t.Errorf("backend received %s, want stream_options.include_usage true", receivedBody(t, h))
			}

			last := chunks[len(chunks)-1]
			for i, c := range chunks {
				if c.Usage != nil && (!tt.includeUsage || i != len(chunks)-1) {
					t.Errorf("chunk %d of %d carries usage %+v", i, len(chunks), c.Usage)
				}
			}
			if tt.includeUsage {
				if last.Usage == nil || len(last.Choices) != 0 {
					t.Fatalf("last chunk %+v, want usage with empty choices", last)
				}
				if last.Usage.CompletionTokens != maxTokens || last.Usage.TotalTokens != last.Usage.PromptTokens+maxTokens {
					t.Errorf("usage %+v, want %d completion tokens", *last.Usage, maxTokens)
				}
			}
		})
	}
	// Either way the gateway counted the tokens: 4 streams of maxTokens.
	for _, v := range []string{"v1", "v2"} {
		s.gw.waitMetric(t, "llmgate_tokens_total", map[string]string{"model": "chat", "version": v, "type": "output"},
			fmt.Sprintf("= %d", 2*maxTokens), func(got float64) bool { return got == 2*maxTokens })
	}
}

// rawStream posts body and returns the SSE events the client received, and the response.
func rawStream(t testing.TB, g *gw, body string, headers ...string) (*http.Response, []string) {
	t.Helper()
	resp := g.postChat(t, ctx(t), body, headers...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the stream: %v (the gateway must end it cleanly)", err)
	}
	return resp, events(b)
}

// TestStreamFailures: whatever goes wrong after the stream started, the client gets the events
// so far, then exactly one error event in OpenAI's shape, and the stream ends.
func TestStreamFailures(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	vllm := startFake(t, fakellm.Options{Model: "m", OutputTokens: 8})
	ollama := startFake(t, fakellm.Options{Flavor: "ollama", Model: "m", OutputTokens: 8})
	// One token per second: the first token comes at once, the second long after the idle timeout.
	slow := startFake(t, fakellm.Options{Model: "m", OutputTokens: 8, TokensPerSecond: 1})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		c.Timeouts.Idle = idle
		// Each failure here counts against its backend (TestStreamCutCountsTowardEjection);
		// the subtests share backends and must not eject them.
		c.Health.FailureThreshold = 100
	},
		model("vllm", "v1", version("v1", vllm.backend())),
		model("ollama", "v1", version("v1", ollama.backend())),
		model("slow", "v1", version("v1", slow.backend()))))
	tests := []struct {
		name     string
		model    string
		headers  []string
		contents int    // content events before the error
		wantType string // of the error event
		wantCode string
	}{
		{"vLLM error event", "vllm", []string{"X-Fakellm-Stream-Error-After", "2"}, 2, "server_error", ""},
		// Ollama sends no error event: its stream ends, without [DONE], after one empty chunk.
		{"Ollama error", "ollama", []string{"X-Fakellm-Stream-Error-After", "3"}, 3, "server_error", "upstream_error"},
		{"vLLM disconnects", "vllm", []string{"X-Fakellm-Disconnect-After", "2"}, 2, "server_error", "upstream_error"},
		{"Ollama disconnects", "ollama", []string{"X-Fakellm-Disconnect-After", "1"}, 1, "server_error", "upstream_error"},
		{"backend stalls", "slow", nil, 1, "server_error", "upstream_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := `{"model":"` + tt.model + `","stream":true,"messages":[{"role":"user","content":"hi"}]}`
			resp, evs := rawStream(t, g, body, tt.headers...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, want 200 (the stream had started)", resp.StatusCode)
			}
			if len(evs) == 0 {
				t.Fatal("empty stream")
			}
			var contents, errorsSeen int
			for i, ev := range evs {
				data, ok := strings.CutPrefix(ev, "data: ")
				if !ok || data == "[DONE]" {
					t.Errorf("event %d %q: want only data events and no [DONE] after a failure", i, ev)
					continue
				}
				if strings.HasPrefix(data, `{"error":`) {
					errorsSeen++
					if i != len(evs)-1 {
						t.Errorf("error event %d is followed by %d more events", i, len(evs)-1-i)
					}
					typ, _, code := envelope(t, []byte(data))
					if typ != tt.wantType || code != tt.wantCode {
						t.Errorf("error event %s: want type %q code %q", data, tt.wantType, tt.wantCode)
					}
					continue
				}
				var chunk openai.ChatCompletionStreamResponse
				if err := json.Unmarshal([]byte(data), &chunk); err != nil {
					t.Errorf("event %d: %v: %s", i, err, data)
				}
				if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
					contents++
				}
				if chunk.Model == "" {
					t.Errorf("event %d: a chunk of no model (Ollama's stand-in for its error) reached the client: %s", i, data)
				}
			}
			if errorsSeen != 1 || contents != tt.contents {
				t.Errorf("got %d content events and %d error events, want %d and 1: %q", contents, errorsSeen, tt.contents, evs)
			}

			// go-openai surfaces the event as a typed error.
			c, _ := g.client(tt.headers...)
			req := chatRequest(tt.model, 0)
			req.Stream = true
			st, err := c.CreateChatCompletionStream(ctx(t), req)
			if err != nil {
				t.Fatalf("CreateChatCompletionStream: %v", err)
			}
			_, err = readStream(st)
			ae := asAPIError(t, err)
			if ae.Type != tt.wantType || ae.Message == "" {
				t.Errorf("go-openai error %+v, want type %q and a message", ae, tt.wantType)
			}
		})
	}
}

// TestFirstByteTimeout: a backend that accepts the connection and sends nothing costs the
// client first_byte for a stream (total for a buffered request, whose answer comes in one
// piece), then a 504 before any stream byte. vLLM sends a stream's headers before its
// prefill, which the gateway holds until the first event: a prefill past first_byte is a 504
// too (TestFirstEventTimeoutSaysSo says which).
func TestFirstByteTimeout(t *testing.T) {
	t.Parallel()
	// slowStart answers a stream only after 5s of "prefill".
	slowStart := startFake(t, fakellm.Options{Model: "m", TTFT: 5 * time.Second})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		c.Timeouts.Connect = 200 * time.Millisecond
		c.Timeouts.FirstByte = 200 * time.Millisecond
		c.Timeouts.Idle = 200 * time.Millisecond
		c.Timeouts.Total = time.Second
	}, model("silent", "v1", version("v1", silentBackend(t))), model("slow-start", "v1", version("v1", slowStart.backend()))))
	tests := []struct {
		model  string
		stream bool
	}{
		{"silent", true},
		{"silent", false},
		{"slow-start", true},
		{"slow-start", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s stream=%v", tt.model, tt.stream), func(t *testing.T) {
			t.Parallel()
			c, _ := g.client()
			req := chatRequest(tt.model, 2)
			start := time.Now()
			err := createChat(t, c, req, tt.stream)
			ae := asAPIError(t, err)
			if ae.Type != "server_error" || codeString(ae.Code) != "upstream_timeout" || ae.HTTPStatusCode != 504 {
				t.Errorf("got %d %q %v, want a 504 server_error upstream_timeout", ae.HTTPStatusCode, ae.Type, ae.Code)
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("the 504 took %s, want it within timeouts.total", elapsed)
			}
		})
	}
}

// TestClientDisconnectFreesBackend: when the client goes away mid-stream, the gateway drops the
// backend connection (so the backend stops generating) and its in-flight accounting.
func TestClientDisconnectFreesBackend(t *testing.T) {
	t.Parallel()
	// A long, slow generation: it would run for a minute if nobody stopped it.
	f := startFake(t, fakellm.Options{Model: "m", OutputTokens: 3000, TokensPerSecond: 50})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
	inFlight := map[string]string{"backend": f.URL}

	cctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	resp := g.postChat(t, cctx, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	rd := bufio.NewReader(resp.Body)
	for n := 0; n < 3; {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			n++
		}
	}
	if v, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_backend_in_flight", inFlight); v != 1 {
		t.Errorf("llmgate_backend_in_flight = %v during the stream, want 1", v)
	}
	if f.open.Load() != 1 {
		t.Fatalf("backend has %d open connections during the stream, want 1", f.open.Load())
	}
	cancel()
	resp.Body.Close()

	waitFor(t, "the backend connection to close", func() bool { return f.open.Load() == 0 })
	g.waitMetric(t, "llmgate_backend_in_flight", inFlight, "= 0", func(v float64) bool { return v == 0 })
	g.waitMetric(t, "llmgate_requests_in_flight", nil, "= 0", func(v float64) bool { return v == 0 })
}

func TestCompletionStream(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	for _, m := range []string{"chat", "chat@v2"} {
		t.Run(m, func(t *testing.T) {
			c, _ := s.gw.client()
			st, err := c.CreateCompletionStream(ctx(t), openai.CompletionRequest{Model: m, Prompt: "Once upon a time", MaxTokens: 4, Stream: true})
			if err != nil {
				t.Fatalf("CreateCompletionStream: %v", err)
			}
			chunks, err := readCompletionStream(st)
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			var text string
			for _, chunk := range chunks {
				// Ollama sends a zero usage on every chunk when asked for usage, as the
				// gateway does; the client did not ask.
				if chunk.Usage != nil {
					t.Errorf("chunk carries usage %+v; the client did not ask for it", *chunk.Usage)
				}
				for _, ch := range chunk.Choices {
					text += ch.Text
				}
			}
			if n := len(strings.Fields(text)); n != 4 {
				t.Errorf("streamed text %q has %d words, want 4", text, n)
			}
		})
	}
}

// A completions stream that asks for usage gets it once, on its last chunk, as OpenAI sends
// it: Ollama's zero usage on every other chunk is not passed on.
func TestCompletionStreamUsageOnce(t *testing.T) {
	t.Parallel()
	s := startTwoVersions(t, nil)
	for _, m := range []string{"chat", "chat@v2"} {
		t.Run(m, func(t *testing.T) {
			c, _ := s.gw.client()
			st, err := c.CreateCompletionStream(ctx(t), openai.CompletionRequest{Model: m, Prompt: "Once upon a time", MaxTokens: 4, Stream: true,
				StreamOptions: &openai.StreamOptions{IncludeUsage: true}})
			if err != nil {
				t.Fatalf("CreateCompletionStream: %v", err)
			}
			chunks, err := readCompletionStream(st)
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			var usages []openai.Usage
			for _, chunk := range chunks {
				if chunk.Usage != nil {
					if len(chunk.Choices) > 0 {
						t.Errorf("a chunk with choices carries usage %+v", *chunk.Usage)
					}
					usages = append(usages, *chunk.Usage)
				}
			}
			if len(usages) != 1 || usages[0].CompletionTokens != 4 {
				t.Errorf("usages %+v, want one with 4 completion tokens", usages)
			}
		})
	}
}

// TestStreamTotalTimeout: timeouts.total bounds a stream that keeps sending; the client gets
// what arrived in time and then a timeout error event.
func TestStreamTotalTimeout(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{Model: "m", OutputTokens: 1000, TokensPerSecond: 20})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		c.Timeouts.Connect = 200 * time.Millisecond
		c.Timeouts.FirstByte = 200 * time.Millisecond
		c.Timeouts.Idle = 200 * time.Millisecond
		c.Timeouts.Total = 500 * time.Millisecond
	}, model("chat", "v1", version("v1", f.backend()))))
	start := time.Now()
	_, evs := rawStream(t, g, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("stream lasted %s, want it cut at timeouts.total", elapsed)
	}
	if len(evs) < 3 {
		t.Fatalf("got %d events, want the tokens that arrived in time: %q", len(evs), evs)
	}
	last, _ := strings.CutPrefix(evs[len(evs)-1], "data: ")
	if typ, _, code := envelope(t, []byte(last)); typ != "server_error" || code != "upstream_timeout" {
		t.Errorf("last event %s, want a server_error upstream_timeout", last)
	}
}

// vLLM sends a stream's headers at once and its first event after the prefill: a prefill past
// timeouts.first_byte is a 504, before the stream (the gateway holds the 200 until the first
// event), that says the answer never started, not that the backend did not answer.
func TestFirstEventTimeoutSaysSo(t *testing.T) {
	t.Parallel()
	gone := make(chan struct{})
	b := rawBackend(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		<-gone // the prefill never ends
	})
	t.Cleanup(func() { close(gone) })
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		c.Timeouts.FirstByte = 200 * time.Millisecond
	}, model("chat", "v1", version("v1", b))))
	c, _ := g.client()
	req := chatRequest("chat", 2)
	req.Stream = true
	st, err := c.CreateChatCompletionStream(ctx(t), req)
	if err == nil {
		chunks, err := readStream(st)
		t.Fatalf("the stream opened: %d chunks, then %v; want a 504", len(chunks), err)
	}
	if ae := asAPIError(t, err); ae.HTTPStatusCode != 504 || codeString(ae.Code) != "upstream_timeout" || !strings.Contains(ae.Message, "did not start") {
		t.Errorf("error %d %v %q, want a 504 upstream_timeout saying the answer did not start", ae.HTTPStatusCode, ae.Code, ae.Message)
	}
}

// A backend that ignores stream:true answers in one piece. The client asked for a stream, and an
// SDK reading one finds no events in a JSON body: go-openai (and openai-python) ended it empty,
// without an error. The answer reaches the client as events, with the usage chunk when asked.
func TestAnswerInOnePieceToAStreamRequest(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
	b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, answer)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	for _, usage := range []bool{false, true} {
		c, _ := g.client()
		req := chatRequest("chat", 2)
		req.Stream = true
		if usage {
			req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
		}
		st, err := c.CreateChatCompletionStream(ctx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		var gotUsage *openai.Usage
		for {
			chunk, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("usage=%v: %v", usage, err)
			}
			for _, ch := range chunk.Choices {
				text.WriteString(ch.Delta.Content)
			}
			if chunk.Usage != nil {
				gotUsage = chunk.Usage
			}
		}
		st.Close()
		if text.String() != "hello there" || (gotUsage != nil) != usage {
			t.Errorf("usage=%v: streamed text %q, usage %+v; want the answer's text, and its usage only when asked", usage, text.String(), gotUsage)
		}
	}
}

// An answer in one piece that the backend's own filter cut (finish_reason content_filter) is
// still an answer: a stream client gets it as events, finish_reason included, and the cache
// does not store it.
func TestFilteredAnswerInOnePieceToAStreamRequest(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"I can"},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
	b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, answer)
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", b)))))
	c, _ := g.client()
	req := chatRequest("chat", 2)
	req.Stream = true
	seed := 1
	req.Seed = &seed
	st, err := c.CreateChatCompletionStream(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := readStream(st)
	text, _ := content(chunks)
	finish := ""
	for _, ch := range chunks {
		for _, c := range ch.Choices {
			if c.FinishReason != "" {
				finish = string(c.FinishReason)
			}
		}
	}
	if err != nil || text != "I can" || finish != "content_filter" {
		t.Fatalf("streamed text %q, finish_reason %q (%v); want the answer as events", text, finish, err)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","seed":1,"max_tokens":2,"messages":[{"role":"user","content":"Say hello in a few words."}]}`,
		"X-Llmgate-Cache", "only-if-cached"); res.status != 504 {
		t.Fatalf("a filtered answer was cached: %d %s", res.status, res.body)
	}
}

// An answer in one piece whose choice the backend did not finish (finish_reason null: a server
// that stopped for a reason it does not name) is still an answer to stream: the client gets
// its text as events, the last with finish_reason null, as the backend's own stream would have
// ended. Passed on as JSON, an SDK's stream reader saw an empty stream.
func TestUnfinishedAnswerInOnePieceToAStreamRequest(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":null}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
	b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, answer)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	chunks, err := streamChat(t, g, 2)
	text, _ := content(chunks)
	if err != nil || text != "hello there" {
		t.Fatalf("streamed text %q (%v); want the answer as events", text, err)
	}
	for _, ch := range chunks {
		for _, c := range ch.Choices {
			if c.FinishReason != "" {
				t.Errorf("finish_reason %q, want null as the backend answered", c.FinishReason)
			}
		}
	}
}

// A backend that answers with an error object and status 200 fails the request with that error
// and the status its type has (a 400 for the request's fault, a 5xx for the server's), which
// the SDKs raise: before any event for a stream, whether the error came as a JSON body or as
// the stream's first event. Passed on as a 200 JSON body, their stream
// readers saw an empty stream, or a parse error, and a buffered client an answer without
// choices.
func TestErrorBodyWith200(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, body string
		status     int
		typ        string
	}{
		{"request's fault", `{"error":{"message":"'messages' must not be empty.","type":"BadRequestError","param":"messages","code":400}}`, 400, "invalid_request_error"},
		{"old flat vLLM", `{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}`, 400, "invalid_request_error"},
		{"server error", `{"error":{"message":"EngineCore encountered an issue.","type":"InternalServerError","param":null,"code":500}}`, 502, "server_error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, tt.body)
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
			c, _ := g.client()
			req := chatRequest("chat", 2)
			_, err := c.CreateChatCompletion(ctx(t), req)
			if ae := asAPIError(t, err); ae.HTTPStatusCode != tt.status || ae.Type != tt.typ {
				t.Errorf("buffered: error %d %q %q, want %d %s", ae.HTTPStatusCode, ae.Type, ae.Message, tt.status, tt.typ)
			}
			req.Stream = true
			st, err := c.CreateChatCompletionStream(ctx(t), req)
			if err == nil {
				chunks, rerr := readStream(st)
				t.Fatalf("the stream opened: %d chunks, then %v; want the backend's error", len(chunks), rerr)
			}
			if ae := asAPIError(t, err); ae.HTTPStatusCode != tt.status || ae.Type != tt.typ {
				t.Errorf("stream: error %d %q %q, want %d %s", ae.HTTPStatusCode, ae.Type, ae.Message, tt.status, tt.typ)
			}
			if !strings.HasPrefix(tt.body, `{"error":`) {
				return // a stream's error event has the "error" member
			}
			// The same error as a stream's first event, after the 200 and headers that vLLM
			// sends at once: the client has had nothing yet, and gets the same.
			b = cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, "data: "+tt.body+"\n\n")
			g = startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
			c, _ = g.client()
			st, err = c.CreateChatCompletionStream(ctx(t), req)
			if err == nil {
				chunks, rerr := readStream(st)
				t.Fatalf("the stream opened on an error event: %d chunks, then %v; want the backend's error", len(chunks), rerr)
			}
			if ae := asAPIError(t, err); ae.HTTPStatusCode != tt.status || ae.Type != tt.typ {
				t.Errorf("error event: error %d %q %q, want %d %s", ae.HTTPStatusCode, ae.Type, ae.Message, tt.status, tt.typ)
			}
		})
	}
}

// A chunk with "error": null carries no error: the SDKs read it so, and the stream goes on to
// [DONE] with all its text.
func TestStreamChunkWithNullError(t *testing.T) {
	t.Parallel()
	chunk := func(delta, finish string) string {
		return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","error":null,"choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	stream := chunk(`{"role":"assistant","content":""}`, "null") + chunk(`{"content":"Hello"}`, "null") +
		chunk(`{"content":" there"}`, "null") + chunk(`{}`, `"stop"`) + "data: [DONE]\n\n"
	b := cannedBackend(t, 200, http.Header{"Content-Type": {"text/event-stream"}}, stream)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
	chunks, err := streamChat(t, g, 8)
	text := ""
	for _, c := range chunks {
		if len(c.Choices) > 0 {
			text += c.Choices[0].Delta.Content
		}
	}
	if err != nil || text != "Hello there" {
		t.Errorf("stream text %q, error %v; want \"Hello there\" and none", text, err)
	}
}

// A backend's error object with status 200 that is the server's failure is retried on another
// backend of the version, as its 5xx is (the client has seen nothing yet), for a buffered and a
// stream request; one that is the request's fault is not. A shadow whose backend answers so
// counts an error, not a success.
func TestErrorBodyWith200Retried(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, body string
		status     int // what the client gets when that backend is the only one
	}{
		{"server error", `{"error":{"message":"EngineCore encountered an issue.","type":"InternalServerError","param":null,"code":500}}`, 200},
		{"request's fault", `{"error":{"message":"'messages' must not be empty.","type":"BadRequestError","param":"messages","code":400}}`, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var failing atomic.Int64
			ln := listen(t)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				failing.Add(1)
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.body)
			})}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close() })
			bad := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "fake-model"}
			f := startFake(t, fakellm.Options{})
			g := startGateway(t, newConfig(t, func(c *config.Config) { c.Health.FailureThreshold = 100 },
				model("chat", "v1", version("v1", bad, f.backend()))))
			for _, stream := range []bool{false, true} {
				for i := range 8 {
					body := `{"model":"chat","max_tokens":4,"stream":` + strconv.FormatBool(stream) + `,"messages":[{"role":"user","content":"hi"}]}`
					before := failing.Load()
					res := g.do(t, "POST", "/v1/chat/completions", body)
					first := failing.Load() > before
					want := 200
					if first {
						want = tt.status
					}
					if res.status != want {
						t.Fatalf("stream=%v request %d (error backend tried: %v): status %d %s, want %d", stream, i, first, res.status, res.body, want)
					}
				}
			}
			if failing.Load() == 0 {
				t.Skip("no request tried the failing backend first") // 1 in 65536
			}
		})
	}
}

// A shadow whose backend answers with an error object and status 200 failed the mirror: its
// statistics count an error, as for the 5xx it stands for.
func TestStatsShadowErrorBodyWith200IsItsError(t *testing.T) {
	s := shadowSample(t, cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, `{"error":{"message":"EngineCore encountered an issue.","type":"InternalServerError","param":null,"code":500}}`))
	if s.ErrorRate == nil || *s.ErrorRate != 1 {
		t.Fatalf("the shadow's error_rate %v after its backend answered the mirror with an error object, want 1", deref64(s.ErrorRate))
	}
}

// An HTTP/1.0 client, which knows no chunked coding, gets a stream without Content-Length or
// Transfer-Encoding, ended by the connection's close: it got chunk sizes in its events. A
// buffered answer keeps its Content-Length.
func TestStreamToHTTP10Client(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{})
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", f.backend()))))
	for _, stream := range []bool{true, false} {
		body := `{"model":"chat","max_tokens":4,"stream":` + strconv.FormatBool(stream) + `,"messages":[{"role":"user","content":"hi"}]}`
		c, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body)
		raw, err := io.ReadAll(c) // to the close: HTTP/1.0 without keep-alive
		c.Close()
		if err != nil {
			t.Fatalf("stream=%v: %v after %q", stream, err, raw)
		}
		head, payload, _ := strings.Cut(string(raw), "\r\n\r\n")
		lower := strings.ToLower(head)
		if !strings.HasPrefix(head, "HTTP/1.") || !strings.Contains(head, " 200 ") || strings.Contains(lower, "transfer-encoding") {
			t.Fatalf("stream=%v: headers %q: want a 200 without Transfer-Encoding", stream, head)
		}
		if stream {
			if strings.Contains(lower, "content-length") || !strings.HasPrefix(payload, "data: {") || !strings.HasSuffix(payload, "data: [DONE]\n\n") {
				t.Errorf("headers %q, body %q: want events from the first byte to [DONE], until the close", head, payload)
			}
		} else if !strings.Contains(lower, "content-length: "+strconv.Itoa(len(payload))) {
			t.Errorf("headers %q, body %q: want the answer's Content-Length", head, payload)
		}
	}
	if lines := g.logLines(t); len(lines) != 2 || lines[0]["error"] != nil || lines[0]["stream"] != true {
		t.Errorf("log lines %v: want the stream's, ended without an error, and the answer's", lines)
	}
}

// An answer in one piece without choices ("choices": []) to a stream request goes out as a
// stream too, of no text, ending in [DONE]: passed on as JSON, an SDK's stream reader read an
// event stream that was none.
func TestNoChoicesInOnePieceToAStreamRequest(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, answer string }{
		{"with usage", `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1}}`},
		{"without usage", `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := cannedBackend(t, 200, http.Header{"Content-Type": {"application/json"}}, tt.answer)
			g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1", b))))
			res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
			if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/event-stream") || !strings.HasSuffix(string(res.body), "data: [DONE]\n\n") {
				t.Fatalf("%d %s %q: want an event stream ending in [DONE]", res.status, res.header.Get("Content-Type"), res.body)
			}
			for ev := range strings.SplitSeq(strings.TrimSpace(string(res.body)), "\n\n") {
				data, ok := strings.CutPrefix(ev, "data: ")
				if !ok || (data != "[DONE]" && !json.Valid([]byte(data))) {
					t.Errorf("event %q: want data lines of JSON", ev)
				}
			}
			chunks, err := streamChat(t, g, 2)
			if text, _ := content(chunks); err != nil || text != "" {
				t.Errorf("streamed text %q (%v); want none, and no error", text, err)
			}
		})
	}
}

// TestStreamRetriedBeforeFirstEvent: vLLM answers a stream's 200 and headers at once and its
// first event after the prefill. A backend that fails in between (an error event, a cut, a
// prefill past first_byte) has sent the client nothing, as the gateway holds the 200 until
// that first event: the request goes to another backend, as a 5xx would, and the client gets
// a whole stream from it. The failures count toward ejection as failed requests do.
func TestStreamRetriedBeforeFirstEvent(t *testing.T) {
	t.Parallel()
	const maxTokens = 4
	tests := []struct {
		name string
		fail func(c net.Conn, gone <-chan struct{}) // after the 200 and headers
	}{
		{"error event", func(c net.Conn, _ <-chan struct{}) {
			ev := `data: {"error":{"message":"EngineCore encountered an issue.","type":"InternalServerError","param":null,"code":500}}` + "\n\n"
			fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(ev), ev)
		}},
		{"cut", func(net.Conn, <-chan struct{}) {}},
		{"prefill past first_byte", func(_ net.Conn, gone <-chan struct{}) { <-gone }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var tried atomic.Int64
			gone := make(chan struct{})
			bad := rawBackend(t, func(c net.Conn) {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				tried.Add(1)
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
				tt.fail(c, gone)
			})
			t.Cleanup(func() { close(gone) }) // before rawBackend's own: its connections close first
			good := startFake(t, fakellm.Options{Model: "m"})
			g := startGateway(t, newConfig(t, func(c *config.Config) {
				c.Timeouts.FirstByte = 200 * time.Millisecond
				healthConfig(2)(c)
			}, model("chat", "v1", version("v1", bad, good.backend()))))
			c, _ := g.client()
			// Each request tries either backend first, at random: until the failing one was
			// tried twice, each of its failures retried on the good one.
			for i := 0; tried.Load() < 2; i++ {
				if i == 60 {
					t.Fatalf("the failing backend was tried %d times in 60 requests", tried.Load())
				}
				req := chatRequest("chat", maxTokens)
				req.Stream = true
				st, err := c.CreateChatCompletionStream(ctx(t), req)
				if err != nil {
					t.Fatalf("request %d: %v; want the good backend's stream", i, err)
				}
				chunks, err := readStream(st)
				if _, deltas := content(chunks); err != nil || deltas != maxTokens {
					t.Fatalf("request %d: %d content deltas, then %v; want %d and [DONE]", i, deltas, err, maxTokens)
				}
			}
			// Two failures in a row: ejected at health.failure_threshold 2, as a backend whose
			// 5xx they were would be.
			if up := backendUp(t, g, bad.URL); up != 0 {
				t.Errorf("llmgate_backend_up of the failing backend = %v after 2 failed attempts, want 0", up)
			}
		})
	}
}
