package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway/cache"
	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/gateway/sse"
	"github.com/llmgate/llmgate/guard"
	"github.com/llmgate/llmgate/router"
)

// maxEventBytes bounds one SSE event from a backend.
const maxEventBytes = 4 << 20

// forwardStream opens the backend stream, retrying like forwardBuffered until a backend answers
// 200 and its first event (tryVersion), then hands the response to a stream writer that
// forwards event by event, that first event first.
func (g *Gateway) forwardStream(ctx *fasthttp.RequestCtx, r *request, snap *snapshot) error {
	deadline := r.start.Add(g.cfg.Timeouts.Total)
	resp := &r.upstreamResp
	err := g.tryBackends(ctx, r, snap, func(h *backendHandles) error {
		return h.up.streaming.DoDeadline(&r.upstreamReq, resp, deadline)
	})
	if err != nil {
		return err
	}
	r.status = resp.StatusCode()
	copyResponseHeaders(ctx, resp)
	ctx.SetStatusCode(r.status)
	if !isEventStream(resp) {
		// A backend that ignored stream:true answered in one piece. The whole answer is in: the
		// backend is done with, whatever the guard makes of it.
		body := resp.Body() // not an error object with status 200: tryVersion took those
		r.hold.ReportSuccess()
		r.hold.Release()
		r.hold = router.Hold{}
		if sse := answerAsStream(r.op, r.status, body); sse != nil {
			// The client asked for events, and an SDK reading a stream finds none in a JSON
			// body (go-openai and openai-python end it empty, without an error): the answer
			// goes out as the stream a cached answer replays as, through the stream stages.
			r.cache.startRecording(r.op)
			g.startStream(ctx, r, &bytesSource{b: sse})
			return nil
		}
		// Anything else (not an answer the gateway can split) is passed on as it is, through
		// the completion guard as a buffered answer goes (an answer it cannot read is withheld).
		if r.status == fasthttp.StatusOK {
			var err error
			body, err = g.guardCompletion(r, body)
			setGuardHeader(ctx, r)
			if err != nil {
				return err
			}
		}
		ctx.Response.SetBody(body)
		g.finish(r)
		return nil
	}
	// The backend is busy until the stream ends, not when its headers arrive: r.hold keeps it
	// counted in flight so least-loaded picking sees streams. streamBody.end releases it.
	r.cache.startRecording(r.op)
	r.streamBody.resume(r)
	g.sendStream(ctx, r, true)
	return nil
}

// startStream sends the stream src (a cache replay or a coalesced leader's events) to the
// client through the stream stages, event by event.
func (g *Gateway) startStream(ctx *fasthttp.RequestCtx, r *request, src io.Reader) {
	r.streamBody.start(r, src)
	g.sendStream(ctx, r, false)
}

// sendStream sends the 200, its headers and then r.streamBody, whose source is set; firstIn
// says its first event is in already (awaitFirstEvent).
func (g *Gateway) sendStream(ctx *fasthttp.RequestCtx, r *request, firstIn bool) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	// Del first: Set replaces only the first of several lines copyResponseHeaders passed on.
	ctx.Response.Header.Del("Cache-Control")
	ctx.Response.Header.Del("X-Accel-Buffering")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	r.status = fasthttp.StatusOK
	r.startStreamGuard()
	if !ctx.Request.Header.IsHTTP11() {
		// HTTP/1.0 has no chunked coding: the stream goes out until the connection closes
		// (see untilClose and servePOST).
		r.untilClose = &untilClose{s: &r.streamBody}
		ctx.SetBodyStream(r.untilClose, -1)
		return
	}
	// fasthttp writes a chunk and flushes after every Read of a body stream of unknown size,
	// and streamBody.Read returns one event per call: one flush per event, no goroutine or
	// pipe per stream (SetBodyStreamWriter needs both).
	ctx.SetBodyStream(&r.streamBody, -1)
	// A backend's first event is in: the headers go out with it, in one write, unless the
	// completion guard may hold its text back. Otherwise (a replay, a follower, whose first
	// event may be a leader's prefill away) they go now: a long wait must not look like a dead
	// connection to the client or a load balancer.
	ctx.Response.ImmediateHeaderFlush = !firstIn || r.streamGuard.on
}

