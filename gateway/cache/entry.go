package cache

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
)

// ErrIncomplete means a response is not a whole answer (an error, a missing finish_reason, fewer
// choices than asked for, a stream cut short) and must not be cached.
var ErrIncomplete = errors.New("cache: response is not a complete answer")

// Entry is one cached answer. It holds the response as a buffered OpenAI JSON body (the
// backend's own bytes, or a body assembled from a stream) and the offsets of its parts, so a
// buffered replay is a splice and a stream replay needs no parsing. Immutable once built; safe
// for concurrent replay.
type Entry struct {
	kind                           Kind
	doc                            []byte
	id, created, model, fp, usage  span
	extras                         []field // non-null top-level members the replay does not know
	choices                        []choice
	fields                         []field // backing store of the choices' member lists
	promptTokens, completionTokens int

	// Set by Store.Set.
	key   Key
	scope *Scope
	gen   generation
	size  int64
}

// span is a value's bytes in Entry.doc; the zero span means absent or null.
type span struct{ s, e int32 }

func (s span) ok() bool { return s.e > s.s }

// field is one object member: its raw key (quotes included) and raw value.
type field struct{ k, v span }

// choice locates one choice; msg and extras index Entry.fields.
type choice struct {
	index            int
	msg, extras      [2]int32 // [start, end) in Entry.fields
	text, lp, finish span     // text: completions; lp: logprobs
}

// NewEntry builds an entry from a complete buffered backend response (a chat.completion,
// text_completion or embeddings list) to a request of kind that asked for n choices. body is
// copied. It returns ErrIncomplete for error bodies and answers that are not whole.
func NewEntry(kind Kind, body []byte, n int) (*Entry, error) {
	e := &Entry{kind: kind, doc: append([]byte(nil), body...)}
	if err := e.index(n); err != nil {
		return nil, err
	}
	return e, nil
}

// Tokens returns the usage the cached answer reported (what it cost when it was generated).
func (e *Entry) Tokens() (prompt, completion int) { return e.promptTokens, e.completionTokens }

// Size returns the bytes the entry accounts for in the store.
func (e *Entry) Size() int64 { return e.size }

// Model returns the model name as the backend reported it (as written in JSON, escapes
// included), or nil.
func (e *Entry) Model() []byte {
	if !e.model.ok() {
		return nil
	}
	return e.doc[e.model.s+1 : e.model.e-1]
}

func (e *Entry) raw(s span) []byte { return e.doc[s.s:s.e] }

func (e *Entry) index(n int) error {
	i := skipWS(e.doc, 0)
	var data bool
	end, err := eachMember(e.doc, i, func(ks, ke, vs, ve int) error {
		k, v := e.doc[ks:ke], e.doc[vs:ve]
		sp, null := span{int32(vs), int32(ve)}, string(v) == "null"
		switch {
		case null:
		case keyIs(k, "error"):
			return ErrIncomplete
		case keyIs(k, "id") && v[0] == '"':
			e.id = sp
		case keyIs(k, "created") && v[0] != '"':
			e.created = sp
		case keyIs(k, "model") && v[0] == '"':
			e.model = sp
		case keyIs(k, "system_fingerprint"):
			e.fp = sp
		case keyIs(k, "usage") && v[0] == '{':
			e.usage = sp
			return e.indexUsage(vs)
		case keyIs(k, "object"):
		case keyIs(k, "choices") && e.kind != KindEmbeddings:
			_, err := eachElement(e.doc, vs, func(cs, _ int) error { return e.indexChoice(cs) }, 1)
			return err
		case keyIs(k, "data") && e.kind == KindEmbeddings && v[0] == '[':
			data = true
		default:
			e.extras = append(e.extras, field{span{int32(ks), int32(ke)}, sp})
		}
		return nil
	}, 0)
	if err != nil {
		return err
	}
	if skipWS(e.doc, end) != len(e.doc) {
		return errSyntax
	}
	if e.kind == KindEmbeddings {
		if !data {
			return ErrIncomplete
		}
	} else {
		if n < 1 || len(e.choices) != n {
			return ErrIncomplete // n > 1 is cached only when whole
		}
		slices.SortFunc(e.choices, func(a, b choice) int { return a.index - b.index })
		for j, c := range e.choices {
			if c.index != j {
				return ErrIncomplete
			}
		}
	}
	e.size = int64(len(e.doc)) + int64(len(e.fields)+len(e.extras))*16 + int64(len(e.choices))*48 + entryOverhead
	return nil
}

