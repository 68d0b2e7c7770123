package gateway

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router/store"
)

// A backend that closes idle keep-alive connections (uvicorn does after 5 s) must not turn the
// next request into a 502: the request goes out again on a fresh connection.
func TestIdleConnectionClosedByBackend(t *testing.T) {
	closed := make(chan struct{}, 16)
	srv := &fasthttp.Server{
		Handler:     cannedBackend,
		IdleTimeout: 20 * time.Millisecond,
		ConnState: func(_ net.Conn, s fasthttp.ConnState) {
			if s == fasthttp.StateClosed {
				closed <- struct{}{}
			}
		},
	}
	g := gatewayOverTCP(t, srv, nil)

	ctx, req := newBenchCtx(chatBody1K(false))
	var w bytes.Buffer
	serveOnce(g, ctx, req, &w)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("first request: %d %s", ctx.Response.StatusCode(), w.Bytes())
	}
	select {
	case <-closed: // the backend dropped the pooled connection
	case <-time.After(10 * time.Second):
		t.Fatal("backend never closed the idle connection")
	}
	serveOnce(g, ctx, req, &w)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("request after the backend closed the idle connection: %d %s", ctx.Response.StatusCode(), w.Bytes())
	}
}

// The gateway caps its connections to one backend address (a fleet behind one address may take
// more streams than that). A request past the cap is the gateway's own limit, not a failure of
// the backend: it gets a 503 to retry, and the backend, answering every request it has, is not
// ejected, which would leave its version with no backend at all.
func TestConnectionCapDoesNotEjectTheBackend(t *testing.T) {
	defer func(n int) { maxBackendConns = n }(maxBackendConns)
	maxBackendConns = 1
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		arrived <- struct{}{}
		<-release // a long generation
		cannedBackend(ctx)
	}}
	g := gatewayOverTCP(t, srv, func(c *config.Config) { c.Health.FailureThreshold = 1 })

	first := make(chan int)
	go func() {
		ctx, req := newBenchCtx(chatBody1K(false))
		var w bytes.Buffer
		serveOnce(g, ctx, req, &w)
		first <- ctx.Response.StatusCode()
	}()
	<-arrived // the first request holds the only connection
	ctx, req := newBenchCtx(chatBody1K(false))
	var w bytes.Buffer
	serveOnce(g, ctx, req, &w)
	if got := ctx.Response.StatusCode(); got != fasthttp.StatusServiceUnavailable || len(ctx.Response.Header.Peek("Retry-After")) == 0 {
		t.Errorf("a request past the connection cap: %d %s, want 503 with Retry-After", got, w.Bytes())
	}
	close(release)
	if got := <-first; got != fasthttp.StatusOK {
		t.Errorf("the request holding the connection: %d, want 200", got)
	}
	if b := g.Table().Model("chat").Stable.Backends[0]; !b.Healthy() {
		t.Error("the backend was ejected for the gateway's own connection cap")
	}
}

// gatewayOverTCP serves srv on a loopback port and returns a gateway whose one backend it is,
// over real TCP (the in-memory listener of the benchmarks has no idle closes or connection
// cap to test). edit, if not nil, changes the config before its defaults.
func gatewayOverTCP(t *testing.T, srv *fasthttp.Server, edit func(*config.Config)) *Gateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown() })
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Versions: []config.Version{{
		Version: "v1", Backends: []config.Backend{{URL: "http://" + ln.Addr().String(), Kind: "vllm", Model: "m"}},
	}}}}}
	if edit != nil {
		edit(cfg)
	}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}
