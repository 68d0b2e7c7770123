package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/llmgate/llmgate/gateway/jsonscan"
)

// A strict JSON scanner over raw bytes. The cache cannot use fastjson here: its best-effort
// unescaping maps different inputs (a lone surrogate escape and a literal backslash-u) to the
// same string, which would let two different requests share a key, and it reports no offsets,
// which replay needs to splice a stored body without re-encoding it.

// errSyntax means the bytes are not strict JSON (RFC 8259); such bodies are not cached.
var errSyntax = errors.New("cache: invalid JSON")

// errTooDeep bounds recursion on hostile bodies.
var errTooDeep = errors.New("cache: JSON nested too deeply")

const maxDepth = 64

// skipWS returns the index of the first byte at or after b[i] that is not JSON whitespace, or
// len(b). Every whitespace byte is at most ' ': in a compact body, where it is called between
// every two tokens, a call is one comparison, inlined.
func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && whitespace[b[i]] {
		i++
	}
	return i
}

// whitespace is JSON's: space, tab, line feed, carriage return.
var whitespace = [' ' + 1]bool{' ': true, '\t': true, '\n': true, '\r': true}

// scanString returns the index after the closing quote of the string at b[i] == '"',
// validating its escapes.
func scanString(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errSyntax
	}
	for i++; ; i++ {
		i = plainRun(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case '"':
			return i + 1, nil
		case '\\':
			i++
			if i >= len(b) {
				return 0, errSyntax
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if _, ok := jsonscan.Hex4(b, i+1); !ok {
					return 0, errSyntax
				}
				i += 4
			default:
				return 0, errSyntax
			}
		default: // a control character
			return 0, errSyntax
		}
	}
}

// plainRun returns the index of the first '"', '\\' or control character at or after b[i], or
// len(b). Keys, ids and model names end within a few words, tested one at a time; longer runs
// are then tested 32 bytes at a time, four independent words that the CPU computes in
// parallel, and the byte is found word by word in the block that has it. A run still going
// after two blocks is prose (a prompt, an answer): longRun finds its end with a third of the
// instructions.
func plainRun(b []byte, i int) int {
	if i >= 0 && len(b)-i >= 32 {
		// The first words at fixed offsets, with one bounds check for the four.
		p := (*[32]byte)(b[i:])
		if m := special8(binary.LittleEndian.Uint64(p[:8])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		if m := special8(binary.LittleEndian.Uint64(p[8:16])); m != 0 {
			return i + 8 + bits.TrailingZeros64(m)>>3
		}
		if m := special8(binary.LittleEndian.Uint64(p[16:24])); m != 0 {
			return i + 16 + bits.TrailingZeros64(m)>>3
		}
		if m := special8(binary.LittleEndian.Uint64(p[24:])); m != 0 {
			return i + 24 + bits.TrailingZeros64(m)>>3
		}
		i += 32
	} else {
		for end := i + 32; i+8 <= len(b) && i < end; i += 8 {
			if m := special8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				return i + bits.TrailingZeros64(m)>>3
			}
		}
	}
	for n := 0; i+32 <= len(b); i, n = i+32, n+1 {
		if n == 2 {
			return i + longRun(b[i:])
		}
		w := b[i : i+32]
		if special8(binary.LittleEndian.Uint64(w))|special8(binary.LittleEndian.Uint64(w[8:]))|
			special8(binary.LittleEndian.Uint64(w[16:]))|special8(binary.LittleEndian.Uint64(w[24:])) != 0 {
			break
		}
	}
	for ; i+8 <= len(b); i += 8 {
		if m := special8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

// longRun is plainRun for b from its start, by windows of 1 KiB: bytes.IndexByte (vector
// instructions) finds the window's first quote and backslash, and only the bytes before them
// are tested for control characters, which costs about one instruction a byte against the
// 2.5 of testing every word for all three.
func longRun(b []byte) int {
	for i := 0; i < len(b); i += 1024 {
		w := b[i:min(i+1024, len(b))]
		end := len(w)
		if q := bytes.IndexByte(w, '"'); q >= 0 {
			end = q
		}
		if s := bytes.IndexByte(w[:end], '\\'); s >= 0 {
			end = s
		}
		if c := firstControl(w[:end]); c < end || end < len(w) {
			return i + c
		}
	}
	return len(b)
}

// firstControl returns the index of the first control character (below 0x20) in b, or len(b):
// four words at a time while there are none, then the word that has one.
func firstControl(b []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	rest := b
	for len(rest) >= 64 {
		p := (*[64]byte)(rest) // one bounds check for the eight words
		if (ctl8(p[:8])|ctl8(p[8:16])|ctl8(p[16:24])|ctl8(p[24:32])|
			ctl8(p[32:40])|ctl8(p[40:48])|ctl8(p[48:56])|ctl8(p[56:]))&hi != 0 {
			break
		}
		rest = rest[64:]
	}
	for len(rest) >= 8 {
		w := binary.LittleEndian.Uint64(rest)
		if m := (w - lo*0x20) &^ w & hi; m != 0 {
			return len(b) - len(rest) + bits.TrailingZeros64(m)>>3
		}
		rest = rest[8:]
	}
	for j, c := range rest {
		if c < 0x20 {
			return len(b) - len(rest) + j
		}
	}
	return len(b)
}

// ctl8 returns the word at b with the high bit set in each byte below 0x20 and in some bytes
// above such a byte (a borrow), and in no others once masked with 0x80 per byte.
func ctl8(b []byte) uint64 {
	w := binary.LittleEndian.Uint64(b)
	return (w - 0x2020202020202020) &^ w
}

// scanNumber returns the end of the number at b[i] and the spans of its parts: integer digits
// [is, ie), fraction digits [fs, fe) and exponent (sign included) [es, ee).
func scanNumber(b []byte, i int) (end int, n numParts, err error) {
	if i < len(b) && b[i] == '-' {
		n.neg = true
		i++
	}
	n.is = i
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, n, errSyntax
	}
	n.ie, n.fs, n.fe = i, i, i
	if i < len(b) && b[i] == '.' {
		i++
		n.fs = i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == n.fs {
			return 0, n, errSyntax
		}
		n.fe = i
	}
	n.es, n.ee = i, i
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		n.es = i
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, n, errSyntax
		}
		n.ee = i
	}
	return i, n, nil
}

