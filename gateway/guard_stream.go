package gateway

// The completion guard of a stream (stage 7 as events flow): each choice's texts go through
// their own guards with a bounded hold-back, and the chunk that finishes a choice releases the
// rest.

import (
	"bytes"
	"time"

	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/guard"
)

// maxGuardedChoices bounds the choices a stream guard tracks. OpenAI caps n at 128; a backend
// that sends a higher index breaks the stream rather than slipping text past the guard.
const maxGuardedChoices = 128

// streamGuard is the guard of one streamed completion, one choiceGuard per choice index (n > 1
// streams interleave choices). It lives in the pooled request.
type streamGuard struct {
	on       bool
	choices  []*choiceGuard // by choice index; the first len(choices) are in use
	used     int
	stopped  bool          // every choice the request asked for is stopped: the stream ends
	nstopped int           // choices stopped by a blocking match (choiceGuard.stopped)
	hit      bool          // the choice being guarded just met a blocking match
	broken   *apiError     // why the stream cannot be guarded (a choice index out of range, an event not JSON); nil while it can
	emptied  bool          // the chunk being guarded had text that is all held back now
	spent    time.Duration // time in the guard over the whole stream, one observation of its duration
}

// choiceGuard holds one choice's text in flight: leaked PII rewritten, placeholders restored,
// unsafe text stopped, each with a bounded hold-back.
type choiceGuard struct {
	safety   *guard.SafetyStream // nil when completion safety is off
	leak     guard.LeakScanner
	restorer guard.Restorer
	matches  []guard.SafetyMatch
	safe     []byte // scratch
	leaked   []byte // scratch
	out      []byte // scratch
	roleSent bool   // a chunk with the choice's delta role has gone out
	// closed: the text was released whole, as at its end, because the choice went on to a
	// later part (a tool call opened after it; see guardChoice). Text that still comes for it
	// is guarded as a new text.
	closed bool
	// stopped: a blocking match stopped the choice, which went out with finish_reason
	// content_filter; the rest the backend sends of it goes no further. The other choices of
	// an n > 1 stream go on, as OpenAI's do.
	stopped bool

	// A choice may stream other texts beside its content, each guarded on its own (this guard
	// is the content's): reasoning, under either member name vLLM uses, and the arguments of
	// each tool call. They are readied on first use and kept with the pooled request.
	reasoning   [len(reasoningKeys)]*choiceGuard
	reasoningOn [len(reasoningKeys)]bool
	tools       []*choiceGuard // by tool call index; the first toolsUsed are in use
	toolsUsed   int
	fn          *choiceGuard // the arguments of a legacy function_call
	fnOn        bool
	refusal     *choiceGuard // the choice's refusal
	refusalOn   bool
}

// reasoningKeys are the members of a message or delta that carry the model's reasoning.
var reasoningKeys = [...]string{"reasoning_content", "reasoning"}

// ready readies c for a new text of the request; inJSON says the text is the inside of a JSON
// string (tool call arguments, JSON-mode content), where restored values go in escaped.
func (c *choiceGuard) ready(r *request, inJSON bool) {
	c.roleSent, c.stopped = false, false
	c.readyText(r, inJSON)
}

// reopen readies c's own text guards again after the text was closed, for text that comes
// after all (the choice's role and stop stay as they are).
func (c *choiceGuard) reopen(r *request, inJSON bool) {
	if c.safety != nil {
		r.guard.ag.safety.ReleaseStream(c.safety)
		c.safety = nil
	}
	c.readyText(r, inJSON)
}

// readyText readies the guards of c's own text (see ready).
func (c *choiceGuard) readyText(r *request, inJSON bool) {
	ag := r.guard.ag
	c.closed = false
	switch ag.safetyComplete {
	case guard.ActionBlock:
		c.safety = ag.safety.AcquireStream(ag.holdback)
	case guard.ActionOff:
	default: // flag or log: nothing to stop, so no text is held back for it
		c.safety = ag.safety.AcquireStream(guard.NoHoldback)
	}
	if ag.piiComplete {
		c.leak.Reset(ag.pii, r.guard.vault, ag.holdback)
	}
	switch {
	case ag.restore && inJSON:
		c.restorer.ResetInJSONString(r.guard.vault)
	case ag.restore:
		c.restorer.Reset(r.guard.vault)
	}
}

