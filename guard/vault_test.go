package guard

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestRedactActions(t *testing.T) {
	key := []byte("test key")
	tests := []struct {
		name        string
		opts        PIIOptions
		dir         Direction
		text        string
		want        string // "#" stands for any lower-case hex digit
		wantBlocked EntitySet
		wantFound   string
	}{
		{
			name:      "redact numbers per type in order of first appearance",
			opts:      PIIOptions{Prompt: ActionRedact},
			text:      "a@example.com, (415) 555-0132, b@example.com, a@example.com",
			want:      "<EMAIL_ADDRESS_1>, <PHONE_NUMBER_1>, <EMAIL_ADDRESS_2>, <EMAIL_ADDRESS_1>",
			wantFound: "EMAIL_ADDRESS=3,PHONE_NUMBER=1",
		},
		{
			name:      "mask keeps the last four",
			opts:      PIIOptions{Prompt: ActionMask},
			text:      "card 4111 1111 1111 1111.",
			want:      "card ***************1111.",
			wantFound: "CREDIT_CARD=1",
		},
		{
			name:      "hash",
			opts:      PIIOptions{Prompt: ActionHash, HashKey: key},
			text:      "mail a@example.com",
			want:      "mail <EMAIL_ADDRESS_h:########>",
			wantFound: "EMAIL_ADDRESS=1",
		},
		{
			name:        "block redacts and reports",
			opts:        PIIOptions{Prompt: ActionDetect, Overrides: []PIIOverride{{Entity: EntitySSN, Direction: Prompt, Action: ActionBlock}}},
			text:        "SSN 856-70-3422, mail a@example.com",
			want:        "SSN <US_SSN_1>, mail a@example.com",
			wantBlocked: 1 << eSSN,
			wantFound:   "EMAIL_ADDRESS=1,US_SSN=1",
		},
		{
			name:      "detect counts only",
			opts:      PIIOptions{Prompt: ActionDetect},
			text:      "mail a@example.com",
			want:      "mail a@example.com",
			wantFound: "EMAIL_ADDRESS=1",
		},
		{
			name: "off neither rewrites nor counts",
			opts: PIIOptions{Prompt: ActionRedact, Overrides: []PIIOverride{{Entity: EntityEmail, Direction: Prompt, Action: ActionOff}}},
			text: "mail a@example.com",
			want: "mail a@example.com",
		},
		{
			name:      "per-entity overrides",
			opts:      PIIOptions{Prompt: ActionRedact, Overrides: []PIIOverride{{Entity: EntityPhone, Direction: Prompt, Action: ActionMask}}},
			text:      "a@example.com +1 415 555 0132",
			want:      "<EMAIL_ADDRESS_1> ***********0132",
			wantFound: "EMAIL_ADDRESS=1,PHONE_NUMBER=1",
		},
		{
			name:      "direction",
			opts:      PIIOptions{Prompt: ActionDetect, Completion: ActionRedact},
			dir:       Completion,
			text:      "leaked AKIAYYCSHKQINVNU5XDG",
			want:      "leaked <SECRET_1>",
			wantFound: "SECRET=1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPII(t, tt.opts)
			v := &Vault{}
			got, blocked := p.Redact(nil, []byte(tt.text), tt.dir, v)
			re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(tt.want), "#", "[0-9a-f]") + "$")
			if !re.Match(got) {
				t.Errorf("Redact = %q, want %q", got, tt.want)
			}
			if blocked != tt.wantBlocked || v.Blocked() != tt.wantBlocked {
				t.Errorf("blocked = %b (vault %b), want %b", blocked, v.Blocked(), tt.wantBlocked)
			}
			if s := string(v.AppendSummary(nil, tt.dir)); s != tt.wantFound {
				t.Errorf("summary = %q, want %q", s, tt.wantFound)
			}
		})
	}
}