type numParts struct {
	neg                    bool
	is, ie, fs, fe, es, ee int
}

// scanValue returns the index after the value starting at b[i] (no leading whitespace).
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return scanString(b, i)
	case '{':
		if depth >= maxDepth {
			return 0, errTooDeep
		}
		return scanObject(b, i, depth+1)
	case '[':
		if depth >= maxDepth {
			return 0, errTooDeep
		}
		return scanArray(b, i, depth+1)
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	default:
		end, _, err := scanNumber(b, i)
		return end, err
	}
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errSyntax
	}
	return i + len(lit), nil
}

// Objects and arrays are walked in one pass with enter, then for each member memberKey (objects
// only), a scan of the value by the caller, and afterValue. Callers that parse the values they
// care about themselves (Entry.index) so read every byte once; eachMember and eachElement
// wrap the walk for callers that only look at spans.

// enter returns the index of the first member or element of the object or array at b[i]
// (open is '{' or '['), and more = false with the index after it when it is empty.
func enter(b []byte, i int, open, close byte) (j int, more bool, err error) {
	if i >= len(b) || b[i] != open {
		return 0, false, errSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == close {
		return i + 1, false, nil
	}
	return i, true, nil
}

// memberKey scans the member key at b[i] and the colon after it: the key is b[i:ke], quotes
// included, and its value starts at vs.
func memberKey(b []byte, i int) (ke, vs int, err error) {
	if ke, err = scanString(b, i); err != nil {
		return 0, 0, err
	}
	j := skipWS(b, ke)
	if j >= len(b) || b[j] != ':' {
		return 0, 0, errSyntax
	}
	return ke, skipWS(b, j+1), nil
}

// afterValue goes on after a member or element that ends at b[i]: it returns the index of the
// next one and more = true, or the index after the closing byte and more = false.
func afterValue(b []byte, i int, close byte) (j int, more bool, err error) {
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, false, errSyntax
	}
	switch b[i] {
	case close:
		return i + 1, false, nil
	case ',':
		return skipWS(b, i+1), true, nil
	}
	return 0, false, errSyntax
}

// scanObject returns the index after the object at b[i], its values scanned at depth.
func scanObject(b []byte, i, depth int) (int, error) {
	i, more, err := enter(b, i, '{', '}')
	for more && err == nil {
		var vs int
		if _, vs, err = memberKey(b, i); err != nil {
			break
		}
		if i, err = scanValue(b, vs, depth); err != nil {
			break
		}
		i, more, err = afterValue(b, i, '}')
	}
	return i, err
}

