package guard

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math/bits"
	"sync"
	"unsafe"
)

// PII detection follows Presidio's scheme without its cost: a table-driven pass stops only at
// trigger bytes (digits, '@', ':', ';', '<', '=', '-', '_', 'A', 'J'); each matcher then parses a candidate by
// hand, validates it (Luhn, mod-97, base58check, bech32, SSN ranges, calling codes, TLDs) and
// scores it, and nearby context words move weak scores over or under MinScore. No regexps.

// entity is the index of a PII entity type.
type entity uint8

const (
	eEmail entity = iota
	ePhone
	eCard
	eSSN
	eIBAN
	eIP
	eMAC
	eCrypto
	eURLCred
	eSecret
	numEntities
)

var entityNames = [numEntities]string{
	EntityEmail, EntityPhone, EntityCreditCard, EntitySSN, EntityIBAN,
	EntityIP, EntityMAC, EntityCrypto, EntityURLCredentials, EntitySecret,
}

// entityOf returns the index of a PII entity type name and whether it is one.
func entityOf(name string) (entity, bool) {
	// A Finding's Entity is one of entityNames itself: found by where its bytes are, it costs
	// no comparison of bytes (apply and Redact ask for each finding).
	for e, n := range entityNames {
		if unsafe.StringData(n) == unsafe.StringData(name) && len(n) == len(name) {
			return entity(e), true
		}
	}
	for e, n := range entityNames {
		if n == name {
			return entity(e), true
		}
	}
	return 0, false
}

// PIIEntities returns the PII entity type names, in a fixed order.
func PIIEntities() []string {
	return append([]string(nil), entityNames[:]...)
}

// EntitySet is a set of PII entity types.
type EntitySet uint16

// Has reports whether the set holds the entity type.
func (s EntitySet) Has(entity string) bool {
	e, ok := entityOf(entity)
	return ok && s&(1<<e) != 0
}

// Len returns the number of entity types in the set.
func (s EntitySet) Len() int {
	n := 0
	for ; s != 0; s &= s - 1 {
		n++
	}
	return n
}

// AppendNames appends the entity type names in the set to dst, separated by sep.
func (s EntitySet) AppendNames(dst []byte, sep byte) []byte {
	first := true
	for e := entity(0); e < numEntities; e++ {
		if s&(1<<e) == 0 {
			continue
		}
		if !first {
			dst = append(dst, sep)
		}
		first = false
		dst = append(dst, entityNames[e]...)
	}
	return dst
}

// PIIOptions configures NewPII.
type PIIOptions struct {
	// Entities lists the entity types to find; nil or empty means all of them (the config's
	// "entities: []" is an empty, not a nil, slice).
	Entities []string
	// Prompt and Completion are the actions for every entity type in each direction.
	// ActionFlag counts like ActionDetect.
	Prompt, Completion Action
	// Overrides set the action of one entity type in one direction.
	Overrides []PIIOverride
	// MinScore is the lowest score reported; zero means 0.4, which a weak pattern (nine
	// digits for a US_SSN, ten for a PHONE_NUMBER) reaches only with a context word.
	MinScore float64
	// HashKey keys ActionHash; empty means a random key per process. Set it to get the same
	// hashes on every replica and across restarts.
	HashKey []byte
}

// PIIOverride sets the action of one entity type in one direction.
type PIIOverride struct {
	Entity    string
	Direction Direction
	Action    Action
}

// Finding is one PII value found in a text: text[Start:End] is the value.
//
// Spans: a phone number includes its leading '+' or '(' ; grouped numbers include their
// separators, multi-byte ones (no-break spaces, en dashes) too; URL_CREDENTIALS is the userinfo "user:password" of scheme://user:password@host
// (only "user" when the password is itself a SECRET, reported separately); a PEM key runs from
// its BEGIN line through its END line.
type Finding struct {
	Entity     string
	Start, End int
	Score      float64
}

// PII finds and rewrites personal data. It is immutable after NewPII and safe for concurrent use.
type PII struct {
	on       [numEntities]bool
	act      [2][numEntities]Action
	minScore float64
	key      []byte
}

// DefaultMinScore is the score threshold used when PIIOptions.MinScore is zero.
const DefaultMinScore = 0.4

var (
	procKeyOnce sync.Once
	procKey     [32]byte
)

