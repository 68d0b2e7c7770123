package gateway_test

// The e2e harness: a gateway on loopback listeners in front of fakellm servers, configured in
// code, with the clients a user would point at it (go-openai, net/http) and readers for what a
// user can observe (response headers, /metrics, the JSON log).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/router/store"
)

// waitTimeout bounds every polling wait; the conditions normally hold within milliseconds,
// and a passing test never waits for it. The rollout tests wait for a few hundred requests
// through the gateway (TestRollout drives 300 or more), which under -race on a loaded 2-core
// machine took longer than 10 seconds now and then.
const waitTimeout = 30 * time.Second

// fake is a fakellm server on a loopback port.
type fake struct {
	*fakellm.Server
	URL    string // http://127.0.0.1:port
	Kind   string // config.KindVLLM or config.KindOllama
	Model  string // the name it serves the model under
	accept atomic.Int64
	open   atomic.Int64 // connections accepted and not yet closed
}

// startFake starts a fakellm server; opts.Flavor picks vLLM (default) or Ollama.
func startFake(t testing.TB, opts fakellm.Options) *fake {
	t.Helper()
	if opts.Model == "" {
		opts.Model = "fake-model"
	}
	f := &fake{Server: fakellm.New(opts), Kind: config.KindVLLM, Model: opts.Model}
	if opts.Flavor == "ollama" {
		f.Kind = config.KindOllama
	}
	ln := listen(t)
	f.URL = "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- f.Serve(&countingListener{Listener: ln, f: f}) }()
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("fakellm Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("fakellm Serve: %v", err)
		}
	})
	return f
}

// backend is f as a config backend.
func (f *fake) backend() config.Backend {
	return config.Backend{URL: f.URL, Kind: f.Kind, Model: f.Model}
}

// countingListener counts the connections a fake accepted and still has open, so tests can see
// that the gateway dropped a backend connection (the backend then stops generating).
type countingListener struct {
	net.Listener
	f *fake
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.f.accept.Add(1)
	l.f.open.Add(1)
	return &countedConn{Conn: c, f: l.f}, nil
}

type countedConn struct {
	net.Conn
	f    *fake
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.f.open.Add(-1) })
	return c.Conn.Close()
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// postChat posts body to /v1/chat/completions under c (cancel it to leave, as a client that
// disconnects) and returns the response as soon as its headers are in: a stream's events are
// still to be read from its body.
func (g *gw) postChat(t testing.TB, c context.Context, body string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(c, "POST", g.URL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := g.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// coalescedPair opens two identical streams of body, a leader and a follower coalesced onto
// its flight, and returns them with leave, which makes the leader's client leave.
func (g *gw) coalescedPair(t testing.TB, body string) (leader, follower *http.Response, leave func()) {
	t.Helper()
	leaderCtx, leave := context.WithCancel(ctx(t))
	t.Cleanup(leave)
	// The leader's headers come with its first event, after the backend's prefill: the
	// follower joins the flight before that.
	type answer struct {
		resp *http.Response
		err  error
	}
	lc := make(chan answer, 1)
	go func() {
		req, err := http.NewRequestWithContext(leaderCtx, "POST", g.URL+"/v1/chat/completions", strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			var a answer
			a.resp, a.err = g.http.Do(req)
			lc <- a
			return
		}
		lc <- answer{err: err}
	}()
	g.waitMetric(t, "llmgate_cache_flights_in_flight", nil, ">= 1", func(v float64) bool { return v >= 1 })
	follower = g.postChat(t, ctx(t), body)
	t.Cleanup(func() { follower.Body.Close() })
	a := <-lc
	if a.err != nil {
		t.Fatalf("the leader: %v", a.err)
	}
	leader = a.resp
	if got := [2]string{leader.Header.Get("X-Llmgate-Cache"), follower.Header.Get("X-Llmgate-Cache")}; got != [2]string{"miss", "coalesced"} {
		t.Fatalf("x-llmgate-cache %v, want [miss coalesced]", got)
	}
	return leader, follower, leave
}

// rawBackend serves each connection to a vLLM-kind backend with serve, on a goroutine of its
// own, for tests that need the wire itself (a connection cut mid-answer, kept alive, reset).
// The listener closes, and the accepting goroutine ends, when the test does.
func rawBackend(t testing.TB, serve func(c net.Conn)) config.Backend {
	t.Helper()
	ln := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "m"}
}

// silentBackend accepts connections and never answers: a backend stuck before its first byte.
func silentBackend(t testing.TB) config.Backend {
	t.Helper()
	gone := make(chan struct{})
	b := rawBackend(t, func(c net.Conn) {
		<-gone
		c.Close()
	})
	t.Cleanup(func() { close(gone) }) // before rawBackend's own: its connections close first
	b.Model = "silent"
	return b
}

// requestsOn serves a rawBackend connection: it reads HTTP/1.1 requests from c and calls answer
// with each one's number on the connection (from 0) and its body; answer writes its reply to c
// and returns false to close the connection, which also closes when the client closes it.
func requestsOn(c net.Conn, answer func(n int, req *http.Request, body []byte) bool) {
	defer c.Close()
	rd := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(rd)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		if !answer(n, req, body) {
			return
		}
	}
}

