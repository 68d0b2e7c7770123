package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/gateway/sse"
)

// maxEventBytes bounds one SSE event from a backend.
const maxEventBytes = 4 << 20

// forwardStream opens the backend stream, retrying like forwardBuffered until a backend answers
// 200, then hands the rest of the response to a stream writer that forwards event by event.
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
		// A backend that ignored stream:true answered in one piece; pass it on as it is.
		ctx.Response.SetBody(resp.Body())
		g.finish(r)
		return nil
	}
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// The backend is busy until the stream ends, not when its headers arrive: keep it counted
	// in flight so least-loaded picking sees streams. pumpStream releases it.
	r.backend.Acquire()
	ctx.SetBodyStreamWriter(r.pump)
	return nil
}

func isEventStream(resp *fasthttp.Response) bool {
	ct := resp.Header.ContentType()
	return len(ct) >= len("text/event-stream") && string(ct[:len("text/event-stream")]) == "text/event-stream"
}

// pumpStream copies the backend's events to the client, flushing after each. It runs after the
// handler returned, so it touches only r, never the RequestCtx. It ends the request: metrics,
// log and release.
func (g *Gateway) pumpStream(w *bufio.Writer, r *request) {
	resp := &r.upstreamResp
	body := resp.BodyStream()
	defer func() {
		// Closing before the end interrupts the backend connection at once (fasthttp closes
		// it instead of pooling a half-read one), which frees the GPU slot when the client left.
		_ = resp.CloseBodyStream()
		r.backend.Release()
		g.finish(r)
	}()
	if body == nil {
		return
	}
	if r.sseReader == nil {
		r.sseReader = sse.NewReader(body, maxEventBytes)
	} else {
		r.sseReader.Reset(body)
	}
	rd := r.sseReader
	sawDone := false
	var stripped []byte // an event rewritten without its usage member
	for {
		ev, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) && sawDone {
				return
			}
			e := errStreamBroken
			if isTimeout(err) {
				e = errIdleTimeout
			}
			r.errCode = e.code
			writeStreamError(w, e)
			return
		}
		data, ok := sse.Data(ev)
		if !ok {
			// Comments (keep-alive pings) and other fields pass through.
			if !writeEvent(w, ev) {
				r.errCode = "client_disconnected"
				return
			}
			continue
		}
		if sse.IsDone(data) {
			sawDone = true
			if !writeEvent(w, ev) {
				r.errCode = "client_disconnected"
			}
			continue
		}
		if s, _ := jsonscan.Find(data, "error"); s >= 0 {
			// A backend error after the stream started: one error event in OpenAI's shape.
			e := normalizeBackendError(fasthttp.StatusBadGateway, data, 0)
			r.errCode = e.code
			if r.errCode == "" {
				r.errCode = "upstream_error"
			}
			writeStreamError(w, e)
			return
		}
		now := time.Now()
		if r.firstEventAt.IsZero() {
			r.firstEventAt = now
		}
		r.lastEventAt = now
		if in, out := usageTokens(&r.parser, data); in > 0 || out > 0 {
			r.inputTokens, r.outputTokens = in, out
			if !r.clientUsage && isUsageOnlyChunk(data) {
				continue // the gateway asked for it; the client did not
			}
		} else {
			r.events++
			// Ollama puts a zero usage on every chunk once include_usage is on; the client did
			// not ask for usage, so it gets the chunk without it. (Contains first: it is
			// much cheaper than a scan, and usually false.)
			if !r.clientUsage && bytes.Contains(data, []byte(`"usage"`)) {
				if s, e := jsonscan.Find(data, "usage"); s >= 0 {
					stripped = appendWithoutMember(append(stripped[:0], "data: "...), data, "usage", s, e)
					ev = stripped
				}
			}
		}
		if !writeEvent(w, ev) {
			r.errCode = "client_disconnected"
			return
		}
	}
}

// isUsageOnlyChunk reports whether a chunk is the final usage chunk (empty choices).
func isUsageOnlyChunk(data []byte) bool {
	s, e := jsonscan.Find(data, "choices")
	return s < 0 || jsonscan.IsEmptyArray(data[s:e])
}

// writeEvent writes one event and flushes it; false means the client is gone.
func writeEvent(w *bufio.Writer, ev []byte) bool {
	_, _ = w.Write(ev)
	_, _ = w.WriteString("\n\n")
	return w.Flush() == nil
}

func writeStreamError(w *bufio.Writer, e *apiError) {
	var buf [512]byte
	b := append(buf[:0], "data: "...)
	b = appendErrorJSON(b, e)
	writeEvent(w, b)
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
