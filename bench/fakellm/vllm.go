package fakellm

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// vLLM shapes follow vllm/entrypoints/openai/{chat_completion,completion}/
// protocol.py and serving.py (see testdata/README.md). Non-streaming bodies
// are pydantic model_dump() output, so every declared field is present, null
// or not, in declaration order. Stream chunks are model_dump_json with
// exclude_unset=True, so only fields the server assigned appear.

const vllmVersion = "0.22.1"

// reply describes one generated completion; builders consume words from w.
type reply struct {
	ep       endpoint
	id       []byte // full response id, e.g. chatcmpl-<hex>
	model    []byte // JSON-quoted model name
	created  int64
	w        words   // generator of the choice being written
	seed     int64   // Options.Seed
	prompts  []input // each prompt; aliases request or stream memory
	n        int     // tokens to generate per choice
	perN     int     // vLLM n: choices per prompt, >= 1
	choices  int     // len(prompts) * perN
	idx      int     // stream: index of the choice the next event belongs to
	finish   string  // "stop" or "length"
	prompt   int     // prompt tokens
	usage    bool    // stream_options.include_usage
	contUse  bool    // vLLM stream_options.continuous_usage_stats
	echo     bool    // vLLM completions: each choice's text starts with its prompt
	logprobs int     // alternatives per token in logprobs; -1: logprobs null
	done     int     // stream: tokens of choice idx so far, for contUse
}

// evKind is one kind of stream event.
type evKind uint8

const (
	evRole        evKind = iota // vLLM chat: first chunk carrying the role
	evToken                     // one generated token
	evFinishToken               // vLLM: the last token together with finish_reason "length"
	evFinish                    // end of generation, empty delta
	evUsage                     // include_usage trailer with choices []
)

