package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/drift"
	"github.com/llmgate/llmgate/guard"
	"github.com/llmgate/llmgate/router"
)

// handle dispatches data-plane requests. Only the OpenAI paths below are served: the gateway is
// never a blanket pass-through, because vLLM exposes unauthenticated admin paths.
func (g *Gateway) handle(ctx *fasthttp.RequestCtx) {
	defer g.recoverRequest(ctx)
	if g.looped(&ctx.Request.Header) {
		setRequestID(ctx, nil)
		g.metrics.rejected[rejectLoop].Inc()
		writeError(ctx, errLoop)
		return
	}
	path := ctx.Path()
	if len(path) > 1 && path[len(path)-1] == '/' {
		// "/v1/chat/completions/", as a base URL ending in a slash or a hand-written client
		// makes: the same endpoint (fasthttp has already cleaned up doubled slashes).
		path = path[:len(path)-1]
	}
	switch string(path) {
	case "/v1/chat/completions":
		g.servePOST(ctx, opChat)
	case "/v1/completions":
		g.servePOST(ctx, opCompletion)
	case "/v1/embeddings":
		g.servePOST(ctx, opEmbeddings)
	case "/v1/models":
		g.serveModels(ctx)
	case "/healthz", "/readyz":
		if !ctx.IsGet() && !ctx.IsHead() { // as GET /v1/models: the other methods are a 405
			setRequestID(ctx, nil)
			g.metrics.rejected[rejectMethod].Inc()
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			writeError(ctx, errMethodNotAllowed)
			return
		}
		if string(path) == "/readyz" {
			g.serveReady(ctx)
			return
		}
		setRequestID(ctx, nil)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
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
		g.metrics.rejected[rejectMethod].Inc()
		ctx.Response.Header.Set("Allow", "POST")
		writeError(ctx, errMethodNotAllowed)
		return
	}
	r := acquireRequest(g)
	r.op = op
	g.metrics.inFlight.Add(1)
	defer func() {
		if v := recover(); v != nil {
			// r may be half-way through anything: drop it rather than pool it. The backend it
			// held is given back, or least-loaded picking would count it busy for good (and a
			// half-open trial it held would never end).
			r.hold.Release()
			g.metrics.inFlight.Add(-1)
			panic(v) // handled by recoverRequest
		}
	}()
	if !g.proxy(ctx, r) {
		// The response is a stream; its writer finishes and releases r.
		if u := r.untilClose; u != nil {
			r.untilClose = nil
			g.sendUntilClose(ctx, u)
		}
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
	body, err := r.readBody(ctx, g.cfg.Limits.MaxBodyBytes)
	if err != nil {
		if err == errBodyTooLarge {
			g.metrics.rejected[rejectTooLarge].Inc()
			err = g.tooLarge
		} else {
			g.metrics.rejected[rejectBadRequest].Inc()
		}
		return g.fail(ctx, r, err)
	}
	if err := r.decode(body); err != nil {
		g.metrics.rejected[rejectBadRequest].Inc()
		return g.fail(ctx, r, err)
	}
	// 3. route: alias -> version. The backend is picked when forwarding (6), per attempt.
	snap := g.snap.Load()
	headerPin := ctx.Request.Header.Peek("X-Llmgate-Version")
	alias, modelPin, pinned := bytes.Cut(r.model, []byte("@")) // a pin in the model wins
	version, err := snap.table.ResolveSticky(r.model, headerPin, stickyKey(ctx, r, snap.table))
	if err != nil {
		g.metrics.rejected[rejectUnknownModel].Inc()
		if errors.Is(err, router.ErrUnknownVersion) {
			if !pinned {
				return g.fail(ctx, r, unknownHeaderVersion(alias, headerPin))
			}
			return g.fail(ctx, r, unknownVersion(alias, modelPin))
		}
		return g.fail(ctx, r, unknownModel(r.model))
	}
	if !pinned && len(headerPin) == 0 {
		// A canary with every backend out would fail its whole share: stable answers instead.
		if s := version.StableFallback(); s != nil {
			g.fallBackToStable(snap, version)
			version = s
		}
		r.canaryShare = version.CanaryStable() != nil
	}
	r.version = version
	if vs := snap.stats[version]; vs != nil {
		r.stats.vs = vs
		r.stats.notePrompt(r.op, r.root) // for the drift sample (9)
	}
	// Refusals from here on are the version's: in its statistics as in llmgate_request_errors_total.
	if r.op != opEmbeddings {
		r.nChoices = max(r.root.GetInt("n"), 1) * promptCount(r.op, r.root)
	}
	if param, what, instead := r.ollamaUnsupported(); param != "" {
		// Refused rather than the client get fewer choices than it asked for, or no echo,
		// without a word, or Ollama's own decoding error. Where the version has other
		// backends, they serve it (see request.excluded).
		if onlyOllama(version) {
			return g.fail(ctx, r, &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "unsupported_parameter", param: param,
				message: what + " is not supported on model `" + version.Alias + "`: its backends (Ollama) " + instead})
		}
		r.notOllama = param
	}
	// 4. guard the prompt: redact or block; the body is rewritten only if something changed.
	if ag := snap.guards[version.Alias]; ag != nil {
		r.guard.ag, r.guard.m = ag, snap.guardMetrics[version]
		r.noteAnswerShape()
		if r.tokens != "" && r.op != opEmbeddings && ag.rewritesCompletions() {
			// Logprobs and token ids spell the answer's text again, where the guard cannot
			// rewrite or stop it: refused rather than let them carry what it removes.
			return g.fail(ctx, r, &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "unsupported_parameter", param: r.tokens,
				message: "'" + r.tokens + "' is not supported on model `" + version.Alias + "`: its completion guard rewrites or stops answers, and token log probabilities or ids would repeat the text it checks."})
		}
		if n := r.choicesAsked(); n > maxGuardedChoices && r.stream && ag.guardsCompletions() {
			// A stream guard tracks at most maxGuardedChoices choices (OpenAI's cap on n):
			// refused here rather than the stream broken at that choice after it was paid for.
			return g.fail(ctx, r, badRequest("n", "'n' (times the prompts of a list) must be at most "+strconv.Itoa(maxGuardedChoices)+" when streaming from model `"+version.Alias+"`: its completion guard checks each streamed choice."))
		}
		err := g.guardPrompt(r, r.root)
		setGuardHeader(ctx, r)
		if err != nil {
			return g.fail(ctx, r, err)
		}
	}
	ctx.Response.Header.Set("X-Llmgate-Version", version.Name)
	if sv := version.DrawShadow(); sv != nil {
		g.mirror(r, snap, sv) // a copy to the shadow version; never delays or changes this answer
	}
	// 5. cache lookup: a hit or a coalesced answer ends here; a leader goes on and stores (8).
	if handled, done := g.cacheLookup(ctx, r, snap); handled {
		return done
	}
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
	// 7. guard the completion: in forwardBuffered, on the backend's body.
	// 8. cache store: in forwardBuffered, and at the end of a stream in streamBody.Close.
	// 9. observe: in finish.
	return true
}