// entryOverhead approximates the Entry struct and the store's bookkeeping per item.
const entryOverhead = 256

func (e *Entry) indexUsage(i int) error {
	_, err := eachMember(e.doc, i, func(ks, ke, vs, ve int) error {
		k := e.doc[ks:ke]
		switch {
		case keyIs(k, "prompt_tokens"):
			e.promptTokens, _ = strconv.Atoi(string(e.doc[vs:ve]))
		case keyIs(k, "completion_tokens"):
			e.completionTokens, _ = strconv.Atoi(string(e.doc[vs:ve]))
		}
		return nil
	}, 1)
	return err
}

func (e *Entry) indexChoice(i int) error {
	c := choice{index: len(e.choices)}
	var hasMsg, hasText bool
	extras := make([]field, 0, 2) // choice extras are rare; kept apart so msg stays contiguous
	_, err := eachMember(e.doc, i, func(ks, ke, vs, ve int) error {
		k, v := e.doc[ks:ke], e.doc[vs:ve]
		sp := span{int32(vs), int32(ve)}
		switch {
		case keyIs(k, "index"):
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return ErrIncomplete
			}
			c.index = n
		case keyIs(k, "finish_reason"):
			if v[0] != '"' {
				return ErrIncomplete // null: the generation did not finish
			}
			c.finish = sp
		case keyIs(k, "logprobs"):
			if string(v) != "null" {
				c.lp = sp
			}
		case keyIs(k, "message") && e.kind == KindChat && v[0] == '{':
			hasMsg = true
			c.msg[0] = int32(len(e.fields))
			_, err := eachMember(e.doc, vs, func(ks, ke, vs, ve int) error {
				e.fields = append(e.fields, field{span{int32(ks), int32(ke)}, span{int32(vs), int32(ve)}})
				return nil
			}, 2)
			c.msg[1] = int32(len(e.fields))
			return err
		case keyIs(k, "text") && e.kind == KindCompletion && v[0] == '"':
			hasText, c.text = true, sp
		case string(v) != "null":
			extras = append(extras, field{span{int32(ks), int32(ke)}, sp})
		}
		return nil
	}, 1)
	if err != nil {
		return err
	}
	if !c.finish.ok() || (e.kind == KindChat && !hasMsg) || (e.kind == KindCompletion && !hasText) {
		return ErrIncomplete
	}
	c.extras[0] = int32(len(e.fields))
	e.fields = append(e.fields, extras...)
	c.extras[1] = int32(len(e.fields))
	e.choices = append(e.choices, c)
	return nil
}

// AppendJSON appends the entry as a buffered response body: the stored bytes with a fresh id
// and created (where the stored body has them; embeddings have neither).
func (e *Entry) AppendJSON(dst, id []byte, created int64) []byte {
	a, b := e.id, e.created
	if a.s > b.s {
		a, b = b, a
	}
	prev := int32(0)
	for _, s := range [2]span{a, b} {
		if !s.ok() {
			continue
		}
		dst = append(dst, e.doc[prev:s.s]...)
		if s == e.id {
			dst = append(append(append(dst, '"'), id...), '"')
		} else {
			dst = strconv.AppendInt(dst, created, 10)
		}
		prev = s.e
	}
	return append(dst, e.doc[prev:]...)
}

// Stream replay granularity: a chunk carries about this many words, and at most about
// maxPieceBytes of text without spaces (CJK, code), like a backend sending a few tokens per
// event.
const (
	wordsPerPiece = 4
	maxPieceBytes = 48
)

