package guard

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// leakRun scans text split at the given cut offsets and returns the output, the vault's
// completion summary and the blocked set.
func leakRun(p *PII, window int, text []byte, cuts ...int) (string, string, EntitySet) {
	v := &Vault{}
	var s LeakScanner
	s.Reset(p, v, window)
	var out []byte
	prev := 0
	for _, c := range cuts {
		out = s.Write(out, text[prev:c])
		if s.Held() >= s.win {
			panic("held a whole window")
		}
		prev = c
	}
	out = s.Write(out, text[prev:])
	out = s.Close(out)
	return string(out), string(v.AppendSummary(nil, Completion)), s.Blocked()
}

var jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + strings.Repeat("eyJzdWIiOiI4MTcxNDQ0IiwibmFtZSI6IkdyYWNlIiwiaWF0IjoxNzE2OTc4OTExfQ", 6) +
	".y2NZwPT-O7s9JpgdowGlHxfMzHUeyDginJRfFVP18w4"

var pemKey = "-----BEGIN RSA PRIVATE KEY-----\n" + strings.Repeat("WlpOHHKoVGYBAHUUrv436Nszv85Mfrw83Xgtf2hu8MmttW+eEM+TK8ZChccIvBME\n", 20) +
	"-----END RSA PRIVATE KEY-----"

// jsonKey is a PEM key as a JSON string carries it, with its line breaks escaped.
var jsonKey = `{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\n` +
	strings.Repeat(`MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n`, 12) +
	`-----END PRIVATE KEY-----\n", "client_email": "svc@proj.iam.gserviceaccount.com"}`

// pgpKey is a PGP key block with armor headers and the blank line after them.
var pgpKey = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\nComment: Alice's key, https://keys.example.com/alice\n\n" +
	strings.Repeat("lQOYBF0kRrMBCADmR5uE0n6dGJgZsKz9Y8Bn1xVtk2X4rEa0SWe1Wb8mN7D4k6fE\n", 12) + "=Xk2Q\n-----END PGP PRIVATE KEY BLOCK-----"

