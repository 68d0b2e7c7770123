package guard

import "bytes"

// Matchers that start at '-', '_', 'A' and 'J': API keys and tokens, JWTs, PEM private keys.

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
	case i+3 < len(t) && (t[i+1] == 'u' && t[i+2] == ' ' || t[i+1] == '-' && hasPrefixAt(t, i, "--user")) &&
		i > 0 && isSpace(t[i-1]):
		return s.curlUser(i)
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
	case i+11 < len(t) && t[i+1]|0x20 == 's' && i > 0 && isSpace(t[i-1]) &&
		(hasPrefixFold(t, i+1, "secretkey") || hasPrefixFold(t, i+1, "sessiontoken")):
		// PowerShell: Set-AWSCredential -AccessKey ... -SecretKey ... -SessionToken ...
		k := spanOf(t, i+1, isAlnum)
		if k-i-1 != len("secretkey") && k-i-1 != len("sessiontoken") {
			return k
		}
		return s.credValue(k, true, 16, credNone)
	case i+5 < len(t) && t[i+1] == 'p' && i > 0 && isSpace(t[i-1]) && !isSpace(t[i+2]):
		return s.mysqlPass(i)
	case i+4 < len(t) && i > 0 && isSpace(t[i-1]) && t[i+2] == ' ' && (t[i+1] == 'p' || t[i+1] == 'a'):
		return s.passwordOption(i, i+2)
	case i+12 < len(t) && t[i+1] == '-' && i > 0 && isSpace(t[i-1]) && hasPrefixAt(t, i+2, "password") && (t[i+10] == ' ' || t[i+10] == '\t'):
		return s.passwordOption(i, i+10)
	case i >= 4 && (hasPrefixAt(t, i-4, "xox") || hasPrefixAt(t, i-4, "xapp")) && i-4 >= s.lo && tokenStart(t, i-4):
		switch t[i-1] {
		case 'a', 'b', 'p', 'r', 's', 'e':
			return s.secret(i-4, i+1, spanOf(t, i+1, func(c byte) bool { return isAlnum(c) || c == '-' }), 10)
		}
	}
	return i + 1
}

// curlUser handles curl's -u or --user option at i: its value user:password is reported as a
// SECRET ("curl -u api:key-3ax6xnjp29jd6fds4gc373sgvjxteol0", --user 'AC..:token'), since the
// password is in clear text and the user is often an account ID. Only after "curl" on the
// same line: other tools' -u means something else ("tar -u file:name").
func (s *scan) curlUser(i int) int {
	t := s.t
	p := i + 3
	if t[i+1] == '-' {
		p = i + 6
		if p >= len(t) || t[p] != ' ' && t[p] != '=' {
			return i + 1
		}
		p++
	}
	var q byte
	if p < len(t) && (t[p] == '"' || t[p] == '\'') {
		q = t[p]
		p++
	}
	e, c := p, -1
	for e < len(t) && e-p <= 256 && !isSpace(t[e]) && (q == 0 || t[e] != q) {
		if t[e] == ':' && c < 0 {
			c = e
		}
		e++
	}
	if c <= p || c+1 >= e || q != 0 && (e >= len(t) || t[e] != q) || p < s.lo {
		return i + 1
	}
	switch t[p] {
	case '$', '<', '{', '[': // a shell variable or a placeholder
		return i + 1
	}
	switch t[c+1] {
	case '$', '<', '{', '[':
		return i + 1
	}
	// "curl" before the option, on its line or on one that a backslash at its end continues.
	k := i - 4
	for k >= 0 && i-k < 512 && !(hasPrefixAt(t, k, "curl") && tokenStart(t, k)) {
		if t[k] == '\n' && !(k > 0 && t[k-1] == '\\' || k > 1 && t[k-1] == '\r' && t[k-2] == '\\') {
			return i + 1
		}
		k--
	}
	if k < 0 || i-k >= 512 {
		return i + 1
	}
	s.emit(eSecret, p, e, 1)
	return e
}

// mysqlPass handles the MySQL client's -p at i with its password joined to it: "mysql -u root
// -pS3cr3t db", "mysqldump -p'S3cr3t!' shop". Only after mysql, mysqldump, mysqladmin or
// mariadb in the same command (on its line or one a backslash continues, not past ';', '|'
// or '&'): other tools' -p is a port, a path
// or a flag ("ssh -p2222", "mkdir -p dir", "tar -pczf"). A value with a space is left alone,
// as the leak scanner may cut there.
func (s *scan) mysqlPass(i int) int {
	t := s.t
	p := i + 2
	var q byte
	if t[p] == '"' || t[p] == '\'' {
		q = t[p]
		p++
	}
	e := p
	for e < len(t) && e-p <= 128 && !isSpace(t[e]) && (q != 0 && t[e] != q || q == 0 && t[e] != ';') {
		e++
	}
	if e-p < 4 || e-p > 128 || q != 0 && (e >= len(t) || t[e] != q) || p < s.lo || credPlaceholder(t[p:e]) {
		return i + 1
	}
	if !inCommand(t, i, mysqlPrograms) {
		return i + 1
	}
	s.emit(eSecret, p, e, 1)
	return e
}

