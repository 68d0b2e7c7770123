package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

const baseBody = `{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Café? \"yes\"\n"}],"temperature":0,"max_tokens":100,"top_p":1,"top_k":40,"seed":7,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"number"}}}}}],"tool_choice":"auto","response_format":{"type":"json_object"}}`

func mustKey(t testing.TB, kind Kind, alias, version, body string) Key {
	t.Helper()
	var r Request
	if err := Prepare(&r, kind, alias, version, []byte(body)); err != nil {
		t.Fatalf("Prepare(%s): %v", body, err)
	}
	return r.Key
}

func canon(t testing.TB, body string) string {
	t.Helper()
	out, err := AppendCanonical(nil, []byte(body))
	if err != nil {
		t.Fatalf("AppendCanonical(%s): %v", body, err)
	}
	return string(out)
}

func TestKeySameForEquivalentBodies(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"top-level field order", `{"a":1,"b":{"x":1,"y":2}}`, `{"b":{"x":1,"y":2},"a":1}`},
		{"whitespace", `{"a":[1,2],"b":"x"}`, " {\n\t\"a\" : [ 1 , 2 ] ,\r\n \"b\":\"x\" } \n"},
		{"integer forms", `{"max_tokens":100}`, `{"max_tokens":1e2}`},
		{"float forms", `{"temperature":0.5}`, `{"temperature":5e-1}`},
		{"trailing zeros", `{"temperature":1}`, `{"temperature":1.000}`},
		{"1 1.0 1e0", `{"v":[1,1,1,1]}`, `{"v":[1.0,1e0,10e-1,0.1E+1]}`},
		{"zero forms", `{"temperature":0}`, `{"temperature":-0.0e5}`},
		{"escapes", `{"s":"é/A\n\"\\"}`, `{"s":"\u00e9\/\u0041\u000a\"\\"}`},
		{"surrogate pair", `{"s":"😀"}`, `{"s":"\ud83d\ude00"}`},
		{"control escapes", `{"s":"\b\f\u0001"}`, `{"s":"\u0008\u000C\u0001"}`},
		{"escaped key", `{"top_k":40}`, `{"top\u005fk":40}`},
		{"excluded fields", `{"messages":[]}`, `{"messages":[],"user":"u1","stream":true,"stream_options":{"include_usage":true},"metadata":{"a":"b"},"request_id":"r1","model":"other","store":true,"safety_identifier":"s","prompt_cache_key":"k"}`},
		{"big integer exact", `{"seed":12345678901234567890123}`, `{"seed":12345678901234567890123.0}`},
		{"many members", manyMembers(20, false, false), manyMembers(20, true, false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ca, cb := canon(t, tt.a), canon(t, tt.b); ca != cb {
				t.Fatalf("canonical forms differ:\n%s\n%s", ca, cb)
			}
			if mustKey(t, KindChat, "chat", "v1", tt.a) != mustKey(t, KindChat, "chat", "v1", tt.b) {
				t.Fatal("keys differ")
			}
		})
	}
}

