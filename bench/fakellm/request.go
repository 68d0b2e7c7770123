package fakellm

import (
	"strconv"
	"sync"

	"github.com/valyala/fastjson"
)

// endpoint is the inference API a request arrived on.
type endpoint uint8

const (
	epChat endpoint = iota
	epCompletion
	epEmbeddings
)

// input is one embeddings input or prompt: its hash and token count.
type input struct {
	hash   uint64
	words  int
	tokens bool   // given as token ids: vLLM counts them exactly, untruncated
	text   []byte // a text prompt, unescaped, for vLLM's echo; nil for token ids, which fakellm cannot detokenize
}

// request holds what fakellm reads from an inference body. Acquire with
// acquireRequest, release with releaseRequest once the response is built;
// model aliases parser memory, so it is valid only until release.
type request struct {
	p fastjson.Parser

	model        []byte
	hasModel     bool
	stream       bool
	includeUsage bool
	contUsage    bool   // vLLM stream_options.continuous_usage_stats
	maxTokens    int    // -1: not given
	maxParam     string // vLLM: the field maxTokens came from, for its errors
	choices      int    // vLLM n: completions to generate per prompt
	promptHash   uint64
	promptWords  int
	prompts      []input // each prompt: one for chat, one or more for completions
	suffix       bool    // completions: a suffix was given (vLLM refuses it)
	echoPrompt   bool    // vLLM completions: echo, the prompt before the completion
	logprobs     int     // vLLM: alternatives per token in logprobs (chat top_logprobs, completions logprobs); -1: no logprobs
	base64       bool
	dims         int  // embeddings "dimensions"; 0: full size
	hasDims      bool // vLLM: "dimensions" given, to be checked against the model
	inputs       []input

	rep  reply
	id   []byte    // response id scratch
	buf  []byte    // response scratch
	vec  []float32 // embedding scratch
	echo []byte    // echo header scratch
}

var requestPool sync.Pool

func acquireRequest() *request {
	if v := requestPool.Get(); v != nil {
		return v.(*request)
	}
	return &request{}
}

func releaseRequest(r *request) {
	r.model = nil
	r.rep = reply{}
	r.inputs = r.inputs[:0]
	r.prompts = r.prompts[:0]
	requestPool.Put(r)
}

// badRequest is a client error found while reading a body; param names the
// offending field as the flavor reports it. typ overrides vLLM's type for
// errors that do not come from request validation.
type badRequest struct {
	msg   string
	param string
	typ   string
}

func (e *badRequest) Error() string { return e.msg }

// parse reads body for endpoint ep. Unknown fields are ignored, as both
// vLLM (pydantic extra="allow") and Ollama (encoding/json) do.
func (r *request) parse(body []byte, ep endpoint, ollama bool) *badRequest {
	v, err := r.p.ParseBytes(body)
	if err != nil {
		if ollama {
			return &badRequest{msg: err.Error()}
		}
		// FastAPI reports a body that is not JSON as one validation error.
		return &badRequest{msg: "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.0', 'msg': 'JSON decode error', 'input': {}, 'ctx': {'error': 'Expecting value'}}", param: "body.0"}
	}
	if v.Type() != fastjson.TypeObject {
		return &badRequest{msg: "request body must be a JSON object", param: "body"}
	}
	r.hasModel = false
	if m := v.Get("model"); m != nil && m.Type() == fastjson.TypeString {
		r.model, _ = m.StringBytes()
		r.hasModel = true
	}
	r.stream = v.GetBool("stream")
	so := v.Get("stream_options")
	r.includeUsage, r.contUsage = false, false
	if so != nil && so.Type() == fastjson.TypeObject {
		iu := so.Get("include_usage")
		// vLLM's StreamOptions defaults include_usage to True when the object
		// is present; Ollama's Go struct defaults it to false.
		r.includeUsage = (iu == nil && !ollama) || (iu != nil && iu.Type() == fastjson.TypeTrue)
		// vLLM's should_include_usage: continuous stats need include_usage.
		r.contUsage = !ollama && r.includeUsage && so.Get("continuous_usage_stats") != nil &&
			so.Get("continuous_usage_stats").Type() == fastjson.TypeTrue
		// vLLM's validator tests truthiness: an empty object passes.
		if o, _ := so.Object(); !ollama && !r.stream && o.Len() > 0 {
			return &badRequest{msg: "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, Stream options can only be defined when `stream=True`.'}", param: "stream_options"}
		}
	}
	r.maxTokens, r.maxParam = intField(v, "max_tokens"), "max_tokens"
	if ep == epChat && !ollama {
		// vLLM prefers max_completion_tokens; Ollama's request struct lacks it.
		if mct := intField(v, "max_completion_tokens"); mct >= 0 {
			r.maxTokens, r.maxParam = mct, "max_completion_tokens"
		}
	}
	if ep == epCompletion && !ollama && r.maxTokens < 0 && v.Get("max_tokens") == nil {
		r.maxTokens = 16 // vLLM CompletionRequest.max_tokens default
	}
	// Ollama's CompletionRequest has no echo: it is ignored there.
	r.echoPrompt = ep == epCompletion && !ollama && v.GetBool("echo")
	r.logprobs = -1
	switch {
	case ollama: // fakellm's Ollama, as the conventions' Ollama, returns no logprobs
	case ep == epChat && v.GetBool("logprobs"):
		r.logprobs = max(intField(v, "top_logprobs"), 0)
	case ep == epCompletion:
		r.logprobs = intField(v, "logprobs") // null or left out: -1
	}
	sf := v.Get("suffix")
	r.suffix = ep == epCompletion && sf != nil && sf.Type() != fastjson.TypeNull
	r.choices = 1
	if !ollama && ep != epEmbeddings {
		// Ollama's request structs have no n field: it is ignored there.
		if bad := r.verifySampling(v, ep); bad != nil {
			return bad
		}
	}
	r.promptHash, r.promptWords = fnvOffset, 0
	r.prompts = r.prompts[:0]
	switch ep {
	case epChat:
		return r.parseMessages(v, ollama)
	case epCompletion:
		return r.parsePrompt(v, ollama)
	default:
		return r.parseInput(v, ollama)
	}
}

