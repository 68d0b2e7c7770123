package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// perByteValid is s as a JSON decoder reads it back from encoding/json's output: each byte of
// invalid UTF-8 becomes U+FFFD.
func perByteValid(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // range yields U+FFFD for each byte of invalid UTF-8
	}
	return b.String()
}

func checkMarshal(t *testing.T, s string) {
	t.Helper()
	var a fastjson.Arena
	obj := a.NewObject()
	obj.Set("content", a.NewString(s))
	obj.Set("n", a.NewNumberInt(1))
	out := marshalJSON([]byte("x"), obj)[1:] // appends: what was in dst stays
	if !json.Valid(out) {
		t.Fatalf("%q: invalid JSON %s", s, out)
	}
	var got struct{ Content string }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if want := perByteValid(s); got.Content != want {
		t.Fatalf("%q: decoded %q, want %q (from %s)", s, got.Content, want, out)
	}
}

// Every string the guard writes into a body comes out as valid JSON holding that string: the
// control characters and runes that strconv.AppendQuote escapes the Go way included.
func TestMarshalJSONEscapes(t *testing.T) {
	for _, s := range []string{
		"plain", `quote " and \ backslash`, "\x1b[31mred\x1b[0m \"x\"", "bell \a tab \t vt \v nul \x00 del \x7f",
		"lines\nand\r\nfeeds\f\b", "bad utf-8 \xe2\x82 \xff \"", "zero\u200bwidth \"", "tag \U000E0067 \"",
		"emoji 😀 é \"", `already \x41 looks like an escape`, `\`, "\\U0001F600 \"", "\u2028\u2029\"",
	} {
		checkMarshal(t, s)
	}
	// Valid JSON goes through byte for byte.
	var p fastjson.Parser
	in := `{"a":"\u001b[1m \" \\ \/ \n","b":[1,2.5,null,true],"c":{"d":"é😀"}}`
	v, err := p.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if out := marshalJSON(nil, v); string(out) != in {
		t.Fatalf("parsed JSON changed: %s", out)
	}
}

func FuzzMarshalJSON(f *testing.F) {
	for _, s := range []string{"a\x1bb\"", "\xff\"", "\U000E0001\"", `\x`, "\a\v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkMarshal(t, s)
	})
}
