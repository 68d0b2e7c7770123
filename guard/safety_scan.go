package guard

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unicode/utf8"
)

// Base64 and hex segments at least this long are decoded and scanned too.
const minEncoded = 16

// Byte classes of encoded segments.
const (
	encB64 = 1 << iota // A-Z a-z 0-9 + / - _
	encHex             // 0-9 a-f A-F
)

var encClass, b64Value [256]uint8

func init() {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i, c := range []byte(alphabet) {
		encClass[c] = encB64
		b64Value[c] = uint8(i)
	}
	encClass['-'], b64Value['-'] = encB64, 62 // URL-safe
	encClass['_'], b64Value['_'] = encB64, 63
	for _, c := range []byte("0123456789abcdefABCDEF") {
		encClass[c] |= encHex
	}
}

// encRun is a run of base64 or hex characters and the decoder behind it.
type encRun struct {
	n     int    // characters in the run
	start int    // input offset of the run, once n >= minEncoded
	acc   uint32 // bits not yet decoded
	nacc  uint8
	dec   int  // bytes decoded
	skip  bool // not worth decoding
	lane  normLane
}

// Symbols a scanner buffers before it walks them: more for Check, which sees whole texts,
// than for a stream, which sees a few bytes at a time and walks at every write.
const (
	checkBlock  = 4096
	streamBlock = 512
)

// safetyScanner is the state of one scan: a buffered lane for the text, a direct lane for
// each kind of encoded segment being decoded, and what the matching has remembered.
type safetyScanner struct {
	sf       *Safety
	out      []SafetyMatch
	pos      int    // input offset of the next byte
	cur      []byte // the piece feed is scanning, which starts at offset curBase
	curBase  int
	tail     [minEncoded]byte // the input bytes before cur, by offset mod minEncoded
	hitStart int              // input offset of the earliest match start reported since it was last cleared; -1 none
	last     struct {
		lane  *normLane
		rule  int32
		start int
	} // the latest match, so that one rule at one start is reported once
	main     normLane
	b64, hex encRun

	// Matches inside encoded segments wait here, stamped with how many symbols the main lane
	// had emitted, until the walk of the main lane reaches that point.
	inner    []SafetyMatch
	stamps   []int
	walkOuts []walkOut // outputs of the walk, in order
}

// newScanner returns a scanner whose main lane buffers up to block symbols.
func (s *Safety) newScanner(block int) *safetyScanner {
	sc := &safetyScanner{sf: s}
	l := &sc.main
	l.buffered = true
	l.sym, l.span = make([]byte, block), make([]uint64, block)
	n := 3 * len(s.rules)
	latest := make([]latestHit, 3*n) // one allocation for the three lanes
	sc.main.latest, sc.b64.lane.latest, sc.hex.lane.latest = latest[:n:n], latest[n:2*n:2*n], latest[2*n:]
	return sc
}

func (s *safetyScanner) reset() {
	s.pos, s.hitStart = 0, -1
	s.last.lane = nil
	s.main.reset(s.sf.start)
	s.b64.n, s.hex.n = 0, 0
	s.inner, s.stamps = s.inner[:0], s.stamps[:0]
}

// letters8 returns how many of the first (up to) eight bytes of p are ASCII letters, and
// those bytes little-endian in x.
func letters8(p []byte) (int, uint64) {
	var x uint64
	if len(p) >= 8 {
		x = binary.LittleEndian.Uint64(p)
	} else {
		for k := len(p) - 1; k >= 0; k-- {
			x = x<<8 | uint64(p[k])
		}
	}
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	y := (x | 0x20*ones) &^ highs // each byte folded to lower case, without its high bit
	isLetter := (y + 0x1f*ones) &^ (y + 0x05*ones) &^ x & highs
	return bits.TrailingZeros64(^isLetter&highs) >> 3, x
}

// asciiLetter maps A-Z and a-z to a-z, everything else to 0.
var asciiLetter [256]byte

func init() {
	for c := 'a'; c <= 'z'; c++ {
		asciiLetter[c], asciiLetter[c-'a'+'A'] = byte(c), byte(c)
	}
}

