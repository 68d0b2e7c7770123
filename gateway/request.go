package gateway

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/gateway/sse"
	"github.com/llmgate/llmgate/router"
)

// operation is the OpenAI endpoint a request targets.
type operation uint8

const (
	opChat operation = iota
	opCompletion
	opEmbeddings
	numOperations
)

var operationPaths = [numOperations]string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}

// operationNames follow gen_ai.operation.name.
var operationNames = [numOperations]string{"chat", "text_completion", "embeddings"}

// request is the per-request state of one proxied call. It is pooled: acquireRequest hands out a
// reset one, and releaseRequest returns it once the response (stream included) is finished.
// Nothing in it may point into the fasthttp.RequestCtx after the handler returns, which is why
// the body and ids are copied.
type request struct {
	op        operation
	start     time.Time
	requestID []byte
	body      []byte // the client's body, then the body sent upstream
	scratch   []byte // for rewriting the body
	model     []byte
	user      []byte
	stream    bool
	// modelStart and modelEnd span the model value in body; -1 once body has changed.
	modelStart, modelEnd int
	// clientUsage: the client asked for the usage chunk (stream_options.include_usage); when
	// false the gateway asks the backend anyway and drops that chunk from the client's stream.
	clientUsage bool
	// jsonOutput: the answer's content is JSON text (response_format json_object or
	// json_schema, vLLM's guided_json, or its structured_outputs json or json_object);
	// tokens: the answer spells its text a second time, as logprobs or vLLM's token ids, named by the member that asks for it ("" when none).
	jsonOutput bool
	tokens     string

	version *router.Version
	// canaryShare: the request was routed to its alias's canary by the split (not pinned), so
	// a canary that fails it before the first byte hands it to stable (see failoverToStable).
	canaryShare bool
	// failedOver: the canary failed the request, which stable now serves (see failoverToStable).
	failedOver bool
	// notOllama names what the request asks that Ollama's OpenAI API cannot honour (see
	// ollamaUnsupported), "" when nothing: its Ollama backends are not picked for it (see
	// excluded).
	notOllama string
	nChoices  int // the choices a chat or completion answer holds: n for each prompt
	backend   *router.Backend
	// hold is the request's use of backend from the attempt that answered 2xx until the answer
	// is done: forwardBuffered, or the end of the stream, reports on it and releases it.
	hold     router.Hold
	handles  *backendHandles
	attempts int
	tried    [config.MaxRetryAttempts + 1]*router.Backend // one per attempt retry.attempts allows, and stable's after a canary (failedOver)
	skip     []*router.Backend                            // what excluded returns when it is more than tried

	upstreamBody []byte // the body for one backend, when it differs from body (see prepareUpstream)
	upstreamReq  fasthttp.Request
	upstreamResp fasthttp.Response
	// answer holds the spans of answerMembers in a backend's 2xx answer that is no event
	// stream, found by scanAnswer on the attempt that answered (forwardBuffered reads them).
	answer     [4]jsonscan.Span
	upstreamAt time.Time // request sent to the backend that answered
	// failedAttempts is the time spent on the attempts before the latest (upstreamAt), which
	// all failed: waiting on them is not the gateway's overhead.
	failedAttempts time.Duration
	headersAt      time.Time // backend response headers received
	// upstreamErr is why the last backend that could not be reached or read failed, for the
	// log line (the client's error says only that the backend failed); upstreamErrBackend is
	// that backend, which is not r.backend when another backend answered on a retry.
	upstreamErr        error
	upstreamErrBackend *router.Backend

	status  int // sent to the client
	errCode string
	// eventStatus is the status a backend's error event after the stream's 200 would have had
	// before it, by the error's type (400 for invalid_request_error, 502 for a server error);
	// 0 when the stream had none.
	eventStatus  int
	inputTokens  int
	outputTokens int
	firstEventAt time.Time // the backend stream's first chunk (the model's time to first token)
	// firstSentAt is when the client was sent its first generated token: after firstEventAt
	// when the completion guard held the first text back (the server's time to first token).
	firstSentAt time.Time
	// Stream chunks that carry generated content (carriesTokens), for the time per output
	// token and, without usage, the completion's token count.
	tokenEvents  int
	firstTokenAt time.Time
	lastTokenAt  time.Time

	parser      fastjson.Parser
	sseReader   *sse.Reader     // reused across streams
	streamBody  streamBody      // the client's response body when streaming
	untilClose  *untilClose     // streamBody's wrapper for an HTTP/1.0 client (see sendUntilClose)
	root        *fastjson.Value // the parsed client body, valid until r.parser parses again
	guard       guardState
	streamGuard streamGuard
	stats       requestStats
	cache       cacheState
	gw          *Gateway
}

