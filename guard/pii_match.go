package guard

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// Matchers that start at '@', ':', '-', '_', 'A' and 'J': emails, credentials in URLs, API keys
// and tokens, JWTs, PEM private keys, and the MAC and IPv6 parsers.

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
	if best == end && end < len(t) && (t[end] == '@' || t[end] == '_') {
		return end
	}
	if best+1 < len(t) && t[best] == ':' && (t[best+1] == '/' || t[best+1] == '~' || isAlnum(t[best+1])) {
		// user@host:path is an SSH or scp address (git clone git@github.com:org/repo.git),
		// not a mailbox; an address that ends a clause ("mail a@b.com: thanks") has a space.
		return best
	}
	s.emit(eEmail, a, best, 1)
	return best
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

// colon handles ':' at i for Slack webhook URLs, and for MAC and IPv6 addresses whose first
// group has no digit ("fe:..", "::1", "ff:ff:ff:ff:ff:ff"); groups with digits were tried from
// the digit.
func (s *scan) colon(i int) int {
	t := s.t
	if i+1 < len(t) && t[i+1] == '/' && hasPrefixAt(t, i, "://hooks.slack.com/services/") {
		return s.slackHook(i)
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
		for g := 0; g < 6; g++ {
			p := i + 3*g
			if !isHex(t[p]) || !isHex(t[p+1]) || g < 5 && t[p+2] != sep {
				return 0, false
			}
		}
		end = i + 17
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

// ipv6 tries an IPv6 address at p (a hex group or "::"), with an optional dotted-quad tail.
// Compressed forms need a digit and either three groups or a group of three or more hex
// digits, so "a::b", "std::map" and "1::3" stay code; "::1" is taken as the loopback.
func (s *scan) ipv6(p int) (int, bool) {
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

// secret reports the token [start, end) as a SECRET when its body t[body:end] is at least min
// bytes long and holds a digit (random keys do; prose like "sk-learn-style" does not).
func (s *scan) secret(start, body, end, min int) int {
	if end-body < min {
		return body
	}
	for k := body; k < end; k++ {
		if isDigit(s.t[k]) {
			s.emit(eSecret, start, end, 1)
			return end
		}
	}
	return end
}

// dash handles '-' at i: PEM private keys, OpenAI/Anthropic "sk-", GitLab "glpat-", Slack
// "xox?-" and "xapp-", Google OAuth client secrets "GOCSPX-".
func (s *scan) dash(i int) int {
	t := s.t
	switch {
	case hasPrefixAt(t, i, "-----BEGIN ") && (i == 0 || t[i-1] != '-'):
		if end, ok := s.pem(i); ok {
			return end
		}
		return i + 5
	case i >= 2 && t[i-1] == 'k' && t[i-2] == 's' && i-2 >= s.lo && tokenStart(t, i-2):
		return s.secret(i-2, i+1, spanOf(t, i+1, isKeyByte), 20)
	case i >= 4 && t[i-1] >= 'a' && t[i-1] <= 'z' && gitlabPrefix(t, i) > 0:
		// GitLab tokens: glpat- (personal), gldt- (deploy), glrt- (runner), glptt- (pipeline
		// trigger), ...; the newer ones end in ".01.<suffix>", which is part of the token.
		p := gitlabPrefix(t, i)
		if i-p < s.lo {
			return i + 1
		}
		end := i + 1
		for end < len(t) && (isKeyByte(t[end]) || t[end] == '.' && end+1 < len(t) && isAlnum(t[end+1])) {
			end++
		}
		return s.secret(i-p, i+1, end, 20)
	case i >= 6 && hasPrefixAt(t, i-6, "GOCSPX") && i-6 >= s.lo && tokenStart(t, i-6):
		// Google OAuth client secret: 28 random characters.
		end := spanOf(t, i+1, isKeyByte)
		if n := end - i - 1; n >= 24 && n <= 40 {
			s.emit(eSecret, i-6, end, 1)
		}
		return end
	case i >= 4 && (hasPrefixAt(t, i-4, "xox") || hasPrefixAt(t, i-4, "xapp")) && i-4 >= s.lo && tokenStart(t, i-4):
		switch t[i-1] {
		case 'a', 'b', 'p', 'r', 's', 'e':
			return s.secret(i-4, i+1, spanOf(t, i+1, func(c byte) bool { return isAlnum(c) || c == '-' }), 10)
		}
	}
	return i + 1
}

// gitlabTokenPrefixes are the prefixes GitLab gives its tokens, before the '-'.
var gitlabTokenPrefixes = []string{"glpat", "gldt", "glrt", "glptt", "glcbt", "gloas", "glimt", "glsoat", "glffct", "glagent", "glft"}

// gitlabPrefix returns the length of the GitLab token prefix that ends at the '-' at i and
// starts a token, or 0.
func gitlabPrefix(t []byte, i int) int {
	// Most dashes follow a word that is no "gl..." prefix: rule those out before the list.
	a := i
	for a > 0 && i-a < 7 && t[a-1] >= 'a' && t[a-1] <= 'z' {
		a--
	}
	if i-a < 4 || t[a] != 'g' || t[a+1] != 'l' {
		return 0
	}
	for _, p := range gitlabTokenPrefixes {
		if n := len(p); i >= n && hasPrefixAt(t, i-n, p) && tokenStart(t, i-n) {
			return n
		}
	}
	return 0
}

// under handles '_' at i: GitHub "ghp_" (gho_, ghu_, ghs_, ghr_) and "github_pat_", Stripe
// "sk_live_"/"sk_test_"/"rk_live_", Hugging Face "hf_", and AWS secret access keys after
// "secret_access_key".
func (s *scan) under(i int) int {
	t := s.t
	alnum := func(c byte) bool { return isAlnum(c) }
	switch {
	case i >= 3 && t[i-3] == 'g' && t[i-2] == 'h' && i-3 >= s.lo && tokenStart(t, i-3):
		switch t[i-1] {
		case 'p', 'o', 'u', 's', 'r':
			return s.secret(i-3, i+1, spanOf(t, i+1, alnum), 30)
		}
	case i >= 6 && hasPrefixAt(t, i-6, "github_pat_") && i-6 >= s.lo && tokenStart(t, i-6):
		return s.secret(i-6, i+5, spanOf(t, i+5, isWord), 40)
	case i >= 2 && (t[i-2] == 's' || t[i-2] == 'r') && t[i-1] == 'k' && i-2 >= s.lo && tokenStart(t, i-2) &&
		(hasPrefixAt(t, i, "_live_") || hasPrefixAt(t, i, "_test_")):
		return s.secret(i-2, i+6, spanOf(t, i+6, alnum), 16)
	case i >= 6 && hasPrefixFold(t, i-6, "secret_access_key") && (i == 6 || !isAlnum(t[i-7])):
		return s.awsSecret(i - 6 + len("secret_access_key"))
	case secretName(t, i):
		// Other names of the AWS secret key: aws_secret, AWS_SECRET_KEY, secret_key (Terraform),
		// each followed by = or : and the key. The scan goes on after the name.
		return s.awsSecret(spanOf(t, i, isWord))
	case i >= 2 && t[i-2] == 'h' && t[i-1] == 'f' && i-2 >= s.lo && tokenStart(t, i-2):
		end := spanOf(t, i+1, alnum)
		if end-i-1 >= 30 && !wordAt(t, end) {
			s.emit(eSecret, i-2, end, 1)
		}
		return end
	}
	return i + 1
}

// awsSecret tries an AWS secret access key after its name ("aws_secret_access_key = ",
// "AWS_SECRET_ACCESS_KEY=", "SecretAccessKey": "), which ends at k: 40 base64 characters with
// a digit and letters of both cases. Without the name 40 random characters are too ambiguous.
func (s *scan) awsSecret(k int) int {
	t := s.t
	p := k
	if p < len(t) && (t[p] == '"' || t[p] == '\'') {
		p++
	}
	for p < len(t) && (t[p] == ' ' || t[p] == '\t') {
		p++
	}
	if p >= len(t) || t[p] != '=' && t[p] != ':' {
		return k
	}
	p++
	for p < len(t) && (t[p] == ' ' || t[p] == '\t' || t[p] == '"' || t[p] == '\'') && p-k < 8 {
		p++
	}
	var c uint8
	e := p
	for e < len(t) && e-p <= 40 && isB64(t[e]) && t[e] != '=' {
		c |= cls[t[e]]
		e++
	}
	if e-p == 40 && c&cDigit != 0 && c&cUpper != 0 && c&cLower != 0 && !(e < len(t) && isB64(t[e])) {
		s.emit(eSecret, p, e, 1)
		return e
	}
	return k
}

// secretName reports whether the '_' at t[i] is in a name of the form *secret* whose parts,
// split at '_', include "secret" and end with "secret" or "key": aws_secret, AWS_SECRET_KEY,
// secret_key. Only the first '_' of the name asks, so a name is read once.
func secretName(t []byte, i int) bool {
	if i == 0 || !isAlnum(t[i-1]) {
		return false
	}
	a := i
	for a > 0 && i-a <= 8 && isAlnum(t[a-1]) {
		a--
	}
	if a > 0 && isWord(t[a-1]) {
		return false // not the name's first '_', or a first part too long for these names
	}
	// "secret" is the first part or the second in each of them: most names are ruled out here.
	if !(i-a == 6 && hasPrefixFold(t, a, "secret")) && !hasPrefixFold(t, i+1, "secret") {
		return false
	}
	b := spanOf(t, i, isWord)
	if b-a > 40 {
		return false
	}
	name := t[a:b]
	secret := false
	for len(name) > 0 {
		part := name
		if k := bytes.IndexByte(name, '_'); k >= 0 {
			part, name = name[:k], name[k+1:]
		} else {
			name = nil
		}
		if len(part) == 6 && hasPrefixFold(part, 0, "secret") {
			secret = true
		}
		if len(name) == 0 { // the last part
			return secret && (len(part) == 6 && hasPrefixFold(part, 0, "secret") || len(part) == 3 && hasPrefixFold(part, 0, "key"))
		}
	}
	return false
}

// hasPrefixFold reports whether t[i:] starts with p (lower case), ignoring ASCII case.
func hasPrefixFold(t []byte, i int, p string) bool {
	if i < 0 || len(t)-i < len(p) {
		return false
	}
	for k := 0; k < len(p); k++ {
		if asciiLower(t[i+k]) != p[k] {
			return false
		}
	}
	return true
}

// upperA handles 'A' at i: AWS access key IDs (AKIA, ASIA, ABIA, ACCA, A3T?), Google API
// keys (AIza), and AWS secret access keys after "SecretAccessKey".
func (s *scan) upperA(i int) int {
	t := s.t
	if i >= 6 && t[i-6]|0x20 == 's' && hasPrefixFold(t, i-6, "secretaccesskey") {
		return s.awsSecret(i - 6 + len("SecretAccessKey")) // SecretAccessKey, secretAccessKey (the JS SDK)
	}
	if !tokenStart(t, i) || i+20 > len(t) {
		return i + 1
	}
	if hasPrefixAt(t, i, "AIza") {
		end := spanOf(t, i+4, isKeyByte)
		if end-i-4 >= 30 && end-i-4 <= 40 {
			s.emit(eSecret, i, end, 1)
			return end
		}
		return i + 1
	}
	if !hasPrefixAt(t, i, "AKIA") && !hasPrefixAt(t, i, "ASIA") && !hasPrefixAt(t, i, "ABIA") &&
		!hasPrefixAt(t, i, "ACCA") && !(t[i+1] == '3' && t[i+2] == 'T' && (isUpper(t[i+3]) || isDigit(t[i+3]))) {
		return i + 1
	}
	for k := i + 4; k < i+20; k++ {
		if c := t[k]; !(isUpper(c) || c >= '2' && c <= '7') {
			return i + 1
		}
	}
	if isB64URL(byteOr0(t, i+20)) {
		return i + 1
	}
	s.emit(eSecret, i, i+20, 1)
	return i + 20
}

func byteOr0(t []byte, i int) byte {
	if i < len(t) {
		return t[i]
	}
	return 0
}

// jwt handles 'J' at i for a JSON Web Token: "eyJ" header, payload, optional signature, each
// base64url, joined by dots (JWE's five parts included).
func (s *scan) jwt(i int) int {
	t := s.t
	a := i - 2
	if a < s.lo || t[a] != 'e' || t[a+1] != 'y' || !tokenStart(t, a) {
		return i + 1
	}
	end := spanOf(t, i+1, isB64URL)
	if end-a < 10 || byteOr0(t, end) != '.' {
		return end
	}
	p2 := end + 1
	e2 := spanOf(t, p2, isB64URL)
	if e2-p2 < 10 {
		return e2
	}
	end = e2
	for parts := 2; parts < 5 && byteOr0(t, end) == '.'; parts++ {
		e := spanOf(t, end+1, isB64URL)
		if e == end+1 && parts != 2 {
			break
		}
		end = e
	}
	s.emit(eSecret, a, end, 1)
	return end
}

// pemToken reports whether a token may be in the body of a PEM block: base64, with "\/" as
// JSON may escape '/'.
func pemToken(tok []byte) bool {
	for k, c := range tok {
		if cls[c]&cB64 == 0 && !(c == '\\' && k+1 < len(tok) && tok[k+1] == '/') &&
			!(c == '/' && k > 0 && tok[k-1] == '\\') {
			return false
		}
	}
	return true
}

// pemBreak returns the length of an escaped line break at i ("\n" or "\r" as text, as a key
// pasted from a JSON string has them; "\\n" from one escaped twice) and whether it is a
// newline; 0 when there is none.
func pemBreak(t []byte, i int) (int, bool) {
	k := i
	for k < len(t) && t[k] == '\\' && k-i < 2 {
		k++
	}
	if k == i || k >= len(t) || t[k] != 'n' && t[k] != 'r' {
		return 0, false
	}
	return k + 1 - i, t[k] == 'n'
}

// pemGap skips the whitespace and escaped line breaks at p and returns where the next token
// starts and how many newlines it passed.
func pemGap(t []byte, p int) (int, int) {
	nl := 0
	for p < len(t) {
		if isSpace(t[p]) {
			if t[p] == '\n' {
				nl++
			}
			p++
			continue
		}
		w, newline := pemBreak(t, p)
		if w == 0 {
			break
		}
		if newline {
			nl++
		}
		p += w
	}
	return p, nl
}

// pemTokenEnd returns the end of the token at p: the next whitespace, escaped line break or
// quote (a key in a string without its END line ends with the string).
func pemTokenEnd(t []byte, p int) int {
	q := p
	for q < len(t) && !isSpace(t[q]) && t[q] != '"' && t[q] != '\'' {
		if w, _ := pemBreak(t, q); w > 0 {
			break
		}
		q++
	}
	return q
}

// pemHeader returns the end of the RFC 1421 or OpenPGP armor header line ("Proc-Type:
// 4,ENCRYPTED", "Comment: ...") whose name token is t[p:q], before its line break; ok is false
// when t[p:q] is no header name or the line does not end in printable ASCII within 256 bytes.
func pemHeader(t []byte, p, q int) (int, bool) {
	if q-p < 3 || t[q-1] != ':' || !isAlpha(t[p]) {
		return 0, false
	}
	for k := p; k < q-1; k++ {
		if !isAlnum(t[k]) && t[k] != '-' {
			return 0, false
		}
	}
	for k := q; k < len(t) && k-q < 256; k++ {
		if w, _ := pemBreak(t, k); w > 0 || t[k] == '\n' || t[k] == '\r' {
			return k, true
		}
		if t[k] < ' ' && t[k] != '\t' || t[k] >= 0x7f {
			return 0, false
		}
	}
	return 0, false
}

// pem tries a private key block at i ("-----BEGIN ... PRIVATE KEY-----"). The block runs to
// its END line; without one (a truncated paste), to the end of the base64 body, which stops
// at a token that is not base64 or at a blank line. Line breaks may be escaped, as in a JSON
// string ("-----BEGIN PRIVATE KEY-----\nMIIE..." in a GCP service-account file). Header lines
// may come first (an encrypted key's "Proc-Type:" and "DEK-Info:", PGP's "Version:" and
// "Comment:"), and one blank line after them, or right after a PGP BEGIN line: the body
// follows it.
func (s *scan) pem(i int) (int, bool) {
	t := s.t
	n := len(t)
	p := i + 11
	q := p
	for q < n && q-p < 48 && (isUpper(t[q]) || isDigit(t[q]) || t[q] == ' ') {
		q++
	}
	label := t[p:q]
	pgp := endsWith(label, "PRIVATE KEY BLOCK") // PGP armor: a blank line after the headers
	if !hasPrefixAt(t, q, "-----") || !(endsWith(label, "PRIVATE KEY") || pgp) {
		return 0, false
	}
	end := q + 5
	blank := pgp // a blank line may come next
	hdrs := true // header lines may come next
	for p = end; ; {
		var nl int
		p, nl = pemGap(t, p)
		if p >= n {
			break
		}
		if nl >= 2 {
			if nl > 2 || !blank {
				break
			}
			blank, hdrs = false, false
		}
		q = pemTokenEnd(t, p)
		if hasPrefixAt(t, p, "-----END") {
			for k := p + 8; k+5 <= n && k-p < 80 && t[k] != '\n'; k++ {
				if hasPrefixAt(t, k, "-----") {
					end = k + 5
					break
				}
			}
			break
		}
		if hdrs && nl > 0 {
			if e, ok := pemHeader(t, p, q); ok {
				end, p, blank = e, e, true
				continue
			}
		}
		if q == p || !pemToken(t[p:q]) {
			break
		}
		end, p, blank, hdrs = q, q, false, false
	}
	s.emit(eSecret, i, end, 1)
	return end, true
}

// pgpArmor reports whether the PEM key that starts key is PGP armor, whose BEGIN line a
// blank line may follow.
func pgpArmor(key []byte) bool {
	for k := 11; k < len(key) && k < 11+48; k++ {
		if hasPrefixAt(key, k, "-----") {
			return endsWith(key[:k], "PRIVATE KEY BLOCK")
		}
	}
	return false
}

func endsWith(b []byte, suf string) bool {
	return len(b) >= len(suf) && string(b[len(b)-len(suf):]) == suf
}
