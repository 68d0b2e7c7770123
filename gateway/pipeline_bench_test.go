package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router/store"
)

// A canned vLLM answer: the backend side of these benchmarks must not allocate, so that what is
// counted is the gateway (and the fasthttp client it drives).
const (
	cannedChat  = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":250,"completion_tokens":2,"total_tokens":252}}`
	cannedEvent = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}` + "\n\n"
	cannedUsage = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":250,"completion_tokens":16,"total_tokens":266}}` + "\n\n"
)

var cannedStream = strings.Repeat(cannedEvent, 16) + cannedUsage + "data: [DONE]\n\n"

func cannedBackend(ctx *fasthttp.RequestCtx) {
	if bytes.Contains(ctx.PostBody(), []byte(`"stream":true`)) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyString(cannedStream)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(cannedChat)
}

// chatBody1K is a 1 KiB chat request like the performance targets name.
func chatBody1K(stream bool) []byte {
	content := strings.Repeat("lorem ipsum dolor sit amet ", 36)
	b := `{"model":"chat","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"` + content + `"}],"temperature":0.2,"top_k":40`
	if stream {
		b += `,"stream":true`
	}
	return []byte(b + "}")
}

// newBenchGateway returns a gateway whose one backend is cannedBackend on an in-memory listener.
func newBenchGateway(tb testing.TB, edits ...func(*config.Config)) *Gateway {
	tb.Helper()
	return newGatewayWithBackend(tb, cannedBackend, edits...)
}

// newGatewayWithBackend returns a gateway whose one backend is handler on an in-memory listener.
func newGatewayWithBackend(tb testing.TB, handler fasthttp.RequestHandler, edits ...func(*config.Config)) *Gateway {
	tb.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: handler}
	go srv.Serve(ln) //nolint:errcheck
	tb.Cleanup(func() { _ = srv.Shutdown() })
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Versions: []config.Version{{
		Version: "v1", Backends: []config.Backend{{URL: "http://backend.test:8000", Kind: "vllm", Model: "meta-llama/Llama-3.1-8B-Instruct"}},
	}}}}}
	for _, edit := range edits {
		edit(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	g, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory(), Dial: func(string) (net.Conn, error) { return ln.Dial() }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	return g
}

// serveOnce runs one request through the gateway's handler the way fasthttp's server would,
// including draining a streamed body.
func serveOnce(g *Gateway, ctx *fasthttp.RequestCtx, req *fasthttp.Request, w *bytes.Buffer) {
	req.CopyTo(&ctx.Request)
	ctx.Response.Reset()
	g.handle(ctx)
	w.Reset()
	_ = ctx.Response.BodyWriteTo(w)
}

func newBenchCtx(body []byte) (*fasthttp.RequestCtx, *fasthttp.Request) {
	req := &fasthttp.Request{}
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v1/chat/completions")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	return ctx, req
}

func benchmarkPipeline(b *testing.B, stream bool, edits ...func(*config.Config)) {
	g := newBenchGateway(b, edits...)
	g.log = discardLogger() // the access log is async; its cost is measured separately
	ctx, req := newBenchCtx(chatBody1K(stream))
	var w bytes.Buffer
	serveOnce(g, ctx, req, &w)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), w.Bytes())
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(req.Body())))
	for b.Loop() {
		serveOnce(g, ctx, req, &w)
	}
}

// BenchmarkPipelineBuffered is the whole non-streaming path: decode, route, rewrite, forward to
// an in-memory backend, copy the answer, metrics.
func BenchmarkPipelineBuffered(b *testing.B) { benchmarkPipeline(b, false) }

// BenchmarkPipelineBufferedNoDrift is BenchmarkPipelineBuffered without drift statistics: the
// difference is what stage 9's sample costs.
func BenchmarkPipelineBufferedNoDrift(b *testing.B) {
	benchmarkPipeline(b, false, func(c *config.Config) { c.Drift.Off = true })
}

// BenchmarkPipelineCacheHit is a buffered request answered from the response cache: decode,
// route, key, lookup, replay, metrics, drift sample.
func BenchmarkPipelineCacheHit(b *testing.B) {
	benchmarkHit(b, func(c *config.Config) {
		c.Models[0].Cache = config.ModelCache{Enabled: true, TTL: time.Hour}
	})
}

// benchmarkHit runs one cacheable request until it is a hit, then measures hits.
func benchmarkHit(b *testing.B, edits ...func(*config.Config)) {
	g := newBenchGateway(b, edits...)
	g.log = discardLogger()
	body := bytes.Replace(chatBody1K(false), []byte(`"temperature":0.2`), []byte(`"temperature":0`), 1)
	ctx, req := newBenchCtx(body)
	var w bytes.Buffer
	for range 100 { // until the store has applied the first answer
		serveOnce(g, ctx, req, &w)
		g.cacheStore.Wait()
	}
	if string(ctx.Response.Header.Peek("X-Llmgate-Cache")) != "hit" {
		b.Fatalf("not a hit: %s", ctx.Response.Header.Peek("X-Llmgate-Cache"))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(req.Body())))
	for b.Loop() {
		serveOnce(g, ctx, req, &w)
	}
}

