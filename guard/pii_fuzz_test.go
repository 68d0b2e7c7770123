package guard

import (
	"bytes"
	"slices"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	for _, s := range leakTexts {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		"", "<", "<EMAIL_ADDRESS_1>", "a@b.co", "Bob@Example.com and bob@example.com", "+1 (415) 555-0132", "::1", "fe80::1%eth0",
		"https://u:p@h.io/", "https://x:ghp_XyKAtICmgglPqXmZTqGD47LfKqJNk3l79zdc@github.com",
		"123-45-6789 ssn 123456789", "DE89 3704 0044 0532 0130 00", "00:11:22:33:44:55",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.", "-----BEGIN PRIVATE KEY-----\nAAAA\n",
		"bc1qm4k676xpytua6vf7e0lvapamzag8q3faanfq6n", "1B5cijhQSXMXT6L9XYUNf2oE642JbFkRnd",
		`"-----BEGIN PRIVATE KEY-----\nMIIEvQ\/AB\r\n-----END PRIVATE KEY-----\n"`,
		"-----BEGIN PGP PRIVATE KEY BLOCK-----\nComment: a's\n\nlQOY\n=Xk2Q\n-----END PGP PRIVATE KEY BLOCK-----",
		"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "ya29.a0AfH6SMBx3kQ9vZ-_pLmN2wR7tY0",
		"https://hooks.slack.com/services/T04QX7M2LBN/B06E1R9KZ3P/f4StfxDPqJ2mK9rLx0aBcDeF 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",
		"06\u00a039\u00a098\u00a041\u00a027 +49\u202f30\u202f901820 555\u20132671 Tel. 030/12345678",
		"iban: de89370400440532013000 DE89-3704-0044-0532-0130-00",
		"Mi MÓVIL: 612 34 56 78, (11) 91234-5678, 11 3456-7890, 098765 43210 06.39.98.56.78.90",
		"\xc3\xa9tel 4155550132 \xa9t\xc3 98765 43210 T\xc3\x97l 4155550133 \xc3",
	} {
		f.Add([]byte(s))
	}
}

// FuzzFind checks that findings are in bounds, sorted, non-overlapping and scored.
func FuzzFind(f *testing.F) {
	fuzzSeeds(f)
	p := mustPII(f, PIIOptions{})
	f.Fuzz(func(t *testing.T, text []byte) {
		prev := 0
		for _, x := range p.Find(nil, text) {
			if x.Start < prev || x.End <= x.Start || x.End > len(text) {
				t.Fatalf("finding %+v out of order or bounds (prev end %d, len %d)", x, prev, len(text))
			}
			if _, ok := entityOf(x.Entity); !ok || x.Score < p.minScore || x.Score > 1 {
				t.Fatalf("finding %+v: bad entity or score", x)
			}
			prev = x.End
		}
	})
}

// placeholderSpans returns the spans of the placeholders in b.
func placeholderSpans(b []byte) [][2]int {
	var out [][2]int
	for i := 0; i < len(b); i++ {
		if b[i] != '<' {
			continue
		}
		if _, _, _, _, n, st := parsePlaceholder(b[i:]); st == phOK {
			out = append(out, [2]int{i, i + n})
			i += n - 1
		}
	}
	return out
}

// FuzzRedactRestore checks that redaction leaves no PII outside placeholders and that restore
// undoes it.
func FuzzRedactRestore(f *testing.F) {
	fuzzSeeds(f)
	p := mustPII(f, PIIOptions{Prompt: ActionRedact})
	f.Fuzz(func(t *testing.T, text []byte) {
		v := &Vault{}
		out, _ := p.Redact(nil, text, Prompt, v)
		if back := v.Restore(nil, out); !sameUpToEmailCase(p, back, text) {
			t.Fatalf("Restore(Redact(%q)) = %q via %q", text, back, out)
		}
		if want := redactFullRescan(p, text, Prompt, &Vault{}); !bytes.Equal(out, want) {
			t.Fatalf("Redact(%q) = %q, a rescan of the whole output gives %q", text, out, want)
		}
		spans := placeholderSpans(out)
		for _, x := range p.Find(nil, out) {
			inside := false
			for _, s := range spans {
				inside = inside || x.Start < s[1] && s[0] < x.End
			}
			if !inside {
				t.Fatalf("after redaction of %q, %s %q remains in %q", text, x.Entity, out[x.Start:x.End], out)
			}
		}
	})
}

