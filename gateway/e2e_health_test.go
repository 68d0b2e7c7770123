package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

const streamBody = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`

// healthConfig sets the failure threshold and a long ejection, so an ejected backend stays out
// for the rest of the test.
func healthConfig(threshold int) func(*config.Config) {
	return func(c *config.Config) {
		c.Health.FailureThreshold = threshold
		c.Health.EjectFor = time.Hour
	}
}

func backendUp(t *testing.T, g *gw, url string) float64 {
	t.Helper()
	v, found := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_backend_up", map[string]string{"backend": url})
	if !found {
		t.Fatalf("no llmgate_backend_up for %s", url)
	}
	return v
}

// A stream the backend cuts after its 200 is a broken stream of that backend, counted once per
// request; when at least half of its latest streams (router.streamWindowMin at least) broke,
// it is ejected. A backend that always dies after the first tokens is ejected, and its
// neighbour that finishes its streams stays in service.
func TestStreamCutCountsTowardEjection(t *testing.T) {
	t.Parallel()
	const window = 20 // router's streamWindowMin
	cut := startFake(t, fakellm.Options{Model: "m", DisconnectRate: 1})
	good := startFake(t, fakellm.Options{Model: "m"})

	t.Run("by share, once per request", func(t *testing.T) {
		g := startGateway(t, newConfig(t, healthConfig(2), model("chat", "v1", version("v1", cut.backend()))))
		for i := range window - 1 {
			res := g.do(t, "POST", "/v1/chat/completions", streamBody)
			if res.status != http.StatusOK || !strings.Contains(string(res.body), `"error"`) {
				t.Fatalf("cut stream %d: %d %s; want a 200 ending in an error event", i+1, res.status, res.body)
			}
		}
		if up := backendUp(t, g, cut.URL); up != 1 {
			t.Fatalf("llmgate_backend_up = %v after %d cut streams, want 1 (a share is judged on %d)", up, window-1, window)
		}
		g.do(t, "POST", "/v1/chat/completions", streamBody)
		if up := backendUp(t, g, cut.URL); up != 0 {
			t.Fatalf("llmgate_backend_up = %v after %d cut streams of %d, want 0", up, window, window)
		}
		if res := g.do(t, "POST", "/v1/chat/completions", streamBody); res.status != http.StatusServiceUnavailable {
			t.Errorf("request to the ejected backend: %d %s, want 503", res.status, res.body)
		}
	})

	t.Run("beside a good backend", func(t *testing.T) {
		g := startGateway(t, newConfig(t, healthConfig(2), model("chat", "v1", version("v1", cut.backend(), good.backend()))))
		// Each request goes to either backend at random; 300 give the cut one its 20 streams
		// but for a chance far below one in a billion.
		for range 300 {
			g.do(t, "POST", "/v1/chat/completions", streamBody)
			if backendUp(t, g, cut.URL) == 0 {
				break
			}
		}
		if up := backendUp(t, g, cut.URL); up != 0 {
			t.Errorf("llmgate_backend_up for the backend that cuts every stream = %v, want 0", up)
		}
		if up := backendUp(t, g, good.URL); up != 1 {
			t.Errorf("llmgate_backend_up for the good backend = %v, want 1", up)
		}
		for range 5 {
			res := g.do(t, "POST", "/v1/chat/completions", streamBody)
			if res.status != http.StatusOK || !strings.Contains(string(res.body), "[DONE]") {
				t.Fatalf("after the ejection: %d %s; want the good backend's whole stream", res.status, res.body)
			}
		}
	})

	t.Run("one in twenty stays", func(t *testing.T) {
		// The soak's flaky backend: 5 % of streams cut, which three in a row would eject every
		// few seconds at a few hundred streams a second.
		flaky := startFake(t, fakellm.Options{Model: "m", DisconnectRate: 0.05, Seed: 7})
		g := startGateway(t, newConfig(t, healthConfig(2), model("chat", "v1", version("v1", flaky.backend()))))
		for i := range 200 {
			if res := g.do(t, "POST", "/v1/chat/completions", streamBody); res.status != http.StatusOK {
				t.Fatalf("stream %d: %d %s", i+1, res.status, res.body)
			}
		}
		if up := backendUp(t, g, flaky.URL); up != 1 {
			t.Errorf("llmgate_backend_up = %v for a backend that cuts one stream in twenty, want 1", up)
		}
	})
}

// A stream the backend stalls (no event within timeouts.idle) is a failure of the backend.
func TestStreamStallCountsTowardEjection(t *testing.T) {
	t.Parallel()
	stalled := make(chan struct{})
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"))
		w.(http.Flusher).Flush()
		select { // then nothing, until the gateway gives up
		case <-r.Context().Done():
		case <-stalled:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(stalled); srv.Close() })
	be := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		healthConfig(1)(c)
		c.Timeouts.Idle = 30 * time.Millisecond
	}, model("chat", "v1", version("v1", be))))
	for range 20 { // router's streamWindowMin
		res := g.do(t, "POST", "/v1/chat/completions", streamBody)
		if res.status != http.StatusOK || !strings.Contains(string(res.body), `"error"`) {
			t.Fatalf("stalled stream: %d %s; want a 200 ending in an error event", res.status, res.body)
		}
	}
	if up := backendUp(t, g, be.URL); up != 0 {
		t.Errorf("llmgate_backend_up = %v after 20 stalled streams, want 0", up)
	}
}

// A stream that runs into the request's own total timeout is not broken by its backend, also
// when its client left and it goes on for the requests coalesced on it: after 19 streams the
// backend cut, the 20th, kept alive by pings until timeouts.total, must not make the share
// that ejects it.
func TestStreamTotalTimeoutForFollowersDoesNotCount(t *testing.T) {
	t.Parallel()
	const window = 20 // router's streamWindowMin
	var n atomic.Int64
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"))
		w.(http.Flusher).Flush()
		if n.Add(1) < window {
			return // cut: no [DONE]
		}
		for { // alive, never done: pings until the gateway's total timeout closes the connection
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			if _, err := w.Write([]byte(": ping\n\n")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	be := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		healthConfig(1)(c)
		c.Timeouts.Total = time.Second
		c.Timeouts.Connect, c.Timeouts.FirstByte, c.Timeouts.Idle = time.Second, time.Second, time.Second
	}, cached(model("chat", "v1", version("v1", be)))))
	for i := range window - 1 {
		res := g.do(t, "POST", "/v1/chat/completions", cacheBody(fmt.Sprint("cut ", i), `,"stream":true`))
		if res.status != http.StatusOK || !strings.Contains(string(res.body), `"error"`) {
			t.Fatalf("cut stream %d: %d %s; want a 200 ending in an error event", i+1, res.status, res.body)
		}
	}
	body := cacheBody("the same long story", `,"stream":true`)
	leader, follower, leave := g.coalescedPair(t, body)
	leave() // the leader's stream goes on for the follower, until the total timeout
	leader.Body.Close()
	_, _ = io.ReadAll(follower.Body)
	g.waitMetric(t, "llmgate_backend_in_flight", map[string]string{"backend": be.URL}, "= 0", func(v float64) bool { return v == 0 })
	if up := backendUp(t, g, be.URL); up != 1 {
		t.Errorf("llmgate_backend_up = %v: a stream that ran into the total timeout counted as broken by the backend", up)
	}
}

// A client that leaves mid-stream says nothing about the backend: it stays in service.
func TestClientDisconnectDoesNotEject(t *testing.T) {
	t.Parallel()
	f := startFake(t, fakellm.Options{Model: "m", OutputTokens: 3000, TokensPerSecond: 50})
	g := startGateway(t, newConfig(t, healthConfig(1), model("chat", "v1", version("v1", f.backend()))))
	cctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	resp := g.postChat(t, cctx, streamBody)
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			break
		}
	}
	cancel()
	resp.Body.Close()
	// The stream's end releases the backend; by then its verdict, if any, is in.
	g.waitMetric(t, "llmgate_backend_in_flight", map[string]string{"backend": f.URL}, "= 0", func(v float64) bool { return v == 0 })
	if up := backendUp(t, g, f.URL); up != 1 {
		t.Errorf("llmgate_backend_up = %v after a client left mid-stream, want 1", up)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`); res.status != http.StatusOK {
		t.Errorf("next request: %d %s, want 200", res.status, res.body)
	}
}

