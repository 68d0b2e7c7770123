package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
)

// maxBackendConns caps the connections of one pool (buffered or streaming) to a backend
// address; a request past it fails at once with fasthttp.ErrNoFreeConns. A variable for tests.
var maxBackendConns = 4096

// upstream holds the connection pools to one backend address. Pools outlive table swaps so a
// redeploy does not drop warm connections.
type upstream struct {
	buffered  *fasthttp.HostClient
	streaming *fasthttp.HostClient // StreamResponseBody: the body is read event by event
}

// upstreams is the set of pools by backend address.
type upstreams struct {
	mu     sync.Mutex
	byAddr map[string]*upstream
	to     config.Timeouts
	dial   func(addr string) (net.Conn, error) // nil: TCP
	roots  *x509.CertPool                      // CAs that sign TLS backends; nil: the system's

	// policy is admin.allow_backends, which binds every backend but those the config file
	// names (trusted, by URL): the operator's own, unrestricted as ever. nil: none bound.
	policy  *backendPolicy
	trusted map[string]bool

	// streams are the open connections of the streaming pools, which cutStreams closes at the
	// end of a shutdown's grace; cut: it did, and no new one opens.
	streamsMu sync.Mutex
	streams   map[*streamConn]struct{}
	cut       bool

	rtOnce                  sync.Once
	trustedRT, restrictedRT *http.Transport // the gateway's own HTTP requests (probes); see transport
}

// restricted reports whether b's connections must stay inside admin.allow_backends: an admin
// deploy named it, and the list is set.
func (u *upstreams) restricted(b *router.Backend) bool {
	return u.policy != nil && u.policy.restricts() && !u.trusted[b.URL]
}

// transport returns the transport for the gateway's own HTTP requests to b, the health and
// deploy probes, which carry b's API key as requests do: their connections are held to the
// rules of b's requests (see transports).
func (u *upstreams) transport(b *router.Backend) http.RoundTripper {
	trusted, restricted := u.transports()
	if u.restricted(b) {
		return restricted
	}
	return trusted
}

// transports returns the transports of the gateway's own HTTP requests to backends: one that
// refuses link-local and metadata addresses, and one that connects only where the policy allows
// (backendPolicy.dial) and, unlike the first, uses no proxy from the environment, which would
// resolve the name itself, past the check.
func (u *upstreams) transports() (trusted, restricted *http.Transport) {
	u.rtOnce.Do(func() {
		u.trustedRT = http.DefaultTransport.(*http.Transport).Clone()
		d := &net.Dialer{Timeout: u.to.Connect, KeepAlive: 30 * time.Second, Control: refuseNeverBackend}
		u.trustedRT.DialContext = d.DialContext
		u.restrictedRT = http.DefaultTransport.(*http.Transport).Clone()
		u.restrictedRT.Proxy = nil
		if p, connect := u.policy, u.to.Connect; p != nil {
			u.restrictedRT.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
				return p.dial(ctx, connect, addr)
			}
		}
	})
	return u.trustedRT, u.restrictedRT
}

// ProbeClients returns the client that probes each backend, as the health prober does: its
// connections are held to the rules of the backend's requests.
func (g *Gateway) ProbeClients(timeout time.Duration) func(*router.Backend) *http.Client {
	noRedirects := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	trusted, restricted := g.upstreams.transports()
	tc := &http.Client{Timeout: timeout, Transport: trusted, CheckRedirect: noRedirects}
	rc := &http.Client{Timeout: timeout, Transport: restricted, CheckRedirect: noRedirects}
	return func(b *router.Backend) *http.Client {
		if g.upstreams.restricted(b) {
			return rc
		}
		return tc
	}
}

func (u *upstreams) get(b *router.Backend) *upstream {
	key := b.URL
	u.mu.Lock()
	defer u.mu.Unlock()
	if up := u.byAddr[key]; up != nil {
		return up
	}
	up := &upstream{
		buffered:  u.newClient(b, false),
		streaming: u.newClient(b, true),
	}
	u.byAddr[key] = up
	return up
}