// Programs whose password option takes no value of its own (the client asks for the password)
// or only a joined one, so that the word after "--password" is something else: "psql
// --password shop", "mysql -u root --password shop".
var (
	mysqlPrograms     = []string{"mysql", "mariadb"}
	promptingPrograms = []string{"mysql", "mariadb", "psql", "pg_dump", "pg_restore", "pg_dumpall", "createdb", "dropdb"}
	// Commands whose -p is the password given as the next word: "docker login -u me -p
	// S3cr3t!", "podman login", "helm registry login", "oc login", "az login", "sshpass -p".
	passwordPFlagPrograms = []string{"login", "sshpass"}
	// redis-cli's -a: "redis-cli -h cache -a s3cr3tPw".
	passwordAFlagPrograms = []string{"redis-cli"}
)

// passwordOption handles a password given as the word after its option, which ends at k: "-p"
// of passwordPFlagPrograms, "-a" of passwordAFlagPrograms, or "--password" of any command but
// promptingPrograms ("docker login --password Tr0ub4dor3", "az login -p ..."). Other tools' -p
// and -a are ports, paths or flags ("ssh -p 2222", "mkdir -p dir", "cp -a src"), so the
// program must be in the same command. The value must look like a secret, as after
// "Password:": a letter and a digit or a symbol, not a path, variable or placeholder.
func (s *scan) passwordOption(i, k int) int {
	t := s.t
	var ok bool
	switch t[i+1] {
	case 'p':
		ok = inCommand(t, i, passwordPFlagPrograms)
	case 'a':
		ok = inCommand(t, i, passwordAFlagPrograms)
	default: // --password
		ok = !inCommand(t, i, promptingPrograms)
	}
	if !ok {
		return k
	}
	return s.credValue(k, true, 4, credColon)
}

// inCommand reports whether one of programs appears as a word before i in the shell command
// that holds i: on its line, or on one that a backslash continues, and not past ';', '|' or
// '&'.
func inCommand(t []byte, i int, programs []string) bool {
	for k := i - 1; k >= 0 && i-k < 256 && (t[k] != '\n' || k > 0 && t[k-1] == '\\') && t[k] != ';' && t[k] != '|' && t[k] != '&'; k-- {
		for _, name := range programs {
			if t[k] == name[0] && hasPrefixAt(t, k, name) && tokenStart(t, k) {
				return true
			}
		}
	}
	return false
}

// gitlabTokenPrefixes are the prefixes GitLab gives its tokens, before the '-'.
var gitlabTokenPrefixes = []string{"glpat", "gldt", "glrt", "glptt", "glcbt", "gloas", "glimt", "glsoat", "glffct", "glagent", "glft"}

// gitlabPrefix returns the length of the GitLab token prefix that ends at the '-' at i and
// starts a token, or 0.
func gitlabPrefix(t []byte, i int) int {
	// Most dashes follow a word that is no "gl..." prefix: rule those out before the list,
	// first by the 'g' that starts every prefix four to seven bytes before the dash.
	if !(i >= 4 && t[i-4] == 'g' || i >= 5 && t[i-5] == 'g' || i >= 6 && t[i-6] == 'g' || i >= 7 && t[i-7] == 'g') {
		return 0
	}
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
		return s.awsSecret(i-6+len("secret_access_key"), true)
	case i >= 3 && t[i-3]|0x20 == 'a' && hasPrefixFold(t, i-3, "aws_s") && tokenStart(t, i-3) &&
		(hasPrefixFold(t, i+1, "session_token") || hasPrefixFold(t, i+1, "security_token")):
		// The token of temporary credentials: aws_session_token (and boto's older
		// aws_security_token) in ~/.aws/credentials, AWS_SESSION_TOKEN= in an environment.
		k := spanOf(t, i, isWord)
		if k-i != len("_session_token") && k-i != len("_security_token") {
			return k
		}
		return s.credValue(k, false, 16, credNone)
	case secretName(t, i):
		// Other names of the AWS secret key: aws_secret, AWS_SECRET_KEY, secret_key (Terraform),
		// each followed by = or : and the key. The scan goes on after the name.
		e := spanOf(t, i, isWord)
		return s.awsSecret(e, hasPrefixFold(t, e-len("secret_access_key"), "secret_access_key"))
	case i >= 2 && t[i-2] == 'h' && t[i-1] == 'f' && i-2 >= s.lo && tokenStart(t, i-2):
		end := spanOf(t, i+1, alnum)
		if end-i-1 >= 30 && !wordAt(t, end) {
			s.emit(eSecret, i-2, end, 1)
		}
		return end
	}
	return i + 1
}

// afterName returns, for a credential's name that ends at k, where its optional closing quote
// ends (q) and where the spaces and tabs after that end (p).
func afterName(t []byte, k int) (q, p int) {
	p = k
	if p < len(t) && (t[p] == '"' || t[p] == '\'') {
		p++
	}
	q = p
	for p < len(t) && (t[p] == ' ' || t[p] == '\t') {
		p++
	}
	return q, p
}