// NewPII returns a PII detector; the error names an unknown entity type or an action that
// is not a PII action.
func NewPII(opts PIIOptions) (*PII, error) {
	p := &PII{minScore: opts.MinScore, key: opts.HashKey}
	if p.minScore == 0 {
		p.minScore = DefaultMinScore
	}
	if len(opts.Entities) == 0 {
		for e := range p.on {
			p.on[e] = true
		}
	}
	for _, name := range opts.Entities {
		e, ok := entityOf(name)
		if !ok {
			return nil, errors.New("guard: unknown PII entity type " + quoted(name))
		}
		p.on[e] = true
	}
	for d, a := range [2]Action{opts.Prompt, opts.Completion} {
		if err := checkPIIAction(a); err != nil {
			return nil, err
		}
		for e := range p.act[d] {
			p.act[d][e] = a
		}
	}
	for _, o := range opts.Overrides {
		e, ok := entityOf(o.Entity)
		if !ok {
			return nil, errors.New("guard: unknown PII entity type " + quoted(o.Entity))
		}
		if o.Direction > Completion {
			return nil, errors.New("guard: unknown direction for PII entity type " + o.Entity)
		}
		if err := checkPIIAction(o.Action); err != nil {
			return nil, err
		}
		p.act[o.Direction][e] = o.Action
	}
	for d := range p.act {
		for e := range p.act[d] {
			if p.act[d][e] == ActionFlag {
				p.act[d][e] = ActionDetect
			}
		}
	}
	if len(p.key) == 0 {
		procKeyOnce.Do(func() { _, _ = rand.Read(procKey[:]) })
		p.key = procKey[:]
	}
	return p, nil
}

func checkPIIAction(a Action) error {
	if a > ActionBlock {
		return errors.New("guard: unknown PII action")
	}
	return nil
}

func quoted(s string) string { return "\"" + s + "\"" }

// Action returns the action for an entity type in a direction; ActionOff for an unknown type
// or one not scanned.
func (p *PII) Action(d Direction, entity string) Action {
	e, ok := entityOf(entity)
	if !ok || !p.on[e] || d > Completion {
		return ActionOff
	}
	return p.act[d][e]
}

// Find appends the PII found in text to dst: non-overlapping, sorted by Start, each validated
// and scored at least MinScore. It does not allocate when text is clean or dst has room.
func (p *PII) Find(dst []Finding, text []byte) []Finding {
	return p.find(dst, text, 0)
}

// find scans text[from:]; text[:from] is read only as context (boundaries, context words).
func (p *PII) find(dst []Finding, text []byte, from int) []Finding {
	return p.findTo(dst, text, from, len(text))
}

// findTo is find for the values whose trigger byte is before to; they may end after it.
func (p *PII) findTo(dst []Finding, text []byte, from, to int) []Finding {
	var s scan // not a composite literal: that builds the struct, numeric's scratch too, twice
	s.p, s.t, s.lo, s.from, s.dst = p, text, from, from, dst
	s.scanTo(from, min(to, len(text)))
	return s.dst
}

// scanTo runs the matchers of the trigger bytes from i on that are before n (at most len(s.t))
// and returns where the scan goes on: n, or past it where a matcher returned past it.
func (s *scan) scanTo(i, n int) int {
	text := s.t
	// The hot loop: most bytes are no trigger. skipClean passes over them eight or sixteen at
	// a time; the flags of a word serve every trigger in it that a matcher's return leaves
	// unread.
	for {
		var m uint64
		if i, m = skipClean(text, i, n); m == 0 {
			break
		}
		for m != 0 {
			var next int
			// Digits, the commonest triggers, go to their matcher without trigger's switch.
			if p := i + bits.TrailingZeros64(m)>>3; text[p]-'0' <= 9 {
				next = s.digit(p)
			} else {
				next = s.trigger(p)
			}
			if next >= i+8 {
				i = next
				goto nextWord
			}
			// Matchers always return past the trigger: next-i is 1 to 7, and the mask spares
			// the test for a shift of 64 or more.
			m &= ^uint64(0) << (8 * uint(next-i) & 63)
		}
		i += 8
	nextWord:
	}
	for i < n {
		if trig[text[i]] == 0 {
			i++
			continue
		}
		i = s.trigger(i)
	}
	return i
}

