package guard

import (
	"sync"
	"unicode/utf8"
)

// Normalised text is what safety rules match against: lower-case ASCII letters and digits in
// tokens separated by single spaces, plus the delimiter marks < > [ ] | (and / right after <
// or [) as tokens of their own. Compatibility forms, accents and look-alike letters fold to
// ASCII, invisible characters go, every other character separates tokens.

// Kinds of a folded rune.
const (
	kSep   uint8 = iota // separates tokens: spaces, punctuation, unmapped letters
	kWord               // one to three folded letters, in s[:n]
	kDigit              // digit s[0]; s[1] is its leetspeak letter, or 0
	kAt                 // '@': "a" inside a word, else a separator
	kMark               // delimiter mark s[0]
	kSlash              // '/': a mark right after < or [, else a separator
	kDrop               // invisible: zero-width, format and control characters, combining marks
)

// foldEntry is what one rune becomes.
type foldEntry struct {
	kind uint8
	n    uint8
	s    [3]byte
}

// foldTable folds U+0000 to U+052F: ASCII, Latin-1, Latin Extended, Greek and Cyrillic.
var foldTable [0x530]foldEntry

var leetLetter = [10]byte{0: 'o', 1: 'i', 3: 'e', 4: 'a', 5: 's', 7: 't'}

func letterEntry(s string) foldEntry {
	e := foldEntry{kind: kWord, n: uint8(len(s))}
	copy(e.s[:], s)
	return e
}

func digitEntry(d byte) foldEntry {
	return foldEntry{kind: kDigit, n: 1, s: [3]byte{d, leetLetter[d-'0']}}
}

func init() {
	for r := range foldTable {
		switch {
		case r < 0x20 && r != '\t' && r != '\n' && r != '\v' && r != '\f' && r != '\r',
			r == 0x7f, r >= 0x80 && r < 0xa0 && r != 0x85, r == 0xad, r == 0x34f,
			r >= 0x300 && r < 0x370, r >= 0x483 && r < 0x48a:
			foldTable[r].kind = kDrop
		case r >= 'a' && r <= 'z':
			foldTable[r] = letterEntry(string(rune(r)))
		case r >= 'A' && r <= 'Z':
			foldTable[r] = letterEntry(string(rune(r + 'a' - 'A')))
		case r >= '0' && r <= '9':
			foldTable[r] = digitEntry(byte(r))
		}
	}
	foldTable['@'] = foldEntry{kind: kAt, n: 1, s: [3]byte{'@', 'a'}}
	for _, c := range []byte("<>[]|") {
		foldTable[c] = foldEntry{kind: kMark, n: 1, s: [3]byte{c}}
	}
	foldTable['/'] = foldEntry{kind: kSlash}
	foldTable[0xb2], foldTable[0xb3], foldTable[0xb9] = digitEntry('2'), digitEntry('3'), digitEntry('1')
	foldTable[0xaa], foldTable[0xba] = letterEntry("a"), letterEntry("o")
	// Latin-1 letters U+00C0-U+00FF ("-" for × and ÷), then Latin Extended-A U+0100-U+017F
	// as runs of one base letter.
	latin1 := []string{"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
		"d", "n", "o", "o", "o", "o", "o", "-", "o", "u", "u", "u", "u", "y", "th", "ss"}
	for i, s := range latin1 {
		if s == "-" {
			continue
		}
		foldTable[0xc0+i] = letterEntry(s)
		if s == "ss" {
			s = "y" // U+00FF ÿ
		}
		foldTable[0xe0+i] = letterEntry(s)
	}
	r := 0x100
	for _, run := range []struct {
		s string
		n int
	}{{"a", 6}, {"c", 8}, {"d", 4}, {"e", 10}, {"g", 8}, {"h", 4}, {"i", 10}, {"ij", 2}, {"j", 2},
		{"k", 3}, {"l", 10}, {"n", 9}, {"o", 6}, {"oe", 2}, {"r", 6}, {"s", 8}, {"t", 6}, {"u", 12},
		{"w", 2}, {"y", 3}, {"z", 6}, {"s", 1}} {
		for range run.n {
			foldTable[r] = letterEntry(run.s)
			r++
		}
	}
	// Look-alikes: Latin Extended-B and IPA, Greek, Cyrillic.
	for r, s := range map[rune]string{
		0x180: "b", 0x1c0: "l", 0x237: "j", 0x251: "a", 0x261: "g", 0x262: "g", 0x269: "i",
		0x26a: "i", 0x274: "n", 0x280: "r", 0x28f: "y", 0x299: "b", 0x29c: "h", 0x29f: "l",
		0x391: "a", 0x392: "b", 0x395: "e", 0x396: "z", 0x397: "h", 0x399: "i", 0x39a: "k",
		0x39c: "m", 0x39d: "n", 0x39f: "o", 0x3a1: "p", 0x3a4: "t", 0x3a5: "y", 0x3a7: "x",
		0x3b1: "a", 0x3b2: "b", 0x3b3: "y", 0x3b5: "e", 0x3b7: "n", 0x3b9: "i", 0x3ba: "k",
		0x3bd: "v", 0x3bf: "o", 0x3c1: "p", 0x3c4: "t", 0x3c5: "u", 0x3c7: "x", 0x3c9: "w",
		0x405: "s", 0x406: "i", 0x407: "i", 0x408: "j", 0x401: "e", 0x410: "a", 0x412: "b",
		0x415: "e", 0x41a: "k", 0x41c: "m", 0x41d: "h", 0x41e: "o", 0x420: "p", 0x421: "c",
		0x422: "t", 0x423: "y", 0x425: "x", 0x430: "a", 0x432: "b", 0x435: "e", 0x43a: "k",
		0x43c: "m", 0x43d: "h", 0x43e: "o", 0x43f: "n", 0x440: "p", 0x441: "c", 0x442: "t",
		0x443: "y", 0x445: "x", 0x44c: "b", 0x451: "e", 0x455: "s", 0x456: "i", 0x457: "i",
		0x458: "j", 0x4bb: "h", 0x4cf: "l", 0x501: "d", 0x51b: "q", 0x51d: "w",
	} {
		foldTable[r] = letterEntry(s)
	}
}