func (u *upstreams) newClient(b *router.Backend, stream bool) *fasthttp.HostClient {
	to := u.to
	dial := u.dial
	if dial == nil && u.restricted(b) {
		p := u.policy
		dial = func(addr string) (net.Conn, error) { return p.dial(context.Background(), to.Connect, addr) }
	}
	if dial == nil {
		// Control checks the address each dial resolved to (see refuseNeverBackend).
		d := &net.Dialer{Timeout: to.Connect, Control: refuseNeverBackend}
		dial = func(addr string) (net.Conn, error) { return d.Dial("tcp", addr) }
	}
	var tlsConfig *tls.Config
	if b.TLS {
		tlsConfig = &tls.Config{ServerName: hostOf(b.Addr), MinVersion: tls.VersionTLS12, RootCAs: u.roots}
	}
	c := &fasthttp.HostClient{
		Addr:     b.Addr,
		IsTLS:    b.TLS,
		MaxConns: maxBackendConns,
		// vLLM (uvicorn) closes idle keep-alive connections after 5 s; closing ours first
		// avoids sending a request on a connection the backend is closing.
		MaxIdleConnDuration:           4 * time.Second,
		StreamResponseBody:            stream,
		DisableHeaderNamesNormalizing: false,
		NoDefaultUserAgentHeader:      true,
		// Requests are POSTs; sending them again is the gateway's decision: on another
		// backend (tryBackends), or on this one when a pooled connection was stale
		// (staleConnection).
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		Dial: func(addr string) (net.Conn, error) {
			c, err := dial(addr)
			if err != nil {
				return nil, &dialError{err}
			}
			// TLS goes under the wrappers, not over them as fasthttp would put it: they read
			// the answer's bytes (where its header block ends, whether one arrived), not
			// the records that carry them.
			var tc *tls.Conn
			if tlsConfig != nil {
				tc = tls.Client(c, tlsConfig) // the handshake comes with the first write
				c = tc
			}
			c = &poolConn{Conn: c}
			if stream {
				sc := &streamConn{Conn: c, firstByte: to.FirstByte, idle: to.Idle, owner: u}
				if !u.trackStream(sc) {
					_ = c.Close()
					return nil, &dialError{errStreamsCut}
				}
				c = sc
			}
			if tc != nil {
				return tlsDone{Conn: c, tc: tc}, nil
			}
			return c, nil
		},
	}
	return c
}

// errStreamsCut refuses a streaming connection once cutStreams ran.
var errStreamsCut = errors.New("the gateway is shutting down")

// trackStream notes c, a new connection of a streaming pool, for cutStreams; false once
// cutStreams ran. Once per connection, not per request: pooled connections serve many.
func (u *upstreams) trackStream(c *streamConn) bool {
	u.streamsMu.Lock()
	defer u.streamsMu.Unlock()
	if u.cut {
		return false
	}
	if u.streams == nil {
		u.streams = map[*streamConn]struct{}{}
	}
	u.streams[c] = struct{}{}
	return true
}

// cutStreams closes every connection of the streaming pools, which ends the backend streams
// read on them with an error, and keeps new ones from opening.
func (u *upstreams) cutStreams() {
	u.streamsMu.Lock()
	u.cut = true
	streams := u.streams
	u.streams = nil
	u.streamsMu.Unlock()
	for c := range streams {
		_ = c.Conn.Close() // safe beside a Read blocked on it, which returns an error
	}
}

// tlsDone is a backend connection whose TLS the gateway set up itself: its Handshake method
// tells fasthttp not to wrap it in TLS again.
type tlsDone struct {
	net.Conn
	tc *tls.Conn
}

func (c tlsDone) Handshake() error { return c.tc.Handshake() }

// sendResendingStale runs send, which fills resp, and runs it once more when it failed on a
// stale pooled connection (see staleConnection): the backend never saw the request, and its
// failure is not the backend's.
func sendResendingStale(resp *fasthttp.Response, send func() error) error {
	err := send()
	if err != nil && staleConnection(resp, err) {
		resp.Reset()
		err = send() // on a fresh connection, or another pooled one
	}
	return err
}

