package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	tests := []struct {
		name, body, key, want string
	}{
		{"string", `{"model":"chat","x":1}`, "model", `"chat"`},
		{"spaces", "{ \"a\" : [1,{\"model\":\"no\"}] ,\n \"model\" : \"m\\\"x\" }", "model", `"m\"x"`},
		{"nested key is not top level", `{"messages":[{"model":"no"}]}`, "model", ""},
		{"object value", `{"stream_options":{"include_usage":false},"stream":true}`, "stream_options", `{"include_usage":false}`},
		{"literal", `{"stream":true}`, "stream", "true"},
		{"number last", `{"n":12}`, "n", "12"},
		{"duplicate takes last", `{"model":"a","model":"b"}`, "model", `"b"`},
		{"escaped backslash before quote", `{"s":"a\\\\","model":"m"}`, "model", `"m"`},
		{"string with braces", `{"s":"}{][","model":"m"}`, "model", `"m"`},
		{"absent", `{"a":1}`, "model", ""},
		{"empty object", `{}`, "model", ""},
		{"not object", `[1]`, "model", ""},
		{"malformed", `{"model":"a"`, "model", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, e := Find([]byte(tt.body), tt.key)
			got := ""
			if s >= 0 {
				got = tt.body[s:e]
			}
			if got != tt.want {
				t.Fatalf("Find(%s, %q) = %q, want %q", tt.body, tt.key, got, tt.want)
			}
		})
	}
}

func TestObjectEnd(t *testing.T) {
	tests := []struct {
		body string
		want int
	}{
		{`{"a":1}`, 6},
		{"{\"a\":{}}\n", 7},
		{`{"a":1} x`, -1},
		{`[]`, -1},
		{`{"a":"}"`, -1},
	}
	for _, tt := range tests {
		if got := ObjectEnd([]byte(tt.body)); got != tt.want {
			t.Errorf("ObjectEnd(%q) = %d, want %d", tt.body, got, tt.want)
		}
	}
}

// FuzzFind checks Find against encoding/json on every valid object: the span it returns must
// hold the same value the standard decoder sees for the key, and it must never panic.
func FuzzFind(f *testing.F) {
	for _, s := range []string{`{"model":"x","stream":true}`, `{"a":[{"model":1}],"model":null}`, `{"model":"a\"b\\"}`, `{}`, `{"m":{"model":[]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, e := Find(b, "model")
		ObjectEnd(b)
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return
		}
		want, ok := m["model"]
		if !ok {
			if s >= 0 {
				t.Fatalf("found a model in %q where encoding/json sees none", b)
			}
			return
		}
		if s < 0 {
			// Keys written with escapes are not matched; that is documented.
			return
		}
		var got, exp any
		if err := json.Unmarshal(b[s:e], &got); err != nil {
			t.Fatalf("span %q of %q is not JSON: %v", b[s:e], b, err)
		}
		_ = json.Unmarshal(want, &exp)
		gj, _ := json.Marshal(got)
		ej, _ := json.Marshal(exp)
		if string(gj) != string(ej) {
			t.Fatalf("Find(%q) = %s, encoding/json says %s", b, gj, ej)
		}
	})
}

func BenchmarkFind(b *testing.B) {
	body := []byte(`{"messages":[{"role":"user","content":"` + string(make([]byte, 0)) + `hello there, how are you doing today? I would like to know more about llamas."}],"temperature":0.2,"top_k":40,"model":"chat","stream":true}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		Find(body, "model")
	}
}

