package gateway

import (
	"bytes"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/drift"
	"github.com/llmgate/llmgate/gateway/cache"
	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/guard"
)

// Stage 9's drift sample: what a request says about its model version, gathered as the request
// passes (prompt at decode, completion as it comes back) and handed to the version's recorder
// at the end. Nothing here blocks or allocates per request.

// headBytes bounds the prompt and completion starts kept for script and refusal detection: a
// refusal announces itself in the first sentence, and a script shows in a few words.
const headBytes = 96

// requestStats is the part of the pooled request that feeds drift statistics.
type requestStats struct {
	vs             *versionStats // nil when statistics are off
	promptHead     []byte        // the start of the last user text
	promptBytes    int
	tools          bool
	finish         drift.FinishReason
	completionHead []byte       // the start of choice 0's text
	replayed       *cache.Entry // completionHead is this entry's, which may know its refusal
	// refused: choice 0 carried a refusal member (OpenAI's message.refusal, delta.refusal),
	// which is a refusal whatever its words, with content null.
	refused bool
	cache   drift.CacheResult
	safety  uint16 // categories the guard saw, as drift bits
	// modelMissing: the last backend that answered 404 said it has no such model
	// (saysModelMissing), which is its failure, not the client's (see driftStatus).
	modelMissing bool
	sample       drift.Sample
}

func (s *requestStats) reset() {
	s.vs, s.promptHead, s.promptBytes, s.tools = nil, s.promptHead[:0], 0, false
	s.finish, s.completionHead, s.cache, s.safety = drift.FinishUnknown, s.completionHead[:0], drift.CacheBypass, 0
	s.replayed, s.refused, s.modelMissing = nil, false, false
}

// notePrompt keeps what the sample needs of the prompt: its size, the start of its last user
// text (for the script) and whether tools were offered.
func (s *requestStats) notePrompt(op operation, root *fastjson.Value) {
	s.tools = root.Exists("tools") || root.Exists("functions")
	forEachPromptText(op, root, func(_ *fastjson.Value, text []byte, kind promptTextKind) {
		s.promptBytes += len(text)
		if kind != textToolArguments { // JSON, not the user's language
			s.promptHead = append(s.promptHead[:0], text[:min(len(text), headBytes)]...)
		}
	})
}

// noteCompletion reads finish_reason and the start of choice 0's text from a buffered answer.
func (s *requestStats) noteCompletion(body []byte) {
	if cs, ce := jsonscan.Find(body, "choices"); cs >= 0 {
		s.noteChoices(body[cs:ce], false)
	}
}

// noteChoices reads finish_reason, the start of choice 0's text and its refusal member from
// the choices array of an answer or, with chunk set, of a stream chunk (whose text adds to the
// start kept so far, its escapes decoded by appendHead).
func (s *requestStats) noteChoices(choices []byte, chunk bool) {
	full := len(s.completionHead) >= headBytes
	// Most chunks carry neither a finish reason nor text the head still needs: skip the scan.
	if full && !hasFinishReason(choices) {
		return
	}
	fs := jsonscan.FirstElementStart(choices)
	if fs < 0 {
		return
	}
	keys := answerChoiceMembers
	if chunk {
		keys = chunkChoiceMembers
	}
	var m [4]jsonscan.Span // index, finish_reason, message or delta, text: one pass over the choice
	choice := choices[fs:] // FindEach reads up to the choice's closing brace
	jsonscan.FindEach(choice, keys, m[:])
	if chunk && m[0].Start >= 0 && string(choice[m[0].Start:m[0].End]) != "0" {
		return
	}
	if f := m[1]; f.Start >= 0 && choice[f.Start] == '"' {
		s.setFinish(choice[f.Start+1 : f.End-1])
	}
	if c := m[2]; c.Start >= 0 {
		msg := choice[c.Start:c.End]
		cs, ce, rs, re := jsonscan.FindPair(msg, "content", "refusal")
		if nonEmptyString(msg, jsonscan.Span{Start: rs, End: re}) {
			s.refused = true
		}
		if !full {
			s.noteString(msg, jsonscan.Span{Start: cs, End: ce})
		}
	} else if !full {
		s.noteString(choice, m[3])
	}
}

