package guard

import (
	"bytes"
	"encoding/base64"
	"unicode"
	"unicode/utf8"
)

// Matchers that start at '@' and ':': emails, credentials in URLs, and the MAC and IPv6 parsers.
// The secrets (API keys and tokens, JWTs, PEM private keys) are in pii_secret.go.

// at handles '@' at i: credentials in a URL, else an email address.
func (s *scan) at(i int) int {
	if end, ok := s.urlCred(i); ok {
		return end
	}
	return s.email(i)
}

// localRune returns the size of the non-ASCII letter or digit that ends b, or 0 when b does
// not end in one: such letters may be in an email's local part, where quotes and other
// punctuation may not.
func localRune(b []byte) int {
	if len(b) == 0 || b[len(b)-1] < utf8.RuneSelf {
		return 0
	}
	r, n := utf8.DecodeLastRune(b)
	if r == utf8.RuneError || !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) {
		return 0
	}
	return n
}

// email tries an email address around the '@' at i.
func (s *scan) email(i int) int {
	t := s.t
	a := i
	for a > s.lo && i-a < 64 {
		if cls[t[a-1]]&cLocal != 0 {
			a--
		} else if t[a-1] == '\'' && a-1 > s.lo && isAlnum(t[a-2]) && a < i && isAlnum(t[a]) {
			a-- // an apostrophe between letters, "o'reilly@" (RFC 5322 atext); not a quote around it
		} else if n := localRune(t[s.lo:a]); n > 0 {
			a -= n // a letter of another script: "josé.garcía@", RFC 6531
		} else {
			break
		}
	}
	if a > 0 && (cls[t[a-1]]&cLocal != 0 || a > s.lo && localRune(t[s.lo:a]) > 0) {
		return i + 1 // the local part starts before lo or is too long
	}
	for a < i && (t[a] == '.' || t[a] == '-' || t[a] == '+') {
		a++
	}
	if a == i || t[i-1] == '.' {
		return i + 1
	}
	for k := a + 1; k < i; k++ {
		if t[k] == '.' && t[k-1] == '.' {
			return i + 1
		}
	}
	// Domain: labels of [A-Za-z0-9-] and letters of other scripts ("bücher.de", RFC 5890)
	// joined by single dots, ending in a TLD; if the last label is no TLD ("x@df.values",
	// "a@b.com.Thanks") fall back to the last one that is.
	end, labels, best := i+1, 0, -1
	p := i + 1
	for p-i < 254 {
		q := p
		for q < len(t) {
			if isAlnum(t[q]) || t[q] == '-' {
				q++
			} else if n := domainRune(t[q:]); n > 0 {
				q += n
			} else {
				break
			}
		}
		for q > p && t[q-1] == '-' {
			q-- // "a@b.com--" ends at "com"
		}
		if q == p || q-p > 63 || t[p] == '-' {
			break
		}
		labels++
		if labels >= 2 && (isTLD(t[p:q]) || idnTLDs[string(t[p:q])]) {
			best = q
		}
		end = q
		if q+1 < len(t) && t[q] == '.' && (isAlnum(t[q+1]) || domainRune(t[q+1:]) > 0) {
			p = q + 1
			continue
		}
		break
	}
	if best < 0 {
		return i + 1
	}
	if best == end && end < len(t) && (t[end] == '@' || t[end] == '_' && !emphasisClose(t, a, end)) {
		return end
	}
	if best < len(t) && t[best] == '_' {
		for a < i && t[a] == '_' {
			a++ // the address is "dave@example.com" in Markdown's "_dave@example.com_"
		}
	}
	if best+1 < len(t) && t[best] == ':' && (t[best+1] == '/' || t[best+1] == '~' || isAlnum(t[best+1])) {
		// user@host:path is an SSH or scp address (git clone git@github.com:org/repo.git),
		// not a mailbox; an address that ends a clause ("mail a@b.com: thanks") has a space.
		return best
	}
	s.emit(eEmail, a, best, 1)
	return best
}

// emphasisClose reports whether the '_' run at t[end] closes a Markdown emphasis that a '_'
// run at t[a] opens, as in "_dave@example.com_" or "__dave@example.com__": nothing of a word
// follows it, and the opening run is no word's tail.
func emphasisClose(t []byte, a, end int) bool {
	if t[a] != '_' || a > 0 && isWord(t[a-1]) {
		return false
	}
	u := end
	for u < len(t) && t[u] == '_' {
		u++
	}
	return u == len(t) || !isWord(t[u]) && domainRune(t[u:]) == 0
}