// feed scans the next piece of input. The main lane's symbols are buffered; the caller
// flushes them when it needs the matches.
func (s *safetyScanner) feed(p []byte) {
	l, base := &s.main, s.pos
	s.cur, s.curBase = p, base
	i := 0
	if l.npb > 0 {
		i = l.continueRune(s, p) // continuation bytes: no encoded run to track
	}
	// The hot paths keep these in registers; they are written back before anything else
	// reads them.
	b64n := s.b64.n
	sym, span, m := l.sym, l.span, l.m
	for i < len(p) {
		if plainClass[p[i]] != plainOther && l.leet == 0 && !l.curHeld && l.k == 0 && b64n < minEncoded {
			// The hottest path: plain ASCII prose, in a loop of its own.
			l.m, s.b64.n = m, b64n
			for {
				i = s.plainRun(p, i, base)
				if i == len(p) || l.m+plainRoom <= len(l.sym) {
					break
				}
				s.flush()
			}
			m, b64n = l.m, s.b64.n
			if i == len(p) {
				break
			}
		}
		b := p[i]
		if asciiLetter[b] != 0 && l.leet == 0 && !l.curHeld && (l.tok != 0 || l.k == 0) {
			// Hot path: a word of ASCII letters outside any letter-spaced run goes straight
			// to the buffer, eight bytes at a time. Only its first and last letters get their
			// input spans: every pattern is whole tokens between spaces, so a match (and the
			// earliest a partial match may start) is read from the spans of a token's first
			// and last symbols only, and a token is one run of this loop or ends or starts
			// in the other paths, which record every symbol.
			for {
				start, m0 := i, m
				if m+8 > len(sym) {
					l.m = m
					s.flush()
					m0, m = l.m, l.m
				}
				span[m] = packSpan(base+i, base+i+1)
				for {
					if m+8 > len(sym) {
						l.m = m
						s.flush()
						m0, m = m0-(m-l.m), l.m
					}
					k, x := letters8(p[i:])
					x |= 0x2020202020202020
					binary.LittleEndian.PutUint64(sym[m:], x)
					if k > 0 { // the last letter, from the register rather than reloaded
						l.prev = byte(x >> (8*k - 8))
					}
					m, i = m+k, i+k
					if k < 8 {
						break
					}
				}
				span[m-1] = packSpan(base+i-1, base+i)
				n := i - start
				if b64n+n >= minEncoded {
					// The word makes a base64 run long enough to decode: decode its letters one
					// by one, each when the symbols before it have been emitted.
					for k := start + max(0, minEncoded-1-b64n); k < i; k++ {
						l.m, s.pos, s.b64.n = m0+k-start, base+k, b64n+k-start+1
						s.encoded(p[k])
					}
					l.m = m
				}
				b64n += n
				l.tok = uint8(min(int(l.tok)+n, 2))
				l.lastSpace, l.slash = false, false
				if l.tok == 2 && i < len(p) && p[i] == ' ' && b64n < minEncoded {
					// The space after a word of two or more letters, as the separator path below
					// would take it; the flush above left room.
					sym[m], span[m] = ' ', packSpan(base+i, base+i+1)
					m, i, b64n = m+1, i+1, 0
					l.tok, l.lastSpace = 0, true
					if i < len(p) && asciiLetter[p[i]] != 0 {
						continue // the next word, which the conditions above let in too
					}
				}
				break
			}
			continue
		}
		if encClass[b] != 0 {
			if b64n++; b64n >= minEncoded {
				l.m, s.pos, s.b64.n = m, base+i, b64n
				s.encoded(b)
				m = l.m
			}
		} else if b64n > 0 {
			if b64n >= minEncoded {
				l.m, s.pos, s.b64.n = m, base+i, b64n
				s.endRuns()
				m = l.m
			}
			b64n = 0
		}
		if b >= utf8.RuneSelf {
			l.m = m
			if !utf8.FullRune(p[i:]) {
				l.savePartial(p[i:], base+i)
				break
			}
			r, size := utf8.DecodeRune(p[i:])
			l.event(s, foldRune(r), r, base+i, base+i+size)
			m = l.m
			i += size
			continue
		}
		e := &foldTable[b]
		if e.kind == kDigit && l.leet == 0 && i+1 < len(p) && p[i+1] < utf8.RuneSelf && foldTable[p[i+1]].kind != kDrop {
			// A digit whose next byte is here: settle its leetspeak reading now rather than
			// hold it for the next event, as event and resolveLeet would.
			c := e.s[0]
			if e.s[1] != 0 && (l.tok > 0 && isLetter(l.prev) || foldTable[p[i+1]].kind == kWord) {
				c = e.s[1]
			}
			l.slash = false
			l.m = m
			l.word(s, c, base+i, base+i+1)
			m = l.m
			i++
			continue
		}
		if (e.kind == kSep || e.kind == kSlash && !l.slash) && l.leet == 0 && l.k == 0 && l.tok != 1 {
			// A word of two or more letters ends, or a separator follows one: at most one
			// space goes to the buffer.
			l.tok = 0
			if !l.lastSpace {
				if m == len(sym) {
					l.m = m
					s.flush()
					m = l.m
				}
				sym[m], span[m] = ' ', packSpan(base+i, base+i+1)
				m++
				l.lastSpace = true
			}
		} else {
			l.m = m
			l.event(s, *e, rune(b), base+i, base+i+1)
			m = l.m
		}
		i++
	}
	l.m = m
	s.b64.n = b64n
	s.pos = base + len(p)
	// Keep the last bytes: an encoded run that reaches minEncoded in the next piece is
	// decoded from its start.
	for k := max(0, len(p)-(minEncoded-1)); k < len(p); k++ {
		s.tail[(base+k)&(minEncoded-1)] = p[k]
	}
	s.cur = nil
}