// fallBackToStable counts a request of canary's share that stable serves instead: in
// llmgate_canary_fallbacks_total, and in the canary's statistics as the error its share would
// have got, so that its analysis (and a rollout's automatic rollback) sees a canary that
// cannot answer.
func (g *Gateway) fallBackToStable(snap *snapshot, canary *router.Version) {
	g.metrics.canaryFallbacks.Inc()
	g.canaryMiss(snap, canary)
}

// canaryMiss counts a request of canary's share that the canary failed as an error in its
// statistics (see fallBackToStable).
func (g *Gateway) canaryMiss(snap *snapshot, canary *router.Version) {
	if vs := snap.stats[canary]; vs != nil {
		var miss drift.Sample
		miss.Reset()
		miss.Status = drift.StatusUpstreamError
		vs.observe(&miss)
	}
}

// recoverRequest turns a panic in one request into a 500 for that request and a log line,
// instead of letting fasthttp's goroutine take the whole gateway down. A panic is a bug; the
// stack goes to the log so it can be fixed.
func (g *Gateway) recoverRequest(ctx *fasthttp.RequestCtx) {
	if v := recover(); v != nil {
		g.log.Error("panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		g.metrics.panics.Inc()
		writeError(ctx, errInternal)
	}
}

// setGuardHeader sends x-llmgate-guard when the guard found something to report: entity types
// with counts and safety categories, never values.
func setGuardHeader(ctx *fasthttp.RequestCtx, r *request) {
	if len(r.guard.header) > 0 {
		ctx.Response.Header.SetBytesV("X-Llmgate-Guard", r.guard.header)
	}
}

// fail answers the request with err in OpenAI's envelope, and with x-should-retry where the
// gateway knows better than the SDK's defaults whether to try again.
func (g *Gateway) fail(ctx *fasthttp.RequestCtx, r *request, err error) bool {
	ae := asAPIError(err)
	r.status, r.errCode = ae.status, errorCode(ae.status, ae.typ, ae.code)
	writeError(ctx, ae)
	if v := ae.shouldRetry(r.attempts); v != "" {
		ctx.Response.Header.Set("X-Should-Retry", v)
	}
	return true
}

// errorCode is an error's code in the log line and llmgate_request_errors_total, which count every
// failed request by code. A backend error without a code of its own (passed on to the client
// with code null, as most of vLLM's 400s are) still counts: a 5xx as upstream_error, as the
// gateway's own 502s; a 4xx by its type (invalid_request_error, permission_error): the
// request's fault, not the backend's.
func errorCode(status int, typ, code string) string {
	switch {
	case code != "":
		return code
	case status >= 500:
		return "upstream_error"
	case status >= 400 && typ != "":
		return typ
	case status >= 400:
		return typeInvalidRequest
	}
	return ""
}

// finish is stage 9 for every request: metrics and the access log line, then the request goes
// back to the pool. It never blocks.
func (g *Gateway) finish(r *request) {
	g.metrics.inFlight.Add(-1)
	now := time.Now()
	elapsed := now.Sub(r.start)
	overhead := time.Duration(-1)
	if h := r.handles; h != nil {
		vm := h.metrics.version
		vm.duration.Update(elapsed.Seconds())
		if !r.upstreamAt.IsZero() && !r.headersAt.IsZero() {
			h.metrics.upstream.Update(r.headersAt.Sub(r.upstreamAt).Seconds())
			// Overhead: time before the backend was called, plus, for buffered answers, time
			// after it answered. For streams, per-event work is inside the upstream time.
			overhead = r.upstreamAt.Sub(r.start) - r.failedAttempts // the backends' time is not the gateway's
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
		if !r.firstSentAt.IsZero() {
			// The server's time to first token is the gateway's: what its client waited for,
			// the completion guard's hold-back included.
			vm.ttft.Update(r.firstSentAt.Sub(r.start).Seconds())
		}
		if !r.firstEventAt.IsZero() {
			vm.firstChunk.Update(r.firstEventAt.Sub(r.start).Seconds())
			if r.tokenEvents > 1 {
				vm.tpot.Update(r.lastTokenAt.Sub(r.firstTokenAt).Seconds() / float64(r.tokenEvents-1))
			}
		}
	}
	if r.errCode != "" && r.version != nil {
		// Also what llmgate_requests_total cannot show: no backend in service (no backend
		// answered) and streams that failed after their 200. Error paths only, so the name is
		// made here.
		g.metrics.set.GetOrCreateCounter(`llmgate_request_errors_total{model=` + promLabel(r.version.Alias) +
			`,version=` + promLabel(r.version.Name) + `,code=` + promLabel(g.metrics.errorCodeLabel(r.errCode)) + `}`).Inc()
	}
	if r.cache.result != "" {
		r.cache.vc.results[cacheResultIndex(r.cache.result)].Inc()
		if r.handles == nil && (r.cache.result == cacheHit || r.cache.result == cacheCoalesced) {
			r.cache.vc.duration.Update(elapsed.Seconds()) // answered without a backend of its own
		}
	}
	if r.streamGuard.spent > 0 && r.guard.m != nil { // a stream's completion guard: one check
		r.guard.m.duration[guard.Completion].Update(r.streamGuard.spent.Seconds())
	}
	if r.stats.vs != nil {
		g.observe(r, now, elapsed, overhead)
	}
	if g.logRequests {
		g.logRequest(r, now, elapsed)
	}
	releaseRequest(r)
}

// logRequest writes the request's log line. It is built by hand in the shape slog's JSON
// handler writes (time, level, msg, then fields) because slog allocates per attribute, and this
// runs for every request.
func (g *Gateway) logRequest(r *request, now time.Time, elapsed time.Duration) {
	b := r.scratch[:0]
	b = append(b, `{"time":"`...)
	b = appendLogTime(b, now)
	b = append(b, `","level":"INFO","msg":"request","request_id":`...)
	b = appendJSONString(b, unsafeString(r.requestID))
	b = append(b, `,"op":"`...)
	b = append(b, operationNames[r.op]...)
	b = append(b, `","model":`...)
	b = appendJSONString(b, unsafeString(r.model))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.status), 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, elapsed)
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, r.stream)
	if r.version != nil {
		b = append(b, `,"version":`...)
		b = appendJSONString(b, r.version.Name)
	}
	if r.backend != nil {
		b = append(b, `,"backend":`...)
		b = appendJSONString(b, r.backend.URL)
	}
	if !r.upstreamAt.IsZero() && !r.headersAt.IsZero() {
		// The backend's share of duration_ms (to its response headers): what the gateway
		// itself added is the difference.
		b = append(b, `,"upstream_ms":`...)
		b = appendMillis(b, r.headersAt.Sub(r.upstreamAt))
	}
	if r.cache.result != "" {
		b = append(b, `,"cache":"`...)
		b = append(b, r.cache.result...)
		b = append(b, '"')
	}
	if r.attempts > 1 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(r.attempts), 10)
	}
	if r.errCode != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.errCode)
	}
	if r.upstreamErr != nil {
		b = append(b, `,"upstream_error":`...) // a dial or read error: addresses, never prompt text
		b = appendJSONString(b, r.upstreamErr.Error())
		if r.upstreamErrBackend != nil { // whose error: after a retry, backend is the one that answered
			b = append(b, `,"upstream_error_backend":`...)
			b = appendJSONString(b, r.upstreamErrBackend.URL)
		}
	}
	if len(r.guard.note) > 0 {
		b = append(b, `,"guard":`...) // types and counts, never values
		b = appendJSONString(b, unsafeString(r.guard.note))
	}
	if r.guard.blocked != "" {
		b = append(b, `,"guard_blocked":`...)
		b = appendJSONString(b, r.guard.blocked)
	}
	if r.inputTokens > 0 || r.outputTokens > 0 {
		b = append(b, `,"prompt_tokens":`...)
		b = strconv.AppendInt(b, int64(r.inputTokens), 10)
		b = append(b, `,"completion_tokens":`...)
		b = strconv.AppendInt(b, int64(r.outputTokens), 10)
	}
	b = append(b, "}\n"...)
	_, _ = g.accessLog.Write(b)
	r.scratch = b
}

