package gateway

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// apiError is an error the client sees, in OpenAI's envelope
// {"error":{"message","type","param","code"}} with code a string or null.
type apiError struct {
	status     int
	message    string
	typ        string
	param      string // empty: null
	code       string // empty: null
	retryAfter int    // seconds; sent as Retry-After when > 0
	retry      retryHint
}

// retryHint is what x-should-retry tells the OpenAI SDKs, which obey it before anything else
// (python and node both; without it they retry 408, 409, 429 and 5xx twice). An SDK retry comes
// back through the gateway, which retries on its own: sending true where another round only
// repeats the work multiplies the load on a struggling backend.
type retryHint uint8

const (
	retryUnset         retryHint = iota // no header: the SDK's defaults
	retryYes                            // waiting helps: no backend in service, a connect failure, a backend's 429/503
	retryNo                             // another try repeats the failure or only adds load: timeouts, quota, long waits
	retryUnlessRetried                  // a failed answer: true after one attempt, false once the gateway tried another backend
)

// shouldRetry returns the x-should-retry value for e after the gateway made attempts tries,
// "" for none.
func (e *apiError) shouldRetry(attempts int) string {
	switch e.retry {
	case retryYes:
		return "true"
	case retryNo:
		return "false"
	case retryUnlessRetried:
		if attempts > 1 {
			return "false"
		}
		return "true"
	}
	return ""
}

func (e *apiError) Error() string { return e.message }

// Error types, as OpenAI names them.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"
	typeRateLimit      = "rate_limit_error"
	typePermission     = "permission_error"
)

// maxRetryAfter keeps Retry-After where both official SDKs honour it (node ignores > 60 s).
const maxRetryAfter = 60

func badRequest(param, message string) *apiError {
	return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, param: param, message: message}
}

// Errors the gateway answers itself. Pre-built so the hot path does not allocate for them.
var (
	errMethodNotAllowed = &apiError{status: fasthttp.StatusMethodNotAllowed, typ: typeInvalidRequest, message: "Method not allowed."}
	errAdminNotFound    = &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "unknown_url", message: "Unknown admin URL. Supported: GET /metrics, /healthz; /admin/models[/{alias}[/versions|/traffic|/shadow|/promote|/rollback|/history|/rollouts|/rollout]] (see the README); /admin/drift[/{alias}/{version}[/reference]], /admin/stats/{alias}, /admin/cache; /debug/pprof/ (admin token)."}
	errMalformedJSON    = &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, message: "We could not parse the JSON body of your request. The API expects a JSON object; check the body and the Content-Type."}
	errNotFound         = &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "unknown_url", message: "Unknown request URL. Supported: POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models, /v1/models/{model}, /healthz, /readyz."}
	errBodyTooLarge     = &apiError{status: fasthttp.StatusRequestEntityTooLarge, typ: typeInvalidRequest, code: "request_too_large", message: "Request body too large."} // see bodyTooLarge
	errNoBackend        = &apiError{status: fasthttp.StatusServiceUnavailable, typ: typeServer, code: "server_is_overloaded", message: "No healthy backend is available for this model version; retry shortly.", retryAfter: 5, retry: retryYes}
	errUpstreamTimeout  = &apiError{status: fasthttp.StatusGatewayTimeout, typ: typeServer, code: "upstream_timeout", message: "The model backend did not answer in time.", retry: retryNo}
	errUpstreamFailed   = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend failed to answer.", retryAfter: 1, retry: retryUnlessRetried}
	errUpstreamDown     = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend could not be reached.", retryAfter: 1, retry: retryYes}
	errIdleTimeout      = &apiError{status: fasthttp.StatusGatewayTimeout, typ: typeServer, code: "upstream_timeout", message: "The model backend stopped streaming."}
	errTotalTimeout     = &apiError{status: fasthttp.StatusGatewayTimeout, typ: typeServer, code: "upstream_timeout", message: "The request exceeded the gateway's total time limit."}
	errStreamBroken     = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend closed the stream early."}
	// errShutdownCut ends a stream still running when the gateway's shutdown grace is over.
	errShutdownCut  = &apiError{status: fasthttp.StatusServiceUnavailable, typ: typeServer, code: "server_shutting_down", message: "The gateway shut down before the answer was complete (its shutdown grace ran out); retry the request.", retry: retryYes}
	errShuttingDown = &apiError{status: fasthttp.StatusServiceUnavailable, typ: typeServer, code: "server_is_overloaded", message: "The gateway is shutting down.", retryAfter: 1, retry: retryYes}

	// errUpstreamAuth: a backend refused the gateway's own key. Not the backend's message,
	// which is about that key (OpenAI's names its first characters), nor a 401, which the
	// SDKs raise as the client's AuthenticationError.
	errUpstreamAuth = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend refused the gateway's credentials; its operator must check the backend's API key.", retry: retryNo}
	// errFirstEventTimeout: a stream whose headers came but not its first event (a prefill
	// past timeouts.first_byte), which errIdleTimeout's "stopped" would misdescribe.
	errFirstEventTimeout = &apiError{status: fasthttp.StatusGatewayTimeout, typ: typeServer, code: "upstream_timeout", message: "The model backend did not start its answer in time.", retry: retryNo}
	// errBackendConnsFull: the gateway has as many connections open to the backend as it allows.
	errBackendConnsFull = &apiError{status: fasthttp.StatusServiceUnavailable, typ: typeServer, code: "server_is_overloaded", message: "Too many requests are in flight to the model backend; retry shortly.", retryAfter: 1, retry: retryYes}
)

func unknownModel(model []byte) *apiError {
	return &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, param: "model", code: "model_not_found",
		message: "The model `" + string(model) + "` does not exist or you do not have access to it."}
}

