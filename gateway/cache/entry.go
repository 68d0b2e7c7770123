package cache

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/llmgate/llmgate/gateway/jsonscan"
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
	fields                         []field // backing store of the choices' member lists and extras
	promptTokens, completionTokens int
	answer                         bool // built by NewAnswer: a choice cut by a filter, or unfinished, is whole

	// Set by Store.Set.
	key   Key
	scope *Scope
	gen   generation
	size  int64

	// note is for the gateway to remember what it derives from the answer for statistics,
	// so that each replay does not derive it again; zero until the gateway sets it.
	note atomic.Uint32
}

// Note returns the entry's note word (see Entry.note): the one part of an entry that is not
// immutable, for facts that are a function of the answer, so that any replay may set them.
func (e *Entry) Note() *atomic.Uint32 { return &e.note }

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
	return newEntry(kind, body, n, false)
}

// NewAnswer builds an entry as NewEntry does, also from an answer the backend cut short
// (finish_reason content_filter, or vLLM's abort and error: see cutShort) or one with a
// choice it did not finish (finish_reason null or absent, which the replay streams as null),
// which NewEntry refuses as not to be stored: it is for replaying an answer in the other
// shape (a whole answer to a stream request sent as a stream), never for the store.
func NewAnswer(kind Kind, body []byte, n int) (*Entry, error) {
	return newEntry(kind, body, n, true)
}

func newEntry(kind Kind, body []byte, n int, answer bool) (*Entry, error) {
	// Two allocations for a typical answer: the entry with room for its index, and the copy
	// of the body.
	blk := &entryBlock{}
	e := &blk.Entry
	e.kind, e.doc, e.answer = kind, append([]byte(nil), body...), answer
	e.fields, e.choices = blk.fields[:0], blk.choices[:0]
	var callers []span
	if err := e.index(n, &callers); err != nil {
		return nil, err
	}
	if len(callers) > 0 {
		// Rare: the backend echoed the requester's own members. The stored answer goes
		// without them, indexed anew.
		*e = Entry{kind: kind, doc: withoutMembers(e.doc, callers), fields: blk.fields[:0], choices: blk.choices[:0], answer: answer}
		if err := e.index(n, new([]span)); err != nil {
			return nil, err
		}
	}
	e.size = e.memSize()
	return e, nil
}

// withoutMembers returns doc, a JSON object, without the members at spans (key start to value
// end, in order), each with the comma that separated it from its neighbour.
func withoutMembers(doc []byte, spans []span) []byte {
	out := make([]byte, 0, len(doc))
	prev := 0
	for _, m := range spans {
		from, to := int(m.s), int(m.e)
		k := from - 1
		for k >= 0 && (doc[k] == ' ' || doc[k] == '\t' || doc[k] == '\n' || doc[k] == '\r') {
			k--
		}
		if k >= prev && doc[k] == ',' {
			from = k // the comma before it
		} else if j := skipWS(doc, to); j < len(doc) && doc[j] == ',' {
			to = j + 1 // the first member: the comma after it
		}
		out = append(out, doc[prev:from]...)
		prev = to
	}
	return append(out, doc[prev:]...)
}

// entryBlock is an Entry allocated together with room for the index of a typical answer: one
// choice, a message of role and content (null members are not indexed), a few members the
// replay does not know. Bigger answers grow their slices out of it.
type entryBlock struct {
	Entry
	fields  [6]field
	choices [1]choice
}

// Tokens returns the usage the cached answer reported (what it cost when it was generated).
func (e *Entry) Tokens() (prompt, completion int) { return e.promptTokens, e.completionTokens }

// Size returns the bytes the entry accounts for in the store: the heap it holds once stored.
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