// maxSequences is vLLM's default VLLM_MAX_N_SEQUENCES, the largest n.
const maxSequences = 16384

// verifySampling reads vLLM's n (default 1) and applies the checks of
// SamplingParams._verify_args that fakellm's fields touch, in its order: n
// within 1..VLLM_MAX_N_SEQUENCES, max_tokens at least 1, and (after it)
// n = 1 under greedy sampling (temperature below 1e-5). They raise
// VLLMValidationError, answered as a 400 BadRequestError whose param is the
// error's parameter (set only for max_tokens) and whose message str() adds
// "(parameter=..., value=...)".
func (r *request) verifySampling(v *fastjson.Value, ep endpoint) *badRequest {
	if nv := v.Get("n"); nv != nil && nv.Type() != fastjson.TypeNull {
		n, err := nv.Int()
		if nv.Type() != fastjson.TypeNumber || err != nil {
			return &badRequest{msg: "1 validation error:\n  {'type': 'int_type', 'loc': 'body.n', 'msg': 'Input should be a valid integer'}", param: "body.n"}
		}
		switch {
		case n < 1:
			return &badRequest{msg: "n must be at least 1, got " + strconv.Itoa(n) + ".", typ: "BadRequestError"}
		case n > maxSequences:
			return &badRequest{msg: "n must be at most " + strconv.Itoa(maxSequences) + ", got " + strconv.Itoa(n) +
				". To increase this limit, set the VLLM_MAX_N_SEQUENCES environment variable.", typ: "BadRequestError"}
		}
		r.choices = n
	}
	// Chat takes max_completion_tokens over max_tokens.
	mt := v.Get("max_tokens")
	if mct := v.Get("max_completion_tokens"); ep == epChat && mct != nil && mct.Type() != fastjson.TypeNull {
		mt = mct
	}
	if mt != nil && mt.Type() == fastjson.TypeNumber {
		if n, err := mt.Int(); err == nil && n < 1 {
			s := strconv.Itoa(n)
			return &badRequest{msg: "max_tokens must be at least 1, got " + s + ". (parameter=max_tokens, value=" + s + ")", param: "max_tokens", typ: "BadRequestError"}
		}
	}
	if t := v.Get("temperature"); r.choices > 1 && t != nil && t.Type() == fastjson.TypeNumber && t.GetFloat64() < 1e-5 {
		return &badRequest{msg: "n must be 1 when using greedy sampling, got " + strconv.Itoa(r.choices) + ".", typ: "BadRequestError"}
	}
	return nil
}

