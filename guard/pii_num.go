package guard

// Matchers that start at a digit: cards, SSNs, phone numbers, IBANs, IPv4, MAC and IPv6
// addresses, base58 and bech32 Bitcoin addresses.

// digit handles a trigger digit at i: it takes the alphanumeric token around it and tries
// the entities that can start at the token. It returns where the scan goes on.
func (s *scan) digit(i int) int {
	t := s.t
	n := len(t)
	// c gathers the classes of the token's bytes: whether it is all digits is known without
	// reading it again.
	ts, c := i, uint8(0)
	for ts > s.lo && isAlnum(t[ts-1]) {
		ts--
		c |= cls[t[ts]]
	}
	te := i + 1
	for te < n && isAlnum(t[te]) {
		c |= cls[t[te]]
		te++
	}
	if wordBefore(t, ts) {
		return te // inside a longer word ("var_123", or cut at lo)
	}
	if c&(cUpper|cLower) == 0 && te-ts < 7 && te < n {
		// The commonest numbers, a few digits and a word or a punctuation mark ("120 ms",
		// "14 days", "1,204", "(about 43)"): the tests below and loneShortGroup would all
		// pass on them. A space may be between groups, or after a German area code with a
		// leading 0 ("030 / 1234"); ':', '-', '.', ')' and '/' join groups, and bytes from
		// 0x80 may be wide separators.
		switch b := t[te]; {
		case b == ' ':
			if te+1 < n && !isDigit(t[te+1]) && t[te+1] != '(' && t[ts] != '0' {
				return te
			}
		case b < 0x80 && b != ':' && b != '-' && b != '.' && b != ')' && b != '/':
			return te
		}
	}
	if !isDigit(t[ts]) {
		return s.letterLed(ts, te)
	}
	if te-ts >= 25 && (t[ts] == '1' || t[ts] == '3') && s.p.on[eCrypto] && base58Check(t[ts:te]) {
		s.emit(eCrypto, ts, te, 1)
		return te
	}
	if te < n && (t[te] == ':' || t[te] == '-' || t[te] == '.') {
		if end, ok := s.hexGroups(ts, te); ok {
			return end
		}
	}
	if c&(cUpper|cLower) != 0 {
		return te
	}
	if te < n && t[te] == '.' && te-ts <= 3 && te+1 < n && isDigit(t[te+1]) { // as ipv4 needs
		if end, ok := ipv4(t, ts); ok {
			if ts >= 2 && t[ts-1] == '/' && (isLower(t[ts-2]) || isUpper(t[ts-2])) {
				return end // a product version, "Chrome/120.0.0.0" in every browser's user agent
			}
			if end+1 >= n || t[end] != '.' || !isDigit(t[end+1]) {
				s.ipv4At(ts, end)
				return end
			}
			// Five or more dotted groups are no address but may be a phone number written
			// with dots, "06.39.98.56.78" in France: numeric scores the whole run.
		}
	}
	end, lone := loneShortGroup(t, ts, te) // most numbers: numeric need not be called
	if !lone {
		end = s.numeric(ts)
	}
	if end == te && te < n && t[te] == ':' {
		end++ // hexGroups tried this colon already
	}
	return end
}

// letterLed tries the entities that start at a token [ts, te) led by a letter and holding a digit.
func (s *scan) letterLed(ts, te int) int {
	t := s.t
	if te-ts == 4 && hasPrefixAt(t, ts, "ya29.") {
		// A Google OAuth access token.
		return s.secret(ts, te+1, spanOf(t, te+1, isKeyByte), 20)
	}
	if te-ts >= 4 && (isUpper(t[ts]) && isUpper(t[ts+1]) || isLower(t[ts]) && isLower(t[ts+1])) &&
		isDigit(t[ts+2]) && isDigit(t[ts+3]) {
		if end, ok := s.iban(ts, te); ok {
			return end
		}
	}
	if te-ts >= 14 && t[ts+2] == '1' && s.p.on[eCrypto] && segwit(t[ts:te]) {
		s.emit(eCrypto, ts, te, 1)
		return te
	}
	if te < len(t) && (t[te] == ':' || t[te] == '-' || t[te] == '.') {
		if end, ok := s.hexGroups(ts, te); ok {
			return end
		}
	}
	if te < len(t) && t[te] == ':' {
		return te + 1
	}
	return te
}

