package guard

import "bytes"

// Named credentials: a password, secret, token or key after a name that says what it is
// ("Password=", "DB_PASSWORD=", "password: ...", "-SecretKey ..."), where the value alone
// would be too ambiguous to call a SECRET. Split from pii_secret.go, whose matchers go by a
// key's own shape.

// equals handles '=' at i: a password after its name, "Password=" or "Pwd=" (any case), as
// in ADO.NET and ODBC connection strings, URL queries and key=value configs, and the other
// named credentials of credName ("DB_PASSWORD=", "export GITHUB_TOKEN=", "--password=").
func (s *scan) equals(i int) int {
	return s.named(i, i)
}

// named tries the value of a named credential whose name ends at j, before the '=' or ':'
// at i (a quote may close the name between, as in JSON).
func (s *scan) named(i, j int) int {
	t := s.t
	for j > 0 && i-j < 2 && t[j-1] == ' ' { // "Password = x" in a config
		j--
	}
	switch kind := credName(t, j); {
	case kind == credNone:
		return i + 1
	case kind == credPassword && t[i] == '=':
		return s.credValue(i, false, 4, credNone)
	case kind == credPassword:
		return s.credValue(i, false, 6, credColon)
	default:
		return s.credValue(i, false, 8, kind)
	}
}

// Kinds of credential names (credName) and how much their values must look like a secret.
const (
	credNone     = iota
	credPassword // password, passwd, pwd: any value of four bytes or more after '='
	credColon    // a password name before ':', or in code: a letter and a digit or a symbol
	credGeneric  // *_SECRET, *_TOKEN, *_API_KEY, *_PRIVATE_KEY: a digit and a letter
)

// credName returns the kind of the credential name that ends at j (before '=' or ':'), or
// credNone: Password, Pwd, Passwd, alone or as the last part of a snake_case name
// (DB_PASSWORD, mysql_root_password) or of an upper-case one (PGPASSWORD), and "--password";
// secret and token as the last part of a snake_case name (JWT_SECRET, client_secret,
// GITHUB_TOKEN, access_token) or alone in upper case; api_key, apikey (apiKey) and
// private_key alone or last; the headers api-key and x-api-key. A name after a single '-' is an option of something else
// ("max-token="), and one after '.' code ("self.password = x") unless it ends a properties
// key (propertyKey), whose password's value must then look like a secret (credColon).
func credName(t []byte, j int) int {
	if j < 3 {
		return credNone
	}
	var sfx []string
	kind := credGeneric
	switch t[j-1] | 0x20 {
	case 'd':
		sfx, kind = credPasswords[:], credPassword
	case 't':
		sfx = credSecrets[:1]
	case 'n':
		sfx = credSecrets[1:2]
	case 'y':
		if hasPrefixFold(t, j-7, "api-key") {
			// The api-key header of Azure OpenAI, x-api-key of many others.
			if a := j - 7; a == 0 || !isWord(t[a-1]) && t[a-1] != '-' && t[a-1] != '.' ||
				t[a-1] == '-' && (a == 2 && t[0]|0x20 == 'x' || a > 2 && t[a-2]|0x20 == 'x' && !isWord(t[a-3]) && t[a-3] != '-') {
				return credGeneric
			}
			return credNone
		}
		sfx = credSecrets[2:]
	default:
		return credNone
	}
	// Most names end in none of the suffixes: rule them out before reading the name.
	n := 0
	for _, p := range sfx {
		if hasPrefixFold(t, j-len(p), p) {
			n++
		}
	}
	if n == 0 {
		return credNone
	}
	a := j
	upper := true
	for a > 0 && j-a < 48 && isWord(t[a-1]) {
		a--
		upper = upper && !isLower(t[a])
	}
	dotted := a > 0 && t[a-1] == '.'
	if dotted && !propertyKey(t, a-1, j) ||
		a > 0 && t[a-1] == '-' && !(a >= 2 && t[a-2] == '-' && (a == 2 || isSpace(t[a-3]))) {
		return credNone
	}
	if (dotted || a > 0 && t[a-1] == '$') && kind == credPassword {
		// spring.datasource.password=, or a Perl or PHP variable ("my $passwd = shift;"):
		// the value must look like a secret.
		kind = credColon
	}
	for _, p := range sfx {
		b := j - len(p)
		if b < a || !hasPrefixFold(t, b, p) {
			continue
		}
		switch {
		case b == a && (kind == credPassword || upper || p[0] != 's' && p[0] != 't'):
			return kind // Password, SECRET, apiKey
		case b-1 > a && t[b-1] == '_' && !upper && kind == credPassword:
			return credColon // db_password = user_pw in code: the value must look like a secret
		case b-1 > a && t[b-1] == '_':
			return kind // DB_PASSWORD, client_secret
		case upper && kind != credGeneric:
			return kind // PGPASSWORD
		}
	}
	return credNone
}

