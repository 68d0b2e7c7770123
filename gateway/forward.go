package gateway

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway/cache"
	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/router"
)

// forwardBuffered sends a non-streaming request and copies the backend's answer to the client.
// A backend that cannot be reached or answers 5xx is retried on another backend of the version
// (the client has seen nothing yet). Backends send nothing until the completion is done, so
// only the total timeout applies.
func (g *Gateway) forwardBuffered(ctx *fasthttp.RequestCtx, r *request, snap *snapshot) error {
	deadline := r.start.Add(g.cfg.Timeouts.Total)
	resp := &r.upstreamResp
	err := g.tryBackends(ctx, r, snap, func(h *backendHandles) error {
		return h.up.buffered.DoDeadline(&r.upstreamReq, resp, deadline)
	})
	if err != nil {
		return err
	}
	r.status = resp.StatusCode()
	copyResponseHeaders(ctx, resp)
	ctx.SetStatusCode(r.status)
	body := resp.Body()
	m := &r.answer         // scanned by tryVersion: an error object with status 200 did not get here
	r.hold.ReportSuccess() // the whole answer is in
	r.hold.Release()
	r.hold = router.Hold{}
	us, ue, cs, ce := m[0].Start, m[0].End, m[1].Start, m[1].End
	if us >= 0 {
		r.inputTokens, r.outputTokens = usageFrom(body[us:ue])
	}
	g.cacheStoreBuffered(r, body) // 8. the backend's answer, before the guard (see cachestage.go)
	if r.status == fasthttp.StatusOK {
		if r.stats.vs != nil && cs >= 0 {
			r.stats.noteChoices(body[cs:ce], false) // the model's own answer, before the guard
		}
		var err error
		body, err = g.guardCompletion(r, body) // 7. guard the completion
		setGuardHeader(ctx, r)
		if err != nil {
			return err
		}
	}
	ctx.Response.SetBody(body)
	return nil
}

// tryBackends picks a backend, sends the request with do, and retries on another backend for
// connect errors, timeouts before the first byte, 429 and 5xx answers (and error objects with
// status 200 of those types, see scanAnswer), and streams that fail before their first event,
// up to the configured attempts and while time is left. It returns nil when a backend answered
// 2xx or a 4xx that is the client's own (passed on as an error in OpenAI's shape). After a 2xx
// the backend stays held in r.hold for the caller to report on and release when the answer is
// done.
func (g *Gateway) tryBackends(ctx *fasthttp.RequestCtx, r *request, snap *snapshot, do func(*backendHandles) error) error {
	var notServedBy *router.Version // the canary, when its 404 or 403 sent the request to stable
	notServedStatus := 0            // that 404 or 403
	for {
		err := g.tryVersion(ctx, r, snap, do)
		if notServedBy != nil {
			// Stable has answered too: the same 404 or 403 from stable was the client's own
			// request (an endpoint the model lacks, a content filter refusing it), not a
			// canary failing what stable serves, and is not the canary's error.
			if ae := asAPIError(err); err == nil || ae.status != notServedStatus {
				g.canaryMiss(snap, notServedBy)
			}
			notServedBy = nil
		}
		if err == nil {
			return nil
		}
		canary := r.version
		if !g.failoverToStable(ctx, r, snap, err) {
			return err
		}
		if s := asAPIError(err).status; s == fasthttp.StatusNotFound || s == fasthttp.StatusForbidden {
			notServedBy, notServedStatus = canary, s
		}
	}
}

