package guard

// LeakScanner rewrites the PII in a streamed completion (a model echoing a secret or someone
// else's email) with the Completion actions, and holds back no more than a window of text.
//
// The stream is cut into segments at points that no PII value can span: after whitespace that
// follows a token with no digit (and no IBAN-like group of four capitals), and before a
// non-ASCII character that follows no such token (a no-break space may join digit groups),
// never inside a PEM block. A segment is scanned with the text before it
// as context, exactly as if the whole completion had been scanned at once, and is emitted as
// soon as its cut point arrives: in prose, word by word. When a window's worth of text has no
// cut point (a long token, digits run on), the first half of the window is scanned and emitted;
// a value found there that runs to the window's end is rewritten, and the rest of its token is
// dropped (or masked). Cut points and windows depend only on the text, so the output is the
// same however the stream is split into chunks.
//
// Feed it the completion text, the concatenated content deltas, before any Restorer: leaked
// values get placeholders numbered after the prompt's in the same Vault but are never restored.
// A LeakScanner belongs to one stream; call Reset before the first Write.
type LeakScanner struct {
	p       *PII
	v       *Vault
	win     int
	buf     []byte // context (emitted text) then pending text
	head    int    // start of the pending text in buf
	scanned int    // pending bytes the cut state has seen
	cs      cutState
	cont    contState
	finds   []Finding
	blocked EntitySet
}

// DefaultLeakWindow is the hold-back window of a LeakScanner when none is given.
const DefaultLeakWindow = 256

// minLeakWindow keeps windows long enough for every bounded entity (an IBAN in groups is 42
// bytes) to fit in half of one.
const minLeakWindow = 96

// leakContext is how much emitted text is kept in front of a segment for context words.
const leakContext = 64

// NewLeakScanner returns a LeakScanner for one completion; window <= 0 means DefaultLeakWindow.
func (p *PII) NewLeakScanner(v *Vault, window int) *LeakScanner {
	s := &LeakScanner{}
	s.Reset(p, v, window)
	return s
}

// Reset readies s for a new completion scanned by p into v, holding back at most window bytes
// (window <= 0 means DefaultLeakWindow; less than 96 means 96).
func (s *LeakScanner) Reset(p *PII, v *Vault, window int) {
	if window <= 0 {
		window = DefaultLeakWindow
	}
	s.p, s.v, s.win = p, v, max(window, minLeakWindow)
	clear(s.buf) // it held completion text, leaked values included
	s.buf, s.head, s.scanned = s.buf[:0], 0, 0
	s.cs, s.cont = cutState{}, contState{}
	s.finds, s.blocked = s.finds[:0], 0
}

// Held returns the number of bytes held back: always less than the window after Write.
func (s *LeakScanner) Held() int { return len(s.buf) - s.head }

// Blocked returns the entity types with ActionBlock found in the completion so far: the caller
// should stop the stream. The scanner emits the text before the first such value, and nothing
// from it on.
func (s *LeakScanner) Blocked() EntitySet { return s.blocked }

// Write appends to dst the text that can be emitted once chunk has arrived.
func (s *LeakScanner) Write(dst, chunk []byte) []byte {
	if s.blocked != 0 {
		return dst
	}
	s.buf = append(s.buf, chunk...)
	cs := &s.cs
	for {
		if s.blocked != 0 {
			// A value the completion may not give out: what follows it goes no further.
			clear(s.buf)
			s.buf, s.head, s.scanned = s.buf[:0], 0, 0
			return dst
		}
		// Scan on up to the next cut point, or to the end of the window or of the text, in
		// a loop that keeps its place in registers.
		buf, head := s.buf, s.head
		i, end := head+s.scanned, min(len(buf), head+s.win)
		cut := -1 // where the next segment ends
		for i < end {
			c := buf[i]
			if c|0x20-'a' < 26 && c != 'A' && cs.dash == 0 && cs.kw == 0 {
				// Most bytes are letters inside words: a run of them at once (see letters).
				j := i + 1
				for j < end && buf[j]|0x20-'a' < 26 && buf[j] != 'A' {
					j++
				}
				cs.letters(buf[i:j])
				i = j
				continue
			}
			if c >= 0xC0 && cs.cutBefore() && i > head {
				cut = i
				break
			}
			i++
			if cs.step(c) {
				cut = i
				break
			}
		}
		s.scanned = i - head
		switch {
		case cut >= 0:
			dst = s.segment(dst, cut-head)
		case s.scanned >= s.win:
			dst = s.forced(dst)
		default: // the text is scanned to its end
			// Keep leakContext bytes of emitted text in front of the pending text.
			if k := s.head - leakContext; k > 0 {
				s.buf = s.buf[:copy(s.buf, s.buf[k:])]
				s.head -= k
			}
			return dst
		}
	}
}

