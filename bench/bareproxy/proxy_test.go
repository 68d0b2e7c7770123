package bareproxy

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serve runs h on a loopback listener and returns its address; the server stops with the test.
func serve(tb testing.TB, h fasthttp.RequestHandler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &fasthttp.Server{Handler: h}
	go s.Serve(ln)                      //nolint:errcheck
	tb.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	return ln.Addr().String()
}

// startProxy runs a Proxy to upstream on loopback and returns its address.
func startProxy(tb testing.TB, upstream string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := New(upstream)
	go p.Serve(ln)                   //nolint:errcheck
	tb.Cleanup(func() { p.Close() }) //nolint:errcheck
	return ln.Addr().String()
}

func TestBuffered(t *testing.T) {
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusCreated)
		ctx.Response.Header.Set("X-Upstream", "yes")
		ctx.SetContentType("application/json")
		ctx.WriteString(`{"method":"`)
		ctx.Write(ctx.Method())
		ctx.WriteString(`","path":"`)
		ctx.Write(ctx.Path())
		ctx.WriteString(`","auth":"`)
		ctx.Write(ctx.Request.Header.Peek("Authorization"))
		ctx.WriteString(`","body":`)
		ctx.Write(ctx.PostBody())
		ctx.WriteString(`}`)
	})
	addr := startProxy(t, "http://"+up)

	tests := []struct {
		name, path, body string
	}{
		{"small", "/v1/chat/completions", `{"model":"m"}`},
		{"large", "/v1/embeddings", `"` + strings.Repeat("x", 200<<10) + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + tt.path)
			req.Header.SetMethod("POST")
			req.Header.Set("Authorization", "Bearer k")
			req.SetBodyString(tt.body)
			if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			want := `{"method":"POST","path":"` + tt.path + `","auth":"Bearer k","body":` + tt.body + `}`
			if got := string(resp.Body()); got != want {
				t.Errorf("body: got %.80q... (%d bytes), want %d bytes", got, len(got), len(want))
			}
			if resp.StatusCode() != fasthttp.StatusCreated || string(resp.Header.Peek("X-Upstream")) != "yes" ||
				string(resp.Header.ContentType()) != "application/json" {
				t.Errorf("status %d, headers %q", resp.StatusCode(), resp.Header.Header())
			}
		})
	}
}

// TestStreamFlushesPerEvent checks that each SSE event reaches the client while the upstream
// is still holding back the next one: the upstream writes event i+1 only after the client has
// read event i, so a proxy that buffers would deadlock (caught by the read deadline).
func TestStreamFlushesPerEvent(t *testing.T) {
	const events = 3
	next := make(chan struct{})
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := range events {
				if i > 0 {
					select {
					case <-next:
					case <-time.After(5 * time.Second):
						return
					}
				}
				w.WriteString("data: {\"i\":" + string(rune('0'+i)) + "}\n\n")
				w.Flush()
			}
			w.WriteString("data: [DONE]\n\n")
		})
	})
	addr := startProxy(t, up)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"))
	br := bufio.NewReader(conn)
	var resp fasthttp.Response
	resp.StreamBody = true
	if err := resp.Read(br); err != nil {
		t.Fatal(err)
	}
	if ct := string(resp.Header.ContentType()); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	body := bufio.NewReader(resp.BodyStream())
	var got bytes.Buffer
	for i := range events {
		line, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v (got so far %q)", i, err, got.String())
		}
		got.WriteString(line)
		if _, err := body.ReadString('\n'); err != nil { // the blank line ending the event
			t.Fatal(err)
		}
		if i < events-1 {
			next <- struct{}{}
		}
	}
	want := "data: {\"i\":0}\ndata: {\"i\":1}\ndata: {\"i\":2}\n"
	if got.String() != want {
		t.Errorf("got %q, want %q", got.String(), want)
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	addr := startProxy(t, dead)
	status, _, err := fasthttp.Post(nil, "http://"+addr+"/v1/chat/completions", nil)
	if err != nil {
		t.Fatal(err)
	}
	if status != fasthttp.StatusBadGateway {
		t.Errorf("status %d, want 502", status)
	}
}

// TestUpstreamCutMidBody checks that a body the upstream cuts short reaches the client as a
// failure, not as a shorter body that looks complete.
func TestUpstreamCutMidBody(t *testing.T) {
	tests := []struct{ name, head string }{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"},
		{"sse", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				var req fasthttp.Request
				if req.Read(br) != nil {
					return
				}
				body := "data: {}\n\n"
				if tt.name == "sse" {
					body = "a\r\n" + body[:10] + "\r\n"
				}
				c.Write([]byte(tt.head + body))
			}()
			addr := startProxy(t, ln.Addr().String())
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/v1/chat/completions")
			req.Header.SetMethod("POST")
			err = fasthttp.DoTimeout(req, resp, 5*time.Second)
			if err == nil {
				t.Fatalf("got a clean %d response with body %q", resp.StatusCode(), resp.Body())
			}
		})
	}
}

// BenchmarkProxy measures one small chat-sized request through the proxy over loopback. The
// allocations counted include the benchmark's client and the upstream, which are constant.
func BenchmarkProxy(b *testing.B) {
	resp := []byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`)
	up := serve(b, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Write(resp)
	})
	addr := startProxy(b, up)
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 1024}
	body := []byte(`{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", 1024) + `"}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + "/v1/chat/completions")
		req.Header.SetMethod("POST")
		req.SetBodyRaw(body)
		for pb.Next() {
			if err := hc.Do(req, res); err != nil || res.StatusCode() != 200 {
				b.Errorf("err %v status %d", err, res.StatusCode())
				return
			}
		}
	})
}