// tryVersion is tryBackends within the request's version.
func (g *Gateway) tryVersion(ctx *fasthttp.RequestCtx, r *request, snap *snapshot, do func(*backendHandles) error) error {
	var lastErr error = errNoBackend
	deadline := r.start.Add(g.cfg.Timeouts.Total)
	limit := min(g.cfg.Retry.Attempts, len(r.tried))
	if r.failedOver {
		// Stable answers for a canary that failed the request: what is left of the budget, and
		// at least one attempt, or a canary whose every backend fails (a broken canary version)
		// would cost its users errors once its backends used the budget.
		limit = min(max(limit, r.attempts+1), len(r.tried))
	}
	for r.attempts < limit && time.Now().Before(deadline) {
		b, err := r.version.Pick(r.excluded())
		if err != nil {
			if lastErr == errNoBackend && r.notOllama != "" {
				lastErr = r.noBackendSupports()
			}
			break
		}
		h := snap.backends[b.Index]
		if !r.upstreamAt.IsZero() {
			// The attempt before this one failed. Its time is its backend's: in that backend's
			// upstream latency (finish observes the last attempt's only), not in the gateway's
			// overhead. Counted here, not when it failed, so that failedAttempts never holds
			// the last attempt's time, which finish subtracts from the time before it.
			d := r.headersAt.Sub(r.upstreamAt)
			r.handles.metrics.upstream.Update(d.Seconds())
			r.failedAttempts += d
		}
		r.tried[r.attempts] = b
		r.attempts++
		r.backend, r.handles = b, h
		g.prepareUpstream(ctx, r, h)

		r.upstreamAt = time.Now()
		hold := b.Acquire() // at once after Pick: a half-open backend's trial is this request's
		err = sendResendingStale(&r.upstreamResp, func() error { return do(h) })
		r.headersAt = time.Now()
		resp := &r.upstreamResp
		if err != nil {
			h.metrics.countStatus(0)
			if errors.Is(err, fasthttp.ErrNoFreeConns) {
				// The gateway's own cap on connections to the backend (many streams to a
				// fleet behind one address), not a failure of the backend: ejecting it
				// would turn a busy backend into none.
				lastErr = errBackendConnsFull
			} else {
				hold.ReportFailure()
				lastErr = classifyTransportError(err)
			}
			hold.Release()
			r.upstreamErr, r.upstreamErrBackend = err, b
			resp.Reset()
			continue
		}
		status := resp.StatusCode()
		h.metrics.countStatus(status)
		if status < 500 && status != fasthttp.StatusTooManyRequests && status != fasthttp.StatusNotFound &&
			status != fasthttp.StatusForbidden && !refusedCredentials(status) {
			if status < 400 {
				if r.stream && isEventStream(resp) {
					// The client has seen nothing of a stream until its first event is in: a
					// backend that fails before it (an error event, a cut, a prefill past
					// first_byte) is a failed attempt like a 5xx, and another backend may
					// answer (see awaitFirstEvent).
					if e, cut := r.awaitFirstEvent(resp); e != nil {
						r.headersAt = time.Now() // the attempt's time, to its failure, is its backend's
						switch {
						case cut != nil:
							r.upstreamErr = cut
							hold.ReportFailure()
						case e.status == fasthttp.StatusTooManyRequests || e.status == fasthttp.StatusForbidden:
							// At its limit, or forbidden this request: no ejection (as their
							// statuses before a 200 count none).
						case e.status >= 500:
							hold.ReportFailure()
						default: // the request's own fault: another backend would refuse it too
							hold.ReportSuccess()
							hold.Release()
							resp.Reset()
							return e
						}
						lastErr = e
						hold.Release()
						resp.Reset()
						continue
					}
				}
				if e := r.scanAnswer(resp); e != nil {
					// An error object with status 200: a failure like the status its type
					// has, and the client has seen nothing yet.
					if e.status == fasthttp.StatusTooManyRequests {
						lastErr = e // at its limit, as a 429 (below)
					} else if backendAtFault(e) {
						hold.ReportFailure() // as a 5xx (below)
						lastErr = e
					} else {
						hold.ReportSuccess()
						hold.Release()
						return e // the request's own fault: another backend would refuse it too
					}
					hold.Release()
					resp.Reset()
					continue
				}
				// Success only once the answer is in: a stream can still break.
				r.hold = hold
				return nil
			}
			hold.ReportSuccess()
			hold.Release()
			return g.backendError(resp)
		}
		switch status {
		case fasthttp.StatusTooManyRequests:
			// A backend at its limit, not a broken one: another backend of the version may
			// have room, but it counts toward no ejection.
			lastErr = g.backendError(resp)
		case fasthttp.StatusNotFound:
			// The client named a model the gateway serves, and the body names the backend's
			// own model: a 404 is this backend not serving it (a model removed from an
			// Ollama, a vLLM restarted under another name, an endpoint its model lacks).
			// Another backend of the version may serve it. No ejection of the server: a
			// client could eject healthy backends by asking them for an endpoint they lack.
			// But a server that says it has no such model (which the client cannot make it
			// say: the gateway names the model) is taken out of the pool for that model, or
			// every request would pay its round trip there while its health probe passes.
			e := g.backendError(resp)
			r.stats.modelMissing = g.noteModelMissing(hold, resp.Body(), e)
			lastErr = modelNotServed(r, e)
		case fasthttp.StatusUnauthorized:
			// The gateway's key to the backend, not the client's to the gateway (the client's
			// Authorization is never forwarded): a backend that refuses it is broken for every
			// request until its key is fixed.
			hold.ReportFailure()
			lastErr = errUpstreamAuth
		case fasthttp.StatusForbidden:
			// Forbidden for this request: a model the key may not use there, or a filter in
			// front of a hosted backend refusing the content. Another backend may take it, but
			// no ejection, or a client could take healthy backends out with what it sends.
			lastErr = g.backendError(resp)
		default:
			hold.ReportFailure()
			lastErr = g.backendError(resp)
		}
		hold.Release()
		resp.Reset()
	}
	return lastErr
}

