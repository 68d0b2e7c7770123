// Package fakellm is a simulated GPU inference backend for tests, the demo and
// benchmarks. It speaks the OpenAI-compatible wire formats of vLLM and Ollama
// byte for byte (shapes recorded in testdata/), generates deterministic text,
// simulates time to first token and decode speed, and injects failures on
// request, so gateway tests can check what reached the backend and how the
// gateway copes with what came back.
//
// Per-request control headers (all optional):
//
//	X-Fakellm-Status: 503            answer with that status in the flavor's error shape
//	X-Fakellm-Disconnect-After: N    stream: drop the connection after N content events
//	X-Fakellm-Stream-Error-After: N  stream: fail after N content events as the flavor does
//	                                 (vLLM: an error event, then [DONE]; Ollama: an empty
//	                                 chunk, then the end of the body without [DONE], or a
//	                                 plain 500 when N is 0)
//	X-Fakellm-TTFT: 200ms            override Options.TTFT
//	X-Fakellm-Echo: 1                return X-Fakellm-Received-Body and -Headers
//	X-Fakellm-Status-Unless-Retry: 429
//	                                 answer with that status and Retry-After: 0 unless
//	                                 x-stainless-retry-count (the OpenAI SDKs' retry
//	                                 counter) is > 0, so an SDK's retry succeeds
//
// X-Request-Id is always echoed back as X-Fakellm-Request-Id. The echo
// headers carry base64 of the whole body, so keep echoed bodies small or
// raise the reading client's header buffer (fasthttp defaults to 4 KiB).
package fakellm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Options configures a Server. The zero value is a usable vLLM backend.
type Options struct {
	Flavor          string        // "vllm" (default) or "ollama"
	Model           string        // served model name; default "fake-model"
	TTFT            time.Duration // delay before the first content token
	TokensPerSecond float64       // decode speed after the first token; 0 = no delay
	OutputTokens    int           // words generated when not capped by max_tokens; default 16
	ErrorRate       float64       // share (0..1) of inference requests answered with a 500
	DisconnectRate  float64       // share (0..1) of streams cut mid-way without [DONE]
	Seed            int64         // seeds generated text, ids and injected faults
	EmbeddingDim    int           // embedding vector length; default 8
	// Matryoshka declares the embedding model matryoshka-trained, so vLLM
	// honours the embeddings "dimensions" field (see dimensionsError).
	Matryoshka bool
}

// Validate reports whether o can build a Server.
func (o Options) Validate() error {
	switch {
	case o.Flavor != "" && o.Flavor != "vllm" && o.Flavor != "ollama":
		return errors.New(`fakellm: flavor must be "vllm" or "ollama", got "` + o.Flavor + `"`)
	// Written so that NaN fails too: it compares false with everything, and passed as no
	// faults and no decode delay.
	case !(o.ErrorRate >= 0 && o.ErrorRate <= 1):
		return errors.New("fakellm: error-rate must be within 0..1")
	case !(o.DisconnectRate >= 0 && o.DisconnectRate <= 1):
		return errors.New("fakellm: disconnect-rate must be within 0..1")
	case !(o.TokensPerSecond >= 0) || o.OutputTokens < 0 || o.EmbeddingDim < 0 || o.TTFT < 0:
		return errors.New("fakellm: durations, rates and sizes must not be negative")
	}
	return nil
}