func intField(v *fastjson.Value, key string) int {
	f := v.Get(key)
	if f == nil || f.Type() != fastjson.TypeNumber {
		return -1
	}
	n, err := f.Int()
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func (r *request) addText(b []byte) {
	// The trailing separator keeps ["ab","c"] and ["a","bc"] apart.
	r.promptHash = fnv1a64(r.promptHash, b) * 0x100000001b3
	r.promptWords += countWords(b)
}

func (r *request) parseMessages(v *fastjson.Value, ollama bool) *badRequest {
	msgs := v.Get("messages")
	if msgs == nil || msgs.Type() != fastjson.TypeArray {
		if ollama {
			return &badRequest{msg: "[] is too short - 'messages'"}
		}
		return &badRequest{msg: "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required'}", param: "body.messages"}
	}
	arr, _ := msgs.Array()
	if len(arr) == 0 && ollama {
		return &badRequest{msg: "[] is too short - 'messages'"}
	}
	for _, m := range arr {
		c := m.Get("content")
		if c == nil {
			continue
		}
		switch c.Type() {
		case fastjson.TypeString:
			b, _ := c.StringBytes()
			r.addText(b)
		case fastjson.TypeArray:
			parts, _ := c.Array()
			for _, p := range parts {
				r.addText(p.GetStringBytes("text"))
			}
		}
	}
	r.prompts = append(r.prompts, input{hash: r.promptHash, words: r.promptWords})
	return nil
}

// parsePrompt reads a completions prompt. vLLM's prompt is str | list[str]
// | list[int] | list[list[int]]; a list of prompts generates n choices for
// each, so every prompt keeps its own hash. Ollama takes one string.
func (r *request) parsePrompt(v *fastjson.Value, ollama bool) *badRequest {
	p := v.Get("prompt")
	switch {
	case p != nil && p.Type() == fastjson.TypeString:
		b, _ := p.StringBytes()
		if len(b) == 0 && !ollama {
			break
		}
		r.addPrompt(b)
		return nil
	case p != nil && p.Type() == fastjson.TypeArray && !ollama:
		arr, _ := p.Array()
		if len(arr) == 0 {
			break
		}
		if arr[0].Type() == fastjson.TypeNumber {
			if !r.addTokenPrompt(arr) {
				return badPromptType
			}
			return nil
		}
		for _, s := range arr {
			if s.Type() != arr[0].Type() {
				return badPromptType
			}
			switch s.Type() {
			case fastjson.TypeString:
				b, _ := s.StringBytes()
				r.addPrompt(b)
			case fastjson.TypeArray:
				ids, _ := s.Array()
				if len(ids) == 0 || !r.addTokenPrompt(ids) {
					return badPromptType
				}
			default:
				return badPromptType
			}
		}
		return nil
	case ollama && p == nil:
		r.prompts = append(r.prompts, input{hash: r.promptHash})
		return nil // Ollama treats a missing prompt as "".
	case ollama:
		return &badRequest{msg: "json: cannot unmarshal " + p.Type().String() + " into Go struct field CompletionRequest.prompt of type string"}
	}
	return &badRequest{msg: "Either prompt or prompt_embeds must be provided and non-empty.", param: "prompt"}
}

// badPromptType is vLLM's answer to a prompt of none of its accepted types.
var badPromptType = &badRequest{msg: "1 validation error:\n  {'type': 'string_type', 'loc': 'body.prompt', 'msg': 'Input should be a valid string'}", param: "body.prompt"}

// addPrompt adds one text prompt.
func (r *request) addPrompt(b []byte) {
	w := countWords(b)
	r.prompts = append(r.prompts, input{hash: fnv1a64(fnvOffset, b) * 0x100000001b3, words: w, text: b})
	r.promptWords += w
}

// addTokenPrompt adds one prompt of token ids, one prompt token per id. It
// reports false if an id is not a non-negative integer.
func (r *request) addTokenPrompt(ids []*fastjson.Value) bool {
	h, ok := tokenHash(ids)
	if !ok {
		return false
	}
	r.prompts = append(r.prompts, input{hash: h, words: len(ids), tokens: true})
	r.promptWords += len(ids)
	return true
}

func (r *request) parseInput(v *fastjson.Value, ollama bool) *badRequest {
	r.base64 = string(v.GetStringBytes("encoding_format")) == "base64"
	if bad := r.parseDims(v, ollama); bad != nil {
		return bad
	}
	in := v.Get("input")
	var arr []*fastjson.Value
	switch {
	case (in == nil || in.Type() == fastjson.TypeNull) && !ollama && v.Get("messages") != nil:
		// vLLM's EmbeddingChatRequest: a conversation, rendered with the chat
		// template, is embedded as one input.
		if bad := r.parseMessages(v, false); bad != nil {
			return bad
		}
		r.inputs = append(r.inputs, r.prompts[0])
		r.prompts = r.prompts[:0]
		return nil
	case in == nil || in.Type() == fastjson.TypeNull:
	case in.Type() == fastjson.TypeString:
		b, _ := in.StringBytes()
		r.addInput(b)
		return nil
	case in.Type() == fastjson.TypeArray:
		arr, _ = in.Array()
	case ollama:
		// EmbedHandler accepts only a string or an array of strings.
		return &badRequest{msg: "invalid input type"}
	default:
		return badInputType
	}
	if len(arr) == 0 {
		if ollama {
			return &badRequest{msg: "invalid input"}
		}
		return &badRequest{msg: "1 validation error:\n  {'type': 'missing', 'loc': 'body.input', 'msg': 'Field required'}", param: "body.input"}
	}
	// vLLM's input is str | list[str] | list[int] | list[list[int]]: token
	// ids are embedded as given, one token each. Ollama takes strings only.
	switch arr[0].Type() {
	case fastjson.TypeNumber:
		if ollama || !r.addTokens(arr) {
			break
		}
		return nil
	case fastjson.TypeArray:
		if ollama {
			break
		}
		for _, a := range arr {
			ids, err := a.Array()
			if err != nil || !r.addTokens(ids) {
				return badInputType
			}
		}
		return nil
	default:
		for _, s := range arr {
			b, err := s.StringBytes()
			if err != nil {
				if ollama {
					return &badRequest{msg: "invalid input type"}
				}
				return badInputType
			}
			r.addInput(b)
		}
		return nil
	}
	if ollama {
		return &badRequest{msg: "invalid input type"}
	}
	return badInputType
}

// parseDims reads the embeddings "dimensions" field. Ollama's EmbedHandler
// truncates only when 0 < dimensions < the model's size; vLLM checks any
// value it is given against the model (Server.dimensionsError).
func (r *request) parseDims(v *fastjson.Value, ollama bool) *badRequest {
	r.dims, r.hasDims = 0, false
	dv := v.Get("dimensions")
	if dv == nil || dv.Type() == fastjson.TypeNull {
		return nil
	}
	n, err := dv.Int()
	if dv.Type() != fastjson.TypeNumber || err != nil {
		if ollama {
			return &badRequest{msg: "json: cannot unmarshal " + dv.Type().String() + " into Go struct field EmbedRequest.dimensions of type int"}
		}
		return &badRequest{msg: "1 validation error:\n  {'type': 'int_type', 'loc': 'body.dimensions', 'msg': 'Input should be a valid integer'}", param: "body.dimensions"}
	}
	r.hasDims = !ollama
	if n > 0 {
		r.dims = n
	}
	return nil
}

// badInputType is vLLM's answer to an input that is none of its accepted
// types (pydantic reports the first union member it tried).
var badInputType = &badRequest{msg: "1 validation error:\n  {'type': 'string_type', 'loc': 'body.input', 'msg': 'Input should be a valid string'}", param: "body.input"}

// addInput adds one text input to embed.
func (r *request) addInput(b []byte) {
	w := countWords(b)
	r.inputs = append(r.inputs, input{hash: fnv1a64(fnvOffset, b), words: w})
	r.promptWords += w
}

// addTokens adds one token-id input to embed: its hash comes from the ids,
// and each id is one prompt token. It reports false if an id is not a
// non-negative integer.
func (r *request) addTokens(ids []*fastjson.Value) bool {
	h, ok := tokenHash(ids)
	if !ok {
		return false
	}
	r.inputs = append(r.inputs, input{hash: h, words: len(ids)})
	r.promptWords += len(ids)
	return true
}

// tokenHash hashes a list of token ids; it reports false if one is not a
// non-negative integer.
func tokenHash(ids []*fastjson.Value) (uint64, bool) {
	h := uint64(fnvOffset) ^ tokenInputSalt
	for _, id := range ids {
		n, err := id.Uint64()
		if id.Type() != fastjson.TypeNumber || err != nil {
			return 0, false
		}
		for i := 0; i < 8; i++ {
			h = (h ^ (n >> (8 * i) & 0xff)) * 0x100000001b3
		}
	}
	return h, true
}

// tokenInputSalt keeps token-id inputs apart from text inputs.
const tokenInputSalt = 0x746f6b656e696473