// Close appends the rest of the completion to dst, scanned as a last segment.
func (s *LeakScanner) Close(dst []byte) []byte {
	if n := len(s.buf) - s.head; n > 0 && s.blocked == 0 {
		dst = s.segment(dst, n)
	}
	return dst
}

// segment emits the first n pending bytes, scanned whole.
func (s *LeakScanner) segment(dst []byte, n int) []byte {
	from := max(s.head-leakContext, 0)
	text := s.buf[from : s.head+n]
	k := s.head - from
	dst, k = s.swallow(dst, text, k)
	s.finds = s.finds[:0]
	if !noTrigger(text[k:]) { // most segments are a word and a space: nothing for find to start at
		s.finds = s.p.find(s.finds, text, k)
	}
	dst = s.rewrite(dst, text, k, len(text), s.finds, false)
	s.advance(n)
	return dst
}

// forced emits the first half of a full window that has no cut point.
func (s *LeakScanner) forced(dst []byte) []byte {
	from := max(s.head-leakContext, 0)
	text := s.buf[from : s.head+s.win]
	k := s.head - from
	dst, k = s.swallow(dst, text, k)
	s.finds = s.p.find(s.finds[:0], text, k)
	fs := s.finds
	q := max(k, s.head-from+s.win/2)
	for q > k && text[q]&0xC0 == 0x80 {
		q-- // do not split a UTF-8 sequence
	}
	if q == k {
		q = max(k, s.head-from+s.win/2)
	}
	trunc := false
	for i, f := range fs {
		if f.Start >= q {
			fs = fs[:i]
			break
		}
		a := s.p.act[Completion][entityIndex(f.Entity)]
		open := f.End == len(text)
		var cont contState
		if hasPrefixAt(text, f.Start, "-----") && (open || i == len(fs)-1) {
			// A key's parse also stops short of the window's end where the window cuts a
			// line break, a header line or the END line: its block may still go on.
			cont, open = pemCont(text[f.Start:], f.End-f.Start, a)
		} else {
			cont = contState{on: true, a: a}
		}
		if f.End > q || open {
			q, trunc = f.End, open
			if open && a >= ActionRedact {
				s.cont = cont
			}
		}
	}
	dst = s.rewrite(dst, text, k, q, fs, trunc)
	s.advance(q - (s.head - from))
	return dst
}

// noTrigger reports whether p has no trigger byte, where a matcher of find may start.
func noTrigger(p []byte) bool {
	for _, c := range p {
		if trig[c] != 0 {
			return false
		}
	}
	return true
}

func entityIndex(name string) entity {
	e, _ := entityOf(name)
	return e
}

// rewrite emits text[k:end] with the findings fs applied, up to the first value whose action
// is ActionBlock.
func (s *LeakScanner) rewrite(dst, text []byte, k, end int, fs []Finding, trunc bool) []byte {
	for i, f := range fs {
		if e := entityIndex(f.Entity); s.p.act[Completion][e] == ActionBlock {
			// The text before the value goes out, as a blocking safety rule lets the text
			// before its match out; the value and what follows it do not.
			s.v.found[Completion][e]++
			s.v.blocked |= 1 << e
			s.blocked |= 1 << e
			fs, end, trunc = fs[:i], f.Start, false
			break
		}
	}
	if len(fs) == 0 {
		return append(dst, text[k:end]...)
	}
	s.v.reserve(text[k:end])
	s.v.spans = s.v.spans[:0] // Redact's scratch; apply fills it
	dst, b := s.p.apply(dst, text[k:end], fs, k, Completion, s.v, trunc)
	s.blocked |= b
	return dst
}