func TestFirstElementStart(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`[{"a":1},{"b":2}]`, 1},
		{` [ "x" , 1 ]`, 3},
		{`[[1,2],3]`, 1},
		{`[]`, -1},
		{`[ ]`, -1},
		{`{"a":1}`, -1},
		{``, -1},
	}
	for _, tt := range tests {
		if got := FirstElementStart([]byte(tt.in)); got != tt.want {
			t.Errorf("FirstElementStart(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestNextElementStart(t *testing.T) {
	tests := []struct {
		in   string
		want []string // the elements, each from its start up to the next one's
	}{
		{`[{"a":1},{"b":"]"}]`, []string{`{"a":1},`, `{"b":"]"}]`}},
		{` [ "x" , [1,2] ,null ]`, []string{`"x" , `, `[1,2] ,`, `null ]`}},
		{`[1]`, []string{`1]`}},
		{`[]`, nil},
		{`[1,]`, []string{`1,]`}},
		{`[{"a":`, []string{`{"a":`}},
	}
	for _, tt := range tests {
		b := []byte(tt.in)
		var got []string
		for i := FirstElementStart(b); i >= 0; {
			next := NextElementStart(b, i)
			end := next
			if end < 0 {
				end = len(b)
			}
			got = append(got, string(b[i:end]))
			i = next
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%s: elements %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFindEach(t *testing.T) {
	keys := []string{"index", "finish_reason", "delta", "text"}
	var m [4]Span
	// A choice inside its array: the scan ends at the choice's closing brace.
	b := []byte(`{"index":0,"delta":{"content":"a \"}\" b"},"finish_reason":"stop"},{"index":1,"text":"x"}]`)
	FindEach(b, keys, m[:])
	got := func(s Span) string {
		if s.Start < 0 {
			return "-"
		}
		return string(b[s.Start:s.End])
	}
	if got(m[0]) != "0" || got(m[1]) != `"stop"` || got(m[2]) != `{"content":"a \"}\" b"}` || got(m[3]) != "-" {
		t.Fatalf("spans %v: %s %s %s %s", m, got(m[0]), got(m[1]), got(m[2]), got(m[3]))
	}
	// Malformed before the end: nothing is reported, not even what was found first.
	b = []byte(`{"index":0,"delta" {"content":"a"}}`)
	FindEach(b, keys, m[:])
	for k, s := range m {
		if s.Start != -1 || s.End != -1 {
			t.Errorf("malformed: key %s at %v", keys[k], s)
		}
	}
	// An empty key matches nothing, not the empty member name.
	b = []byte(`{"":1}`)
	FindEach(b, []string{""}, m[:1])
	if m[0].Start != -1 {
		t.Errorf("empty key matched at %v", m[0])
	}
}

// TestFindEachResume reads a stream's chunks as FindEach does, skipping the members their
// prefix repeats, whatever comes after the prefix.
func TestFindEachResume(t *testing.T) {
	keys := []string{"error", "usage", "choices"}
	const head = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",`
	chunks := []string{
		head + `"choices":[{"index":0,"delta":{"content":" a"}}]}`,
		head + `"choices":[{"index":0,"delta":{"content":" b"}}]}`, // resumed
		head + `"choices":[],"usage":{"prompt_tokens":2}}`,
		head + `"usage":{"prompt_tokens":2},"choices":[]}`,
		head + `"choices" [1]}`,                          // malformed after the prefix: nothing found
		head + `"choices":[1],"choices":[2]}`,            // the last of duplicate keys
		head + `"error":{"message":"x"}}`,                // another sought key first
		`{"id":"chatcmpl-2","object":"x","choices":[3]}`, // another prefix
		head + `"x":1}`,          // nothing sought after the prefix
		head + `}`,               // malformed: a comma before the brace
		head[:len(head)-1] + `}`, // the object ends where a key was
		`{"choices":[4]}`,        // an empty prefix
		head + "\"choices\":[5]}",
	}
	var r Resume
	var got, want [3]Span
	for _, c := range chunks {
		b := []byte(c)
		FindEachResume(b, keys, got[:], &r)
		FindEach(b, keys, want[:])
		if got != want {
			t.Errorf("%s: FindEachResume %v, FindEach %v", c, got, want)
		}
	}
}

// FuzzFindEachResume checks FindEachResume against FindEach on an object read after another
// that shares its first bytes.
func FuzzFindEachResume(f *testing.F) {
	f.Add([]byte(`{"id":"a","choices":[1]}`), uint8(10), []byte(`"choices":[2],"usage":3}`))
	f.Add([]byte(`{"id":"a","usage":{},"choices":[1]}`), uint8(20), []byte(`}`))
	f.Add([]byte(` { "id" : "a" , "choices":[1]}`), uint8(16), []byte(` "error":null}`))
	keys := []string{"error", "usage", "choices"}
	f.Fuzz(func(t *testing.T, a []byte, cut uint8, tail []byte) {
		b := append(append([]byte(nil), a[:min(int(cut), len(a))]...), tail...)
		var r Resume
		var got, want [3]Span
		FindEachResume(a, keys, got[:], &r)
		FindEach(a, keys, want[:])
		if got != want {
			t.Fatalf("%q: FindEachResume %v, FindEach %v", a, got, want)
		}
		FindEachResume(b, keys, got[:], &r)
		FindEach(b, keys, want[:])
		if got != want {
			t.Fatalf("%q after %q: FindEachResume %v, FindEach %v", b, a, got, want)
		}
	})
}

// BenchmarkFindEachResumeChunk is BenchmarkFindPairChunk as a stream reads its chunks: each
// after one with the same id, object, created and model.
func BenchmarkFindEachResumeChunk(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-9f1c2a3b4d5e6f708192a3b4c5d6e7f8","object":"chat.completion.chunk","created":1732700000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}]}`)
	keys := []string{"error", "usage", "choices"}
	var r Resume
	var spans [3]Span
	FindEachResume(chunk, keys, spans[:], &r)
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		FindEachResume(chunk, keys, spans[:], &r)
	}
}

func TestFindPair(t *testing.T) {
	b := []byte(`{"choices":[{"a":1}], "x":"usage", "usage":{"n":2}}`)
	s1, e1, s2, e2 := FindPair(b, "usage", "choices")
	if string(b[s1:e1]) != `{"n":2}` || string(b[s2:e2]) != `[{"a":1}]` {
		t.Fatalf("got %d %d %d %d", s1, e1, s2, e2)
	}
	if s1, _, s2, _ := FindPair(b, "nope", ""); s1 != -1 || s2 != -1 {
		t.Fatalf("absent keys found: %d %d", s1, s2)
	}
	if s1, _, s2, _ := FindPair([]byte(`{"usage":1 "choices":2}`), "usage", "choices"); s1 != -1 || s2 != -1 {
		t.Fatalf("malformed: %d %d", s1, s2)
	}
}

// BenchmarkFindPairChunk is the per-event scan of a stream: usage and choices of a vLLM chunk.
func BenchmarkFindPairChunk(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-9f1c2a3b4d5e6f708192a3b4c5d6e7f8","object":"chat.completion.chunk","created":1732700000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		FindPair(chunk, "usage", "choices")
	}
}

func TestHex4(t *testing.T) {
	for _, tt := range []struct {
		in   string
		at   int
		want rune
		ok   bool
	}{
		{`\u00e9`, 2, 0xe9, true},
		{`\uD83D`, 2, 0xd83d, true},
		{`\uabCD`, 2, 0xabcd, true},
		{`\u12`, 2, 0, false},
		{`\u12g4`, 2, 0, false},
	} {
		if got, ok := Hex4([]byte(tt.in), tt.at); got != tt.want || ok != tt.ok {
			t.Errorf("Hex4(%q, %d) = %#x, %v; want %#x, %v", tt.in, tt.at, got, ok, tt.want, tt.ok)
		}
	}
}

// BenchmarkFindPairAnswer is the scan of a buffered answer, as vLLM writes one (its many null
// members included): usage and choices, read for every non-streaming request.
func BenchmarkFindPairAnswer(b *testing.B) {
	answer := []byte(`{"id":"chatcmpl-7f46a57c92dbee5f0f4dbcfc2bdc9d33","object":"chat.completion","created":1795958572,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"prompt assistant returns to policy flow answer over system fox about simulated drift server its latency","refusal":null,"annotations":null,"audio":null,"function_call":null,"reasoning":null},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null,"routed_experts":null}],"service_tier":null,"system_fingerprint":"vllm-0.22.1-b100b2bd","usage":{"prompt_tokens":4,"total_tokens":20,"completion_tokens":16,"prompt_tokens_details":null,"completion_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"prompt_text":null,"kv_transfer_params":null,"ec_transfer_params":null,"metrics":null}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(answer)))
	for b.Loop() {
		FindPair(answer, "usage", "choices")
	}
}
