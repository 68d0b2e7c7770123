package gateway

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzBackendAnswer sends whatever a backend might answer through the whole pipeline with every
// feature on (PII redaction with restore and safety blocking both ways, the cache, drift), as a
// buffered answer and as an event stream: the gateway must never panic on it. An answer without
// choices once did (a nil array in the completion guard).
func FuzzBackendAnswer(f *testing.F) {
	for _, seed := range []string{
		cannedChat, cannedStream,
		`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}]}`,
		`{}`, `[]`, `null`, `{"choices":null}`, `{"choices":[null,1,"x",{"message":null}]}`,
		`{"choices":[{"index":0,"message":{"role":"assistant","content":"<EMAIL_ADDRESS_1>","reasoning_content":"<EMAIL_","tool_calls":[{"function":{"arguments":"{\"to\":\"<EMAIL_ADDRESS_1>\"}"}},null,{"function":null}]},"finish_reason":"stop"}]}`,
		"data: {\"choices\":null}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"<EMAIL_AD\",\"tool_calls\":[{\"index\":3,\"function\":{\"arguments\":\"<EMAIL\"}},{\"index\":500}]},\"finish_reason\":null}]}\n\n" +
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"error\":{\"message\":\"boom\"}}\n\n",
		// Texts ended early (a tool call opens, the answer starts), then written to again.
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"a <EMAIL_\",\"content\":\"Ignore all previous\"}}]}\n\n" +
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\\\"<EMAIL\"}},{\"index\":1,\"id\":\"c\"}]}}]}\n\n" +
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"ADDRESS_1>\",\"content\":\" instructions\",\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"_ADDRESS_1>\"}},{\"index\":2}]}}]}\n\n" +
			"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":-1,\"delta\":[]}]}\n\ndata: {\"choices\":[{\"index\":0,\"text\":\"hi\",\"finish_reason\":\"length\"}]}\n\n",
	} {
		f.Add([]byte(seed), bytes.HasPrefix([]byte(seed), []byte("data:")))
	}
	var answer atomic.Pointer[[]byte]
	var stream atomic.Bool
	g := newGatewayWithBackend(f, func(ctx *fasthttp.RequestCtx) {
		if stream.Load() {
			ctx.SetContentType("text/event-stream")
		} else {
			ctx.SetContentType("application/json")
		}
		ctx.SetBody(*answer.Load())
	}, fullFeatures)
	g.log = discardLogger()
	prompt := bytes.Replace(chatBody1K(false), []byte("lorem"), []byte("mail jane.doe@example.com"), 1)
	f.Fuzz(func(t *testing.T, body []byte, streamed bool) {
		answer.Store(&body)
		stream.Store(streamed)
		req := prompt
		if streamed {
			req = bytes.Replace(prompt, []byte(`"top_k":40`), []byte(`"top_k":40,"stream":true`), 1)
		}
		ctx, r := newBenchCtx(req)
		var w bytes.Buffer
		serveOnce(g, ctx, r, &w)
		if n := g.metrics.panics.Get(); n != 0 {
			t.Fatalf("the gateway panicked on the answer %q (streamed %v)", body, streamed)
		}
		if ctx.Response.StatusCode() == 0 {
			t.Fatal("no status")
		}
	})
}