// RegisterFlags registers the fakellm flags on fs; the returned Options are
// filled in when fs is parsed.
func RegisterFlags(fs *flag.FlagSet) *Options {
	o := &Options{}
	fs.StringVar(&o.Flavor, "flavor", "vllm", `wire format to speak: "vllm" or "ollama"`)
	fs.StringVar(&o.Model, "model", "fake-model", "served model name")
	fs.DurationVar(&o.TTFT, "ttft", 0, "time to first token")
	fs.Float64Var(&o.TokensPerSecond, "tokens-per-second", 0, "decode speed after the first token (0 = as fast as possible)")
	// As with --embedding-dim: in Options 0 is the default, so a flag of 0 would silently serve 16.
	o.OutputTokens = 16
	positiveInt(fs, &o.OutputTokens, "output-tokens", "`tokens` generated per completion unless max_tokens is lower, at least 1 (default 16)")
	fs.Float64Var(&o.ErrorRate, "error-rate", 0, "share of inference requests answered with a 500 (0..1)")
	fs.Float64Var(&o.DisconnectRate, "disconnect-rate", 0, "share of streams cut mid-way without [DONE] (0..1)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed for generated text and injected faults")
	// In Options 0 is the default length: a flag of 0 would silently serve 8 dimensions.
	o.EmbeddingDim = 8
	positiveInt(fs, &o.EmbeddingDim, "embedding-dim", "embedding vector `length`, at least 1 (default 8)")
	fs.BoolVar(&o.Matryoshka, "matryoshka", false, `vllm: the embedding model is matryoshka-trained and honours "dimensions"`)
	return o
}

// Server is a fake vLLM or Ollama backend. Its methods are safe for
// concurrent use.
type Server struct {
	opts   Options
	ollama bool
	itl    time.Duration // inter-token latency

	modelJSON   []byte // JSON-quoted Options.Model
	shortJSON   []byte // Ollama: JSON-quoted Model without ":latest"
	fingerprint []byte // vLLM system_fingerprint, JSON-quoted
	modified    time.Time

	srv      *fasthttp.Server
	requests atomic.Int64
	seq      atomic.Uint64
	forced   atomic.Int32
	done     chan struct{} // closed by Close: ends sleeps and streams
	stop     sync.Once

	mu      sync.Mutex
	closed  bool
	lns     []net.Listener
	serving sync.WaitGroup

	// streamEnd, when set by tests, is called as each stream finishes with
	// the number of content events sent and whether [DONE] went out.
	streamEnd func(contents int, completed bool)
}

// New returns a Server for opts; it panics if opts.Validate fails.
func New(opts Options) *Server {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if opts.Flavor == "" {
		opts.Flavor = "vllm"
	}
	if opts.Model == "" {
		opts.Model = "fake-model"
	}
	if opts.OutputTokens == 0 {
		opts.OutputTokens = 16
	}
	if opts.EmbeddingDim == 0 {
		opts.EmbeddingDim = 8
	}
	s := &Server{
		opts:      opts,
		ollama:    opts.Flavor == "ollama",
		modelJSON: appendJSONString(nil, opts.Model),
		shortJSON: appendJSONString(nil, strings.TrimSuffix(opts.Model, ":latest")),
		modified:  time.Date(2025, 9, 30, 14, 2, 11, 408214000, time.UTC),
		done:      make(chan struct{}),
	}
	if opts.TokensPerSecond > 0 {
		s.itl = time.Duration(float64(time.Second) / opts.TokensPerSecond)
	}
	// vLLM's default --fingerprint-mode full: vllm-<version>-<hash8>.
	fp := appendHexID([]byte("vllm-"+vllmVersion+"-"), fnv1a64(fnvOffset, []byte(opts.Model)))
	s.fingerprint = appendJSONString(nil, string(fp[:len("vllm-"+vllmVersion+"-")+8]))
	s.srv = &fasthttp.Server{
		Handler:     s.handle,
		IdleTimeout: 30 * time.Second,
		// Uvicorn announces itself; Go's net/http (Ollama) sends no Server.
		NoDefaultServerHeader: s.ollama,
		// Clients hanging up mid-stream is normal traffic for a fake
		// backend; fasthttp would log each one.
		Logger: quietLogger{},
		// Uvicorn and Go's net/http read a body of any size; fasthttp's
		// default 4 MiB would refuse (and cut off mid-upload) a long prompt
		// that a real backend takes.
		MaxRequestBodySize: 256 << 20,
	}
	if !s.ollama {
		s.srv.Name = "uvicorn"
	}
	return s
}