// extraFold maps look-alikes above U+052F that are not in a regular block.
var extraFold = map[rune]string{
	0x570: "h", 0x578: "n", 0x57d: "u", 0x585: "o", // Armenian
	0x1d00: "a", 0x1d04: "c", 0x1d05: "d", 0x1d07: "e", 0x1d0a: "j", 0x1d0b: "k", 0x1d0d: "m",
	0x1d0f: "o", 0x1d18: "p", 0x1d1b: "t", 0x1d1c: "u", 0x1d20: "v", 0x1d21: "w", 0x1d22: "z",
	0x2071: "i", 0x207f: "n", 0x2102: "c", 0x210a: "g", 0x210b: "h", 0x210c: "h", 0x210d: "h",
	0x210e: "h", 0x2110: "i", 0x2111: "i", 0x2112: "l", 0x2113: "l", 0x2115: "n", 0x2119: "p",
	0x211a: "q", 0x211b: "r", 0x211c: "r", 0x211d: "r", 0x2124: "z", 0x212c: "b", 0x212f: "e",
	0x2130: "e", 0x2131: "f", 0x2133: "m", 0x2134: "o", 0x2139: "i",
	0xfb00: "ff", 0xfb01: "fi", 0xfb02: "fl", 0xfb03: "ffi", 0xfb04: "ffl", 0xfb05: "st", 0xfb06: "st",
}