// skipClean returns the start of the first eight bytes from i, up to n, holding a trigger byte
// and their trigger8 flags; with no such eight, the first i past which eight do not fit and 0.
// It is apart from scanTo so that its loop makes no call (scanTo spilled and reloaded
// registers around the matchers' calls, every word), and it takes sixteen bytes a turn with
// one bounds check: on text without triggers it is a third faster. Each eight are tested as
// soon as their flags are known: a trigger in the first eight (half of those found) spares
// the flags of the next, which chat text's density of digits makes the cheaper way.
func skipClean(text []byte, i, n int) (int, uint64) {
	t := text[:n]
	for ; i >= 0 && i+16 <= len(t); i += 16 {
		w := t[i : i+16]
		if m := trigger8(binary.LittleEndian.Uint64(w)); m != 0 {
			return i, m
		}
		if m := trigger8(binary.LittleEndian.Uint64(w[8:])); m != 0 {
			return i + 8, m
		}
	}
	if i >= 0 && i+8 <= len(t) {
		if m := trigger8(binary.LittleEndian.Uint64(t[i:])); m != 0 {
			return i, m
		}
		i += 8
	}
	return i, 0
}

// trigger runs the matcher of the trigger byte at i and returns where the scan goes on.
func (s *scan) trigger(i int) int {
	switch trig[s.t[i]] {
	case tDigit:
		return s.digit(i)
	case tAt:
		return s.at(i)
	case tColon:
		return s.colon(i)
	case tDash:
		return s.dash(i)
	case tUnder:
		return s.under(i)
	case tA:
		return s.upperA(i)
	case tJ:
		return s.jwt(i)
	case tEq:
		return s.equals(i)
	}
	return i + 1
}

// trigger8 returns the high bit of each byte of x (eight text bytes, little-endian) that
// is a trigger: a digit, '-', ':', ';', '<', '=', '@', 'A', 'J' or '_'.
func trigger8(x uint64) uint64 {
	const ones, lows = 0x0101010101010101, 0x7f7f7f7f7f7f7f7f
	y := x & lows // bytes of 0x80 and above are no trigger: their flags are cleared below
	// A byte of z + lows has its high bit clear only where z's byte is zero, and no byte
	// carries into the next, since y's bytes are below 0x80. So each "other" term has the high
	// bit of a byte set where that byte is not the one it tests for: their AND is clear where
	// the byte is any of them. The '@' term adds 0x7e, not 0x7f: its high bit is clear where
	// y ^ '@' is 0 or 1, '@' or 'A'. Two operations a term; no byte carries into the next.
	// Written out rather than with helpers, so that skipClean inlines it.
	other := ((y ^ '-'*ones) + lows) &
		((y ^ 'J'*ones) + lows) &
		((y ^ '_'*ones) + lows) &
		((y ^ '@'*ones) + 0x7e*ones)
	// The high bit of y + 0x50 is set from '0' up, that of y + 0x42 from '>' up: they
	// differ from '0' to '=', the digits, ':', ';', '<' and '='. '=' is wanted ("Password=");
	// ';' and '<' come free with it and stop the scan for nothing, rarely in prose.
	digitOrColon := (y + (0x80-'0')*ones) ^ (y + (0x7f-'=')*ones)
	// '.' and '/', between '-' and the digits, are common in prose and no trigger: flagging
	// them would stop the eight-byte loop of skipClean at nearly every sentence.
	return (digitOrColon | ^other) &^ (x | lows)
}

// scan is the state of one Find.
type scan struct {
	p    *PII
	t    []byte
	lo   int // a new finding starts at or after lo: the end of the last one, or the scan start
	from int // the scan start
	dst  []Finding
	run  numRun // numeric's scratch, here so that it is not zeroed per number
	// ctxStart is 1 + the text offset whose nearWords are ctxPos and ctxNeg; 0 for none.
	ctxStart       int
	ctxPos, ctxNeg uint8
	ctxCode        bool // codeBefore at that offset
}

// want reports whether a finding of e with this score would be reported.
func (s *scan) want(e entity, score float64) bool {
	return s.p.on[e] && score >= s.p.minScore
}

