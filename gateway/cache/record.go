package cache

import (
	"strconv"
	"sync"

	"github.com/llmgate/llmgate/gateway/sse"
)

// Recorder assembles a cache entry from a streamed response, one SSE data payload at a time.
// It keeps the text of each choice as the backend escaped it, so the assembled body decodes
// to exactly the concatenation of the deltas. Not safe for concurrent use.
type Recorder struct {
	kind     Kind
	n        int
	maxBytes int
	seen     int // payload bytes added, to stop recording runaway streams

	id, created, model, fp, usage []byte
	extras                        []recField
	choices                       []recChoice
	done, failed                  bool
	doc                           []byte
}

// recField accumulates one member: strings by concatenating their escaped bodies, arrays by
// concatenating their elements, anything else by keeping the last value.
type recField struct {
	key []byte // raw, quotes included
	val []byte
	typ byte // '"' string body, '[' array elements, 0 raw value
}

type recChoice struct {
	seen   bool
	role   []byte
	fields []recField // chat: delta members; completions: "text"
	tools  []recTool
	fn     recTool // a legacy function_call, streamed like a tool call's function
	fnSeen bool
	lp     []recField // logprobs members
	lpSeen bool
	finish []byte
	extras []recField
}

type recTool struct {
	id, typ, name, args []byte
}

var recorderPool = sync.Pool{New: func() any { return new(Recorder) }}

// AcquireRecorder returns a recorder for a stream answering a request of kind with n choices;
// it gives up (Entry returns ErrIncomplete) after maxBytes of payload, 0 meaning no limit.
// Release it with ReleaseRecorder once Entry has been called or the stream was abandoned.
func AcquireRecorder(kind Kind, n, maxBytes int) *Recorder {
	r := recorderPool.Get().(*Recorder)
	r.kind, r.n, r.maxBytes, r.seen = kind, n, maxBytes, 0
	r.id, r.created, r.model, r.fp, r.usage = r.id[:0], r.created[:0], r.model[:0], r.fp[:0], r.usage[:0]
	r.extras, r.done, r.failed, r.doc = r.extras[:0], false, n < 1, r.doc[:0]
	if n > maxN {
		r.failed, n = true, 0
	}
	r.choices = r.choices[:0]
	for range n {
		c := grow(&r.choices)
		c.seen, c.lpSeen, c.fnSeen = false, false, false
		c.role, c.finish = c.role[:0], c.finish[:0]
		c.fn.name, c.fn.args = c.fn.name[:0], c.fn.args[:0]
		c.fields, c.tools, c.lp, c.extras = c.fields[:0], c.tools[:0], c.lp[:0], c.extras[:0]
	}
	return r
}

// ReleaseRecorder returns r to the pool. Entries built by r do not refer to it.
func ReleaseRecorder(r *Recorder) {
	if r.seen > 1<<20 {
		*r = Recorder{} // do not pin a huge stream's buffers in the pool
	}
	recorderPool.Put(r)
}

// grow extends *s by one element, reusing the old element's buffers when there is capacity.
func grow[T any](s *[]T) *T {
	if len(*s) < cap(*s) {
		*s = (*s)[:len(*s)+1]
	} else {
		var zero T
		*s = append(*s, zero)
	}
	return &(*s)[len(*s)-1]
}