func TestKeyDiffersForSemanticChanges(t *testing.T) {
	base := mustKey(t, KindChat, "chat", "v1", baseBody)
	edit := func(old, new string) string {
		if !strings.Contains(baseBody, old) {
			t.Fatalf("base has no %q", old)
		}
		return strings.Replace(baseBody, old, new, 1)
	}
	tests := []struct {
		name                 string
		kind                 Kind
		alias, version, body string
	}{
		{"message text", KindChat, "chat", "v1", edit(`Be brief.`, `Be brief!`)},
		{"role", KindChat, "chat", "v1", edit(`"role":"system"`, `"role":"developer"`)},
		{"message order", KindChat, "chat", "v1", `{"messages":[{"role":"user","content":"Café? \"yes\"\n"},{"role":"system","content":"Be brief."}]}`},
		{"temperature", KindChat, "chat", "v1", edit(`"temperature":0`, `"temperature":0.1`)},
		{"max_tokens", KindChat, "chat", "v1", edit(`"max_tokens":100`, `"max_tokens":101`)},
		{"vendor extra value", KindChat, "chat", "v1", edit(`"top_k":40`, `"top_k":41`)},
		{"unknown field added", KindChat, "chat", "v1", edit(`"top_p":1`, `"top_p":1,"min_p":0.1`)},
		{"seed", KindChat, "chat", "v1", edit(`"seed":7`, `"seed":8`)},
		{"tools", KindChat, "chat", "v1", edit(`"name":"f"`, `"name":"g"`)},
		{"tool_choice", KindChat, "chat", "v1", edit(`"tool_choice":"auto"`, `"tool_choice":"none"`)},
		{"response_format", KindChat, "chat", "v1", edit(`"json_object"`, `"text"`)},
		{"n", KindChat, "chat", "v1", edit(`"seed":7`, `"seed":7,"n":2`)},
		{"number vs string", KindChat, "chat", "v1", edit(`"max_tokens":100`, `"max_tokens":"100"`)},
		{"null vs absent", KindChat, "chat", "v1", edit(`"top_p":1`, `"top_p":null`)},
		{"user inside a message is content", KindChat, "chat", "v1", edit(`"role":"system",`, `"role":"system","user":"x",`)},
		// A schema's properties are generated in their order, and a chat template writes a
		// tool's parameters as sent: nested member order is part of the request.
		{"nested member order", KindChat, "chat", "v1", edit(`"type":"object","properties":{"x":{"type":"number"}}`, `"properties":{"x":{"type":"number"}},"type":"object"`)},
		{"version", KindChat, "chat", "v2", baseBody},
		{"alias", KindChat, "chat2", "v1", baseBody},
		{"alias/version boundary", KindChat, "chatv", "1", baseBody},
		{"kind", KindCompletion, "chat", "v1", baseBody},
	}
	seen := map[Key]string{base: "base"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := mustKey(t, tt.kind, tt.alias, tt.version, tt.body)
			if prev, dup := seen[k]; dup {
				t.Fatalf("same key as %s", prev)
			}
			seen[k] = tt.name
		})
	}
	// Strings that a lenient decoder confuses must stay apart.
	pairs := [][2]string{
		{`{"s":"\ud83d"}`, `{"s":"\\ud83d"}`},         // lone surrogate vs literal backslash-u
		{`{"s":"\ud83d\u0041"}`, `{"s":"\ud83dA\\"}`}, // unpaired high surrogate then a letter
		{`{"n":12345678901234567890}`, `{"n":12345678901234567891}`},
		{`{"n":1e400}`, `{"n":1e401}`},
		{`{"n":0.1}`, `{"n":0.10000000000000001}`},
		{`{"s":"a\u0000"}`, `{"s":"a"}`},
		{"{\"s\":\"\xff\"}", `{"s":"\u00ff"}`}, // invalid UTF-8 is kept, never merged with a rune
	}
	for _, p := range pairs {
		if canon(t, p[0]) == canon(t, p[1]) {
			t.Errorf("%s and %s have the same canonical form %s", p[0], p[1], canon(t, p[0]))
		}
	}
}