// swallow drops (or masks) the rest of a value cut by the previous window, from text[k:];
// it returns where scanning goes on.
func (s *LeakScanner) swallow(dst, text []byte, k int) ([]byte, int) {
	for s.cont.on && k < len(text) {
		c := text[k]
		if !s.cont.accept(c) {
			s.cont.on = false
			break
		}
		if s.cont.a == ActionMask {
			if isSpace(c) {
				dst = append(dst, c)
			} else {
				dst = append(dst, '*')
			}
		}
		k++
	}
	return dst, k
}

// advance marks n pending bytes emitted.
func (s *LeakScanner) advance(n int) {
	s.head += n
	s.scanned -= n
}

// contState follows the rest of a value cut by a window's end. For a PEM key it takes at
// least what pem would: header lines, the blank line after them (or after a PGP BEGIN line),
// and line breaks escaped as in a JSON string.
type contState struct {
	on      bool
	pem     bool
	a       Action
	dash    int  // '-' seen in a row (PEM)
	end     int  // progress through "END" after five dashes, then 4 once it is complete (PEM)
	esc     bool // the last byte was a backslash (PEM)
	line    bool // the line has a byte other than whitespace (PEM)
	begun   bool // the BEGIN line has ended (PEM)
	hdr     bool // the line is a header line: it may hold any printable ASCII (PEM)
	blankOK bool // a blank line may come next (PEM)
}

// pemCont returns the state that follows the rest of the PEM key that key[:end] is the found
// part of, and whether all of key[end:], up to the window's end, may still belong to it.
func pemCont(key []byte, end int, a Action) (contState, bool) {
	c := contState{on: true, pem: true, a: a, blankOK: pgpArmor(key)}
	for _, b := range key[:end] {
		c.accept(b)
	}
	rest := c
	for _, b := range key[end:] {
		if !rest.accept(b) {
			return c, false
		}
	}
	return c, true
}

// accept reports whether c still belongs to the cut value.
func (c *contState) accept(b byte) bool {
	if !c.pem {
		return isB64URL(b) || b == '.' || b == '+' || b == '/' || b == '='
	}
	if c.end == 4 && c.dash >= 5 {
		return false // the END line is complete
	}
	esc := c.esc
	c.esc = b == '\\'
	switch {
	case b == '\\':
		return true // an escaped line break, or "\/"
	case b == '\n' || esc && b == 'n':
		c.dash = 0
		if c.end == 4 {
			return false
		}
		if !c.line {
			if !c.blankOK {
				return false
			}
			c.blankOK = false
			return true
		}
		c.blankOK = c.hdr || !c.begun && c.blankOK
		c.begun, c.line, c.hdr = true, false, false
		return true
	case isSpace(b) || esc && b == 'r':
		return true
	}
	c.line = true
	if b == '-' {
		c.dash++
		return true
	}
	if c.end < 3 && c.dash >= 5 && b == 'E' || c.end > 0 && c.end < 3 && b == "END"[c.end] {
		c.end++
		if c.end == 3 {
			c.end = 4
		}
	} else if c.end < 4 {
		c.end = 0
	}
	c.dash = 0
	c.hdr = c.hdr || b == ':'
	return c.end == 4 || cls[b]&cB64 != 0 || c.hdr && b >= ' ' && b < 0x7f
}

// cutState finds the cut points of a stream, one byte at a time.
type cutState struct {
	tokLen   int
	tokDigit bool   // the current token has a digit
	tokUpper bool   // the current token is capital letters only
	tokPEM   bool   // the current token may be in a PEM body
	prevOK   bool   // the last token allows a cut after it
	dash     int    // '-' in a row
	kw       int    // progress through "BEGIN" (1..5) or "END" (11..13) after five dashes
	begin    bool   // the token holds "-----BEGIN"
	endKW    bool   // the token holds "-----END"
	colon    bool   // the token ends with ':'
	slash    bool   // the token ends with '/'
	tail     uint32 // the token's last three letters, lower case, through a closing quote, ':' or '='
	tokSep   bool   // the token is only '=' and ':'
	keyName  bool   // the last tokens name a key ("aws_secret_access_key ="): its value follows
	last4    uint32 // the token's last four bytes
	akia     bool   // the token holds an AWS access key ID prefix
	hold     int    // bytes left in which no cut may fall: an AWS secret key may follow its ID
	pem      uint8
	hdr      bool // in a PEM block, on a line after a token ending with ':' (a header)
	blank    bool // in a PEM block, a blank line has been passed
	nl       int
}

