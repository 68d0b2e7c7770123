package gateway

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway/cache"
	"github.com/llmgate/llmgate/gateway/sse"
	"github.com/llmgate/llmgate/router/store"
)

// Events that arrive together leave in one Read (one write and flush), and Read never waits
// for an event that has not arrived once it has something to send.
func TestStreamBodyCoalescesWithoutWaiting(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	r := &request{clientUsage: true, sseReader: sse.NewReader(pr, maxEventBytes)}
	s := &streamBody{r: r}
	go pw.Write([]byte("data: {\"n\":1}\n\ndata: {\"n\":2}\n\n")) //nolint:errcheck
	p := make([]byte, 4096)
	n, err := s.Read(p) // would block forever if it waited for a third event
	if err != nil || string(p[:n]) != "data: {\"n\":1}\n\ndata: {\"n\":2}\n\n" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
	go pw.Write([]byte("data: [DONE]\n\n")) //nolint:errcheck
	n, _ = s.Read(p)
	if string(p[:n]) != "data: [DONE]\n\n" {
		t.Fatalf("Read = %q", p[:n])
	}
	pw.Close()
	if n, err := s.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("after [DONE] and close: %d, %v; want EOF", n, err)
	}
	if r.errCode != "" {
		t.Fatalf("errCode = %q for a complete stream", r.errCode)
	}
}

// A stream that ends without [DONE] gets one error event in OpenAI's shape, then EOF.
func TestStreamBodyBrokenStream(t *testing.T) {
	pr, pw := io.Pipe()
	r := &request{clientUsage: true, sseReader: sse.NewReader(pr, maxEventBytes)}
	s := &streamBody{r: r}
	go func() { pw.Write([]byte("data: {\"n\":1}\n\n")); pw.Close() }() //nolint:errcheck
	got, err := io.ReadAll(s)
	want := "data: {\"n\":1}\n\n" + `data: {"error":{"message":"The model backend closed the stream early.","type":"server_error","param":null,"code":"upstream_error"}}` + "\n\n"
	if err != nil || string(got) != want {
		t.Fatalf("got %q, %v\nwant %q", got, err, want)
	}
}

// spentSource is a backend that has sent all it had: a further Read would have waited for the
// next event, and fails instead.
type spentSource struct{ b []byte }

var errWaited = errors.New("read past what had arrived")

func (s *spentSource) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, errWaited
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// Stray blank lines after an event are no event: the event goes out at once, not held until the
// next event arrives (a token shown a whole gap late to the user), and nothing else goes out.
func TestStreamBodyStrayBlankLines(t *testing.T) {
	for _, tail := range []string{"\n\n", "\r\n\r\n", "\n\n\n\n"} {
		r := &request{clientUsage: true, sseReader: sse.NewReader(&spentSource{b: []byte("data: {\"n\":1}\n\n" + tail)}, maxEventBytes)}
		s := &streamBody{r: r}
		p := make([]byte, 4096)
		if n, err := s.Read(p); err != nil || string(p[:n]) != "data: {\"n\":1}\n\n" {
			t.Errorf("%q after the event: Read = %q, %v; want the event alone, without waiting for the next", tail, p[:n], err)
		}
	}
}

// hookedStream is a backend stream that runs onClose when the gateway closes it.
type hookedStream struct {
	io.Reader
	onClose func()
}

func (h *hookedStream) Close() error { h.onClose(); return nil }

// A leader whose client left with nobody following its flight ends the flight at once: a
// request that joins while the leader is still closing leads a flight of its own. Once, it
// joined the dying flight, got the answer so far, and then "closed the stream early".
func TestStreamBodyCloseEndsUnfollowedFlight(t *testing.T) {
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Versions: []config.Version{{
		Version: "v1", Backends: []config.Backend{{URL: "http://127.0.0.1:1", Kind: "vllm", Model: "m"}},
	}}}}}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	var group cache.Group
	req := &cache.Request{Key: cache.Key{1}, Kind: cache.KindChat, N: 1}
	f, _ := group.Join(req)
	r := &request{gw: g, sseReader: sse.NewReader(strings.NewReader(""), maxEventBytes)}
	r.cache.flight = f
	joinedLeading := false
	// The backend stream is closed after Close decided no one follows, before the request ends.
	r.upstreamResp.SetBodyStream(&hookedStream{Reader: strings.NewReader(""), onClose: func() {
		_, joinedLeading = group.Join(req)
	}}, -1)
	s := &streamBody{r: r}
	_ = s.Close()
	if !joinedLeading {
		t.Fatal("a request joining as the leader's client left joined its unfollowed flight, which then failed")
	}
}
