package gateway

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
	"github.com/llmgate/llmgate/router/store"
)

// scriptConn is a backend connection that answers reads from a script, one entry per Read, and
// records the read deadline each Read was given.
type scriptConn struct {
	net.Conn
	reads     []string
	deadlines []time.Time
	deadline  time.Time
}

func (c *scriptConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { c.deadline = t; return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

func (c *scriptConn) Read(p []byte) (int, error) {
	c.deadlines = append(c.deadlines, c.deadline)
	n := copy(p, c.reads[0])
	c.reads = c.reads[1:]
	return n, nil
}

// TestStreamConnFirstByteCoversPrefill: a stream's body must start within first_byte, and the
// idle timeout applies only from its first byte on. vLLM sends a stream's headers at once and
// its first event after the prefill: the wait between the two is first_byte's, not idle's.
func TestStreamConnFirstByteCoversPrefill(t *testing.T) {
	const headers = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	const event = "1a\r\ndata: {\"choices\":[]}\n\n\r\n"
	tests := []struct {
		name  string
		reads []string
		idle  []bool // per read: waited idle (true) or first_byte (false)
	}{
		{"headers, then the first event", []string{headers, event, event}, []bool{false, false, true}},
		{"headers and an event together", []string{headers + event, event}, []bool{false, true}},
		{"headers in pieces", []string{headers[:20], headers[20 : len(headers)-3], headers[len(headers)-3:], event, event}, []bool{false, false, false, false, true}},
		{"headers split after the last CR", []string{headers[:len(headers)-1], "\n" + event, event}, []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := &scriptConn{reads: tt.reads}
			// first_byte an hour and idle a millisecond: which one a deadline came from is plain.
			c := &streamConn{Conn: sc, firstByte: time.Hour, idle: time.Millisecond}
			for range 2 { // a second request on the kept-alive connection starts over
				sc.reads, sc.deadlines = tt.reads, nil
				if _, err := c.Write([]byte("POST / HTTP/1.1\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4096)
				for range tt.reads {
					if _, err := c.Read(buf); err != nil {
						t.Fatal(err)
					}
				}
				for i, d := range sc.deadlines {
					if idle := time.Until(d) < time.Minute; idle != tt.idle[i] {
						t.Errorf("read %d: deadline in %s; want idle %v", i, time.Until(d).Round(time.Second), tt.idle[i])
					}
				}
			}
		})
	}
}

// deadlineConn is a backend connection that records the read deadline each Read was given.
type deadlineConn struct {
	net.Conn
	mu        sync.Mutex
	deadline  time.Time
	deadlines []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.deadlines = append(c.deadlines, c.deadline)
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// selfSigned returns a certificate for host and a pool that trusts it.
func selfSigned(t *testing.T, host string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestStreamConnOverTLS: the streaming timeouts read a TLS backend's answer, not its records.
// Under TLS they saw ciphertext, never found where the headers end, and kept the first-byte
// deadline for the whole stream: every stream from an https backend was cut first_byte after
// its request, however steadily it sent events, and a stalled one waited first_byte, not idle.
func TestStreamConnOverTLS(t *testing.T) {
	const host = "backend.test"
	cert, pool := selfSigned(t, host)
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	const event = "data: {\"choices\":[]}\n\n"
	go func() {
		tc := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}})
		req, err := http.ReadRequest(bufio.NewReader(tc))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for range 3 {
			_, _ = fmt.Fprintf(tc, "%x\r\n%s\r\n", len(event), event)
		}
		_, _ = io.WriteString(tc, "0\r\n\r\n")
	}()
	dc := &deadlineConn{Conn: client}
	u := &upstreams{byAddr: map[string]*upstream{}, roots: pool,
		to:   config.Timeouts{FirstByte: 10 * time.Hour, Idle: time.Hour},
		dial: func(string) (net.Conn, error) { return dc, nil }}
	hc := u.newClient(&router.Backend{URL: "https://" + host, Addr: host + ":443", TLS: true}, true)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("https://" + host + "/v1/chat/completions")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetBodyString(`{}`)
	if err := hc.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.BodyStream())
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.CloseBodyStream()
	if want := strings.Repeat(event, 3); string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	idle := 0
	for _, d := range dc.deadlines {
		// first_byte ten hours and idle one: which one a deadline came from is plain.
		if !d.IsZero() && time.Until(d) < 5*time.Hour {
			idle++
		}
	}
	if idle == 0 {
		t.Errorf("no read of the stream waited idle; deadlines: %v", dc.deadlines)
	}
}

// The ejection log line names the versions a backend address serves. The health hook gives the
// address with its port; a backend URL may leave the port out, or carry a path.
func TestVersionsAt(t *testing.T) {
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Stable: "v1", Versions: []config.Version{
		{Version: "v1", Backends: []config.Backend{{URL: "https://gpu1.internal", Kind: "vllm", Model: "m"}}},
		{Version: "v2", Backends: []config.Backend{{URL: "http://gpu2.internal/ollama", Kind: "ollama", Model: "m"}}},
		{Version: "v3", Backends: []config.Backend{{URL: "http://gpu2.internal:8000", Kind: "vllm", Model: "m"}}},
	}}}}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for url, want := range map[string][]string{
		"https://gpu1.internal:443": {"chat@v1"},
		"http://gpu2.internal:80":   {"chat@v2"},
		"http://gpu2.internal:8000": {"chat@v3"},
		"http://gpu1.internal:443":  nil,
	} {
		if got := g.versionsAt(url); !slices.Equal(got, want) {
			t.Errorf("versionsAt(%q) = %q, want %q", url, got, want)
		}
	}
}