// hasFinishReason reports whether choices hold a finish_reason that is a string, not null:
// its key, then the colon and a quote, with any JSON white space between them, as Python
// servers write "finish_reason": "stop".
func hasFinishReason(choices []byte) bool {
	key := []byte(`"finish_reason"`)
	for {
		k := bytes.Index(choices, key)
		if k < 0 {
			return false
		}
		choices = choices[k+len(key):]
		colon := false
		for i, c := range choices {
			switch {
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				continue
			case c == ':' && !colon:
				colon = true
				continue
			case c == '"' && colon:
				return true
			}
			choices = choices[i:]
			break
		}
	}
}

// carriesTokens reports whether a stream chunk's choices carry generated content: text
// (delta.content, or text in a completions stream), reasoning (delta.reasoning_content or
// delta.reasoning), a refusal, or tool calls (their name and arguments are generated). The
// chunk that opens a choice with only its role and the one that closes it with finish_reason
// and an empty delta carry none: counting them made tokens per second about 7% high.
func carriesTokens(choices []byte) bool {
	// Nearly every chunk is text, as vLLM and Ollama write it: "content":"..." (a completions
	// stream: "text":"...") with something in the string. Those bytes cannot stand inside a
	// JSON string, where the quotes would be escaped, so finding them settles the chunk
	// without reading its structure; the chunks that open and close a choice, tool calls and
	// anything else take the scan below.
	for _, m := range textMembers {
		if k := bytes.Index(choices, m); k >= 0 && k+len(m) < len(choices) && choices[k+len(m)] != '"' {
			return true
		}
	}
	for i := jsonscan.FirstElementStart(choices); i >= 0; i = jsonscan.NextElementStart(choices, i) {
		var c [2]jsonscan.Span // delta, text
		choice := choices[i:]  // FindEach reads up to the choice's closing brace
		jsonscan.FindEach(choice, tokenChoiceMembers, c[:])
		if nonEmptyString(choice, c[1]) {
			return true
		}
		if c[0].Start < 0 {
			continue
		}
		delta := choice[c[0].Start:c[0].End]
		var d [5]jsonscan.Span
		jsonscan.FindEach(delta, tokenDeltaMembers, d[:])
		if nonEmptyString(delta, d[0]) || nonEmptyString(delta, d[1]) || nonEmptyString(delta, d[2]) || nonEmptyString(delta, d[3]) {
			return true
		}
		if t := d[4]; t.Start >= 0 && jsonscan.FirstElementStart(delta[t.Start:t.End]) >= 0 {
			return true
		}
	}
	return false
}

// textChoice returns the text of a stream chunk's choices when they are the one choice of plain
// text that nearly every chunk of a vLLM or Ollama stream is, written compactly, as
//
//	[{"index":0,"delta":{"content":"..."},"logprobs":null,"finish_reason":null}]
//
// (Ollama's delta starts with "role":"assistant"; a completions stream has "text":"..." in place of
// the delta; a reasoning model's delta may hold "reasoning_content" or "reasoning" in place of
// "content", reported by reasoning; after the choice's text come only null members that
// isTextChoiceNull allows); ok false for anything else. Those bytes settle the chunk without a
// scan: the choice carries tokens when the text is not empty (carriesTokens), and its text, unless
// it is reasoning, is all that noteChoices would read of it (a null finish_reason records nothing).
// One look at the choices instead of carriesTokens' and then noteChoices'.
func textChoice(choices []byte) (text []byte, reasoning, ok bool) {
	i, delta := 0, false
	switch {
	case bytes.HasPrefix(choices, textChoiceDelta):
		i, delta = len(textChoiceDelta), true
	case bytes.HasPrefix(choices, textChoiceRoleDelta):
		i, delta = len(textChoiceRoleDelta), true
	case bytes.HasPrefix(choices, textChoiceText):
		i = len(textChoiceText)
	case bytes.HasPrefix(choices, textChoiceReasoningContent):
		i, delta, reasoning = len(textChoiceReasoningContent), true, true
	case bytes.HasPrefix(choices, textChoiceReasoning):
		i, delta, reasoning = len(textChoiceReasoning), true, true
	default:
		return nil, false, false
	}
	e := stringEnd(choices, i)
	if e < 0 {
		return nil, false, false
	}
	text, i = choices[i:e], e+1
	if delta {
		if i >= len(choices) || choices[i] != '}' { // the delta has no member after its content
			return nil, false, false
		}
		i++
	}
	// Only null members follow, none of them one that noteChoices or carriesTokens reads
	// (a later "delta" or "text" would be the one a scan finds), then the end of the array.
	rest := choices[i:]
	for _, tail := range textChoiceTails { // as vLLM and Ollama write them: one compare
		if string(rest) == tail {
			return text, reasoning, true
		}
	}
	for {
		if string(rest) == "}]" {
			return text, reasoning, true
		}
		if len(rest) < 2 || rest[0] != ',' || rest[1] != '"' {
			return nil, false, false
		}
		k := bytes.IndexByte(rest[2:], '"')
		if k < 0 || !isTextChoiceNull(rest[2:2+k]) || !bytes.HasPrefix(rest[2+k:], []byte(`":null`)) {
			return nil, false, false
		}
		rest = rest[2+k+len(`":null`):]
	}
}