// Serve accepts connections on ln until Close; it returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	l := &onceCloseListener{Listener: ln}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.lns = append(s.lns, l)
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()
	err := s.srv.Serve(l)
	if s.isClosed() {
		return nil
	}
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the listeners, ends in-flight streams and delays early, and
// waits up to five seconds for connections to close. It returns at once when
// clients have hung up; idle keep-alive connections cost up to 100ms more.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	lns := s.lns
	s.mu.Unlock()
	s.stop.Do(func() { close(s.done) })
	// fasthttp's Shutdown re-checks for open connections only every 100ms,
	// and counts each Serve loop as one. Closing the listeners first, then
	// giving connections whose clients already hung up a moment to go, lets
	// Shutdown return at once: a test suite closes many of these servers.
	for _, l := range lns {
		_ = l.Close()
	}
	s.serving.Wait()
	for i := 0; i < 20 && s.srv.GetOpenConnectionsCount() > 0; i++ {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.ShutdownWithContext(ctx)
}

// onceCloseListener lets both Close and fasthttp's Shutdown close ln.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// Handler returns the request handler, for use with any fasthttp server or
// listener (e.g. fasthttputil.InmemoryListener).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Requests returns how many inference requests (chat, completions,
// embeddings) reached the server, whatever their outcome. Probes and model
// listings are not counted, so tests can assert on backend traffic.
func (s *Server) Requests() int64 { return s.requests.Load() }

// ForceStatus makes every later request, on every path including health
// probes, answer with code in the flavor's error shape; 0 restores normal
// service. It simulates a backend that goes unhealthy.
func (s *Server) ForceStatus(code int) { s.forced.Store(int32(code)) }

// rand returns the next value of the server's fault and id sequence.
func (s *Server) rand() uint64 { return mix(uint64(s.opts.Seed) ^ s.seq.Add(1)*0x9e3779b97f4a7c15) }

func (s *Server) chance(p float64) bool {
	return p > 0 && float64(s.rand()>>11)/(1<<53) < p
}

// Control header names in fasthttp's canonical form; PeekCanonical skips the
// per-lookup normalisation Peek does.
var (
	hdrRequestID  = []byte("X-Request-Id")
	hdrEcho       = []byte("X-Fakellm-Echo")
	hdrStatus     = []byte("X-Fakellm-Status")
	hdrTTFT       = []byte("X-Fakellm-Ttft")
	hdrDisconnect = []byte("X-Fakellm-Disconnect-After")
	hdrStreamErr  = []byte("X-Fakellm-Stream-Error-After")

	hdrStatusUnlessRetry = []byte("X-Fakellm-Status-Unless-Retry")
)

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	if id := h.PeekCanonical(hdrRequestID); len(id) > 0 {
		ctx.Response.Header.SetBytesV("X-Fakellm-Request-Id", id)
	}
	if len(h.PeekCanonical(hdrEcho)) > 0 {
		setEcho(ctx)
	}
	path := ctx.Path()
	post := ctx.IsPost()
	var ep endpoint
	inference := true
	switch string(path) {
	case "/v1/chat/completions":
		ep = epChat
	case "/v1/completions":
		ep = epCompletion
	case "/v1/embeddings":
		ep = epEmbeddings
	default:
		inference = false
	}
	if inference && post {
		s.requests.Add(1)
	}
	code := int(s.forced.Load())
	if v := h.PeekCanonical(hdrStatus); len(v) > 0 {
		if n, err := fasthttp.ParseUint(v); err == nil {
			code = n
		}
	}
	retryAfter0 := false
	if v := h.PeekCanonical(hdrStatusUnlessRetry); len(v) > 0 && code == 0 {
		n, err := fasthttp.ParseUint(v)
		retries, rerr := fasthttp.ParseUint(h.Peek("X-Stainless-Retry-Count"))
		if err == nil && (rerr != nil || retries == 0) {
			code, retryAfter0 = n, true
		}
	}
	if code != 0 {
		s.writeError(ctx, code, "", "fakellm: forced status "+strconv.Itoa(code), "")
		if retryAfter0 {
			ctx.Response.Header.Set("Retry-After", "0") // retry at once: tests stay fast
		}
		return
	}
	if inference {
		if !post {
			s.notAllowed(ctx)
			return
		}
		s.inference(ctx, ep)
		return
	}
	s.serveInfo(ctx, path)
}