// excluded returns the backends the next attempt may not use: those already tried and, for a
// request Ollama cannot honour (n above 1, echo, see ollamaUnsupported), the version's Ollama
// backends (a version may mix vLLM and Ollama servers of one model, as --backend discovery
// builds it).
func (r *request) excluded() []*router.Backend {
	tried := r.tried[:r.attempts]
	if r.notOllama == "" {
		return tried
	}
	clear(r.skip) // a shorter list (stable's after a canary's) must not leave backends past its end
	r.skip = append(r.skip[:0], tried...)
	for _, b := range r.version.Backends {
		if b.Kind == config.KindOllama {
			r.skip = append(r.skip, b)
		}
	}
	return r.skip
}

// noBackendSupports is errNoBackend for a request that the version's Ollama backends may not
// serve (see excluded): "no healthy backend" alone read as a lie while those were up.
func (r *request) noBackendSupports() *apiError {
	_, what, _ := r.ollamaUnsupported()
	e := *errNoBackend
	e.param = r.notOllama
	e.message = "No healthy backend of this model version supports " + what + " (its Ollama backends cannot honour it); retry shortly."
	return &e
}

// failoverToStable hands a request of a canary's share to the alias's stable version when
// every attempt on the canary failed before the first byte (a connect error, a timeout, a 5xx,
// a 429 of a canary at its limit, a 404 of a canary that does not serve its model or a 403 of
// one whose key may not use it; not the
// client's own 4xx) and stable has a backend in service and time is left (stable gets an
// attempt beyond retry.attempts when the canary used them all, see tryVersion): a canary that
// cannot answer must not cost its users errors. As with StableFallback, the canary's statistics count the failure, so
// its analysis and a rollout still see it, and llmgate_canary_fallbacks_total counts the
// request. Stable's answer is not cached: the cache
// lookup was the canary's. It reports whether the request now goes to stable.
func (g *Gateway) failoverToStable(ctx *fasthttp.RequestCtx, r *request, snap *snapshot, err error) bool {
	stable := r.failoverStable()
	if stable == nil || r.attempts >= len(r.tried) || !time.Now().Before(r.start.Add(g.cfg.Timeouts.Total)) {
		return false
	}
	ae := asAPIError(err)
	notServed := ae.status == fasthttp.StatusNotFound || ae.status == fasthttp.StatusForbidden
	if ae.status < 500 && ae.status != fasthttp.StatusTooManyRequests && !notServed && ae != errNoBackend {
		return false // the client's own error: stable would refuse it too
	}
	r.canaryShare, r.failedOver = false, true // once
	if notServed {
		// Whose 404 or 403 it was (a canary without the model or whose key may not use it,
		// or the client's own request), stable's answer tells: the canary's statistics count
		// it in tryBackends once stable answered otherwise.
		g.metrics.canaryFallbacks.Inc()
	} else {
		g.fallBackToStable(snap, r.version)
	}
	r.version = stable
	r.stats.vs = snap.stats[stable]
	ctx.Response.Header.Set("X-Llmgate-Version", stable.Name)
	cs := &r.cache
	cs.decision &^= cache.Save
	if cs.flight != nil {
		cs.flight.Fail() // its followers go to the backend on their own
		cs.flight = nil
	}
	return true
}

// failoverStable returns the stable version that a request of the canary's share goes to when
// the canary fails it (see failoverToStable), when it could serve the request now; nil otherwise.
func (r *request) failoverStable() *router.Version {
	if !r.canaryShare {
		return nil
	}
	stable := r.version.CanaryStable()
	if stable == nil || !stable.InService() || (r.notOllama != "" && onlyOllama(stable)) {
		return nil
	}
	return stable
}