// writeJSONReply writes an HTTP/1.1 reply with a JSON body to c; status is a status line's
// code and text ("200 OK"), headers are more header lines, each ending in CRLF.
func writeJSONReply(c net.Conn, status, headers, body string) {
	fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", status, headers, len(body), body)
}

// closedBackend is a loopback port nothing listens on: connections are refused. The port stays
// bound until the test ends (see refusedAddr), so a server another test starts in parallel
// cannot take it and answer in the dead backend's place.
func closedBackend(t testing.TB) config.Backend {
	t.Helper()
	return config.Backend{URL: "http://" + refusedAddr(t), Kind: config.KindVLLM, Model: "gone"}
}

// cannedBackend answers every request with status, contentType and body as given.
func cannedBackend(t testing.TB, status int, header http.Header, body string) config.Backend {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return config.Backend{URL: "http://" + ln.Addr().String(), Kind: config.KindVLLM, Model: "canned"}
}

// model and version build config in code.
func model(alias, stable string, versions ...config.Version) config.Model {
	return config.Model{Alias: alias, Stable: stable, Versions: versions}
}

func version(name string, backends ...config.Backend) config.Version {
	return config.Version{Version: name, Backends: backends}
}

// newConfig returns a validated config for models. Probes are effectively off (hourly) so the
// backends see only the tests' traffic; edit may adjust timeouts and limits.
func newConfig(t testing.TB, edit func(*config.Config), models ...config.Model) *config.Config {
	t.Helper()
	cfg := &config.Config{
		Listen: "127.0.0.1:0",
		Admin:  config.Admin{Listen: "127.0.0.1:0"},
		Health: config.HealthCheck{Interval: time.Hour},
		Models: models,
	}
	if edit != nil {
		edit(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// gw is a running gateway.
type gw struct {
	*gateway.Gateway
	URL   string // data plane, http://127.0.0.1:port
	Admin string // admin listener
	logs  *syncBuffer
	http  *http.Client
}

// startGateway serves cfg on loopback listeners until the test ends, with its deploy state in
// memory.
func startGateway(t testing.TB, cfg *config.Config) *gw {
	t.Helper()
	return startGatewayOpts(t, cfg, gateway.Options{Store: store.NewMemory()})
}

// startGatewayOpts is startGateway with opts (for a store other than the in-memory one).
func startGatewayOpts(t testing.TB, cfg *config.Config, opts gateway.Options) *gw {
	t.Helper()
	logs := &syncBuffer{}
	opts.LogOutput = logs
	g, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	data, admin := listen(t), listen(t)
	served := make(chan error, 2)
	go func() { served <- g.Serve(data) }()
	go func() { served <- g.ServeAdmin(admin) }()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := g.Close(); err != nil {
			t.Errorf("gateway Close: %v", err)
		}
		for range 2 {
			if err := <-served; err != nil {
				t.Errorf("gateway Serve: %v", err)
			}
		}
	})
	return &gw{
		Gateway: g,
		URL:     "http://" + data.Addr().String(),
		Admin:   "http://" + admin.Addr().String(),
		logs:    logs,
		http:    &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}
}

// recorder is an http.RoundTripper for go-openai that adds headers to every request and keeps
// the response headers of the last one, which the typed client does not expose.
type recorder struct {
	next http.RoundTripper
	add  http.Header
	mu   sync.Mutex
	last http.Header
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range r.add {
		req.Header[k] = v
	}
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.last = resp.Header.Clone()
		r.mu.Unlock()
	}
	return resp, err
}