// Add records one SSE data payload (the bytes after "data: "), "[DONE]" included. An error
// event, a malformed chunk or a choice index beyond n makes the stream uncacheable; Add
// returns that error, but the gateway's forwarding does not depend on it.
func (r *Recorder) Add(data []byte) error {
	if r.failed {
		return ErrIncomplete
	}
	if r.done {
		r.failed = true // nothing may follow [DONE]
		return ErrIncomplete
	}
	if r.seen += len(data); r.maxBytes > 0 && r.seen > r.maxBytes {
		r.failed = true
		return ErrIncomplete
	}
	if sse.IsDone(data) {
		r.done = true
		return nil
	}
	i := skipWS(data, 0)
	_, err := eachMember(data, i, func(ks, ke, vs, ve int) error {
		k, v := data[ks:ke], data[vs:ve]
		switch {
		case string(v) == "null":
		case keyIs(k, "error"):
			return ErrIncomplete
		case keyIs(k, "id"):
			if len(r.id) == 0 {
				r.id = append(r.id, v...)
			}
		case keyIs(k, "created"):
			if len(r.created) == 0 {
				r.created = append(r.created, v...)
			}
		case keyIs(k, "model"):
			if len(r.model) == 0 {
				r.model = append(r.model, v...)
			}
		case keyIs(k, "system_fingerprint"):
			r.fp = append(r.fp[:0], v...)
		case keyIs(k, "usage"):
			r.usage = append(r.usage[:0], v...)
		case keyIs(k, "object"):
		case keyIs(k, "choices"):
			_, err := eachElement(data, vs, func(cs, ce int) error { return r.addChoice(data[cs:ce]) }, 1)
			return err
		default:
			setField(&r.extras, k, v, 0)
		}
		return nil
	}, 0)
	if err != nil {
		r.failed = true
		return ErrIncomplete
	}
	return nil
}

func (r *Recorder) addChoice(b []byte) error {
	idx := -1
	if _, err := eachMember(b, 0, func(ks, ke, vs, ve int) error {
		if keyIs(b[ks:ke], "index") {
			n, err := strconv.Atoi(string(b[vs:ve]))
			if err != nil {
				return ErrIncomplete
			}
			idx = n
		}
		return nil
	}, 2); err != nil {
		return err
	}
	if idx < 0 && r.n == 1 {
		idx = 0
	}
	if idx < 0 || idx >= len(r.choices) {
		return ErrIncomplete // n > 1 is cached only when whole and as asked
	}
	c := &r.choices[idx]
	c.seen = true
	_, err := eachMember(b, 0, func(ks, ke, vs, ve int) error {
		k, v := b[ks:ke], b[vs:ve]
		switch {
		case string(v) == "null" || keyIs(k, "index"):
		case keyIs(k, "delta") && r.kind == KindChat:
			return c.addDelta(b, vs)
		case keyIs(k, "text") && r.kind == KindCompletion:
			if v[0] != '"' {
				return ErrIncomplete
			}
			setField(&c.fields, k, v, '"')
		case keyIs(k, "logprobs"):
			c.lpSeen = true
			if v[0] != '{' {
				return ErrIncomplete
			}
			_, err := eachMember(b, vs, func(ks, ke, vs, ve int) error {
				typ := byte(0)
				if b[vs] == '[' {
					typ = '['
				}
				setField(&c.lp, b[ks:ke], b[vs:ve], typ)
				return nil
			}, 3)
			return err
		case keyIs(k, "finish_reason"):
			c.finish = append(c.finish[:0], v...)
		case keyIs(k, "token_ids") && v[0] == '[':
			// vLLM's return_token_ids streams each chunk's own ids: the answer's are all of them.
			setField(&c.extras, k, v, '[')
		default:
			setField(&c.extras, k, v, 0)
		}
		return nil
	}, 2)
	return err
}

func (c *recChoice) addDelta(b []byte, i int) error {
	_, err := eachMember(b, i, func(ks, ke, vs, ve int) error {
		k, v := b[ks:ke], b[vs:ve]
		switch {
		case string(v) == "null":
		case keyIs(k, "role"):
			if v[0] == '"' {
				c.role = append(c.role[:0], v...)
			}
		case keyIs(k, "tool_calls"):
			if v[0] != '[' {
				return ErrIncomplete
			}
			_, err := eachElement(b, vs, func(ts, te int) error { return c.addTool(b[ts:te]) }, 4)
			return err
		case keyIs(k, "audio"):
			// OpenAI streams audio as base64 pieces, each encoded on its own, beside a
			// transcript in pieces: kept as the last value, the entry held only the last
			// piece, and joined, the pieces need not decode as one base64 string. Such a
			// stream is not stored.
			return ErrIncomplete
		case keyIs(k, "function_call"):
			// Streamed in pieces as a tool call's function is: its name once, its arguments
			// piece by piece. Kept as the last value, a replay had only the last piece.
			if v[0] != '{' {
				return ErrIncomplete
			}
			c.fnSeen = true
			return c.fn.addFunction(b, vs)
		case v[0] == '"':
			setField(&c.fields, k, v, '"')
		default:
			setField(&c.fields, k, v, 0)
		}
		return nil
	}, 3)
	return err
}

