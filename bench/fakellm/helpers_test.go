package fakellm

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp/fasthttputil"
)

// harness is a Server on an in-memory listener plus a net/http client
// dialling it, so tests see the bytes a real client would.
type harness struct {
	s *Server
	c *http.Client
}

func start(t testing.TB, o Options) *harness {
	t.Helper()
	s := New(o)
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	tr := &http.Transport{
		DialContext:        func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
		DisableCompression: true,
		// A connection per request: server-side connections are gone by
		// cleanup time, so Close need not wait out fasthttp's 100ms
		// shutdown poll for idle keep-alive connections.
		DisableKeepAlives: true,
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{s: s, c: &http.Client{Transport: tr}}
}

type result struct {
	status  int
	header  http.Header
	body    []byte
	readErr error // error reading the body (a cut stream)
}

// do sends one request; headers come in name, value pairs.
func (h *harness) do(t testing.TB, method, path, body string, headers ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, "http://fakellm"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := h.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, readErr: rerr}
}

// events splits an SSE body into its data payloads, failing on bad framing.
func events(t testing.TB, body []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(body) > 0 {
		ev, rest, ok := bytes.Cut(body, []byte("\n\n"))
		if !ok {
			t.Fatalf("unterminated SSE event %q", body)
		}
		payload, found := bytes.CutPrefix(ev, []byte("data: "))
		if !found {
			t.Fatalf("SSE event without data: prefix: %q", ev)
		}
		out = append(out, payload)
		body = rest
	}
	return out
}