// foldRune folds a rune outside foldTable.
func foldRune(r rune) foldEntry {
	switch {
	case r < rune(len(foldTable)):
		return foldTable[r]
	case r == utf8.RuneError:
		return foldEntry{}
	case r >= 0x2e80 && r < 0xfb00: // CJK, Hangul: separators (U+3164 is an invisible filler)
		if r == 0x3164 {
			return foldEntry{kind: kDrop}
		}
		return foldEntry{}
	case r >= 0xff01 && r <= 0xff5e: // fullwidth ASCII
		return foldTable[r-0xff01+0x21]
	case r >= 0x1d400 && r <= 0x1d6a3: // mathematical alphanumerics: 13 alphabets of A-Z a-z
		return letterEntry(string(rune('a' + (r-0x1d400)%52%26)))
	case r >= 0x1d7ce && r <= 0x1d7ff:
		return digitEntry(byte('0' + (r-0x1d7ce)%10))
	case r >= 0x24b6 && r <= 0x24e9: // circled letters
		return letterEntry(string(rune('a' + (r-0x24b6)%26)))
	case r >= 0x249c && r <= 0x24b5: // parenthesized letters
		return letterEntry(string(rune('a' + r - 0x249c)))
	case r >= 0x1f130 && r <= 0x1f189: // squared, circled, negative letters
		return letterEntry(string(rune('a' + (r-0x1f130)%32%26)))
	case r >= 0x1f1e6 && r <= 0x1f1ff: // regional indicators
		return letterEntry(string(rune('a' + r - 0x1f1e6)))
	case r >= 0x2070 && r <= 0x2079 && r != 0x2071 && r != 0x2072 && r != 0x2073:
		return digitEntry(byte('0' + r - 0x2070))
	case r >= 0x2080 && r <= 0x2089:
		return digitEntry(byte('0' + r - 0x2080))
	case invisible(r):
		return foldEntry{kind: kDrop}
	}
	if r < 0x2140 || r >= 0xfb00 && r <= 0xfb06 {
		if s, ok := extraFold[r]; ok {
			return letterEntry(s)
		}
	}
	return foldEntry{}
}

// invisible reports whether r is a zero-width, format, tag or combining character.
func invisible(r rune) bool {
	switch {
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2060 && r <= 0x206f,
		r >= 0x180b && r <= 0x180f, r >= 0xfe00 && r <= 0xfe0f, r >= 0xfe20 && r <= 0xfe2f,
		r >= 0x1ab0 && r <= 0x1aff, r >= 0x1dc0 && r <= 0x1dff, r >= 0x20d0 && r <= 0x20ff,
		r >= 0xe0000 && r <= 0xe007f, r >= 0xe0100 && r <= 0xe01ef, r >= 0x1d173 && r <= 0x1d17a,
		r >= 0x1bca0 && r <= 0x1bca3, r >= 0xfff9 && r <= 0xfffb,
		r == 0xfeff, r == 0x61c, r == 0x115f, r == 0x1160, r == 0x17b4, r == 0x17b5, r == 0xffa0:
		return true
	}
	return false
}

// Normalize appends the normalised form of src to dst: the text safety rules see. Tokens are
// separated by single spaces, with none at either end.
func Normalize(dst, src []byte) []byte {
	l := normPool.Get().(*normLane)
	dst = l.normalize(dst, src)
	l.buf = nil
	normPool.Put(l)
	return dst
}

var normPool = sync.Pool{New: func() any { return &normLane{collect: true} }}

// normalize is Normalize with a lane of the caller's: l must have collect set.
func (l *normLane) normalize(dst, src []byte) []byte {
	l.buf = dst
	l.reset(0)
	l.feedPlain(nil, src, 0)
	l.end(nil, len(src))
	n := len(l.buf)
	if n > len(dst) && l.buf[n-1] == ' ' {
		n--
	}
	return l.buf[:n]
}

// ringSize bounds the length of a normalised pattern, spaces at both ends included.
const (
	ringSize = 128
	ringMask = ringSize - 1
	hitRing  = 64 // phrase hits a lane remembers for segments, near and unless rules
)

// normItem is a symbol held back while the normaliser decides whether a separator goes.
type normItem struct {
	c      byte
	st, en int
}

// seenAt is a phrase (key phrase<<8) or the first segments of one (key phrase<<8 | seg+1)
// seen recently: its first and last word and its input offsets.
type seenAt struct {
	key    int32
	w0, w1 int
	st, en int
}