// index indexes e.doc for a request that asked for n choices; the spans of top-level members
// the cache key leaves out (user, metadata, ...) go to callers.
func (e *Entry) index(n int, callers *[]span) error {
	d := e.doc
	// Top-level members that the replay copies as they are; they join e.fields at the end,
	// so that the choices' lists stay contiguous.
	var extraBuf [4]field
	extras := extraBuf[:0]
	var data bool
	i, more, err := enter(d, skipWS(d, 0), '{', '}')
	for more && err == nil {
		var ke, vs, ve int
		if ke, vs, err = memberKey(d, i); err != nil {
			break
		}
		// One pass over the body: choices and usage are indexed as they are scanned.
		k := d[i+1 : ke-1] // a key with escapes matches no name below: backends do not escape them
		switch v0 := byteAt(d, vs); {
		case v0 == 'n': // null: absent
			ve, err = scanValue(d, vs, 0)
		case string(k) == "choices" && e.kind != KindEmbeddings:
			ve, err = e.indexChoices(vs)
		case string(k) == "usage" && v0 == '{':
			ve, err = e.indexUsage(vs)
			e.usage = span{int32(vs), int32(ve)}
		default:
			if ve, err = scanValue(d, vs, 0); err != nil {
				break
			}
			sp := span{int32(vs), int32(ve)}
			switch {
			case string(k) == "error":
				err = ErrIncomplete
			case string(k) == "id" && v0 == '"':
				e.id = sp
			case string(k) == "created" && v0 != '"':
				e.created = sp
			case string(k) == "model" && v0 == '"':
				e.model = sp
			case string(k) == "system_fingerprint":
				e.fp = sp
			case string(k) == "object":
			case string(k) == "data" && e.kind == KindEmbeddings && v0 == '[':
				data = true
			case isExcluded(k):
				// A member the cache key leaves out (user, metadata, request_id, ...) that the
				// backend echoed: it belongs to the request that got the answer, and a replay to
				// another requester must not carry it (see NewEntry).
				*callers = append(*callers, span{int32(i), int32(ve)})
			default:
				extras = append(extras, field{span{int32(i), int32(ke)}, sp})
			}
		}
		if err != nil {
			break
		}
		i, more, err = afterValue(d, ve, '}')
	}
	if err != nil {
		return err
	}
	if skipWS(d, i) != len(d) {
		return errSyntax
	}
	x := len(e.fields)
	e.fields = append(e.fields, extras...)
	e.extras = e.fields[x:len(e.fields):len(e.fields)]
	if e.kind == KindEmbeddings {
		if !data {
			return ErrIncomplete
		}
		return nil
	}
	if (n < 1 && !(e.answer && n == 0)) || len(e.choices) != n {
		// n > 1 is cached only when whole; an answer without choices ("choices": [], n 0)
		// is replayed in the other shape (NewAnswer), never stored.
		return ErrIncomplete
	}
	if !slices.IsSortedFunc(e.choices, compareChoices) {
		slices.SortFunc(e.choices, compareChoices)
	}
	for j, c := range e.choices {
		if c.index != j {
			return ErrIncomplete
		}
	}
	return nil
}

func compareChoices(a, b choice) int { return a.index - b.index }