var leakTexts = []string{
	"Sure! You can reach Bob at bob.smith@example.com or (415) 555-0132. His card is 4111 1111 1111 1111.",
	"The IBAN is DE89 3704 0044 0532 0130 00 and the SSN 856-70-3422; server 10.20.30.40, MAC 5c:d9:db:76:40:8e.",
	"Use postgres://admin:S3cr3tPass@db.example.com/app with key AKIAYYCSHKQINVNU5XDG and ghp_kDsbPU3b2XGuziLcO7LZQAeirJjXufYdbOs7.",
	"电话：+86 138 0013 8000，邮箱 wang.wei@example.cn。IBAN GB82 WEST 1234 5698 7654 32 für die Überweisung.",
	"Token: " + jwt + " — keep it secret.",
	"Here is the key:\n" + pemKey + "\nDo not share it.",
	"Digits that run on: " + strings.Repeat("1234 5678 ", 40) + "and a phone 020 7946 0018 then a@b.io",
	strings.Repeat("x", 300) + "bob@example.com" + strings.Repeat("y", 300),
	"ssn 123456789 is context-dependent; SSN: 078-05-1120; no. 987-65-4321",
	benchText(1500, 5),
	"Here is the file: " + jsonKey + " keep it safe",
	"Key:\n" + pgpKey + "\nImport it with gpg.",
	"[default]\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n{\"SecretAccessKey\": \"7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2\"}",
	"Escríbeme a josé.garcía@empresa.es o a “müller@beispiel.de” — gracias.",
	"Schreib an info@bücher.de oder an почта@пример.рф, bitte.",
	"Data Source=srv01;User ID=app;Password=hunter2Secret!;Encrypt=True\npassword = Tr0ub4dor&3x\n" +
		"Set-AWSCredential -SecretKey s3cr3tV4lu3Xq9wLmN2Tz -SessionToken FwoGZXIvYXdzEBYaDHqa0AP1\n" +
		"aws_session_token = FwoGZXIvYXdzEBYaDHqa0AP1/5Aq2Xr2JiLIAZgMQKl4yA1pR7tY0uI9oP",
	"GET /v1/me HTTP/1.1\nAuthorization:   Bearer   8f2c1a7e5b2d48f0a6c4e9d1\n",
	"curl https://myres.openai.azure.com/x -H \"api-key:  0f3c1a7e5b2d48f0a6c4e8b1d3f5a7c9\" -H 'X-API-Key: 3b7e9d2f1a8c4e6b0d5f7a9c'",
	"Run mysqldump -h db01 -u backup \\\n  -pB4ckup2024x --single-transaction shop > shop.sql",
	"database:\n  password: \"s3cr3t-Pa55w0rd\"\nSMTP_PASSWD = m4ilR3lay9\n{\"client_secret\": \"Qx7v2LmP9aZt4RkW1nYc\"}\nJWT_SECRET = 9f3c1a7e5b2d48f0a6c4e8b1d3f5a7c9",
	// Values that start at a name or option before them: no cut may fall between.
	`curl -sS -u admin:Sup3rS3cret -H "Authorization: Basic YWRtaW46czNjcjN0UGFzcw==" http://localhost:9200/`,
	`new BasicAWSCredentials("AKIAYYCSHKQINVNU5XDG", "7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2") and the rest`,
	"docker login -u deploy -p 'S3cr3t!pw9' registry.example.com && sshpass -p hunter2x ssh -p 2222 bastion\n" +
		"redis-cli -h cache -a s3cr3tPw9 info; tool --password Tr0ub4dor3x --user app",
	"On Tue, Ops wrote:\n> -----BEGIN PRIVATE KEY-----\n> MIIEvQIBADANBgkqhkiG9w0B\n> AbCd+/==\n> -----END PRIVATE KEY-----\n\nthanks",
}

// TestLeakScannerMatchesRedactNamedValues checks that a stream finds what Redact finds where
// a value's matcher starts before it: Basic credentials after "Authorization:", curl's -u,
// an AWS secret key after its access key ID, and a quoted PEM key's lines.
func TestLeakScannerMatchesRedactNamedValues(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact})
	for _, text := range append(leakTexts[len(leakTexts)-4:len(leakTexts):len(leakTexts)],
		"aws configure set aws_secret_access_key 9sHk2vQ+LmT0pWz7Rx4bNcY1eFgJ8aUoDi3KqVs5 --profile prod",
		"key AKIAYYCSHKQINVNU5XDG from the vault, then its secret 7oX8nrEHAluvtdgDW1/In81LJK6yc/jecsblnAk2",
		"curl -X POST https://api.example.com/m \\\n  --user 'AC0123456789abcdef:9f8e7d6c5b4a3928'",
		`{"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}`,
		"Set-AWSCredential -AccessKey $ak -SecretKey s3cr3tV4lu3Xq9wLmN2Tz -SessionToken FwoGZXIvYXdzEBYaDHqa0AP1",
		"[prod]\naws_session_token = FwoGZXIvYXdzEBYaDHqa0AP1/5Aq2Xr2JiLIAZgMQKl4yA1pR7tY0uI9oP\nregion = eu-west-1",
		"Data Source=srv01;Initial Catalog=Sales;User ID=app;Password=hunter2Secret!;Encrypt=True",
		"DB_HOST=db\npassword = Tr0ub4dor&3x\nuser=app",
		"Login for staging:\nPassword: hunter2x!\nthen sudo",
		`curl -s https://api.example.com/v2/orders -H "Authorization: Bearer 8f2c1a7e5b2d48f0a6c4e9d1"`,
		`{"client_id": "web", "client_secret": "Qx7v2LmP9aZt4RkW1nYc", "scope": "read"}`,
		"SMTP_PASSWD = m4ilR3lay9\nJWT_SECRET = 9f3c1a7e5b2d48f0a6c4e8b1d3f5a7c9\nexport GITHUB_TOKEN= a7Fq29XkLm3Pz81Rt6Vw0Yb4") {
		want, _ := p.Redact(nil, []byte(text), Completion, &Vault{})
		if strings.Count(string(want), "<SECRET_") == 0 {
			t.Fatalf("Redact(%q) = %q: no secret found", text, want)
		}
		if got, _, _ := leakRun(p, 256, []byte(text)); got != string(want) {
			t.Errorf("stream scan of %q:\n got %q\nwant %q", text, got, want)
		}
	}
}