// emit reports a finding if wanted and returns whether it did.
func (s *scan) emit(e entity, start, end int, score float64) bool {
	if !s.want(e, score) || start < s.lo || end <= start {
		return false
	}
	if score > 1 {
		score = 1
	}
	s.dst = append(s.dst, Finding{Entity: entityNames[e], Start: start, End: end, Score: score})
	s.lo = end
	return true
}

// Trigger kinds.
const (
	tNone = iota
	tDigit
	tAt
	tColon
	tDash
	tUnder
	tA
	tJ
	tEq   // '=': a password after its name
	tStop // ';' and '<': flagged with '=' by trigger8, no matcher
)

// Byte classes.
const (
	cDigit = 1 << iota
	cUpper
	cLower
	cHex    // 0-9a-fA-F
	cLocal  // email local part: alnum . _ % + -
	cB64URL // alnum - _
	cB64    // alnum + / =
	cSpace  // ' ' \t \r \n \v \f
)

var (
	trig [256]uint8
	cls  [256]uint8
)

func init() {
	for c := 0; c < 256; c++ {
		var k uint8
		switch {
		case c >= '0' && c <= '9':
			k = cDigit | cHex | cLocal | cB64URL | cB64
		case c >= 'A' && c <= 'Z':
			k = cUpper | cLocal | cB64URL | cB64
		case c >= 'a' && c <= 'z':
			k = cLower | cLocal | cB64URL | cB64
		}
		if (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') {
			k |= cHex
		}
		switch c {
		case '.', '%', '+':
			k |= cLocal
		case '-', '_':
			k |= cLocal | cB64URL
		case ' ', '\t', '\r', '\n', '\v', '\f':
			k |= cSpace
		}
		if c == '+' || c == '/' || c == '=' {
			k |= cB64
		}
		cls[c] = k
	}
	for c := '0'; c <= '9'; c++ {
		trig[c] = tDigit
	}
	trig['@'] = tAt
	trig[':'] = tColon
	trig['-'] = tDash
	trig['_'] = tUnder
	trig['A'] = tA
	trig['J'] = tJ
	trig['='] = tEq
	trig[';'] = tStop
	trig['<'] = tStop
}

func isDigit(c byte) bool  { return cls[c]&cDigit != 0 }
func isUpper(c byte) bool  { return cls[c]&cUpper != 0 }
func isLower(c byte) bool  { return cls[c]&cLower != 0 }
func isAlpha(c byte) bool  { return cls[c]&(cUpper|cLower) != 0 }
func isAlnum(c byte) bool  { return cls[c]&(cDigit|cUpper|cLower) != 0 }
func isWord(c byte) bool   { return c == '_' || isAlnum(c) }
func isHex(c byte) bool    { return cls[c]&cHex != 0 }
func isSpace(c byte) bool  { return cls[c]&cSpace != 0 }
func isB64URL(c byte) bool { return cls[c]&cB64URL != 0 }
func isB64(c byte) bool    { return cls[c]&cB64 != 0 }
func asciiUpper(c byte) byte {
	if isLower(c) {
		return c - ('a' - 'A')
	}
	return c
}
func asciiLower(c byte) byte {
	if isUpper(c) {
		return c + 'a' - 'A'
	}
	return c
}

// wordBefore reports whether t[i-1] is a word byte (so i is not at a word start).
func wordBefore(t []byte, i int) bool { return i > 0 && isWord(t[i-1]) }

// wordAt reports whether t[i] is a word byte (so i is not at a word end).
func wordAt(t []byte, i int) bool { return i < len(t) && isWord(t[i]) }

// hasPrefixAt reports whether t[i:] starts with p.
func hasPrefixAt(t []byte, i int, p string) bool {
	return i >= 0 && len(t)-i >= len(p) && string(t[i:i+len(p)]) == p
}

// Context categories: which entity's score a context word moves.
const (
	ctxPhone = 1 << iota
	ctxSSN
	ctxCard
	ctxIP
	ctxIBAN
	ctxNeg // identifiers that are not personal data: order, invoice, version...
	ctxNum // of those, the numberings that write dotted numbers: version, section...

	// ctxAdjacent, in nearWords' neg, says the negative word is the one right before the value.
	ctxAdjacent = ctxNum << 1
)

