package guard

import "bytes"

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

// lookup returns the original behind a restorable placeholder. A value the prompt masked is
// never restored, though the completion's leak scan may have given it a placeholder since.
func (v *Vault) lookup(e entity, num, tag uint32, hashed bool) ([]byte, bool) {
	i, ok := v.phEntry(e, num, tag, hashed)
	if !ok || !v.ents[i].restore || v.ents[i].masked {
		return nil, false
	}
	en := &v.ents[i]
	return v.vals[en.off : en.off+en.n], true
}

// Restore appends src to dst with every restorable placeholder of v replaced by its original
// value; other text, including placeholders v does not know, is copied unchanged.
func (v *Vault) Restore(dst, src []byte) []byte {
	dst, _ = v.restore(dst, src, false, false)
	return dst
}

// RestoreInJSONString is Restore for text that is the inside of a JSON string, such as a tool
// call's arguments or JSON-mode content: a restored value's control characters are escaped
// (a newline as \n), since a JSON string cannot hold them raw and the client's JSON parser
// would fail. Quotes and backslashes are left as they are: a value that has them was taken
// from such text, where they are escaped already.
func (v *Vault) RestoreInJSONString(dst, src []byte) []byte {
	dst, _ = v.restore(dst, src, false, true)
	return dst
}

// restore is Restore; with stream it stops at a trailing partial placeholder and returns
// where it begins (len(src) when none); with inJSON it is RestoreInJSONString.
func (v *Vault) restore(dst, src []byte, stream, inJSON bool) ([]byte, int) {
	if inJSON {
		return v.restoreInJSON(dst, src, stream)
	}
	i := 0
	for {
		k := bytes.IndexByte(src[i:], '<')
		if k < 0 {
			return append(dst, src[i:]...), len(src)
		}
		k += i
		dst = append(dst, src[i:k]...)
		e, num, tag, hashed, n, st := parsePlaceholder(src[k:])
		switch {
		case st == phPartial && stream:
			return dst, k
		case st == phOK:
			if val, ok := v.lookup(e, num, tag, hashed); ok {
				dst = append(dst, val...)
			} else {
				dst = append(dst, src[k:k+n]...)
			}
			i = k + n
		default:
			dst = append(dst, '<')
			i = k + 1
		}
	}
}

// restoreInJSON is restore for the inside of a JSON string. There a placeholder may also be
// written with its angle brackets escaped, \u003c and \u003e, as Go's encoding/json writes
// them (Ollama's tool call arguments): such a placeholder is restored too. Escapes are read
// whole, so the "u003c" of an escaped backslash followed by those letters is text.
func (v *Vault) restoreInJSON(dst, src []byte, stream bool) ([]byte, int) {
	var buf [maxPlaceholder + 1]byte // an escaped placeholder as read, on the stack
	i := 0
	for {
		k := i
		for k < len(src) && src[k] != '<' && src[k] != '\\' {
			k++
		}
		dst = append(dst, src[i:k]...)
		if k == len(src) {
			return dst, k
		}
		ph, open, atEnd := src[k:], 1, true
		if src[k] == '\\' {
			esc := escapedOpen(src[k:])
			switch {
			case esc == phPartial && stream:
				return dst, k
			case esc != phOK:
				// An escape other than \u003c: copied whole, its four hex digits too, but no
				// byte past them, which may start the next escape (a malformed \u with fewer
				// digits is read as far as it goes, the same whether or not src ends there).
				n := min(len(src)-k, 2)
				if n == 2 && src[k+1] == 'u' {
					for n < 6 && k+n < len(src) && isHex(src[k+n]) {
						n++
					}
				}
				dst = append(dst, src[k:k+n]...)
				i = k + n
				continue
			}
			ph, atEnd = unescapePlaceholder(&buf, src[k:])
			open = 6
		}
		e, num, tag, hashed, n, st := parsePlaceholder(ph)
		if st == phPartial && !atEnd {
			st = phInvalid // its body stopped at text no placeholder has, not at src's end
		}
		if st == phOK && open == 6 {
			n = escapedLen(src[k:], n) // the placeholder as written: its '>' may be escaped too
		}
		switch {
		case st == phPartial && stream:
			return dst, k
		case st == phOK && n > 0:
			if val, ok := v.lookup(e, num, tag, hashed); ok {
				dst = appendEscapedControls(dst, val)
			} else {
				dst = append(dst, src[k:k+n]...)
			}
			i = k + n
		default:
			dst = append(dst, src[k:k+open]...)
			i = k + open
		}
	}
}

// escapedOpen reports whether b starts with an escaped '<' (\u003c or \u003C): phOK,
// phPartial when b ends inside one, else phInvalid.
func escapedOpen(b []byte) int {
	const lower, upper = `\u003c`, `\u003C`
	n := min(len(b), len(lower))
	switch {
	case string(b[:n]) != lower[:n] && string(b[:n]) != upper[:n]:
		return phInvalid
	case n < len(lower):
		return phPartial
	}
	return phOK
}