// staleConnection reports whether a request failed on a pooled connection the backend had
// closed while it sat idle: the connection carried an answer before, and not one byte of this
// request's answer arrived on it. The request never reached the backend, so sending it again on
// a fresh connection is safe. On a new connection the same error means the backend took the
// request and went away (it crashed, or a proxy before it gave up), and once a byte of the
// answer came the backend surely had it: sending it again would run it twice.
func staleConnection(resp *fasthttp.Response, err error) bool {
	a, ok := resp.LocalAddr().(poolAddr)
	if !ok || a.c.readAtTake == 0 || a.c.read != a.c.readAtTake {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// poolConn is a backend connection that counts the bytes it read: before the request that
// took it, and since. Its LocalAddr carries it to staleConnection (fasthttp keeps the address
// in the response, the one thing of the connection a response keeps). A connection serves one
// request at a time, and staleConnection reads it where that request failed.
type poolConn struct {
	net.Conn
	read       int64 // bytes of answers, every request's
	readAtTake int64 // read when the current request took the connection
}

func (c *poolConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}

// LocalAddr is called as a request takes the connection, before it is written (fasthttp's
// Response.ParseNetConn), and nowhere else.
func (c *poolConn) LocalAddr() net.Addr {
	c.readAtTake = c.read
	return poolAddr{c.Conn.LocalAddr(), c}
}

type poolAddr struct {
	net.Addr
	c *poolConn
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// dialError marks a failure to connect, which is always safe to retry on another backend.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// streamConn enforces the streaming timeouts on a backend connection: the response's body must
// start within firstByte of the request, then each read may wait at most idle, and never past
// the request's overall deadline. fasthttp sets one read deadline per request; splitting it per
// read here is what lets a long stream live while a stalled one dies. The body, not the status
// line, ends the first-byte wait: vLLM (uvicorn) sends a stream's headers at once and its first
// event only when the prefill is done, which is what first_byte allows for.
type streamConn struct {
	net.Conn
	firstByte, idle time.Duration
	hard            atomic.Int64 // unix nanos of the request's overall deadline, 0 for none
	firstBy         time.Time    // when the current response's body must have started
	tail            uint32       // the last four bytes of the current response's headers read so far
	inBody          bool         // the current response's header block has ended
	started         bool         // a byte of the current response's body has arrived
	owner           *upstreams   // tracks the connection for cutStreams
}

// Close closes the connection and forgets it (see upstreams.trackStream).
func (c *streamConn) Close() error {
	if u := c.owner; u != nil {
		u.streamsMu.Lock()
		delete(u.streams, c)
		u.streamsMu.Unlock()
	}
	return c.Conn.Close()
}

// Write starts a new request on the connection (fasthttp uses a connection for one request at a
// time), so the next reads wait for the response's first byte.
func (c *streamConn) Write(p []byte) (int, error) {
	c.started, c.inBody, c.tail = false, false, 0
	c.firstBy = time.Now().Add(c.firstByte)
	return c.Conn.Write(p)
}

func (c *streamConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.hard.Store(0)
	} else {
		c.hard.Store(t.UnixNano())
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *streamConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *streamConn) Read(p []byte) (int, error) {
	var d time.Time
	switch {
	case c.started && c.idle > 0:
		d = time.Now().Add(c.idle)
	case !c.started && c.firstByte > 0:
		d = c.firstBy
	}
	if !d.IsZero() {
		if hard := c.hard.Load(); hard != 0 && hard < d.UnixNano() {
			d = time.Unix(0, hard)
		}
		if err := c.Conn.SetReadDeadline(d); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.started {
		c.started = c.reachesBody(p[:n])
	}
	return n, err
}

// reachesBody reports whether p, the next bytes of the response, reach past its header block.
func (c *streamConn) reachesBody(p []byte) bool {
	if c.inBody {
		return true
	}
	for i, b := range p {
		c.tail = c.tail<<8 | uint32(b)
		if c.tail == '\r'<<24|'\n'<<16|'\r'<<8|'\n' {
			c.inBody = true
			return i+1 < len(p)
		}
	}
	return false
}
