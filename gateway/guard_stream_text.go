package gateway

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/gateway/jsonscan"
)

// skipTextChunks makes guardChunk take its general path for every chunk: tests compare the two.
var skipTextChunks atomic.Bool

// guardTextChunk is guardChunk for the chunk that nearly every event of a stream is: its one
// choice (at data[at.Start:at.End]), index 0, carries only text, not yet finished, as textChoice
// reads it ("delta":{"content":"..."}, Ollama's with its role, or a completion's "text":"..."),
// the text has no escapes, and the choice has no reasoning held back. It reads and rewrites the
// chunk's bytes where guardChunk builds a tree of the chunk and writes it out again, which cost
// most of the completion guard's time per event. ok false, before anything is guarded, leaves
// the chunk to guardChunk. What goes out is what guardChunk sends for such a chunk: the text as
// the guards release it, nothing when they hold all of it, and finish_reason content_filter
// when they stop the choice.
func (g *Gateway) guardTextChunk(r *request, data []byte, at jsonscan.Span) (out []byte, ok bool) {
	choices := data[at.Start:at.End]
	text, reasoning, plain := textChoice(choices)
	if !plain || reasoning || bytes.IndexByte(text, '\\') >= 0 {
		return nil, false
	}
	// Where the text and its choice's finish_reason are in data: text is choices[i:e], and
	// cap(choices[i:]) is cap(choices)-i.
	ts := at.Start + cap(choices) - cap(text)
	te := ts + len(text)
	fr := bytes.Index(data[te:at.End], []byte(`"finish_reason":null`))
	if fr < 0 {
		return nil, false
	}
	fr += te + len(`"finish_reason":`)
	c := r.choice(0)
	if c == nil || c.stopped || c.closed || c.reasoningOn[0] || c.reasoningOn[1] ||
		!c.roleSent && bytes.HasPrefix(choices, textChoiceRoleDelta) {
		return nil, false
	}
	sg := &r.streamGuard
	defer sg.addSpent(time.Now())
	sg.hit = false
	released := g.streamText(r, c, 0, text, false)
	if sg.hit {
		c.stopped = true
		sg.nstopped++
		if sg.nstopped >= r.choicesAsked() {
			sg.stopped = true // every choice asked for is stopped: the stream ends
		}
	} else if bytes.Equal(released, text) {
		return data, true
	} else if len(released) == 0 {
		return nil, true // all of it held back, and the chunk carries nothing else
	}
	b := append(r.guard.chunk[:0], data[:ts-1]...) // up to the text's opening quote
	b = appendJSONString(b, unsafeString(released))
	if sg.hit {
		b = append(append(append(b, data[te+1:fr]...), `"content_filter"`...), data[fr+len("null"):]...)
	} else {
		b = append(b, data[te+1:]...)
	}
	r.guard.chunk = b
	return b, true
}