func (s *Server) vllmHead(dst []byte, p *reply, object string) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, p.id...)
	dst = append(dst, `","object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, p.created, 10)
	dst = append(dst, `,"model":`...)
	dst = append(dst, p.model...)
	return dst
}

func appendVLLMUsage(dst []byte, prompt, completion int, full bool) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt+completion), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(completion), 10)
	if full {
		dst = append(dst, `,"prompt_tokens_details":null,"completion_tokens_details":null`...)
	}
	return append(dst, '}')
}

// words returns the generator of choice k: vLLM numbers the n choices of
// prompt i from i*n.
func (p *reply) words(k int) words {
	return choiceWords(newWords(p.seed, p.prompts[k/p.perN].hash), k%p.perN)
}

// completionTokens is what vLLM's usage counts: the tokens of every choice.
func (p *reply) completionTokens() int { return p.generated() * p.choices }

// generated is the number of tokens generated for one choice. A natural
// stop ends on the EOS token, which both backends count though it
// detokenizes to no text: vLLM's engine appends it to the output's token_ids
// (the stream's finish chunk with empty content is that token), and Ollama's
// runner counts it in numPredicted (eval_count) before its EOS check
// (runner/llamarunner/runner.go processBatch).
func (p *reply) generated() int {
	if p.finish == "stop" {
		return p.n + 1
	}
	return p.n
}

// appendIndex appends `{"index":i`, the start of choice i.
func appendIndex(dst []byte, i int) []byte {
	dst = append(dst, `{"index":`...)
	return strconv.AppendInt(dst, int64(i), 10)
}

func (s *Server) vllmChat(dst []byte, p *reply) []byte {
	dst = s.vllmHead(dst, p, "chat.completion")
	dst = append(dst, `,"choices":[`...)
	for c := 0; c < p.choices; c++ {
		if c > 0 {
			dst = append(dst, ',')
		}
		p.w = p.words(c)
		dst = appendIndex(dst, c)
		dst = append(dst, `,"message":{"role":"assistant","content":"`...)
		for i := 0; i < p.n; i++ {
			dst = p.w.appendNext(dst)
		}
		dst = append(dst, `","refusal":null,"annotations":null,"audio":null,"function_call":null,"reasoning":null},"logprobs":`...)
		dst = p.appendChatLogprobs(dst, p.words(c), p.n)
		dst = append(dst, `,"finish_reason":"`...)
		dst = append(dst, p.finish...)
		dst = append(dst, `","stop_reason":null,"token_ids":null,"routed_experts":null}`...)
	}
	dst = append(dst, `],"service_tier":null,"system_fingerprint":`...)
	dst = append(dst, s.fingerprint...)
	dst = append(dst, `,"usage":`...)
	dst = appendVLLMUsage(dst, p.prompt, p.completionTokens(), true)
	return append(dst, `,"prompt_logprobs":null,"prompt_token_ids":null,"prompt_text":null,"kv_transfer_params":null,"ec_transfer_params":null,"metrics":null}`...)
}

func (s *Server) vllmCompletion(dst []byte, p *reply) []byte {
	dst = s.vllmHead(dst, p, "text_completion")
	dst = append(dst, `,"choices":[`...)
	for c := 0; c < p.choices; c++ {
		if c > 0 {
			dst = append(dst, ',')
		}
		p.w = p.words(c)
		dst = appendIndex(dst, c)
		dst = append(dst, `,"text":"`...)
		if p.echo {
			// vLLM's output_text = prompt_text + output.text.
			dst = appendJSONText(dst, p.prompts[c/p.perN].text)
		}
		for i := 0; i < p.n; i++ {
			dst = p.w.appendNext(dst)
		}
		dst = append(dst, `","logprobs":`...)
		dst = p.appendCompletionLogprobs(dst, p.words(c), p.n, p.echoed(c))
		dst = append(dst, `,"finish_reason":"`...)
		dst = append(dst, p.finish...)
		dst = append(dst, `","stop_reason":null,"token_ids":null,"prompt_logprobs":null,"prompt_token_ids":null,"routed_experts":null}`...)
	}
	dst = append(dst, `],"service_tier":null,"system_fingerprint":`...)
	dst = append(dst, s.fingerprint...)
	dst = append(dst, `,"usage":`...)
	dst = appendVLLMUsage(dst, p.prompt, p.completionTokens(), true)
	return append(dst, `,"kv_transfer_params":null,"ec_transfer_params":null,"metrics":null}`...)
}

func (s *Server) vllmEmbeddings(dst []byte, r *request, p *reply) []byte {
	dst = s.vllmHead(dst, p, "list")
	dst = append(dst, `,"data":[`...)
	for i, in := range r.inputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"object":"embedding","embedding":`...)
		dst = s.appendVector(dst, r, in.hash)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"usage":`...)
	dst = appendVLLMUsage(dst, r.promptWords, 0, true)
	return append(dst, '}')
}

// appendContUsage appends the usage vLLM puts on every chunk with
// continuous_usage_stats: the prompt of the chunk's choice and the tokens
// that choice has generated so far.
func appendContUsage(dst []byte, p *reply) []byte {
	if !p.contUse {
		return dst
	}
	dst = append(dst, `,"usage":`...)
	return appendVLLMUsage(dst, p.prompts[p.idx/p.perN].words, p.done, false)
}

// vllmEvent appends the JSON of one stream chunk (without SSE framing).
func (s *Server) vllmEvent(dst []byte, p *reply, k evKind) []byte {
	chat := p.ep == epChat
	if chat {
		dst = s.vllmHead(dst, p, "chat.completion.chunk")
	} else {
		dst = s.vllmHead(dst, p, "text_completion")
	}
	dst = append(dst, `,"choices":[`...)
	switch k {
	case evRole:
		dst = appendIndex(dst, p.idx)
		dst = append(dst, `,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`...)
		dst = appendContUsage(dst, p)
		return append(dst, `,"prompt_token_ids":null,"prompt_text":null}`...)
	case evUsage:
		dst = append(dst, `],"usage":`...)
		dst = appendVLLMUsage(dst, p.prompt, p.completionTokens(), false)
		dst = append(dst, `,"system_fingerprint":`...)
		dst = append(dst, s.fingerprint...)
		return append(dst, '}')
	}
	dst = appendIndex(dst, p.idx)
	if chat {
		dst = append(dst, `,"delta":{"content":"`...)
	} else {
		dst = append(dst, `,"text":"`...)
		// vLLM's completion stream sends the echoed prompt with a choice's first
		// token: prompt_text + delta_text. (It takes max_tokens 0 with echo for
		// the prompt alone; fakellm refuses max_tokens 0 as without echo.)
		if p.echo && p.done == 1 && k != evFinish {
			dst = appendJSONText(dst, p.prompts[p.idx/p.perN].text)
		}
	}
	tok, toks := p.w, 0 // the generator at this chunk's token, for its logprobs
	if k != evFinish {
		dst = p.w.appendNext(dst)
		toks = 1
	}
	if chat {
		dst = append(dst, `"},"logprobs":`...)
		dst = p.appendChatLogprobs(dst, tok, toks)
	} else {
		dst = append(dst, `","logprobs":`...)
		dst = p.appendCompletionLogprobs(dst, tok, toks, p.streamOffset(tok))
	}
	dst = append(dst, `,"finish_reason":`...)
	if k == evToken {
		if chat {
			dst = append(dst, `null,"token_ids":null}]`...)
		} else {
			dst = append(dst, `null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]`...)
		}
		dst = appendContUsage(dst, p)
		return append(dst, '}')
	}
	dst = append(dst, '"')
	dst = append(dst, p.finish...)
	if chat {
		dst = append(dst, `","stop_reason":null,"token_ids":null}]`...)
	} else {
		dst = append(dst, `","stop_reason":null,"prompt_token_ids":null,"token_ids":null}]`...)
	}
	dst = appendContUsage(dst, p)
	// vLLM stamps the fingerprint on the terminal chunk only when no usage
	// chunk follows; otherwise the usage chunk carries it.
	if !p.usage {
		dst = append(dst, `,"system_fingerprint":`...)
		dst = append(dst, s.fingerprint...)
	}
	return append(dst, '}')
}

// vllmErrorType maps a status to the type string vLLM's
// create_error_response uses; statuses it never picks by name get the HTTP
// phrase, as vLLM's GracefulHTTPError and validation handler do.
func vllmErrorType(code int) string {
	switch code {
	case fasthttp.StatusBadRequest:
		return "BadRequestError"
	case fasthttp.StatusNotFound:
		return "NotFoundError"
	case fasthttp.StatusUnprocessableEntity:
		return "UnprocessableEntityError"
	case fasthttp.StatusInternalServerError:
		return "InternalServerError"
	case fasthttp.StatusNotImplemented:
		return "NotImplementedError"
	}
	return fasthttp.StatusMessage(code)
}

// vllmError appends ErrorResponse{error: ErrorInfo{message, type, param, code}}.
func vllmError(dst []byte, code int, typ, msg, param string) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = appendJSONString(dst, msg)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, typ)
	dst = append(dst, `,"param":`...)
	if param == "" {
		dst = append(dst, "null"...)
	} else {
		dst = appendJSONString(dst, param)
	}
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	return append(dst, "}}"...)
}