// prepareUpstream fills r.upstreamReq for backend h: the client's headers minus hop-by-hop and
// credentials, the gateway's request id, the backend's key, and the rewritten body.
func (g *Gateway) prepareUpstream(ctx *fasthttp.RequestCtx, r *request, h *backendHandles) {
	req := &r.upstreamReq
	req.Reset()
	var copied copiedKeys
	hopNamed := false // the client's Connection names headers of its own connection
	for k, v := range ctx.Request.Header.All() {
		if !forwardRequestHeader(k) {
			if string(k) == "Connection" && namesHeaders(v) {
				hopNamed = true
			}
			continue
		}
		if copied.repeat(k) { // a header the client sent more than once: every line passes
			req.Header.AddBytesKV(k, v)
			continue
		}
		// SetCanonical, not SetBytesKV: the keys come from a header our server parsed
		// with name normalizing on, so they are canonical already (a key with a space,
		// which fasthttp leaves as it came, SetBytesKV would leave too), and normalizing
		// each one again was a copy and a pass per header per request.
		req.Header.SetCanonical(k, v)
	}
	if hopNamed {
		dropConnectionNamed(&req.Header, &ctx.Request.Header)
	}
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURIBytes(h.paths[r.op])
	req.Header.SetHost(h.backend.Addr)
	if h.backend.TLS {
		req.URI().SetScheme("https")
	}
	req.Header.SetContentType("application/json")
	req.Header.SetBytesV("X-Request-Id", r.requestID)
	g.setVia(&req.Header, &ctx.Request.Header)
	if h.auth != nil {
		req.Header.SetBytesV("Authorization", h.auth)
	}
	if r.attempts == 1 {
		r.rewriteBody(h.backend.Model)
	} else if prev := r.tried[r.attempts-2]; prev.Model != h.backend.Model {
		// Another backend of the version may serve the model under another name.
		ms, me := findModel(r.body)
		r.scratch = append(r.scratch[:0], r.body[:ms]...)
		r.scratch = appendJSONString(r.scratch, h.backend.Model)
		r.scratch = append(r.scratch, r.body[me:]...)
		r.body, r.scratch = r.scratch, r.body
	}
	body := r.body
	if h.backend.Kind == config.KindOllama && r.op != opEmbeddings {
		body = ollamaMaxTokens(r.upstreamBody[:0], r.body)
		if len(body) > 0 {
			r.upstreamBody = body
		} else {
			body = r.body
		}
	}
	req.SetBodyRaw(body)
}

// ollamaMaxTokens returns body with max_completion_tokens renamed max_tokens, appended to
// dst, when body has the one and not the other; nil otherwise. Ollama's OpenAI API reads only
// max_tokens (ollama/ollama#7125), and SDKs now send max_completion_tokens: passed on as it
// is, an answer's length limit would be dropped without a word. The value's bytes are kept.
func ollamaMaxTokens(dst, body []byte) []byte {
	var m [2]jsonscan.Span
	jsonscan.FindEach(body, maxTokensKeys, m[:])
	mct, mt := m[0], m[1]
	if mct.Start < 0 || mt.Start >= 0 {
		return nil
	}
	// The key precedes its value: '"max_completion_tokens"', spaces, ':', spaces.
	k := mct.Start - 1
	for k > 0 && isJSONSpace(body[k]) {
		k--
	}
	if body[k] != ':' {
		return nil
	}
	k--
	for k > 0 && isJSONSpace(body[k]) {
		k--
	}
	keyStart := k - len(`"max_completion_tokens`)
	if keyStart < 0 || string(body[keyStart:k+1]) != `"max_completion_tokens"` {
		return nil
	}
	dst = append(dst, body[:keyStart]...)
	dst = append(dst, `"max_tokens"`...)
	return append(dst, body[k+1:]...)
}

var maxTokensKeys = []string{"max_completion_tokens", "max_tokens"}

// forwardRequestHeader reports whether a client header goes to the backend. Hop-by-hop headers
// belong to one connection; Authorization and cookies are the client's credentials to the
// gateway, not to the backend, and so are api-key and x-api-key (the Azure and Anthropic SDKs'
// key headers, and API gateways' in front of this one); OpenAI-Organization and OpenAI-Project name the client's own
// account (an SDK sends them from OPENAI_ORG_ID), which a hosted backend refuses with 401 for
// the gateway's key, and Origin is the client's page, which Ollama refuses with 403 unless it
// allows it: a backend's 401 ejects it and its 403 is not the answer, so a client must not be
// able to cause one;
// Accept-Encoding is dropped so streams arrive uncompressed and
// can be inspected; Content-Encoding described the client's body, which the backend gets
// decompressed (readBody); the rest (including vendor and SDK headers) passes.
func forwardRequestHeader(k []byte) bool {
	switch string(k) {
	case "Host", "Content-Length", "Content-Type", "Connection", "Keep-Alive", "Proxy-Connection",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization",
		"Cookie", "Accept-Encoding", "Content-Encoding", "X-Request-Id", "X-Llmgate-Version",
		"Openai-Organization", "Openai-Project", "Origin", "Api-Key", "X-Api-Key", viaHeader:
		return false
	}
	return true
}