// appendMillis appends d in milliseconds with three decimals, as
// strconv.AppendFloat(dst, float64(d.Microseconds())/1000, 'f', 3, 64) does, from integers:
// formatting a float cost more than the rest of the log line's numbers together.
func appendMillis(dst []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 {
		return strconv.AppendFloat(dst, float64(us)/1000, 'f', 3, 64)
	}
	dst = strconv.AppendInt(dst, us/1000, 10)
	frac := us % 1000
	return append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
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
		drainRefusedBody(ctx)
		writeError(ctx, g.tooLarge)
		return
	}
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); ok {
		g.metrics.rejected[rejectTooLarge].Inc()
		writeError(ctx, errHeadersTooLarge)
		return
	}
	g.metrics.rejected[rejectBadRequest].Inc()
	writeError(ctx, badRequest("", "The HTTP request could not be read."))
}

// errHeadersTooLarge answers a request whose request line and headers do not fit fasthttp's
// read buffer (its default, 4 KiB): a 431 that says so, as fasthttp's own error handler does,
// not a 400 that leaves the client to guess what could not be read (a large cookie or a token
// a proxy in front added).
var errHeadersTooLarge = &apiError{status: fasthttp.StatusRequestHeaderFieldsTooLarge, typ: typeInvalidRequest, code: "request_headers_too_large",
	message: "Request headers too large: the request line and headers must fit in 4 KiB."}