// vllmStreamError appends the error event vLLM sends after a stream started:
// create_streaming_error_response (vllm/entrypoints/openai/engine/serving.py)
// is json.dumps of ErrorResponse.model_dump(), so unlike every other vLLM
// body it has Python's default ", " and ": " separators. A generation error
// (GenerationError) is type InternalServerError, code 500.
func vllmStreamError(dst []byte, msg string) []byte {
	dst = append(dst, `{"error": {"message": `...)
	dst = appendJSONString(dst, msg) // ASCII: json.dumps escapes anything else
	return append(dst, `, "type": "InternalServerError", "param": null, "code": 500}}`...)
}

func (s *Server) vllmModels(dst []byte, now int64, x uint64) []byte {
	dst = append(dst, `{"object":"list","data":[{"id":`...)
	dst = append(dst, s.modelJSON...)
	dst = append(dst, `,"object":"model","created":`...)
	dst = strconv.AppendInt(dst, now, 10)
	dst = append(dst, `,"owned_by":"vllm","root":`...)
	dst = append(dst, s.modelJSON...)
	dst = append(dst, `,"parent":null,"max_model_len":`...)
	dst = strconv.AppendInt(dst, maxModelLen, 10)
	dst = append(dst, `,"permission":[{"id":"modelperm-`...)
	dst = appendHexID(dst, x)
	dst = append(dst, `","object":"model_permission","created":`...)
	dst = strconv.AppendInt(dst, now, 10)
	return append(dst, `,"allow_create_engine":false,"allow_sampling":true,"allow_logprobs":true,"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,"organization":"*","group":null,"is_blocking":false}]}]}`...)
}

// maxModelLen is the context length fakellm's vLLM flavor advertises.
const maxModelLen = 8192

// contextError is vLLM's refusal of a chat or completions request whose
// prompt and output tokens do not fit max_model_len: a VLLMValidationError
// raised by vllm/renderers/params.py TokenizeParams (__post_init__ when the
// output budget alone is too large, _token_len_check when a prompt is),
// answered as a 400 BadRequestError whose param is the error's parameter.
// The output budget is max_tokens (max_completion_tokens first in chat), 0
// when a chat request gives neither and 16 for completions. Text is
// tokenized with truncation one token past the input budget, so vLLM counts
// "at least" that many; token ids are counted as given. It returns "" when
// the request fits.
func contextError(r *request) (msg, param string) {
	out := max(r.maxTokens, 0)
	if out > maxModelLen {
		o := strconv.Itoa(out)
		// The missing space before "cannot" and the "=max_total_tokens=" are
		// vLLM's, from its f-string.
		return r.maxParam + "=" + o + "cannot be greater than max_model_len=max_total_tokens=" +
			strconv.Itoa(maxModelLen) + ". Please request fewer output tokens. (parameter=" + r.maxParam +
			", value=" + o + ")", r.maxParam
	}
	limit := maxModelLen - out
	for _, in := range r.prompts {
		if in.words <= limit {
			continue
		}
		n := in.words
		if !in.tokens {
			n = limit + 1
		}
		atLeast := ""
		if n == limit+1 {
			atLeast = "at least "
		}
		return "This model's maximum context length is " + strconv.Itoa(maxModelLen) + " tokens. However, you requested " +
			strconv.Itoa(out) + " output tokens and your prompt contains " + atLeast + strconv.Itoa(n) +
			" input tokens, for a total of " + atLeast + strconv.Itoa(n+out) + " tokens. Please reduce the length of the" +
			" input prompt or the number of requested output tokens. (parameter=input_tokens, value=" + strconv.Itoa(n) + ")", "input_tokens"
	}
	return "", ""
}