// release gives back what c and the guards of the choice's other texts borrowed.
func (c *choiceGuard) release(ag *aliasGuard) {
	if c.safety != nil {
		ag.safety.ReleaseStream(c.safety)
		c.safety = nil
	}
	for k, on := range c.reasoningOn {
		if on {
			c.reasoning[k].release(ag)
			c.reasoningOn[k] = false
		}
	}
	for _, t := range c.tools[:c.toolsUsed] {
		t.release(ag)
	}
	c.toolsUsed = 0
	if c.fnOn {
		c.fn.release(ag)
		c.fnOn = false
	}
	if c.refusalOn {
		c.refusal.release(ag)
		c.refusalOn = false
	}
}

// reasoningGuard returns the guard of the choice's reasoning under reasoningKeys[k].
func (c *choiceGuard) reasoningGuard(r *request, k int) *choiceGuard {
	if !c.reasoningOn[k] {
		if c.reasoning[k] == nil {
			c.reasoning[k] = new(choiceGuard)
		}
		c.reasoning[k].ready(r, false)
		c.reasoningOn[k] = true
	}
	return c.reasoning[k]
}

// fnGuard returns the guard of the arguments of the choice's legacy function_call, JSON text
// like a tool call's.
func (c *choiceGuard) fnGuard(r *request) *choiceGuard {
	return readyOnce(r, &c.fn, &c.fnOn, true)
}

// refusalGuard returns the guard of the choice's refusal, the model's text as its content is.
func (c *choiceGuard) refusalGuard(r *request) *choiceGuard {
	return readyOnce(r, &c.refusal, &c.refusalOn, false)
}

// readyOnce returns *g, readied for the request on its first use (on false); the guard itself
// is kept with the pooled request.
func readyOnce(r *request, g **choiceGuard, on *bool, inJSON bool) *choiceGuard {
	if !*on {
		if *g == nil {
			*g = new(choiceGuard)
		}
		(*g).ready(r, inJSON)
		*on = true
	}
	return *g
}

// toolGuard returns the guard of the arguments of the choice's tool call i; nil when i is out
// of range.
func (c *choiceGuard) toolGuard(r *request, i int) *choiceGuard {
	return guardAt(r, &c.tools, &c.toolsUsed, i, true)
}

// guardAt returns (*list)[i], readying the guards up to it on first use (the first *used are in
// use; see ready for inJSON); nil when i is out of range.
func guardAt(r *request, list *[]*choiceGuard, used *int, i int, inJSON bool) *choiceGuard {
	if i < 0 || i >= maxGuardedChoices {
		return nil
	}
	for *used <= i {
		if *used == len(*list) {
			*list = append(*list, new(choiceGuard))
		}
		(*list)[*used].ready(r, inJSON)
		*used++
	}
	return (*list)[i]
}

// release gives back what the stream guard borrowed.
func (sg *streamGuard) release(ag *aliasGuard) {
	for _, c := range sg.choices[:sg.used] {
		c.release(ag)
	}
	sg.on, sg.stopped, sg.nstopped, sg.hit, sg.broken, sg.used, sg.spent = false, false, 0, false, nil, 0, 0
}

// addSpent adds the time since start to the stream's time in the guard.
func (sg *streamGuard) addSpent(start time.Time) { sg.spent += time.Since(start) }

// startStreamGuard readies the completion guard for a stream, when the alias needs one.
func (r *request) startStreamGuard() {
	ag := r.guard.ag
	sg := &r.streamGuard
	sg.on = ag.guardsCompletions()
	if sg.on && r.guard.vault == nil {
		r.guard.vault = guard.AcquireVault()
	}
}

// choice returns the guard of choice index i, readying the ones up to it on first use; nil when
// i is out of range.
func (r *request) choice(i int) *choiceGuard {
	return guardAt(r, &r.streamGuard.choices, &r.streamGuard.used, i, r.jsonOutput)
}