func (c *recChoice) addTool(b []byte) error {
	var t *recTool
	var id, typ []byte
	_, err := eachMember(b, 0, func(ks, ke, vs, ve int) error {
		k, v := b[ks:ke], b[vs:ve]
		switch {
		case keyIs(k, "index"):
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 0 || n > maxN {
				return ErrIncomplete
			}
			for len(c.tools) <= n {
				nt := grow(&c.tools)
				nt.id, nt.typ, nt.name, nt.args = nt.id[:0], nt.typ[:0], nt.name[:0], nt.args[:0]
			}
			t = &c.tools[n]
		case keyIs(k, "id") && v[0] == '"':
			id = v
		case keyIs(k, "type") && v[0] == '"':
			typ = v
		}
		return nil
	}, 5)
	if err != nil || t == nil {
		return ErrIncomplete // a delta must say which call it extends
	}
	if id != nil {
		t.id = append(t.id[:0], id...)
	}
	if typ != nil {
		t.typ = append(t.typ[:0], typ...)
	}
	_, err = eachMember(b, 0, func(ks, ke, vs, ve int) error {
		if !keyIs(b[ks:ke], "function") || b[vs] != '{' {
			return nil
		}
		return t.addFunction(b, vs)
	}, 5)
	return err
}

// addFunction records the function object at b[i] (a tool call's function, or a legacy
// function_call): its name, sent whole once, and a piece of its arguments.
func (t *recTool) addFunction(b []byte, i int) error {
	_, err := eachMember(b, i, func(ks, ke, vs, ve int) error {
		k, v := b[ks:ke], b[vs:ve]
		switch {
		case v[0] != '"':
		case keyIs(k, "name") && len(t.name) == 0:
			t.name = append(t.name, v...) // sent whole, once
		case keyIs(k, "arguments"):
			t.args = append(t.args, v[1:len(v)-1]...)
		}
		return nil
	}, 6)
	return err
}

// setField records member k with value v in *fs: typ '"' appends a string's body, '['
// appends an array's elements, 0 replaces the value.
func setField(fs *[]recField, k, v []byte, typ byte) {
	var f *recField
	for i := range *fs {
		if string((*fs)[i].key) == string(k) {
			f = &(*fs)[i]
			break
		}
	}
	if f == nil {
		f = grow(fs)
		f.key, f.val, f.typ = append(f.key[:0], k...), f.val[:0], typ
	}
	switch typ {
	case '"':
		f.val = append(f.val, v[1:len(v)-1]...)
	case '[':
		inner := v[1 : len(v)-1]
		if len(skipWSBytes(inner)) == 0 {
			return
		}
		if len(f.val) > 0 {
			f.val = append(f.val, ',')
		}
		f.val = append(f.val, inner...)
	default:
		f.val = append(f.val[:0], v...)
	}
	f.typ = typ
}

func skipWSBytes(b []byte) []byte { return b[skipWS(b, 0):] }

// Entry returns the recorded answer as an entry, or ErrIncomplete when the stream did not end
// with [DONE], carried an error, left a choice without finish_reason, or was cut short by the
// backend (finish_reason content_filter, abort or error: see cutShort).
func (r *Recorder) Entry() (*Entry, error) { return r.build(false) }

// Answer returns the recorded answer as Entry does, also one the backend cut short, as
// NewAnswer builds it: for replaying, never for the store.
func (r *Recorder) Answer() (*Entry, error) { return r.build(true) }