// hexGroups tries a MAC or IPv6 address at the hex token [ts, te) followed by ':', '-' or '.'.
// ok means an address was parsed (reported or not) and the scan goes on at end.
func (s *scan) hexGroups(ts, te int) (end int, ok bool) {
	t := s.t
	if !(te-ts == 2 || te-ts == 4 || t[te] == ':' && te-ts <= 4) {
		return 0, false // no MAC group and no IPv6 group: "2.4", "120-"
	}
	for k := ts; k < te; k++ {
		if !isHex(t[k]) {
			return 0, false
		}
	}
	if te-ts == 2 || te-ts == 4 {
		if end, ok := s.mac(ts); ok {
			return end, true
		}
	}
	if t[te] == ':' && te-ts <= 4 {
		return s.ipv6(ts)
	}
	return 0, false
}

// ipv4 parses a dotted quad at i and returns its end.
func ipv4(t []byte, i int) (int, bool) {
	for k := 0; k < 4; k++ {
		j, v := i, 0
		for j < len(t) && j-i < 4 && isDigit(t[j]) {
			v = v*10 + int(t[j]-'0')
			j++
		}
		if j == i || j-i > 3 || v > 255 {
			return 0, false
		}
		if k < 3 {
			if j >= len(t) || t[j] != '.' {
				return 0, false
			}
			j++
		}
		i = j
	}
	return i, true
}

// ipv4At reports the dotted quad [start, end) unless it is part of a longer dotted number
// (an OID, a version) or a word such as "version" comes right before it.
func (s *scan) ipv4At(start, end int) {
	t := s.t
	if start > 0 && (t[start-1] == '.' || t[start-1] == '-' && wordBefore(t, start-1)) {
		return
	}
	if wordAt(t, end) || end+1 < len(t) && (t[end] == '.' || t[end] == '-') && isAlnum(t[end+1]) {
		return
	}
	if versionNameBefore(t, start) || versionBumpBefore(t, start) {
		return
	}
	pos, neg := nearWords(t, start)
	s.emit(eIP, start, end, adjust(0.6, ctxIP, pos, neg))
}

// idNameBefore reports whether the word right before t[i], past a few quotes, brackets, '=',
// ':' or spaces, names an identifier: "id", "ID", or a name ending in "_id", "-id", "Id" or
// "ID" ("trace_id=", "traceId": , "X-Request-Id: ", "user id ").
func idNameBefore(t []byte, i int) bool {
	j := i
	for j > 0 && i-j < 4 && !isAlnum(t[j-1]) && t[j-1] != '\n' && t[j-1] != '_' {
		j--
	}
	if j < 2 || t[j-2]|0x20 != 'i' || t[j-1]|0x20 != 'd' {
		return false
	}
	if j == 2 || !isAlnum(t[j-3]) {
		return true // "id", "_id", "-id", "Id"
	}
	return t[j-2] == 'I' && (t[j-1] == 'd' && !isUpper(t[j-3]) || t[j-1] == 'D')
}

// versionNameBefore reports whether the identifier right before t[i], past a few quotes,
// brackets, '=', ':' or spaces, has "version" as one of its parts: AssemblyVersion("1.0.0.0"),
// appVersion: 10.20.30.40, __version__ = "2.1.0.3", android:versionName="1.2.0.5",
// os_version_code. nearWords knows only the whole word "version"; "conversion" is no name.
func versionNameBefore(t []byte, i int) bool {
	j := i
	for j > 0 && i-j < 5 && !isWord(t[j-1]) && t[j-1] != '\n' {
		j--
	}
	e := j
	for j > 0 && e-j < 48 && isWord(t[j-1]) {
		j--
	}
	for k := j; k+7 <= e; k++ {
		if hasPrefixFold(t, k, "version") &&
			(k == j || t[k-1] == '_' || t[k] == 'V' && !isUpper(t[k-1])) &&
			(k+7 == e || !isLower(t[k+7])) {
			return true
		}
	}
	return false
}

