package gateway

import (
	"errors"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/drift"
	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/router"
)

// stickyKey returns what keeps a client on its canary assignment: the OpenAI user field, a
// header, or the API key, as the alias's traffic says; nil means a random draw.
func stickyKey(ctx *fasthttp.RequestCtx, r *request, t *router.Table) []byte {
	sk := t.StickyFor(r.model)
	switch sk.Kind {
	case router.StickyUser:
		return r.user
	case router.StickyHeader:
		return ctx.Request.Header.Peek(sk.Header)
	case router.StickyAPIKey:
		return apiKey(&ctx.Request.Header)
	}
	return nil
}

// apiKey returns the client's API key as its SDK sends it: a bearer token (the scheme in any
// case), or the api-key (Azure) or x-api-key (Anthropic) header, which forwardRequestHeader
// also treats as the client's key. The same key in any of them is the same sticky key.
func apiKey(h *fasthttp.RequestHeader) []byte {
	a := h.Peek("Authorization")
	if token, ok := bearerToken(a); ok {
		a = token
	}
	if len(a) > 0 { // "Bearer" alone is no key: such clients are split at random, not one cohort
		return a
	}
	if k := h.Peek("Api-Key"); len(k) > 0 {
		return k
	}
	return h.Peek("X-Api-Key")
}

// maxShadows bounds shadow requests in flight: past it, mirrors are skipped and counted, so a
// slow shadow version can never build a queue in the gateway.
const maxShadows = 64