// domainRune returns the size of the non-ASCII letter, digit or mark that starts b, or 0 when
// b does not start with one: such letters may be in a domain name's labels.
func domainRune(b []byte) int {
	if len(b) == 0 || b[0] < utf8.RuneSelf {
		return 0
	}
	r, n := utf8.DecodeRune(b)
	if r == utf8.RuneError || !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) {
		return 0
	}
	return n
}

// idnTLDs are top-level domains written in other scripts that addresses in use end in. Other
// internationalised domains end in an ASCII TLD ("bücher.de") or are written in punycode
// ("xn--bcher-kva.de"), which isTLD knows.
var idnTLDs = map[string]bool{
	"рф": true, "рус": true, "укр": true, "бел": true, "срб": true, "қаз": true, "мкд": true, "бг": true,
	"中国": true, "中國": true, "公司": true, "网络": true, "台灣": true, "台湾": true, "香港": true,
	"日本": true, "한국": true, "ελ": true, "ευ": true, "भारत": true, "ไทย": true,
	"السعودية": true, "امارات": true, "مصر": true, "ایران": true, "ישראל": true,
}

// urlCred tries scheme://user:password@host with the '@' at i. The finding is the userinfo;
// when the password is itself a SECRET (a GitHub token as password) the user part and the
// secret are reported apart.
func (s *scan) urlCred(i int) (int, bool) {
	t := s.t
	lo := s.lo
	// The password may have been reported already as a SECRET (the scan met its prefix
	// first): look behind it, and put the user part in front of it.
	var pw *Finding
	if n := len(s.dst); n > 0 && s.dst[n-1].End == i && s.dst[n-1].Entity == EntitySecret &&
		s.dst[n-1].Start > 0 && t[s.dst[n-1].Start-1] == ':' {
		pw = &s.dst[n-1]
		lo = s.from
		if n > 1 {
			lo = max(lo, s.dst[n-2].End)
		}
	}
	a := i
	for a > lo && i-a < 256 && userinfoByte(t[a-1]) {
		a--
	}
	// a is just after "://" when this is a URL; userinfo may itself hold ':' but not "//".
	for k := a; k+2 < i; k++ {
		if t[k] == ':' && t[k+1] == '/' && t[k+2] == '/' {
			a = k + 3
		}
	}
	if a < 3 || !hasPrefixAt(t, a-3, "://") || a == i {
		return 0, false
	}
	sc := a - 3
	for sc > 0 && (isAlnum(t[sc-1]) || t[sc-1] == '+' || t[sc-1] == '.' || t[sc-1] == '-') {
		sc--
	}
	if sc == a-3 || !isAlpha(t[sc]) || i+1 >= len(t) || !(isAlnum(t[i+1]) || t[i+1] == '[') {
		return 0, false
	}
	c := a
	for c < i && t[c] != ':' {
		c++
	}
	if c >= i-1 {
		return i + 1, true // a user name only: no credential, and no email either
	}
	if !s.p.on[eURLCred] {
		return i + 1, true
	}
	if pw != nil {
		if pw.Start != c+1 || c == a {
			return i + 1, true
		}
		secret := *pw
		s.dst, s.lo = s.dst[:len(s.dst)-1], a
		s.emit(eURLCred, a, c, 1)
		s.dst, s.lo = append(s.dst, secret), i
		return i + 1, true
	}
	// A known token as the password: report it as a SECRET of its own.
	sub := scan{p: s.p, t: t[:i], lo: c + 1}
	if k := c + 1; k < i {
		switch trig[t[k]] {
		case tA:
			sub.upperA(k)
		default:
			for k < i && trig[t[k]] != tUnder && trig[t[k]] != tDash {
				k++
			}
			if k < i {
				if trig[t[k]] == tUnder {
					sub.under(k)
				} else {
					sub.dash(k)
				}
			}
		}
	}
	if len(sub.dst) == 1 && sub.dst[0].Start == c+1 && sub.dst[0].End == i {
		if c > a {
			s.emit(eURLCred, a, c, 1)
		}
		s.lo = c + 1
		s.emit(eSecret, c+1, i, 1)
		return i + 1, true
	}
	s.emit(eURLCred, a, i, 1)
	return i + 1, true
}

