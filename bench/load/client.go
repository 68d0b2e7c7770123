package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Target is one endpoint under test: a name for reports and the base URL of an
// OpenAI-compatible API (with or without a trailing /v1).
type Target struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Model, when set, replaces --model in this target's requests: a backend serves
	// "meta-llama/Llama-3.1-8B-Instruct" where the gateway in front of it calls it "chat".
	Model string `json:"model,omitempty"`
}

// endpoint is a parsed Target.
type endpoint struct {
	addr  string // host:port to dial
	tls   bool
	base  string // scheme://host[:port][/prefix], without a trailing /v1
	path  string // the /prefix of base, or ""
	query string // "?" and the URL's query, sent with every request, or ""
}

func parseTarget(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return endpoint{}, fmt.Errorf("%q is not an http(s)://host:port URL", raw)
	}
	if u.User != nil {
		// Not turned into a header: the URL is written to the report, credentials and all.
		return endpoint{}, fmt.Errorf("%s: a user or password in the URL is not supported (the report would show it); use --header \"Authorization: ...\"", u.Redacted())
	}
	e := endpoint{addr: u.Host, tls: u.Scheme == "https"}
	if u.Port() == "" {
		port := "80"
		if e.tls {
			port = "443"
		}
		e.addr = net.JoinHostPort(u.Hostname(), port)
	}
	path := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1")
	e.base, e.path = u.Scheme+"://"+u.Host+path, path
	if u.RawQuery != "" {
		e.query = "?" + u.RawQuery
	}
	return e, nil
}

// maxIdleConn is how long a connection may wait unused before the client closes it: less than
// the shortest keep-alive timeout that servers commonly default to (5 s: uvicorn, which serves
// vLLM, and Node.js), so that no request goes out on a connection that the target has closed
// meanwhile, which fails it as closed though the target did nothing wrong. A variable for tests.
var maxIdleConn = 4 * time.Second

// newClient returns a HostClient for e that never makes a request wait for a connection.
// Its connections are added to cut, when not nil, so that an interrupt can end the requests
// in flight.
func newClient(e endpoint, conns int, timeout time.Duration, cut *connSet) *fasthttp.HostClient {
	dial := func(addr string) (net.Conn, error) {
		return fasthttp.DialDualStackTimeout(addr, min(timeout, 10*time.Second)) // IPv6 targets too
	}
	if cut != nil {
		dial = cut.dial(dial)
	}
	return &fasthttp.HostClient{
		Addr:                          e.addr,
		IsTLS:                         e.tls,
		Name:                          "llmgate-bench",
		MaxConns:                      conns + 16,
		MaxIdleConnDuration:           maxIdleConn,
		ConnPoolStrategy:              fasthttp.LIFO, // the busy connections stay warm, the rest idle out
		StreamResponseBody:            true,          // all bodies, so that TTFB is when headers arrive
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		ReadBufferSize:                16 << 10,
		WriteBufferSize:               16 << 10,
		Dial:                          dial,
	}
}

// connSet holds a client's open connections. fasthttp's requests take no context: closing
// their connections is how an interrupted run stops waiting for a target that hangs.
type connSet struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

type trackedConn struct {
	net.Conn
	set *connSet
}

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// errCut is the error of a dial after closeAll.
var errCut = errors.New("run interrupted")

func (s *connSet) dial(dial func(string) (net.Conn, error)) func(string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		nc, err := dial(addr)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			nc.Close()
			return nil, errCut
		}
		if s.conns == nil {
			s.conns = map[*trackedConn]struct{}{}
		}
		c := &trackedConn{Conn: nc, set: s}
		s.conns[c] = struct{}{}
		return c, nil
	}
}

// closeAll closes every open connection, which fails the requests on them at once, and makes
// later dials fail.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// exchange is the outcome of one request, times measured by the caller's clock.
type exchange struct {
	class Class
	ttfb  time.Duration // headers received
	done  time.Duration // body read to the end
	recv  int64
	sse   streamTimes
	err   error
}

// conn is one worker's reusable request state. Not safe for concurrent use.
type conn struct {
	hc      *fasthttp.HostClient
	req     *fasthttp.Request
	resp    *fasthttp.Response
	body    []byte
	buf     []byte
	sse     sseReader
	timeout time.Duration
	stream  bool
}