// nearWords returns the decision of the nearest context word among the (at most 5) words in the
// 48 bytes before i, per category: pos has a bit for each category whose nearest relevant word
// is one of its own; neg has a bit for each whose nearest is a negative word. Like Presidio it
// looks only backwards. Words are whole runs of [A-Za-z0-9_] and Latin letters with accents
// (see ctxByte), so "móvil" is one word; of a snake_case word only the part snakeTail
// returns counts, so "applicant_ssn" is an "ssn" but "US_SSN_1" in a placeholder is none.
func nearWords(t []byte, i int) (pos, neg uint8) {
	stop := i - 48
	if stop < 0 {
		stop = 0
	}
	var seen uint8
	var buf [16]byte
	j := i
	for w := 0; w < 5 && j > stop; w++ {
		for j > stop && wordCls[t[j-1]]&cwWord == 0 {
			j--
		}
		e := j
		var cl uint8 // the classes of the word's bytes: cwSnake with a '_'
		for j > stop && wordCls[t[j-1]]&cwWord != 0 {
			j--
			cl |= wordCls[t[j]]
		}
		if e == j {
			break
		}
		// Accented letters are rare: the loops above take them for separators, and a word
		// with one before its last ASCII run is widened here. One whose accented letters all
		// end it ("telé") is read without them: no context word ends with one.
		accent := false
		if j > stop && wordCls[t[j-1]] == cwHigh {
			var cut bool
			if j, e, cut = accentWord(t, j, e, stop, i); cut {
				break
			}
			accent = true
		}
		if j == stop && stop > 0 && isWord(t[j-1]) {
			break // cut word
		}
		word := t[j:e]
		if cl == cwSnake && !accent {
			word = snakeTail(word)
		}
		if len(word) > len(buf) {
			continue
		}
		// ctxMay reads the first and last byte's low five bits, the same in either case: ask
		// it before lower-casing, which most words then skip.
		may := ctxMay(word)
		plural := len(word) > 3 && word[len(word)-1]|0x20 == 's' && ctxMay(word[:len(word)-1])
		if !may && !plural {
			continue
		}
		n := 0
		for _, c := range word {
			buf[n] = asciiLower(c)
			n++
		}
		if accent {
			foldAccents(buf[:n])
		}
		var m uint8
		ok := false
		if may {
			m, ok = ctxWords[string(buf[:n])]
		}
		if !ok && plural {
			m = ctxWords[string(buf[:n-1])]
		}
		if m == 0 {
			continue
		}
		if m == ctxPhone && numberWord(buf[:n]) && negWordBefore(t, j, stop, i) {
			m = ctxNeg // "Pedido número 45-8812-0093": the number word is the identifier's
		}
		for c := uint8(1); c < ctxNeg; c <<= 1 {
			if seen&c != 0 {
				continue
			}
			if m&c != 0 {
				pos |= c
				seen |= c
			} else if m&ctxNeg != 0 && (c != ctxIP || m&ctxNum != 0) {
				// An IP address is only a version or section number when such a word
				// names it: "ticket opened from 203.0.113.7" has an address.
				neg |= c
				seen |= c
			}
		}
		if w == 0 && m&ctxNeg != 0 {
			neg |= ctxAdjacent // "ID 415-555-0132"
		}
	}
	return pos, neg
}

// numberWord reports whether the lower-case context word w is "number" in French, Spanish,
// Portuguese or Italian: a phone word alone ("mi número es ..."), but after a negative word
// it names that identifier ("pedido número", "ordine numero").
func numberWord(w []byte) bool {
	switch string(w) {
	case "numero", "número", "numéro":
		return true
	}
	return false
}

// negWordBefore reports whether the word before t[j:], read as nearWords reads words (i and
// stop its bounds), is a negative context word: "pedido" in "pedido número".
func negWordBefore(t []byte, j, stop, i int) bool {
	for j > stop && wordCls[t[j-1]]&cwWord == 0 {
		j--
	}
	e := j
	for j > stop && wordCls[t[j-1]]&cwWord != 0 {
		j--
	}
	if e == j {
		return false
	}
	accent := false
	if j > stop && wordCls[t[j-1]] == cwHigh {
		var cut bool
		if j, e, cut = accentWord(t, j, e, stop, i); cut {
			return false
		}
		accent = true
	}
	if j == stop && stop > 0 && isWord(t[j-1]) || e-j > 16 {
		return false
	}
	var buf [16]byte
	n := copy(buf[:], t[j:e])
	for k := range n {
		buf[k] = asciiLower(buf[k])
	}
	if accent {
		foldAccents(buf[:n])
	}
	return ctxWords[string(buf[:n])]&ctxNeg != 0
}