// untilClose is a stream to an HTTP/1.0 client, which knows no chunked coding (RFC 9112
// 7.1 is HTTP/1.1's): it goes out on the hijacked connection, without Content-Length or
// Transfer-Encoding, and ends when the gateway closes the connection (RFC 9112 6.3). fasthttp
// sends a body stream of unknown size chunked whatever the client's version. It is also the
// response's body stream, which fasthttp closes if it never runs the hijack handler; Close
// ends the request once.
type untilClose struct {
	s    *streamBody
	once sync.Once
	done func() // called once the stream is closed (Gateway.untilCloseWG)
}

func (u *untilClose) Read(p []byte) (int, error) { return u.s.Read(p) }

// Close closes the stream the first time only: the request is pooled once closed.
func (u *untilClose) Close() error {
	u.once.Do(func() {
		_ = u.s.Close()
		if u.done != nil {
			u.done()
		}
	})
	return nil
}

// sendUntilClose hands u's stream to an HTTP/1.0 client on the connection of ctx, hijacked:
// the response's headers, then each event as streamBody.Read returns it, one write (and so one
// flush) per event, within the server's write timeout for the whole stream. The handler must
// set nothing on the response after it. The server's shutdown does not wait for a hijacked
// connection: Close waits for g.untilCloseWG.
func (g *Gateway) sendUntilClose(ctx *fasthttp.RequestCtx, u *untilClose) {
	g.untilCloseWG.Add(1)
	u.done = g.untilCloseWG.Done
	writeTimeout := g.streamWriteTimeout()
	ctx.Response.Header.SetContentLength(-2)     // no Content-Length; Connection: close
	ctx.Response.Header.Del("Transfer-Encoding") // which -1 (SetBodyStream's) set and -2 leaves
	hdr := ctx.Response.Header.AppendBytes(nil)
	deadline := time.Now().Add(writeTimeout)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer u.Close()
		if c.SetWriteDeadline(deadline) != nil {
			return
		}
		if _, err := c.Write(hdr); err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := u.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return // the client is gone: Close ends the request as a disconnect
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// answerAsStream returns a whole chat or text completion, as a backend that ignored
// stream:true answers, as a complete SSE body (with its usage chunk, which the stream stage
// drops unless the client asked for it); nil when body is not such an answer.
func answerAsStream(op operation, status int, body []byte) []byte {
	if status != fasthttp.StatusOK || op == opEmbeddings {
		return nil
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil
	}
	choices := v.Get("choices")
	if choices == nil || choices.Type() != fastjson.TypeArray {
		return nil
	}
	n := len(choices.GetArray())                       // none ("choices": []) is an answer too: a stream of no text
	e, err := cache.NewAnswer(cache.Kind(op), body, n) // the backend's filter cut it: still an answer
	if err != nil {
		return nil
	}
	return e.AppendSSE(nil, cache.AppendID(nil, cache.Kind(op)), time.Now().Unix(), true)
}

// scanAnswer finds the members of a backend's 2xx answer that the gateway reads (into
// r.answer, for forwardBuffered), unless it is the event stream a stream request asked for,
// and returns the error object the backend answered with status 200 as the gateway's error,
// with the status its type has (a server that failed after it chose its status, or that never
// sets one); nil for an answer. Passed on as a 200, the SDKs read an error object as an answer
// without choices, or an empty stream, and raised nothing.
func (r *request) scanAnswer(resp *fasthttp.Response) *apiError {
	if r.stream && isEventStream(resp) {
		return nil
	}
	body := resp.Body()
	jsonscan.FindEach(body, answerMembers, r.answer[:])
	if resp.StatusCode() != fasthttp.StatusOK || !isErrorSpans(body, r.answer[2], r.answer[3]) {
		return nil
	}
	return bodyError(body)
}

// bodyError returns the error object body (a backend's answer with status 200) as the
// gateway's error, with the status its type has: 400 for the request's fault, 429 for a rate
// limit, 502 for a server error.
func bodyError(body []byte) *apiError {
	e := normalizeBackendError(fasthttp.StatusBadGateway, body, 0)
	e.status = statusForType(e.typ)
	e = finishBackendError(e) // a rate limit's code, for its 429
	switch {
	case e.code == "insufficient_quota" || e.typ == "insufficient_quota":
		e.retry = retryNo // waiting does not help (see backendError)
	case e.status == fasthttp.StatusTooManyRequests:
		e.retryAfter = 1
		e.retry = retryYes
	case backendAtFault(e):
		e.retry = retryUnlessRetried
	}
	return e
}

// isErrorBody reports whether a backend's JSON body is an error object: a top-level "error"
// member that is not null (OpenAI, vLLM, Ollama), or the flat {"object":"error",...} of older
// vLLM.
func isErrorBody(body []byte) bool {
	var m [2]jsonscan.Span
	jsonscan.FindEach(body, errorMembers, m[:])
	return isErrorSpans(body, m[0], m[1])
}

// isErrorSpans is isErrorBody from the spans of body's "error" and "object" members.
func isErrorSpans(body []byte, errSpan, objSpan jsonscan.Span) bool {
	return errSpan.Start >= 0 && string(body[errSpan.Start:errSpan.End]) != "null" ||
		objSpan.Start >= 0 && string(body[objSpan.Start:objSpan.End]) == `"error"`
}

// The members of a backend's JSON answer the gateway reads: errorMembers to tell an error
// object, answerMembers a buffered answer's, in the order of forwardBuffered's spans.
var (
	errorMembers  = []string{"error", "object"}
	answerMembers = []string{"usage", "choices", "error", "object"}
)

func isEventStream(resp *fasthttp.Response) bool {
	ct := resp.Header.ContentType()
	return len(ct) >= len("text/event-stream") && string(ct[:len("text/event-stream")]) == "text/event-stream"
}

// streamBody is the client's view of a backend stream: each Read returns the next event to
// send (ending in a blank line), after the gateway looked at it, and io.EOF after the last.
// fasthttp calls Close when the response is done or the client is gone; Close ends the request
// (metrics, log, release), so it must be the last use of the request.
type streamBody struct {
	r         *request
	out       []byte // bytes of the current event not yet read by fasthttp
	buf       []byte // holds a rewritten event
	dataBuf   []byte // holds the payload of an event of several data lines
	stripped  []byte // holds a chunk without its usage member
	lastChunk []byte // the last chunk the stream guard saw: the shape of a chunk that releases its held text
	sawDone   bool
	ended     bool // the stream is over; the next Read returns io.EOF
	// hasFirst: first, read from the backend before the 200 (awaitFirstEvent) at firstAt, is
	// the next event; it is a slice of r.sseReader's buffer, valid until its next read.
	hasFirst bool
	first    []byte
	firstAt  time.Time
	// chunkScan skips the members that every chunk of a stream repeats before its choices.
	chunkScan jsonscan.Resume
}

func (s *streamBody) start(r *request, body io.Reader) {
	s.r, s.out, s.sawDone, s.ended = r, nil, false, false
	s.hasFirst, s.first = false, nil
	if body == nil {
		s.ended = true
		return
	}
	r.readEvents(body)
}

// resume starts the stream of the backend whose first event awaitFirstEvent read.
func (s *streamBody) resume(r *request) {
	s.r, s.out, s.sawDone, s.ended = r, nil, false, false
}

// readEvents makes r.sseReader read body.
func (r *request) readEvents(body io.Reader) {
	if r.sseReader == nil {
		r.sseReader = sse.NewReader(body, maxEventBytes)
	} else {
		r.sseReader.Reset(body)
	}
}

// awaitFirstEvent reads the first event of the backend stream resp, before the client has
// anything: vLLM answers 200 and its headers at once and its first event after the prefill, and
// a backend that fails in between (an error event, a cut, no event within timeouts.first_byte)
// can still be retried on another, as a 5xx would be. It returns nil when the event arrived
// (streamBody.next takes it first). Otherwise it returns the error the client gets if no other
// backend answers, and, for a failed read (the backend's failure, as a transport error is), that
// read's error; for an error event, what its type says, with the status its type has before a
// 200 (400 for the request's fault, 429 for a rate limit, 502 for a server error).
func (r *request) awaitFirstEvent(resp *fasthttp.Response) (e *apiError, readErr error) {
	s := &r.streamBody
	s.hasFirst, s.first = false, nil
	r.readEvents(resp.BodyStream())
	ev, err := r.sseReader.Next()
	if err != nil {
		switch {
		case !isTimeout(err):
			e = errUpstreamFailed // a cut, or no event at all
		case time.Since(r.start) >= r.gw.cfg.Timeouts.Total:
			e = errUpstreamTimeout // as a buffered request's past timeouts.total
		default:
			e = errFirstEventTimeout
		}
		return e, err
	}
	data, buf, ok := sse.Data(ev, s.dataBuf)
	s.dataBuf = buf
	// The raw key must be there for jsonscan to find it: a chunk without it takes no scan.
	if ok && bytes.Contains(data, []byte(`"error"`)) && hasErrorMember(data) {
		return firstEventError(data), nil
	}
	s.hasFirst, s.first, s.firstAt = true, ev, time.Now()
	return nil, nil
}

// firstEventError is a backend's error event before any other as the error a response before
// the 200 carries: the status its type has, and x-should-retry as backendError gives it.
func firstEventError(data []byte) *apiError {
	e := normalizeBackendError(fasthttp.StatusBadGateway, data, 0)
	e.status = statusForType(e.typ)
	e = finishBackendError(e)
	switch {
	case e.status == fasthttp.StatusTooManyRequests && e.code == "insufficient_quota":
		e.retry = retryNo
	case e.status == fasthttp.StatusTooManyRequests:
		e.retryAfter, e.retry = 1, retryYes
	case e.status >= 500:
		e.retry = retryUnlessRetried
	}
	return e
}

func (s *streamBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(s.out) == 0 {
			// Wait for the next event only when nothing is ready to send; events that
			// arrived together go out in one write.
			if s.ended {
				break
			}
			if s.out = s.next(n == 0); len(s.out) == 0 {
				break
			}
		}
		c := copy(p[n:], s.out)
		s.out = s.out[c:]
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// next reads backend events until one is to be sent to the client and returns it with its
// terminating blank line; nil when the stream is over, or, with wait false, when no complete
// event is buffered.
func (s *streamBody) next(wait bool) []byte {
	r := s.r
	for {
		if !wait && !s.hasFirst && !r.sseReader.Buffered() {
			return nil
		}
		ev, at, err := s.nextEvent(r)
		if err != nil {
			s.ended = true
			if errors.Is(err, io.EOF) && s.sawDone {
				return nil
			}
			e := r.streamReadError(err)
			if e != errTotalTimeout && e != errShutdownCut {
				// Cut or stalled by the backend (the client leaving never reads here): a
				// broken stream of the backend, which ejects it when many of its streams
				// break (router.Hold.ReportStreamFailure). The request's own total timeout,
				// or the gateway's shutdown, is not the backend's fault.
				r.hold.ReportStreamFailure()
			}
			r.errCode = e.code
			return s.failWith(e)
		}
		data, buf, ok := sse.Data(ev, s.dataBuf)
		s.dataBuf = buf
		if !ok {
			return s.event(ev) // comments (keep-alive pings) and events of other fields only pass through
		}
		r.cache.record(data) // 8. the backend's own events, for the cache and coalesced followers
		if sse.IsDone(data) {
			s.sawDone = true
			if held := s.heldChunk(); len(held) > 0 {
				// The stream ended without a finish_reason for some choice: what its guard
				// still holds goes out before [DONE].
				s.buf = sse.AppendEvent(s.buf[:0], held)
				r.noteSent(time.Now())
				if r.streamGuard.stopped { // what it held completed a blocked phrase
					r.errCode = errCompletionFiltered.code
					s.ended = true
					return s.appendError(r.completionStopped())
				}
				s.buf = append(append(s.buf, ev...), "\n\n"...)
				return s.buf
			}
			return s.event(ev)
		}
		var m [3]jsonscan.Span // one pass per chunk for every member read here
		jsonscan.FindEachResume(data, chunkMembers, m[:], &s.chunkScan)
		if m[0].Start >= 0 && string(data[m[0].Start:m[0].End]) != "null" {
			// A backend error after the stream started: one error event in OpenAI's shape.
			// ("error": null is none, as the SDKs read it.)
			e := normalizeBackendError(fasthttp.StatusBadGateway, data, 0)
			if backendAtFault(e) {
				r.hold.ReportStreamFailure()
			}
			r.eventStatus = statusForType(e.typ)
			r.errCode = errorCode(r.eventStatus, e.typ, e.code)
			s.ended = true
			return s.failWith(e)
		}
		if b := r.hold.Backend(); b != nil && b.Kind == config.KindOllama && bytes.Contains(data, ollamaErrorModel) {
			// Ollama's OpenAI layer turns an error after the stream started into an empty
			// chunk of a model named "", then ends the stream without [DONE]. The chunk says
			// nothing true: the client gets the gateway's one error event in its place.
			continue
		}
		now := at
		if now.IsZero() {
			now = time.Now()
		}
		if r.firstEventAt.IsZero() {
			r.firstEventAt = now
			r.hold.StreamStarted() // the backend answers: a half-open trial need not last the stream
		}
		us, ue, cs, ce := m[1].Start, m[1].End, m[2].Start, m[2].End
		in, out := 0, 0
		if us >= 0 {
			in, out = usageFrom(data[us:ue])
		}
		if in > 0 || out > 0 {
			r.inputTokens, r.outputTokens = in, out
			if cs < 0 || jsonscan.IsEmptyArray(data[cs:ce]) {
				if !r.clientUsage {
					continue // the usage-only chunk: the gateway asked for it; the client did not
				}
				return s.event(ev)
			}
			// Usage beside choices (vLLM's continuous_usage_stats, or on the last chunk): the
			// choices are guarded like any other chunk's.
		}
		tokens := false // the chunk carries generated content
		if cs >= 0 {
			choices := data[cs:ce]
			// Nearly every chunk is one choice of text, which textChoice reads at once; the
			// others take carriesTokens' and noteChoices' scans.
			text, reasoning, plain := textChoice(choices)
			if tokens = plain && len(text) > 0 || !plain && carriesTokens(choices); tokens {
				// Only chunks with generated content time the tokens: the chunk that opens the
				// answer with its role and the one that closes it with finish_reason carry none.
				if r.tokenEvents == 0 {
					r.firstTokenAt = now
				}
				r.lastTokenAt = now
				r.tokenEvents++
			}
			if r.stats.vs != nil {
				if plain {
					if !reasoning { // the head is the answer's start, not the model's thinking
						r.stats.appendHead(text)
					}
				} else {
					r.stats.noteChoices(choices, true)
				}
			}
		}
		changed := false
		// Ollama puts a zero usage on every completions chunk once include_usage is on. A client
		// that did not ask for usage gets the chunk without it; one that did gets it on the
		// last chunk only, as OpenAI sends it: a client that reads the first usage it sees
		// (or each one) would count no tokens.
		if us >= 0 && (!r.clientUsage || in == 0 && out == 0 && cs >= 0 && string(data[us:ue]) != "null") {
			s.stripped = appendWithoutMember(s.stripped[:0], data, "usage", us, ue)
			data, changed = s.stripped, true
		}
		if r.streamGuard.on {
			s.lastChunk = append(s.lastChunk[:0], data...)
			plain := jsonscan.Span{Start: -1, End: -1} // the choices of a chunk guardTextChunk may take
			if !changed && cs >= 0 && (us < 0 || string(data[us:ue]) == "null") {
				plain = jsonscan.Span{Start: cs, End: ce}
			}
			data, changed = r.gw.guardChunk(r, data, plain), true // 7. guard the completion as it flows
			if data == nil && r.streamGuard.broken == nil {
				continue // all its text is held back, and it carries nothing else
			}
			if e := r.streamGuard.broken; e != nil {
				// A choice index the guard cannot track, or an event it cannot read: end the
				// stream rather than let its text through unguarded.
				r.errCode = e.code
				s.ended = true
				return s.errorEvent(e)
			}
		}
		switch {
		case !r.streamGuard.on:
			if tokens {
				r.noteSent(now)
			}
		case r.firstSentAt.IsZero() && chunkCarriesTokens(data):
			// What the guard let through of the chunk (its text, or text it held before):
			// read only until the first token is out.
			r.noteSent(now)
		}
		if !changed {
			return s.event(ev)
		}
		s.buf = sse.AppendEvent(s.buf[:0], data)
		if r.streamGuard.stopped {
			// The safety filter stopped the completion: the chunk above ends it with
			// finish_reason content_filter, then one error event, then nothing.
			r.errCode = errCompletionFiltered.code
			s.ended = true
			s.buf = append(s.buf, "data: "...)
			s.buf = appendErrorJSON(s.buf, r.completionStopped())
			s.buf = append(s.buf, "\n\n"...)
		}
		return s.buf
	}
}

// nextEvent returns the backend's next event: the one awaitFirstEvent read, with when it
// arrived, or the next one from r.sseReader (at zero: it arrived just now).
func (s *streamBody) nextEvent(r *request) (ev []byte, at time.Time, err error) {
	if s.hasFirst {
		ev, at = s.first, s.firstAt
		s.hasFirst, s.first = false, nil
		return ev, at, nil
	}
	ev, err = r.sseReader.Next()
	return ev, time.Time{}, err
}

// streamReadError tells why reading a backend stream failed before its [DONE]: the request's
// own total timeout (errTotalTimeout, not the backend's fault), no first event within
// timeouts.first_byte (vLLM sends a stream's headers before its prefill), a stall past
// timeouts.idle, or a cut: the backend's, or the gateway's own when its shutdown grace is
// over (errShutdownCut; Gateway.cut closed the backend connection).
func (r *request) streamReadError(err error) *apiError {
	switch {
	case r.gw != nil && r.gw.cutting.Load(): // (unit tests read streams without a gateway)
		return errShutdownCut
	case !isTimeout(err):
		return errStreamBroken
	case time.Since(r.start) >= r.gw.cfg.Timeouts.Total:
		return errTotalTimeout
	case r.firstEventAt.IsZero():
		return errFirstEventTimeout
	}
	return errIdleTimeout
}

// ollamaErrorModel marks the chunk Ollama sends in place of an error in a stream: its own
// chunks always name their model. A quote inside a JSON string is escaped, so these bytes
// cannot come from the generated text.
var ollamaErrorModel = []byte(`"model":""`)

// chunkMembers are the members of a stream chunk the gateway reads, in the order of next's spans.
var chunkMembers = []string{"error", "usage", "choices"}

// event returns ev with its blank line. The SSE reader's buffer holds ev followed by the
// terminator it cut, but not always as "\n\n" (CRLF), so the terminator is written anew.
func (s *streamBody) event(ev []byte) []byte {
	s.buf = append(append(s.buf[:0], ev...), "\n\n"...)
	return s.buf
}

// failWith ends a stream the backend broke off (or ended with an error event) with one error
// event, after a chunk with the text the stream guard still held back: text the backend sent
// reaches the client, guarded, before the error, as it would have without the guard.
func (s *streamBody) failWith(e *apiError) []byte {
	s.ended = true
	held := s.heldChunk()
	s.buf = s.buf[:0]
	if len(held) > 0 {
		s.buf = sse.AppendEvent(s.buf, held)
		s.r.noteSent(time.Now())
	}
	return s.appendError(e)
}

// noteSent records at as when the client got its first generated token, unless it got one
// before.
func (r *request) noteSent(at time.Time) {
	if r.firstSentAt.IsZero() {
		r.firstSentAt = at
	}
}

// chunkCarriesTokens reports whether the stream chunk data carries generated content.
func chunkCarriesTokens(data []byte) bool {
	cs, ce := jsonscan.Find(data, "choices")
	return cs >= 0 && carriesTokens(data[cs:ce])
}

// heldChunk returns a chunk with what the stream guard still holds back (see
// Gateway.heldChunk); nil when it holds nothing or is off, stopped or broken.
func (s *streamBody) heldChunk() []byte {
	r := s.r
	if !r.streamGuard.on || r.streamGuard.stopped || r.streamGuard.broken != nil || len(s.lastChunk) == 0 {
		return nil
	}
	return r.gw.heldChunk(r, s.lastChunk)
}

func (s *streamBody) errorEvent(e *apiError) []byte {
	s.buf = s.buf[:0]
	return s.appendError(e)
}

func (s *streamBody) appendError(e *apiError) []byte {
	s.buf = append(s.buf, "data: "...)
	s.buf = appendErrorJSON(s.buf, e)
	s.buf = append(s.buf, "\n\n"...)
	return s.buf
}

// Close ends the stream: it closes the backend stream (before its end this interrupts the
// backend connection, which frees the GPU slot when the client left) and finishes the request.
func (s *streamBody) Close() error {
	r := s.r
	s.r, s.out = nil, nil
	if !s.ended && r.errCode == "" {
		r.errCode = "client_disconnected"
		if f := r.cache.flight; f != nil && r.sseReader != nil && !f.EndUnfollowed() {
			// Requests coalesced on this one are reading its events: the backend's answer goes
			// on for them (and for the cache) without this client. One user pressing stop must
			// not cut the answer of everyone who asked the same. EndUnfollowed checks and ends
			// the flight as one step: checked here and failed later (in reset), a stream that
			// joined in between got the answer so far, then an error.
			go s.finishForFollowers(r)
			return nil
		}
	}
	s.end(r, s.ended && s.sawDone && r.errCode == "")
	return nil
}

// finishForFollowers reads the rest of the backend stream of a request whose client left, for
// the requests that follow its flight, then ends the request. It runs on its own goroutine,
// after fasthttp is done with the client's connection, and touches no RequestCtx.
func (s *streamBody) finishForFollowers(r *request) {
	complete := s.sawDone
	for !complete {
		ev, _, err := s.nextEvent(r)
		if err != nil {
			if e := r.streamReadError(err); e != errTotalTimeout && e != errShutdownCut {
				// The backend cut or stalled the stream; the request's own total timeout is
				// not its fault, as in next.
				r.hold.ReportStreamFailure()
			}
			break
		}
		data, buf, ok := sse.Data(ev, s.dataBuf)
		s.dataBuf = buf
		if !ok {
			continue
		}
		r.cache.record(data) // an error event too: followers end with the backend's error, as with the leader there
		if hasErrorMember(data) {
			if backendAtFault(normalizeBackendError(fasthttp.StatusBadGateway, data, 0)) {
				r.hold.ReportStreamFailure()
			}
			break
		}
		complete = sse.IsDone(data)
	}
	s.end(r, complete)
}

// end closes the backend stream (before its end this interrupts the backend connection, which
// frees the GPU slot when the client left), ends the flight and the cache recording (stored
// when complete) and finishes the request.
func (s *streamBody) end(r *request, complete bool) {
	_ = r.upstreamResp.CloseBodyStream()
	if complete {
		// The stream ran to [DONE]: the backend's success. A stream the backend broke was
		// reported where it broke; one the client left, or the gateway's guard stopped, says
		// nothing of the backend either way.
		r.hold.ReportStreamSuccess()
	}
	r.hold.Release() // the zero Hold for cache replays and coalesced followers
	r.hold = router.Hold{}
	if r.streamGuard.on && r.guard.ag.piiComplete {
		// What the leak scanners found over the whole stream, counted as a buffered answer's
		// is (the headers are gone: the log line shows it).
		r.gw.countPII(r, guard.Completion)
	}
	r.gw.endStream(r, complete)
	r.gw.finish(r)
}

// appendWithoutMember appends the JSON object obj without its top-level member key, whose value
// spans obj[vs:ve] (from jsonscan.Find, so the key is written without escapes).
func appendWithoutMember(dst, obj []byte, key string, vs, ve int) []byte {
	ks := bytes.LastIndex(obj[:vs], []byte(`"`+key+`"`)) // only ':' and spaces lie between
	i := ks - 1
	for i >= 0 && isJSONSpace(obj[i]) {
		i--
	}
	if i >= 0 && obj[i] == ',' {
		dst = append(dst, obj[:i]...)
		return append(dst, obj[ve:]...)
	}
	// The first member: drop the comma after it instead.
	j := ve
	for j < len(obj) && isJSONSpace(obj[j]) {
		j++
	}
	if j < len(obj) && obj[j] == ',' {
		j++
	}
	dst = append(dst, obj[:ks]...)
	return append(dst, obj[j:]...)
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// backendAtFault reports whether an error event a backend sent mid-stream is the backend's
// failure, as a 5xx before the headers would have been: a server error (vLLM's
// InternalServerError with code 500, an engine that died; Ollama's runner that terminated),
// or one the backend did not type. An error it types as the request's fault (vLLM's
// BadRequestError) or as a rate limit says nothing of its health.
func backendAtFault(e *apiError) bool { return e.typ == typeServer }

// statusForType is the HTTP status an error of OpenAI type typ has, as the gateway answers it
// before a stream's 200 (typeForStatus read backwards); a type it does not know is a failure
// of the backend, 502.
func statusForType(typ string) int {
	switch typ {
	case typeInvalidRequest:
		return fasthttp.StatusBadRequest
	case typePermission:
		return fasthttp.StatusForbidden
	case typeRateLimit, "insufficient_quota":
		return fasthttp.StatusTooManyRequests
	}
	return fasthttp.StatusBadGateway
}