func TestVaultAcrossMessages(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	v := &Vault{}
	msgs := []string{
		"I am bob@example.com, phone (415) 555-0132.",
		"Please email alice@example.com and cc bob@example.com.",
		"Call (415) 555-0132 or +44 20 7946 0958.",
	}
	want := []string{
		"I am <EMAIL_ADDRESS_1>, phone <PHONE_NUMBER_1>.",
		"Please email <EMAIL_ADDRESS_2> and cc <EMAIL_ADDRESS_1>.",
		"Call <PHONE_NUMBER_1> or <PHONE_NUMBER_2>.",
	}
	for i, m := range msgs {
		got, _ := p.Redact(nil, []byte(m), Prompt, v)
		if string(got) != want[i] {
			t.Errorf("message %d: got %q, want %q", i, got, want[i])
		}
		if back := v.Restore(nil, got); string(back) != m {
			t.Errorf("message %d: restore gave %q", i, back)
		}
	}
	if v.Len() != 4 || v.Found(Prompt, EntityEmail) != 3 || v.Found(Completion, EntityEmail) != 0 {
		t.Errorf("Len %d, Found %d/%d", v.Len(), v.Found(Prompt, EntityEmail), v.Found(Completion, EntityEmail))
	}
}

func TestRestoreIdentity(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	for _, text := range []string{
		"",
		"no pii here <b>bold</b> a < b > c",
		benchText(4096, 5),
		"literal <EMAIL_ADDRESS_1> next to a@example.com and <EMAIL_ADDRESS_2",
		"<US_SSN_1>856-70-3422<US_SSN_2> <PHONE_NUMBER_01> <SECRET_h:00000000>",
		"postgres://admin:S3cr3t@db.example.com:5432/app and https://u:ghp_XyKAtICmgglPqXmZTqGD47LfKqJNk3l79zdc@github.com/",
	} {
		v := &Vault{}
		red, _ := p.Redact(nil, []byte(text), Prompt, v)
		if back := v.Restore(nil, red); string(back) != text {
			t.Errorf("Restore(Redact(%q)) = %q (redacted %q)", text, back, red)
		}
	}
}

func TestRestoreHashed(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionHash, Completion: ActionHash})
	v := &Vault{}
	a, _ := p.Redact(nil, []byte("x a@example.com y"), Prompt, v)
	b, _ := p.Redact(nil, []byte("a@example.com"), Completion, &Vault{})
	if !strings.Contains(string(a), string(b)) {
		t.Fatalf("hash not stable across vaults: %q vs %q", a, b)
	}
	if back := v.Restore(nil, a); string(back) != "x a@example.com y" {
		t.Fatalf("Restore = %q", back)
	}
}

func TestLeakPlaceholdersNotRestored(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact, Completion: ActionRedact})
	v := &Vault{}
	p.Redact(nil, []byte("me: a@example.com"), Prompt, v)
	out, _ := p.Redact(nil, []byte("you: a@example.com, them: b@example.com"), Completion, v)
	if want := "you: <EMAIL_ADDRESS_1>, them: <EMAIL_ADDRESS_2>"; string(out) != want {
		t.Fatalf("completion redaction = %q, want %q", out, want)
	}
	if got, want := string(v.Restore(nil, out)), "you: a@example.com, them: <EMAIL_ADDRESS_2>"; got != want {
		t.Fatalf("Restore = %q, want %q", got, want)
	}
}

func TestVaultKeepsValuesToItself(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	v := AcquireVault()
	p.Redact(nil, []byte("secret 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"), Prompt, v)
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, v); strings.Contains(s, "sk-") {
			t.Errorf("%s prints the value: %s", format, s)
		}
	}
	vals := v.vals[:cap(v.vals)]
	ReleaseVault(v)
	for _, c := range vals {
		if c != 0 {
			t.Fatal("ReleaseVault left an original in memory")
		}
	}
}

