package guard

// Restorer puts the original values back into a streamed completion. Write takes the text of
// each content delta and returns the text to send; it holds back a tail only while that tail
// could still become a placeholder split across deltas (at most maxPlaceholder-1 bytes, and
// only from a '<' on), so a delta with no '<' passes straight through. Inside a JSON string
// (ResetInJSONString) a tail from a backslash on is held too, while it could be an escaped
// placeholder (\u003c...\u003e, at most maxEscapedHold bytes). Flush returns what is held
// when the stream ends.
//
// A Restorer belongs to one stream; its zero value is not usable: call Reset first. It reads
// the Vault, which must outlive the stream.
type Restorer struct {
	v      *Vault
	hold   []byte
	tmp    []byte
	inJSON bool // the text is the inside of a JSON string (see Vault.RestoreInJSONString)
}

// NewRestorer returns a Restorer reading v.
func NewRestorer(v *Vault) *Restorer {
	r := &Restorer{}
	r.Reset(v)
	return r
}

// Reset readies r for a new stream reading v.
func (r *Restorer) Reset(v *Vault) {
	r.v, r.inJSON = v, false
	r.hold = r.hold[:0]
	r.tmp = r.tmp[:0]
}

// ResetInJSONString is Reset for a stream of text that is the inside of a JSON string, such as
// a tool call's arguments: restored values are written as Vault.RestoreInJSONString writes them.
func (r *Restorer) ResetInJSONString(v *Vault) {
	r.Reset(v)
	r.inJSON = true
}

// maxEscapedHold bounds what a Restorer of JSON string text holds: an escaped '<', the body of
// the longest placeholder, and all but the last byte of an escaped '>'.
const maxEscapedHold = len(`\u003c`) + maxPlaceholder - 2 + len(`\u003e`) - 1

// Held returns the number of bytes held back.
func (r *Restorer) Held() int { return len(r.hold) }

// Write appends the restored text of chunk (after what was held) to dst.
func (r *Restorer) Write(dst, chunk []byte) []byte {
	data := chunk
	if len(r.hold) > 0 {
		r.tmp = append(append(r.tmp[:0], r.hold...), chunk...)
		data = r.tmp
	}
	dst, k := r.v.restore(dst, data, true, r.inJSON)
	r.hold = append(r.hold[:0], data[k:]...)
	return dst
}

// Flush appends what is held to dst, unchanged: at the end of the stream it is no placeholder.
func (r *Restorer) Flush(dst []byte) []byte {
	dst = append(dst, r.hold...)
	r.hold = r.hold[:0]
	return dst
}
