package fakellm

import (
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// Ollama shapes follow the Go structs in ollama openai/openai.go and the
// writers in middleware/openai.go (see testdata/README.md): encoding/json
// field order, omitempty where the struct says so, and the trailing newline
// json.Encoder adds.

const ollamaVersion = "0.12.6"

func ollamaHead(dst []byte, p *reply, object string) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, p.id...)
	dst = append(dst, `","object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	return strconv.AppendInt(dst, p.created, 10)
}

func appendOllamaUsage(dst []byte, prompt, completion int) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(completion), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt+completion), 10)
	return append(dst, '}')
}

func ollamaChat(dst []byte, p *reply) []byte {
	dst = ollamaHead(dst, p, "chat.completion")
	dst = append(dst, `,"model":`...)
	dst = append(dst, p.model...)
	dst = append(dst, `,"system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"`...)
	for i := 0; i < p.n; i++ {
		dst = p.w.appendNext(dst)
	}
	dst = append(dst, `"},"finish_reason":"`...)
	dst = append(dst, p.finish...)
	dst = append(dst, `"}],"usage":`...)
	dst = appendOllamaUsage(dst, p.prompt, p.generated())
	return append(dst, "}\n"...)
}

func ollamaCompletion(dst []byte, p *reply) []byte {
	dst = ollamaHead(dst, p, "text_completion")
	dst = append(dst, `,"model":`...)
	dst = append(dst, p.model...)
	dst = append(dst, `,"system_fingerprint":"fp_ollama","choices":[{"text":"`...)
	for i := 0; i < p.n; i++ {
		dst = p.w.appendNext(dst)
	}
	dst = append(dst, `","index":0,"finish_reason":"`...)
	dst = append(dst, p.finish...)
	dst = append(dst, `"}],"usage":`...)
	dst = appendOllamaUsage(dst, p.prompt, p.generated())
	return append(dst, "}\n"...)
}

func (s *Server) ollamaEmbeddings(dst []byte, r *request, p *reply) []byte {
	dst = append(dst, `{"object":"list","data":[`...)
	for i, in := range r.inputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"object":"embedding","embedding":`...)
		dst = s.appendVector(dst, r, in.hash)
		dst = append(dst, `,"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"model":`...)
	dst = append(dst, p.model...)
	dst = append(dst, `,"usage":{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(r.promptWords), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(r.promptWords), 10)
	return append(dst, "}}\n"...)
}

// ollamaEvent appends the JSON of one stream chunk (without SSE framing).
// Ollama has no role-only first chunk and never puts the last token in the
// finish chunk: its final /api/chat message is always an empty done message.
func ollamaEvent(dst []byte, p *reply, k evKind) []byte {
	if p.ep == epChat {
		dst = ollamaHead(dst, p, "chat.completion.chunk")
		dst = append(dst, `,"model":`...)
		dst = append(dst, p.model...)
		dst = append(dst, `,"system_fingerprint":"fp_ollama","choices":[`...)
		switch k {
		case evUsage:
			dst = append(dst, `],"usage":`...)
			dst = appendOllamaUsage(dst, p.prompt, p.generated())
			return append(dst, '}')
		case evFinish:
			dst = append(dst, `{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"`...)
			dst = append(dst, p.finish...)
			return append(dst, `"}]}`...)
		}
		dst = append(dst, `{"index":0,"delta":{"role":"assistant","content":"`...)
		dst = p.w.appendNext(dst)
		return append(dst, `"},"finish_reason":null}]}`...)
	}
	// CompletionChunk declares choices before model.
	dst = ollamaHead(dst, p, "text_completion")
	dst = append(dst, `,"choices":[`...)
	switch k {
	case evUsage:
		dst = append(dst, `],"model":`...)
		dst = append(dst, p.model...)
		dst = append(dst, `,"system_fingerprint":"fp_ollama","usage":`...)
		dst = appendOllamaUsage(dst, p.prompt, p.generated())
		return append(dst, '}')
	case evFinish:
		dst = append(dst, `{"text":"","index":0,"finish_reason":"`...)
		dst = append(dst, p.finish...)
		dst = append(dst, `"}]`...)
	default:
		dst = append(dst, `{"text":"`...)
		dst = p.w.appendNext(dst)
		dst = append(dst, `","index":0,"finish_reason":null}]`...)
	}
	dst = append(dst, `,"model":`...)
	dst = append(dst, p.model...)
	dst = append(dst, `,"system_fingerprint":"fp_ollama"`...)
	if p.usage {
		// CompleteWriter sets a zero Usage on every chunk when include_usage
		// is on; only the trailer carries real counts.
		dst = append(dst, `,"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`...)
	}
	return append(dst, '}')
}