var requestPool = sync.Pool{New: func() any { return new(request) }}

func acquireRequest(g *Gateway) *request {
	r := requestPool.Get().(*request)
	r.gw = g
	return r
}

// maxPooledBody bounds the body buffers a pooled request keeps: most prompts fit, and one of
// tens of MB (or a compressed body that expanded) is not held in the pool after it.
const maxPooledBody = 1 << 20

func releaseRequest(r *request) {
	r.upstreamReq.Reset()
	r.upstreamResp.Reset()
	r.op, r.start, r.stream, r.clientUsage, r.jsonOutput, r.tokens = 0, time.Time{}, false, false, false, ""
	r.requestID, r.body, r.scratch, r.model, r.user = r.requestID[:0], r.body[:0], r.scratch[:0], r.model[:0], r.user[:0]
	if cap(r.body) > maxPooledBody { // a huge prompt's buffers are not kept for every request after it
		r.body = nil
	}
	if cap(r.scratch) > maxPooledBody {
		r.scratch = nil
	}
	if cap(r.upstreamBody) > maxPooledBody { // an Ollama backend's copy of the same prompt
		r.upstreamBody = nil
	}
	r.version, r.backend, r.handles, r.attempts, r.tried = nil, nil, nil, 0, [config.MaxRetryAttempts + 1]*router.Backend{}
	clear(r.skip) // a pooled request must not keep an old routing table alive
	r.canaryShare, r.failedOver, r.notOllama, r.nChoices, r.hold, r.skip = false, false, "", 0, router.Hold{}, r.skip[:0]
	r.upstreamAt, r.headersAt, r.failedAttempts, r.upstreamErr, r.upstreamErrBackend = time.Time{}, time.Time{}, 0, nil, nil
	r.status, r.errCode, r.eventStatus, r.inputTokens, r.outputTokens, r.tokenEvents = 0, "", 0, 0, 0, 0
	r.firstEventAt, r.firstTokenAt, r.lastTokenAt, r.firstSentAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	r.gw, r.root = nil, nil
	if r.guard.ag != nil {
		r.streamGuard.release(r.guard.ag)
	}
	r.guard.reset()
	r.stats.reset()
	r.cache.reset()
	requestPool.Put(r)
}

// readBody returns the client's body, decompressed when its Content-Encoding is gzip or
// deflate (some HTTP clients compress large prompts). The backend always gets the identity
// body the gateway rewrote, so the header is never forwarded (forwardRequestHeader). The
// decompressed body is bounded by limit, as a plain one is by the server, so a small
// compressed body cannot expand without bound. The result is valid until r.scratch is
// reused: decode copies it.
func (r *request) readBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	body := ctx.PostBody()
	enc := ctx.Request.Header.Peek("Content-Encoding")
	var zr io.Reader
	switch {
	case len(enc) == 0 || bytes.EqualFold(enc, []byte("identity")):
		return body, nil
	case bytes.EqualFold(enc, []byte("gzip")) || bytes.EqualFold(enc, []byte("x-gzip")):
		gz, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, errUndecodableBody
		}
		zr = gz
	case bytes.EqualFold(enc, []byte("deflate")) && isZlib(body):
		zl, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, errUndecodableBody
		}
		zr = zl
	case bytes.EqualFold(enc, []byte("deflate")):
		// "deflate" is the zlib format (RFC 9110 8.4.1.2), but some clients send the raw
		// deflate stream under that name, as browsers long accepted it.
		zr = flate.NewReader(bytes.NewReader(body))
	default:
		return nil, errUnsupportedEncoding
	}
	buf := bytes.NewBuffer(r.scratch[:0])
	n, err := buf.ReadFrom(io.LimitReader(zr, int64(limit)+1))
	r.scratch = buf.Bytes()
	switch {
	case err != nil:
		return nil, errUndecodableBody
	case n > int64(limit):
		return nil, errBodyTooLarge
	}
	return r.scratch, nil
}