// PEM states of cutState.
const (
	pemNone  = iota
	pemBody  // after "-----BEGIN": no cuts
	pemEndLn // on the END line
)

// cutBefore reports whether the stream may be cut before a non-ASCII character: not in a
// PEM block, nor after a token that no cut may follow, as a no-break space or an en dash may
// join its digit groups to the next ("06\u00a012\u00a034", "555\u20132671").
func (cs *cutState) cutBefore() bool {
	return cs.pem == pemNone && cs.hold == 0 && (cs.tokLen == 0 || !cs.tokDigit && !(cs.tokLen == 4 && cs.tokUpper))
}

// letters feeds a run of ASCII letters with no dashes or PEM keyword before them in their
// word and no 'A', which may end an AWS key ID's prefix: what step would do with each, at
// once. No cut falls after such a letter.
func (cs *cutState) letters(p []byte) {
	if cs.tokLen == 0 { // a word starts: as in step
		cs.tokDigit, cs.tokUpper, cs.tokPEM, cs.tail, cs.tokSep = false, true, true, 0, true
		cs.last4, cs.akia = 0, false
	}
	last4, tail, bits := cs.last4, cs.tail, byte(0)
	for _, c := range p {
		last4 = last4<<8 | uint32(c)
		tail = tail<<8 | uint32(c|0x20)
		bits |= c
	}
	n := len(p)
	cs.last4, cs.tail = last4, tail&0xffffff
	cs.nl, cs.hold = 0, max(cs.hold-n, 0)
	cs.tokLen += n
	cs.tokUpper = cs.tokUpper && bits&0x20 == 0 // a lower-case letter has 0x20 set
	cs.colon, cs.slash, cs.tokSep = false, false, false
}

// step feeds one byte and reports whether the stream may be cut after it.
func (cs *cutState) step(c byte) bool {
	switch {
	case c >= 0x80:
		if cs.pem == pemBody {
			cs.pem = pemNone // the PEM matcher stops at a token with such a byte
		}
		cs.endToken()
		cs.prevOK = true
		return false
	case isSpace(c):
		cs.endToken()
		if cs.hold > 0 {
			cs.hold--
			return false
		}
		if c == '\n' {
			// pem allows one blank line (after header lines); escaped line breaks are
			// not counted here, which only keeps a block open longer.
			cs.nl++
			cs.hdr = false
			if cs.pem == pemBody && cs.nl == 2 && !cs.blank {
				cs.blank = true
			} else if cs.pem == pemEndLn || cs.pem == pemBody && cs.nl >= 2 {
				cs.pem = pemNone
			}
		}
		return cs.pem == pemNone && cs.prevOK
	}
	cs.nl = 0
	if cs.hold > 0 {
		cs.hold--
	}
	if cs.tokLen == 0 {
		cs.tokDigit, cs.tokUpper, cs.tokPEM, cs.tail, cs.tokSep = false, true, true, 0, true
		cs.last4, cs.akia = 0, false
	}
	cs.last4 = cs.last4<<8 | uint32(c)
	if c == 'A' && (cs.last4 == 'A'<<24|'K'<<16|'I'<<8|'A' || cs.last4 == 'A'<<24|'S'<<16|'I'<<8|'A') {
		cs.akia = true
	}
	cs.tokLen++
	cs.tokDigit = cs.tokDigit || isDigit(c)
	cs.tokUpper = cs.tokUpper && isUpper(c)
	cs.tokPEM = cs.tokPEM && (cls[c]&cB64 != 0 || c == ':' || c == ',' || c == '-' || c == '\\')
	cs.colon = c == ':'
	cs.slash = c == '/'
	switch {
	case isAlpha(c):
		cs.tail = cs.tail<<8&0xffffff | uint32(asciiLower(c))
	case c != '"' && c != '\'' && c != ':' && c != '=':
		cs.tail = 0
	}
	cs.tokSep = cs.tokSep && (c == '=' || c == ':')
	if c == '-' {
		cs.dash++
		cs.kw = 0
		return false
	}
	switch {
	case cs.dash >= 5 && c == 'B':
		cs.kw = 1
	case cs.dash >= 5 && c == 'E':
		cs.kw = 11
	case cs.kw > 0 && cs.kw < 5 && c == "BEGIN"[cs.kw]:
		cs.kw++
		cs.begin = cs.begin || cs.kw == 5
	case cs.kw > 10 && cs.kw < 13 && c == "END"[cs.kw-10]:
		cs.kw++
		cs.endKW = cs.endKW || cs.kw == 13
	default:
		cs.kw = 0
	}
	cs.dash = 0
	return false
}