// The starts of the choices textChoice reads, and the members it lets follow with a null value.
var (
	textChoiceDelta     = []byte(`[{"index":0,"delta":{"content":"`)
	textChoiceRoleDelta = []byte(`[{"index":0,"delta":{"role":"assistant","content":"`)
	textChoiceText      = []byte(`[{"index":0,"text":"`)

	textChoiceReasoningContent = []byte(`[{"index":0,"delta":{"reasoning_content":"`)
	textChoiceReasoning        = []byte(`[{"index":0,"delta":{"reasoning":"`)
	textChoiceTails            = []string{
		`,"finish_reason":null}]`,
		`,"logprobs":null,"finish_reason":null}]`,
		`,"logprobs":null,"finish_reason":null,"token_ids":null}]`,
		`,"logprobs":null,"finish_reason":null,"stop_reason":null}]`,
	}
)

func isTextChoiceNull(key []byte) bool {
	switch string(key) {
	case "finish_reason", "logprobs", "stop_reason", "token_ids", "prompt_token_ids":
		return true
	}
	return false
}

// stringEnd returns the index of the quote that ends the JSON string whose contents start at
// b[i] (b[i-1] is its opening quote), or -1: the first quote not escaped by an odd number of
// backslashes.
func stringEnd(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		i += j
		n := 0
		for k := i - 1; b[k] == '\\'; k-- { // stops at the opening quote at the latest
			n++
		}
		if n%2 == 0 {
			return i
		}
		i++
	}
}

// The members carriesTokens reads: of a choice, then of its delta; and the text members it
// looks for first, as written without spaces.
var (
	textMembers        = [][]byte{[]byte(`"content":"`), []byte(`"text":"`)}
	tokenChoiceMembers = []string{"delta", "text"}
	tokenDeltaMembers  = []string{"content", "reasoning_content", "reasoning", "refusal", "tool_calls"}
)

// nonEmptyString reports whether span of b is a JSON string other than "".
func nonEmptyString(b []byte, span jsonscan.Span) bool {
	return span.Start >= 0 && b[span.Start] == '"' && span.End-span.Start > 2
}

// The members of choice 0 that noteChoices reads, in an answer and in a stream chunk.
var (
	answerChoiceMembers = []string{"index", "finish_reason", "message", "text"}
	chunkChoiceMembers  = []string{"index", "finish_reason", "delta", "text"}
)

// noteCached takes finish_reason and the text of choice 0 from a cache entry (cache.Entry.First),
// as noteCompletion would read them from the replayed body.
func (s *requestStats) noteCached(finish, text []byte) {
	if finish != nil {
		s.setFinish(finish)
	}
	s.appendHead(text)
}

// appendHead adds text, the contents of a JSON string, to the completion start kept, up to
// headBytes, with its escapes decoded: the refusal phrases are text, and a backend that escapes
// every non-ASCII character (Python's json.dumps does by default) writes "I’m" as I\u2019m.
func (s *requestStats) appendHead(text []byte) {
	for len(text) > 0 && len(s.completionHead) < headBytes {
		i := bytes.IndexByte(text, '\\')
		if i < 0 {
			i = len(text)
		}
		n := min(i, headBytes-len(s.completionHead))
		s.completionHead = append(s.completionHead, text[:n]...)
		if text = text[n:]; len(text) < 2 || n < i {
			return // all in, the head is full, or a lone backslash (not valid JSON)
		}
		var size int
		s.completionHead, size = appendUnescaped(s.completionHead, text)
		text = text[size:]
	}
}