func TestCanonicalForm(t *testing.T) {
	got := canon(t, ` {"z":[1.50,-0.0,100,"\u00e9\t"],"model":"m","a":{"c":true,"b":null},"stream":false} `)
	want := `{"a":{"c":true,"b":null},"z":[15e-1,0,1e2,"é\t"]}` // nested members keep their order
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Strings: the escapes that are their own canonical form (\" \\ \n \t \r) are copied with
	// the text around them; one that is not, before or after them, is rewritten.
	for _, c := range []struct{ in, want string }{
		{`"line\nnext\ttab\r\"q\" back\\slash"`, `"line\nnext\ttab\r\"q\" back\\slash"`},
		{`"a\nb\/c\nd"`, `"a\nb/c\nd"`},
		{`"a\/b\nc"`, `"a/b\nc"`},
		{`"\n\u0041\n\b"`, `"\nA\n\u0008"`},
		{`"` + strings.Repeat(`long line\n`, 40) + `\u00e9"`, `"` + strings.Repeat(`long line\n`, 40) + `é"`},
	} {
		if got, want := canon(t, `{"s":`+c.in+`}`), `{"s":`+c.want+`}`; got != want {
			t.Errorf("%s: got %s, want %s", c.in, got, want)
		}
	}
}

func TestPrepareParams(t *testing.T) {
	tests := []struct {
		body                    string
		hasTemp, zeroTemp, seed bool
		n                       int
	}{
		{`{"temperature":0}`, true, true, false, 1},
		{`{"temperature":0.0,"n":2}`, true, true, false, 2},
		{`{"temperature":0.7,"seed":1}`, true, false, true, 1},
		{`{"temperature":null,"seed":null}`, false, false, false, 1},
		{`{"n":3.0}`, false, false, false, 3},
		{`{"n":1.5}`, false, false, false, -1},
		{`{"n":0}`, false, false, false, -1},
		{`{"n":-1}`, false, false, false, -1},
		{`{"n":1e9}`, false, false, false, -1},
		{`{"n":null}`, false, false, false, 1},
		{`{"messages":[{"temperature":0}]}`, false, false, false, 1}, // only the top level counts
	}
	for _, tt := range tests {
		var r Request
		if err := Prepare(&r, KindChat, "a", "v", []byte(tt.body)); err != nil {
			t.Fatalf("%s: %v", tt.body, err)
		}
		if r.HasTemperature != tt.hasTemp || r.ZeroTemperature != tt.zeroTemp || r.HasSeed != tt.seed || r.N != tt.n {
			t.Errorf("%s: got temp %v/%v seed %v n %d", tt.body, r.HasTemperature, r.ZeroTemperature, r.HasSeed, r.N)
		}
	}
}

func TestPrepareRejects(t *testing.T) {
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	tests := []struct {
		name, body string
		want       error
	}{
		{"empty", ``, errSyntax},
		{"not an object", `[1]`, errSyntax},
		{"trailing garbage", `{"a":1} x`, errSyntax},
		{"trailing comma", `{"a":1,}`, errSyntax},
		{"bad escape", `{"a":"\x"}`, errSyntax},
		{"raw control char", "{\"a\":\"\x01\"}", errSyntax},
		{"leading zero", `{"a":01}`, errSyntax},
		{"NaN", `{"a":NaN}`, errSyntax},
		{"huge exponent", `{"a":1e12345}`, errSyntax},
		{"duplicate key", `{"a":1,"a":2}`, ErrDuplicateKey},
		{"duplicate after unescape", `{"a":1,"\u0061":2}`, ErrDuplicateKey},
		{"duplicate in many members", manyMembers(20, true, true), ErrDuplicateKey},
		{"duplicate in many sorted members", manyMembers(20, false, true), ErrDuplicateKey},
		{"too deep", `{"a":` + deep + `}`, errTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Request
			if err := Prepare(&r, KindChat, "a", "v", []byte(tt.body)); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if d, why := Decide(Policy{Enabled: true, AllowNonDeterministic: true}, &r, nil, nil); d != Bypass || why != ReasonUncacheable {
				t.Fatalf("Decide = %v %v, want bypass", d, why)
			}
		})
	}
}

// manyMembers returns an object of n members, keys in order or reversed, with the first key
// repeated at the end when dup is set: big enough that sorting does not use insertion sort.
func manyMembers(n int, reverse, dup bool) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		k := i
		if reverse {
			k = n - 1 - i
		}
		fmt.Fprintf(&b, `"k%02d":%d,`, k, k)
	}
	if dup {
		fmt.Fprintf(&b, `"k%02d":0,`, n-1)
	}
	return strings.TrimSuffix(b.String(), ",") + "}"
}