func newConn(hc *fasthttp.HostClient, uri string, headers [][2]string, w *Workload, timeout time.Duration) *conn {
	c := &conn{
		hc:      hc,
		req:     fasthttp.AcquireRequest(),
		resp:    fasthttp.AcquireResponse(),
		body:    make([]byte, 0, w.MaxBody()),
		buf:     make([]byte, 32<<10),
		timeout: timeout,
		stream:  w.Kind == ChatStream,
	}
	c.req.SetRequestURI(uri)
	c.req.Header.SetMethod(fasthttp.MethodPost)
	c.req.Header.SetContentType("application/json")
	for _, h := range headers {
		c.req.Header.Set(h[0], h[1])
	}
	return c
}

func (c *conn) release() {
	fasthttp.ReleaseRequest(c.req)
	fasthttp.ReleaseResponse(c.resp)
}

// do sends body and reads the whole response. now is the run's clock; gaps, when not nil,
// receives the inter-event gaps of a stream.
func (c *conn) do(body []byte, now func() time.Duration, gaps *[]time.Duration) exchange {
	c.req.SetBodyRaw(body)
	c.req.SetTimeout(c.timeout)
	var x exchange
	if err := c.hc.Do(c.req, c.resp); err != nil {
		x.done = now()
		x.class, x.err = classify(err), err
		return x
	}
	x.ttfb = now()
	status := c.resp.StatusCode()
	r := c.resp.BodyStream()
	var err error
	sse := false
	switch {
	case r == nil:
	case c.stream && status/100 == 2 && bytes.HasPrefix(c.resp.Header.ContentType(), []byte("text/event-stream")):
		sse = true
		x.sse, err = c.sse.read(r, c.buf, now, gaps)
		x.recv = x.sse.bytes
	case status >= 400:
		// Keep the start of an error body: it usually says what is wrong (unknown model...).
		k, _ := io.ReadFull(r, c.buf[:256])
		snippet := strings.TrimSpace(string(c.buf[:k]))
		x.recv, err = readAll(r, c.buf)
		x.recv += int64(k)
		x.err = fmt.Errorf("HTTP %d: %s", status, snippet)
	default:
		x.recv, err = readAll(r, c.buf)
	}
	c.resp.CloseBodyStream() //nolint:errcheck // read to EOF or failed; either way done
	x.done = now()
	switch {
	case err != nil:
		x.class, x.err = ErrStream, err
		switch {
		case isTimeout(err):
			x.class = ErrTimeout
		case !sse && isClosed(err): // a stream cut short stays a stream error
			x.class = ErrClosed
		}
	case status >= 500:
		x.class = Err5xx
	case status == fasthttp.StatusTooManyRequests:
		x.class = Err429
	case status >= 400:
		x.class = Err4xx
	case status/100 != 2:
		x.class, x.err = ErrOther, fmt.Errorf("HTTP %d", status)
	case c.stream && !bytes.HasPrefix(c.resp.Header.ContentType(), []byte("text/event-stream")):
		// A target that does not stream, or a proxy that buffers the stream.
		x.class, x.err = ErrStream, fmt.Errorf("answered Content-Type %q to a stream request, not text/event-stream", c.resp.Header.ContentType())
	case c.stream && x.sse.errEvent:
		x.class, x.err = ErrStream, fmt.Errorf("error event in stream: %s", c.sse.errData)
	case c.stream && !x.sse.done:
		x.class, x.err = ErrStream, errors.New("stream ended without [DONE]")
	}
	return x
}

func readAll(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// classify maps a transport error from HostClient.Do to a class.
func classify(err error) Class {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout), errors.Is(err, syscall.ECONNREFUSED),
		errors.As(err, &op) && op.Op == "dial", errors.As(err, &dns):
		return ErrConnect
	case isTimeout(err):
		return ErrTimeout
	case isClosed(err):
		return ErrClosed
	}
	return ErrOther
}