// byteAt returns b[i], or 0 past the end (scanValue then reports the error).
func byteAt(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

// memSize returns the heap an entry holds once stored: its allocations as the runtime sizes
// them (a slice's capacity is its allocation's size class) and the store's bookkeeping.
func (e *Entry) memSize() int64 {
	size := entryBlockSize + int64(cap(e.doc)) + storeItemOverhead
	if cap(e.fields) > len(entryBlock{}.fields) {
		size += int64(cap(e.fields)) * int64(unsafe.Sizeof(field{}))
	}
	if cap(e.choices) > len(entryBlock{}.choices) {
		size += int64(cap(e.choices)) * int64(unsafe.Sizeof(choice{}))
	}
	return size
}

// entryBlockSize is the size class of an entryBlock allocation.
var entryBlockSize = int64(cap(append([]byte(nil), make([]byte, unsafe.Sizeof(entryBlock{}))...)))

// storeItemOverhead is ristretto's memory per stored item, measured by TestStoreMemory: its
// map entry (key, conflict hash, value, expiration), the policy's cost entry and the
// expiration bucket's entry, with the slack of maps that grow by doubling.
const storeItemOverhead = 240

// indexUsage indexes the usage object at d[i] and returns the index after it.
func (e *Entry) indexUsage(i int) (int, error) {
	d := e.doc
	i, more, err := enter(d, i, '{', '}')
	for more && err == nil {
		var ke, vs, ve int
		if ke, vs, err = memberKey(d, i); err != nil {
			break
		}
		if ve, err = scanValue(d, vs, 1); err != nil {
			break
		}
		switch string(d[i+1 : ke-1]) {
		case "prompt_tokens":
			e.promptTokens, _ = strconv.Atoi(string(d[vs:ve]))
		case "completion_tokens":
			e.completionTokens, _ = strconv.Atoi(string(d[vs:ve]))
		}
		i, more, err = afterValue(d, ve, '}')
	}
	return i, err
}

// indexChoices indexes the choices array at d[i] and returns the index after it.
func (e *Entry) indexChoices(i int) (int, error) {
	d := e.doc
	i, more, err := enter(d, i, '[', ']')
	for more && err == nil {
		if i, err = e.indexChoice(i); err != nil {
			break
		}
		i, more, err = afterValue(d, i, ']')
	}
	return i, err
}

// indexChoice indexes the choice object at d[i] and returns the index after it.
func (e *Entry) indexChoice(i int) (int, error) {
	d := e.doc
	c := choice{index: len(e.choices)}
	var hasMsg, hasText bool
	var extraBuf [2]field // choice extras are rare; kept apart so msg stays contiguous
	extras := extraBuf[:0]
	i, more, err := enter(d, i, '{', '}')
	for more && err == nil {
		var ke, vs, ve int
		if ke, vs, err = memberKey(d, i); err != nil {
			break
		}
		k, v0 := d[i+1:ke-1], byteAt(d, vs)
		if string(k) == "message" && e.kind == KindChat && v0 == '{' {
			hasMsg = true
			c.msg[0] = int32(len(e.fields))
			ve, err = e.indexMessage(vs)
			c.msg[1] = int32(len(e.fields))
		} else if ve, err = scanValue(d, vs, 2); err == nil {
			sp := span{int32(vs), int32(ve)}
			switch {
			case string(k) == "index":
				n, aerr := strconv.Atoi(string(d[vs:ve]))
				if aerr != nil {
					err = ErrIncomplete
				}
				c.index = n
			case string(k) == "finish_reason":
				if v0 != '"' && (v0 != 'n' || !e.answer) || cutShort(d[vs:ve]) && !e.answer {
					err = ErrIncomplete // null: the generation did not finish
				}
				c.finish = sp
			case string(k) == "logprobs":
				if v0 != 'n' {
					c.lp = sp
				}
			case string(k) == "text" && e.kind == KindCompletion && v0 == '"':
				hasText, c.text = true, sp
			case v0 != 'n':
				extras = append(extras, field{span{int32(i), int32(ke)}, sp})
			}
		}
		if err != nil {
			break
		}
		i, more, err = afterValue(d, ve, '}')
	}
	if err != nil {
		return 0, err
	}
	if !c.finish.ok() && !e.answer || (e.kind == KindChat && !hasMsg) || (e.kind == KindCompletion && !hasText) {
		return 0, ErrIncomplete
	}
	c.extras[0] = int32(len(e.fields))
	e.fields = append(e.fields, extras...)
	c.extras[1] = int32(len(e.fields))
	e.choices = append(e.choices, c)
	return i, nil
}

// indexMessage appends the non-null members of the message object at d[i] to e.fields (the
// stream replay skips null members) and returns the index after it.
func (e *Entry) indexMessage(i int) (int, error) {
	d := e.doc
	i, more, err := enter(d, i, '{', '}')
	for more && err == nil {
		var ke, vs, ve int
		if ke, vs, err = memberKey(d, i); err != nil {
			break
		}
		if ve, err = scanValue(d, vs, 3); err != nil {
			break
		}
		if d[vs] != 'n' {
			e.fields = append(e.fields, field{span{int32(i), int32(ke)}, span{int32(vs), int32(ve)}})
		}
		i, more, err = afterValue(d, ve, '}')
	}
	return i, err
}

// cutShort reports whether a finish_reason (its JSON) says the backend ended the answer before
// the model did: its own filter cut it (content_filter), or vLLM aborted the request
// (abort: pause_generation(mode="abort"), /abort_requests) or failed it in the engine (error)
// and sent the text so far. Such an answer is not stored, as a retry may answer in full.
func cutShort(finish []byte) bool {
	switch string(finish) {
	case `"content_filter"`, `"abort"`, `"error"`:
		return true
	}
	return false
}

// First returns what drift statistics read of choice 0: its finish_reason and the start of its
// text (a chat message's content, a completion's text), both as raw JSON string contents,
// still escaped; nil where absent, as for embeddings. A hit needs no scan of its body for them.
func (e *Entry) First() (finish, text []byte) {
	for i := range e.choices {
		c := &e.choices[i]
		if c.index != 0 {
			continue
		}
		return e.stringContent(c.finish), e.Text(i)
	}
	return nil, nil
}

// Refused reports whether choice 0's message carries a refusal (OpenAI's message.refusal): a
// string that is not empty, which drift statistics count as a refusal whatever the content.
func (e *Entry) Refused() bool {
	if e.kind != KindChat {
		return false
	}
	for i := range e.choices {
		c := &e.choices[i]
		if c.index != 0 {
			continue
		}
		for _, f := range e.fields[c.msg[0]:c.msg[1]] {
			if keyIs(e.raw(f.k), "refusal") {
				v := e.raw(f.v)
				return len(v) > 2 && v[0] == '"'
			}
		}
	}
	return false
}

// Choices returns how many choices the entry holds (none for embeddings).
func (e *Entry) Choices() int { return len(e.choices) }

// Text returns the text of the i-th stored choice (a chat message's content, a completion's
// text) as raw JSON string contents, still escaped; nil when it has none (tool calls).
func (e *Entry) Text(i int) []byte {
	c := &e.choices[i]
	if e.kind == KindCompletion {
		return e.stringContent(c.text)
	}
	for _, f := range e.fields[c.msg[0]:c.msg[1]] {
		if string(e.raw(f.k)) == `"content"` {
			return e.stringContent(f.v)
		}
	}
	return nil
}

// Has reports whether the message of the i-th stored chat choice has the member key, not null.
func (e *Entry) Has(i int, key string) bool {
	c := &e.choices[i]
	for _, f := range e.fields[c.msg[0]:c.msg[1]] {
		if keyIs(e.raw(f.k), key) {
			return true
		}
	}
	return false
}

// stringContent returns the bytes between the quotes of the JSON string at s; nil for any other
// value.
func (e *Entry) stringContent(s span) []byte {
	if v := e.raw(s); len(v) >= 2 && v[0] == '"' {
		return v[1 : len(v)-1]
	}
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
	// A scalar extra (OpenAI's service_tier) rides on every chunk, as backends send it; an
	// object or array (vLLM's prompt_token_ids, its request metrics) only on the first, as vLLM
	// sends it once: copied into every chunk, a long prompt's ids made a replay many times the
	// size of the stream the backend sent.
	for i, f := range e.extras {
		if !isComposite(e.doc[f.v.s]) {
			dst = e.appendFields(dst, e.extras[i:i+1])
		}
	}
	hs := len(dst)
	for i, f := range e.extras {
		if isComposite(e.doc[f.v.s]) {
			dst = e.appendFields(dst, e.extras[i:i+1])
		}
	}
	dst = append(dst, `,"choices":[`...)
	h1 := len(dst)
	header := func(dst []byte) []byte {
		if len(dst) == h1 {
			return dst // the first chunk's header is already there
		}
		return append(append(dst, dst[h0:hs]...), `,"choices":[`...)
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
	} else if len(e.choices) == 0 {
		dst = append(dst, chunkClose...) // an answer without choices: one chunk of none
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
	content := `,"content":null` // null is not indexed: a message without text (tool calls)
	for _, f := range msg {
		switch k := e.raw(f.k); {
		case keyIs(k, "role") && e.doc[f.v.s] == '"':
			role = e.raw(f.v)
		case keyIs(k, "content") && e.doc[f.v.s] == '"':
			content = `,"content":""`
		}
	}
	// The first chunk's content is what a client accumulates when no text follows: null for a
	// message whose content is null, as OpenAI streams a tool-call answer, so that the stream
	// adds up to the buffered answer.
	dst = e.chunkStart(header(dst), c.index)
	dst = append(append(append(dst, `,"delta":{"role":`...), role...), content...)
	dst = append(dst, notDone...)
	// Two passes: the reasoning first, then the rest, as a backend streams them (a buffered
	// message lists content before reasoning_content), so that a replayed stream shows the
	// model's thinking before its answer.
	for pass := range 2 {
		for _, f := range msg {
			k, v := e.raw(f.k), e.raw(f.v)
			if isReasoning(k) != (pass == 0) {
				continue
			}
			dst = e.appendMember(dst, header, c, f, k, v)
		}
	}
	dst = e.chunkStart(header(dst), c.index)
	dst = append(dst, `,"delta":{}`...)
	return e.appendFinish(dst, c)
}

// isReasoning reports whether the raw message key k names the model's reasoning (vLLM's
// reasoning_content, or reasoning).
func isReasoning(k []byte) bool { return keyIs(k, "reasoning_content") || keyIs(k, "reasoning") }

// appendMember appends the chunks that stream the message member f (raw key k, raw value v) of
// choice c.
func (e *Entry) appendMember(dst []byte, header func([]byte) []byte, c *choice, f field, k, v []byte) []byte {
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
	return dst
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
	dst = append(dst, `,"finish_reason":`...)
	if c.finish.ok() {
		dst = append(dst, e.raw(c.finish)...)
	} else {
		dst = append(dst, "null"...) // an answer NewAnswer took without one
	}
	dst = e.appendFields(dst, e.fields[c.extras[0]:c.extras[1]])
	return append(dst, "}"+chunkClose...)
}

// isComposite reports whether a JSON value starting with v0 is an object or an array.
func isComposite(v0 byte) bool { return v0 == '{' || v0 == '[' }

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
			if r, ok := jsonscan.Hex4(s, j+2); ok && r >= 0xd800 && r < 0xdc00 && j+12 <= len(s) && s[j+6] == '\\' && s[j+7] == 'u' {
				if lo, ok := jsonscan.Hex4(s, j+8); ok && lo >= 0xdc00 && lo < 0xe000 {
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