// TestPlainRun checks the word-at-a-time scan against a byte loop: every byte value at every
// position of runs long enough to take each path (first word, following words, blocks, tail),
// and the bytes that matter at positions across the windows of long runs.
func TestPlainRun(t *testing.T) {
	var all []int
	for c := range 256 {
		all = append(all, c)
	}
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 40, 70, 100, 200, 400, 1400, 2500} {
		values := all
		if n > 100 {
			values = []int{0, 0x1f, 0x20, '"', '\\', 'a', 0x7f, 0x80, 0xc3, 0xff}
		}
		for pos := range n {
			if n > 100 && pos%7 != 0 && pos%32 > 2 && pos%32 < 30 && pos != n-1 {
				continue
			}
			for _, c := range values {
				b := bytes.Repeat([]byte("é a"), n)[:n]
				b[pos] = byte(c)
				for start := range min(n, 3) {
					want := start
					for want < n && b[want] >= 0x20 && b[want] != '"' && b[want] != '\\' {
						want++
					}
					if got := plainRun(b, start); got != want {
						t.Fatalf("plainRun(%q, %d) = %d, want %d", b, start, got, want)
					}
				}
			}
		}
	}
}

// FuzzCanonical checks the properties the cache's safety rests on: two bodies with the same
// key have the same canonical form, and two bodies with the same canonical form mean the same
// thing to a standard JSON decoder (so a key never covers two different requests); re-encoding
// a body (other key order, whitespace, escapes) keeps its key; canonicalisation is idempotent.
func FuzzCanonical(f *testing.F) {
	f.Add([]byte(baseBody), []byte(`{"b":1,"a":[1.0,"x"]}`))
	f.Add([]byte(`{"a":1e2,"b":"\u00e9"}`), []byte(`{"b":"é","a":100}`))
	f.Add([]byte(`{"s":"\ud83d"}`), []byte(`{"s":"\\ud83d"}`))
	f.Add([]byte(`{"n":-0.0,"m":[{}]}`), []byte(`{"m":[{}],"n":0}`))
	f.Add([]byte(`{"user":"a","x":1}`), []byte(`{"x":1.0,"stream":true}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var ra, rb Request
		ea := Prepare(&ra, KindChat, "m", "v", a)
		eb := Prepare(&rb, KindChat, "m", "v", b)
		if ea != nil {
			return
		}
		ca, _ := AppendCanonical(nil, a)
		if cc, err := AppendCanonical(nil, ca); err != nil || !bytes.Equal(cc, ca) {
			t.Fatalf("not idempotent: %s -> %s (%v)", ca, cc, err)
		}
		if eb == nil {
			cb, _ := AppendCanonical(nil, b)
			if (ra.Key == rb.Key) != bytes.Equal(ca, cb) {
				t.Fatalf("key equality %v but canonical forms\n%s\n%s", ra.Key == rb.Key, ca, cb)
			}
			if bytes.Equal(ca, cb) && !sameMeaning(t, a, b) {
				t.Fatalf("same canonical form for different bodies:\n%s\n%s", a, b)
			}
		}
		// Re-encoded by encoding/json's tokens (its own escapes, no whitespace, members in
		// their order), a body keeps its key, unless decoding was lossy (invalid UTF-8, lone
		// surrogates become U+FFFD).
		v, ok := decode(a)
		if !ok || lossy(v) {
			return
		}
		re, err := reencode(a)
		if err != nil {
			return
		}
		var rr Request
		if err := Prepare(&rr, KindChat, "m", "v", re); err != nil || rr.Key != ra.Key {
			cr, _ := AppendCanonical(nil, re)
			t.Fatalf("re-encoded body changed key (%v):\n%s\n%s\n%s\n%s", err, a, re, ca, cr)
		}
	})
}

// reencode writes the JSON value b anew from encoding/json's tokens: strings with Go's escapes,
// numbers as sent, no whitespace, members in their order.
func reencode(b []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out []byte
	type level struct{ object, first, key bool }
	var stack []level
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if n := len(stack); n > 0 {
			top := &stack[n-1]
			closing := tok == json.Delim('}') || tok == json.Delim(']')
			switch {
			case closing:
			case top.object && top.key: // a value after its key
				out = append(out, ':')
			case !top.first:
				out = append(out, ',')
			}
			if !closing {
				top.first = false
				if top.object {
					top.key = !top.key
				}
			}
		}
		switch tok := tok.(type) {
		case json.Delim:
			out = append(out, byte(tok))
			switch tok {
			case '{', '[':
				stack = append(stack, level{object: tok == '{', first: true})
			default:
				stack = stack[:len(stack)-1]
			}
		case json.Number:
			out = append(out, tok...)
		default:
			enc, err := json.Marshal(tok)
			if err != nil {
				return nil, err
			}
			out = append(out, enc...)
		}
	}
}

// decode parses b with numbers kept as literals and the excluded top-level members removed.
func decode(b []byte) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil || d.More() {
		return nil, false
	}
	if m, ok := v.(map[string]any); ok {
		for _, k := range excluded {
			delete(m, k)
		}
	}
	return v, true
}

func lossy(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, utf8.RuneError)
	case []any:
		for _, e := range v {
			if lossy(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if lossy(k) || lossy(e) {
				return true
			}
		}
	}
	return false
}

func sameMeaning(t *testing.T, a, b []byte) bool {
	va, oka := decode(a)
	vb, okb := decode(b)
	if !oka || !okb {
		t.Fatalf("canonicaliser accepted what encoding/json rejects: %q %q", a, b)
	}
	return equalJSON(va, vb)
}

func equalJSON(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		ra, oka := new(big.Rat).SetString(string(a))
		rb, okb := new(big.Rat).SetString(string(b))
		return oka && okb && ra.Cmp(rb) == 0
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || !equalJSON(v, w) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// TestPrepareRemembersHits checks the memo of prepared hit bodies: a body sent again byte for
// byte is prepared from it, with what canonicalising it gives, and nothing else is: not the
// same body for another alias, version or endpoint, nor a body one byte apart.
func TestPrepareRemembersHits(t *testing.T) {
	st, err := New(Config{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The memo is the process's: a body of its own keeps other tests and -count runs out.
	body := []byte(`{"model":"chat","messages":[{"role":"user","content":"memo test ` + strconv.FormatUint(rand.Uint64(), 36) +
		`"}],"temperature":0,"n":2}`)
	s := st.Scope("memo-alias", "v1")
	var first Request
	if err := Prepare(&first, KindChat, "memo-alias", "v1", body); err != nil || first.memoized {
		t.Fatalf("first Prepare: err %v, memoized %v", err, first.memoized)
	}
	if _, ok := st.Get(s, &first); ok {
		t.Fatal("hit in an empty store")
	}
	var again Request
	if err := Prepare(&again, KindChat, "memo-alias", "v1", body); err != nil || again.memoized {
		t.Fatalf("a miss was remembered: err %v, memoized %v", err, again.memoized)
	}
	e, err := NewEntry(KindChat, []byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"b"},"finish_reason":"stop"}]}`), 2)
	if err != nil {
		t.Fatal(err)
	}
	st.Set(s, &again, e, 0)
	st.Wait()
	if _, ok := st.Get(s, &again); !ok {
		t.Fatal("no hit for the stored request")
	}
	var memo Request
	if err := Prepare(&memo, KindChat, "memo-alias", "v1", body); err != nil || !memo.memoized {
		t.Fatalf("a hit body was not remembered: err %v, memoized %v", err, memo.memoized)
	}
	if memo.Key != first.Key || memo.N != 2 || !memo.HasTemperature || !memo.ZeroTemperature || memo.HasSeed || !memo.ok || memo.genSet {
		t.Fatalf("remembered %+v, canonicalising gave %+v", memo, first)
	}
	if got, ok := st.Get(s, &memo); !ok || got != e {
		t.Fatal("the remembered request does not hit its entry")
	}
	for _, c := range []struct {
		kind           Kind
		alias, version string
		body           []byte
	}{
		{KindCompletion, "memo-alias", "v1", body},
		{KindChat, "other", "v1", body},
		{KindChat, "memo-alias", "v2", body},
		{KindChat, "memo-alias", "v1", bytes.Replace(body, []byte("memo test"), []byte("memo tesT"), 1)},
	} {
		var r Request
		if err := Prepare(&r, c.kind, c.alias, c.version, c.body); err != nil {
			t.Fatal(err)
		}
		if r.memoized || r.Key == first.Key {
			t.Fatalf("%v %s %s %s: memoized %v, key equal %v", c.kind, c.alias, c.version, c.body, r.memoized, r.Key == first.Key)
		}
	}
}
