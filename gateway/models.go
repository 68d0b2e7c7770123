package gateway

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// serveModels lists the public aliases, and each version as "alias@version" (which clients may
// send as model to pin it), in OpenAI's list shape.
func (g *Gateway) serveModels(ctx *fasthttp.RequestCtx) {
	setRequestID(ctx, nil)
	if !ctx.IsGet() && !ctx.IsHead() { // HEAD as GET, without the body (RFC 9110 9.3.2)
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		writeError(ctx, errMethodNotAllowed)
		return
	}
	created := g.started()
	b := append([]byte(nil), `{"object":"list","data":[`...)
	for i, m := range g.Table().Models() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendModel(b, m.Alias, created, m.Stable.Name)
		for _, v := range m.Versions {
			b = append(b, ',')
			b = appendModel(b, m.Alias+"@"+v.Name, created, v.Name)
		}
	}
	b = append(b, "]}"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// serveModel answers GET /v1/models/{id} for an alias or alias@version.
func (g *Gateway) serveModel(ctx *fasthttp.RequestCtx, id []byte) {
	setRequestID(ctx, nil)
	if !ctx.IsGet() && !ctx.IsHead() { // HEAD as GET, without the body (RFC 9110 9.3.2)
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		writeError(ctx, errMethodNotAllowed)
		return
	}
	v, err := g.Table().Resolve(id, nil)
	if err != nil {
		writeError(ctx, unknownModel(id))
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(appendModel(nil, string(id), g.started(), v.Name))
}

func appendModel(b []byte, id string, created int64, version string) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONText(b, id)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"owned_by":"llmgate","llmgate_version":`...)
	b = appendJSONText(b, version)
	return append(b, '}')
}

// serveReady answers whether a load balancer should send this gateway requests. A gateway that
// can serve is ready (200) while one of its models can serve: under Kubernetes every replica
// shares the models and their backends, so one dead model saying not ready would take every
// replica, and every other model, out with it. The body names the models that cannot serve,
// "degraded" when there are some. It is not ready (503) while shutting down, or when no model
// can serve, and from Drain on, while requests are still served. ?model=alias (or alias@version) asks for that one strictly: 503 while it cannot
// serve, 404 for a model the gateway does not have. A model can serve while its stable version
// (or the pinned one) has a backend in service; a drained one (weight 0) takes no request,
// healthy or not.
func (g *Gateway) serveReady(ctx *fasthttp.RequestCtx) {
	setRequestID(ctx, nil)
	if g.draining.Load() || g.closing.Load() {
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":"shutting_down"}`)
		return
	}
	t := g.Table()
	if args := ctx.QueryArgs(); args.Has("model") {
		id := args.Peek("model")
		v, err := t.Resolve(id, nil)
		if err != nil {
			writeError(ctx, unknownModel(id))
			return
		}
		b := []byte(`{"status":"ready","model":`)
		if !v.InService() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			b = []byte(`{"status":"unavailable","model":`)
		}
		b = appendJSONText(b, string(id))
		b = append(b, `,"version":`...)
		b = appendJSONText(b, v.Name)
		ctx.SetContentType("application/json")
		ctx.SetBody(append(b, '}'))
		return
	}
	models := t.Models()
	var down []string
	for _, m := range models {
		if !m.Stable.InService() {
			down = append(down, m.Alias)
		}
	}
	ctx.SetContentType("application/json")
	if len(down) == 0 && len(models) > 0 {
		ctx.SetBodyString(`{"status":"ready"}`)
		return
	}
	b := []byte(`{"status":"degraded","unavailable":[`)
	if len(down) == len(models) {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		b = []byte(`{"status":"unavailable","unavailable":[`)
	}
	for i, alias := range down {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONText(b, alias)
	}
	ctx.SetBody(append(b, "]}"...))
}
