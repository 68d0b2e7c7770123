// Package sse frames a server-sent-event stream into events with a carry-over buffer, so the
// gateway can inspect and forward each event as soon as its terminating blank line arrives.
package sse

import (
	"bytes"
	"errors"
	"io"
)

// ErrEventTooLarge is returned when one event exceeds the reader's limit; a backend sending
// that is broken, and buffering it without bound would let it exhaust memory.
var ErrEventTooLarge = errors.New("sse: event too large")

// Reader splits a stream into events. It is not safe for concurrent use.
type Reader struct {
	src        io.Reader
	buf        []byte
	start, end int // unread bytes are buf[start:end]
	scanned    int // bytes of buf[start:end] known to hold no terminator
	max        int
}

// NewReader returns a reader over src that refuses events larger than max bytes.
func NewReader(src io.Reader, max int) *Reader {
	return &Reader{src: src, buf: make([]byte, 4096), max: max}
}

// Reset makes r read from src, keeping its buffer.
func (r *Reader) Reset(src io.Reader) {
	r.src, r.start, r.end, r.scanned = src, 0, 0, 0
}

// Next returns the next event without its terminating blank line. The slice is valid until the
// next call. At the end of the stream it returns io.EOF; a final event without a terminator is
// returned first (backends that close right after the last event still count as complete).
func (r *Reader) Next() ([]byte, error) {
	for {
		if ev, ok := r.cut(); ok {
			return ev, nil
		}
		if r.start == r.end {
			r.start, r.end, r.scanned = 0, 0, 0
		}
		if r.end == len(r.buf) {
			if r.start > 0 {
				n := copy(r.buf, r.buf[r.start:r.end])
				r.start, r.end = 0, n
			} else {
				if len(r.buf) >= r.max {
					return nil, ErrEventTooLarge
				}
				nb := make([]byte, min(2*len(r.buf), r.max))
				r.end = copy(nb, r.buf[r.start:r.end])
				r.start, r.buf = 0, nb
			}
		}
		n, err := r.src.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			if n > 0 {
				if ev, ok := r.cut(); ok {
					return ev, nil
				}
			}
			if err == io.EOF {
				if ev := bytes.TrimSpace(r.buf[r.start:r.end]); len(ev) > 0 {
					r.start, r.scanned = r.end, 0
					return ev, nil
				}
			}
			return nil, err
		}
	}
}

// cut returns the first complete event in the buffer. Events end at a blank line: "\n\n",
// or "\r\n\r\n"; LF is what vLLM, Ollama and OpenAI send.
func (r *Reader) cut() ([]byte, bool) {
	for {
		data := r.buf[r.start:r.end]
		i := bytes.IndexByte(data[r.scanned:], '\n')
		if i < 0 {
			r.scanned = len(data)
			return nil, false
		}
		i += r.scanned
		// data[i] is '\n': a terminator if the line before it is empty.
		var evEnd int
		switch {
		case i >= 1 && data[i-1] == '\n':
			evEnd = i - 1
		case i >= 3 && data[i-1] == '\r' && data[i-2] == '\n' && data[i-3] == '\r':
			evEnd = i - 3
		default:
			r.scanned = i + 1
			continue
		}
		ev := data[:evEnd]
		r.start += i + 1
		r.scanned = 0
		if len(bytes.TrimSpace(ev)) == 0 {
			continue // stray blank lines between events
		}
		return ev, true
	}
}

// Data returns the payload of an event and whether it has one: the value of its "data:" line
// (the form every OpenAI-compatible backend sends), or of several such lines joined by "\n",
// as the SSE standard reads them. Other fields ("event:", "id:", "retry:") and comments are
// not payload; an event of only those has none. A one-line payload is a slice of ev; several
// lines are joined in buf, which Data returns for reuse.
func Data(ev, buf []byte) (data, newBuf []byte, ok bool) {
	if bytes.HasPrefix(ev, dataPrefix) && bytes.IndexByte(ev, '\n') < 0 {
		return dataValue(ev), buf, true // the usual event: one data line
	}
	buf = buf[:0]
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		line = bytes.TrimRight(line, "\r")
		if !bytes.HasPrefix(line, dataPrefix) {
			continue
		}
		if ok {
			buf = append(buf, '\n')
		}
		buf, ok = append(buf, dataValue(line)...), true
	}
	return buf, buf, ok
}

// dataValue returns the value of one "data:" line.
func dataValue(line []byte) []byte {
	d := line[len(dataPrefix):]
	if len(d) > 0 && d[0] == ' ' {
		d = d[1:]
	}
	return bytes.TrimRight(d, "\r")
}

// AppendEvent appends an event whose payload is data, ending with its blank line: one "data:"
// line per line of data, so a payload with newlines stays one event.
func AppendEvent(dst, data []byte) []byte {
	for {
		dst = append(dst, "data: "...)
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		dst = append(append(dst, data[:i]...), '\n')
		data = data[i+1:]
	}
	return append(append(dst, data...), "\n\n"...)
}

var dataPrefix = []byte("data:")

// IsDone reports whether the payload is the OpenAI end-of-stream marker.
func IsDone(data []byte) bool { return string(data) == "[DONE]" }

// Buffered reports whether a complete event is already buffered, so Next would return it
// without reading from the source. Callers use it to send events that arrived together in one
// write without ever waiting for one.
func (r *Reader) Buffered() bool {
	// Blank lines after an event are no event of their own: Next skips them and reads on. Seen
	// as one, they made the caller wait for the event after them with this one unsent.
	data := bytes.TrimLeft(r.buf[r.start:r.end], " \t\r\n")
	return bytes.Contains(data, lf2) || bytes.Contains(data, crlf2)
}

var (
	lf2   = []byte("\n\n")
	crlf2 = []byte("\r\n\r\n")
)