// bumpVerbs say that a line changes a dependency's version.
var bumpVerbs = [...]string{"bump", "bumps", "bumped", "bumping", "upgrade", "upgrades", "upgraded",
	"upgrading", "downgrade", "downgrades", "downgraded", "downgrading"}

// versionBumpBefore reports whether the dotted quad at i is the "from" or "to" version of a
// dependency bump: the word right before it is "from" or "to" and a bump verb is a word
// before it on its line, within 200 bytes ("Bump Newtonsoft.Json from 5.1.1.0 to 5.1.2.0" in a
// Dependabot title, "chore(deps): bump X from ..."). nearWords reads five words back, which a
// long package name and the first version fill.
func versionBumpBefore(t []byte, i int) bool {
	j := i
	for j > 0 && i-j < 3 && (t[j-1] == ' ' || t[j-1] == '`' || t[j-1] == '"' || t[j-1] == '\'') {
		j--
	}
	if j == i || !(hasPrefixFold(t, j-4, "from") && !wordBefore(t, j-4) ||
		hasPrefixFold(t, j-2, "to") && !wordBefore(t, j-2)) {
		return false
	}
	for k := j - 3; k >= 0 && j-k < 200 && t[k] != '\n'; k-- {
		if wordBefore(t, k) || !isAlpha(t[k]) || t[k]|0x20 != 'b' && t[k]|0x20 != 'u' && t[k]|0x20 != 'd' {
			continue
		}
		e := k
		for e < len(t) && e-k < 12 && isAlpha(t[e]) {
			e++
		}
		var buf [12]byte
		for x := k; x < e; x++ {
			buf[x-k] = asciiLower(t[x])
		}
		for _, v := range bumpVerbs {
			if string(buf[:e-k]) == v {
				return true
			}
		}
	}
	return false
}

const maxGroups = 12

// numRun is a run of digit groups joined by single separators: "+1 (415) 555-0132". A no-break
// space or an en dash counts as ' ' or '-' (see wideSep); the slash after a German area code
// is '/'.
type numRun struct {
	n     int
	gs    [maxGroups]int  // group start
	ge    [maxGroups]int  // group end
	sep   [maxGroups]byte // separator before group k>0: ' ', '-', '.', '/', or ')' right after "(415)"
	paren int             // the group in parentheses, or -1
	plus  int             // index of the '+' before group 0, or -1
	cum   [maxGroups + 1]int
	d     [40]byte // digit values
}

func (s *scan) parseRun(r *numRun, i int) {
	t := s.t
	n := len(t)
	r.n, r.paren, r.plus = 0, -1, -1
	inParen := i-1 >= s.lo && t[i-1] == '('
	if i-1 >= s.lo && t[i-1] == '+' {
		r.plus = i - 1
	}
	var sep byte
	nd := 0
	for r.n < maxGroups {
		// The digits' values are stored as the group is read; those of a group that does
		// not fit are never read.
		j := i
		for j < n {
			c := t[j] - '0'
			if c > 9 {
				break
			}
			if k := nd + j - i; k < len(r.d) {
				r.d[k] = c
			}
			j++
		}
		if nd+j-i > len(r.d) {
			break
		}
		k := j
		if inParen {
			if j < n && t[j] == ')' {
				r.paren = r.n
				k = j + 1
			} else if r.n > 0 {
				break
			}
		}
		r.gs[r.n], r.ge[r.n], r.sep[r.n], r.cum[r.n] = i, j, sep, nd
		nd += j - i
		r.n++
		r.cum[r.n] = nd
		inParen = false
		if k >= n {
			break
		}
		c := t[k]
		if k > j && isDigit(c) {
			sep, i = ')', k
			continue
		}
		if (c == ' ' || c == '-' || c == '.') && k+1 < n {
			if isDigit(t[k+1]) {
				sep, i = c, k+1
				continue
			}
			if c != '.' && t[k+1] == '(' && r.paren < 0 && k+2 < n && isDigit(t[k+2]) {
				sep, i, inParen = c, k+2, true
				continue
			}
		}
		if w, sc := wideSep(t, k); w > 0 && k+w < n && isDigit(t[k+w]) {
			sep, i = sc, k+w
			continue
		}
		if w := areaSlash(t, r.gs[0], k); r.n == 1 && k == j && w > 0 {
			sep, i = '/', k+w
			continue
		}
		break
	}
}