// isZlib reports whether b starts with a zlib header (RFC 1950): deflate as its method and
// a header check that divides by 31.
func isZlib(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

var (
	errUndecodableBody     = badRequest("", "The request body could not be decompressed as its Content-Encoding says.")
	errUnsupportedEncoding = &apiError{status: fasthttp.StatusUnsupportedMediaType, typ: typeInvalidRequest,
		message: "Unsupported Content-Encoding: the request body may be sent as it is, or compressed with gzip or deflate."}
)

// decode reads the fields the gateway acts on and validates the body enough to give the client
// a precise 400. The body itself is kept byte for byte; only the fields the gateway must change
// are rewritten later, so vendor fields reach the backend untouched.
func (r *request) decode(body []byte) error {
	r.body = append(r.body[:0], body...)
	if len(r.body) == 0 {
		return badRequest("", "The request body is empty; expected a JSON object.")
	}
	v, err := parseJSON(&r.parser, r.body, &r.scratch)
	if err != nil {
		// fastjson's message is a chain of its parser's states; the client needs the fact.
		return errMalformedJSON
	}
	if v.Type() != fastjson.TypeObject {
		return badRequest("", "The request body must be a JSON object.")
	}
	r.root = v
	m := v.Get("model")
	if m == nil {
		return badRequest("model", "you must provide a model parameter")
	}
	if m.Type() != fastjson.TypeString || len(m.GetStringBytes()) == 0 {
		return badRequest("model", "'model' must be a non-empty string naming a model; GET /v1/models lists them.")
	}
	// The body is rewritten where jsonscan finds "model": a key written with escapes, or a
	// duplicate key, would make the parser and the rewrite disagree (and rewriteBody panic).
	r.modelStart, r.modelEnd = jsonscan.Find(r.body, "model")
	if r.modelStart < 0 || r.body[r.modelStart] != '"' {
		return badRequest("model", "The 'model' key must appear once, written without escapes.")
	}
	r.model = append(r.model[:0], m.GetStringBytes()...)
	if key := repeatedKey(v, r.op); key != nil {
		return badRequest(string(key), "The key '"+string(key)+"' appears more than once in an object of the request body; each key may appear once.")
	}
	if s := v.Get("stream"); s != nil {
		switch s.Type() {
		case fastjson.TypeTrue:
			r.stream = true
		case fastjson.TypeFalse, fastjson.TypeNull:
		default:
			return badRequest("stream", "'stream' must be a boolean.")
		}
	}
	if so := v.Get("stream_options"); so != nil {
		if s, _ := jsonscan.Find(r.body, "stream_options"); s < 0 {
			return badRequest("stream_options", "The 'stream_options' key must be written without escapes.")
		}
	}
	if so := v.Get("stream_options"); so != nil && so.Type() != fastjson.TypeNull {
		if so.Type() != fastjson.TypeObject {
			return badRequest("stream_options", "'stream_options' must be an object.")
		}
		if !r.stream {
			return badRequest("stream_options", "Stream options can only be defined when `stream=True`.")
		}
		if iu := so.Get("include_usage"); iu != nil {
			switch iu.Type() {
			case fastjson.TypeTrue:
				r.clientUsage = true
			case fastjson.TypeFalse, fastjson.TypeNull:
			default:
				return badRequest("stream_options.include_usage", "Invalid type for 'stream_options.include_usage': expected a boolean.")
			}
		}
	}
	if u := v.Get("user"); u != nil {
		switch u.Type() {
		case fastjson.TypeString:
			r.user = append(r.user[:0], u.GetStringBytes()...)
		case fastjson.TypeNull:
		default:
			return badRequest("user", "Invalid type for 'user': expected a string.")
		}
	}

	switch r.op {
	case opChat:
		msgs := v.Get("messages")
		if msgs == nil {
			return badRequest("messages", "Missing required parameter: 'messages'.")
		}
		if msgs.Type() != fastjson.TypeArray {
			return badRequest("messages", "Invalid type for 'messages': expected an array.")
		}
		arr, _ := msgs.Array()
		if len(arr) == 0 {
			return badRequest("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.")
		}
		for i, msg := range arr {
			if msg.Type() != fastjson.TypeObject || msg.Get("role") == nil {
				return badRequest("messages", "Invalid 'messages': each message must be an object with a 'role'.")
			}
			if err := checkContent(i, msg.Get("content")); err != nil {
				return err
			}
			for _, key := range reasoningKeys { // read by the guard as content is
				if t := msg.Get(key); t != nil && t.Type() != fastjson.TypeString && t.Type() != fastjson.TypeNull {
					param := "messages[" + strconv.Itoa(i) + "]." + key
					return badRequest(param, "Invalid type for '"+param+"': expected a string, but got "+jsonTypeName(t)+" instead.")
				}
			}
			for k, tc := range msg.GetArray("tool_calls") {
				if a := tc.Get("function", "arguments"); a != nil && a.Type() != fastjson.TypeString {
					param := "messages[" + strconv.Itoa(i) + "].tool_calls[" + strconv.Itoa(k) + "].function.arguments"
					return badRequest(param, "Invalid type for '"+param+"': expected a string, but got "+jsonTypeName(a)+" instead.")
				}
			}
		}
	case opCompletion:
		// vLLM takes prompt_embeds (--enable-prompt-embeds) in place of a prompt.
		if p, pe := v.Get("prompt"), v.Get("prompt_embeds"); (p == nil || p.Type() == fastjson.TypeNull) && (pe == nil || pe.Type() == fastjson.TypeNull) {
			return badRequest("prompt", "Missing required parameter: 'prompt'.")
		}
	case opEmbeddings:
		// vLLM embeds a conversation, sent as messages (its chat embeddings), in place of input.
		if in, msgs := v.Get("input"), v.Get("messages"); (in == nil || in.Type() == fastjson.TypeNull) && (msgs == nil || msgs.Type() == fastjson.TypeNull) {
			return badRequest("input", "Missing required parameter: 'input'.")
		}
		if r.stream {
			return badRequest("stream", "Embeddings cannot be streamed.")
		}
	}
	return nil
}

// checkContent refuses the content of message i unless it is a string, an array of objects
// whose texts (see partTextKeys), where they have them, are strings, or null, as OpenAI does. The guard reads the
// text of those shapes only: any other (a single part object, a text that is an object) would
// reach the backend unchecked by PII redaction and the safety rules. So are a tool call's
// arguments that are not a string (decode).
func checkContent(i int, c *fastjson.Value) error {
	if c == nil {
		return nil
	}
	switch c.Type() {
	case fastjson.TypeString, fastjson.TypeNull:
		return nil
	case fastjson.TypeArray:
	default:
		param := "messages[" + strconv.Itoa(i) + "].content"
		return badRequest(param, "Invalid type for '"+param+"': expected one of a string or array of objects, but got "+jsonTypeName(c)+" instead.")
	}
	parts, _ := c.Array()
	for j, p := range parts {
		param := "messages[" + strconv.Itoa(i) + "].content[" + strconv.Itoa(j) + "]"
		if p.Type() != fastjson.TypeObject {
			return badRequest(param, "Invalid type for '"+param+"': expected an object, but got "+jsonTypeName(p)+" instead.")
		}
		for _, key := range partTextKeys {
			if t := p.Get(key); t != nil && t.Type() != fastjson.TypeString {
				return badRequest(param+"."+key, "Invalid type for '"+param+"."+key+"': expected a string, but got "+jsonTypeName(t)+" instead.")
			}
		}
	}
	return nil
}

// jsonTypeName names v's JSON type as OpenAI's errors do ("an object", "a number").
func jsonTypeName(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeNumber:
		return "a number"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	}
	return "null"
}