// copyResponseHeaders passes the backend's response headers to the client, except those the
// gateway owns and those about the gateway's own account with a hosted backend: its rate
// limits (x-ratelimit-*, which clients would read as theirs; the gateway sends them only for
// limits it enforces) and its organisation and project ids; those that speak for the
// backend's origin (Alt-Svc, Strict-Transport-Security), which clients would apply to the
// gateway's; a Trailer announcement (the gateway sends no trailers); x-llmgate-* headers (a
// gateway behind this one), which would stand for this gateway's own; and the headers the
// backend's Connection header names, which belong to its connection to the gateway.
func copyResponseHeaders(ctx *fasthttp.RequestCtx, resp *fasthttp.Response) {
	var copied copiedKeys
	hopNamed := false
	for k, v := range resp.Header.All() {
		if string(k) == "Connection" && namesHeaders(v) {
			hopNamed = true
		}
	}
	for k, v := range resp.Header.All() {
		switch string(k) {
		case "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding", "Server", "Date",
			"X-Request-Id", "X-Llmgate-Version", "Set-Cookie", "Openai-Organization", "Openai-Project",
			"Alt-Svc", "Strict-Transport-Security", "Trailer":
			continue
		}
		if bytes.HasPrefix(k, []byte("X-Ratelimit-")) || bytes.HasPrefix(k, []byte("X-Llmgate-")) {
			continue
		}
		if hopNamed && connectionNames(&resp.Header, k) {
			continue
		}
		if copied.repeat(k) { // several Vary or Link lines: every one passes
			ctx.Response.Header.AddBytesKV(k, v)
			continue
		}
		ctx.Response.Header.SetCanonical(k, v) // canonical already: see prepareUpstream
	}
}

// backendRetryAfter returns how long a backend asks clients to wait, in whole seconds rounded
// up: its retry-after-ms (OpenAI's, which the SDKs read first), else Retry-After in seconds or
// as an HTTP date (RFC 9110 10.2.3); 0 when it says nothing usable. A hosted provider may send
// only retry-after-ms, or a date: both were read as no value, and clients were told 1 second.
func backendRetryAfter(h *fasthttp.ResponseHeader, now time.Time) int {
	if ms, err := strconv.ParseFloat(string(h.Peek("Retry-After-Ms")), 64); err == nil && ms > 0 && ms < 1e9 {
		return int((ms + 999) / 1000)
	}
	v := h.Peek("Retry-After")
	if secs, err := strconv.Atoi(string(v)); err == nil {
		return secs
	}
	if at, err := fasthttp.ParseHTTPDate(v); err == nil && at.After(now) {
		return int((at.Sub(now) + time.Second - 1) / time.Second)
	}
	return 0
}

// backendError reads a non-2xx backend answer into OpenAI's envelope. Backend 5xx become 502
// (the gateway's upstream failed), except 503 and 504 whose meaning is kept.
func (g *Gateway) backendError(resp *fasthttp.Response) *apiError {
	status := resp.StatusCode()
	retryAfter := backendRetryAfter(&resp.Header, time.Now())
	body := resp.Body()
	if len(body) > 64<<10 {
		body = body[:64<<10]
	}
	e := normalizeBackendError(status, body, retryAfter)
	if status >= 500 && status != fasthttp.StatusServiceUnavailable && status != fasthttp.StatusGatewayTimeout {
		e.status = fasthttp.StatusBadGateway
	}
	if (e.status == fasthttp.StatusTooManyRequests || e.status == fasthttp.StatusServiceUnavailable) && e.retryAfter <= 0 {
		e.retryAfter = 1
	}
	switch {
	case e.code == "insufficient_quota" || e.typ == "insufficient_quota" || e.retryAfter > maxRetryAfter:
		// Waiting does not help, or not within the Retry-After the SDKs honour.
		e.retry = retryNo
	case e.status == fasthttp.StatusTooManyRequests || e.status == fasthttp.StatusServiceUnavailable:
		e.retry = retryYes // the backend asked to come back after Retry-After
	case status == fasthttp.StatusGatewayTimeout:
		e.retry = retryNo // as the gateway's own timeouts
	case status >= 500:
		e.retry = retryUnlessRetried
	}
	return e
}