// finish ends the input and walks what is left.
func (s *safetyScanner) finish() {
	if s.b64.n >= minEncoded {
		s.endRuns()
	}
	s.b64.n = 0
	s.main.end(s, s.pos)
	s.flush()
	s.settle(&s.main, math.MaxInt)
}

// histByte returns the input byte at offset k, one of the last minEncoded.
func (s *safetyScanner) histByte(k int) byte {
	if k >= s.curBase && s.cur != nil {
		return s.cur[k-s.curBase]
	}
	return s.tail[k&(minEncoded-1)]
}

// encoded takes character b at offset s.pos of a base64 run at least minEncoded long. The
// first time, the run so far is decoded from the start. A hex run lies inside a base64 run
// (its alphabet is a subset), so hex runs are tracked here too.
func (s *safetyScanner) encoded(b byte) {
	r, h := &s.b64, &s.hex
	hex := encClass[b]&encHex != 0
	if r.n == minEncoded {
		r.start = s.pos - (minEncoded - 1)
		s.startRun(r)
		h.n = 0
		// Base64 of text has capitals or digits in any 16 characters (every other
		// character of a group of four encodes a byte's top bits); a run without, such as a
		// path or a lower-case identifier, is not decoded.
		r.skip = !isUpperOrDigit(b)
		for k := r.start; k < s.pos; k++ {
			c := s.histByte(k)
			r.skip = r.skip && !isUpperOrDigit(c)
			if encClass[c]&encHex != 0 {
				h.n++
			} else {
				h.n = 0
			}
		}
		if !r.skip {
			for k := r.start; k < s.pos; k++ {
				s.decode(r, s.histByte(k), false)
			}
		}
	}
	if !r.skip {
		s.decode(r, b, false)
	}
	switch {
	case !hex:
		if h.n >= minEncoded {
			s.endRun(h, true)
		}
		h.n = 0
	case h.n+1 < minEncoded:
		h.n++
	case h.n+1 == minEncoded:
		h.n++
		h.start = s.pos - (minEncoded - 1)
		s.startRun(h)
		for k := h.start; k < s.pos; k++ {
			s.decode(h, s.histByte(k), true)
		}
		s.decode(h, b, true)
	default:
		h.n++
		s.decode(h, b, true)
	}
}