// ollamaBrokenChunk appends what Ollama's OpenAI layer makes of an error
// after a stream started. server/routes.go streamResponse writes the error
// as the NDJSON line {"error":"..."} through the middleware's writer, whose
// status is already 200, so ChatWriter / CompleteWriter (middleware/
// openai.go) decode it as an api.ChatResponse / GenerateResponse, which have
// no error field: the client gets one empty chunk with an empty model and no
// finish_reason, then the body ends cleanly without [DONE]. The error text
// never reaches it.
func ollamaBrokenChunk(dst []byte, p *reply) []byte {
	if p.ep == epChat {
		dst = ollamaHead(dst, p, "chat.completion.chunk")
		return append(dst, `,"model":"","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`...)
	}
	dst = ollamaHead(dst, p, "text_completion")
	dst = append(dst, `,"choices":[{"text":"","index":0,"finish_reason":null}],"model":"","system_fingerprint":"fp_ollama"`...)
	if p.usage {
		dst = append(dst, `,"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`...)
	}
	return append(dst, '}')
}

// ollamaErrorType is openai.NewError's status-to-type mapping.
func ollamaErrorType(code int) string {
	switch code {
	case fasthttp.StatusBadRequest:
		return "invalid_request_error"
	case fasthttp.StatusNotFound:
		return "not_found_error"
	}
	return "api_error"
}

// ollamaError appends openai.ErrorResponse; param and code are always null.
func ollamaError(dst []byte, code int, msg string) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = appendJSONString(dst, msg)
	dst = append(dst, `,"type":"`...)
	dst = append(dst, ollamaErrorType(code)...)
	return append(dst, `","param":null,"code":null}}`+"\n"...)
}

// ollamaNamespace is what model.ParseName(name).Namespace yields for the
// common forms: "library" unless the name carries a namespace/ prefix.
func ollamaNamespace(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return "library"
	}
	return parts[len(parts)-2]
}

func (s *Server) ollamaModels(dst []byte) []byte {
	dst = append(dst, `{"object":"list","data":[{"id":`...)
	dst = append(dst, s.modelJSON...)
	dst = append(dst, `,"object":"model","created":`...)
	dst = strconv.AppendInt(dst, s.modified.Unix(), 10)
	dst = append(dst, `,"owned_by":`...)
	dst = appendJSONString(dst, ollamaNamespace(s.opts.Model))
	return append(dst, "}]}\n"...)
}

func (s *Server) ollamaTags(dst []byte) []byte {
	dst = append(dst, `{"models":[{"name":`...)
	dst = append(dst, s.modelJSON...)
	dst = append(dst, `,"model":`...)
	dst = append(dst, s.modelJSON...)
	dst = append(dst, `,"modified_at":"`...)
	dst = s.modified.AppendFormat(dst, "2006-01-02T15:04:05.999999999Z07:00")
	dst = append(dst, `","size":4920753328,"digest":"`...)
	h := fnv1a64(fnvOffset, s.modelJSON)
	dst = appendHexID(dst, h) // 64 hex digits, like a sha256
	dst = appendHexID(dst, ^h)
	return append(dst, `","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"8.0B","quantization_level":"Q4_K_M"}}]}`...)
}