func TestParsePlaceholder(t *testing.T) {
	tests := []struct {
		in   string
		st   int
		n    int
		num  uint32
		hash bool
	}{
		{"<EMAIL_ADDRESS_1>", phOK, 17, 1, false},
		{"<US_SSN_123456>rest", phOK, 15, 123456, false},
		{"<IBAN_CODE_h:0a1b2c3d>", phOK, 22, 0, true},
		{"<", phPartial, 0, 0, false},
		{"<EMAIL_ADD", phPartial, 0, 0, false},
		{"<EMAIL_ADDRESS", phPartial, 0, 0, false},
		{"<EMAIL_ADDRESS_", phPartial, 0, 0, false},
		{"<EMAIL_ADDRESS_12", phPartial, 0, 0, false},
		{"<CRYPTO_h:0a1", phPartial, 0, 0, false},
		{"<EMAIL_ADDRESS_0>", phInvalid, 0, 0, false},
		{"<EMAIL_ADDRESS_1234567>", phInvalid, 0, 0, false},
		{"<EMAIL_ADDRESS_1x", phInvalid, 0, 0, false},
		{"<CRYPTO_h:0A1B2C3D>", phInvalid, 0, 0, false},
		{"<PERSON_1>", phInvalid, 0, 0, false},
		{"<b>", phInvalid, 0, 0, false},
		{"x", phInvalid, 0, 0, false},
	}
	for _, tt := range tests {
		_, num, _, hashed, n, st := parsePlaceholder([]byte(tt.in))
		if st != tt.st || n != tt.n || num != tt.num || hashed != tt.hash {
			t.Errorf("parsePlaceholder(%q) = st %d n %d num %d hashed %v, want %d %d %d %v",
				tt.in, st, n, num, hashed, tt.st, tt.n, tt.num, tt.hash)
		}
	}
	if got := len("<URL_CREDENTIALS_h:01234567>"); got != maxPlaceholder {
		t.Errorf("maxPlaceholder = %d, want %d", maxPlaceholder, got)
	}
}

func TestRedactNoAllocs(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	text := []byte(benchText(4096, 5))
	v := &Vault{}
	dst, _ := p.Redact(nil, text, Prompt, v)
	if n := testing.AllocsPerRun(50, func() {
		v.Reset()
		dst, _ = p.Redact(dst[:0], text, Prompt, v)
	}); n != 0 {
		t.Errorf("Redact with a warm vault: %v allocs, want 0", n)
	}
}

// TestRedactRescans covers values whose score changes once their neighbours are placeholders:
// a context word comes within reach, or a negative one ("order" in an email) goes away.
func TestRedactRescans(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	tests := []struct{ text, want string }{
		{"reACh 0 0@0.AA 00!0000000", "reACh 0 <EMAIL_ADDRESS_1> 00!<PHONE_NUMBER_1>"},
		{"write order@example.com 415-555-0132", "write <EMAIL_ADDRESS_1> <PHONE_NUMBER_1>"},
	}
	for _, tt := range tests {
		v := &Vault{}
		got, _ := p.Redact(nil, []byte(tt.text), Prompt, v)
		if string(got) != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.text, got, tt.want)
		}
		if back := v.Restore(nil, got); string(back) != tt.text {
			t.Errorf("Restore = %q", back)
		}
	}
}

// FoundTypes is the set of entity types Found counts in either direction.
func TestVaultFoundTypes(t *testing.T) {
	p, err := NewPII(PIIOptions{Prompt: ActionRedact, Completion: ActionRedact})
	if err != nil {
		t.Fatal(err)
	}
	v := AcquireVault()
	defer ReleaseVault(v)
	if v.FoundTypes() != 0 {
		t.Fatalf("empty vault: %b", v.FoundTypes())
	}
	p.Redact(nil, []byte("mail jane.doe@example.com"), Prompt, v)
	p.Redact(nil, []byte("server at 10.1.2.3"), Completion, v)
	got := v.FoundTypes()
	for i, e := range PIIEntities() {
		want := v.Found(Prompt, e) > 0 || v.Found(Completion, e) > 0
		if got&(1<<i) != 0 != want {
			t.Errorf("%s: in set %v, found %v", e, got&(1<<i) != 0, want)
		}
	}
	if !got.Has(EntityEmail) || !got.Has(EntityIP) || got.Len() != 2 {
		t.Errorf("set %b: want EMAIL_ADDRESS and IP_ADDRESS only", got)
	}
}