// header returns the response headers of the last request.
func (r *recorder) header() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// receivedBody decodes fakellm's echo of the body it received (needs X-Fakellm-Echo).
func receivedBody(t testing.TB, h http.Header) []byte {
	t.Helper()
	enc := h.Get("X-Fakellm-Received-Body")
	if enc == "" {
		t.Fatalf("no X-Fakellm-Received-Body in %v; was X-Fakellm-Echo sent?", h)
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatalf("X-Fakellm-Received-Body: %v", err)
	}
	return b
}

// receivedHeaders decodes fakellm's echo of the headers it received, lower-cased names.
func receivedHeaders(t testing.TB, h http.Header) map[string]string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(h.Get("X-Fakellm-Received-Headers"))
	if err != nil {
		t.Fatalf("X-Fakellm-Received-Headers: %v", err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("X-Fakellm-Received-Headers %q: %v", b, err)
	}
	return m
}

// client returns a go-openai client for the gateway; headers come in name, value pairs.
func (g *gw) client(headers ...string) (*openai.Client, *recorder) {
	rec := &recorder{next: g.http.Transport, add: http.Header{}}
	for i := 0; i+1 < len(headers); i += 2 {
		rec.add.Set(headers[i], headers[i+1])
	}
	cfg := openai.DefaultConfig("sk-client-key")
	cfg.BaseURL = g.URL + "/v1"
	cfg.HTTPClient = &http.Client{Transport: rec, Timeout: 30 * time.Second}
	return openai.NewClientWithConfig(cfg), rec
}

// response is what a raw HTTP client saw.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one raw request to the data plane; headers come in name, value pairs.
func (g *gw) do(t testing.TB, method, path, body string, headers ...string) response {
	t.Helper()
	return doURL(t, g.http, method, g.URL+path, body, headers...)
}

func doURL(t testing.TB, c *http.Client, method, url, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// apiError is the OpenAI error envelope as raw JSON, so tests can check the JSON types.
type apiError struct {
	Message json.RawMessage `json:"message"`
	Type    json.RawMessage `json:"type"`
	Param   json.RawMessage `json:"param"`
	Code    json.RawMessage `json:"code"`
}

// envelope parses body as {"error":{...}} and checks the member types OpenAI's SDKs rely on:
// message and type strings, param and code string or null. It returns type, param and code
// ("" for null).
func envelope(t testing.TB, body []byte) (typ, param, code string) {
	t.Helper()
	var e struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("not an OpenAI error envelope: %s (%v)", body, err)
	}
	var msg string
	if err := json.Unmarshal(e.Error.Message, &msg); err != nil || msg == "" {
		t.Errorf("error.message = %s, want a non-empty string", e.Error.Message)
	}
	if err := json.Unmarshal(e.Error.Type, &typ); err != nil || typ == "" {
		t.Errorf("error.type = %s, want a non-empty string", e.Error.Type)
	}
	param = stringOrNull(t, "param", e.Error.Param)
	code = stringOrNull(t, "code", e.Error.Code)
	return typ, param, code
}

func stringOrNull(t testing.TB, name string, raw json.RawMessage) string {
	t.Helper()
	if raw == nil {
		t.Errorf("error.%s is missing, want a string or null", name)
		return ""
	}
	if string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Errorf("error.%s = %s, want a string or null", name, raw)
	}
	return s
}

// asAPIError returns err as go-openai's typed error or fails the test.
func asAPIError(t testing.TB, err error) *openai.APIError {
	t.Helper()
	var ae *openai.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got error %T %v, want *openai.APIError", err, err)
	}
	return ae
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func codeString(code any) string {
	s, _ := code.(string)
	return s
}