// normLane normalises one text and runs the automaton over it. It is a push transducer:
// feeding a text in pieces gives the same symbols, offsets and matches as feeding it whole,
// because every decision that needs what comes next is held in the lane until it arrives.
//
// Letter-spaced words ("i g n o r e", "i.g.n.o.r.e") are joined: a run of two or more
// one-character tokens, each pair separated by exactly one separator character, the same
// one throughout, becomes one token.
type normLane struct {
	state     uint32        // automaton state id (see Safety)
	n         int           // symbols the automaton has taken
	rs, re    [ringSize]int // a direct lane: input spans of the last ringSize symbols
	words     int           // spaces taken, 1 for the one before the text: the next token's position
	lastSpace bool          // the last symbol emitted is a space

	pb    [utf8.UTFMax]byte // a rune split across writes
	npb   uint8
	pbOff int

	leet           byte // a digit or '@' waiting for the next rune to say whether it is a letter
	leetSt, leetEn int
	prev           byte // last word symbol of the current token

	tok, k       uint8 // length of the current token (0, 1, 2+); one-char tokens in a row (0-2+)
	gap, curHeld bool
	gapRune      rune
	gapSt, gapEn int
	chainSep     rune
	held         [2]normItem
	nheld        uint8
	slash        bool // the last mark was < or [

	hits  [hitRing]seenAt
	nhits int
	// Matches of rules with unless_next phrases that wait for the words after them.
	pending []pendingMatch
	// latest[rule*3+role]: see phrase. A scanner's lanes have one entry per rule and role;
	// gen goes up at each reset, which makes every entry stale without clearing them.
	latest []latestHit
	gen    uint32

	// A buffered lane (a scanner's main lane) keeps its symbols and their input spans in a
	// block that the scanner walks a token at a time; a direct lane (a decoded segment's)
	// walks each symbol as it comes.
	buffered bool
	sym      []byte
	span     []uint64 // input span of each symbol: offset<<8 | length (see packSpan)
	m        int      // symbols in the block
	base     int      // lane index of sym[0]
	walked   int      // symbols the automaton has taken; state is the state after them

	collect bool // Normalize: symbols go to buf, no automaton
	buf     []byte
}

func (l *normLane) reset(start uint32) {
	l.gen++
	l.state, l.n, l.words, l.lastSpace = start, 0, 1, true
	l.m, l.base, l.walked = 0, 0, 0
	l.pending = l.pending[:0]
	l.npb, l.leet, l.prev, l.tok, l.k, l.gap, l.curHeld, l.nheld, l.slash, l.nhits =
		0, 0, 0, 0, 0, false, false, 0, false, 0
}

// feedPlain normalises p, which starts at offset base, symbol by symbol.
func (l *normLane) feedPlain(s *safetyScanner, p []byte, base int) {
	i := 0
	if l.npb > 0 {
		i = l.continueRune(s, p)
	}
	for i < len(p) {
		b := p[i]
		if b < utf8.RuneSelf {
			l.event(s, foldTable[b], rune(b), base+i, base+i+1)
			i++
			continue
		}
		if !utf8.FullRune(p[i:]) {
			l.savePartial(p[i:], base+i)
			return
		}
		r, n := utf8.DecodeRune(p[i:])
		l.event(s, foldRune(r), r, base+i, base+i+n)
		i += n
	}
}

// savePartial keeps the start of a rune that the next write completes.
func (l *normLane) savePartial(p []byte, off int) {
	l.npb = uint8(copy(l.pb[:], p))
	l.pbOff = off
}

// continueRune completes a saved partial rune from p and returns how many bytes it used.
// A byte that cannot continue it ends it, as utf8.DecodeRune would on the whole text.
func (l *normLane) continueRune(s *safetyScanner, p []byte) int {
	i := 0
	for i < len(p) && l.npb > 0 {
		if p[i]&0xc0 != 0x80 {
			l.flushPartial(s)
			return i
		}
		l.pb[l.npb] = p[i]
		l.npb++
		i++
		if utf8.FullRune(l.pb[:l.npb]) {
			l.flushPartial(s)
		}
	}
	return i
}

