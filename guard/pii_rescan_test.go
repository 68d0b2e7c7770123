package guard

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// redactFullRescan is Redact as it was before rescans were limited to windows near what was
// rewritten: every round rescans the whole output.
func redactFullRescan(p *PII, src []byte, d Direction, v *Vault) []byte {
	fs := p.Find(nil, src)
	if len(fs) == 0 {
		return append([]byte(nil), src...)
	}
	v.reserve(src)
	dst, _ := p.apply(nil, src, fs, 0, d, v, false)
	for round := 0; round < 4; round++ {
		var keep []Finding
		for _, f := range p.Find(nil, dst) {
			if a := p.act[d][entityIndex(f.Entity)]; a >= ActionRedact && !inPlaceholder(dst, f) {
				keep = append(keep, f)
			}
		}
		if len(keep) == 0 {
			break
		}
		dst, _ = p.apply(nil, bytes.Clone(dst), keep, 0, d, v, false)
	}
	return dst
}

// TestRedactRescanWindows checks that rescanning near the rewrites only gives what a rescan
// of the whole output gives, over the PII corpus one case at a time, in runs of cases on one
// line and on many lines, and with context words spliced in.
func TestRedactRescanWindows(t *testing.T) {
	f, err := os.Open("testdata/pii.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var texts []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var c struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, c.Text)
	}
	var cases []string
	cases = append(cases, texts...)
	for i := 0; i+8 <= len(texts); i += 5 {
		cases = append(cases, strings.Join(texts[i:i+8], " "), strings.Join(texts[i:i+8], "\n"),
			strings.Join(texts[i:i+8], " phone ssn card 123-45-6789 order "))
	}
	cases = append(cases, benchText(4<<10, 5), benchText(32<<10, 5))
	for _, a := range []Action{ActionRedact, ActionMask, ActionHash} {
		p := mustPII(t, PIIOptions{Prompt: a, HashKey: []byte("k")})
		for _, text := range cases {
			got, _ := p.Redact(nil, []byte(text), Prompt, &Vault{})
			want := redactFullRescan(p, []byte(text), Prompt, &Vault{})
			if !bytes.Equal(got, want) {
				t.Fatalf("action %d: Redact(%q)\n = %q\nwant %q", a, text, got, want)
			}
		}
	}
}

// A masked key keeps only its last four characters, and '*' may be written in a URL's
// userinfo: masking a key that is a URL's password makes the whole userinfo a URL_CREDENTIALS
// value, whose '@' may lie up to 256 bytes after the key. The rescan must reach it, or the
// password after the key stays in clear.
func TestRedactRescanURLUserinfo(t *testing.T) {
	for _, a := range []Action{ActionMask, ActionRedact, ActionHash} {
		p := mustPII(t, PIIOptions{Prompt: a, HashKey: []byte("k")})
		for _, n := range []int{10, 100, 120, 150, 200, 240, 260, 300} {
			text := []byte("see http://sk-proj-Xv7c1imwqSYt5dyqH2cqT3BlbkFJ6bmzOc1hik:" + strings.Repeat("p", n) + "@host.com now")
			got, _ := p.Redact(nil, text, Prompt, &Vault{})
			if want := redactFullRescan(p, text, Prompt, &Vault{}); !bytes.Equal(got, want) {
				t.Errorf("action %d, password of %d bytes: Redact(%q)\n = %q\nwant %q", a, n, text, got, want)
			}
		}
	}
}