// streamText runs one content delta of a choice through its guards and returns what may be sent
// now; with final set, everything still held back is released. Safety sees the model's own text
// first; then leaked PII is rewritten; then placeholders are restored. A blocking safety match
// sets sg.hit and returns only the text before the match.
func (g *Gateway) streamText(r *request, c *choiceGuard, index int, delta []byte, final bool) []byte {
	ag, sg := r.guard.ag, &r.streamGuard
	t := delta
	if c.safety != nil {
		c.matches = c.matches[:0]
		c.safe, c.matches = c.safety.Write(c.safe[:0], c.matches, delta)
		if final {
			c.safe, c.matches = c.safety.Flush(c.safe, c.matches)
			if ag.safetyComplete != guard.ActionBlock {
				// Flush stops before a match it finds; when only flagging, send the rest too.
				for i := 0; c.safety.Held() > 0 && i < 16; i++ { // bounded: each Flush passes a match
					c.safe, c.matches = c.safety.Flush(c.safe, c.matches)
				}
			}
		}
		t = c.safe
		if len(c.matches) > 0 {
			for _, m := range c.matches {
				r.guard.m.safetyHit(guard.Completion, m.Category).Inc()
				r.stats.safety |= safetyBit(m.Category)
			}
			if ag.safetyComplete == guard.ActionBlock {
				r.guard.m.blocks[guard.Completion].Inc()
				r.guard.blocked = "safety:" + c.matches[0].Category
				sg.hit, final = true, true
			}
		}
	}
	if ag.piiComplete {
		c.leaked = c.leak.Write(c.leaked[:0], t)
		if final {
			c.leaked = c.leak.Close(c.leaked)
		}
		if ag.piiRewrites {
			t = c.leaked
		} // else every entity is only detected: the scanner counts, and the text goes on as it came, held back for nothing
		if c.leak.Blocked().Len() > 0 && !sg.hit {
			// An entity whose completion action is block: the stream stops here, as for a
			// blocking safety rule, with the text before the value (the scanner emits none
			// of the value or of what follows it).
			r.guard.m.blocks[guard.Completion].Inc()
			r.guard.blocked = "pii"
			sg.hit, final = true, true
		}
	}
	if index == 0 {
		r.guard.collectCompletion(t)
		if final {
			g.classifyCompletion(r)
		}
	}
	if ag.restore {
		c.out = c.restorer.Write(c.out[:0], t)
		if final {
			c.out = c.restorer.Flush(c.out)
		}
		t = c.out
	}
	return t
}

