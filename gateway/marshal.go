package gateway

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/gateway/jsonscan"
)

// marshalJSON appends v as JSON to dst. fastjson writes a string it did not parse (one the
// guard rewrote) with strconv.AppendQuote whenever it holds a quote, a backslash or a control
// character, and some of Go's escapes are not JSON: \a, \v, \xNN (a control character or a
// byte of invalid UTF-8) and \UNNNNNNNN (valyala/fastjson#86, #90). A prompt with a terminal
// colour code (ESC) and an e-mail address would reach the backend as invalid JSON, and a
// completion with one would break the client's parser. marshalJSON rewrites those escapes as
// encoding/json writes them: \u0007, \u000b, \u001b, \ufffd for a byte of invalid UTF-8, and a
// surrogate pair for a rune beyond the BMP.
func marshalJSON(dst []byte, v *fastjson.Value) []byte {
	start := len(dst)
	dst = v.MarshalTo(dst)
	return fixGoEscapes(dst, start)
}

// fixGoEscapes rewrites, in dst[start:], the escapes of Go string literals that JSON lacks (see
// marshalJSON); valid JSON is returned as it is. Outside strings JSON has no backslash, and
// inside one every backslash starts an escape, so the escapes are read left to right.
func fixGoEscapes(dst []byte, start int) []byte {
	i := start
	for {
		k := bytes.IndexByte(dst[i:], '\\')
		if k < 0 || i+k+1 >= len(dst) {
			return dst
		}
		i += k
		switch dst[i+1] {
		case 'a', 'v', 'x', 'U':
			return rewriteGoEscapes(dst, i)
		case 'u':
			i += 6
		default: // \" \\ \/ \b \f \n \r \t
			i += 2
		}
		if i >= len(dst) {
			return dst
		}
	}
}

// rewriteGoEscapes is fixGoEscapes from the first escape to rewrite, at dst[i]: the rest is
// copied aside and written back with the escapes replaced.
func rewriteGoEscapes(dst []byte, i int) []byte {
	rest := append([]byte(nil), dst[i:]...)
	dst = dst[:i]
	for j := 0; j < len(rest); {
		if rest[j] != '\\' || j+1 >= len(rest) {
			dst = append(dst, rest[j])
			j++
			continue
		}
		switch c := rest[j+1]; c {
		case 'a':
			dst = append(dst, `\u0007`...)
			j += 2
		case 'v':
			dst = append(dst, `\u000b`...)
			j += 2
		case 'x': // \xNN: a control character, DEL, or a byte of invalid UTF-8
			b, err := strconv.ParseUint(string(rest[j+2:min(j+4, len(rest))]), 16, 8)
			switch {
			case err != nil:
				dst = append(dst, rest[j:j+2]...) // not from AppendQuote: left as it was
				j += 2
				continue
			case b < utf8.RuneSelf:
				dst = appendUnicodeEscape(dst, rune(b))
			default:
				dst = append(dst, `\ufffd`...)
			}
			j += 4
		case 'U': // \UNNNNNNNN: a rune beyond the BMP that is not printable
			r, err := strconv.ParseUint(string(rest[j+2:min(j+10, len(rest))]), 16, 32)
			if err != nil || r > utf8.MaxRune {
				dst = append(dst, rest[j:j+2]...)
				j += 2
				continue
			}
			r -= 0x10000
			dst = appendUnicodeEscape(dst, rune(0xd800+(r>>10)))
			dst = appendUnicodeEscape(dst, rune(0xdc00+(r&0x3ff)))
			j += 10
		case 'u':
			dst = append(dst, rest[j:min(j+6, len(rest))]...)
			j += 6
		default:
			dst = append(dst, rest[j:j+2]...)
			j += 2
		}
	}
	return dst
}

func appendUnicodeEscape(dst []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(dst, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}

// replaceLoneSurrogates appends b to dst with each \u escape of a lone UTF-16 surrogate (a high
// one not followed by a low one, or a low one alone) replaced by \ufffd, and reports whether
// it found one; when not, dst is returned as it was. fastjson keeps such an escape as its six
// characters of text, and swallows the escape after a lone high surrogate: a body the guard
// marshals again would send a backslash and "ud800" as text, or lose the character that
// followed. encoding/json and the Python decoders read U+FFFD or the surrogate itself, never
// a backslash; \ufffd is what every one of them agrees on. Outside strings JSON has no
// backslash, and inside one every backslash starts an escape, so escapes are read left to
// right.
func replaceLoneSurrogates(dst, b []byte) ([]byte, bool) {
	if !hasSurrogateEscape(b) {
		return dst, false // the common case: no surrogate escape at all
	}
	start, copied, found := len(dst), 0, false
	for i := 0; ; {
		k := bytes.IndexByte(b[i:], '\\')
		if k < 0 || i+k+1 >= len(b) {
			break
		}
		i += k
		if b[i+1] != 'u' {
			i += 2
			continue
		}
		hi, ok := jsonscan.Hex4(b, i+2)
		switch {
		case !ok || hi < 0xd800 || hi >= 0xe000:
			i += 2 // not a surrogate (or not an escape the parser will accept)
			continue
		case hi < 0xdc00 && i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u':
			if lo, ok := jsonscan.Hex4(b, i+8); ok && lo >= 0xdc00 && lo < 0xe000 {
				i += 12 // a pair
				continue
			}
		}
		dst = append(dst, b[copied:i]...)
		dst = append(dst, `\ufffd`...)
		i += 6
		copied, found = i, true
	}
	if !found {
		return dst[:start], false
	}
	return append(dst, b[copied:]...), true
}

// parseJSON parses b with p, lone surrogate escapes read as U+FFFD (see
// replaceLoneSurrogates), with *scratch holding the copy that needs. b itself is not changed:
// it goes on as it came unless the guard marshals the parsed value again.
func parseJSON(p *fastjson.Parser, b []byte, scratch *[]byte) (*fastjson.Value, error) {
	if fixed, ok := replaceLoneSurrogates((*scratch)[:0], b); ok {
		*scratch = fixed
		b = fixed
	}
	return p.ParseBytes(b)
}

// hasSurrogateEscape reports whether b has a \uD... escape (a surrogate, paired or not): one
// pass over b, as stream chunks take it once each.
func hasSurrogateEscape(b []byte) bool {
	for {
		k := bytes.IndexByte(b, '\\')
		if k < 0 || k+2 >= len(b) {
			return false
		}
		if b[k+1] == 'u' && b[k+2]|0x20 == 'd' {
			return true
		}
		b = b[k+2:] // past the escape's second byte: "\\" is one escape
	}
}
