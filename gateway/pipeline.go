package gateway

import (
	"errors"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/router"
)

// handle dispatches data-plane requests. Only the OpenAI paths below are served: the gateway is
// never a blanket pass-through, because vLLM exposes unauthenticated admin paths.
func (g *Gateway) handle(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch string(path) {
	case "/v1/chat/completions":
		g.servePOST(ctx, opChat)
	case "/v1/completions":
		g.servePOST(ctx, opCompletion)
	case "/v1/embeddings":
		g.servePOST(ctx, opEmbeddings)
	case "/v1/models":
		g.serveModels(ctx)
	case "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	case "/readyz":
		g.serveReady(ctx)
	default:
		if len(path) > len("/v1/models/") && string(path[:len("/v1/models/")]) == "/v1/models/" {
			g.serveModel(ctx, path[len("/v1/models/"):])
			return
		}
		setRequestID(ctx, nil)
		g.metrics.rejected[rejectNotFound].Inc()
		writeError(ctx, errNotFound)
	}
}

func (g *Gateway) servePOST(ctx *fasthttp.RequestCtx, op operation) {
	if !ctx.IsPost() {
		setRequestID(ctx, nil)
		ctx.Response.Header.Set("Allow", "POST")
		writeError(ctx, errMethodNotAllowed)
		return
	}
	r := acquireRequest()
	r.op = op
	g.metrics.inFlight.Add(1)
	if !g.proxy(ctx, r) {
		// The response is a stream; its writer finishes and releases r.
		return
	}
	g.finish(r)
}

// proxy runs the pipeline for one request. It is the table of contents of a request; each stage
// is a plain function below or in its own file. It returns false when the response continues as
// a stream after the handler returns.
func (g *Gateway) proxy(ctx *fasthttp.RequestCtx, r *request) (done bool) {
	// 1. read
	r.start = time.Now()
	r.requestID = setRequestID(ctx, r.requestID)
	if g.closing.Load() {
		return g.fail(ctx, r, errShuttingDown)
	}
	// 2. decode
	if err := r.decode(ctx.PostBody()); err != nil {
		g.metrics.rejected[rejectBadRequest].Inc()
		return g.fail(ctx, r, err)
	}
	// 3. guard the prompt: issue #3.
	// 4. route
	snap := g.snap.Load()
	version, err := snap.table.Resolve(r.model, ctx.Request.Header.Peek("X-Llmgate-Version"))
	if err != nil {
		g.metrics.rejected[rejectUnknownModel].Inc()
		if errors.Is(err, router.ErrUnknownVersion) {
			return g.fail(ctx, r, unknownVersion(r.model))
		}
		return g.fail(ctx, r, unknownModel(r.model))
	}
	r.version = version
	ctx.Response.Header.Set("X-Llmgate-Version", version.Name)
	// 5. cache lookup: issue #6.
	// 6. forward, retrying on another backend until the client has seen a byte.
	if r.stream {
		if err := g.forwardStream(ctx, r, snap); err != nil {
			return g.fail(ctx, r, err)
		}
		// 7-9 for streams run in the stream writer (stream.go) as events flow.
		return false
	}
	if err := g.forwardBuffered(ctx, r, snap); err != nil {
		return g.fail(ctx, r, err)
	}
	// 7. guard the completion: issue #3.
	// 8. cache store: issue #6.
	// 9. observe: in finish.
	return true
}

// fail answers the request with err in OpenAI's envelope.
func (g *Gateway) fail(ctx *fasthttp.RequestCtx, r *request, err error) bool {
	ae := asAPIError(err)
	r.status, r.errCode = ae.status, ae.code
	writeError(ctx, ae)
	return true
}

// finish is stage 9 for every request: metrics and the access log line, then the request goes
// back to the pool. It never blocks.
func (g *Gateway) finish(r *request) {
	g.metrics.inFlight.Add(-1)
	elapsed := time.Since(r.start)
	if h := r.handles; h != nil {
		vm := h.metrics.version
		vm.duration.Update(elapsed.Seconds())
		if !r.upstreamAt.IsZero() && !r.headersAt.IsZero() {
			h.metrics.upstream.Update(r.headersAt.Sub(r.upstreamAt).Seconds())
			// Overhead: time before the backend was called, plus, for buffered answers, time
			// after it answered. For streams, per-event work is inside the upstream time.
			overhead := r.upstreamAt.Sub(r.start)
			if !r.stream {
				overhead += elapsed - r.headersAt.Sub(r.start)
			}
			vm.overhead.Update(overhead.Seconds())
		}
		if r.inputTokens > 0 {
			vm.inputTokens.Update(float64(r.inputTokens))
			vm.inputTotal.Add(r.inputTokens)
		}
		if r.outputTokens > 0 {
			vm.outputTokens.Update(float64(r.outputTokens))
			vm.outputTotal.Add(r.outputTokens)
		}
		if !r.firstEventAt.IsZero() {
			vm.ttft.Update(r.firstEventAt.Sub(r.start).Seconds())
			if r.events > 1 {
				vm.tpot.Update(r.lastEventAt.Sub(r.firstEventAt).Seconds() / float64(r.events-1))
			}
		}
	}
	if g.log.Enabled(nil, slog.LevelInfo) { //nolint:staticcheck // nil ctx is accepted by slog handlers
		g.logRequest(r, elapsed)
	}
	releaseRequest(r)
}

func (g *Gateway) logRequest(r *request, elapsed time.Duration) {
	attrs := [12]slog.Attr{
		slog.String("request_id", string(r.requestID)),
		slog.String("op", operationNames[r.op]),
		slog.String("model", string(r.model)),
		slog.Int("status", r.status),
		slog.Duration("duration", elapsed),
		slog.Bool("stream", r.stream),
	}
	n := 6
	if r.version != nil {
		attrs[n] = slog.String("version", r.version.Name)
		n++
	}
	if r.backend != nil {
		attrs[n] = slog.String("backend", r.backend.URL)
		n++
	}
	if r.attempts > 1 {
		attrs[n] = slog.Int("attempts", r.attempts)
		n++
	}
	if r.errCode != "" {
		attrs[n] = slog.String("error", r.errCode)
		n++
	}
	if r.inputTokens > 0 || r.outputTokens > 0 {
		attrs[n] = slog.Int("prompt_tokens", r.inputTokens)
		attrs[n+1] = slog.Int("completion_tokens", r.outputTokens)
		n += 2
	}
	g.log.LogAttrs(nil, slog.LevelInfo, "request", attrs[:n]...) //nolint:staticcheck
}

// setRequestID echoes a valid client x-request-id or makes one, sets it on the response, and
// returns it appended to dst.
func setRequestID(ctx *fasthttp.RequestCtx, dst []byte) []byte {
	id := ctx.Request.Header.Peek("X-Request-Id")
	if validRequestID(id) {
		dst = append(dst[:0], id...)
	} else {
		dst = appendNewRequestID(dst[:0])
	}
	ctx.Response.Header.SetBytesV("X-Request-Id", dst)
	return dst
}

// handleTransportError answers requests fasthttp could not read (body over the limit,
// malformed HTTP) in OpenAI's envelope instead of fasthttp's plain text.
func (g *Gateway) handleTransportError(ctx *fasthttp.RequestCtx, err error) {
	setRequestID(ctx, nil)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		g.metrics.rejected[rejectTooLarge].Inc()
		writeError(ctx, errBodyTooLarge)
		return
	}
	g.metrics.rejected[rejectBadRequest].Inc()
	writeError(ctx, badRequest("", "The HTTP request could not be read."))
}
