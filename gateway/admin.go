package gateway

import (
	"bytes"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
)

// handleAdmin serves the admin listener: /metrics for Prometheus and liveness (open, like
// every exporter, on a listener that is loopback by default) and profiles behind an admin
// token. The deploy API (issue #5) will live here too; it is never reachable from the data plane.
func (g *Gateway) handleAdmin(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/metrics":
		g.syncCacheMetrics()
		var buf bytes.Buffer
		g.metrics.set.WritePrometheus(&buf)
		ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
		ctx.SetBody(appendWithHelp(make([]byte, 0, buf.Len()+4096), buf.Bytes()))
	case "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	default:
		if bytes.HasPrefix(ctx.Path(), []byte("/debug/pprof/")) {
			// Profiles, for finding what costs; admin role only.
			if _, err := g.authorize(ctx, roleAdmin); err != nil {
				writeError(ctx, err)
				return
			}
			pprofhandler.PprofHandler(ctx)
			return
		}
		if seg, ok := adminSegments(ctx); ok && (g.serveDeploy(ctx, seg) || g.serveDrift(ctx, seg) || g.serveCache(ctx, seg)) {
			return
		}
		setRequestID(ctx, nil)
		writeError(ctx, errAdminNotFound)
	}
}