func userinfoByte(c byte) bool {
	if isAlnum(c) {
		return true
	}
	switch c {
	case '.', '_', '~', '%', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '-', '/':
		return true
	case '#', '?':
		// Not allowed unescaped in a URL's userinfo, but written in passwords all the same
		// ("postgres://u:pa#ss@db"): without them the user and the password's start leaked.
		return true
	}
	return false
}

// slackHook tries a Slack incoming webhook URL, whose "://" is at i:
// https://hooks.slack.com/services/T<team>/B<bot>/<24 random characters>.
func (s *scan) slackHook(i int) int {
	t := s.t
	a := i - 5
	if !hasPrefixAt(t, a, "https") {
		a++
		if !hasPrefixAt(t, a, "http") {
			return i + 1
		}
	}
	p := i + len("://hooks.slack.com/services/")
	for _, lead := range [2]byte{'T', 'B'} {
		e := p + 1
		for e < len(t) && (isUpper(t[e]) || isDigit(t[e])) {
			e++
		}
		if byteOr0(t, p) != lead || e-p < 9 || e-p > 16 || byteOr0(t, e) != '/' {
			return i + 1
		}
		p = e + 1
	}
	e := spanOf(t, p, isAlnum)
	var c uint8
	for k := p; k < e; k++ {
		c |= cls[t[k]]
	}
	if e-p < 24 || e-p > 32 || c&cUpper == 0 || c&cLower == 0 || a < s.lo || wordBefore(t, a) {
		return i + 1
	}
	s.emit(eSecret, a, e, 1)
	return e
}

// basicAuth reports the credentials of HTTP Basic authentication after "Authorization:" (the
// ':' is at p-1): "Basic " and the base64 of "user:password", which anyone can decode.
// bearerAuth tries an opaque bearer token at p, after "Authorization:" ("Authorization:
// Bearer 8f2c...", a header in a pasted curl command or log): 12 to 512 bytes of RFC 6750's
// token characters with a letter and a digit, no placeholder ("Bearer $TOKEN", "Bearer
// <token>", "Bearer YOUR_TOKEN"). JWTs and provider keys are found by their own matchers too.
func (s *scan) bearerAuth(p int) (int, bool) {
	t := s.t
	for q := p; p < len(t) && p-q < 3 && (t[p] == ' ' || t[p] == '"' || t[p] == '\''); p++ {
	}
	if !hasPrefixFold(t, p, "bearer ") {
		return 0, false
	}
	p += len("bearer ")
	var c uint8
	e := p
	for e < len(t) && e-p <= 512 && (isAlnum(t[e]) || t[e] == '-' || t[e] == '.' || t[e] == '_' || t[e] == '~' || t[e] == '+' || t[e] == '/') {
		c |= cls[t[e]]
		e++
	}
	for e < len(t) && t[e] == '=' {
		e++
	}
	if e-p < 12 || e-p > 512 || c&cDigit == 0 || c&(cUpper|cLower) == 0 || p < s.lo || credPlaceholder(t[p:e]) {
		return 0, false
	}
	s.emit(eSecret, p, e, 1)
	return e, true
}

func (s *scan) basicAuth(p int) (int, bool) {
	t := s.t
	for q := p; p < len(t) && p-q < 3 && (t[p] == ' ' || t[p] == '"' || t[p] == '\''); p++ {
	}
	if !hasPrefixFold(t, p, "basic ") {
		return 0, false
	}
	p += len("basic ")
	e := p
	for e < len(t) && e-p < 344 && (isAlnum(t[e]) || t[e] == '+' || t[e] == '/') {
		e++
	}
	for k := 0; k < 2 && e < len(t) && t[e] == '='; k++ {
		e++
	}
	if e-p < 8 || (e-p)%4 != 0 || e-p > 344 || wordAt(t, e) || p < s.lo {
		return 0, false
	}
	var buf [258]byte
	n, err := base64.StdEncoding.Decode(buf[:], t[p:e])
	if err != nil {
		return 0, false
	}
	c := bytes.IndexByte(buf[:n], ':')
	if c <= 0 || c == n-1 {
		return 0, false // no user or no password: "Basic realm=..." or a token
	}
	for _, b := range buf[:n] {
		if b < 0x20 || b == 0x7f {
			return 0, false
		}
	}
	s.emit(eSecret, p, e, 1)
	return e, true
}