// scanArray returns the index after the array at b[i], its elements scanned at depth.
func scanArray(b []byte, i, depth int) (int, error) {
	i, more, err := enter(b, i, '[', ']')
	for more && err == nil {
		if i, err = scanValue(b, i, depth); err != nil {
			break
		}
		i, more, err = afterValue(b, i, ']')
	}
	return i, err
}

// eachMember calls f with the spans of the raw key (quotes included) and value of every member
// of the object at b[i], and returns the index after the object. f's error stops the scan.
func eachMember(b []byte, i int, f func(ks, ke, vs, ve int) error, depth int) (int, error) {
	i, more, err := enter(b, i, '{', '}')
	for more && err == nil {
		var ke, vs, ve int
		if ke, vs, err = memberKey(b, i); err != nil {
			break
		}
		if ve, err = scanValue(b, vs, depth); err != nil {
			break
		}
		if err = f(i, ke, vs, ve); err != nil {
			break
		}
		i, more, err = afterValue(b, ve, '}')
	}
	if err != nil {
		return 0, err
	}
	return i, nil
}

// eachElement calls f with the span of every element of the array at b[i] and returns the
// index after the array.
func eachElement(b []byte, i int, f func(vs, ve int) error, depth int) (int, error) {
	i, more, err := enter(b, i, '[', ']')
	for more && err == nil {
		var ve int
		if ve, err = scanValue(b, i, depth); err != nil {
			break
		}
		if err = f(i, ve); err != nil {
			break
		}
		i, more, err = afterValue(b, ve, ']')
	}
	if err != nil {
		return 0, err
	}
	return i, nil
}

// keyIs reports whether the raw key (quotes included) is name written without escapes;
// backends never escape the keys the cache reads.
func keyIs(raw []byte, name string) bool {
	return len(raw) == len(name)+2 && string(raw[1:len(raw)-1]) == name
}

// appendCanonString appends the canonical form of the JSON string at b[i] and returns the
// index after it. The form is injective on decoded strings: escapes are decoded to UTF-8
// except `"`, `\`, control characters (short escapes or \u00xx) and lone surrogates (\udxxx,
// lower case), which stay escaped; other bytes, invalid UTF-8 included, are copied as they are.
func appendCanonString(dst, b []byte, i int) ([]byte, int, error) {
	if i >= len(b) || b[i] != '"' {
		return dst, 0, errSyntax
	}
	// Most strings have no escapes but \", \\, \n, \t and \r, which are their own canonical
	// form: such a string's canonical form is its JSON text, copied at once.
	j := plainRun(b, i+1)
	if j < len(b) && b[j] == '"' {
		return append(dst, b[i:j+1]...), j + 1, nil
	}
	for j+1 < len(b) && b[j] == '\\' && canonEscape[b[j+1]] {
		j = plainRun(b, j+2)
	}
	if j < len(b) && b[j] == '"' {
		return append(dst, b[i:j+1]...), j + 1, nil
	}
	return appendCanonEscaped(append(dst, b[i:j]...), b, j)
}

// canonEscape marks the escapes that appendCanonEscaped writes as they are.
var canonEscape = [256]bool{'"': true, '\\': true, 'n': true, 't': true, 'r': true}

// appendCanonEscaped goes on with appendCanonString at b[i], the first byte after a run of
// plain bytes.
func appendCanonEscaped(dst, b []byte, i int) ([]byte, int, error) {
	for {
		if i >= len(b) {
			return dst, 0, errSyntax
		}
		switch b[i] {
		case '"':
			return append(dst, '"'), i + 1, nil
		case '\\':
		default: // a control character
			return dst, 0, errSyntax
		}
		// An escape.
		if i+1 >= len(b) {
			return dst, 0, errSyntax
		}
		e := b[i+1]
		i += 2
		switch e {
		case '"', '\\':
			dst = append(dst, '\\', e)
		case '/':
			dst = append(dst, '/')
		case 'b':
			dst = appendCanonRune(dst, '\b')
		case 'f':
			dst = appendCanonRune(dst, '\f')
		case 'n':
			dst = appendCanonRune(dst, '\n')
		case 'r':
			dst = appendCanonRune(dst, '\r')
		case 't':
			dst = appendCanonRune(dst, '\t')
		case 'u':
			r, ok := jsonscan.Hex4(b, i)
			if !ok {
				return dst, 0, errSyntax
			}
			i += 4
			if r >= 0xd800 && r < 0xdc00 && i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
				if lo, ok := jsonscan.Hex4(b, i+2); ok && lo >= 0xdc00 && lo < 0xe000 {
					r = (r-0xd800)<<10 | (lo - 0xdc00) + 0x10000
					i += 6
				}
			}
			dst = appendCanonRune(dst, r)
		default:
			return dst, 0, errSyntax
		}
		// Copy the run of plain bytes up to the next quote, backslash or control character
		// at once.
		run := i
		i = plainRun(b, i)
		dst = append(dst, b[run:i]...)
	}
}