// repeatedKey returns a key that appears twice in an object the gateway reads (the body, each
// message, its content parts and tool calls, stream_options), nil when there is none. The
// gateway reads the first copy of a key and Python and Go backends the last, so a repeated
// "messages" or "content" would let the guard check one text while the model reads another.
func repeatedKey(root *fastjson.Value, op operation) []byte {
	if k := repeatedIn(root); k != nil {
		return k
	}
	if k := repeatedIn(root.Get("stream_options")); k != nil {
		return k
	}
	if op != opChat {
		return nil
	}
	for _, m := range root.GetArray("messages") {
		if k := repeatedIn(m); k != nil {
			return k
		}
		for _, p := range m.GetArray("content") {
			if k := repeatedIn(p); k != nil {
				return k
			}
		}
		for _, tc := range m.GetArray("tool_calls") {
			if k := repeatedIn(tc); k != nil {
				return k
			}
			if k := repeatedIn(tc.Get("function")); k != nil {
				return k
			}
		}
	}
	return nil
}

// repeatedIn returns a key that v, when it is an object, has twice. Objects here have a handful
// of keys, so comparing each with those before it beats hashing.
func repeatedIn(v *fastjson.Value) []byte {
	if v == nil || v.Type() != fastjson.TypeObject {
		return nil
	}
	o, _ := v.Object()
	if o.Len() < 2 {
		return nil
	}
	var seen [16][]byte
	var many map[string]bool // past 16 keys
	n := 0
	var dup []byte
	o.Visit(func(key []byte, _ *fastjson.Value) {
		if dup != nil {
			return
		}
		if n < len(seen) {
			for _, k := range seen[:n] {
				if string(k) == string(key) {
					dup = key
					return
				}
			}
			seen[n] = key
			n++
			return
		}
		if many == nil {
			many = make(map[string]bool, 2*len(seen))
			for _, k := range seen {
				many[string(k)] = true
			}
		}
		if many[string(key)] {
			dup = key
			return
		}
		many[string(key)] = true
	})
	return dup
}