// appendUnescaped appends the character that the JSON escape at the start of esc (a backslash
// and what follows) stands for, and returns how many bytes of esc it took. A \u escape that is
// not well formed (a lone surrogate, not four hex digits) appends U+FFFD.
func appendUnescaped(dst, esc []byte) ([]byte, int) {
	switch c := esc[1]; c {
	case 'n':
		return append(dst, '\n'), 2
	case 't':
		return append(dst, '\t'), 2
	case 'r':
		return append(dst, '\r'), 2
	case 'b', 'f':
		return dst, 2
	case 'u':
		r, ok := jsonscan.Hex4(esc, 2)
		if !ok {
			return utf8.AppendRune(dst, utf8.RuneError), 2
		}
		if utf16.IsSurrogate(r) {
			if len(esc) >= 12 && esc[6] == '\\' && esc[7] == 'u' {
				if lo, ok := jsonscan.Hex4(esc, 8); ok {
					if pair := utf16.DecodeRune(r, lo); pair != utf8.RuneError {
						return utf8.AppendRune(dst, pair), 12
					}
				}
			}
			return utf8.AppendRune(dst, utf8.RuneError), 6
		}
		return utf8.AppendRune(dst, r), 6
	default: // \" \\ \/
		return append(dst, c), 2
	}
}

// setFinish records a finish_reason, given as the raw contents of its JSON string.
func (s *requestStats) setFinish(reason []byte) {
	switch string(reason) {
	case "stop":
		s.finish = drift.FinishStop
	case "length":
		s.finish = drift.FinishLength
	case "tool_calls", "function_call":
		s.finish = drift.FinishToolCalls
	case "content_filter":
		s.finish = drift.FinishContentFilter
	default:
		s.finish = drift.FinishOther
	}
}

// noteString adds the JSON string at span v of obj to the completion start kept.
func (s *requestStats) noteString(obj []byte, v jsonscan.Span) {
	if v.Start < 0 || obj[v.Start] != '"' || v.End-v.Start < 2 {
		return
	}
	s.appendHead(obj[v.Start+1 : v.End-1])
}

// safetyBit maps a safety category code to its drift bit: S1..S14 are bits 0..13, the prompt
// attack categories share bit 14, anything else is bit 15.
func safetyBit(code string) uint16 {
	if len(code) >= 2 && code[0] == 'S' {
		n := 0
		for _, c := range code[1:] {
			if c < '0' || c > '9' {
				n = -1
				break
			}
			n = n*10 + int(c-'0')
		}
		if n >= 1 && n <= 14 {
			return 1 << (n - 1)
		}
	}
	switch code {
	case guard.CategoryPromptInjection, guard.CategoryJailbreak, guard.CategorySystemPromptExtraction:
		return 1 << 14
	}
	return 1 << 15
}

// entityBits is the drift bitset of the PII entity types the vault saw, both directions.
func entityBits(v *guard.Vault) uint16 {
	if v == nil {
		return 0
	}
	return uint16(v.FoundTypes())
}

// observe is stage 9's drift sample. It runs on the request goroutine: Observe is a few atomic
// adds; script and refusal detection read at most headBytes each.
func (g *Gateway) observe(r *request, now time.Time, elapsed, overhead time.Duration) {
	st := &r.stats
	vs := st.vs
	s := &st.sample
	s.Reset()
	s.At = now
	if r.handles != nil {
		// The latency of an answer a backend gave. An answer from the cache (or another
		// request's backend call) took the cache's time, not the model's: a new version starts
		// with an empty cache, and counted, stable's hits made a canary as fast as stable read
		// as many times slower in a rollout's latency check, which rolled it back. A request no
		// backend was asked for (a prompt the guard refused, no backend in service) took the
		// gateway's microseconds: counted, a wave of blocked prompts read as a faster model. The
		// cache result and the status are features of their own.
		s.Latency = elapsed
	}
	s.Overhead = overhead
	s.PromptBytes = int64(st.promptBytes)
	if r.inputTokens > 0 {
		s.PromptTokens = int64(r.inputTokens)
	}
	if r.outputTokens > 0 {
		s.CompletionTokens = int64(r.outputTokens)
	}
	// TTFT and the gap between events are the model's: a stream replayed from the cache (or
	// followed from another request's flight) has no first token of its own to time, as in
	// the TTFT metrics (finish).
	if !r.firstEventAt.IsZero() && r.handles != nil {
		s.TTFT = r.firstEventAt.Sub(r.start)
		if r.tokenEvents > 1 {
			s.InterToken = r.lastTokenAt.Sub(r.firstTokenAt) / time.Duration(r.tokenEvents-1)
		}
	}
	s.FinishReason = st.finish
	s.Status = driftStatus(r)
	s.Cache = st.cache
	if s.Cache == drift.CacheHit && s.Status.Failure() {
		// A follower whose leader's stream broke shares the backend's failure: counted as the
		// backend's answer it is, so that the cache's answers never fail and a rollout's error
		// rate of backend answers (drift.Snapshot.Answered) has it in its n too.
		s.Cache = drift.CacheMiss
	}
	// No backend was asked, and the version did not fail it (a prompt the guard blocked, a bad
	// request): not one of the backends' answers that its error rate divides by, or a wave of
	// blocked prompts diluted the rate. Failures without a backend (none in service) stay in.
	s.NotForwarded = r.handles == nil && s.Cache != drift.CacheHit && !s.Status.Failure()
	s.Entities = entityBits(r.guard.vault)
	s.Safety = st.safety
	// A refusal is of an answer given (drift.Snapshot.Answers divides by those): a request that
	// failed or was blocked gave none, whatever text came before.
	s.Refusal = s.Status == drift.StatusOK && g.refusal(st)
	s.Script = drift.DetectScript(st.promptHead)
	s.Tools = st.tools
	s.Stream = r.stream
	if r.op != opEmbeddings && (s.PromptTokens < 0 || s.CompletionTokens < 0) {
		// The backend reported no usage: count tokens off the request path, for the sample of
		// an answer and for the token metrics of what a backend generated, a stream cut before
		// its usage chunk included (finish counted only the usage a backend reported).
		var vm *versionMetrics
		if h := r.handles; h != nil && (s.Status == drift.StatusOK || r.stream && r.tokenEvents > 0) {
			vm = h.metrics.version
		}
		if s.Status == drift.StatusOK || vm != nil {
			g.stats.tokens.push(g, vs, s, r, vm)
			return
		}
	}
	vs.observe(s)
}