const hexDigits = "0123456789abcdef"

// special8 returns a mask with the high bit set in the bytes of w (little endian) that are
// '"', '\\' or a control character, or zero when there are none. SWAR: a byte c is below 0x20
// or '"' exactly when c^0x02 is below 0x21, and after the xor with '\\' a byte is zero where
// it matched; subtracting 0x21 (or one) from a byte sets its high bit where it was below 0x21
// (or zero). Bytes with their own high bit set (UTF-8) are masked out, and the xors do not
// change the high bit, so one "&^ w" serves both tests. A borrow can also mark a byte above a
// marked one, never below, so the lowest marked byte is always exact.
func special8(w uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x, y := w^(lo*0x02), w^(lo*'\\')
	return ((x - lo*0x21) | (y - lo)) &^ w & hi
}

// appendCanonRune appends a decoded rune in canonical form.
func appendCanonRune(dst []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(dst, '\\', byte(r))
	case r == '\n':
		return append(dst, '\\', 'n')
	case r == '\t':
		return append(dst, '\\', 't')
	case r == '\r':
		return append(dst, '\\', 'r')
	case r < 0x20, r >= 0xd800 && r < 0xe000:
		return append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
	default:
		return utf8.AppendRune(dst, r)
	}
}

// maxExpDigits bounds exponents (|exp| < 10000, far beyond float64's range) so normalising
// cannot overflow; a body with a number like 1e100000 is simply not cached.
const maxExpDigits = 4

// appendCanonNumber appends the canonical form of a number: an optional '-', its significant
// digits without leading or trailing zeros, and "e<exp>" when the exponent is not zero, so
// 100, 1e2 and 100.0 are all "1e2" and 0.5 is "5e-1". Zero is "0" (-0 too: a sampling
// parameter cannot tell them apart). Digits are copied, never converted, so big integers stay
// exact.
func appendCanonNumber(dst, b []byte, n numParts) ([]byte, error) {
	exp := 0
	if n.es < n.ee {
		s := n.es
		neg := false
		if b[s] == '+' || b[s] == '-' {
			neg = b[s] == '-'
			s++
		}
		for s < n.ee-1 && b[s] == '0' {
			s++
		}
		if n.ee-s > maxExpDigits {
			return dst, errSyntax
		}
		for ; s < n.ee; s++ {
			exp = exp*10 + int(b[s]-'0')
		}
		if neg {
			exp = -exp
		}
	}
	// The digit string is b[n.is:n.ie] followed by b[n.fs:n.fe]; value = digits * 10^(exp-frac).
	exp -= n.fe - n.fs
	// Leading zeros.
	first, firstFrac := n.is, false
	for first < n.ie && b[first] == '0' {
		first++
	}
	if first == n.ie {
		first, firstFrac = n.fs, true
		for first < n.fe && b[first] == '0' {
			first++
		}
		if first == n.fe {
			return append(dst, '0'), nil
		}
	}
	// Trailing zeros.
	last, lastFrac := n.fe, true
	if n.fs == n.fe || allZero(b[n.fs:n.fe]) {
		exp += n.fe - n.fs
		last, lastFrac = n.ie, false
	}
	start := n.fs
	if !lastFrac {
		start = n.is
	}
	if firstFrac {
		start = first
	}
	for last > start && b[last-1] == '0' {
		last--
		exp++
	}
	if n.neg {
		dst = append(dst, '-')
	}
	if firstFrac || !lastFrac {
		dst = append(dst, b[first:last]...)
	} else {
		dst = append(dst, b[first:n.ie]...)
		dst = append(dst, b[n.fs:last]...)
	}
	if exp != 0 {
		dst = append(dst, 'e')
		dst = strconv.AppendInt(dst, int64(exp), 10)
	}
	return dst, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}