// RedactKnown replaces whole-token occurrences of values already given a prompt placeholder,
// and nothing else.
func TestVaultRedactKnown(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	v := &Vault{}
	out, _ := p.Redact(nil, []byte("my phone is 4155550132"), Prompt, v)
	if string(out) != "my phone is <PHONE_NUMBER_1>" {
		t.Fatalf("Redact: %q", out)
	}
	for _, tt := range []struct{ in, want string }{
		{"call 4155550132 or 4155550132.", "call <PHONE_NUMBER_1> or <PHONE_NUMBER_1>."},
		{"ids 94155550132 41555501320 x4155550132", "ids 94155550132 41555501320 x4155550132"},
		{"nothing here", "nothing here"},
	} {
		got, changed := v.RedactKnown(nil, []byte(tt.in))
		if string(got) != tt.want || changed != (tt.in != tt.want) {
			t.Errorf("RedactKnown(%q) = %q, %v; want %q", tt.in, got, changed, tt.want)
		}
	}
	if restored := v.Restore(nil, []byte("call <PHONE_NUMBER_1>")); string(restored) != "call 4155550132" {
		t.Errorf("restore: %q", restored)
	}
}

// A value found by its context is rewritten where it appears bare whatever the prompt action:
// hashed or masked as where it was found, not sent whole in another message.
func TestVaultRedactKnownHashAndMask(t *testing.T) {
	for _, tt := range []struct {
		action Action
		want   string
	}{
		{ActionHash, "call <PHONE_NUMBER_h:"},
		{ActionMask, "call ******0132 now"},
	} {
		p := mustPII(t, PIIOptions{Prompt: tt.action})
		v := &Vault{}
		first, _ := p.Redact(nil, []byte("my phone is 4155550132"), Prompt, v)
		got, changed := v.RedactKnown(nil, []byte("call 4155550132 now"))
		if !changed || !strings.HasPrefix(string(got), tt.want) || strings.Contains(string(got), "4155550132") {
			t.Errorf("%v: RedactKnown = %q, %v; want %q...", tt.action, got, changed, tt.want)
		}
		if tt.action == ActionHash && !strings.Contains(string(first), string(got[len("call "):len(got)-len(" now")])) {
			t.Errorf("hash: %q is not the placeholder of %q", got, first)
		}
		if restored := v.Restore(nil, got); tt.action == ActionMask && string(restored) != string(got) {
			t.Errorf("mask: a masked value was restored: %q", restored)
		}
	}
}

// An e-mail address is one mailbox however it is cased: one placeholder for both spellings.
func TestVaultEmailCase(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	v := &Vault{}
	out, _ := p.Redact(nil, []byte("mail Bob@Example.com or bob@example.com, not bob@example.org"), Prompt, v)
	if want := "mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_1>, not <EMAIL_ADDRESS_2>"; string(out) != want {
		t.Fatalf("Redact: %q, want %q", out, want)
	}
}

// A value the prompt masked stays masked for good: when the completion's leak scan then
// gives it a placeholder (completion action redact), that placeholder is not restored to the
// value, neither is a placeholder the model wrote that happens to be the same.
func TestVaultMaskedNeverRestored(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionMask, Completion: ActionRedact})
	v := &Vault{}
	if out, _ := p.Redact(nil, []byte("my phone is 4155550132"), Prompt, v); strings.Contains(string(out), "4155550132") {
		t.Fatalf("prompt not masked: %q", out)
	}
	leak, _ := p.Redact(nil, []byte("your phone is 4155550132"), Completion, v)
	if strings.Contains(string(leak), "4155550132") {
		t.Fatalf("completion not redacted: %q", leak)
	}
	for _, s := range []string{string(leak), "call <PHONE_NUMBER_1>"} {
		if got := v.Restore(nil, []byte(s)); strings.Contains(string(got), "4155550132") {
			t.Errorf("Restore(%q) = %q: a masked value was restored", s, got)
		}
		if got := v.RestoreInJSONString(nil, []byte(s)); strings.Contains(string(got), "4155550132") {
			t.Errorf("RestoreInJSONString(%q) = %q: a masked value was restored", s, got)
		}
	}
	v.Reset()
	if v.Len() != 0 {
		t.Fatalf("Reset left %d values", v.Len())
	}
	if got, changed := v.RedactKnown(nil, []byte("call 4155550132")); changed {
		t.Errorf("after Reset RedactKnown still masks: %q", got)
	}
}