// serveInfo answers the probe and listing endpoints.
func (s *Server) serveInfo(ctx *fasthttp.RequestCtx, path []byte) {
	get := ctx.IsGet()
	r := acquireRequest()
	defer releaseRequest(r)
	b := r.buf[:0]
	switch {
	case string(path) == "/v1/models" && get && s.ollama:
		b = s.ollamaModels(b)
	case string(path) == "/v1/models" && get:
		b = s.vllmModels(b, time.Now().Unix(), s.rand())
	case string(path) == "/health" && get && !s.ollama:
		ctx.SetStatusCode(fasthttp.StatusOK) // empty body, as vLLM's Response(status_code=200)
		return
	case string(path) == "/version" && get && !s.ollama:
		b = append(b, `{"version":"`+vllmVersion+`"}`...)
	case string(path) == "/api/version" && get && s.ollama:
		b = append(b, `{"version":"`+ollamaVersion+`"}`...)
	case string(path) == "/api/tags" && (get || ctx.IsHead()) && s.ollama:
		b = s.ollamaTags(b)
	case string(path) == "/" && (get || ctx.IsHead()) && s.ollama:
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("Ollama is running")
		return
	case !s.ollama && (string(path) == "/v1/models" || string(path) == "/health" || string(path) == "/version"):
		s.notAllowed(ctx)
		return
	default:
		s.notFound(ctx)
		return
	}
	r.buf = b
	if s.ollama && string(path) != "/v1/models" {
		// gin's c.JSON (server/routes.go); the OpenAI layer's ListWriter sets
		// plain application/json.
		ctx.SetContentType("application/json; charset=utf-8")
	} else {
		ctx.SetContentType("application/json")
	}
	ctx.SetBody(b)
}

// notFound mimics FastAPI's and gin's answers to unknown paths.
func (s *Server) notFound(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusNotFound)
	if s.ollama {
		ctx.SetContentType("text/plain")
		ctx.SetBodyString("404 page not found")
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"detail":"Not Found"}`)
}

// notAllowed: FastAPI answers 405 for a known path with the wrong method; gin
// (HandleMethodNotAllowed off) answers 404.
func (s *Server) notAllowed(ctx *fasthttp.RequestCtx) {
	if s.ollama {
		s.notFound(ctx)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"detail":"Method Not Allowed"}`)
}

// writeError answers with the flavor's error body. typ overrides vLLM's
// status-derived type; Ollama derives its type from the status alone.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, code int, typ, msg, param string) {
	r := acquireRequest()
	defer releaseRequest(r)
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	if code == fasthttp.StatusTooManyRequests || code == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	if s.ollama {
		r.buf = ollamaError(r.buf[:0], code, msg)
	} else {
		if typ == "" {
			typ = vllmErrorType(code)
		}
		r.buf = vllmError(r.buf[:0], code, typ, msg, param)
	}
	ctx.SetBody(r.buf)
}