// rewriteBody sets the backend's model name and, for streams, asks for the usage chunk. Only
// those spans change; every other byte is the client's.
func (r *request) rewriteBody(servedModel string) {
	out := r.scratch[:0]
	ms, me := r.modelStart, r.modelEnd // found by decode, unless the body changed since
	if ms < 0 {
		ms, me = jsonscan.Find(r.body, "model")
	}
	if ms < 0 {
		panic("BUG: model validated but not found in body")
	}
	r.modelStart = -1 // the body is about to change
	if !r.stream || r.clientUsage {
		out = append(out, r.body[:ms]...)
		out = appendJSONString(out, servedModel)
		out = append(out, r.body[me:]...)
		r.scratch, r.body = r.body, out
		return
	}
	so, soEnd := jsonscan.Find(r.body, "stream_options")
	// Edit from the later span to the earlier so offsets stay valid.
	type edit struct {
		start, end int
		repl       []byte
	}
	edits := [2]edit{{ms, me, nil}}
	n := 1
	switch {
	case so < 0:
		end := jsonscan.ObjectEnd(r.body)
		edits[1] = edit{end, end, []byte(`,"stream_options":{"include_usage":true}`)}
		n = 2
	default:
		edits[1] = edit{so, soEnd, streamOptionsWithUsage(r.body[so:soEnd])}
		n = 2
	}
	if edits[1].start < edits[0].start {
		edits[0], edits[1] = edits[1], edits[0]
	}
	prev := 0
	for _, e := range edits[:n] {
		out = append(out, r.body[prev:e.start]...)
		if e.repl == nil {
			out = appendJSONString(out, servedModel)
		} else {
			out = append(out, e.repl...)
		}
		prev = e.end
	}
	out = append(out, r.body[prev:]...)
	r.scratch, r.body = r.body, out
}

// streamOptionsWithUsage returns the client's stream_options object with include_usage set to
// true and its other members (vLLM's continuous_usage_stats, ...) kept.
func streamOptionsWithUsage(obj []byte) []byte {
	if obj[0] != '{' || jsonscan.IsEmptyObject(obj) {
		return []byte(`{"include_usage":true}`)
	}
	if s, e := jsonscan.Find(obj, "include_usage"); s >= 0 {
		out := make([]byte, 0, len(obj)+4)
		out = append(out, obj[:s]...)
		out = append(out, "true"...)
		return append(out, obj[e:]...)
	}
	out := make([]byte, 0, len(obj)+24)
	out = append(out, `{"include_usage":true,`...)
	return append(out, obj[1:]...)
}

// appendJSONString appends s as a JSON string: quote and backslash escaped, control characters
// as \u00XX, every other byte as it is. The runs between escapes are appended whole: a byte at
// a time, the append cost more than the test (the log line's ids, a rewritten prompt).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	run := 0 // start of the bytes not yet appended
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[run:i]...)
		run = i + 1
		if c < 0x20 {
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		} else {
			dst = append(dst, '\\', c)
		}
	}
	dst = append(dst, s[run:]...)
	return append(dst, '"')
}

// Request ids: a client's id is kept when it is short and printable (it ends up in logs and
// headers); otherwise the gateway makes one from a per-process random prefix and a counter,
// unique without a syscall per request.
var (
	requestIDPrefix = func() []byte {
		var b [6]byte
		for i := range b {
			b[i] = byte(rand.UintN(256))
		}
		return []byte("req-" + hex.EncodeToString(b[:]) + "-")
	}()
	requestIDCounter atomic.Uint64
)