// unescapePlaceholder returns b, which starts with an escaped '<', as parsePlaceholder reads a
// placeholder: '<', the characters after the escape up to the next backslash or '>' (the only
// ones a placeholder has), then '>' when an escaped or plain '>' follows there. It writes into
// buf, the caller's array: a placeholder is at most maxPlaceholder bytes. atEnd reports
// whether what it read may go on in text after b: the body ran to b's end or to a part of an
// escaped '>' there. Otherwise a placeholder parse that wants more ("\u003c\u003cEMAIL_...",
// whose first body is empty) is no placeholder: more text cannot change it.
func unescapePlaceholder(buf *[maxPlaceholder + 1]byte, b []byte) (ph []byte, atEnd bool) {
	out := append(buf[:0], '<')
	for _, c := range b[6:] {
		if c == '\\' || c == '>' || len(out) == maxPlaceholder-1 {
			break
		}
		out = append(out, c)
	}
	rest := b[6+len(out)-1:]
	if len(rest) > 0 && rest[0] == '>' || len(rest) >= 6 && (string(rest[:6]) == `\u003e` || string(rest[:6]) == `\u003E`) {
		out = append(out, '>')
	}
	n := min(len(rest), 6)
	atEnd = len(rest) < 6 && (string(rest) == `\u003e`[:n] || string(rest) == `\u003E`[:n])
	return out, atEnd
}

// escapedLen returns the length, in b, of the placeholder that unescapePlaceholder read as n
// bytes: its opening escape is six bytes, its closing '>' one or six; 0 when a '>' plain or
// escaped is not there after all.
func escapedLen(b []byte, n int) int {
	end := 6 + n - 2 // after the opening escape and the placeholder's body
	if end < len(b) && b[end] == '>' {
		return end + 1
	}
	if end+6 <= len(b) {
		return end + 6
	}
	return 0
}

// appendEscapedControls appends s with its control characters written as JSON escapes.
func appendEscapedControls(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	for _, c := range s {
		switch {
		case c >= 0x20:
			dst = append(dst, c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	return dst
}

// Placeholder parse states.
const (
	phInvalid = iota
	phPartial // b ends inside what could still become a placeholder
	phOK
)

// upperFold reports whether b is name, an entity name in upper case, in any case.
func upperFold(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for k, c := range b {
		if c-'a' < 26 {
			c -= 'a' - 'A'
		}
		if c != name[k] {
			return false
		}
	}
	return true
}

// maxPlaceholder is the length of the longest placeholder: "<URL_CREDENTIALS_h:01234567>".
const maxPlaceholder = 1 + len(EntityURLCredentials) + len("_h:01234567>")

// parsePlaceholder parses a placeholder at the start of b: "<TYPE_n>" with n a number of up
// to six digits and no leading zero, or "<TYPE_h:xxxxxxxx>" with eight lower-case hex digits.
// TYPE may be in any case: a model may write "<email_address_1>" for the placeholder it was
// given, which the client should get back restored all the same.
func parsePlaceholder(b []byte) (e entity, num, tag uint32, hashed bool, n, st int) {
	if len(b) == 0 || b[0] != '<' {
		return 0, 0, 0, false, 0, phInvalid
	}
	rest := b[1:]
	found, partial := false, false
	for x, name := range entityNames {
		m := len(name)
		if len(rest) <= m {
			partial = partial || upperFold(rest, name[:len(rest)])
			continue
		}
		if upperFold(rest[:m], name) && rest[m] == '_' {
			e, found, rest, n = entity(x), true, rest[m+1:], m+2
			break
		}
	}
	switch {
	case !found && partial:
		return 0, 0, 0, false, 0, phPartial
	case !found:
		return 0, 0, 0, false, 0, phInvalid
	case len(rest) == 0:
		return e, 0, 0, false, 0, phPartial
	}
	if rest[0] == 'h' {
		for k := 1; k < 11; k++ {
			if k >= len(rest) {
				return e, 0, 0, false, 0, phPartial
			}
			c := rest[k]
			switch {
			case k == 1 && c == ':':
			case k > 1 && k < 10 && isDigit(c):
				tag = tag<<4 | uint32(c-'0')
			case k > 1 && k < 10 && c >= 'a' && c <= 'f':
				tag = tag<<4 | uint32(c-'a'+10)
			case k == 10 && c == '>':
				return e, 0, tag, true, n + 11, phOK
			default:
				return 0, 0, 0, false, 0, phInvalid
			}
		}
	}
	k := 0
	for k < len(rest) && k < 7 && isDigit(rest[k]) {
		num = num*10 + uint32(rest[k]-'0')
		k++
	}
	switch {
	case k == 0 && len(rest) > 0 || k > 6 || rest[0] == '0':
		return 0, 0, 0, false, 0, phInvalid
	case k == len(rest):
		return e, 0, 0, false, 0, phPartial
	case rest[k] != '>':
		return 0, 0, 0, false, 0, phInvalid
	}
	return e, num, 0, false, n + k + 1, phOK
}
