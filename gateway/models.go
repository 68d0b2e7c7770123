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

// serveReady answers 200 when every alias's stable version has a backend in service, 503
// otherwise, so a load balancer keeps traffic away from a gateway that can only fail.
func (g *Gateway) serveReady(ctx *fasthttp.RequestCtx) {
	setRequestID(ctx, nil)
	ctx.SetContentType("application/json")
	for _, m := range g.Table().Models() {
		if !m.Stable.InService() { // a drained backend (weight 0) takes no request, healthy or not
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBody(append(appendJSONText([]byte(`{"status":"unavailable","model":`), m.Alias), '}'))
			return
		}
	}
	ctx.SetBodyString(`{"status":"ready"}`)
}