// maxAdminBody bounds an admin request's body: a version's spec or a rollout plan is a few KB.
const maxAdminBody = 1 << 20

// handleAdminTransportError answers an admin request fasthttp could not read in OpenAI's
// envelope, as the data plane does, rather than fasthttp's plain-text 400.
func handleAdminTransportError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		drainRefusedBody(ctx)
		writeError(ctx, &apiError{status: fasthttp.StatusRequestEntityTooLarge, typ: typeInvalidRequest, code: errBodyTooLarge.code,
			message: "Admin request bodies are limited to 1 MiB."})
		return
	}
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); ok {
		writeError(ctx, errHeadersTooLarge)
		return
	}
	writeError(ctx, badRequest("", "The HTTP request could not be read."))
}

// Bounds of drainRefusedBody: the most it reads, in all and between two reads.
const (
	maxDrain       = 256 << 20
	drainTotalTime = 10 * time.Second
	drainIdleTime  = time.Second
	drainTail      = 64 << 10 // more than fasthttp's read buffer can hold
	drainTailTime  = 20 * time.Millisecond
)

// drainRefusedBody reads and throws away the rest of a body refused as too large, before the
// 413 is written and the connection closed. Clients (Go's, the SDKs') send a whole body before
// they read the answer: closed on a body still arriving, the connection is reset and the
// client sees a network error, which SDKs retry, sending the body again, instead of the 413.
// nginx lingers the same way. A body beyond maxDrain, or a client that stops sending for
// drainIdleTime, gets the reset.
func drainRefusedBody(ctx *fasthttp.RequestCtx) {
	n := ctx.Request.Header.ContentLength()
	c := ctx.Conn()
	if n <= 0 || n > maxDrain || c == nil {
		return
	}
	end := time.Now().Add(drainTotalTime)
	var buf [32 << 10]byte
	for left := n; left > 0; {
		// fasthttp's reader holds what it read past the headers (a few KB), which never comes
		// from the socket again: near the end, a short wait says the body is all in.
		idle := drainIdleTime
		if left <= drainTail {
			idle = drainTailTime
		}
		deadline := time.Now().Add(idle)
		if deadline.After(end) {
			deadline = end
		}
		_ = c.SetReadDeadline(deadline)
		k, err := c.Read(buf[:])
		left -= k
		if err != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
}

// unsafeString views b as a string without copying; the string must not outlive b.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// onlyOllama reports whether every backend of v is an Ollama server, which cannot honour what
// request.ollamaUnsupported finds.
func onlyOllama(v *router.Version) bool {
	for _, b := range v.Backends {
		if b.Kind != config.KindOllama {
			return false
		}
	}
	return len(v.Backends) > 0
}