// sameUpToEmailCase reports whether got is want but for the case of ASCII letters inside
// want's e-mail addresses: redact then restore is the identity up to that. The vault gives an
// address one placeholder however its letters are cased, so that the model sees one person,
// and restores the first spelling (TestVaultEmailCase): "Bob@Example.com and bob@example.com"
// comes back as "Bob@Example.com and Bob@Example.com".
func sameUpToEmailCase(p *PII, got, want []byte) bool {
	if bytes.Equal(got, want) {
		return true
	}
	if len(got) != len(want) {
		return false
	}
	g, w := bytes.Clone(got), bytes.Clone(want)
	for _, x := range p.Find(nil, want) {
		if x.Entity == EntityEmail {
			for i := x.Start; i < x.End; i++ {
				g[i], w[i] = asciiLower(g[i]), asciiLower(w[i])
			}
		}
	}
	return bytes.Equal(g, w)
}

// chunks splits b at points drawn from seed.
func chunks(b []byte, seed uint64) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		seed = seed*6364136223846793005 + 1442695040888963407
		n := int(seed>>58) + 1 // 1..64
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// FuzzStreamSplit checks that the LeakScanner and the Restorer give the same output however
// the stream is cut into chunks.
func FuzzStreamSplit(f *testing.F) {
	for _, s := range leakTexts {
		f.Add([]byte(s), uint64(len(s)), uint8(0))
	}
	f.Add([]byte("x <EMAIL_ADDRESS_1> y"), uint64(3), uint8(1))
	p := mustPII(f, PIIOptions{Prompt: ActionRedact, Completion: ActionRedact,
		Overrides: []PIIOverride{{Entity: EntitySecret, Direction: Completion, Action: ActionMask}}})
	f.Fuzz(func(t *testing.T, text []byte, seed uint64, w uint8) {
		window := 96 + int(w)
		whole, wsum, wblk := leakRun(p, window, text)
		var s LeakScanner
		v := &Vault{}
		s.Reset(p, v, window)
		var out []byte
		for _, c := range chunks(text, seed) {
			out = s.Write(out, c)
			if s.Held() >= window {
				t.Fatalf("held %d bytes with a window of %d", s.Held(), window)
			}
		}
		out = s.Close(out)
		if string(out) != whole || string(v.AppendSummary(nil, Completion)) != wsum || s.Blocked() != wblk {
			t.Fatalf("chunked scan of %q:\n got %q\nwant %q", text, out, whole)
		}

		// Restorer: a redacted prompt echoed back in chunks.
		rv := &Vault{}
		red, _ := p.Redact(nil, text, Prompt, rv)
		r := NewRestorer(rv)
		var back []byte
		for _, c := range chunks(red, seed^0x9e3779b97f4a7c15) {
			back = r.Write(back, c)
			if r.Held() >= maxPlaceholder {
				t.Fatalf("restorer held %d bytes", r.Held())
			}
		}
		if back = r.Flush(back); !sameUpToEmailCase(p, back, text) {
			t.Fatalf("chunked restore of %q = %q", red, back)
		}
	})
}

// FuzzRestoreInJSONStream checks that restoring the inside of a JSON string in pieces, the way
// a stream's tool call arguments arrive, gives what restoring it whole gives, for any text:
// placeholders plain or with escaped angle brackets, other escapes, cut anywhere.
func FuzzRestoreInJSONStream(f *testing.F) {
	_, v := redacted(f, "mail bob@example.com or call (415) 555-0132")
	for _, s := range []string{
		`{"to":"\u003cEMAIL_ADDRESS_1\u003e"}`, `\\u003cEMAIL_ADDRESS_1>`, `<PHONE_NUMBER_1> \u003CPHONE_NUMBER_1\u003E`,
		`\u003cEMAIL_ADDRESS_1\u00`, `\u003`, `\`, `a\"b\u00e9\n<EMAIL_ADDRESS_1`,
	} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, text string, size uint8) {
		want := v.RestoreInJSONString(nil, []byte(text))
		var r Restorer
		r.ResetInJSONString(v)
		var out []byte
		for piece := range slices.Chunk([]byte(text), int(size%16)+1) {
			out = r.Write(out, piece)
		}
		if got := r.Flush(out); !bytes.Equal(got, want) {
			t.Fatalf("in pieces of %d: %q\n whole %q", int(size%16)+1, got, want)
		}
	})
}