// guardChunk rewrites the text of every choice of a stream chunk (delta content, or text for
// completions) through that choice's stream guard. Text held back leaves with a later chunk;
// the chunk that carries a choice's finish_reason releases the rest of it. A blocking match
// stops its choice: this chunk ends it with finish_reason content_filter, and later chunks go
// without it. Once every choice the request asked for is stopped, the stream ends after this
// chunk (sg.stopped). It returns the event payload to send.
//
// A chunk whose text is all held back, and that carries nothing else (no finish_reason, tool
// call, usage, or role not sent before), is not sent at all (nil): a client would see only empty
// deltas. Ollama repeats the role in every delta, so a role already sent is nothing new. Nor is
// a chunk of only choices stopped before. plain is where the chunk's choices are when the chunk
// is as the backend sent it with no usage (see guardTextChunk); -1 otherwise.
func (g *Gateway) guardChunk(r *request, data []byte, plain jsonscan.Span) []byte {
	if plain.Start >= 0 && !skipTextChunks.Load() {
		if out, ok := g.guardTextChunk(r, data, plain); ok {
			return out
		}
	}
	sg := &r.streamGuard
	defer sg.addSpent(time.Now())
	root, err := parseJSON(&r.parser, data, &r.guard.fixed)
	if err != nil {
		sg.broken = errEventUnguarded // its text cannot be checked: none goes out
		return data
	}
	choices := root.GetArray("choices") // nil when absent or not an array
	changed := false
	sg.emptied = false
	r.guard.nparsers = 0     // the strings set in the chunk before were written with it
	var kept *fastjson.Value // the choices that go out, once one does not
	nkept := 0
	keepUpTo := func(pos int) { // the choices before pos go out
		if kept == nil {
			kept = r.guard.arena.NewArray()
			for k := range pos {
				kept.SetArrayItem(k, choices[k])
			}
			nkept = pos
		}
	}
	for pos, ch := range choices {
		idx := choiceIndex(ch, pos)
		c := r.choice(idx)
		if c == nil {
			sg.broken = errChoiceUnguarded
			return data
		}
		if c.stopped {
			// Stopped in an earlier chunk: what the backend goes on sending of it is not
			// guarded, and the client has had its end.
			keepUpTo(pos)
			changed = true
			continue
		}
		sg.hit = false
		if g.guardChoice(r, c, idx, ch) {
			changed = true
		}
		if kept != nil {
			kept.SetArrayItem(nkept, ch)
			nkept++
		}
		if !sg.hit {
			continue
		}
		c.stopped = true
		sg.nstopped++
		if sg.nstopped >= r.choicesAsked() {
			sg.stopped = true
			if pos+1 < len(choices) {
				// The choices after the one that stopped the stream are not guarded: they go
				// no further.
				keepUpTo(pos + 1)
				changed = true
			}
			break
		}
	}
	if kept != nil {
		root.Set("choices", kept)
	}
	if !changed {
		noteRoles(r, choices)
		return data
	}
	if (sg.emptied || kept != nil && nkept == 0) && !sg.stopped && onlyEmptyText(r, root) {
		return nil
	}
	noteRoles(r, root.GetArray("choices"))
	r.guard.chunk = marshalJSON(r.guard.chunk[:0], root)
	return r.guard.chunk
}

// heldChunk returns a chunk in the shape of last (the stream's last chunk) whose choices carry
// what each choice's guards still hold back (its content, reasoning and tool call arguments),
// released as at the end of a stream; nil when nothing is held or last cannot be read. It is
// for a stream that ends without a finish_reason: the backend broke off, sent an error, or
// ended with [DONE] without finishing a choice.
func (g *Gateway) heldChunk(r *request, last []byte) []byte {
	defer r.streamGuard.addSpent(time.Now())
	root, err := r.parser.ParseBytes(last)
	if err != nil || root.Type() != fastjson.TypeObject {
		return nil
	}
	text := false // a /v1/completions chunk: its choices carry text, not a delta
	if ch := root.GetArray("choices"); len(ch) > 0 && ch[0].Get("delta") == nil && ch[0].Get("text") != nil {
		text = true
	}
	a := &r.guard.arena
	choices := a.NewArray()
	n := 0
	sg := &r.streamGuard
	for i, c := range sg.choices[:sg.used] {
		if c.stopped {
			continue // ended with content_filter already
		}
		sg.hit = false
		held := g.streamText(r, c, i, nil, true)
		var delta *fastjson.Value
		if !text && !sg.hit {
			delta = g.heldExtras(r, c)
		}
		hit := sg.hit
		if len(held) == 0 && !hit && delta == nil {
			continue
		}
		choice := a.NewObject()
		choice.Set("index", a.NewNumberInt(i))
		v := a.NewString("")
		r.guard.setString(v, held)
		if text {
			choice.Set("text", v)
		} else {
			if delta == nil || hit { // what an extra released stopped the choice: it goes no further
				delta = a.NewObject()
			}
			if len(held) > 0 || hit || delta.GetObject().Len() == 0 {
				delta.Set("content", v)
			}
			choice.Set("delta", delta)
		}
		finish := a.NewNull()
		if hit { // the released text ended in a blocked match: as guardChoice marks it
			finish = a.NewString("content_filter")
		}
		choice.Set("finish_reason", finish)
		choices.SetArrayItem(n, choice)
		n++
		if hit {
			c.stopped = true
			sg.nstopped++
			if sg.nstopped >= r.choicesAsked() {
				sg.stopped = true
				break
			}
		}
	}
	if n == 0 {
		return nil
	}
	root.Set("choices", choices)
	root.Del("usage")
	r.guard.chunk = marshalJSON(r.guard.chunk[:0], root)
	return r.guard.chunk
}