const maxRequestIDLen = 128

func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=':
		default:
			return false
		}
	}
	return true
}

func appendNewRequestID(dst []byte) []byte {
	dst = append(dst, requestIDPrefix...)
	n := requestIDCounter.Add(1)
	var buf [16]byte
	for i := len(buf) - 1; i >= 0; i-- {
		buf[i] = "0123456789abcdef"[n&0xf]
		n >>= 4
	}
	return append(dst, buf[:]...)
}

// noteAnswerShape reads what the completion guard needs to know of the answer asked for:
// whether its content is JSON text, and whether it spells its text again as logprobs or token
// ids. Only requests to a guarded alias pay for these lookups.
func (r *request) noteAnswerShape() {
	v := r.root
	if rf := v.Get("response_format"); rf != nil {
		t := string(rf.GetStringBytes("type"))
		r.jsonOutput = t == "json_object" || t == "json_schema"
	}
	if g := v.Get("guided_json"); g != nil && g.Type() != fastjson.TypeNull {
		r.jsonOutput = true
	}
	// vLLM's structured_outputs replaced guided_json: {"json": schema} or {"json_object": true}.
	if so := v.Get("structured_outputs"); so != nil {
		if j := so.Get("json"); j != nil && j.Type() != fastjson.TypeNull {
			r.jsonOutput = true
		}
		if so.Get("json_object") != nil && so.Get("json_object").Type() == fastjson.TypeTrue {
			r.jsonOutput = true
		}
	}
	for _, key := range [...]string{"logprobs", "top_logprobs", "return_token_ids"} {
		// logprobs is a boolean for chat and a count for completions, where 0 still returns
		// the chosen tokens' logprobs.
		if x := v.Get(key); x != nil && x.Type() != fastjson.TypeNull && x.Type() != fastjson.TypeFalse && !(key == "top_logprobs" && x.Type() == fastjson.TypeNumber && x.GetInt() == 0) {
			r.tokens = key
			break
		}
	}
}

// ollamaUnsupported returns the parameter of the request that Ollama's OpenAI API cannot
// honour, what of it, and what its backends do instead; "" when there is none. Ollama answers
// one choice whatever n asks and ignores echo and vLLM's prompt_embeds, without a word; it
// refuses a completions prompt that is not one string, and embeddings input given as token
// ids or vLLM's messages, with a Go decoding error ("invalid input type") that does not say
// what to send instead.
func (r *request) ollamaUnsupported() (param, what, instead string) {
	v := r.root
	switch r.op {
	case opEmbeddings:
		for _, in := range v.GetArray("input") {
			if in.Type() != fastjson.TypeString {
				return "input", "'input' as token ids", "embed text only: send 'input' as a string or an array of strings."
			}
		}
		if m := v.Get("messages"); m != nil && m.Type() != fastjson.TypeNull {
			return "messages", "'messages' (a conversation to embed)", "embed 'input' only."
		}
		return "", "", ""
	case opCompletion:
		if p := v.Get("prompt"); p != nil && p.Type() != fastjson.TypeString {
			return "prompt", "'prompt' as a list or as token ids", "take one prompt per request, as a string."
		}
		if e := v.Get("echo"); e != nil && e.Type() == fastjson.TypeTrue {
			return "echo", "'echo'", "do not return the prompt with the completion."
		}
		if pe := v.Get("prompt_embeds"); pe != nil && pe.Type() != fastjson.TypeNull {
			return "prompt_embeds", "'prompt_embeds'", "take text prompts only." // and would complete an empty one
		}
	}
	if r.nChoices > 1 { // a prompt list returned above: these are n's
		return "n", "'n' above 1", "answer one choice per request."
	}
	return "", "", ""
}

// choicesAsked returns how many choices the request's answer has: its n (1 by default) for
// each prompt of a completion request's list.
func (r *request) choicesAsked() int { return max(r.nChoices, 1) }

// promptCount returns how many prompts a request sends: a completions prompt may be a list
// (of strings, or of lists of token ids), answered with n choices for each; one otherwise.
func promptCount(op operation, root *fastjson.Value) int {
	if op != opCompletion {
		return 1
	}
	arr := root.GetArray("prompt") // nil when not an array
	if len(arr) == 0 || arr[0].Type() == fastjson.TypeNumber {
		return 1 // a string, or one prompt of token ids
	}
	return len(arr)
}