// wideSep returns the length of a non-ASCII separator between digit groups at i and the
// ASCII one it stands for: no-break, narrow no-break and thin spaces (French and German
// typography, text from Word, Outlook and macOS) as ' ', en dash and non-breaking hyphen as
// '-'; 0 when there is none.
func wideSep(t []byte, i int) (int, byte) {
	if i+1 < len(t) && t[i] == 0xc2 && t[i+1] == 0xa0 { // U+00A0
		return 2, ' '
	}
	if i+2 < len(t) && t[i] == 0xe2 && t[i+1] == 0x80 {
		switch t[i+2] {
		case 0xaf, 0x89: // U+202F, U+2009
			return 3, ' '
		case 0x93, 0x91: // U+2013, U+2011
			return 3, '-'
		}
	}
	return 0, 0
}

// areaSlash returns the length of the slash after a German area code, the digit group
// [a, k) ("030/12345678", "0176 / 12345678"), up to the next group; 0 when there is none.
// phoneScore scores such numbers low: they need a context word.
func areaSlash(t []byte, a, k int) int {
	if k-a < 3 || k-a > 6 || t[a] != '0' {
		return 0
	}
	w := 0
	switch {
	case hasPrefixAt(t, k, "/"):
		w = 1
	case hasPrefixAt(t, k, " / "):
		w = 3
	}
	if w == 0 || k+w >= len(t) || !isDigit(t[k+w]) {
		return 0
	}
	return w
}

// numeric parses the digit run at i, which loneShortGroup did not take, and reports its
// leftmost-longest entity: candidates start at the run or after a space in it and end at its
// end or before a space.
func (s *scan) numeric(i int) int {
	r := &s.run
	s.parseRun(r, i)
	if r.n == 0 { // one group longer than any entity
		return spanOf(s.t, i, isDigit)
	}
	end := r.ge[r.n-1]
	if r.paren == r.n-1 {
		end++
	}
	if r.cum[r.n] < 7 {
		return end
	}
	for j := 0; j < r.n; j++ {
		if j > 0 && r.sep[j] != ' ' {
			continue
		}
		for k := r.n; k > j; k-- {
			if k < r.n && r.sep[k] != ' ' {
				continue
			}
			nd := r.cum[k] - r.cum[j]
			if nd < 7 {
				break
			}
			if nd > 19 {
				continue
			}
			if e, a, b, sc, ok := s.classify(r, j, k); ok {
				s.emit(e, a, b, sc)
				return b
			}
		}
	}
	return end
}

// loneShortGroup returns j, the end of the digit group at i, when the group is shorter than
// any entity and parseRun would join no other group to it: most numbers in prose ("120 ms",
// "2.4", "14 days"). It is a shortcut, not a rule: ok false sends the group to parseRun.
func loneShortGroup(t []byte, i, j int) (end int, ok bool) {
	if j-i >= 7 {
		return 0, false
	}
	if j < len(t) {
		switch c := t[j]; {
		case c == ')':
			return 0, false
		case (c == ' ' || c == '-' || c == '.') && j+1 < len(t) && (isDigit(t[j+1]) || t[j+1] == '('):
			return 0, false
		case c >= 0xc2:
			if w, _ := wideSep(t, j); w > 0 {
				return 0, false
			}
		case t[i] == '0' && (c == '/' || c == ' ') && areaSlash(t, i, j) > 0:
			return 0, false
		}
	}
	return j, true
}

