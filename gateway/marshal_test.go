package gateway

import (
	"bytes"
	"encoding/json"
	"reflect"
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

// A body parsed with parseJSON and marshalled again (as the guard does once it rewrote a text)
// reads back as the body did: lone surrogate escapes included, which fastjson alone turned
// into text with a backslash or let swallow the escape after them.
func TestParseJSONLoneSurrogates(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"a":"x\ud800y"}`, `{"a":"x\ufffdy"}`},
		{`{"a":"\ud800\u0041"}`, `{"a":"\ufffd\u0041"}`},
		{`{"a":"\udc00\ud83d\ude00\uD800"}`, `{"a":"\ufffd\ud83d\ude00\ufffd"}`},
		{`{"a":"\ud800\ud800\udc00","b":["\\ud800"]}`, `{"a":"\ufffd\ud800\udc00","b":["\\ud800"]}`},
		{`{"\ud800":1}`, `{"\ufffd":1}`},
	} {
		got, ok := replaceLoneSurrogates([]byte("x"), []byte(tt.in))
		if !ok || string(got) != "x"+tt.want {
			t.Errorf("replaceLoneSurrogates(%s) = %s, %v; want %s", tt.in, got[1:], ok, tt.want)
		}
		checkRoundTrip(t, []byte(tt.in))
	}
	for _, in := range []string{`{"a":"\ud83d\ude00 \\ud800 \u00e9"}`, `{"a":1}`, `{"a":"\\\\ud800"}`} {
		if got, ok := replaceLoneSurrogates(nil, []byte(in)); ok || len(got) != 0 {
			t.Errorf("replaceLoneSurrogates(%s) = %s, %v; want nothing to replace", in, got, ok)
		}
	}
}

// checkRoundTrip parses b as the gateway does, marshals it again and compares the two as
// encoding/json reads them (lone surrogates as U+FFFD, numbers as their text).
func checkRoundTrip(t *testing.T, b []byte) {
	t.Helper()
	var p fastjson.Parser
	var scratch []byte
	v, err := parseJSON(&p, b, &scratch)
	if err != nil {
		return // fastjson is stricter in places (depth): such a body is refused, not changed
	}
	out := marshalJSON(nil, v)
	decode := func(b []byte) any {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var x any
		if err := d.Decode(&x); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return x
	}
	if want, got := decode(b), decode(out); !reflect.DeepEqual(want, got) {
		t.Fatalf("%s marshalled again as %s: reads %v, want %v", b, out, got, want)
	}
}

func FuzzParseJSONRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"a":"x\ud800y"}`, `{"a":"\ud800\u0041"}`, `{"a":"\udc00"}`, `["\ud83d\ude00","\\ud800"]`,
		`{"\ud800":[1.0,-0,1e400,12345678901234567890]}`, `{"a":"\u001b\u2028\/"}`, `"\ud800\"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		checkRoundTrip(t, b)
	})
}

func TestHasSurrogateEscape(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":"\ud83d\ude00"}`: true,
		`{"a":"\uDC00"}`:       true,
		`{"a":"\u00e9\n"}`:     false,
		`{"a":"\\ud800"}`:      false, // an escaped backslash, then text
		`{"a":"x\\\ud800"}`:    true,
		`{"a":"\u"}`:           false,
		`no escapes`:           false,
	} {
		if got := hasSurrogateEscape([]byte(in)); got != want {
			t.Errorf("hasSurrogateEscape(%s) = %v, want %v", in, got, want)
		}
	}
}
