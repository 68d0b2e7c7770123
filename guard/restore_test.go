package guard

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// redacted returns the prompt-side redaction of text and its vault.
func redacted(t testing.TB, text string) ([]byte, *Vault) {
	t.Helper()
	p := mustPII(t, PIIOptions{Prompt: ActionRedact})
	v := &Vault{}
	out, _ := p.Redact(nil, []byte(text), Prompt, v)
	return out, v
}

func TestRestorerSplitEverywhere(t *testing.T) {
	orig := "Mail <b>bob@example.com</b> or call (415) 555-0132; card 4111 1111 1111 1111 < 5 >"
	red, v := redacted(t, orig)
	if string(red) == orig {
		t.Fatal("nothing was redacted")
	}
	var r Restorer
	for i := 0; i <= len(red); i++ {
		for j := i; j <= len(red); j++ {
			r.Reset(v)
			out := r.Write(nil, red[:i])
			out = r.Write(out, red[i:j])
			if r.Held() >= maxPlaceholder {
				t.Fatalf("held %d bytes", r.Held())
			}
			out = r.Write(out, red[j:])
			out = r.Flush(out)
			if string(out) != orig {
				t.Fatalf("split at %d,%d: got %q", i, j, out)
			}
		}
	}
	// One byte at a time.
	r.Reset(v)
	var out []byte
	for k := range red {
		out = r.Write(out, red[k:k+1])
	}
	if out = r.Flush(out); string(out) != orig {
		t.Fatalf("byte by byte: got %q", out)
	}
}

// A model may write a placeholder it was given in another case ("<email_address_1>"): the
// client gets the value back all the same, buffered, split across writes, and inside a JSON
// string; an unknown number stays as written.
func TestRestoreAnyCase(t *testing.T) {
	red, v := redacted(t, "mail bob@example.com")
	if !strings.Contains(string(red), "<EMAIL_ADDRESS_1>") {
		t.Fatalf("redacted %q", red)
	}
	for _, in := range []string{"to <email_address_1> now", "to <Email_Address_1> now", "to <EMAIL_address_1> now"} {
		if got := string(v.Restore(nil, []byte(in))); got != "to bob@example.com now" {
			t.Errorf("Restore(%q) = %q", in, got)
		}
		for i := 1; i < len(in); i++ {
			var r Restorer
			r.Reset(v)
			out := r.Write(nil, []byte(in[:i]))
			out = r.Flush(r.Write(out, []byte(in[i:])))
			if string(out) != "to bob@example.com now" {
				t.Fatalf("split at %d: %q", i, out)
			}
		}
	}
	if got := string(v.RestoreInJSONString(nil, []byte(`to \u003cemail_address_1\u003e`))); got != "to bob@example.com" {
		t.Errorf("in JSON: %q", got)
	}
	if got := string(v.Restore(nil, []byte("<email_address_2> <em>x</em>"))); got != "<email_address_2> <em>x</em>" {
		t.Errorf("unknown placeholder or a tag changed: %q", got)
	}
}

func TestRestorerHoldsOnlyPlaceholderPrefixes(t *testing.T) {
	_, v := redacted(t, "a@example.com")
	tests := []struct {
		chunk    string
		wantOut  string
		wantHeld int
	}{
		{"plain text, no angle bracket", "plain text, no angle bracket", 0},
		{"a < b", "a < b", 0},
		{"x <", "x ", 1},
		{"3 and <EMAIL", "<3 and ", 6},
		{"_ADDRESS_1> ok <b>", "a@example.com ok <b>", 0},
		{"<PHONE_NUMBER_7>", "<PHONE_NUMBER_7>", 0}, // unknown to the vault
		{"<EMAIL_ADDRESS_1", "", 16},
		{"0", "", 17},
		{"x", "<EMAIL_ADDRESS_10x", 0},
	}
	var r Restorer
	r.Reset(v)
	for _, tt := range tests {
		out := r.Write(nil, []byte(tt.chunk))
		if string(out) != tt.wantOut || r.Held() != tt.wantHeld {
			t.Fatalf("Write(%q) = %q held %d, want %q held %d", tt.chunk, out, r.Held(), tt.wantOut, tt.wantHeld)
		}
	}
	r.Write(nil, []byte("<SECRET_"))
	if out := r.Flush(nil); string(out) != "<SECRET_" || r.Held() != 0 {
		t.Fatalf("Flush = %q, held %d", out, r.Held())
	}
}

func TestRestorerNoAllocs(t *testing.T) {
	red, v := redacted(t, benchText(4096, 5))
	r := NewRestorer(v)
	dst := make([]byte, 0, 8192)
	run := func() {
		r.Reset(v)
		dst = dst[:0]
		for i := 0; i < len(red); i += 7 {
			dst = r.Write(dst, red[i:min(i+7, len(red))])
		}
		dst = r.Flush(dst)
	}
	run()
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Errorf("Restorer: %v allocs, want 0", n)
	}
}