// classify scores the groups [j, k) of r as a card, SSN or phone number.
func (s *scan) classify(r *numRun, j, k int) (e entity, start, end int, score float64, ok bool) {
	t := s.t
	start, end = r.gs[j], r.ge[k-1]
	plus := j == 0 && r.plus >= 0
	switch {
	case r.paren == j:
		start--
	case plus:
		start = r.plus
	}
	if r.paren == k-1 {
		end++
	}
	if start < s.lo || j == 0 && !leftOK(t, start) || k == r.n && !rightOK(t, end) {
		return
	}
	d := r.d[r.cum[j]:r.cum[k]]
	g := k - j
	paren := r.paren >= j && r.paren < k
	var sp byte
	uniform := true
	for x := j + 1; x < k; x++ {
		if x == j+1 {
			sp = r.sep[x]
		} else if r.sep[x] != sp {
			uniform = false
		}
	}
	var pos, neg uint8
	var code bool
	ctx := func() {
		// numeric tries several ends for one start: read its context words once.
		if s.ctxStart != start+1 {
			s.ctxPos, s.ctxNeg = nearWords(t, start)
			s.ctxCode = codeBefore(t, start)
			s.ctxStart = start + 1
		}
		pos, neg, code = s.ctxPos, s.ctxNeg, s.ctxCode
	}
	if !plus && !paren && s.p.on[eCard] && len(d) >= 12 && uniform && (g == 1 || sp == ' ' || sp == '-') &&
		cardGroups(r, j, k) && cardBrand(d) && !allSame(d) && luhn(d) {
		ctx()
		// 17 to 19 bare digits named by an ID key are a 64-bit identifier (a trace or span
		// ID, a Snowflake ID), a tenth of which pass Luhn: "traceId=4661605344688263728".
		// So are they after an identifier word with no card word nearer, wherever it is in
		// the window ("order 4526018159083016612", "tracking number ..."): a 16-digit card
		// there is a customer's, but 19-digit cards are rare and such ids common.
		idKey := g == 1 && len(d) > 16 && pos&ctxCard == 0 && (neg&ctxCard != 0 || idNameBefore(t, start))
		if sc := adjust(1, ctxCard, pos, neg); !idKey && s.want(eCard, sc) {
			return eCard, start, end, sc, true
		}
	}
	best := 0.0
	if !plus && !paren && len(d) == 9 && s.p.on[eSSN] {
		if sc := ssnScore(r, j, k, d, sp, uniform); sc > 0 {
			ctx()
			if sc = adjust(sc, ctxSSN, pos, neg); !code && s.want(eSSN, sc) {
				e, best = eSSN, sc
			}
		}
	}
	if s.p.on[ePhone] {
		if sc := phoneScore(r, j, k, d, sp, uniform, plus); sc > 0 {
			ctx()
			if sc = adjust(sc, ctxPhone, pos, neg); !code && s.want(ePhone, sc) && sc > best {
				e, best = ePhone, sc
			}
		}
	}
	return e, start, end, best, best > 0
}

// codeBefore reports whether the number at i goes on a code written in groups: the token a
// space or no-break space before it mixes letters and digits and ends with a digit, as in
// the UPS tracking number "1Z 999 AA1 01 2345 6784". Phone numbers and SSNs follow words
// and punctuation, not such tokens; a year or a count before them is all digits, as is the
// group before a number that starts inside a run.
func codeBefore(t []byte, i int) bool {
	k := i - 1
	switch {
	case k >= 0 && t[k] == ' ':
		k--
	case k >= 1 && t[k-1] == 0xc2 && t[k] == 0xa0:
		k -= 2
	default:
		return false
	}
	if k < 0 || !isDigit(t[k]) {
		return false
	}
	letter := false
	for ; k >= 0 && isAlnum(t[k]); k-- {
		letter = letter || !isDigit(t[k])
	}
	return letter
}

// leftOK reports whether a number may start at i: not glued to a word, a decimal point, a
// path, an identifier ("INV-2024") or a time ("10:30").
func leftOK(t []byte, i int) bool {
	if i == 0 {
		return true
	}
	switch c := t[i-1]; {
	case isWord(c), c == '.', c == '/', c == '\\', c == '$', c == '+':
		return false
	case c == '-':
		return !wordBefore(t, i-1)
	case c == ':':
		return !(i >= 2 && isDigit(t[i-2]))
	}
	return true
}

// rightOK reports whether a number may end at i.
func rightOK(t []byte, i int) bool {
	if i >= len(t) {
		return true
	}
	c := t[i]
	if isWord(c) || c == '%' {
		return false
	}
	if (c == '.' || c == '-' || c == '/' || c == ':') && i+1 < len(t) && isAlnum(t[i+1]) {
		return false
	}
	return true
}

func glen(r *numRun, x int) int { return r.ge[x] - r.gs[x] }