func TestLeakScannerChunkInvariance(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact,
		Overrides: []PIIOverride{{Entity: EntityCreditCard, Direction: Completion, Action: ActionMask},
			{Entity: EntitySSN, Direction: Completion, Action: ActionBlock},
			{Entity: EntityIP, Direction: Completion, Action: ActionHash}}})
	for _, window := range []int{96, 256} {
		for _, text := range leakTexts {
			b := []byte(text)
			want, wantSum, wantBlk := leakRun(p, window, b)
			for i := 0; i <= len(b); i++ {
				got, sum, blk := leakRun(p, window, b, i)
				if got != want || sum != wantSum || blk != wantBlk {
					t.Fatalf("window %d, cut at %d of %q:\n got %q %s %b\nwant %q %s %b", window, i, text, got, sum, blk, want, wantSum, wantBlk)
				}
			}
			cuts := make([]int, 0, len(b))
			for i := 1; i < len(b); i++ {
				cuts = append(cuts, i)
			}
			if got, _, _ := leakRun(p, window, b, cuts...); got != want {
				t.Fatalf("window %d, byte by byte %q:\n got %q\nwant %q", window, text, got, want)
			}
		}
	}
}

func TestLeakScannerMatchesRedact(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact})
	for _, text := range leakTexts[:4] {
		want, _ := p.Redact(nil, []byte(text), Completion, &Vault{})
		if got, _, _ := leakRun(p, 256, []byte(text)); got != string(want) {
			t.Errorf("stream scan of %q:\n got %q\nwant %q", text, got, want)
		}
	}
}

// TestLeakScannerWideSeparators checks that no cut falls before a no-break space or an en
// dash between digit groups, or after the slash of a German area code.
func TestLeakScannerWideSeparators(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact})
	for _, text := range []string{
		"Appelez-moi au 06\u00a039\u00a098\u00a041\u00a027 après 18 h, ou au +49\u202f30\u202f901820.",
		"Carte : 4111\u00a01111\u00a01111\u00a01111 ; SSN 219\u201309\u20139999 ; call (415) 555\u20130147",
		"IBAN\u00a0: FR76\u00a03000\u00a06000\u00a00112\u00a03456\u00a07890\u00a0189 — Handy: 0176 / 23456789",
	} {
		want, _ := p.Redact(nil, []byte(text), Completion, &Vault{})
		if strings.Count(string(want), "<") < 2 {
			t.Fatalf("Redact(%q) = %q: too few values found", text, want)
		}
		if got, _, _ := leakRun(p, 96, []byte(text)); got != string(want) {
			t.Errorf("stream scan of %q:\n got %q\nwant %q", text, got, want)
		}
	}
}

// TestLeakScannerKeyNames checks that no cut falls between a key's name and its value: the
// AWS secret key matcher starts at the name.
func TestLeakScannerKeyNames(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact})
	got, _, _ := leakRun(p, 96, []byte(leakTexts[12]))
	if want := "[default]\naws_secret_access_key = <SECRET_1>\n{\"SecretAccessKey\": \"<SECRET_2>\"}"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLeakScannerLongValues(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact})
	for _, text := range []string{leakTexts[4], leakTexts[5], leakTexts[10], leakTexts[11]} {
		for _, window := range []int{96, 97, 98, 99, 100, 256} {
			got, _, _ := leakRun(p, window, []byte(text), len(text)/3, len(text)/2)
			if strings.Contains(got, "eyJzdWIi") || strings.Contains(got, "WlpOHHKo") || strings.Contains(got, "MIIEvQ") ||
				strings.Contains(got, "lQOYBF0k") || strings.Contains(got, "Alice") || !strings.Contains(got, "<SECRET_1>") {
				t.Errorf("window %d leaked a long secret: %q", window, got)
			}
			if strings.Contains(got, "<SECRET_2>") {
				t.Errorf("window %d split one secret in two: %q", window, got)
			}
		}
	}
}