// isClosed reports whether err means that the target closed or reset the connection.
func isClosed(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// streamTimes is what sseReader saw in one stream. Times are on the caller's clock.
type streamTimes struct {
	first    time.Duration // arrival of the first event that carries output (TTFT); valid when output
	output   bool          // an event carried output (see carriesOutput)
	events   int           // data events, [DONE] and error events excluded
	done     bool          // saw data: [DONE]
	errEvent bool          // saw a data: {"error": ...} event
	bytes    int64
}

// sseReader splits a text/event-stream body into events. The zero value is ready; it keeps
// the carry-over buffer for a line split across reads between uses.
type sseReader struct {
	line []byte
	// state of the event being assembled
	hasData, isDone, isErr, hasOutput bool
	// outputSeen is set once an event of the stream carried output: later events are not
	// searched for it.
	outputSeen bool
	// errData is the data of the stream's first error event, cut to 256 bytes: what went wrong.
	errData []byte
}

// read consumes r to EOF. now is called once after every read; each event completed by that
// read is stamped with it, which is as precise as a reader can be (events that arrive in one
// read have a gap of zero, which is the truth the client saw). Gaps between consecutive data
// events are appended to *gaps when gaps is not nil.
func (s *sseReader) read(r io.Reader, buf []byte, now func() time.Duration, gaps *[]time.Duration) (streamTimes, error) {
	s.line, s.errData = s.line[:0], s.errData[:0]
	s.hasData, s.isDone, s.isErr, s.hasOutput, s.outputSeen = false, false, false, false, false
	var st streamTimes
	var last time.Duration
	dispatch := func(t time.Duration) {
		switch {
		case !s.hasData:
		case s.isDone:
			st.done = true
		case s.isErr:
			st.errEvent = true
		default:
			if s.hasOutput && !st.output {
				st.first, st.output, s.outputSeen = t, true, true
			}
			if st.events > 0 && gaps != nil {
				*gaps = append(*gaps, t-last)
			}
			last = t
			st.events++
		}
		s.hasData, s.isDone, s.isErr, s.hasOutput = false, false, false, false
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			st.bytes += int64(n)
			t := now()
			b := buf[:n]
			for len(b) > 0 {
				i := bytes.IndexByte(b, '\n')
				if i < 0 {
					s.line = append(s.line, b...)
					break
				}
				line := b[:i]
				if len(s.line) > 0 {
					s.line = append(s.line, line...)
					line = s.line
				}
				if s.field(line) {
					dispatch(t)
				}
				s.line = s.line[:0]
				b = b[i+1:]
			}
		}
		if err != nil {
			if err != io.EOF {
				return st, err
			}
			// Be lenient with a last event that lacks its blank line.
			t := now()
			if len(s.line) > 0 {
				s.field(s.line)
			}
			dispatch(t)
			return st, nil
		}
	}
}

// field records one line of the current event and reports whether it ended the event.
func (s *sseReader) field(line []byte) bool {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return true
	}
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return false // comments, event:, id:, retry:
	}
	data = bytes.TrimPrefix(data, []byte(" "))
	s.hasData = true
	switch {
	case bytes.Equal(data, []byte("[DONE]")):
		s.isDone = true
	case bytes.HasPrefix(data, []byte(`{"error"`)):
		s.isErr = true
		if len(s.errData) == 0 {
			s.errData = append(s.errData, data[:min(len(data), 256)]...)
		}
	case !s.outputSeen && carriesOutput(data):
		s.hasOutput = true
	}
	return false
}

// outputKeys are the fields of a chat or completion chunk that carry output.
var outputKeys = [][]byte{
	[]byte(`"content"`), []byte(`"reasoning_content"`), []byte(`"reasoning"`),
	[]byte(`"tool_calls"`), []byte(`"refusal"`), []byte(`"text"`),
}

// carriesOutput reports whether the data of an event has one of outputKeys with a non-empty
// string or array: text, reasoning, a tool call or a refusal, not a role chunk's "content": ""
// or "refusal": null. A byte search, not a JSON decode: it runs on a stream's events until
// the first with output, and the generator must stay cheap per event. A key's name inside a
// string has its quotes escaped, so it does not match.
func carriesOutput(data []byte) bool {
	for _, key := range outputKeys {
		for rest := data; ; {
			i := bytes.Index(rest, key)
			if i < 0 {
				break
			}
			rest = rest[i+len(key):]
			v := bytes.TrimLeft(rest, " \t\r\n")
			if len(v) == 0 || v[0] != ':' {
				continue // the name as a value ("type":"text"), not a key
			}
			v = bytes.TrimLeft(v[1:], " \t\r\n")
			if len(v) == 0 {
				continue
			}
			switch v[0] {
			case '"':
				if len(v) > 1 && v[1] != '"' {
					return true
				}
			case '[':
				if v = bytes.TrimLeft(v[1:], " \t\r\n"); len(v) > 0 && v[0] != ']' {
					return true
				}
			}
		}
	}
	return false
}