// An error event a backend sends mid-stream is its failure when it is a server error (vLLM
// sends InternalServerError, code 500, when its engine dies, then [DONE]); one it types as the
// request's fault says nothing of its health.
func TestStreamErrorEventCountsTowardEjection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, event string
		up          float64
	}{
		{"server error", `{"error":{"message":"EngineCore encountered an issue.","type":"InternalServerError","param":null,"code":500}}`, 0},
		{"untyped", `{"error":{"message":"llama runner process has terminated"}}`, 0},
		{"request's fault", `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"BadRequestError","param":null,"code":400}}`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln := listen(t)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte("data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n" +
					"data: " + tc.event + "\n\ndata: [DONE]\n\n"))
			})}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close() })
			be := config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
			g := startGateway(t, newConfig(t, healthConfig(1), model("chat", "v1", version("v1", be))))
			for range 20 { // router's streamWindowMin
				res := g.do(t, "POST", "/v1/chat/completions", streamBody)
				if res.status != http.StatusOK || !strings.Contains(string(res.body), `"error"`) {
					t.Fatalf("stream with an error event: %d %s; want a 200 ending in an error event", res.status, res.body)
				}
				g.waitMetric(t, "llmgate_backend_in_flight", map[string]string{"backend": be.URL}, "= 0", func(v float64) bool { return v == 0 })
			}
			if up := backendUp(t, g, be.URL); up != tc.up {
				t.Errorf("llmgate_backend_up = %v after 20 streams ending in the error event, want %v", up, tc.up)
			}
		})
	}
}

