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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck
	defer srv.Shutdown()
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Versions: []config.Version{{
		Version: "v1", Backends: []config.Backend{{URL: "http://" + ln.Addr().String(), Kind: "vllm", Model: "m"}},
	}}}}}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

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
