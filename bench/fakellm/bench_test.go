package fakellm

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// newChatCtx returns a RequestCtx carrying a buffered chat request, for
// driving the handler without a network.
func newChatCtx(body string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v1/chat/completions")
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	return ctx
}

// BenchmarkChatBuffered measures the handler on the non-streaming chat path
// with zero TTFT and unlimited decode speed, per flavor.
func BenchmarkChatBuffered(b *testing.B) {
	for _, flavor := range []string{"vllm", "ollama"} {
		b.Run(flavor, func(b *testing.B) {
			h := New(Options{Flavor: flavor, Model: "m"}).Handler()
			ctx := newChatCtx(chatBody)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				h(ctx)
			}
		})
	}
}

// BenchmarkChatBufferedInmemory runs the same path through a fasthttp client
// and server over an in-memory listener; ns/op is the per-request cost.
func BenchmarkChatBufferedInmemory(b *testing.B) {
	s := New(Options{Model: "m"})
	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln) //nolint:errcheck // Serve returns nil after Close
	defer s.Close()
	c := &fasthttp.HostClient{Addr: "fakellm", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 64}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("http://fakellm/v1/chat/completions")
		req.SetBodyString(chatBody)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("%v %d", err, resp.StatusCode())
			}
		}
	})
}

// TestChatBufferedAllocs guards the steady-state allocation count of the
// buffered chat handler.
func TestChatBufferedAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation guard: -short, or -race (sync.Pool drops items under the race detector)")
	}
	for _, flavor := range []string{"vllm", "ollama"} {
		h := New(Options{Flavor: flavor, Model: "m"}).Handler()
		ctx := newChatCtx(chatBody)
		h(ctx) // warm pools
		allocs := testing.AllocsPerRun(200, func() {
			ctx.Response.Reset()
			h(ctx)
		})
		if allocs > 0 {
			t.Errorf("%s: %.1f allocs per buffered chat request, want 0", flavor, allocs)
		}
	}
}