func (r *Recorder) build(answer bool) (*Entry, error) {
	if !r.done || r.failed {
		return nil, ErrIncomplete
	}
	for i := range r.choices {
		if c := &r.choices[i]; !c.seen || len(c.finish) == 0 || string(c.finish) == "null" || !answer && cutShort(c.finish) {
			return nil, ErrIncomplete
		}
	}
	d := r.doc[:0]
	d = append(d, `{"id":`...)
	d = appendOr(d, r.id, `""`)
	if r.kind == KindChat {
		d = append(d, `,"object":"chat.completion","created":`...)
	} else {
		d = append(d, `,"object":"text_completion","created":`...)
	}
	d = appendOr(d, r.created, "0")
	d = appendOr(append(d, `,"model":`...), r.model, `""`)
	d = append(d, `,"choices":[`...)
	for i := range r.choices {
		if i > 0 {
			d = append(d, ',')
		}
		d = r.appendChoice(d, i)
	}
	d = append(d, ']')
	if len(r.usage) > 0 {
		d = append(append(d, `,"usage":`...), r.usage...)
	}
	if len(r.fp) > 0 {
		d = append(append(d, `,"system_fingerprint":`...), r.fp...)
	}
	d = appendRecFields(d, r.extras, true)
	d = append(d, '}')
	r.doc = d
	return newEntry(r.kind, d, r.n, answer)
}

func (r *Recorder) appendChoice(d []byte, i int) []byte {
	c := &r.choices[i]
	d = strconv.AppendInt(append(d, `{"index":`...), int64(i), 10)
	if r.kind == KindChat {
		d = appendOr(append(d, `,"message":{"role":`...), c.role, `"assistant"`)
		d = append(d, `,"content":`...)
		content := false
		for _, f := range c.fields {
			// A tool-call answer whose stream carried no text (vLLM opens every stream with
			// "content":"") has content null in the backend's buffered answer, as in OpenAI's.
			if keyIs(f.key, "content") && f.typ == '"' && (len(f.val) > 0 || len(c.tools) == 0 && !c.fnSeen) {
				d = append(append(append(d, '"'), f.val...), '"')
				content = true
			}
		}
		if !content {
			d = append(d, "null"...)
		}
		for _, f := range c.fields {
			if !keyIs(f.key, "content") {
				d = appendRecField(append(d, ','), f)
			}
		}
		if len(c.tools) > 0 {
			d = append(d, `,"tool_calls":[`...)
			for j := range c.tools {
				t := &c.tools[j]
				if j > 0 {
					d = append(d, ',')
				}
				d = append(d, '{')
				if len(t.id) > 0 {
					d = append(append(append(d, `"id":`...), t.id...), ',')
				}
				d = appendOr(append(d, `"type":`...), t.typ, `"function"`)
				d = appendOr(append(d, `,"function":{"name":`...), t.name, `""`)
				d = append(append(append(d, `,"arguments":"`...), t.args...), `"}}`...)
			}
			d = append(d, ']')
		}
		if c.fnSeen {
			d = appendOr(append(d, `,"function_call":{"name":`...), c.fn.name, `""`)
			d = append(append(append(d, `,"arguments":"`...), c.fn.args...), `"}`...)
		}
		d = append(d, '}')
	} else {
		d = append(d, `,"text":"`...)
		for _, f := range c.fields {
			d = append(d, f.val...) // the only field is "text"
		}
		d = append(d, '"')
	}
	d = append(d, `,"logprobs":`...)
	if c.lpSeen {
		d = append(d, '{')
		d = appendRecFields(d, c.lp, false)
		d = append(d, '}')
	} else {
		d = append(d, "null"...)
	}
	d = append(append(d, `,"finish_reason":`...), c.finish...)
	d = appendRecFields(d, c.extras, true)
	return append(d, '}')
}

func appendOr(d, v []byte, dflt string) []byte {
	if len(v) == 0 {
		return append(d, dflt...)
	}
	return append(d, v...)
}

// appendRecFields appends fs as object members, each preceded by a comma when lead is set and
// separated by commas otherwise.
func appendRecFields(d []byte, fs []recField, lead bool) []byte {
	for i, f := range fs {
		if lead || i > 0 {
			d = append(d, ',')
		}
		d = appendRecField(d, f)
	}
	return d
}

func appendRecField(d []byte, f recField) []byte {
	d = append(append(d, f.key...), ':')
	switch f.typ {
	case '"':
		return append(append(append(d, '"'), f.val...), '"')
	case '[':
		return append(append(append(d, '['), f.val...), ']')
	}
	return append(d, f.val...)
}