// TestVaultSmallIndexed checks that a Vault finding values and placeholders by going through
// its entries gives what one that keeps its maps from the start gives: the same placeholders
// across messages and both directions, restores, and RedactKnown, with up to 40 values (so
// past smallVault), values repeated, and e-mail addresses in other cases.
func TestVaultSmallIndexed(t *testing.T) {
	for _, a := range []Action{ActionRedact, ActionHash, ActionMask} {
		p := mustPII(t, PIIOptions{Prompt: a, Completion: a, HashKey: []byte("k")})
		for n := 1; n <= 40; n += 3 {
			var msgs []string
			for k := 0; k < n; k++ {
				msgs = append(msgs, fmt.Sprintf("mail User%d@Example.com or user%d@example.com, call +1 415 555 %04d, ssn 078-05-%04d",
					k%7, k%5, 1000+k, 1120+k%3))
			}
			small, indexed := &Vault{}, &Vault{}
			indexed.index()
			for k, m := range msgs {
				d := Direction(k % 2)
				got, gb := p.Redact(nil, []byte(m), d, small)
				want, wb := p.Redact(nil, []byte(m), d, indexed)
				if !bytes.Equal(got, want) || gb != wb {
					t.Fatalf("action %d, %d values: Redact(%q) = %q, with maps %q", a, n, m, got, want)
				}
				if got, want := small.Restore(nil, got), indexed.Restore(nil, want); !bytes.Equal(got, want) {
					t.Fatalf("action %d, %d values: Restore = %q, with maps %q", a, n, got, want)
				}
				bare := []byte(fmt.Sprintf("again 078-05-%04d and User%d@Example.com", 1120+k%3, k%7))
				got, gc := small.RedactKnown(nil, bare)
				want, wc := indexed.RedactKnown(nil, bare)
				if !bytes.Equal(got, want) || gc != wc {
					t.Fatalf("action %d, %d values: RedactKnown = %q, with maps %q", a, n, got, want)
				}
			}
		}
	}
}

// TestVaultTagDup checks that of two values of one type whose hash tags collide, the one
// tagged first owns the tag, before and after the Vault builds its maps.
func TestVaultTagDup(t *testing.T) {
	v := &Vault{}
	v.vals = []byte("ab")
	v.ents = []vaultEntry{
		{off: 1, n: 1, prev: -1, e: eSecret, restore: true, tag: 7, tagged: true, tagDup: true},
		{off: 0, n: 1, prev: -1, e: eSecret, restore: true, tag: 7, tagged: true},
	}
	for range 2 {
		if i, ok := v.phEntry(eSecret, 0, 7, true); !ok || i != 1 {
			t.Fatalf("indexed %v: phEntry = %d, %v, want 1", v.indexed, i, ok)
		}
		v.index()
	}
}

// Placeholder-shaped text in a prompt reserves its number, but the highest number a
// placeholder may have (six digits) reserves none: the value redacted next would get a seventh
// digit, which no restore reads, and the client would get its placeholder back.
func TestVaultReserveHighest(t *testing.T) {
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	for _, m := range []string{
		"<EMAIL_ADDRESS_999999> bob@example.com",
		"<email_address_999999> bob@example.com",
		"<EMAIL_ADDRESS_999998> bob@example.com",
	} {
		v := &Vault{}
		got, _ := p.Redact(nil, []byte(m), Prompt, v)
		if back := v.Restore(nil, got); string(back) != m {
			t.Errorf("%q: redacted %q, restored %q", m, got, back)
		}
		var r Restorer
		r.Reset(v)
		if back := r.Flush(r.Write(nil, got)); string(back) != m {
			t.Errorf("%q: redacted %q, restored as a stream %q", m, got, back)
		}
	}
}
