// Package bareproxy is the yardstick for the gateway's added latency: the simplest correct
// fasthttp reverse proxy to one upstream. It copies the request up and streams the response down,
// flushing text/event-stream bodies after every read, and it does nothing else.
// Anything the gateway costs beyond this proxy is the gateway's own overhead.
package bareproxy

import (
	"bytes"
	"net"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// Proxy forwards every request to one upstream. It is safe for concurrent use.
type Proxy struct {
	hc  *fasthttp.HostClient
	srv *fasthttp.Server
}

// New returns a proxy to upstream, given as "host:port", "http://host:port" or
// "https://host:port" (a path, if any, is ignored: request paths pass through unchanged).
func New(upstream string) *Proxy {
	addr, tls := upstream, false
	if rest, ok := strings.CutPrefix(addr, "http://"); ok {
		addr = rest
	} else if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		addr, tls = rest, true
	}
	if i := strings.IndexByte(addr, '/'); i >= 0 {
		addr = addr[:i]
	}
	p := &Proxy{hc: &fasthttp.HostClient{
		Addr:  addr,
		IsTLS: tls,
		// A benchmark drives thousands of concurrent requests; never let the pool be the limit.
		MaxConns:                      1 << 16,
		StreamResponseBody:            true,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
	}}
	p.srv = &fasthttp.Server{
		Handler:                       p.Handler(),
		Name:                          "bareproxy",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: true,
		CloseOnShutdown:               true,
		MaxRequestBodySize:            64 << 20, // above any gateway limit, so never the one hit
	}
	return p
}

// Serve accepts connections on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error { return p.srv.Serve(ln) }

// Close stops the server, waiting for in-flight requests, and drops idle upstream connections.
func (p *Proxy) Close() error {
	err := p.srv.Shutdown()
	p.hc.CloseIdleConnections()
	return err
}

// Handler returns the proxying request handler, for use with a server of the caller's own.
func (p *Proxy) Handler() fasthttp.RequestHandler { return p.handle }

var eventStream = []byte("text/event-stream")

func (p *Proxy) handle(ctx *fasthttp.RequestCtx) {
	// The outbound request is its own value: ctx.Request belongs to the server, the upstream
	// response may outlive the handler.
	req := fasthttp.AcquireRequest()
	ctx.Request.CopyTo(req)
	// Connection is hop-by-hop: a client's "close" must not close the pooled upstream conn.
	req.Header.ResetConnectionClose()
	resp := fasthttp.AcquireResponse()
	err := p.hc.Do(req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		ctx.Error("bareproxy: upstream: "+err.Error(), fasthttp.StatusBadGateway)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	ctx.Response.Header.ResetConnectionClose()
	size := resp.Header.ContentLength()
	if bytes.HasPrefix(resp.Header.ContentType(), eventStream) {
		size = -1 // chunked, so that fasthttp flushes after every read (writeChunk)
	}
	// The body goes straight from the upstream connection to the client without being
	// buffered whole. fasthttp closes the reader once the response is written or dropped.
	b := bodyPool.Get().(*upstreamBody)
	b.resp = resp
	ctx.Response.SetBodyStream(b, size)
}

var bodyPool = sync.Pool{New: func() any { return new(upstreamBody) }}

// upstreamBody hands an upstream response body to the server as the client response body.
// Compared with SetBodyStreamWriter it needs no pipe and goroutine per response, and an
// upstream failure mid-body surfaces as a read error, so fasthttp cuts the client connection
// instead of ending the chunked body cleanly.
type upstreamBody struct{ resp *fasthttp.Response }

// Read reads from the upstream body.
func (b *upstreamBody) Read(p []byte) (int, error) { return b.resp.BodyStream().Read(p) }

// Close releases the upstream response (and its connection, when the body was read to EOF)
// and b itself: fasthttp calls it exactly once, after which b is not used.
func (b *upstreamBody) Close() error {
	err := b.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.resp)
	b.resp = nil
	bodyPool.Put(b)
	return err
}