// mirror sends a copy of r (its body after the prompt guard: the shadow never sees what the
// backend may not) to version sv in the background. The answer is discarded; its latency,
// status, tokens, finish reason and refusal go to sv's statistics for comparison with stable.
func (g *Gateway) mirror(r *request, snap *snapshot, sv *router.Version) {
	var skip []*router.Backend
	if r.notOllama != "" {
		// As the client's own request (see request.excluded): Ollama answers one choice
		// whatever n asks, and a shadow that did would look cheaper and faster than stable
		// (or it ignores echo, or refuses the prompt).
		for _, b := range sv.Backends {
			if b.Kind == config.KindOllama {
				skip = append(skip, b)
			}
		}
		if len(skip) == len(sv.Backends) {
			g.metrics.shadowsSkipped[shadowUnsupported].Inc()
			return
		}
	}
	select {
	case g.shadowSlots <- struct{}{}:
	default:
		g.metrics.shadowsSkipped[shadowInFlight].Inc()
		return
	}
	b, err := sv.PickShadow(r.version, skip) // never the half-open trial r's own request needs
	if err != nil {
		<-g.shadowSlots
		// The shadow version could not have answered: an error in its statistics, as a
		// client's request that finds no backend is in its version's, or a shadow whose
		// backends are all out would look as good as stable while it answers nothing.
		g.metrics.shadowsSkipped[shadowNoBackend].Inc()
		if vs := snap.stats[sv]; vs != nil {
			var s drift.Sample
			s.Reset()
			s.At, s.Status = time.Now(), drift.StatusUnavailable
			s.PromptBytes, s.Tools, s.Stream = int64(r.stats.promptBytes), r.stats.tools, r.stream
			s.Script = drift.DetectScript(r.stats.promptHead)
			vs.observe(&s)
		}
		return
	}
	hold := b.Acquire() // at once after Pick, which may have given it a half-open trial
	// A server that also serves r's version, or the alias's stable or canary, is the
	// clients': the shadow's answer says how the shadow version fares there, not whether the
	// server serves the clients' (see below).
	shared := r.version.Shares(b)
	if m := snap.table.Model(sv.Alias); m != nil && !shared {
		shared = m.Stable.Shares(b) || m.Canary != nil && m.Canary.Shares(b)
	}
	h := snap.backends[b.Index]
	vs := snap.stats[sv]
	ag := snap.guards[sv.Alias]
	body := append([]byte(nil), r.body...)
	if r.stream {
		// The shadow's answer is read whole: asked as a stream, it came back as events that
		// the statistics below could not read (no tokens, finish reason or refusal). The same
		// prompt asked without streaming generates the same answer.
		body = withoutStreaming(body)
	}
	if b.Kind == config.KindOllama && r.op != opEmbeddings {
		// As prepareUpstream does: without it an Ollama shadow ignores the client's
		// max_completion_tokens and generates to its own limit, which costs GPU time and
		// skews its length and latency statistics against the version it shadows.
		if out := ollamaMaxTokens(nil, body); out != nil {
			body = out
		}
	}
	op, deadline := r.op, time.Now().Add(g.cfg.Timeouts.Total)
	// The prompt's features are the client request's: copied now, as r goes back to its pool
	// when the client's answer is done, so the shadow's statistics compare with stable's on
	// the same footing.
	promptBytes, tools, stream := int64(r.stats.promptBytes), r.stats.tools, r.stream
	var script drift.Script
	if vs != nil {
		script = drift.DetectScript(r.stats.promptHead)
	}
	g.shadowsWG.Add(1)
	go func() {
		defer g.shadowsWG.Done()
		defer func() { <-g.shadowSlots }()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURIBytes(h.paths[op])
		req.Header.SetHost(b.Addr)
		if b.TLS {
			req.URI().SetScheme("https") // as prepareUpstream: fasthttp refuses an http URL on a TLS pool
		}
		req.Header.SetContentType("application/json")
		req.Header.SetBytesV(viaHeader, g.id) // a shadow backend that leads back here fails at once
		if h.auth != nil {
			req.Header.SetBytesV("Authorization", h.auth)
		}
		req.SetBody(replaceModel(body, b.Model))
		start := time.Now()
		// A stale pooled connection, counted, would be an error the shadow version did not make.
		err := sendResendingStale(resp, func() error { return h.up.buffered.DoDeadline(req, resp, deadline) })
		// answered is the backend's answer as tryVersion reads it: an error object with
		// status 200 is the status its type has (a server error, a 400, a 429), no success.
		answered := 0
		if err == nil {
			answered = resp.StatusCode()
			if answered == fasthttp.StatusOK && isErrorBody(resp.Body()) {
				answered = bodyError(resp.Body()).status
			}
		}
		// The backend's verdict, as tryVersion gives one: a shadow may hold a half-open
		// backend's trial, which only a verdict decides, and a shadow version's backends that
		// fail its mirrors are ejected like any (then mirrors skip them instead of waiting).
		switch {
		case shared:
			// No verdict on a server the primary version uses: a shadow adapter that fails
			// would eject the server every client request goes to, and a shadow that
			// succeeds would reset the count of the primary's own failures. (PickShadow
			// never gives a mirror such a server's half-open trial.)
		case errors.Is(err, fasthttp.ErrNoFreeConns): // the gateway's cap, no verdict (see tryVersion)
		case err != nil || answered >= 500 || refusedCredentials(answered):
			hold.ReportFailure()
		case answered == fasthttp.StatusNotFound:
			// As tryVersion: no verdict on the server, but one that says it has no such model
			// is taken out of the shadow version's pool for that model only, which is true of
			// any version asking the server for it.
			g.noteModelMissing(hold, resp.Body(), g.backendError(resp))
		case answered == fasthttp.StatusForbidden:
			// No verdict, as tryVersion gives none: no ejection for what a request asked, and
			// a refusal is no success that passes a trial either.
		case answered != fasthttp.StatusTooManyRequests:
			hold.ReportSuccess()
		}
		hold.Release()
		end := time.Now()
		g.metrics.shadows.Inc()
		// The shadow version's own series, as for any version: its backend answered or not.
		status, in, out, cs, ce := 0, 0, 0, -1, -1
		if err == nil {
			status = resp.StatusCode()
			if answered == fasthttp.StatusOK {
				var us, ue int
				us, ue, cs, ce = jsonscan.FindPair(resp.Body(), "usage", "choices")
				if us >= 0 {
					in, out = usageFrom(resp.Body()[us:ue])
				}
			}
		}
		h.metrics.countStatus(status)
		h.metrics.upstream.Update(end.Sub(start).Seconds())
		// Both token series, as finish counts a client's request: per request and in total
		// (gen_ai_client_token_usage_sum is llmgate_tokens_total for every version).
		vm := h.metrics.version
		if in > 0 {
			vm.inputTokens.Update(float64(in))
			vm.inputTotal.Add(in)
		}
		if out > 0 {
			vm.outputTokens.Update(float64(out))
			vm.outputTotal.Add(out)
		}
		if vs == nil {
			return
		}
		var st requestStats
		var s drift.Sample
		s.Reset()
		s.At, s.Latency = end, end.Sub(start)
		s.PromptBytes, s.Script, s.Tools, s.Stream = promptBytes, script, tools, stream
		switch {
		case err != nil:
			s.Status = drift.StatusUpstreamError
			if isTimeout(err) {
				s.Status = drift.StatusTimeout
			}
		case answered == fasthttp.StatusOK:
			s.Status = drift.StatusOK
			body := resp.Body()
			if in > 0 {
				s.PromptTokens = int64(in)
			}
			if out > 0 {
				s.CompletionTokens = int64(out)
			}
			if cs >= 0 {
				st.noteChoices(body[cs:ce], false)
				s.FinishReason = st.finish
				s.Refusal = g.stats != nil && g.refusal(&st)
				if ag != nil {
					s.Safety, s.Entities = shadowGuardHits(ag, body[cs:ce])
				}
			}
		case answered >= 500 || refusedCredentials(answered) || answered == fasthttp.StatusForbidden ||
			answered == fasthttp.StatusNotFound:
			// A 403 too: stable was asked the same and the client got stable's answer, so a
			// shadow that refuses it (a key that may not use the model) fails what stable
			// serves; counted as the client's, a shadow refusing everything showed no errors.
			// A 404 too: the request names a model the gateway serves, so it is the shadow's
			// backend not serving it (as tryVersion reads a 404).
			s.Status = drift.StatusUpstreamError
		case answered == fasthttp.StatusTooManyRequests:
			// A shadow at its limit fails what stable served, as a 429 of a client's request
			// counts against its version (driftStatus): as a client error it left the
			// shadow's error rate at 0.
			s.Status = drift.StatusRateLimited
		default:
			s.Status = drift.StatusClientError
		}
		vs.observe(&s)
	}()
}

