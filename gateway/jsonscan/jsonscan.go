// Package jsonscan finds the byte span of a top-level member's value in a JSON object without
// decoding it, so the gateway can rewrite one field (model, stream_options) and pass every other
// byte of the client's body to the backend as it came.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Find returns the span [start, end) of the value of key in the JSON object b, or -1, -1 when
// the key is absent or b is not an object. With duplicate keys the last one wins, as in the
// Python and Go decoders backends use. Keys are compared as raw bytes: a key written with
// escapes does not match (callers validate the body with a full parser first).
func Find(b []byte, key string) (start, end int) {
	var spans [1]Span
	FindEach(b, []string{key}, spans[:])
	return spans[0].Start, spans[0].End
}

// FindPair is Find for two keys in one pass over b: the spans of key1's and key2's values, each
// -1, -1 when absent. An empty key2 matches nothing.
func FindPair(b []byte, key1, key2 string) (start1, end1, start2, end2 int) {
	var spans [2]Span
	FindEach(b, []string{key1, key2}, spans[:])
	return spans[0].Start, spans[0].End, spans[1].Start, spans[1].End
}

// Span is the byte span [Start, End) of a value; -1, -1 when absent.
type Span struct{ Start, End int }

// FindEach is Find for several keys in one pass over b: spans[k] gets the span of keys[k]'s
// value. A scan of a stream chunk or an answer reads every member it needs at the cost of one.
// The object ends at its closing brace: what follows it is not read. An empty key matches
// nothing.
func FindEach(b []byte, keys []string, spans []Span) {
	findEach(b, keys, spans)
}

// Resume lets FindEachResume skip the members it has read before. The chunks of a stream
// start alike: id, object, created and model are the same in each, and only then come the
// members a reader wants (choices, usage). Reading those leading members again, a few dozen
// bytes of strings each, was most of the scan of a chunk.
type Resume struct {
	prefix []byte // the last object's bytes up to its first member whose key was sought
}

// FindEachResume is FindEach for objects read one after another with the same keys, such as
// the chunks of a stream: when b starts with the bytes that held the members before the first
// sought one in the object of the last call, the scan starts after them. Where the scan of an
// object is a function of its bytes, that start leaves it where a scan from the beginning
// would be: in the object, at a member's key, with no key found yet. The keys must be the same
// in every call with r.
func FindEachResume(b []byte, keys []string, spans []Span, r *Resume) {
	if n := len(r.prefix); n > 0 && len(b) > n && bytes.Equal(b[:n], r.prefix) {
		for k := range spans {
			spans[k] = Span{-1, -1}
		}
		findMembers(b, n, keys, spans)
		return
	}
	first := findEach(b, keys, spans)
	r.prefix = append(r.prefix[:0], b[:max(first, 0)]...)
}

// findEach is FindEach; it returns where the key of the first member it found starts, or -1.
func findEach(b []byte, keys []string, spans []Span) int {
	for k := range spans {
		spans[k] = Span{-1, -1}
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return -1
	}
	return findMembers(b, i+1, keys, spans)
}

// findMembers reads the members of an object from b[i], after its '{' or a member's ',', into
// spans (all -1, -1 when called). It returns where the key of the first member it found
// starts, or -1 (also when b is malformed, which leaves every span -1, -1).
func findMembers(b []byte, i int, keys []string, spans []Span) int {
	first := -1
	fail := func() int {
		for k := range spans {
			spans[k] = Span{-1, -1}
		}
		return -1
	}
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return first // '}' of an empty object, or malformed
		}
		keyEnd := skipString(b, i)
		if keyEnd < 0 {
			return fail()
		}
		k := b[i+1 : keyEnd-1]
		match := -1
		for n, key := range keys {
			if string(k) == key && key != "" {
				match = n
				break
			}
		}
		if match >= 0 && first < 0 {
			first = i
		}
		i = skipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return fail()
		}
		i = skipSpace(b, i+1)
		valEnd := skipValue(b, i)
		if valEnd < 0 {
			return fail()
		}
		if match >= 0 {
			spans[match] = Span{i, valEnd}
		}
		i = skipSpace(b, valEnd)
		if i >= len(b) {
			return fail()
		}
		if b[i] == '}' {
			return first
		}
		if b[i] != ',' {
			return fail()
		}
		i++
	}
}