// colon handles ':' at i for Slack webhook URLs, and for MAC and IPv6 addresses whose first
// group has no digit ("fe:..", "::1", "ff:ff:ff:ff:ff:ff"); groups with digits were tried from
// the digit.
func (s *scan) colon(i int) int {
	t := s.t
	if i+1 < len(t) && t[i+1] == '/' && hasPrefixAt(t, i, "://hooks.slack.com/services/") {
		return s.slackHook(i)
	}
	if k := i; k >= 13 && t[k-1]|0x20 == 'n' || k >= 14 && (t[k-1] == '"' || t[k-1] == '\'') && t[k-2]|0x20 == 'n' {
		if t[k-1]|0x20 != 'n' {
			k-- // "Authorization": in JSON or a dict
		}
		if hasPrefixFold(t, k-13, "authorization") {
			if end, ok := s.basicAuth(i + 1); ok {
				return end
			}
			if end, ok := s.bearerAuth(i + 1); ok {
				return end
			}
		}
	}
	// A named credential: "Password: hunter2x!", "password: 's3cr3t'", "client_secret": "..."
	if k := i; k >= 4 {
		if t[k-1] == '"' || t[k-1] == '\'' {
			k--
		}
		switch t[k-1] | 0x20 {
		case 'd', 't', 'n', 'y':
			if e := s.named(i, k); e > i+1 {
				return e
			}
		}
	}
	ts := i
	for ts > s.lo && i-ts < 4 && isHex(t[ts-1]) {
		ts--
	}
	if wordBefore(t, ts) {
		return i + 1
	}
	if ts == i {
		if i+1 < len(t) && t[i+1] == ':' && !(i > 0 && (t[i-1] == ':' || t[i-1] == '.')) {
			if end, ok := s.ipv6(i); ok {
				return end
			}
		}
		return i + 1
	}
	if end, ok := s.hexGroups(ts, i); ok {
		return end
	}
	return i + 1
}

// mac tries a MAC address at i: six pairs joined by ':' or '-', or Cisco's three quads joined
// by '.' (with at least one hex letter, so "1234.5678.9012" stays a number).
func (s *scan) mac(i int) (int, bool) {
	t := s.t
	n := len(t)
	var sep byte
	var end int
	switch {
	case i+17 <= n && (t[i+2] == ':' || t[i+2] == '-'):
		sep = t[i+2]
		if t[i+5] != sep || t[i+8] != sep || t[i+11] != sep || t[i+14] != sep {
			return 0, false // most often a time, "14:22:05", or a date, "11-02-2024"
		}
		clock := true // every pair decimal, and all but the first below 60
		for g := 0; g < 6; g++ {
			p := i + 3*g
			if !isHex(t[p]) || !isHex(t[p+1]) || g < 5 && t[p+2] != sep {
				return 0, false
			}
			clock = clock && isDigit(t[p]) && isDigit(t[p+1]) && (g == 0 || t[p] < '6')
		}
		end = i + 17
		if clock && !macWordBefore(t, i) {
			// A timecode or a counter ("01:02:03:04:05:06" in subtitles and logs), not a MAC:
			// one in 300 MACs is written in such pairs, and then a word names it.
			return end, true
		}
	case i+14 <= n && t[i+4] == '.':
		sep = '.'
		letter := false
		for g := 0; g < 3; g++ {
			p := i + 5*g
			for k := p; k < p+4; k++ {
				if !isHex(t[k]) {
					return 0, false
				}
				letter = letter || !isDigit(t[k])
			}
			if g < 2 && t[p+4] != '.' {
				return 0, false
			}
		}
		if !letter {
			return 0, false
		}
		end = i + 14
	default:
		return 0, false
	}
	if i > 0 && t[i-1] == sep || wordAt(t, end) || end+1 < n && t[end] == sep && isHex(t[end+1]) {
		return end, true
	}
	s.emit(eMAC, i, end, 0.8)
	return end, true
}

// macWords name a MAC address; macWordBefore looks for them.
var macWords = [...]string{"mac", "macs", "ether", "ethernet", "hwaddr", "lladdr", "bssid", "address",
	"addr", "physical", "hardware", "nic", "device", "station", "client", "bluetooth", "adapter",
	"interface", "wifi", "wlan", "eth0", "adresse"}