// Restoring a placeholder written with escaped angle brackets inside a JSON string allocates
// nothing either: the escaped form is read into an array on the stack.
func TestRestoreInJSONStringEscapedNoAllocs(t *testing.T) {
	_, v := redacted(t, "mail bob@example.com")
	src := []byte(`{"to":"\u003cEMAIL_ADDRESS_1\u003e","cc":"\u003CEMAIL_ADDRESS_1>"}`)
	dst := make([]byte, 0, 256)
	run := func() { dst = v.RestoreInJSONString(dst[:0], src) }
	run()
	if want := `{"to":"bob@example.com","cc":"bob@example.com"}`; string(dst) != want {
		t.Fatalf("got %s, want %s", dst, want)
	}
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Errorf("RestoreInJSONString: %v allocs, want 0", n)
	}
}

// A value with newlines restored into the inside of a JSON string (a tool call's arguments) is
// escaped there, whole or streamed in pieces, so the client's JSON parser reads the original;
// a value taken from such text, escapes and all, goes back as it was.
func TestRestoreInJSONString(t *testing.T) {
	key := "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
	_, v := redacted(t, "my key:\n"+key+"\nthanks, and mail bob@example.com")
	args := []byte(`{"path":"id_rsa","content":"<SECRET_1>","to":"<EMAIL_ADDRESS_1>"}`)
	check := func(how string, got []byte) {
		t.Helper()
		var a struct{ Content, To string }
		if err := json.Unmarshal(got, &a); err != nil || a.Content != key || a.To != "bob@example.com" {
			t.Fatalf("%s: %s (%v)", how, got, err)
		}
	}
	check("whole", v.RestoreInJSONString(nil, args))
	var r Restorer
	r.ResetInJSONString(v)
	var out []byte
	for k := range args {
		out = r.Write(out, args[k:k+1])
	}
	check("byte by byte", r.Flush(out))
	if got := v.Restore(nil, args); json.Valid(got) {
		t.Fatalf("plain Restore escaped the value: %s", got)
	}

	// Go's encoding/json writes '<' and '>' as \u003c and \u003e (Ollama's tool call
	// arguments): such placeholders are restored too, in either case, whole or in pieces. An
	// escaped backslash before "u003c" is text.
	for _, tt := range []struct{ in, want string }{
		{`{"to":"\u003cEMAIL_ADDRESS_1\u003e"}`, `{"to":"bob@example.com"}`},
		{`{"to":"\u003CEMAIL_ADDRESS_1\u003E, \u003cEMAIL_ADDRESS_1>"}`, `{"to":"bob@example.com, bob@example.com"}`},
		{`{"to":"\\u003cEMAIL_ADDRESS_1\u003e"}`, `{"to":"\\u003cEMAIL_ADDRESS_1\u003e"}`},
		{`{"to":"\u003cEMAIL_ADDRESS_9\u003e \u003cb\u003e"}`, `{"to":"\u003cEMAIL_ADDRESS_9\u003e \u003cb\u003e"}`},
		// An escaped '<' right before another escape opens no placeholder: a stream does not
		// hold the rest of the text for it.
		{`{"to":"\u003c\u003cEMAIL_ADDRESS_1\u003e\u003e"}`, `{"to":"\u003cbob@example.com\u003e"}`},
		{`{"to":"\u003cE\u0041 \u003cEMAIL_ADDRESS_1\u003e"}`, `{"to":"\u003cE\u0041 bob@example.com"}`},
		{`{"k":"\u003cSECRET_1\u003e"}`, `{"k":"` + strings.ReplaceAll(key, "\n", `\n`) + `"}`},
	} {
		if got := v.RestoreInJSONString(nil, []byte(tt.in)); string(got) != tt.want {
			t.Errorf("whole %s:\n got %s\nwant %s", tt.in, got, tt.want)
		}
		for size := 1; size <= 7; size++ {
			r.ResetInJSONString(v)
			out = out[:0]
			for piece := range slices.Chunk([]byte(tt.in), size) {
				out = r.Write(out, piece)
				if r.Held() > maxEscapedHold {
					t.Fatalf("in pieces of %d, %s: held %d bytes", size, tt.in, r.Held())
				}
			}
			if got := r.Flush(out); string(got) != tt.want {
				t.Errorf("in pieces of %d, %s:\n got %s\nwant %s", size, tt.in, got, tt.want)
			}
		}
	}

	escaped := `{"key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"}`
	red, v2 := redacted(t, escaped)
	if string(red) == escaped {
		t.Skip("a key written with JSON escapes is not found yet")
	}
	if got := v2.RestoreInJSONString(nil, red); string(got) != escaped {
		t.Fatalf("a value taken from JSON text: %s", got)
	}
}