// cardGroups reports whether the groups [j, k) are laid out like a card number: one block,
// fours (the last one shorter), or Amex/Diners 4-6-5 and 4-6-4.
func cardGroups(r *numRun, j, k int) bool {
	g := k - j
	if g == 1 {
		return true
	}
	if g == 3 && glen(r, j) == 4 && glen(r, j+1) == 6 && (glen(r, j+2) == 5 || glen(r, j+2) == 4) {
		return true
	}
	if g < 3 {
		return false
	}
	for x := j; x < k-1; x++ {
		if glen(r, x) != 4 {
			return false
		}
	}
	return glen(r, k-1) <= 4
}

// ssnScore scores nine digits as a US SSN, Presidio's patterns: ddd-dd-dddd (or with spaces
// or dots) is medium, nine plain digits, ddddd-dddd and ddd-dddddd are very weak. Area 000,
// 666 and 9xx, group 00 and serial 0000 are never issued.
func ssnScore(r *numRun, j, k int, d []byte, sp byte, uniform bool) float64 {
	var sc float64
	switch g := k - j; {
	case g == 3 && uniform && sp != '/' && glen(r, j) == 3 && glen(r, j+1) == 2:
		sc = 0.5
	case g == 1:
		sc = 0.05
	case g == 2 && sp == '-' && (glen(r, j) == 5 || glen(r, j) == 3):
		sc = 0.05
	default:
		return 0
	}
	area := int(d[0])*100 + int(d[1])*10 + int(d[2])
	if area == 0 || area == 666 || area >= 900 || d[3] == 0 && d[4] == 0 ||
		d[5] == 0 && d[6] == 0 && d[7] == 0 && d[8] == 0 || allSame(d) {
		return 0
	}
	return sc
}

// phoneScore scores the groups [j, k) as a phone number: international with a valid calling
// code and national number length (0.7), North American (0.6), national with a trunk 0 (0.5)
// or in a country's own layout (nationalShape); plain digit strings and seven-digit locals
// need a context word.
func phoneScore(r *numRun, j, k int, d []byte, sp byte, uniform, plus bool) float64 {
	g := k - j
	nd := len(d)
	paren := r.paren >= j && r.paren < k
	if plus || nd >= 10 && d[0] == 0 && d[1] == 0 && glen(r, j) >= 4 {
		intl := d
		base := 0.7
		if !plus {
			intl, base = d[2:], 0.5
		}
		cc := callingCode(intl)
		first := glen(r, j)
		if !plus {
			first -= 2
		}
		if cc == 0 || first < cc || len(intl) > 15 {
			return 0
		}
		nsn := len(intl) - cc
		if paren && glen(r, r.paren) == 1 && d[r.cum[r.paren]-r.cum[j]] == 0 {
			nsn-- // "+44 (0)20 ..."
		}
		lo, hi := nsnRange(intl[:cc])
		if nsn < lo || nsn > hi || cc == 1 && intl[1] < 2 {
			return 0
		}
		return base
	}
	if paren && r.paren != j && !(r.paren == j+1 && glen(r, j) == 1) {
		return 0 // parentheses only around the area code
	}
	// North America: [1] NXX NXX XXXX.
	x, dd := j, d
	if nd == 11 && d[0] == 1 && (g == 1 || glen(r, j) == 1) {
		dd = d[1:]
		if g > 1 {
			x++
		}
	}
	if len(dd) == 10 && dd[0] != 0 {
		switch {
		case g == 1:
			return 0.2
		case k-x == 3 && glen(r, x) == 3 && glen(r, x+1) == 3:
			if dd[0] >= 2 {
				return 0.6
			}
			return 0.2
		}
	}
	if sc := nationalShape(r, j, k, d, sp, uniform, paren); sc > 0 {
		return sc
	}
	if nd == 7 && g == 2 && glen(r, j) == 3 && sp != ')' && sp != '/' {
		return 0.1
	}
	if sp == '/' {
		// A German area code before a slash ("030/12345678"): dates and fractions look
		// alike, so only a context word makes it a phone number.
		if g == 2 && d[0] == 0 && d[1] != 0 && nd >= 9 && nd <= 12 {
			return 0.1
		}
		return 0
	}
	// National numbers with a trunk 0: "020 7946 0958", "06 39 98 56 78", "(02) 5550 4001".
	if d[0] == 0 && d[1] != 0 && nd >= 9 && nd <= 12 {
		if g == 1 {
			return 0.2
		}
		ok := glen(r, j) >= 2 && glen(r, j) <= 5 && (uniform || paren && r.paren == j && uniformFrom(r, j+2, k))
		for y := j + 1; ok && y < k; y++ {
			l := glen(r, y)
			ok = l >= 2 && l <= 8
		}
		if ok {
			return 0.5
		}
	}
	if nd <= 15 {
		for y := j; y < k; y++ {
			if glen(r, y) < 2 {
				return 0
			}
		}
		return 0.05
	}
	return 0
}

