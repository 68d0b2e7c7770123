package guard

import (
	"encoding/binary"
	"unicode/utf8"
)

// Classes of an input byte for plainRun.
const (
	plainOther  uint8 = iota // anything plainRun leaves to feed's general paths
	plainLetter              // A-Z a-z
	plainSep                 // an ASCII separator outside the base64 alphabet: space, . , ( ...
	plainSepB64              // a separator in the base64 alphabet: + - _
	plainDigit               // 0-9
)

// plainClass classes the bytes for plainRun. It is spelled out rather than derived from
// foldTable and encClass, which other files' init functions fill; TestPlainClass checks that
// it agrees with them.
var plainClass [256]uint8

func init() {
	for b := range 0x80 {
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z':
			plainClass[b] = plainLetter
		case b == '+', b == '-', b == '_':
			plainClass[b] = plainSepB64
		case b >= '0' && b <= '9':
			plainClass[b] = plainDigit
		case b == '@', b == '/', b == '<', b == '>', b == '[', b == ']', b == '|',
			b < 0x20 && b != '\t' && b != '\n' && b != '\v' && b != '\f' && b != '\r', b == 0x7f:
			// plainOther
		default:
			plainClass[b] = plainSep
		}
	}
}

// checkPlainPrev makes plainRun check, as it starts, what it takes for l.prev (tests set it).
var checkPlainPrev = false

// plainRoom is the room in the block that plainRun wants before a word or separator: a word
// of up to minEncoded-1 letters, the eight-byte store that writes its last letters, a space.
const plainRoom = minEncoded + 8 + 1

// plainRun normalises the start of p[i:] while it is plain ASCII prose, words of letters and
// digits and the separators between them, and returns how far it got. It does what event,
// word and sep do with those bytes, in a loop small enough to keep its state in registers:
// letters go to the block lower-cased, a digit as itself or as the letter it stands for in
// leetspeak, a run of separators becomes one space. It stops at anything else: '@', a mark,
// '/', a control or non-ASCII byte, a digit whose next byte it cannot read yet, the
// separator after a one-character token unless a word of two letters or more follows (a
// letter-spaced word may start there), a byte that would make a base64 run long enough to
// decode, and where the block is too full for the next word. The caller has checked that no
// letter-spaced word, leetspeak digit or long base64 run is pending (see feed). It makes no
// calls, so that the compiler keeps its state in registers.
//
// As in feed's word path, only a word's first and last letters get their input spans: every
// pattern is whole tokens between spaces, so a match and the earliest a partial match may
// start are read from those spans only.
func (s *safetyScanner) plainRun(p []byte, i, base int) int {
	l := &s.main
	sym, span := l.sym, l.span[:len(l.sym)]
	// Only what the loop reads most is kept in locals; l.lastSpace and l.slash are written
	// where they change. With more locals than registers the compiler spilled them to the
	// stack and reloaded them around every word, which cost more than these stores. l.prev,
	// the last symbol of the current token, is not kept at all while the loop runs: with no
	// letter-spaced word or leetspeak digit held (see feed), a token's symbols go to the
	// block as they come, so while tok > 0 it is sym[m-1], and it is set from there on the
	// way out.
	m, tok, b64n := l.m, l.tok, s.b64.n
	if checkPlainPrev && tok > 0 && (m == 0 || sym[m-1] != l.prev) {
		panic("BUG: plainRun: the last symbol of the current token is not the last in the block")
	}
	for i < len(p) {
		if m+plainRoom > len(sym) { // the caller flushes
			break
		}
		switch plainClass[p[i]] {
		case plainLetter:
			for { // a word, and while one more follows after one space, that space and word
				start, j := i, m
				for {
					k, x := letters8(p[i:])
					x |= 0x2020202020202020
					binary.LittleEndian.PutUint64(sym[j:], x)
					j, i = j+k, i+k
					if k < 8 || i-start >= minEncoded {
						break
					}
				}
				n := i - start
				if b64n+n >= minEncoded { // feed decodes it
					i = start
					goto out
				}
				span[m], span[j-1] = packSpan(base+start, base+start+1), packSpan(base+i-1, base+i)
				m = j
				b64n += n
				tok = min(tok+uint8(min(n, 2)), 2)
				l.lastSpace, l.slash = false, false
				// One space after a word of two or more letters, then a letter: what the
				// separator case and the loop would do, without going round the switch.
				if tok != 2 || i+1 >= len(p) || p[i] != ' ' || plainClass[p[i+1]] != plainLetter || m+plainRoom > len(sym) {
					break
				}
				sym[m], span[m] = ' ', packSpan(base+i, base+i+1)
				m, i, b64n, tok = m+1, i+1, 0, 0
				l.lastSpace = true
			}
		case plainDigit:
			// As feed settles a digit whose next byte is here: a leetspeak letter inside a word
			// or before a letter, else the digit. A digit's every symbol gets its span.
			if i+1 == len(p) || p[i+1] >= utf8.RuneSelf || foldTable[p[i+1]].kind == kDrop || b64n+1 >= minEncoded {
				goto out
			}
			e := &foldTable[p[i]]
			c := e.s[0]
			if e.s[1] != 0 && (tok > 0 && isLetter(sym[m-1]) || foldTable[p[i+1]].kind == kWord) {
				c = e.s[1]
			}
			sym[m], span[m] = c, packSpan(base+i, base+i+1)
			m++
			b64n++
			tok = min(tok+1, 2)
			l.lastSpace, l.slash = false, false
			i++
		case plainSep, plainSepB64:
			// After a one-character token, a letter-spaced word ("i g n o r e") may start. It
			// does not when this one separator byte is followed by two letters, a word of two
			// or more ("a word"), and the general paths would end up where this path does.
			if tok == 1 && (i+2 >= len(p) || plainClass[p[i+1]] != plainLetter || plainClass[p[i+2]] != plainLetter) {
				goto out
			}
			if plainClass[p[i]] == plainSepB64 {
				if b64n+1 >= minEncoded {
					goto out
				}
				b64n++
			} else {
				b64n = 0
			}
			tok = 0
			if !l.lastSpace {
				sym[m], span[m] = ' ', packSpan(base+i, base+i+1)
				m++
				l.lastSpace = true
			}
			i++
		default:
			goto out
		}
	}
out:
	l.m, l.tok, s.b64.n = m, tok, b64n
	if tok > 0 {
		l.prev = sym[m-1]
	}
	return i
}