func unknownVersion(model, version []byte) *apiError {
	return &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, param: "model", code: "model_not_found",
		message: "The model `" + string(model) + "` has no version `" + string(version) + "`; GET /v1/models lists them."}
}

// unknownHeaderVersion is unknownVersion for a version asked for in x-llmgate-version.
func unknownHeaderVersion(model, version []byte) *apiError {
	return &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found",
		message: "The model `" + string(model) + "` has no version `" + string(version) + "` (asked for in the x-llmgate-version header); GET /v1/models lists them."}
}

// asAPIError turns any stage error into what the client sees; unknown errors become a 500
// without their text, so internals never leak.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return errInternal
}

var errInternal = &apiError{status: fasthttp.StatusInternalServerError, typ: typeServer, message: "Internal gateway error."}

// appendErrorJSON appends the envelope {"error":{...}} to dst.
func appendErrorJSON(dst []byte, e *apiError) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = appendJSONText(dst, e.message)
	dst = append(dst, `,"type":`...)
	dst = appendJSONText(dst, e.typ)
	dst = append(dst, `,"param":`...)
	dst = appendNullableString(dst, e.param)
	dst = append(dst, `,"code":`...)
	dst = appendNullableString(dst, e.code)
	return append(dst, "}}"...)
}

func appendNullableString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendJSONText(dst, s)
}

// appendJSONText appends s as a JSON string that every client parses. Unlike strconv.Quote,
// whose \x01, \a or \U000e0001 escapes are not JSON, it writes control characters as \u00XX and
// other characters as they are; bytes that are not UTF-8 (a model name from a client, a
// backend's error message) become U+FFFD, since strict decoders (Python's json) refuse them.
func appendJSONText(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, `\u00`...)
				dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// writeError answers the request with e as a JSON error response.
func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	if e.retryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(min(e.retryAfter, maxRetryAfter)))
	}
	ctx.Response.SetBodyRaw(appendErrorJSON(ctx.Response.Body()[:0], e))
}

// normalizeBackendError rewrites a backend's error body into OpenAI's envelope. It accepts
// current vLLM ({"error":{...,"type":"BadRequestError","code":400}}), old flat vLLM
// ({"object":"error","message",...}), Ollama's OpenAI layer, Ollama's native {"error":"text"},
// and anything else (text/html) as an opaque upstream failure.
func normalizeBackendError(status int, body []byte, retryAfter int) *apiError {
	e := &apiError{status: status, typ: typeForStatus(status), retryAfter: retryAfter}
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err == nil {
		obj := v
		if inner := v.Get("error"); inner != nil {
			if inner.Type() == fastjson.TypeString {
				e.message = string(inner.GetStringBytes())
				return finishBackendError(e)
			}
			obj = inner
		}
		e.message = string(obj.GetStringBytes("message"))
		e.param = string(obj.GetStringBytes("param"))
		t := obj.GetStringBytes("type")
		if len(t) > 0 {
			e.typ = openAIType(string(t), status)
		}
		if c := obj.Get("code"); c != nil && c.Type() == fastjson.TypeString {
			e.code = string(c.GetStringBytes())
		}
		if e.code == "" && status == fasthttp.StatusBadRequest && contextTooLong(e.message, t) {
			e.code = "context_length_exceeded"
		}
	}
	return finishBackendError(e)
}

// contextTooLong reports whether a backend's 400 refuses a prompt too long for the model's
// context, which OpenAI codes context_length_exceeded: clients and frameworks read that code
// to trim a conversation and try again. vLLM says "This model's maximum context length is N
// tokens" (with code null); llama.cpp's server gives the type exceed_context_size_error.
func contextTooLong(message string, typ []byte) bool {
	return strings.Contains(message, "maximum context length") || string(typ) == "exceed_context_size_error"
}

func finishBackendError(e *apiError) *apiError {
	if e.message == "" {
		e.message = "The model backend answered with status " + strconv.Itoa(e.status) + "."
	}
	if e.code == "" {
		switch e.status {
		case fasthttp.StatusNotFound:
			e.code = "model_not_found"
		case fasthttp.StatusTooManyRequests:
			e.code = "rate_limit_exceeded"
			if e.typ == "insufficient_quota" {
				e.code = e.typ
			}
		}
	}
	return e
}

// openAIType maps vLLM's Python exception names to OpenAI's snake_case types; OpenAI-style
// types pass through.
func openAIType(t string, status int) string {
	switch t {
	case "BadRequestError", "invalid_request_error", "not_found_error", "NotFoundError":
		return typeInvalidRequest
	case "RateLimitError", "rate_limit_error":
		return typeRateLimit
	case "insufficient_quota": // OpenAI's type for a 429 that waiting does not cure
		return t
	case "InternalServerError", "server_error", "ServiceUnavailableError":
		return typeServer
	}
	// Anything else, including Ollama's catch-all "api_error" (which it also sends with 429 and
	// other 4xx), is typed by the status.
	return typeForStatus(status)
}

func typeForStatus(status int) string {
	switch {
	case status == fasthttp.StatusTooManyRequests:
		return typeRateLimit
	case status == fasthttp.StatusForbidden:
		return typePermission
	case status >= 500:
		return typeServer
	default:
		return typeInvalidRequest
	}
}

// bodyTooLarge is the 413 of a gateway whose bodies are limited to limit bytes: it says the
// limit, so that a client whose prompt grew knows by how much to cut it.
func bodyTooLarge(limit int) *apiError {
	size := strconv.Itoa(limit) + " bytes"
	if limit >= 1<<20 && limit%(1<<20) == 0 {
		size = strconv.Itoa(limit>>20) + " MiB"
	}
	e := *errBodyTooLarge
	e.message = "Request body too large: this gateway accepts bodies of at most " + size + " (limits.max_body_bytes)."
	return &e
}