// shadowGuardHits runs the alias's completion guard detectors (detection only: nothing is sent)
// over a shadow answer's choices, as drift bits, so the shadow's guard hit rates compare with
// stable's.
func shadowGuardHits(ag *aliasGuard, choices []byte) (safety, entities uint16) {
	var p fastjson.Parser
	v, err := p.ParseBytes(choices)
	if err != nil {
		return 0, 0
	}
	arr, _ := v.Array()
	names := piiEntities
	for _, c := range arr {
		text := c.GetStringBytes("message", "content")
		if text == nil {
			text = c.GetStringBytes("text")
		}
		if ag.safety != nil {
			for _, m := range ag.safety.Check(nil, text) {
				safety |= safetyBit(m.Category)
			}
		}
		if ag.pii != nil {
			for _, f := range ag.pii.Find(nil, text) {
				for i, n := range names {
					if n == f.Entity && i < 16 {
						entities |= 1 << i
					}
				}
			}
		}
	}
	return safety, entities
}

// waitShadows waits for mirrors in flight, at most grace: a shadow answer is worth nothing
// after shutdown, and a hung shadow backend must not hold the gateway's exit.
func (g *Gateway) waitShadows(grace time.Duration) {
	done := make(chan struct{})
	go func() { g.shadowsWG.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		g.log.Warn("shutdown: shadow requests still in flight were abandoned")
	}
}

// withoutStreaming returns body without its stream and stream_options members, which makes it a
// request for a whole answer.
func withoutStreaming(body []byte) []byte {
	for _, key := range [...]string{"stream_options", "stream"} {
		if vs, ve := jsonscan.Find(body, key); vs >= 0 {
			body = appendWithoutMember(nil, body, key, vs, ve)
		}
	}
	return body
}

// replaceModel returns body with its model value set to model.
func replaceModel(body []byte, model string) []byte {
	s, e := jsonscan.Find(body, "model")
	if s < 0 {
		return body
	}
	out := make([]byte, 0, len(body)+len(model))
	out = append(out, body[:s]...)
	out = appendJSONString(out, model)
	return append(out, body[e:]...)
}