// inference serves chat, completions and embeddings.
func (s *Server) inference(ctx *fasthttp.RequestCtx, ep endpoint) {
	r := acquireRequest()
	defer releaseRequest(r)
	if bad := r.parse(ctx.PostBody(), ep, s.ollama); bad != nil {
		// vLLM's RequestValidationError handler uses the HTTP phrase as type.
		typ := bad.typ
		if typ == "" {
			typ = "Bad Request"
		}
		s.writeError(ctx, fasthttp.StatusBadRequest, typ, bad.msg, bad.param)
		return
	}
	p := &r.rep
	p.model = s.modelJSON
	switch {
	case s.ollama && len(r.model) == 0:
		s.writeError(ctx, fasthttp.StatusBadRequest, "", "model is required", "")
		return
	case s.ollama && string(r.model) == s.opts.Model:
	case s.ollama && isLatestOf(r.model, s.opts.Model):
		p.model = s.shortJSON // Ollama echoes the name as requested
	case s.ollama:
		s.writeError(ctx, fasthttp.StatusNotFound, "", "model '"+string(r.model)+"' not found", "")
		return
	case r.hasModel && len(r.model) > 0 && string(r.model) != s.opts.Model:
		// vLLM serves its default model when the request names none.
		// OpenAIServing._check_model (vllm/entrypoints/openai/engine/serving.py) names param "model".
		s.writeError(ctx, fasthttp.StatusNotFound, "NotFoundError", "The model `"+string(r.model)+"` does not exist.", "model")
		return
	}
	if !s.ollama && r.suffix {
		// OpenAIServingCompletion.create_completion refuses a suffix (its models have
		// no fill-in-the-middle) after the model check, before tokenizing; Ollama
		// passes it to the model's template.
		s.writeError(ctx, fasthttp.StatusBadRequest, "BadRequestError", "suffix is not currently supported", "")
		return
	}
	if !s.ollama && ep != epEmbeddings {
		// Ollama truncates a prompt that does not fit its context instead.
		if msg, param := contextError(r); msg != "" {
			s.writeError(ctx, fasthttp.StatusBadRequest, "BadRequestError", msg, param)
			return
		}
	}
	if s.chance(s.opts.ErrorRate) {
		s.writeError(ctx, fasthttp.StatusInternalServerError, "InternalServerError", "fakellm: injected failure", "")
		return
	}
	if ep == epEmbeddings && !s.ollama && r.hasDims {
		if msg := s.dimensionsError(r.dims); msg != "" {
			s.writeError(ctx, fasthttp.StatusBadRequest, "BadRequestError", msg, "")
			return
		}
	}
	s.fillReply(ctx, r, ep)
	if ep == epEmbeddings {
		if s.ollama {
			r.buf = s.ollamaEmbeddings(r.buf[:0], r, p)
		} else {
			r.buf = s.vllmEmbeddings(r.buf[:0], r, p)
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(r.buf)
		return
	}
	ttft := s.opts.TTFT
	if v := ctx.Request.Header.PeekCanonical(hdrTTFT); len(v) > 0 {
		if d, err := time.ParseDuration(string(v)); err == nil {
			ttft = d
		}
	}
	if r.stream {
		s.startStream(ctx, r, ttft)
		return
	}
	delay := ttft
	if p.n > 1 {
		delay += time.Duration(p.n-1) * s.itl
	}
	if !s.sleep(delay) {
		s.writeError(ctx, fasthttp.StatusServiceUnavailable, "", "fakellm: shutting down", "")
		return
	}
	switch {
	case ep == epChat && s.ollama:
		r.buf = ollamaChat(r.buf[:0], p)
	case ep == epChat:
		r.buf = s.vllmChat(r.buf[:0], p)
	case s.ollama:
		r.buf = ollamaCompletion(r.buf[:0], p)
	default:
		r.buf = s.vllmCompletion(r.buf[:0], p)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(r.buf)
}

// fillReply sets the id, timing-independent plan and counts of r.rep.
func (s *Server) fillReply(ctx *fasthttp.RequestCtx, r *request, ep endpoint) {
	p := &r.rep
	p.ep = ep
	p.created = ctx.Time().Unix() // the server already read the clock
	p.prompt = r.promptWords
	p.usage, p.contUse, p.echo, p.logprobs = r.includeUsage, r.contUsage, r.echoPrompt, r.logprobs
	p.seed, p.prompts, p.perN = s.opts.Seed, r.prompts, r.choices
	p.choices = len(r.prompts) * r.choices // 0 for embeddings
	if p.choices > 0 {
		p.w = p.words(0)
	}
	p.n, p.finish = s.opts.OutputTokens, "stop"
	if r.maxTokens >= 0 && r.maxTokens < p.n {
		p.n, p.finish = r.maxTokens, "length"
	}
	id := r.id[:0]
	switch {
	case ep == epChat:
		id = append(id, "chatcmpl-"...)
	case ep == epCompletion:
		id = append(id, "cmpl-"...)
	default:
		id = append(id, "embd-"...)
	}
	if s.ollama {
		// Ollama: fmt.Sprintf("chatcmpl-%d", rand.Intn(999)).
		id = strconv.AppendUint(id, s.rand()%999, 10)
	} else if rid := ctx.Request.Header.PeekCanonical(hdrRequestID); len(rid) > 0 {
		// vLLM's _base_request_id takes X-Request-Id verbatim.
		id = append(id, rid...)
	} else {
		id = appendHexID(id, s.rand())
	}
	r.id = id
	p.id = id
}

// dimensionsError is vLLM's PoolingParams.verify for an embeddings request
// with "dimensions": a model not declared matryoshka (is_matryoshka in its
// config) refuses any value, because truncating its vectors "will lead to
// poor results"; a matryoshka model without a list of allowed sizes
// refuses values below 1. The ValueError reaches the client as a 400
// BadRequestError. fakellm's matryoshka model accepts every size, as vLLM
// does without matryoshka_dimensions.
func (s *Server) dimensionsError(d int) string {
	switch {
	case !s.opts.Matryoshka:
		return "Model \"" + s.opts.Model + "\" does not support matryoshka representation, changing output dimensions will lead to poor results."
	case d < 1:
		return "Dimensions must be greater than 0"
	}
	return ""
}

// appendVector appends one embedding as a JSON array or base64 string.
//
// A requested size below EmbeddingDim keeps the first r.dims components,
// renormalised to unit length: vLLM's embedding pooler slices
// [..., :dimensions] before normalising, and Ollama's EmbedHandler
// truncates and normalises again. A larger size yields the whole vector in
// both. fillEmbedding draws components in order and normalises last, so
// drawing r.dims of them is that truncation.
func (s *Server) appendVector(dst []byte, r *request, h uint64) []byte {
	dim := s.opts.EmbeddingDim
	if r.dims > 0 && r.dims < dim {
		dim = r.dims
	}
	r.vec = fillEmbedding(r.vec[:0], s.opts.Seed, h, dim)
	if r.base64 {
		raw := make([]byte, 0, 4*len(r.vec))
		for _, f := range r.vec {
			u := math.Float32bits(f)
			raw = append(raw, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, raw)
		return append(dst, '"')
	}
	dst = append(dst, '[')
	for i, f := range r.vec {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendFloat(dst, float64(f), 'g', -1, 32)
	}
	return append(dst, ']')
}

// sleep waits d, or less if the server is closing; it reports whether the
// full delay elapsed.
func (s *Server) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// setEcho records the exact body and headers received as response headers.
// Test-only path: allocations do not matter here.
func setEcho(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("X-Fakellm-Received-Body", base64.StdEncoding.EncodeToString(ctx.PostBody()))
	hdrs := map[string]string{}
	for k, v := range ctx.Request.Header.All() {
		name := strings.ToLower(string(k))
		if prev, ok := hdrs[name]; ok {
			hdrs[name] = prev + ", " + string(v)
			continue
		}
		hdrs[name] = string(v)
	}
	js, _ := json.Marshal(hdrs) // sorted keys: stable for tests
	ctx.Response.Header.Set("X-Fakellm-Received-Headers", base64.StdEncoding.EncodeToString(js))
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// isLatestOf reports whether name+":latest" == model, without allocating.
func isLatestOf(name []byte, model string) bool {
	return len(model) == len(name)+len(":latest") && strings.HasSuffix(model, ":latest") &&
		model[:len(name)] == string(name)
}

// positiveInt defines a flag whose value must be a whole number of at least 1, stored in *p.
func positiveInt(fs *flag.FlagSet, p *int, name, usage string) {
	fs.Func(name, usage, func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return errors.New("want a positive number")
		}
		*p = n
		return nil
	})
}