// flushPartial decodes the saved bytes: one rune, or one RuneError per byte.
func (l *normLane) flushPartial(s *safetyScanner) {
	p, off := l.pb[:l.npb], l.pbOff
	l.npb = 0
	for len(p) > 0 {
		r, n := utf8.DecodeRune(p)
		l.event(s, foldRune(r), r, off, off+n)
		p, off = p[n:], off+n
	}
}

// event handles one folded rune spanning [st, en) of the input.
func (l *normLane) event(s *safetyScanner, e foldEntry, r rune, st, en int) {
	if e.kind == kDrop {
		return
	}
	if l.leet != 0 {
		l.resolveLeet(s, e.kind == kWord)
	}
	switch e.kind {
	case kWord:
		l.slash = false
		for i := range e.n {
			l.word(s, e.s[i], st, en)
		}
	case kDigit, kAt:
		l.slash = false
		switch {
		case e.s[1] == 0:
			l.word(s, e.s[0], st, en)
		case l.tok > 0 && isLetter(l.prev):
			l.word(s, e.s[1], st, en)
		default:
			l.leet, l.leetSt, l.leetEn = e.s[0], st, en
		}
	case kMark:
		l.mark(s, e.s[0], st, en)
		l.slash = e.s[0] == '<' || e.s[0] == '['
	case kSlash:
		if l.slash {
			l.mark(s, '/', st, en)
			l.slash = false
			return
		}
		l.sep(s, r, st, en)
	default:
		l.sep(s, r, st, en)
	}
}

func isLetter(c byte) bool { return c-'a' < 26 }

// resolveLeet settles a held digit or '@' now that the next rune is known.
func (l *normLane) resolveLeet(s *safetyScanner, nextLetter bool) {
	c := l.leet
	l.leet = 0
	switch {
	case nextLetter && c == '@':
		l.word(s, 'a', l.leetSt, l.leetEn)
	case nextLetter:
		l.word(s, leetLetter[c-'0'], l.leetSt, l.leetEn)
	case c == '@':
		l.sep(s, '@', l.leetSt, l.leetEn)
	default:
		l.word(s, c, l.leetSt, l.leetEn)
	}
}

// word handles one word symbol.
func (l *normLane) word(s *safetyScanner, c byte, st, en int) {
	l.prev = c
	switch l.tok {
	case 0:
		l.tok = 1
		if l.k > 0 {
			if l.gap && (l.k == 1 || l.gapRune == l.chainSep) {
				// Maybe the next letter of a letter-spaced word: hold the separator and c.
				if l.k == 1 {
					l.chainSep = l.gapRune
				}
				l.hold(' ', l.gapSt, l.gapEn)
				l.hold(c, st, en)
				l.gap, l.curHeld = false, true
				return
			}
			l.endChain(s)
		}
		l.emit(s, c, st, en)
	case 1:
		l.tok = 2
		if l.curHeld {
			l.curHeld = false
			l.flushHeld(s)
		}
		l.k = 0
		l.emit(s, c, st, en)
	default:
		l.emit(s, c, st, en)
	}
}

// completeToken ends the current token and moves the letter-spacing state on.
func (l *normLane) completeToken(s *safetyScanner) {
	switch {
	case l.tok != 1:
		l.k = 0
	case !l.curHeld:
		l.k = 1
	default: // a letter-spaced word: emit the held letter without the separator
		l.curHeld, l.k, l.nheld = false, 2, 0
		l.emit(s, l.held[1].c, l.held[1].st, l.held[1].en)
	}
	l.tok = 0
}

func (l *normLane) hold(c byte, st, en int) {
	l.held[l.nheld] = normItem{c, st, en}
	l.nheld++
}

// flushHeld emits the held symbols as ordinary text.
func (l *normLane) flushHeld(s *safetyScanner) {
	for _, it := range l.held[:l.nheld] {
		if it.c == ' ' {
			l.space(s, it.st, it.en)
		} else {
			l.emit(s, it.c, it.st, it.en)
		}
	}
	l.nheld = 0
}