// snakeTail returns the part of a snake_case identifier that names it, its last part, or
// the one before a last "number", "num", "no" or "nr": "applicant_ssn", "home_phone",
// "phone_number", "order_no". A placeholder's last part is its number or hash ("US_SSN_1",
// "PHONE_NUMBER_h"), which names nothing, so placeholders stay no context. Words without
// '_' are returned as they are.
func snakeTail(w []byte) []byte {
	u := len(w) - 1
	for u >= 0 && w[u] != '_' {
		u--
	}
	if u < 0 || u == len(w)-1 {
		return w
	}
	tail := w[u+1:]
	if len(tail) <= 6 && u > 0 {
		var b [6]byte
		for k, c := range tail {
			b[k] = asciiLower(c)
		}
		switch string(b[:len(tail)]) {
		case "number", "num", "no", "nr":
			v := u - 1
			for v >= 0 && w[v] != '_' {
				v--
			}
			if v < u-1 {
				return w[v+1 : u]
			}
		}
	}
	return tail
}

// wordCls classes bytes for nearWords: a word byte [A-Za-z0-9_] ('_' also cwSnake), a byte
// of a multi-byte character, or another byte.
var wordCls [256]uint8

const (
	cwOther = 0
	cwWord  = 1
	cwHigh  = 2
	cwSnake = cwWord | 4
)

func init() {
	for c := range wordCls {
		switch {
		case c == '_':
			wordCls[c] = cwSnake
		case isWord(byte(c)):
			wordCls[c] = cwWord
		case c >= 0x80:
			wordCls[c] = cwHigh
		}
	}
}

// accentWord widens the ASCII word [j, e) over the accented letters around it, at most from
// stop to i; cut reports that the word goes on before stop.
func accentWord(t []byte, j, e, stop, i int) (int, int, bool) {
	for j > stop && ctxByte(t, j-1) {
		j--
	}
	for e < i && ctxByte(t, e) {
		e++
	}
	return j, e, j == stop && stop > 0 && ctxByte(t, j-1)
}

// foldAccents lower-cases the letters U+00C0-U+00DE of w, but for "×".
func foldAccents(w []byte) {
	for k := 1; k < len(w); k++ {
		if w[k-1] == 0xc3 && w[k] >= 0x80 && w[k] <= 0x9e && w[k] != 0x97 {
			w[k] += 0x20
		}
	}
}

// ctxByte reports whether t[k] is part of a word for nearWords: a word byte, or a byte of a
// Latin letter with an accent, U+00C0-U+024F but for "×" and "÷" ("téléphone", "móvil",
// "número", "łódź"). No-break spaces, quotes and dashes stay between words.
func ctxByte(t []byte, k int) bool {
	c := t[k]
	if c < 0x80 {
		return isWord(c)
	}
	if c >= 0xc3 && c <= 0xc9 {
		return k+1 < len(t) && t[k+1]&0xc0 == 0x80 && !(c == 0xc3 && t[k+1]&0x1f == 0x17)
	}
	return c < 0xc0 && k > 0 && t[k-1] >= 0xc3 && t[k-1] <= 0xc9 && !(t[k-1] == 0xc3 && c&0x1f == 0x17)
}

// adjust applies context to a score the Presidio way: a supporting word adds 0.35 and
// lifts the score to at least 0.4; a negative word nearer than any supporting one takes 0.35
// off a weak match (under 0.5: bare digit groups that an order or ticket number also makes),
// a match right after the word ("ID 415-555-0132"), or an IP address that a version or section
// word names ("version 1.2.3.4"). A strong match further on (a number written with +, a
// North American number, a valid card, an address after "ticket") stays: support and order
// text is where customers' numbers are ("Order 5521 shipped to John, +44 20 7946 0958").
func adjust(score float64, cat uint8, pos, neg uint8) float64 {
	switch {
	case pos&cat != 0:
		score += 0.35
		if score < 0.4 {
			score = 0.4
		}
	case neg&cat != 0 && (score < 0.5 || neg&ctxAdjacent != 0 || cat == ctxIP):
		score -= 0.35
	}
	return score
}