// nationalShape scores the groups [j, k) as a national number without a trunk 0 (or, in
// India, a trunk 0 before a six-digit group) in a layout only phone numbers have there,
// when the groups are the whole run:
//
//   - Brazil, a two-digit area code without a 0 then 9XXXX-XXXX (mobile) or XXXX-XXXX with
//     X 2-5 (landline): 0.5 with the area code in parentheses, "(11) 91234-5678"; written
//     "11 91234-5678" it needs a context word.
//   - India, a mobile 6-9XXXX XXXXX: 0.4, "98765 43210", so that a negative word nearer than
//     any phone word drops it (round figures, "70000 80000", score nothing); with the trunk
//     0, "098765 43210", 0.5.
//   - Spain, 6-9XX XX XX XX: 0.4, "612 34 56 78". Spanish numbers in threes, "912 345 678",
//     are written like amounts and keep the weak score of plain groups.
//   - China, a mobile 13X-19X XXXX XXXX: 0.4, "138 0013 8000" or "138-0013-8000".
//   - Mexico, a two-digit area code (Mexico City, Guadalajara, Monterrey) XX XXXX XXXX, "55
//     1234 5678": 0.2, a context word needed; three-digit area codes write like US numbers.
func nationalShape(r *numRun, j, k int, d []byte, sp byte, uniform, paren bool) float64 {
	g, nd := k-j, len(d)
	if j != 0 || k != r.n {
		return 0 // two groups of a longer run: a row of figures, "71234 80321 91234"
	}
	switch {
	case g == 3 && (nd == 11 || nd == 10) && glen(r, j) == 2 && d[0] != 0 && d[1] != 0 &&
		r.sep[j+2] == '-' && glen(r, j+2) == 4 &&
		(nd == 11 && d[2] == 9 || nd == 10 && d[2] >= 2 && d[2] <= 5):
		if paren && r.paren == j && (sp == ' ' || sp == ')') {
			return 0.5
		}
		if !paren && sp == ' ' {
			return 0.2
		}
	case g == 2 && sp == ' ' && nd == 10 && glen(r, j) == 5 && d[0] >= 6 &&
		!zeros(d[2:5]) && !zeros(d[7:]):
		return 0.4 // but round figures, "70000 80000"
	case g == 2 && sp == ' ' && nd == 11 && glen(r, j) == 6 && d[0] == 0 && d[1] >= 6:
		return 0.5
	case g == 4 && uniform && sp == ' ' && nd == 9 && glen(r, j) == 3 && d[0] >= 6 &&
		glen(r, j+1) == 2 && glen(r, j+2) == 2:
		return 0.4
	case g == 3 && uniform && (sp == ' ' || sp == '-') && nd == 11 && glen(r, j) == 3 &&
		glen(r, j+1) == 4 && d[0] == 1 && d[1] >= 3:
		return 0.4
	case g == 3 && uniform && sp == ' ' && nd == 10 && glen(r, j) == 2 && glen(r, j+1) == 4 &&
		d[0] >= 3 && d[0] <= 8 && !zeros(d[2:]):
		return 0.2
	}
	return 0
}

// zeros reports whether every digit of d is 0.
func zeros(d []byte) bool {
	for _, c := range d {
		if c != 0 {
			return false
		}
	}
	return true
}

// uniformFrom reports whether the separators before groups [from, k) are all the same.
func uniformFrom(r *numRun, from, k int) bool {
	for x := from + 1; x < k; x++ {
		if r.sep[x] != r.sep[from] {
			return false
		}
	}
	return true
}