// heldExtras releases what the guards of a chat choice's other texts (reasoning, tool call
// arguments, a legacy function_call's arguments, its refusal) still hold back, as at the end of
// the stream, and returns a delta carrying it; nil when they hold nothing.
func (g *Gateway) heldExtras(r *request, c *choiceGuard) *fastjson.Value {
	a := &r.guard.arena
	var delta *fastjson.Value
	release := func(t *choiceGuard) *fastjson.Value {
		held := g.streamText(r, t, -1, nil, true)
		if len(held) == 0 {
			return nil
		}
		if delta == nil {
			delta = a.NewObject()
		}
		v := a.NewString("")
		r.guard.setString(v, held)
		return v
	}
	for k, key := range reasoningKeys {
		if c.reasoningOn[k] {
			if v := release(c.reasoning[k]); v != nil {
				delta.Set(key, v)
			}
		}
	}
	var calls *fastjson.Value
	for i, t := range c.tools[:c.toolsUsed] {
		v := release(t)
		if v == nil {
			continue
		}
		fn := a.NewObject()
		fn.Set("arguments", v)
		call := a.NewObject()
		call.Set("index", a.NewNumberInt(i))
		call.Set("function", fn)
		if calls == nil {
			calls = a.NewArray()
			delta.Set("tool_calls", calls)
		}
		arr, _ := calls.Array()
		calls.SetArrayItem(len(arr), call)
	}
	if c.fnOn {
		if v := release(c.fn); v != nil {
			fn := a.NewObject()
			fn.Set("arguments", v)
			delta.Set("function_call", fn)
		}
	}
	if c.refusalOn {
		if v := release(c.refusal); v != nil {
			delta.Set("refusal", v)
		}
	}
	return delta
}

// guardChoice guards one choice object of a chunk in place and reports whether it changed:
// its content (or a completion's text), its reasoning and its tool calls' arguments, each
// through its own guard. The chunk with the finish_reason releases what each holds back,
// adding the member where the chunk lacks it.
func (g *Gateway) guardChoice(r *request, c *choiceGuard, index int, ch *fastjson.Value) bool {
	// A finish reason ends the choice; an empty one, which some servers send on every chunk,
	// does not (the end of the stream still releases what is held: see streamBody.next).
	fr := ch.Get("finish_reason")
	final := fr != nil && fr.Type() == fastjson.TypeString && len(fr.GetStringBytes()) > 0
	changed := false
	delta := ch.Get("delta")
	if delta != nil && delta.Type() != fastjson.TypeObject {
		delta = nil
	}
	if delta == nil && final && r.op == opChat {
		// A chat finish chunk without a delta: the held-back text needs one to go out in.
		delta = r.guard.arena.NewObject()
		ch.Set("delta", delta)
		delta = ch.Get("delta")
	}
	// A delta that opens a tool call ends the texts before it: the SDKs' stream helpers take
	// a tool call that opens as the end of the content and of the calls before it (openai-node
	// and openai-python emit content.done and tool_calls.function.arguments.done then, the
	// latter parsing a strict tool's arguments), so what their guards hold back goes out with
	// this chunk, not with the finish chunk.
	opening := -1
	if delta != nil && !final {
		opening = openedToolCall(c, delta)
	}
	textFinal := final || opening >= 0
	v := delta.Get("content")
	if delta == nil {
		v = ch.Get("text")
	}
	if v != nil && v.Type() != fastjson.TypeString && v.Type() != fastjson.TypeNull {
		// Parts, say, which a stream guard of one text cannot follow: none goes out.
		r.streamGuard.broken = errContentUnguarded
		return false
	}
	// The answer starts (its content, or a tool call): the reasoning before it is at its end,
	// and a client that shows the thinking apart from the answer has all of it first.
	answers := opening >= 0 || delta != nil && v != nil && v.Type() == fastjson.TypeString && len(v.GetStringBytes()) > 0
	switch {
	case v != nil && v.Type() == fastjson.TypeString:
		if c.closed && len(v.GetStringBytes()) > 0 {
			c.reopen(r, r.jsonOutput)
		}
		if !c.closed {
			changed = g.streamValue(r, c, index, v, textFinal)
		}
	case textFinal && delta != nil && !c.closed:
		// The finish chunk (or one opening a tool call) may carry no text, but the held-back
		// text must go out with it.
		prev := delta.Get("content") // null or absent
		delta.Set("content", r.guard.arena.NewString(""))
		if changed = g.streamValue(r, c, index, delta.Get("content"), textFinal); !changed {
			// Nothing was held: the content stays as the backend sent it. A tool call answer's
			// is null, and an added "" would make it an empty text in the client's message.
			if prev != nil {
				delta.Set("content", prev)
			} else {
				delta.Del("content")
			}
		}
	case final && v == nil && delta == nil:
		// A completions finish chunk without text, likewise.
		ch.Set("text", r.guard.arena.NewString(""))
		changed = g.streamValue(r, c, index, ch.Get("text"), final)
	}
	switch {
	case delta == nil:
	case !r.streamGuard.hit:
		if opening >= 0 {
			c.closed = true
		}
		if g.guardDeltaExtras(r, c, delta, final, answers, opening) {
			changed = true
		}
	default:
		// The content stopped the stream: the delta's other texts are not guarded, so they go
		// no further.
		for _, key := range reasoningKeys {
			if delta.Exists(key) {
				delta.Del(key)
				changed = true
			}
		}
		for _, key := range [...]string{"refusal", "tool_calls", "function_call"} {
			if delta.Exists(key) {
				delta.Del(key)
				changed = true
			}
		}
	}
	if r.streamGuard.hit {
		ch.Set("finish_reason", r.guard.arena.NewString("content_filter"))
		return true
	}
	return changed
}