// TestRedactRescanPEMNotRewritten checks rescans near values after a PEM key that is found
// but not rewritten (only detected, or its type not scanned): a window must not start inside
// the key, where a rescan would find values in its body that a whole-text scan skips.
func TestRedactRescanPEMNotRewritten(t *testing.T) {
	bodies := []string{"123-45-6789 ssn", "ssn: 123-45-6789", "4111 1111 1111 1111", "call 555-123-4567",
		"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "AKIAIOSFODNN7EXAMPLE"}
	values := []string{"bob@example.com", "ssn 078-05-1120", "(555) 123-4567", "http://u:pw@host.example"}
	ends := []string{"", "\n-----END PRIVATE KEY-----", "\n-----END PRIVATE KEY----- "}
	var cases []string
	for _, b1 := range bodies {
		for _, b2 := range bodies {
			for _, v := range values {
				for _, end := range ends {
					key := "-----BEGIN PRIVATE KEY-----\n" + b1 + "\n" + b2 + " "
					cases = append(cases, key+v+"\n", key+v+end+"\n"+v,
						"mail "+v+" me\n"+key+v+end, key+end+" "+v+"\n"+key+v)
				}
			}
		}
	}
	for _, o := range []PIIOptions{
		{Prompt: ActionRedact, Overrides: []PIIOverride{{Entity: EntitySecret, Direction: Prompt, Action: ActionDetect}}},
		{Prompt: ActionMask, Overrides: []PIIOverride{{Entity: EntitySecret, Direction: Prompt, Action: ActionDetect}}},
		{Prompt: ActionRedact, Entities: []string{EntityEmail, EntitySSN, EntityPhone, EntityCreditCard, EntityURLCredentials}},
	} {
		p := mustPII(t, o)
		for _, text := range cases {
			got, _ := p.Redact(nil, []byte(text), Prompt, &Vault{})
			want := redactFullRescan(p, []byte(text), Prompt, &Vault{})
			if !bytes.Equal(got, want) {
				t.Fatalf("%+v: Redact(%q)\n = %q\nwant %q", o, text, got, want)
			}
		}
	}
}

// TestPEMIndex checks pemIndex against bytes.Index on every string of up to eight pieces
// drawn from dashes, "BEGIN" and its parts, and other bytes.
func TestPEMIndex(t *testing.T) {
	pieces := []string{"-", "-----", "BEGIN", "B", "BEGI", "x", "-----BEGIN", " "}
	var walk func(s string, depth int)
	walk = func(s string, depth int) {
		if got, want := pemIndex([]byte(s)), bytes.Index([]byte(s), pemBegin); got != want {
			t.Fatalf("pemIndex(%q) = %d, want %d", s, got, want)
		}
		if depth == 0 {
			return
		}
		for _, p := range pieces {
			walk(s+p, depth-1)
		}
	}
	walk("", 6)
}

// TestRedactRescanContextReach checks rescans whose windows end at contextEnd: after each
// corpus case, filler text of many lengths and then weak values that only a context word
// makes PII (or that a negative word unmakes), the word standing in the rewritten value, in
// the filler, or right before the weak value, with spaces, line breaks and accented words.
func TestRedactRescanContextReach(t *testing.T) {
	var texts []string
	for _, name := range []string{"testdata/pii.jsonl", "testdata/pii_heldout.jsonl"} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		for sc := bufio.NewScanner(f); sc.Scan(); {
			var c struct{ Text string }
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, c.Text)
		}
		f.Close()
	}
	values := []string{"phone@example.com", "ssn-order@example.com", "http://order:pw@host.example",
		"4111 1111 1111 1111", "+1 415 555 0132", "version@x.io", "DE89 3704 0044 0532 0130 00"}
	fillers := []string{"a b ", "so ", "número ", "tel ", "x\n", "ok, ", "pedido ", "1.2 ", "ab12 ", "léa "}
	weak := []string{"078-05-1120", "415 555 0132", "4155550132", "10.1.2.3", "de89370400440532013000",
		"user@example.com", "1Z 999 AA1 01 2345 6784"}
	var cases []string
	for i, text := range texts {
		v := values[i%len(values)]
		for n := 0; n < 70; n += 9 + i%5 {
			var fill strings.Builder
			for k := 0; fill.Len() < n; k++ {
				fill.WriteString(fillers[(i+k)%len(fillers)])
			}
			w := weak[(i+n)%len(weak)]
			cases = append(cases, text+" "+v+" "+fill.String()[:n]+w+" end",
				v+fill.String()[:n]+" "+w+"\n"+text)
		}
	}
	// Values whose last word is a negative context word, then up to two long words, then a
	// weak value that this word unmakes: rewritten, the weak value is found anew, as far from
	// the span as nearWords reaches.
	for _, v := range []string{"http://bob:ticket@host.example", "http://bob:version@host.example",
		"mail jo@shop.id", "bob:ticket"} {
		for _, w := range []string{"98765 43210", "10.1.2.3", "078051120", "(415) 555-0132"} {
			for words := 0; words <= 3; words++ {
				for n := 1; n <= 40; n++ {
					fill := strings.Repeat(strings.Repeat("q", n)+" ", words)
					for _, sep := range []string{" ", "\n", "  "} {
						cases = append(cases, "x "+v+sep+fill+w+" y", v+" "+fill+"ssn "+w)
					}
				}
			}
		}
	}
	for _, a := range []Action{ActionRedact, ActionMask, ActionHash} {
		p := mustPII(t, PIIOptions{Prompt: a, HashKey: []byte("k")})
		for _, text := range cases {
			got, _ := p.Redact(nil, []byte(text), Prompt, &Vault{})
			want := redactFullRescan(p, []byte(text), Prompt, &Vault{})
			if !bytes.Equal(got, want) {
				t.Fatalf("action %d: Redact(%q)\n = %q\nwant %q", a, text, got, want)
			}
		}
	}
}

// TestPlaceholderInsideInert checks what rescanWindow relies on to skip the inside of a
// numbered placeholder: the matcher of each of its trigger bytes, whatever the text around it
// and wherever the last value ended, reports nothing and returns before its '>'.
func TestPlaceholderInsideInert(t *testing.T) {
	pres := []string{"", "x", " ", "secret", "Secret_", "sk", "rk", "github", "aws_", "a@", "1", "ghp", "hf",
		"key ", "-", "A", "AKIA", "eyJ", "http://u:", "4111 1111 ", "+1 ", "(", "DE89 "}
	posts := []string{"", "x", " ", "_live_", "@b.com", "pat_x", "0", "1111", ":", "-", "=abc", "\n"}
	for _, o := range []PIIOptions{{}, {MinScore: 0.01}} {
		p := mustPII(t, o)
		for e := range numEntities {
			for _, num := range []string{"1", "7", "10", "99", "123456"} {
				ph := "<" + entityNames[e] + "_" + num + ">"
				if !numberedPlaceholder([]byte(ph)) {
					t.Fatalf("numberedPlaceholder(%q) = false", ph)
				}
				for _, other := range []string{string(appendHashed(nil, e, 0x12345678)), string(appendHashed(nil, e, 0xabcdef01)),
					"****" + num, num, "***" + ph[len(ph)-4:]} {
					if numberedPlaceholder([]byte(other)) {
						t.Fatalf("numberedPlaceholder(%q) = true", other)
					}
				}
				for _, pre := range pres {
					for _, post := range posts {
						text := []byte(pre + ph + post)
						a, b := len(pre), len(pre)+len(ph)
						for q := a; q < b; q++ {
							if trig[text[q]] == tNone {
								continue
							}
							for lo := 0; lo <= q; lo++ {
								s := scan{p: p, t: text, lo: lo, from: min(lo, a)}
								if r := s.trigger(q); r > b-1 || r <= q || len(s.dst) > 0 {
									t.Fatalf("%q, lo %d: the matcher of %q at %d returns %d and reports %v", text, lo, text[q], q, r, s.dst)
								}
							}
						}
					}
				}
			}
		}
	}
}