// AppendSSE appends the entry as a complete SSE response body: per choice a role chunk, the
// text in chunks of a few words, tool calls, a chunk with logprobs and finish_reason; then a
// usage chunk when includeUsage and the entry has usage; then "data: [DONE]". Every event ends
// in a blank line. Embedding entries append nothing.
func (e *Entry) AppendSSE(dst, id []byte, created int64, includeUsage bool) []byte {
	if e.kind == KindEmbeddings {
		return dst
	}
	// The chunk header is written once and copied for each chunk.
	h0 := len(dst)
	dst = append(dst, `data: {"id":"`...)
	dst = append(dst, id...)
	if e.kind == KindChat {
		dst = append(dst, `","object":"chat.completion.chunk","created":`...)
	} else {
		dst = append(dst, `","object":"text_completion","created":`...)
	}
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"model":`...)
	if e.model.ok() {
		dst = append(dst, e.raw(e.model)...)
	} else {
		dst = append(dst, `""`...)
	}
	if e.fp.ok() {
		dst = append(append(dst, `,"system_fingerprint":`...), e.raw(e.fp)...)
	}
	dst = e.appendFields(dst, e.extras)
	dst = append(dst, `,"choices":[`...)
	h1 := len(dst)
	header := func(dst []byte) []byte {
		if len(dst) == h1 {
			return dst // the first chunk's header is already there
		}
		return append(dst, dst[h0:h1]...)
	}
	for ci := range e.choices {
		c := &e.choices[ci]
		if e.kind == KindChat {
			dst = e.appendChatChoice(dst, header, c)
		} else {
			dst = e.appendCompletionChoice(dst, header, c)
		}
	}
	if includeUsage && e.usage.ok() {
		dst = header(dst)
		dst = append(appendLine(append(dst, `],"usage":`...), e.raw(e.usage)), "}\n\n"...)
	}
	return append(dst, "data: [DONE]\n\n"...)
}

const (
	chunkOpen  = `{"index":`
	chunkClose = `]}` + "\n\n"
	notDone    = `},"logprobs":null,"finish_reason":null}` + chunkClose
)

func (e *Entry) appendChatChoice(dst []byte, header func([]byte) []byte, c *choice) []byte {
	msg := e.fields[c.msg[0]:c.msg[1]]
	role := []byte(`"assistant"`)
	for _, f := range msg {
		if keyIs(e.raw(f.k), "role") && e.doc[f.v.s] == '"' {
			role = e.raw(f.v)
		}
	}
	dst = e.chunkStart(header(dst), c.index)
	dst = append(append(append(dst, `,"delta":{"role":`...), role...), `,"content":""`...)
	dst = append(dst, notDone...)
	for _, f := range msg {
		k, v := e.raw(f.k), e.raw(f.v)
		switch {
		case keyIs(k, "role") || string(v) == "null":
		case v[0] == '"':
			for s, t := 1, len(v)-1; s < t; {
				end := nextPiece(v[:t], s)
				dst = e.chunkStart(header(dst), c.index)
				dst = append(append(dst, `,"delta":{`...), k...)
				dst = append(append(append(dst, `:"`...), v[s:end]...), '"')
				dst = append(dst, notDone...)
				s = end
			}
		case keyIs(k, "tool_calls") && v[0] == '[':
			n := 0
			_, _ = eachElement(e.doc, int(f.v.s), func(ts, te int) error {
				dst = e.chunkStart(header(dst), c.index)
				dst = append(dst, `,"delta":{"tool_calls":[`...)
				dst = appendToolCall(dst, e.doc[ts:te], n)
				dst = append(dst, ']')
				dst = append(dst, notDone...)
				n++
				return nil
			}, 3)
		default:
			dst = e.chunkStart(header(dst), c.index)
			dst = appendLine(append(append(append(dst, `,"delta":{`...), k...), ':'), v)
			dst = append(dst, notDone...)
		}
	}
	dst = e.chunkStart(header(dst), c.index)
	dst = append(dst, `,"delta":{}`...)
	return e.appendFinish(dst, c)
}

func (e *Entry) appendCompletionChoice(dst []byte, header func([]byte) []byte, c *choice) []byte {
	v := e.raw(c.text)
	for s, t := 1, len(v)-1; s < t; {
		end := nextPiece(v[:t], s)
		dst = e.chunkStart(header(dst), c.index)
		dst = append(append(append(dst, `,"text":"`...), v[s:end]...), '"')
		dst = append(dst, `,"logprobs":null,"finish_reason":null}`+chunkClose...)
		s = end
	}
	dst = e.chunkStart(header(dst), c.index)
	dst = append(dst, `,"text":""`...)
	return e.appendFinish(dst, c)
}

func (e *Entry) chunkStart(dst []byte, index int) []byte {
	return strconv.AppendInt(append(dst, chunkOpen...), int64(index), 10)
}

