package fakellm

import (
	"bufio"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// stream is the state of one SSE response. It outlives the request handler:
// the stream writer (or hijack handler) owns it and releases it when done.
type stream struct {
	s         *Server
	rep       reply
	id        []byte // backing store for rep.id
	ttft      time.Duration
	cutAfter  int     // drop the connection after this many content events; -1: never
	errAfter  int     // send an error event after this many content events; -1: never
	contents  int     // content events sent so far
	ws        []words // per-choice generators (vLLM n)
	prompts   []input // backing store for rep.prompts
	texts     []byte  // backing store for the prompts' text
	buf       []byte
	frame     []byte
	rawHeader []byte // response header for hijacked (disconnecting) streams
}

var streamPool sync.Pool

func (s *Server) acquireStream() *stream {
	st, _ := streamPool.Get().(*stream)
	if st == nil {
		st = &stream{}
	}
	st.s = s
	st.contents = 0
	return st
}

func releaseStream(st *stream) {
	st.s = nil
	st.rep = reply{}
	streamPool.Put(st)
}

func headerInt(ctx *fasthttp.RequestCtx, name []byte) int {
	v := ctx.Request.Header.PeekCanonical(name)
	if len(v) == 0 {
		return -1
	}
	n, err := fasthttp.ParseUint(v)
	if err != nil {
		return -1
	}
	return n
}

// startStream hands the generation in r to a stream writer. Streams that
// must be cut hijack the connection instead: fasthttp's stream writer always
// ends the chunked body cleanly, and a real backend crash does not.
func (s *Server) startStream(ctx *fasthttp.RequestCtx, r *request, ttft time.Duration) {
	st := s.acquireStream()
	st.id = append(st.id[:0], r.rep.id...)
	st.rep = r.rep
	st.rep.id = st.id
	st.prompts = append(st.prompts[:0], r.rep.prompts...)
	st.rep.prompts = st.prompts
	// The prompts' text is the request's, whose memory is reused once the handler returns.
	st.texts = st.texts[:0]
	for _, in := range st.prompts {
		st.texts = append(st.texts, in.text...)
	}
	off := 0
	for i := range st.prompts {
		n := len(st.prompts[i].text)
		st.prompts[i].text = st.texts[off : off+n : off+n]
		off += n
	}
	st.ttft = ttft
	st.cutAfter = headerInt(ctx, hdrDisconnect)
	st.errAfter = headerInt(ctx, hdrStreamErr)
	if st.cutAfter < 0 && s.chance(s.opts.DisconnectRate) {
		st.cutAfter = st.rep.completionTokens() / 2
	}
	if s.ollama && st.errAfter == 0 {
		// Ollama's streamResponse (server/routes.go) answers an error before
		// any content as a plain error response: nothing was written yet.
		releaseStream(st)
		if !s.sleep(ttft) {
			s.writeError(ctx, fasthttp.StatusServiceUnavailable, "", "fakellm: shutting down", "")
			return
		}
		s.writeError(ctx, fasthttp.StatusInternalServerError, "", "fakellm: injected stream error", "")
		return
	}
	if s.ollama {
		ctx.SetContentType("text/event-stream")
	} else {
		// Starlette appends the charset to text/* media types.
		ctx.SetContentType("text/event-stream; charset=utf-8")
	}
	if st.cutAfter < 0 {
		// vLLM returns a StreamingResponse before the engine's first output, and
		// Starlette sends the 200 and headers before iterating it: they reach
		// the client at once, before prefill. Ollama's writer sends them with
		// its first chunk (gin writes headers on the first Write).
		ctx.Response.ImmediateHeaderFlush = !s.ollama
		ctx.SetBodyStreamWriter(st.writeTo)
		return
	}
	ctx.Response.Header.SetContentLength(-1)
	ctx.Response.Header.SetConnectionClose()
	st.rawHeader = ctx.Response.Header.AppendBytes(st.rawHeader[:0])
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(st.hijacked)
}

// writeTo is the fasthttp stream writer: one Flush per event, and a failed
// Flush means the client is gone.
func (st *stream) writeTo(w *bufio.Writer) {
	done := st.run(func(ev []byte) bool {
		if _, err := w.Write(ev); err != nil {
			return false
		}
		return w.Flush() == nil
	})
	st.finish(done)
}

func (st *stream) finish(completed bool) {
	if f := st.s.streamEnd; f != nil {
		f(st.contents, completed)
	}
	releaseStream(st)
}

// hijacked writes the response by hand as chunked encoding and, when the
// stream is cut, returns without the terminating chunk; fasthttp then closes
// the connection, so the client sees a truncated body.
func (st *stream) hijacked(c net.Conn) {
	st.frame = st.frame[:0]
	if !st.s.ollama { // headers at once, as in startStream
		if _, err := c.Write(st.rawHeader); err != nil {
			st.finish(false)
			return
		}
	} else {
		st.frame = append(st.frame, st.rawHeader...) // with the first event
	}
	done := st.run(func(ev []byte) bool {
		st.frame = strconv.AppendInt(st.frame, int64(len(ev)), 16)
		st.frame = append(st.frame, "\r\n"...)
		st.frame = append(st.frame, ev...)
		st.frame = append(st.frame, "\r\n"...)
		_, err := c.Write(st.frame)
		st.frame = st.frame[:0]
		return err == nil
	})
	if done {
		_, _ = c.Write([]byte("0\r\n\r\n"))
	}
	st.finish(done)
}

// run emits the event sequence of the flavor, sleeping to simulate prefill
// and decode. It reports whether the stream reached [DONE].
func (st *stream) run(emit func([]byte) bool) bool {
	s, p := st.s, &st.rep
	send := func(k evKind) bool {
		st.buf = append(st.buf[:0], "data: "...)
		if s.ollama {
			st.buf = ollamaEvent(st.buf, p, k)
		} else {
			st.buf = s.vllmEvent(st.buf, p, k)
		}
		st.buf = append(st.buf, "\n\n"...)
		return emit(st.buf)
	}
	if !s.sleep(st.ttft) {
		return false
	}
	// A failure before the first token comes before vLLM's role chunks: its
	// stream generator sends them on the engine's first output.
	if st.interrupt(emit) {
		return false
	}
	// vLLM sends the role chunks (one per choice) in the same engine step as
	// the first token.
	if !s.ollama && p.ep == epChat {
		for c := 0; c < p.choices; c++ {
			p.idx, p.done = c, 0
			if !send(evRole) {
				return false
			}
		}
	}
	// vLLM streams each choice in chunks of its own, carrying its index; the
	// choices of one request decode in the same engine steps.
	st.ws = st.ws[:0]
	for c := 0; c < p.choices; c++ {
		st.ws = append(st.ws, p.words(c))
	}
	// vLLM delivers a length-capped last token together with finish_reason;
	// after a natural stop the finish chunk carries the (empty) EOS text.
	// Ollama always ends with a separate, empty done chunk.
	lastCarriesFinish := !s.ollama && p.finish == "length" && p.n > 0
	for i := 0; i < p.n; i++ {
		if i > 0 && !s.sleep(s.itl) {
			return false
		}
		k := evToken
		if lastCarriesFinish && i == p.n-1 {
			k = evFinishToken
		}
		for c := range st.ws {
			p.idx, p.w, p.done = c, st.ws[c], i+1
			ok := send(k)
			st.ws[c] = p.w
			if !ok {
				return false
			}
			st.contents++
			if st.interrupt(emit) {
				return false
			}
		}
	}
	if !lastCarriesFinish {
		if p.n > 0 && !s.sleep(s.itl) {
			return false
		}
		for c := 0; c < p.choices; c++ {
			p.idx, p.done = c, p.generated() // vLLM: the EOS token
			if !send(evFinish) {
				return false
			}
		}
	}
	if p.usage && !send(evUsage) {
		return false
	}
	return emit([]byte("data: [DONE]\n\n"))
}

// interrupt applies the disconnect and stream-error controls once
// st.contents content events are out; it reports whether to stop.
func (st *stream) interrupt(emit func([]byte) bool) bool {
	if st.contents == st.cutAfter {
		return true
	}
	if st.contents != st.errAfter {
		return false
	}
	st.buf = append(st.buf[:0], "data: "...)
	if st.s.ollama {
		st.buf = ollamaBrokenChunk(st.buf, &st.rep)
		st.buf = append(st.buf, "\n\n"...)
		emit(st.buf) // then the body ends, without [DONE]
		return true
	}
	st.buf = vllmStreamError(st.buf, "fakellm: injected stream error")
	st.buf = append(st.buf, "\n\n"...)
	// vLLM's generators always finish with [DONE], even after an error event.
	if emit(st.buf) {
		emit([]byte("data: [DONE]\n\n"))
	}
	return true
}