// propertyKey reports whether the name that ends at j, after the '.' at d, ends a Java
// properties key that starts its line: "spring.datasource.password=", "db.password:", with
// nothing between the name and '=' or ':'. Code assigns to a field with spaces around '='
// or within a line ("self.password = pw", "if (cfg.password==null)"); "self." and "this."
// are code too.
func propertyKey(t []byte, d, j int) bool {
	if j >= len(t) || t[j] != '=' && t[j] != ':' {
		return false
	}
	a := d
	for a > 0 && d-a < 128 && (isWord(t[a-1]) || t[a-1] == '.' && t[a] != '.') {
		a--
	}
	k := a
	for k > 0 && (t[k-1] == ' ' || t[k-1] == '\t') {
		k--
	}
	return (k == 0 || t[k-1] == '\n') && isLower(t[a]) && !hasPrefixAt(t, a, "self.") && !hasPrefixAt(t, a, "this.")
}

var (
	credPasswords = [...]string{"password", "passwd", "pwd"}
	credSecrets   = [...]string{"secret", "token", "api_key", "apikey", "private_key"}
)

// credValue reports the value of a named credential whose name ends at k as a SECRET: past
// an optional closing quote, '=' or ':' (with bare, spaces alone will do, as on a command
// line), spaces and an opening quote, the bytes up to the closing quote, or, unquoted, up to
// a space, a quote, ';', a closing bracket, a comma before a space or the '&' before a URL
// query's next parameter. It must be min bytes long at least, no placeholder ("$env:PW",
// "<password>", "{0}", "%PW%", "****", "...", "myPassword", "your-key", "true") and, unquoted,
// no code (see codeRef). It returns where the scan goes on.
func (s *scan) credValue(k int, bare bool, min int, kind int) int {
	t := s.t
	q, p := afterName(t, k)
	switch {
	case k < len(t) && t[k] == '=': // a name may end the text ("... -SessionToken")
		p = k + 1
	case p < len(t) && (t[p] == '=' || t[p] == ':'):
		p++
	case bare && p > q && q == k && p-q < 8:
	default:
		return k + 1
	}
	for p < len(t) && (t[p] == ' ' || t[p] == '\t') && p-k < 8 {
		p++
	}
	var quote byte
	if p < len(t) && (t[p] == '"' || t[p] == '\'') {
		quote = t[p]
		p++
	}
	e := p
	for e < len(t) && e-p <= 256 {
		c := t[e]
		if quote != 0 {
			if c == quote || c == '\n' {
				break
			}
		} else if isSpace(c) || c < ' ' || c == '"' || c == '\'' || c == '`' || c == ';' ||
			c == ')' || c == ']' || c == '}' || c == '>' || c == '&' && queryParam(t, e+1) ||
			c == ',' && (e+1 == len(t) || isSpace(t[e+1])) {
			break
		}
		e++
	}
	if e-p < min || e-p > 256 || p < s.lo || credPlaceholder(t[p:e]) || quote == 0 && codeRef(t, p, e) || pathValue(t[p:e]) ||
		kind != credNone && !credLooksSecret(t[p:e], kind, quote != 0) {
		return max(p, k+1)
	}
	s.emit(eSecret, p, e, 1)
	return e
}