// refusedCredentials reports whether a backend's status says it refused the gateway's
// credentials (its api_key_env): 401. A 403 is about the request (see tryVersion).
func refusedCredentials(status int) bool {
	return status == fasthttp.StatusUnauthorized
}

// noteModelMissing takes hold's backend out of its version's pool for its model when its 404
// (body, normalised as e) says it has no such model (see router.Hold.ReportModelMissing), and
// reports whether it said so.
func (g *Gateway) noteModelMissing(hold router.Hold, body []byte, e *apiError) bool {
	b := hold.Backend()
	if b == nil || !saysModelMissing(body, e.message, b.Model) {
		return false
	}
	if d := hold.ReportModelMissing(); d > 0 {
		g.log.Warn("backend does not serve its model", "backend", b.URL, "model", b.Model,
			"serves", b.Alias+"@"+b.Version, "for", d.String(), "answer", e.message)
	}
	return true
}

// saysModelMissing reports whether a backend's 404 (body, and msg, its message) says it has no
// model named model: OpenAI's code model_not_found in the body (the backend's own:
// normalizeBackendError gives every 404 that code), or the name quoted in a "not found" or
// "does not exist" message (vLLM: "The model `m` does not exist.", Ollama: "model \"m\" not
// found, try pulling it first"). A 404 for a path the server lacks names no model.
func saysModelMissing(body []byte, msg, model string) bool {
	if bytes.Contains(body, []byte(`"model_not_found"`)) {
		return true
	}
	if !strings.Contains(msg, "not found") && !strings.Contains(msg, "does not exist") {
		return false
	}
	for _, q := range [...]string{"`", `"`, "'"} {
		if strings.Contains(msg, q+model+q) {
			return true
		}
	}
	return false
}

// modelNotServed is a backend's 404 to a request for a model the gateway serves, as the client
// sees it: still a 404 (the SDKs' NotFoundError), but naming the model and version the client
// asked for, not only the backend's own model name, which the client never sent.
func modelNotServed(r *request, e *apiError) *apiError {
	e.message = "The model `" + r.version.Alias + "` (version " + r.version.Name + ") is not served for " +
		operationPaths[r.op] + " by its backend, which answered 404: " + e.message
	return e
}

func classifyTransportError(err error) *apiError {
	if _, ok := errors.AsType[*dialError](err); ok {
		return errUpstreamDown // refused or timed out connecting: the request reached no backend
	}
	if errors.Is(err, fasthttp.ErrTimeout) || isTimeout(err) {
		return errUpstreamTimeout
	}
	return errUpstreamFailed
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func findModel(body []byte) (int, int) {
	s, e := jsonscan.Find(body, "model")
	if s < 0 {
		panic("BUG: model missing from a validated body")
	}
	return s, e
}

// namesHeaders reports whether a Connection header's value names anything beyond close and
// keep-alive: headers that belong to the client's connection to the gateway (RFC 9110 7.6.1).
// It does not allocate (clients such as python-requests send Connection: keep-alive always).
func namesHeaders(v []byte) bool {
	for tok := range connectionTokens(v) {
		if !bytes.EqualFold(tok, []byte("close")) && !bytes.EqualFold(tok, []byte("keep-alive")) {
			return true
		}
	}
	return false
}

// dropConnectionNamed removes from the backend's request the headers that the client's
// Connection headers name (before the gateway sets its own: a client cannot drop those).
func dropConnectionNamed(dst *fasthttp.RequestHeader, src *fasthttp.RequestHeader) {
	for k, v := range src.All() {
		if string(k) != "Connection" {
			continue
		}
		for tok := range connectionTokens(v) {
			dst.DelBytes(tok)
		}
	}
}

// connectionNames reports whether one of a response's Connection headers names header k.
func connectionNames(h *fasthttp.ResponseHeader, k []byte) bool {
	for name, v := range h.All() {
		if string(name) != "Connection" {
			continue
		}
		for tok := range connectionTokens(v) {
			if bytes.EqualFold(tok, k) {
				return true
			}
		}
	}
	return false
}

// connectionTokens yields the comma-separated tokens of a Connection header's value, trimmed.
func connectionTokens(v []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			var tok []byte
			tok, v, _ = bytes.Cut(v, []byte(","))
			if tok = bytes.TrimSpace(tok); len(tok) > 0 && !yield(tok) {
				return
			}
		}
	}
}