// A shadow's answer is a verdict on its backend like any request's: a shadow version whose
// backend answers every mirror with a 500 is ejected (and its mirrors skipped), while the
// clients' own answers, from stable, never notice.
func TestShadowFailuresEjectItsBackend(t *testing.T) {
	tokens := withAdminTokens(t)
	good := startFake(t, fakellm.Options{Model: "m1"})
	broken := startFake(t, fakellm.Options{Model: "m2", ErrorRate: 1})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		healthConfig(2)(c)
	}, model("chat", "v1", version("v1", good.backend()), version("v2", broken.backend()))))
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)
	for i := 0; i < 50 && backendUp(t, g, broken.URL) == 1; i++ {
		if res := g.do(t, "POST", "/v1/chat/completions", chatAs("u", false)); res.status != 200 {
			t.Fatalf("request %d: %d %s", i, res.status, res.body)
		}
		waitFor(t, "the mirror's answer", func() bool { return broken.Requests() == int64(i+1) })
		g.waitMetric(t, "llmgate_backend_in_flight", map[string]string{"backend": broken.URL}, "= 0", func(v float64) bool { return v == 0 })
	}
	if up := backendUp(t, g, broken.URL); up != 0 {
		t.Fatalf("llmgate_backend_up of the shadow's broken backend = %v after %d mirrors, want 0", up, broken.Requests())
	}
	if n := broken.Requests(); n != 2 {
		t.Errorf("the broken shadow backend got %d mirrors, want 2 (threshold 2, then ejected)", n)
	}
}