// credLooksSecret reports whether the value v of a credential name of the given kind looks
// like a secret: after a generic name (API_TOKEN, client_secret), a digit and a letter, so
// counts and limits ("TOKEN=4096") and words ("supersecret") are not; after a password name
// and ':', a letter and a digit or a symbol ("Password: hunter2x!"), so prose ("Password:
// Required") and translations ("password": "Passwort") are not. A value with a space is
// words; an unquoted dotted name is code ("process.env.DB_PW").
func credLooksSecret(v []byte, kind int, quoted bool) bool {
	var c uint8
	dots, sym := 0, false
	for _, b := range v {
		c |= cls[b]
		switch {
		case b == '.':
			dots++
		case !isWord(b) && b != '-' && b > ' ' && b < 0x7f:
			sym = true
		}
	}
	if v[0] == '-' || v[0] == '!' || bytes.IndexByte(v, ' ') >= 0 || bytes.Contains(v, []byte("://")) {
		// A PEM key, which its own matcher takes whole, a YAML tag ("password: !vault |"),
		// words (a translation: "password": "Mot de passe") or a link ("Reset password: https://...").
		return false
	}
	if !quoted && dots > 0 && !sym && isAlpha(v[0]) && isAlpha(v[len(v)-1]) {
		return false
	}
	if kind == credGeneric {
		return c&cDigit != 0 && c&(cUpper|cLower) != 0
	}
	return c&(cUpper|cLower) != 0 && (c&cDigit != 0 || sym)
}

// pathValue reports whether the value v of a named credential is a file path: "/home/app"
// after PWD or OLDPWD, the working directory in an environment dump ("PWD=/home/app",
// "PWD": "/Users/ann"), "NOPASSWD: /bin/systemctl" in sudoers, "~/..." or "C:\...".
func pathValue(v []byte) bool {
	return v[0] == '/' || v[0] == '~' && len(v) > 1 && v[1] == '/' ||
		len(v) > 2 && isAlpha(v[0]) && v[1] == ':' && (v[2] == '\\' || v[2] == '/')
}

// codeRef reports whether the unquoted value t[p:e] of a named credential is code that holds
// or fetches the password, not the password: a comparison ("password==null"), a call or an
// index ("os.getenv(", "os.environ["), or an identifier, maybe dotted, that ends an argument
// ("password=cfg.db_pw)", "password=db_pw,").
func codeRef(t []byte, p, e int) bool {
	if t[p] == '=' || t[p] == '>' {
		return true
	}
	ident := !isDigit(t[p])
	for k := p; k < e; k++ {
		switch c := t[k]; {
		case c == '(' || c == '[':
			return true
		case !isWord(c) && c != '.':
			ident = false
		}
	}
	return ident && e < len(t) && (t[e] == ')' || t[e] == ',')
}

// queryParam reports whether a URL query's next parameter, "name=", starts at i.
func queryParam(t []byte, i int) bool {
	k := spanOf(t, i, isWord)
	return k > i && k < len(t) && t[k] == '='
}

// credPlaceholder reports whether the value v of a named credential stands for one: a
// variable, a template or a mask, or a value that names itself.
func credPlaceholder(v []byte) bool {
	switch v[0] {
	case '$', '<', '{', '[', '(', '%', '*', '#', '@', '\\', '+', ' ': // '+', ' ': "PWD=" + dir
		return true
	}
	if bytes.Contains(v, []byte("...")) || bytes.Count(v, v[:1]) == len(v) {
		return true
	}
	var buf [256]byte
	n := copy(buf[:], v)
	w := buf[:n]
	for k := range w {
		w[k] = asciiLower(w[k])
	}
	switch string(w) {
	case "true", "false", "null", "none", "nil", "empty", "secret", "required", "changeme", "redacted",
		"string", "example", "placeholder":
		return true
	}
	return bytes.Contains(w, []byte("password")) || bytes.Contains(w, []byte("passwd")) ||
		bytes.HasPrefix(w, []byte("your")) || bytes.HasPrefix(w, []byte("my_")) ||
		bytes.HasPrefix(w, []byte("my-"))
}