// quoteToken reports whether the token whose last four bytes are last4 and whose length is n
// is one to three quote marks ('>', '#', '/', '*', ';', '|'), which begin the lines of a
// quoted or commented PEM key (pemQuote).
func quoteToken(last4 uint32, n int) bool {
	if n > 3 {
		return false
	}
	for ; n > 0; n, last4 = n-1, last4>>8 {
		switch byte(last4) {
		case '>', '#', '/', '*', ';', '|':
		default:
			return false
		}
	}
	return true
}

// endToken closes the current token, if any, and updates the PEM state.
func (cs *cutState) endToken() {
	if cs.tokLen == 0 {
		return
	}
	switch {
	case cs.begin:
		cs.pem, cs.hdr, cs.blank = pemBody, false, false
	case cs.pem != pemNone && cs.endKW:
		cs.pem = pemEndLn
		if cs.dash >= 5 {
			cs.pem = pemNone
		}
	case cs.pem == pemEndLn && cs.dash >= 5:
		cs.pem = pemNone
	case cs.pem == pemBody && !cs.tokPEM && !cs.hdr && !quoteToken(cs.last4, cs.tokLen):
		cs.pem = pemNone
	}
	// A header line ("Comment: ...", also escaped inside a token) may hold any text up to its
	// line break.
	cs.hdr = cs.hdr || cs.pem == pemBody && cs.colon
	// The AWS secret key matcher starts at the key's name, not at its value: no cut between.
	// So too the value of "Authorization: Basic", of curl's "-u" or "--user" and of the "-p" or
	// "-a" of passwordOption, and an AWS
	// secret key within 96 bytes of its access key ID (awsSecretNear). And the value of a
	// named credential (credValue): "-SessionToken x", "aws_session_token = x", "Password = x",
	// "Pwd = x", "Password: x", "DB_PASSWD = x", "client_secret": "x"; and a bearer token.
	cs.keyName = cs.tail == 'k'<<16|'e'<<8|'y' || cs.keyName && cs.tokSep ||
		cs.tail == 'k'<<16|'e'<<8|'n' || cs.tail == 'o'<<16|'r'<<8|'d' || cs.tail == 'p'<<16|'w'<<8|'d' ||
		cs.tail == 's'<<16|'w'<<8|'d' || cs.tail == 'r'<<16|'e'<<8|'t' || cs.tail == 'r'<<16|'e'<<8|'r' ||
		cs.tail == 'i'<<16|'o'<<8|'n' || cs.tail == 's'<<16|'i'<<8|'c' || cs.tail == 's'<<16|'e'<<8|'r' ||
		cs.tokLen == 2 && (cs.last4&0xffff == '-'<<8|'u' || cs.last4&0xffff == '-'<<8|'p' || cs.last4&0xffff == '-'<<8|'a')
	if cs.akia {
		cs.hold = 96
	}
	// Nor after the slash of "0176 / 12345678".
	cs.prevOK = !cs.tokDigit && !(cs.tokLen == 4 && cs.tokUpper) && !cs.keyName && !(cs.tokLen == 1 && cs.slash)
	cs.tokLen, cs.dash, cs.kw, cs.begin, cs.endKW = 0, 0, 0, false, false
}