// ObjectEnd returns the index of the closing '}' of the JSON object that b holds (trailing
// whitespace allowed), or -1.
func ObjectEnd(b []byte) int {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return -1
	}
	end := skipValue(b, i)
	if end < 0 || skipSpace(b, end) != len(b) {
		return -1
	}
	return end - 1
}

// IsEmptyObject reports whether b is `{}` with optional whitespace inside.
func IsEmptyObject(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	return i < len(b) && b[i] == '}'
}

func skipSpace(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' { // compact JSON, as most bodies and answers come: one compare
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the closing quote of the string starting at b[i] == '"'.
// Most strings of a chunk or an answer (keys, ids, a token of text, null-valued members'
// names) end within a few words: those are read eight bytes at a time, looking for a quote
// and a backslash at once, before a call to IndexByte would have started; a longer string
// goes to IndexByte.
func skipString(b []byte, i int) int {
	const ones, highs, quotes, backslashes = 0x0101010101010101, 0x8080808080808080, 0x2222222222222222, 0x5c5c5c5c5c5c5c5c
	i++
	for end := min(len(b), i+32); i+8 <= end; {
		x := binary.LittleEndian.Uint64(b[i:])
		q, e := x^quotes, x^backslashes // a quote (a backslash) is a zero byte of q (e)
		// The lowest set bit marks the first zero byte exactly (higher ones may be wrong).
		z := ((q-ones)&^q | (e-ones)&^e) & highs
		if z == 0 {
			i += 8
			continue
		}
		i += bits.TrailingZeros64(z) >> 3
		if b[i] == '"' {
			return i + 1
		}
		i += 2 // a backslash and the byte it escapes
	}
	for {
		if i >= len(b) {
			return -1
		}
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		i += j
		// The quote is escaped when an odd number of backslashes precede it (a run of them
		// is escape pairs, so counting back past where the search started is right).
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
}

// structural marks the bytes skipValue acts on inside an object or array; endsScalar those
// that end a number, true, false or null.
var (
	structural = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true}
	endsScalar = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true, '\n': true, '\r': true}
)

// skipValue returns the index after the value starting at b[i], or -1 when malformed.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			if !structural[b[i]] { // most bytes between strings: one table lookup, not a switch
				i++
				continue
			}
			switch b[i] {
			case '"':
				i = skipString(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		// number, true, false, null: up to the next delimiter
		j := i
		for j < len(b) {
			if endsScalar[b[j]] {
				if j == i {
					return -1
				}
				return j
			}
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// IsEmptyArray reports whether b is `[]` with optional whitespace inside.
func IsEmptyArray(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = skipSpace(b, i+1)
	return i < len(b) && b[i] == ']'
}

// FirstElementStart returns where the first element of the JSON array b starts, or -1 when b
// is not an array or is empty. Unlike FirstElement it does not read the element.
func FirstElementStart(b []byte) int {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return -1
	}
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] == ']' {
		return -1
	}
	return i
}

// NextElementStart returns where the element after the one starting at b[i] starts in the JSON
// array b (i from FirstElementStart or NextElementStart), or -1 after the last element or when b
// is malformed.
func NextElementStart(b []byte, i int) int {
	i = skipValue(b, i)
	if i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ',' {
		return -1
	}
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] == ']' {
		return -1
	}
	return i
}

// Hex4 decodes the four hex digits at b[i:i+4], those of a \u escape; false when they are
// not four hex digits.
func Hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