// streamValue passes the string v of a chunk through guard t, in place, and reports whether it
// changed; index -1 keeps the text from the classifier.
func (g *Gateway) streamValue(r *request, t *choiceGuard, index int, v *fastjson.Value, final bool) bool {
	text := v.GetStringBytes()
	out := g.streamText(r, t, index, text, final)
	if bytes.Equal(out, text) {
		return false
	}
	if len(out) == 0 {
		r.streamGuard.emptied = true
	}
	r.guard.setString(v, out)
	return true
}

// openedToolCall returns the highest index of a tool call that delta opens (one the choice has
// not had before), or -1 when it opens none. Ollama sends several whole calls in one delta: each
// but the last is ended by the next.
func openedToolCall(c *choiceGuard, delta *fastjson.Value) int {
	opening := -1
	for pos, tc := range delta.GetArray("tool_calls") {
		i := pos
		if iv := tc.Get("index"); iv != nil && iv.Type() == fastjson.TypeNumber {
			i = iv.GetInt()
		}
		if i >= c.toolsUsed && i < maxGuardedChoices && i > opening {
			opening = i
		}
	}
	return opening
}

// guardDeltaExtras guards the reasoning, tool call arguments and refusal of one chat delta
// (see guardChoice) and reports whether it changed. With final every text is at its end; with
// answers the reasoning is, and with opening >= 0 (see openedToolCall) the tool calls before
// that index are: what their guards hold back goes out in this delta, the calls' ahead of the
// calls it carries.
func (g *Gateway) guardDeltaExtras(r *request, c *choiceGuard, delta *fastjson.Value, final, answers bool, opening int) bool {
	a := &r.guard.arena
	changed := false
	run := func(t *choiceGuard, v *fastjson.Value) {
		if g.streamValue(r, t, -1, v, final) {
			changed = true
		}
	}
	for k, key := range reasoningKeys {
		if v := delta.Get(key); v != nil && v.Type() == fastjson.TypeString {
			t := c.reasoningGuard(r, k)
			if t.closed && len(v.GetStringBytes()) > 0 {
				t.reopen(r, false)
			}
			if !t.closed && g.streamValue(r, t, -1, v, final || answers) {
				changed = true
			}
			t.closed = answers && !final
		} else if final && c.reasoningOn[k] && !c.reasoning[k].closed {
			delta.Set(key, a.NewString(""))
			run(c.reasoning[k], delta.Get(key))
		} else if answers && c.reasoningOn[k] && !c.reasoning[k].closed {
			t := c.reasoning[k]
			held := a.NewString("")
			g.streamValue(r, t, -1, held, true)
			t.closed = true
			if len(held.GetStringBytes()) > 0 {
				delta.Set(key, held)
				changed = true
			}
		}
	}
	calls := delta.Get("tool_calls")
	ends := opening // the tool calls before it end with this delta
	if final {
		ends = maxGuardedChoices
	}
	var seen [maxGuardedChoices / 64]uint64 // tool call indexes this delta carries
	for pos, tc := range calls.GetArray() {
		i := pos
		if iv := tc.Get("index"); iv != nil && iv.Type() == fastjson.TypeNumber {
			i = iv.GetInt()
		}
		t := c.toolGuard(r, i)
		if t == nil {
			r.streamGuard.broken = errChoiceUnguarded
			return changed
		}
		seen[i/64] |= 1 << (i % 64)
		end := i < ends
		if v := tc.Get("function", "arguments"); v != nil && v.Type() == fastjson.TypeString {
			if t.closed && len(v.GetStringBytes()) > 0 {
				t.reopen(r, true)
			}
			if t.closed {
				continue
			}
			if g.streamValue(r, t, -1, v, end) {
				changed = true
			}
			t.closed = end && !final
		} else if end && !t.closed && tc.Type() == fastjson.TypeObject {
			// The finish chunk continues the call without arguments (only its index, or an
			// empty function): what its guard holds back goes out in this call's delta.
			v := a.NewString("")
			if g.streamValue(r, t, -1, v, true) {
				changed = true
			}
			t.closed = !final
			if len(v.GetStringBytes()) > 0 {
				fn := tc.Get("function")
				if fn == nil || fn.Type() != fastjson.TypeObject {
					tc.Set("function", a.NewObject())
					fn = tc.Get("function")
				}
				fn.Set("arguments", v)
			}
		}
	}
	// A legacy function_call streams its arguments as a tool call does.
	if v := delta.Get("function_call", "arguments"); v != nil && v.Type() == fastjson.TypeString {
		run(c.fnGuard(r), v)
	} else if final && c.fnOn {
		v := a.NewString("")
		run(c.fn, v)
		if len(v.GetStringBytes()) > 0 {
			fc := delta.Get("function_call")
			if fc == nil || fc.Type() != fastjson.TypeObject {
				delta.Set("function_call", a.NewObject())
				fc = delta.Get("function_call")
			}
			fc.Set("arguments", v)
			changed = true
		}
	}
	if v := delta.Get("refusal"); v != nil && v.Type() == fastjson.TypeString {
		run(c.refusalGuard(r), v)
	} else if final && c.refusalOn {
		delta.Set("refusal", a.NewString(""))
		if !g.streamValue(r, c.refusal, -1, delta.Get("refusal"), true) {
			delta.Del("refusal") // nothing was held
		} else {
			changed = true
		}
	}
	if ends < 0 {
		return changed
	}
	var released *fastjson.Value // the ended calls' held-back arguments, then the delta's calls
	n := 0
	for i, t := range c.tools[:min(c.toolsUsed, ends)] {
		if seen[i/64]&(1<<(i%64)) != 0 || t.closed {
			continue
		}
		// A tool call this chunk does not continue: send its held-back arguments in a
		// delta of its own index, as a backend continuing it would, ahead of the calls the
		// delta carries (a client takes a later index as the end of the calls before it).
		fn := a.NewObject()
		fn.Set("arguments", a.NewString(""))
		g.streamValue(r, t, -1, fn.Get("arguments"), true)
		t.closed = !final
		if len(fn.GetStringBytes("arguments")) == 0 {
			continue
		}
		call := a.NewObject()
		call.Set("index", a.NewNumberInt(i))
		call.Set("function", fn)
		if released == nil {
			released = a.NewArray()
		}
		released.SetArrayItem(n, call)
		n++
	}
	if released == nil {
		return changed
	}
	for _, tc := range calls.GetArray() {
		released.SetArrayItem(n, tc)
		n++
	}
	delta.Set("tool_calls", released)
	return true
}
