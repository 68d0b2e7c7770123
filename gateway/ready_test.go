package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// A gateway shutting down is not ready, whatever its models: a load balancer stops sending
// before its listeners close (as Envoy's /ready while draining).
func TestReadyWhileShuttingDown(t *testing.T) {
	g := &Gateway{}
	g.closing.Store(true)
	var ctx fasthttp.RequestCtx
	g.serveReady(&ctx)
	if got := ctx.Response.StatusCode(); got != fasthttp.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", got)
	}
	if got := string(ctx.Response.Body()); got != `{"status":"shutting_down"}` {
		t.Errorf("body %s", got)
	}
}