// macWordBefore reports whether one of the (at most five) words in the 48 bytes before i, on
// its line, names a MAC address ("MAC address", "HWaddr", "link/ether", "mac_address=").
func macWordBefore(t []byte, i int) bool {
	stop := max(i-48, 0)
	j := i
	for w := 0; w < 5 && j > stop; w++ {
		for j > stop && !isAlnum(t[j-1]) {
			if t[j-1] == '\n' {
				return false
			}
			j--
		}
		e := j
		for j > stop && isAlnum(t[j-1]) {
			j--
		}
		if e-j > 9 || e == j {
			continue
		}
		var buf [9]byte
		for k := j; k < e; k++ {
			buf[k-j] = asciiLower(t[k])
		}
		for _, m := range macWords {
			if string(buf[:e-j]) == m {
				return true
			}
		}
	}
	return false
}

// ipv6 tries an IPv6 address at p (a hex group or "::"), with an optional dotted-quad tail.
// Compressed forms need a digit and either three groups or a group of three or more hex
// digits, so "a::b", "std::map" and "1::3" stay code; "::1" is taken as the loopback.
func (s *scan) ipv6(p int) (int, bool) {
	if !ipv6Shape(s.t, p) {
		return 0, false
	}
	return s.ipv6Parse(p)
}

// ipv6Parse is ipv6 without the ipv6Shape test.
func (s *scan) ipv6Parse(p int) (int, bool) {
	t := s.t
	n := len(t)
	i, groups, dbl, digit, long := p, 0, false, false, false
	if i+1 < n && t[i] == ':' && t[i+1] == ':' {
		dbl = true
		i += 2
	}
	end := i
	for groups < 8 {
		j := i
		for j < n && j-i < 5 && isHex(t[j]) {
			j++
		}
		h := j - i
		if h == 0 || h > 4 {
			break
		}
		if j < n && t[j] == '.' && (groups == 6 || dbl && groups <= 5) {
			if e, ok := ipv4(t, i); ok {
				groups += 2
				end, digit = e, true
			}
			break
		}
		for x := i; x < j; x++ {
			digit = digit || isDigit(t[x])
		}
		long = long || h >= 3
		groups++
		end = j
		if j+1 < n && t[j] == ':' && t[j+1] == ':' {
			if dbl {
				break
			}
			dbl = true
			i, end = j+2, j+2
			continue
		}
		if j+1 < n && t[j] == ':' && isHex(t[j+1]) {
			i = j + 1
			continue
		}
		break
	}
	valid := dbl && groups <= 7 || !dbl && groups == 8
	if !valid || end == p {
		return 0, false
	}
	if wordAt(t, end) || end < n && t[end] == ':' || end+1 < n && t[end] == '.' && isDigit(t[end+1]) {
		return end, true
	}
	if p > 0 && (isWord(t[p-1]) || t[p-1] == ':' || t[p-1] == '.') {
		return end, true
	}
	if dbl && !(groups >= 3 && digit || groups >= 1 && long && digit || end-p == 3 && t[p] == ':' && t[p+2] == '1') {
		return end, true
	}
	pos, neg := nearWords(t, p)
	s.emit(eIP, p, end, adjust(0.6, ctxIP, pos, neg))
	return end, true
}

// ipv6Shape reports whether the run of hex digits, ':' and '.' at p, which holds all that
// ipv6 parses, may hold an address: without "::" one has eight groups, so at least six
// colons (seven, or six before a dotted-quad tail). Most colon-joined hex groups in text are
// times ("14:22:05"), which this rules out before the parse.
func ipv6Shape(t []byte, p int) bool {
	colons := 0
	for k := p; k < len(t); k++ {
		switch c := t[k]; {
		case c == ':':
			if k+1 < len(t) && t[k+1] == ':' {
				return true
			}
			if colons++; colons == 6 {
				return true
			}
		case c != '.' && !isHex(c):
			return false
		}
	}
	return false
}

// spanOf returns the end of the run of bytes from i that ok accepts.
func spanOf(t []byte, i int, ok func(byte) bool) int {
	for i < len(t) && ok(t[i]) {
		i++
	}
	return i
}

func isKeyByte(c byte) bool { return isB64URL(c) } // alnum - _

// tokenStart reports whether a token may start at i.
func tokenStart(t []byte, i int) bool {
	return i == 0 || !isB64URL(t[i-1])
}