func TestLeakScannerEmitsEarly(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact})
	var s LeakScanner
	s.Reset(p, &Vault{}, 0)
	tests := []struct {
		chunk, want string
		held        int
	}{
		{"Hello there, ", "Hello there, ", 0},
		{"write to bob@exa", "write to ", 7},
		{"mple.com today", "<EMAIL_ADDRESS_1> ", 5},
		{" or call 415", "today or call ", 3},
		{" 555 0132 ", "", 13},
		{"now.", "", 17},
		{"日本", "<PHONE_NUMBER_1> now.日", 3},
	}
	for _, tt := range tests {
		got := s.Write(nil, []byte(tt.chunk))
		if string(got) != tt.want || s.Held() != tt.held {
			t.Fatalf("Write(%q) = %q held %d, want %q held %d", tt.chunk, got, s.Held(), tt.want, tt.held)
		}
	}
	if got := s.Close(nil); string(got) != "本" {
		t.Fatalf("Close = %q", got)
	}
}

func TestLeakScannerNoAllocs(t *testing.T) {
	p := mustPII(t, PIIOptions{Completion: ActionRedact})
	text := []byte(benchText(4096, 5))
	v := &Vault{}
	var s LeakScanner
	dst := make([]byte, 0, 8192)
	run := func() {
		v.Reset()
		s.Reset(p, v, 0)
		dst = dst[:0]
		for i := 0; i < len(text); i += 16 {
			dst = s.Write(dst, text[i:min(i+16, len(text))])
		}
		dst = s.Close(dst)
	}
	run()
	if n := testing.AllocsPerRun(20, run); n != 0 {
		t.Errorf("LeakScanner: %v allocs, want 0", n)
	}
}

// TestCutLetters checks that a run of letters fed at once leaves the cut state as feeding
// them one by one does, on text with words, keys, PEM markers, dashes and AWS key IDs.
func TestCutLetters(t *testing.T) {
	texts := append(leakTexts[:len(leakTexts):len(leakTexts)], "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
		"ASIAQWERTYUIOPASDFGH AKIAYYCSHKQINVNU5XDG Password: x--BEGIN AbC-dEf")
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, 200)
		for k := range b {
			const alphabet = "aZA -:=/\n\"'BEGINDK5\xc3xyzQ"
			b[k] = alphabet[r.IntN(len(alphabet))]
		}
		texts = append(texts, string(b))
	}
	isRunLetter := func(c byte) bool { return c|0x20-'a' < 26 && c != 'A' }
	var runs int
	for _, text := range texts {
		var cs cutState
		for k := 0; k < len(text); {
			if isRunLetter(text[k]) && cs.dash == 0 && cs.kw == 0 {
				n := 1
				for n < 1+r.IntN(12) && k+n < len(text) && isRunLetter(text[k+n]) {
					n++
				}
				runs++
				one := cs
				for _, c := range []byte(text[k : k+n]) {
					if one.step(c) {
						t.Fatalf("%q at %d: a cut after a letter of a run", text, k)
					}
				}
				cs.letters([]byte(text[k : k+n]))
				if cs != one {
					t.Fatalf("%q at %d, %d letters: at once %+v, one by one %+v", text, k, n, cs, one)
				}
				k += n
				continue
			}
			cs.step(text[k])
			k++
		}
	}
	if runs < 1000 {
		t.Fatalf("only %d runs of letters were tried", runs)
	}
}