// events splits an SSE body into its events, as the client received them.
func events(body []byte) []string {
	var out []string
	for _, ev := range bytes.Split(body, []byte("\n\n")) {
		if s := strings.TrimSpace(string(ev)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// waitFollowers waits until n requests wait on another's backend call (coalescing.followers in
// GET /admin/cache).
func (g *gw) waitFollowers(t *testing.T, what string, n int) {
	t.Helper()
	waitFor(t, what, func() bool {
		var v struct {
			Coalescing struct{ Followers int } `json:"coalescing"`
		}
		_ = json.Unmarshal(g.admin(t, "GET", "/admin/cache", "cache-admin").body, &v)
		return v.Coalescing.Followers == n
	})
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		<-tick.C
	}
}

// metrics scrapes the admin listener's /metrics.
func (g *gw) metrics(t testing.TB) string {
	t.Helper()
	res := doURL(t, g.http, "GET", g.Admin+"/metrics", "")
	if res.status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", res.status, res.body)
	}
	return string(res.body)
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the samples of Prometheus text output, failing on lines it cannot read.
func parseMetrics(t testing.TB, text string) []sample {
	t.Helper()
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("metrics line without value: %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series := line[:sp]
		s := sample{name: series, labels: map[string]string{}, value: v}
		if i := strings.IndexByte(series, '{'); i >= 0 {
			s.name = series[:i]
			rest := strings.TrimSuffix(series[i+1:], "}")
			for rest != "" {
				eq := strings.IndexByte(rest, '=')
				if eq < 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
					t.Fatalf("metrics line %q: bad labels", line)
				}
				name := rest[:eq]
				val, n, ok := unquotePrefix(rest[eq+1:])
				if !ok {
					t.Fatalf("metrics line %q: bad label value", line)
				}
				s.labels[name] = val
				rest = strings.TrimPrefix(rest[eq+1+n:], ",")
			}
		}
		out = append(out, s)
	}
	return out
}

// unquotePrefix reads the quoted string at the start of s; n is its length with the quotes.
func unquotePrefix(s string) (val string, n int, ok bool) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			return v, i + 1, err == nil
		}
	}
	return "", 0, false
}

// metricValue returns the sum of the samples named name whose labels include want.
func metricValue(samples []sample, name string, want map[string]string) (sum float64, found bool) {
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		sum += s.value
		found = true
	}
	return sum, found
}

// waitMetric polls /metrics until the series sum satisfies cond, and returns it.
func (g *gw) waitMetric(t testing.TB, name string, labels map[string]string, what string, cond func(float64) bool) float64 {
	t.Helper()
	var v float64
	waitFor(t, name+" "+what, func() bool {
		var found bool
		v, found = metricValue(parseMetrics(t, g.metrics(t)), name, labels)
		return found && cond(v)
	})
	return v
}

// syncBuffer is the gateway's log output; the gateway writes it from its own goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines closes the gateway, which flushes its log, and returns the request log lines,
// failing on a line that is not JSON.
func (g *gw) logLines(t testing.TB) []map[string]any {
	t.Helper()
	if err := g.Close(); err != nil {
		t.Fatalf("gateway Close: %v", err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(g.logs.String()), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// chatRequest is a small chat request for alias.
func chatRequest(alias string, maxTokens int) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{
		Model:     alias,
		MaxTokens: maxTokens,
		Messages:  []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello in a few words."}},
	}
}

// ctx returns a context that ends with the test.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// twoVersions is the usual deployment: alias "chat" with stable v1 on a vLLM backend and v2 on
// an Ollama backend, each serving the model under its own name.
type twoVersions struct {
	gw     *gw
	v1, v2 *fake
}

func startTwoVersions(t testing.TB, edit func(*config.Config)) *twoVersions {
	t.Helper()
	// v1 also answers embeddings; like vLLM it refuses "dimensions" unless its model is
	// declared matryoshka, and the passthrough tests send dimensions.
	v1 := startFake(t, fakellm.Options{Model: "meta-llama/Llama-3.1-8B-Instruct", Seed: 1, Matryoshka: true})
	v2 := startFake(t, fakellm.Options{Flavor: "ollama", Model: "llama3.2:latest", Seed: 2})
	cfg := newConfig(t, edit, model("chat", "v1", version("v1", v1.backend()), version("v2", v2.backend())))
	return &twoVersions{gw: startGateway(t, cfg), v1: v1, v2: v2}
}

// createChat sends req buffered or as a stream (opened and closed at once) and returns the
// error the client saw, for tests about failures before the first byte.
func createChat(t testing.TB, c *openai.Client, req openai.ChatCompletionRequest, stream bool) error {
	if !stream {
		_, err := c.CreateChatCompletion(ctx(t), req)
		return err
	}
	req.Stream = true
	st, err := c.CreateChatCompletionStream(ctx(t), req)
	if st != nil {
		st.Close()
	}
	return err
}