// endChain ends a run of one-character tokens: what was held is ordinary text after all.
func (l *normLane) endChain(s *safetyScanner) {
	l.flushHeld(s)
	if l.gap {
		l.space(s, l.gapSt, l.gapEn)
		l.gap = false
	}
	l.k = 0
}

// sep handles one separator rune.
func (l *normLane) sep(s *safetyScanner, r rune, st, en int) {
	if l.tok > 0 {
		l.completeToken(s)
	}
	if l.k > 0 {
		if !l.gap {
			l.gap, l.gapRune, l.gapSt, l.gapEn = true, r, st, en
			return
		}
		l.endChain(s)
	}
	l.space(s, st, en)
}

// mark emits a delimiter mark as a token of its own.
func (l *normLane) mark(s *safetyScanner, c byte, st, en int) {
	if l.tok > 0 {
		l.completeToken(s)
	}
	if l.k > 0 {
		l.endChain(s)
	}
	l.space(s, st, st)
	l.emit(s, c, st, en)
	l.space(s, en, en)
}

// end finishes the text at offset at: whatever was held is settled and a final space ends
// the last token.
func (l *normLane) end(s *safetyScanner, at int) {
	if l.npb > 0 {
		l.flushPartial(s)
	}
	if l.leet != 0 {
		l.resolveLeet(s, false)
	}
	if l.tok > 0 {
		l.completeToken(s)
	}
	if l.k > 0 {
		l.endChain(s)
	}
	l.space(s, at, at)
}

func (l *normLane) space(s *safetyScanner, st, en int) {
	if !l.lastSpace {
		l.emit(s, ' ', st, en)
	}
}

// emit feeds one normalised symbol spanning [st, en) of the input to the automaton.
func (l *normLane) emit(s *safetyScanner, c byte, st, en int) {
	l.lastSpace = c == ' '
	switch {
	case l.buffered:
		if l.m == len(l.sym) {
			s.flush()
		}
		l.sym[l.m], l.span[l.m] = c, packSpan(st, en)
		l.m++
		return
	case l.collect:
		l.buf = append(l.buf, c)
		return
	}
	if l.lastSpace {
		l.words++
	}
	sf := s.sf
	v := sf.next(l.state, sf.cls[c])
	l.state = v &^ 1
	i := l.n & ringMask
	l.rs[i], l.re[i] = st, en
	l.n++
	if v&1 != 0 {
		s.report(l)
	}
}

// earliest returns the offset of the first input byte that a match not yet complete may
// still start at, or at when there is none.
func (l *normLane) earliest(sf *Safety, at int) int {
	e := at
	if d := int(sf.depth[sf.stateNum(l.state)]); d >= 2 {
		e = min(e, l.symSt(l.n-d+1))
	}
	if l.nheld > 0 {
		e = min(e, l.held[0].st)
	}
	if l.leet != 0 {
		e = min(e, l.leetSt)
	}
	if l.npb > 0 {
		e = min(e, l.pbOff)
	}
	return e
}

// partialWords returns how many words before the next one a match the automaton is reading
// started: the spaces among the symbols its state is into, less the one a pattern starts
// with. The lane is buffered (a scanner's main lane), its block walked.
func (l *normLane) partialWords(sf *Safety) int {
	k := 0
	for i := l.n - int(sf.depth[sf.stateNum(l.state)]) + 1; i < l.n; i++ {
		if l.sym[i-l.base] == ' ' {
			k++
		}
	}
	return k
}

// packSpan packs the input span [st, en) of a symbol, at most a rune long, for a buffered
// lane: one array and one store per symbol rather than two.
func packSpan(st, en int) uint64 { return uint64(st)<<8 | uint64(en-st) }

// symSt and symEn return the input span of the symbol with lane index i, one of the last
// ringSize taken.
func (l *normLane) symSt(i int) int {
	if l.buffered {
		return int(l.span[i-l.base] >> 8)
	}
	return l.rs[i&ringMask]
}

func (l *normLane) symEn(i int) int {
	if l.buffered {
		sp := l.span[i-l.base]
		return int(sp>>8 + sp&0xff)
	}
	return l.re[i&ringMask]
}