// Values of a cache entry's note (see cache.Entry.Note): whether its answer reads as a refusal.
const (
	noteRefusalUnknown uint32 = iota
	noteNoRefusal
	noteRefusal
)

// refusal reports whether the completion starts as a refusal. A replayed entry's answer is
// read once: its note remembers the outcome for the replays after it.
func (g *Gateway) refusal(st *requestStats) bool {
	if st.refused {
		return true
	}
	if len(st.completionHead) == 0 {
		return false
	}
	var note *atomic.Uint32
	if st.replayed != nil {
		note = st.replayed.Note()
		switch note.Load() {
		case noteNoRefusal:
			return false
		case noteRefusal:
			return true
		}
	}
	refused := g.stats.refusal.Match(st.completionHead)
	if note != nil {
		v := noteNoRefusal
		if refused {
			v = noteRefusal
		}
		note.Store(v)
	}
	return refused
}

// driftStatus classes a request's outcome.
func driftStatus(r *request) drift.Status {
	status := r.status
	if r.eventStatus != 0 {
		// A stream the backend ended with an error event: classed as that error would be
		// before the 200. One the backend types as the request's fault (a 400's
		// invalid_request_error) is no failure of the model version, as the same refusal
		// before the stream began is not.
		status = r.eventStatus
	}
	switch {
	case r.guard.blocked != "":
		// A refused prompt (4xx), and a completion the guard stopped: a buffered one answers
		// 200 with the choice emptied, a stream ends with a content_filter error event after
		// its 200. Neither is the model version's failure.
		return drift.StatusBlocked
	case r.errCode == "client_disconnected":
		return drift.StatusCanceled
	case r.errCode == errShutdownCut.code:
		// The gateway's own shutdown cut the request (its grace ran out), as the client leaving
		// cuts one: no failure of the version. Counted as its upstream error, a deploy's rolling
		// restart raised the error rate of every version with long streams, and a rollout could
		// roll its canary back on it.
		return drift.StatusCanceled
	case r.errCode == "upstream_timeout":
		return drift.StatusTimeout
	case status >= 200 && status < 300 && r.errCode == "":
		return drift.StatusOK
	case status == fasthttp.StatusTooManyRequests:
		return drift.StatusRateLimited
	case status == fasthttp.StatusServiceUnavailable && r.errCode == errNoBackend.code:
		return drift.StatusUnavailable
	case status == fasthttp.StatusNotFound && r.stats.modelMissing:
		// The backend said it has no such model, though the gateway routed the model there:
		// the backend's failure (a model removed from an Ollama, a vLLM restarted under another
		// name), not the client's. Counted as the client's, a version whose every backend
		// stopped serving the model showed an error rate of 0. A 404 for an endpoint the model
		// lacks (embeddings of a chat model) stays the client's.
		return drift.StatusUpstreamError
	case status >= 400 && status < 500:
		return drift.StatusClientError
	case status >= 500 || r.errCode != "":
		return drift.StatusUpstreamError
	}
	return drift.StatusOther
}