// One server may serve two versions (a vLLM with a LoRA adapter as the shadow). Once its
// ejection has run out, the next request's mirror, sent before the request itself, must not
// take the server's one half-open trial: the client would get a 503 from a shadow that is
// never to change its answer. The client's request is the trial; mirrors follow once it passed.
func TestShadowLeavesTheTrialToTheClient(t *testing.T) {
	tokens := withAdminTokens(t)
	var fail atomic.Bool
	var mirrors atomic.Int64
	release := make(chan struct{})
	b := rawBackend(t, func(c net.Conn) {
		requestsOn(c, func(_ int, req *http.Request, _ []byte) bool {
			if fail.Load() {
				writeJSONReply(c, "500 Internal Server Error", "", `{"error":{"message":"boom","type":"InternalServerError","param":null,"code":500}}`)
				return true
			}
			if req.Header.Get("X-Request-Id") == "" { // a mirror: it answers when the test is done
				mirrors.Add(1)
				<-release
			}
			writeJSONReply(c, "200 OK", "", `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
			return true
		})
	})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		c.Health.FailureThreshold = 1
		c.Health.EjectFor = time.Second // the shortest: the test waits for it to run out
		c.Retry.Attempts = 1
	}, model("chat", "v1", version("v1", b), version("v2", b))))
	t.Cleanup(func() { close(release) }) // before the gateway's Close, which waits for mirrors
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	fail.Store(true)
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 502 {
		t.Fatalf("the failing server: status %d %s, want 502", res.status, res.body)
	}
	fail.Store(false)
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)
	waitFor(t, "the ejection to run out", func() bool { return g.do(t, "GET", "/readyz", "").status == 200 })
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
		t.Fatalf("the first request after the ejection ran out: status %d %s, want 200 (it is the trial, not its mirror)", res.status, res.body)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
		t.Fatalf("the next request: status %d %s", res.status, res.body)
	}
	waitFor(t, "a mirror once the server is back", func() bool { return mirrors.Load() > 0 })
}

// A version's only server comes back after an ejection: its first request is the half-open
// trial. When that request is a stream, the server answers at its first event; the rest of
// the stream may take minutes, and the version's other users must not get 503s until then.
func TestStreamTrialLetsOthersInAtFirstEvent(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	release := make(chan struct{})
	b := rawBackend(t, func(c net.Conn) {
		requestsOn(c, func(_ int, _ *http.Request, body []byte) bool {
			switch {
			case fail.Load():
				writeJSONReply(c, "500 Internal Server Error", "", `{"error":{"message":"boom","type":"InternalServerError","param":null,"code":500}}`)
			case strings.Contains(string(body), `"stream":true`):
				const chunk = `{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: %s\n\n", chunk)
				<-release // a long answer
				fmt.Fprint(c, "data: [DONE]\n\n")
				return false
			default:
				writeJSONReply(c, "200 OK", "", `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
			}
			return true
		})
	})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		c.Health.FailureThreshold = 1
		c.Health.EjectFor = time.Second // the shortest: the test waits for it to run out
		c.Retry.Attempts = 1
	}, model("chat", "v1", version("v1", b))))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	const buffered = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	fail.Store(true)
	if res := g.do(t, "POST", "/v1/chat/completions", buffered); res.status != 502 {
		t.Fatalf("the failing server: status %d %s, want 502", res.status, res.body)
	}
	fail.Store(false)
	waitFor(t, "the ejection to run out", func() bool { return g.do(t, "GET", "/readyz", "").status == 200 })
	trial := g.postChat(t, ctx(t), streamBody)
	defer trial.Body.Close()
	first, err := bufio.NewReader(trial.Body).ReadString('\n')
	if err != nil || !strings.Contains(first, `"content":"hi"`) {
		t.Fatalf("the trial stream's first event: %q, %v", first, err)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", buffered); res.status != 200 {
		t.Errorf("a request while the trial stream goes on: status %d %s, want 200", res.status, res.body)
	}
	close(release)
	if rest, err := io.ReadAll(trial.Body); err != nil || !strings.Contains(string(rest), "[DONE]") {
		t.Errorf("the rest of the trial stream: %q, %v", rest, err)
	}
}

// One server may serve both versions (a vLLM with the shadow as a LoRA adapter). A shadow
// adapter that fails every mirror must not eject the server the clients' own requests go to:
// a shadow never changes the client's answer, and an ejected server answers nobody.
func TestShadowFailuresLeaveASharedServerInService(t *testing.T) {
	tokens := withAdminTokens(t)
	b, mirrors := adapterServer(t)
	base, adapter := b, b
	base.Model, adapter.Model = "base", "adapter"
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		healthConfig(2)(c)
	}, model("chat", "v1", version("v1", base), version("v2", adapter))))
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)
	for i := range 6 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatAs("u", false)); res.status != 200 {
			t.Fatalf("request %d: status %d %s (mirrors so far: %d)", i, res.status, res.body, mirrors.Load())
		}
		waitFor(t, "the mirror's answer", func() bool { return mirrors.Load() == int64(i+1) })
		g.waitMetric(t, "llmgate_backend_in_flight", map[string]string{"backend": b.URL}, "= 0", func(v float64) bool { return v == 0 })
	}
}

// The same when the mirrored request went to the canary: the shadow's server is the stable's,
// which serves the rest of the alias's clients.
func TestShadowFailuresLeaveTheStablesServerInService(t *testing.T) {
	tokens := withAdminTokens(t)
	b, mirrors := adapterServer(t)
	base, adapter := b, b
	base.Model, adapter.Model = "base", "adapter"
	canary := startFake(t, fakellm.Options{Model: "m3"})
	g := startGateway(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		healthConfig(2)(c)
	}, model("chat", "v1", version("v1", base), version("v2", adapter), version("v3", canary.backend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v3","canary_percent":100}`)
	g.write(t, "PUT", "/admin/models/chat/shadow", `{"version":"v2","percent":100}`)
	stableUp := func() float64 {
		up, _ := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_backend_up", map[string]string{"backend": b.URL, "version": "v1"})
		return up
	}
	for i := range 4 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatAs("u", false)); res.status != 200 {
			t.Fatalf("request %d: status %d %s", i, res.status, res.body)
		}
		// An ejected server gets no more mirrors: wait for this one's answer or the ejection.
		waitFor(t, "the mirror's answer", func() bool { return mirrors.Load() == int64(i+1) || stableUp() == 0 })
		g.waitMetric(t, "llmgate_backend_in_flight", map[string]string{"backend": b.URL}, "= 0", func(v float64) bool { return v == 0 })
	}
	if up := stableUp(); up != 1 {
		t.Fatalf("llmgate_backend_up of the stable's server = %v after failed mirrors of canary requests, want 1", up)
	}
	if res := g.do(t, "POST", "/v1/chat/completions", `{"model":"chat@v1","messages":[{"role":"user","content":"hi"}]}`); res.status != 200 {
		t.Fatalf("a request to the stable: status %d %s", res.status, res.body)
	}
}

// adapterServer is one server with a base model that answers and a LoRA adapter ("adapter")
// that fails every request with 500; mirrors counts the requests for the adapter.
func adapterServer(t *testing.T) (config.Backend, *atomic.Int64) {
	mirrors := &atomic.Int64{}
	b := rawBackend(t, func(c net.Conn) {
		requestsOn(c, func(_ int, req *http.Request, body []byte) bool {
			if strings.Contains(string(body), `"model":"adapter"`) {
				mirrors.Add(1)
				writeJSONReply(c, "500 Internal Server Error", "", `{"error":{"message":"adapter failed to load","type":"InternalServerError","param":null,"code":500}}`)
				return true
			}
			writeJSONReply(c, "200 OK", "", `{"id":"x","object":"chat.completion","created":1,"model":"base","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
			return true
		})
	})
	return b, mirrors
}

// A backend that lost its model (an Ollama whose model was removed, a vLLM restarted under
// another name) still passes its health probe, and answers 404 model-not-found. After
// health.failure_threshold such answers it gets none of that model's requests, which would
// each pay a round trip there before their retry; the same server's other models keep it.
func TestBackendWithoutItsModelLeavesThePool(t *testing.T) {
	t.Parallel()
	good := startFake(t, fakellm.Options{Model: "m1"})
	lost := startFake(t, fakellm.Options{Model: "m2"})
	gone := lost.backend()
	gone.Model = "gone" // what chat's backend served before its restart; it serves m2 now
	g := startGateway(t, newConfig(t, healthConfig(2),
		model("chat", "v1", version("v1", good.backend(), gone)),
		model("code", "v1", version("v1", lost.backend()))))
	for i := range 20 {
		if res := g.do(t, "POST", "/v1/chat/completions", chatAs("u", false)); res.status != 200 {
			t.Fatalf("request %d: %d %s", i, res.status, res.body)
		}
	}
	if n := lost.Requests(); n != 2 {
		t.Errorf("the backend without chat's model got %d of 20 requests, want 2 (threshold 2, then out)", n)
	}
	up := func(alias string) float64 {
		v, found := metricValue(parseMetrics(t, g.metrics(t)), "llmgate_backend_up", map[string]string{"model": alias, "backend": lost.URL})
		if !found {
			t.Fatalf("no llmgate_backend_up for %s on %s", alias, lost.URL)
		}
		return v
	}
	if chat, code := up("chat"), up("code"); chat != 0 || code != 1 {
		t.Errorf("llmgate_backend_up of the server for chat = %v, for code = %v; want 0 and 1", chat, code)
	}
	body := strings.Replace(chatAs("u", false), `"model":"chat"`, `"model":"code"`, 1)
	if res := g.do(t, "POST", "/v1/chat/completions", body); res.status != 200 {
		t.Errorf("the same server's other model: %d %s", res.status, res.body)
	}
	waitFor(t, "a log line saying the backend lost its model", func() bool {
		return strings.Contains(g.logs.String(), `"msg":"backend does not serve its model"`)
	})
}