func (s *safetyScanner) startRun(r *encRun) {
	r.acc, r.nacc, r.dec, r.skip = 0, 0, 0, false
	r.lane.reset(s.sf.start)
}

// endRuns ends the base64 run at s.pos, and the hex run inside it.
func (s *safetyScanner) endRuns() {
	if s.hex.n >= minEncoded {
		s.endRun(&s.hex, true)
	}
	s.hex.n = 0
	s.endRun(&s.b64, false)
}

func (s *safetyScanner) decode(r *encRun, b byte, hex bool) {
	var out [3]byte
	if hex {
		v := b - '0'
		if v > 9 {
			v = b | 0x20 - 'a' + 10
		}
		r.acc = r.acc<<4 | uint32(v)
		if r.nacc++; r.nacc < 2 {
			return
		}
		out[0] = byte(r.acc)
		s.decoded(r, out[:1])
		return
	}
	r.acc = r.acc<<6 | uint32(b64Value[b])
	if r.nacc++; r.nacc < 4 {
		return
	}
	out[0], out[1], out[2] = byte(r.acc>>16), byte(r.acc>>8), byte(r.acc)
	s.decoded(r, out[:])
}

func (s *safetyScanner) decoded(r *encRun, p []byte) {
	r.acc, r.nacc = 0, 0
	r.lane.feedPlain(s, p, r.dec)
	r.dec += len(p)
}

func isUpperOrDigit(c byte) bool { return c-'A' < 26 || c-'0' < 10 }

// endRun ends an encoded run: it is decoded to its last bits and its lane ended.
func (s *safetyScanner) endRun(r *encRun, hex bool) {
	if r.n >= minEncoded && !r.skip {
		if !hex && r.nacc >= 2 { // unpadded tail: 2 or 3 characters make 1 or 2 bytes
			var out [2]byte
			k := int(r.nacc) - 1
			acc := r.acc << (6 * (4 - r.nacc))
			out[0], out[1] = byte(acc>>16), byte(acc>>8)
			s.decoded(r, out[:k])
		}
		r.lane.end(s, r.dec)
		s.settle(&r.lane, math.MaxInt)
	}
	r.n = 0
}

// earliest returns the offset of the first input byte that a match not yet complete may
// still include. The main lane must have been flushed.
func (s *safetyScanner) earliest() int {
	l := &s.main
	e := l.earliest(s.sf, s.pos)
	for _, p := range l.pending {
		e = min(e, p.h.st)
	}
	// A phrase still to come may pair with a hit up to its reach words before the phrase's
	// first word, which is the next word or, for one the automaton is already reading, a
	// word or more back, or further for a phrase matched in segments whose first are in.
	first := l.words - l.partialWords(s.sf)
	for k := 1; k <= min(l.nhits, hitRing); k++ {
		o := &l.hits[(l.nhits-k)&(hitRing-1)]
		if first-1-o.w1 > s.sf.maxReach {
			break // hits are in word order: older ones are out of reach too
		}
		reach := 0 // a segment joins the next word only
		if o.key&0xff == 0 {
			reach = int(s.sf.phrases[o.key>>8].reach)
		}
		if first-1-o.w1 <= reach {
			e = min(e, o.st)
			if o.key&0xff != 0 {
				first = min(first, o.w0) // a segment held: the phrase to come starts at it
			}
		}
	}
	for _, r := range [...]*encRun{&s.b64, &s.hex} {
		if len(r.lane.pending) > 0 {
			e = min(e, r.start)
		}
	}
	if r := &s.b64; r.n >= minEncoded && r.skip {
	} else if r.n >= minEncoded {
		e = min(e, r.start+r.lane.earliest(s.sf, r.dec)/3*4)
	} else if r.n > 0 {
		e = min(e, s.pos-r.n)
	}
	if r := &s.hex; r.n >= minEncoded {
		e = min(e, r.start+r.lane.earliest(s.sf, r.dec)*2)
	} else if r.n > 0 {
		e = min(e, s.pos-r.n)
	}
	return e
}
