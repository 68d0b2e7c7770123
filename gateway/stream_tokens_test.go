package gateway

import (
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/drift"
)

// Only stream chunks with generated content are token events: the chunk that opens the answer
// with its role and the one that closes it with finish_reason are not. A user sees it in the
// time per output token (a one-token answer has no gap between tokens, so no observation) and
// in the drift statistics: the completion's token count when the backend reports no usage, and
// the inter-token latency behind /admin/stats' tokens_per_second, which a one-token answer does
// not have either.
func TestStreamTokenEventsAreContentChunks(t *testing.T) {
	chunk := func(choice string) string {
		return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[` + choice + `]}` + "\n\n"
	}
	role := chunk(`{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`)
	finish := chunk(`{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop"}`)
	streams := map[string]string{
		"one": role + chunk(`{"index":0,"delta":{"content":"Hi"},"finish_reason":null}`) + finish + "data: [DONE]\n\n",
		"four": role +
			chunk(`{"index":0,"delta":{"reasoning_content":"Think"},"finish_reason":null}`) +
			chunk(`{"index":0,"delta":{"content":"Hel"},"finish_reason":null}`) +
			chunk(`{"index":0,"delta":{"content":"lo"},"finish_reason":null}`) +
			chunk(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":null}`) +
			chunk(`{"index":0,"delta":{},"finish_reason":"tool_calls"}`) + "data: [DONE]\n\n",
	}
	g := newGatewayWithBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		for prompt, s := range streams {
			if bytes.Contains(ctx.PostBody(), []byte(`"content":"`+prompt+`"`)) {
				ctx.SetBodyString(s) // no usage chunk: the gateway counts the completion's tokens
			}
		}
	})
	tpotCount := func() string {
		var b bytes.Buffer
		g.metrics.set.WritePrometheus(&b)
		for _, line := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(line, `gen_ai_server_time_per_output_token_seconds_count{model="chat",version="v1"}`) {
				return line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		return "absent"
	}
	var w bytes.Buffer
	for _, prompt := range []string{"one", "four"} {
		ctx, req := newBenchCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`))
		serveOnce(g, ctx, req, &w) // drains the stream and finishes the request
		if ctx.Response.StatusCode() != 200 || !strings.Contains(w.String(), "[DONE]") {
			t.Fatalf("%s: status %d: %s", prompt, ctx.Response.StatusCode(), w.Bytes())
		}
		if got, want := tpotCount(), map[string]string{"one": "0", "four": "1"}[prompt]; got != want {
			t.Errorf("after the %q stream: time per output token observed %s times, want %s", prompt, got, want)
		}
	}

	_ = g.Close() // the token counter's queue is drained: every sample is in the window
	var snap drift.Snapshot
	g.stats.get("chat", "v1").rec.Live(&snap)
	tokens := &snap.Num[drift.FeatureCompletionTokens]
	if lo, hi := tokens.Quantile(0), tokens.Quantile(1); tokens.Count() != 2 || lo != 1 || hi != 4 {
		t.Errorf("completion tokens without usage: %d samples from %v to %v, want 2 from 1 to 4", tokens.Count(), lo, hi)
	}
	if n := snap.Num[drift.FeatureInterToken].Count(); n != 1 {
		t.Errorf("inter-token latency measured for %d answers, want 1 (the one-token answer has none)", n)
	}
}

// carriesTokens tells a chunk with generated content from the chunks around it.
func TestCarriesTokens(t *testing.T) {
	tests := []struct {
		choices string
		want    bool
	}{
		{`[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]`, false},
		{`[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]`, false},
		{`[{"index":0,"delta":{},"finish_reason":"stop"}]`, false},
		{`[{"index":0,"delta":{"content":null},"finish_reason":"length"}]`, false},
		{`[{"index":0,"delta":{"tool_calls":[]},"finish_reason":null}]`, false},
		{`[]`, false},
		{`[{"index":0,"text":"","finish_reason":"stop"}]`, false},
		{`[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]`, true},
		{`[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]`, true}, // Ollama: role on every chunk
		{`[{"index":0,"delta":{"reasoning_content":"So"}}]`, true},
		{`[{"index":0,"delta":{"reasoning":"So"}}]`, true},
		{`[{"index":0,"delta":{"refusal":"No"}}]`, true},
		{`[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}}]`, true},
		{`[{"index":0,"text":" world","logprobs":null,"finish_reason":null}]`, true}, // /v1/completions
		{`[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{"content":"x"}}]`, true},
		{`[{"index":0,"delta":{},"logprobs":{"content":[]},"finish_reason":"stop"}]`, false},
		{`[{"index":0,"delta":{"content": "spaced"},"finish_reason":null}]`, true},
		{`[{"index":0,"delta":{"content":"","tool_calls":[{"index":0,"function":{"arguments":"{\"content\":\"x\"}"}}]}}]`, true},
	}
	for _, tt := range tests {
		if got := carriesTokens([]byte(tt.choices)); got != tt.want {
			t.Errorf("carriesTokens(%s) = %v, want %v", tt.choices, got, tt.want)
		}
	}
}

// textChoiceSeeds are choices of stream chunks: the shapes textChoice reads and near misses that
// must take the scans.
var textChoiceSeeds = []struct {
	choices string
	plain   bool
}{
	{`[{"index":0,"delta":{"content":" word"},"finish_reason":null}]`, true},
	{`[{"index":0,"delta":{"content":"S"},"logprobs":null,"finish_reason":null,"token_ids":null}]`, true}, // vLLM
	{`[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]`, true},              // Ollama
	{`[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]`, true},
	{`[{"index":0,"delta":{"content":"a \"quoted\" \\"},"finish_reason":null}]`, true},
	{`[{"index":0,"delta":{"content":"\\\\"}}]`, true},
	{`[{"index":0,"text":" world","logprobs":null,"finish_reason":null,"stop_reason":null}]`, true},
	{`[{"index":0,"text":"","logprobs":null,"finish_reason":null}]`, true},
	{`[{"index":0,"text":"x","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null}]`, true},
	{`[{"index":0,"delta":{"content":"x"},"finish_reason":null,"logprobs":null}]`, true},
	{`[{"index":0,"delta":{"content":"x"},"finish_reason":null,"logprobs":null,"text":null}]`, false},
	{`[{"index":0,"delta":{"content":"x"},"finish_reason":null,"logprobs":null`, false},
	{`[{"index":0,"delta":{"reasoning_content":"So"},"logprobs":null,"finish_reason":null}]`, true},
	{`[{"index":0,"delta":{"reasoning":"So"},"finish_reason":null}]`, true},
	{`[{"index":0,"delta":{"reasoning":""},"finish_reason":null}]`, true},
	{`[{"index":0,"delta":{"reasoning":"So","content":"x"},"finish_reason":null}]`, false},
	{`[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]`, false},
	{`[{"index":0,"delta":{"content":"Hi"},"finish_reason":null},{"index":1,"delta":{"content":"x"}}]`, false},
	{`[{"index":0,"delta":{"content":"Hi","reasoning":"x"},"finish_reason":null}]`, false},
	{`[{"index":0,"delta":{"content":"Hi"},"delta":null}]`, false},
	{`[{"index":0,"text":"","delta":null}]`, false},
	{`[{"index":0,"delta":{"content":"Hi"},"logprobs":{"content":[]}}]`, false},
	{`[{"index":0,"delta":{"content":"Hi"},"finish_reason":null} ]`, false},
	{`[{"index":1,"delta":{"content":"Hi"}}]`, false},
	{`[{"index":0,"delta":{"content":"Hi\"}]`, false},
	{`[{"index":0,"delta":{"content":"Hi"}`, false},
	{`[{"index":0,"delta":{"content": "spaced"},"finish_reason":null}]`, false},
	{`[{"index":0,"delta":{"tool_calls":[]},"finish_reason":null}]`, false},
}

// textChoice reads the chunks it takes as carriesTokens and noteChoices do, and takes no others.
func TestTextChoice(t *testing.T) {
	for _, tt := range textChoiceSeeds {
		_, _, ok := textChoice([]byte(tt.choices))
		if ok != tt.plain {
			t.Errorf("textChoice(%s) ok = %v, want %v", tt.choices, ok, tt.plain)
		}
		checkTextChoice(t, []byte(tt.choices))
	}
}

func FuzzTextChoice(f *testing.F) {
	for _, tt := range textChoiceSeeds {
		f.Add([]byte(tt.choices))
	}
	f.Fuzz(checkTextChoice)
}

// checkTextChoice checks that what textChoice reads of choices, when it reads them, is what
// carriesTokens and noteChoices read: the tokens, the text kept (from an empty start, a partly
// kept one and a full one) and the finish reason.
func checkTextChoice(t *testing.T, choices []byte) {
	text, reasoning, ok := textChoice(choices)
	if !ok {
		return
	}
	if got, want := len(text) > 0, carriesTokens(choices); got != want {
		t.Errorf("%s: textChoice carries tokens %v, carriesTokens %v", choices, got, want)
	}
	for _, start := range []string{"", "Sure", strings.Repeat("x", headBytes)} {
		var fast, scan requestStats
		fast.reset()
		scan.reset()
		fast.completionHead = append(fast.completionHead, start...)
		scan.completionHead = append(scan.completionHead, start...)
		if !reasoning {
			fast.appendHead(text)
		}
		scan.noteChoices(choices, true)
		if string(fast.completionHead) != string(scan.completionHead) || fast.finish != scan.finish {
			t.Errorf("%s after %q: textChoice keeps %q (finish %v), noteChoices %q (finish %v)",
				choices, start, fast.completionHead, fast.finish, scan.completionHead, scan.finish)
		}
	}
}