// awsSecret tries an AWS secret access key after its name ("aws_secret_access_key = ",
// "AWS_SECRET_ACCESS_KEY=", "SecretAccessKey": "), which ends at k: 40 base64 characters with
// a digit and letters of both cases. Without the name 40 random characters are too ambiguous.
// With bare, the full name may be followed by spaces alone, as in a command line:
// "aws configure set aws_secret_access_key wJal...", "-SecretAccessKey wJal...".
func (s *scan) awsSecret(k int, bare bool) int {
	t := s.t
	q, p := afterName(t, k)
	switch {
	case p < len(t) && (t[p] == '=' || t[p] == ':'):
		p++
	case bare && p > q && q == k && p-q < 8:
	default:
		return k
	}
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
	// "secret" starts six bytes before the '_' or right after it: most '_' (a snake_case
	// name, a placeholder's "<EMAIL_ADDRESS_1>") are ruled out by those two bytes.
	if !(i+1 < len(t) && t[i+1]|0x20 == 's') && !(i >= 6 && t[i-6]|0x20 == 's') {
		return false
	}
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
		return s.awsSecret(i-6+len("SecretAccessKey"), true) // SecretAccessKey, secretAccessKey (the JS SDK)
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
	return s.awsSecretNear(i + 20)
}

// awsSecretNear tries an AWS secret access key soon after its access key ID, which ends at k:
// the next argument or field, whatever its name ("AKIA...", "wJal..." in
// BasicAWSCredentials; -Daws.secretKey=; secret-key: in Spring). It is the first token of 40
// base64 characters with a digit and letters of both cases within 96 bytes; the bytes before
// it are scanned first, so nothing there is missed.
func (s *scan) awsSecretNear(k int) int {
	t := s.t
	for p := k; p < len(t) && p-k < 96; {
		if !isB64(t[p]) || t[p] == '=' {
			p++
			continue
		}
		var c uint8
		e := p
		for e < len(t) && e-p <= 40 && isB64(t[e]) && t[e] != '=' {
			c |= cls[t[e]]
			e++
		}
		if e-p == 40 && c&cDigit != 0 && c&cUpper != 0 && c&cLower != 0 && !(e < len(t) && isB64(t[e])) {
			if n := s.scanTo(k, p); n > p || p < s.lo {
				return max(n, k)
			}
			s.emit(eSecret, p, e, 1)
			return e
		}
		for e < len(t) && isB64(t[e]) && t[e] != '=' {
			e++
		}
		p = e
	}
	return k
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
func pemGap(t []byte, p int, quote []byte) (int, int) {
	nl := 0
	for p < len(t) {
		if isSpace(t[p]) {
			p++
			if t[p-1] == '\n' {
				nl++
				// A quoted key has its BEGIN line's quote marks on every line: skip them,
				// or their trimmed form on an empty quoted line.
				if k := quotePrefix(t, p, quote); k > 0 {
					p += k
				} else if len(quote) > 0 {
					return p, 3 // a line without them ends the key, as two blank lines do
				}
			}
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

// pemQuote returns the quote marks that start the line of the BEGIN line at i, with the
// spaces after them: "> " in a quoted email or Markdown blockquote, "# " or "// " in a code
// comment; nil when the line starts otherwise (a key in a string or after a name).
func pemQuote(t []byte, i int) []byte {
	a := i
	for a > 0 && i-a < 16 && t[a-1] != '\n' {
		c := t[a-1]
		if c != '>' && c != '#' && c != '/' && c != '*' && c != ';' && c != '|' && c != ' ' && c != '\t' {
			return nil
		}
		a--
	}
	if a > 0 && t[a-1] != '\n' {
		return nil
	}
	for k := a; k < i; k++ {
		if t[k] != ' ' && t[k] != '\t' {
			return t[a:i]
		}
	}
	return nil // indentation alone, which pemGap skips as whitespace
}

// quotePrefix returns the length of the quote marks at p: quote, or quote without its
// trailing spaces where the line ends after them; 0 when they are not there.
func quotePrefix(t []byte, p int, quote []byte) int {
	if len(quote) == 0 {
		return 0
	}
	if len(t)-p >= len(quote) && string(t[p:p+len(quote)]) == string(quote) {
		return len(quote)
	}
	q := len(quote)
	for q > 0 && (quote[q-1] == ' ' || quote[q-1] == '\t') {
		q--
	}
	if len(t)-p > q && string(t[p:p+q]) == string(quote[:q]) && (t[p+q] == '\n' || t[p+q] == '\r') {
		return q
	}
	return 0
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
	quote := pemQuote(t, i)
	if k := end; len(quote) > 0 {
		if k < n && t[k] == '\r' {
			k++
		}
		if k >= n || t[k] != '\n' || quotePrefix(t, k+1, quote) == 0 {
			quote = nil // a lazy blockquote: the key's lines have no quote marks
		}
	}
	hdrs := true // header lines may come next
	for p = end; ; {
		var nl int
		p, nl = pemGap(t, p, quote)
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
