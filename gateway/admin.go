package gateway

import (
	"bytes"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
)

// handleAdmin serves the admin listener: /metrics for Prometheus and liveness (open, like
// every exporter, on a listener that is loopback by default) and profiles behind an admin
// token. The deploy API (issue #5) will live here too; it is never reachable from the data plane.
func (g *Gateway) handleAdmin(ctx *fasthttp.RequestCtx) {
	switch p := string(ctx.Path()); p {
	case "/metrics", "/healthz":
		if !ctx.IsGet() && !ctx.IsHead() {
			// As every other read-only URL: a POST is a client's mistake, not a scrape.
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		if p == "/healthz" {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"status":"ok"}`)
			return
		}
		g.syncCacheMetrics()
		var buf bytes.Buffer
		g.metrics.set.WritePrometheus(&buf)
		ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
		ctx.SetBody(appendWithHelp(make([]byte, 0, buf.Len()+4096), buf.Bytes()))
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

// methodNotAllowed answers a 405 on an admin URL that exists, saying in Allow (RFC 9110 15.5.6)
// which methods it takes.
func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	writeError(ctx, errMethodNotAllowed)
}

// onlyQueryArgs answers a 400 naming the first query parameter of ctx that is not one of
// allowed, or that is repeated, and reports whether there was none: a misspelt ?modle=chat
// would otherwise be ignored, and a DELETE would empty every model's cache.
func onlyQueryArgs(ctx *fasthttp.RequestCtx, allowed ...string) bool {
	var bad *apiError
	seen := map[string]bool{}
	ctx.QueryArgs().VisitAll(func(k, _ []byte) {
		name := string(k)
		switch {
		case bad != nil:
		case !slices.Contains(allowed, name):
			msg := "Unknown query parameter `" + name + "`; this URL takes none."
			if len(allowed) > 0 {
				msg = "Unknown query parameter `" + name + "`; this URL takes " + strings.Join(allowed, " and ") + "."
			}
			bad = badRequest(name, msg)
		case seen[name]:
			bad = badRequest(name, "Query parameter `"+name+"` is given more than once.")
		}
		seen[name] = true
	})
	if bad != nil {
		writeError(ctx, bad)
		return false
	}
	return true
}