// appendFinish closes a choice's last chunk: logprobs (all of them, in one chunk: clients
// concatenate logprobs across chunks, so the total is what the backend reported),
// finish_reason and the choice's other members.
func (e *Entry) appendFinish(dst []byte, c *choice) []byte {
	dst = append(dst, `,"logprobs":`...)
	if c.lp.ok() {
		dst = appendLine(dst, e.raw(c.lp))
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(append(dst, `,"finish_reason":`...), e.raw(c.finish)...)
	dst = e.appendFields(dst, e.fields[c.extras[0]:c.extras[1]])
	return append(dst, "}"+chunkClose...)
}

func (e *Entry) appendFields(dst []byte, fs []field) []byte {
	for _, f := range fs {
		dst = appendLine(append(append(append(dst, ','), e.raw(f.k)...), ':'), e.raw(f.v))
	}
	return dst
}

// appendLine appends a raw JSON value without its line breaks, which an SSE data line cannot
// hold. Dropping every CR and LF is safe: JSON strings cannot contain them unescaped.
func appendLine(dst, v []byte) []byte {
	for {
		i := bytes.IndexAny(v, "\r\n")
		if i < 0 {
			return append(dst, v...)
		}
		dst = append(dst, v[:i]...)
		v = v[i+1:]
	}
}

// appendToolCall appends a buffered tool call object as a stream delta, which carries its
// position as "index".
func appendToolCall(dst, obj []byte, n int) []byte {
	hasIndex := false
	_, _ = eachMember(obj, 0, func(ks, ke, _, _ int) error {
		hasIndex = hasIndex || keyIs(obj[ks:ke], "index")
		return nil
	}, 4)
	if hasIndex || len(obj) < 2 || obj[0] != '{' {
		return appendLine(dst, obj)
	}
	dst = strconv.AppendInt(append(dst, `{"index":`...), int64(n), 10)
	if rest := skipWS(obj, 1); obj[rest] != '}' {
		dst = append(dst, ',')
		return appendLine(dst, obj[rest:])
	}
	return append(dst, '}')
}

// nextPiece returns the end of the stream piece of the escaped string s that starts at i: just
// before the space that starts the next group of words, or after about maxPieceBytes. It
// never cuts inside an escape, a surrogate pair or a UTF-8 sequence, so every piece is a
// valid JSON string body on its own.
func nextPiece(s []byte, i int) int {
	spaces := 0
	for j := i; j < len(s); {
		if s[j] == ' ' && j > i {
			if spaces++; spaces == wordsPerPiece {
				return j
			}
		}
		if j += unitLen(s, j); j-i >= maxPieceBytes {
			return j
		}
	}
	return len(s)
}

// unitLen returns the length of the escaped-string unit at s[j].
func unitLen(s []byte, j int) int {
	c := s[j]
	switch {
	case c == '\\':
		if j+1 < len(s) && s[j+1] == 'u' {
			if r, ok := hex4(s, j+2); ok && r >= 0xd800 && r < 0xdc00 && j+12 <= len(s) && s[j+6] == '\\' && s[j+7] == 'u' {
				if lo, ok := hex4(s, j+8); ok && lo >= 0xdc00 && lo < 0xe000 {
					return 12
				}
			}
			return min(6, len(s)-j)
		}
		return min(2, len(s)-j)
	case c < 0x80:
		return 1
	case c >= 0xf0:
		return min(4, len(s)-j)
	case c >= 0xe0:
		return min(3, len(s)-j)
	case c >= 0xc0:
		return min(2, len(s)-j)
	default:
		return 1
	}
}

// Response ids: a per-process random prefix and a counter, unique without a syscall.
var (
	idPrefix = func() [12]byte {
		var b [12]byte
		for i := range b {
			b[i] = hexDigits[rand.IntN(16)]
		}
		return b
	}()
	idCounter atomic.Uint64
)

var idKinds = [numKinds]string{"chatcmpl-", "cmpl-", "embd-"}

// AppendID appends a fresh response id for kind, in OpenAI's style (chatcmpl-...).
func AppendID(dst []byte, kind Kind) []byte {
	dst = append(dst, idKinds[kind%numKinds]...)
	dst = append(dst, idPrefix[:]...)
	n := idCounter.Add(1)
	for sh := 60; sh >= 0; sh -= 4 {
		dst = append(dst, hexDigits[n>>uint(sh)&0xf])
	}
	return dst
}