// fullFeatures is llmgate-full of bench/run.sh: PII redaction with restore and safety blocking
// on prompts and completions, and the response cache on.
func fullFeatures(c *config.Config) {
	m := &c.Models[0]
	m.Guard.PII = config.PIIGuard{Prompt: config.PIIRedact, Completion: config.PIIRedact, Restore: true}
	m.Guard.Safety.Prompt, m.Guard.Safety.Completion = config.SafetyBlock, config.SafetyBlock
	m.Cache = config.ModelCache{Enabled: true, TTL: time.Hour}
}

// BenchmarkPipelineFull is a buffered cache miss with every hot-path feature on: each request
// is cacheable (temperature 0) and unique (a counter in the prompt), so each one is guarded,
// keyed, forwarded, guarded again and stored.
func BenchmarkPipelineFull(b *testing.B) {
	g := newBenchGateway(b, fullFeatures)
	g.log = discardLogger()
	ctx, req, w, next := uniqueRequests(g)
	next()
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Llmgate-Cache")) != "miss" {
		b.Fatalf("status %d, cache %q: %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Llmgate-Cache"), w.Bytes())
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(req.Body())))
	for b.Loop() {
		next()
	}
}

// uniqueRequests returns a buffered 1 KiB chat request that is cacheable (temperature 0) and
// next, which serves it to g with a counter in its prompt bumped first, so that each request is
// unique (a cache miss); w holds the last answer's body.
func uniqueRequests(g *Gateway) (ctx *fasthttp.RequestCtx, req *fasthttp.Request, w *bytes.Buffer, next func()) {
	body := bytes.Replace(chatBody1K(false), []byte(`"temperature":0.2`), []byte(`"temperature":0`), 1)
	counter := bytes.Index(body, []byte("lorem"))
	ctx, req = newBenchCtx(body)
	w = new(bytes.Buffer)
	n := 0
	next = func() {
		n++
		b := req.Body()
		for i, x := 0, n; i < 8; i, x = i+1, x/10 {
			b[counter+i] = byte('0' + x%10)
		}
		serveOnce(g, ctx, req, w)
	}
	return ctx, req, w, next
}

// BenchmarkPipelineFullHit is BenchmarkPipelineCacheHit with the guard of BenchmarkPipelineFull.
func BenchmarkPipelineFullHit(b *testing.B) { benchmarkHit(b, fullFeatures) }

// BenchmarkPipelineStream is the streaming path: 16 content events, usage chunk dropped, [DONE].
func BenchmarkPipelineStream(b *testing.B) { benchmarkPipeline(b, true) }

// TestPipelineAllocations guards the steady-state allocation count of a buffered request through
// the gateway (the fasthttp client included; the backend is allocation-free).
func TestPipelineAllocations(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	g := newBenchGateway(t)
	g.log = discardLogger()
	// The limits are the measured counts plus a little room: buffered 0, streamed 4, all four in
	// fasthttp's streaming client (go test -bench PipelineStream -memprofile shows none in
	// gateway code).
	limits := map[bool]float64{false: 2, true: 5}
	for _, stream := range []bool{false, true} {
		ctx, req := newBenchCtx(chatBody1K(stream))
		var w bytes.Buffer
		serveOnce(g, ctx, req, &w)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), w.Bytes())
		}
		allocs := testing.AllocsPerRun(200, func() { serveOnce(g, ctx, req, &w) })
		if allocs > limits[stream] {
			t.Errorf("stream=%v: %.1f allocations per request, want <= %v", stream, allocs, limits[stream])
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// BenchmarkPipelineStreamFull is BenchmarkPipelineStream with the guard of BenchmarkPipelineFull
// (the cache is on, but the sampling temperature makes it bypass): each of the 16 events
// passes the safety stream, the leak scanner and the restorer.
func BenchmarkPipelineStreamFull(b *testing.B) { benchmarkPipeline(b, true, fullFeatures) }

// BenchmarkPipelineCacheMiss is bench/attribute.sh's cache variant inside one process: unique,
// cacheable 1 KiB requests (a counter in the prompt), the guard off. off: no cache, the
// baseline; store: each answer is stored (a store with room); full: a 1 MiB store that is
// full, where Admit turns the answers of new requests away. The difference from off is what
// the cache costs a miss.
func BenchmarkPipelineCacheMiss(b *testing.B) {
	cacheOn := func(c *config.Config) { c.Models[0].Cache = config.ModelCache{Enabled: true, TTL: time.Hour} }
	cases := []struct {
		name    string
		prefill int
		edits   []func(*config.Config)
	}{
		{"off", 0, nil},
		{"store", 0, []func(*config.Config){cacheOn}},
		{"full", 4000, []func(*config.Config){cacheOn, func(c *config.Config) { c.Cache.MaxBytes = 1 << 20 }}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			g := newBenchGateway(b, c.edits...)
			g.log = discardLogger()
			ctx, req, w, next := uniqueRequests(g)
			next()
			want := "miss"
			if g.cacheStore == nil {
				want = "bypass"
			}
			if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Llmgate-Cache")) != want {
				b.Fatalf("status %d, cache %q: %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Llmgate-Cache"), w.Bytes())
			}
			for range c.prefill {
				next()
			}
			if c.prefill > 0 {
				g.cacheStore.Wait()
				if st := g.cacheStore.Stats(); st.Bytes < st.MaxBytes-st.MaxBytes/8 {
					b.Fatalf("the store is not full: %d of %d bytes", st.Bytes, st.MaxBytes)
				}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(req.Body())))
			for b.Loop() {
				next()
			}
		})
	}
}
