package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/llmgate/llmgate/gateway/jsonscan"
	"github.com/llmgate/llmgate/gateway/sse"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// payloads returns the data payloads of an SSE stream.
func payloads(t testing.TB, stream []byte) [][]byte {
	t.Helper()
	r := sse.NewReader(bytes.NewReader(stream), 1<<20)
	var out [][]byte
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if d, _, ok := sse.Data(ev, nil); ok {
			out = append(out, append([]byte(nil), d...))
		}
	}
}

func record(t testing.TB, kind Kind, n int, stream []byte) (*Entry, error) {
	t.Helper()
	r := AcquireRecorder(kind, n, 0)
	defer ReleaseRecorder(r)
	for _, p := range payloads(t, stream) {
		_ = r.Add(p)
	}
	return r.Entry()
}

// view is what a client sees of an answer, for comparing replays with the original.
type view struct {
	Model, Fingerprint string
	Choices            []choiceView
	Usage              [3]int // prompt, completion, total; zero when absent
}

type choiceView struct {
	Role, Content, Refusal, Reasoning, Finish string
	Tools                                     []toolView
	Function                                  toolView // a legacy function_call
	Logprobs                                  []string // tokens
}

type toolView struct{ ID, Type, Name, Args string }

func usageOf(u *openai.Usage) [3]int {
	if u == nil {
		return [3]int{}
	}
	return [3]int{u.PromptTokens, u.CompletionTokens, u.TotalTokens}
}

func viewOfChat(r openai.ChatCompletionResponse) view {
	v := view{Model: r.Model, Fingerprint: r.SystemFingerprint, Usage: usageOf(&r.Usage)}
	slices.SortFunc(r.Choices, func(a, b openai.ChatCompletionChoice) int { return a.Index - b.Index })
	for _, c := range r.Choices {
		cv := choiceView{Role: c.Message.Role, Content: c.Message.Content, Refusal: c.Message.Refusal,
			Reasoning: c.Message.ReasoningContent, Finish: string(c.FinishReason)}
		for _, tc := range c.Message.ToolCalls {
			cv.Tools = append(cv.Tools, toolView{tc.ID, string(tc.Type), tc.Function.Name, tc.Function.Arguments})
		}
		if fc := c.Message.FunctionCall; fc != nil {
			cv.Function = toolView{Name: fc.Name, Args: fc.Arguments}
		}
		if c.LogProbs != nil {
			for _, lp := range c.LogProbs.Content {
				cv.Logprobs = append(cv.Logprobs, lp.Token)
			}
		}
		v.Choices = append(v.Choices, cv)
	}
	return v
}

func parseChat(t testing.TB, body []byte) openai.ChatCompletionResponse {
	t.Helper()
	var r openai.ChatCompletionResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("go-openai cannot parse %s: %v", body, err)
	}
	return r
}

// serve returns a go-openai client whose every request is answered with body.
func serve(t testing.TB, body []byte, contentType string) *openai.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	cfg := openai.DefaultConfig("test")
	cfg.BaseURL = srv.URL + "/v1"
	return openai.NewClientWithConfig(cfg)
}

// readChatStream reads an SSE body with go-openai's stream reader and accumulates it the way
// clients do. It also returns the chunk count and whether any chunk carried usage.
func readChatStream(t testing.TB, stream []byte) (v view, chunks int, usage bool) {
	t.Helper()
	c := serve(t, stream, "text/event-stream")
	st, err := c.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "x"}},
		StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return v, chunks, usage
		}
		if err != nil {
			t.Fatalf("go-openai stream: %v\n%s", err, stream)
		}
		chunks++
		if v.Model == "" {
			v.Model = r.Model
		}
		if r.SystemFingerprint != "" {
			v.Fingerprint = r.SystemFingerprint
		}
		if r.Usage != nil {
			usage, v.Usage = true, usageOf(r.Usage)
		}
		for _, ch := range r.Choices {
			for len(v.Choices) <= ch.Index {
				v.Choices = append(v.Choices, choiceView{})
			}
			cv := &v.Choices[ch.Index]
			if ch.Delta.Role != "" {
				cv.Role = ch.Delta.Role
			}
			cv.Content += ch.Delta.Content
			cv.Refusal += ch.Delta.Refusal
			cv.Reasoning += ch.Delta.ReasoningContent
			for _, tc := range ch.Delta.ToolCalls {
				i := len(cv.Tools) - 1
				if tc.Index != nil {
					i = *tc.Index
				}
				for len(cv.Tools) <= i {
					cv.Tools = append(cv.Tools, toolView{})
				}
				tv := &cv.Tools[i]
				tv.ID += tc.ID
				tv.Type += string(tc.Type)
				tv.Name += tc.Function.Name
				tv.Args += tc.Function.Arguments
			}
			if fc := ch.Delta.FunctionCall; fc != nil {
				cv.Function.Name += fc.Name
				cv.Function.Args += fc.Arguments
			}
			if ch.Logprobs != nil {
				for _, lp := range ch.Logprobs.Content {
					cv.Logprobs = append(cv.Logprobs, lp.Token)
				}
			}
			if ch.FinishReason != "" {
				cv.Finish = string(ch.FinishReason)
			}
		}
	}
}

// withIDs returns body with its top-level id and created replaced, as a replay should be.
func withIDs(body, id []byte, created string) []byte {
	out := append([]byte(nil), body...)
	type edit struct {
		s, e int
		v    string
	}
	var edits []edit
	if s, e := jsonscan.Find(out, "id"); s >= 0 {
		edits = append(edits, edit{s, e, `"` + string(id) + `"`})
	}
	if s, e := jsonscan.Find(out, "created"); s >= 0 {
		edits = append(edits, edit{s, e, created})
	}
	if len(edits) == 2 && edits[0].s < edits[1].s {
		edits[0], edits[1] = edits[1], edits[0] // later span first keeps offsets valid
	}
	for _, ed := range edits {
		out = append(out[:ed.s:ed.s], append([]byte(ed.v), out[ed.e:]...)...)
	}
	return out
}

func sameView(t *testing.T, what string, got, want view) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\ngot  %+v\nwant %+v", what, got, want)
	}
}

func TestChatBufferedReplay(t *testing.T) {
	tests := []struct {
		file string
		n    int
	}{
		{"vllm_chat.json", 1},
		{"ollama_chat.json", 1},
		{"openai_chat_tools.json", 1},
		{"openai_chat_n2_logprobs.json", 2},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			orig := fixture(t, tt.file)
			want := viewOfChat(parseChat(t, orig))
			e, err := NewEntry(KindChat, orig, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			// (a) buffered: the backend's bytes, fresh id and created.
			id := AppendID(nil, KindChat)
			got := e.AppendJSON(nil, id, 1800000000)
			if wantBytes := withIDs(orig, id, "1800000000"); !bytes.Equal(got, wantBytes) {
				t.Fatalf("buffered replay differs from the backend's body:\n%s\n%s", got, wantBytes)
			}
			r := parseChat(t, got)
			if r.ID != string(id) || r.Created != 1800000000 {
				t.Fatalf("id %q created %d", r.ID, r.Created)
			}
			sameView(t, "buffered", viewOfChat(r), want)
			// (b) as a stream, through go-openai's stream reader.
			stream := e.AppendSSE(nil, id, 1800000000, true)
			gotStream, chunks, _ := readChatStream(t, stream)
			sameView(t, "stream", gotStream, want)
			if chunks < 3 {
				t.Fatalf("%d chunks; want role, content and finish chunks", chunks)
			}
			_, _, usage := readChatStream(t, e.AppendSSE(nil, id, 1800000000, false))
			if usage {
				t.Fatal("usage chunk sent without include_usage")
			}
			// The stream records back into an equal entry.
			e2, err := record(t, KindChat, tt.n, stream)
			if err != nil {
				t.Fatal(err)
			}
			sameView(t, "buffered -> stream -> buffered", viewOfChat(parseChat(t, e2.AppendJSON(nil, id, 1))), want)
		})
	}
}

func TestChatStreamReplay(t *testing.T) {
	tests := []struct {
		file string
		n    int
	}{
		{"vllm_chat_stream.txt", 1},
		{"vllm_chat_stream_usage.txt", 1},
		{"ollama_chat_stream_usage.txt", 1},
		{"openai_chat_stream_tools.txt", 1},
		{"openai_chat_stream_function_call.txt", 1},
		{"openai_chat_stream_n2.txt", 2},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			orig := fixture(t, tt.file)
			want, _, _ := readChatStream(t, orig)
			e, err := record(t, KindChat, tt.n, orig)
			if err != nil {
				t.Fatal(err)
			}
			id := AppendID(nil, KindChat)
			body := e.AppendJSON(nil, id, 1800000000)
			r := parseChat(t, body)
			if r.ID != string(id) || r.Created != 1800000000 || r.Object != "chat.completion" {
				t.Fatalf("id %q created %d object %q", r.ID, r.Created, r.Object)
			}
			got := viewOfChat(r)
			for i := range got.Choices { // a stream has no role when the backend sent none
				if want.Choices[i].Role == "" {
					got.Choices[i].Role = ""
				}
			}
			sameView(t, "stream -> buffered", got, want)
			gotStream, _, _ := readChatStream(t, e.AppendSSE(nil, id, 1800000000, true))
			for i := range gotStream.Choices {
				if want.Choices[i].Role == "" {
					gotStream.Choices[i].Role = ""
				}
			}
			sameView(t, "stream -> stream", gotStream, want)
		})
	}
}

func TestCompletionReplay(t *testing.T) {
	viewOf := func(r openai.CompletionResponse) view {
		v := view{Model: r.Model, Usage: usageOf(r.Usage)}
		for _, c := range r.Choices {
			v.Choices = append(v.Choices, choiceView{Content: c.Text, Finish: c.FinishReason})
		}
		return v
	}
	readStream := func(stream []byte) view {
		st, err := serve(t, stream, "text/event-stream").CreateCompletionStream(context.Background(),
			openai.CompletionRequest{Model: "gpt-3.5-turbo-instruct", Prompt: "x"})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var v view
		for {
			r, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return v
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, stream)
			}
			v.Model = r.Model
			if r.Usage != nil && r.Usage.TotalTokens > 0 {
				v.Usage = usageOf(r.Usage)
			}
			for _, c := range r.Choices {
				for len(v.Choices) <= c.Index {
					v.Choices = append(v.Choices, choiceView{})
				}
				v.Choices[c.Index].Content += c.Text
				if c.FinishReason != "" {
					v.Choices[c.Index].Finish = c.FinishReason
				}
			}
		}
	}
	parse := func(b []byte) openai.CompletionResponse {
		var r openai.CompletionResponse
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return r
	}
	id := AppendID(nil, KindCompletion)

	orig := fixture(t, "vllm_completion.json")
	e, err := NewEntry(KindCompletion, orig, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.AppendJSON(nil, id, 7); !bytes.Equal(got, withIDs(orig, id, "7")) {
		t.Fatalf("buffered replay:\n%s", got)
	}
	want := viewOf(parse(orig))
	sameView(t, "buffered -> stream", readStream(e.AppendSSE(nil, id, 7, true)), want)

	for _, f := range []string{"vllm_completion_stream_usage.txt", "ollama_completion_stream_usage.txt"} {
		orig := fixture(t, f)
		want := readStream(orig)
		e, err := record(t, KindCompletion, 1, orig)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		r := parse(e.AppendJSON(nil, id, 7))
		if r.Object != "text_completion" || r.ID != string(id) {
			t.Fatalf("%s: object %q id %q", f, r.Object, r.ID)
		}
		sameView(t, f+" stream -> buffered", viewOf(r), want)
		sameView(t, f+" stream -> stream", readStream(e.AppendSSE(nil, id, 7, true)), want)
	}
}

func TestEmbeddingsReplay(t *testing.T) {
	for _, f := range []string{"vllm_embeddings.json", "ollama_embeddings.json"} {
		orig := fixture(t, f)
		e, err := NewEntry(KindEmbeddings, orig, 1)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		id := AppendID(nil, KindEmbeddings)
		got := e.AppendJSON(nil, id, 9)
		if !bytes.Equal(got, withIDs(orig, id, "9")) {
			t.Fatalf("%s: %s", f, got)
		}
		var a, b openai.EmbeddingResponse
		if json.Unmarshal(orig, &a) != nil || json.Unmarshal(got, &b) != nil || !reflect.DeepEqual(a.Data, b.Data) || len(b.Data) == 0 {
			t.Fatalf("%s: embeddings differ", f)
		}
		if s := e.AppendSSE(nil, id, 9, true); len(s) != 0 {
			t.Fatalf("embeddings streamed: %s", s)
		}
	}
}

func TestNewEntryRejects(t *testing.T) {
	ok := string(fixture(t, "ollama_chat.json"))
	tests := []struct {
		name, body string
		kind       Kind
		n          int
	}{
		{"error body", `{"error":{"message":"x","type":"server_error"}}`, KindChat, 1},
		{"no finish_reason", strings.Replace(ok, `"finish_reason":"stop"`, `"finish_reason":null`, 1), KindChat, 1},
		{"cut by the backend's filter", strings.Replace(ok, `"finish_reason":"stop"`, `"finish_reason":"content_filter"`, 1), KindChat, 1},
		// vLLM ends a request it aborted (pause_generation(mode="abort"), /abort_requests) or
		// failed within the engine with the text so far: not the answer to the request.
		{"aborted by the backend", strings.Replace(ok, `"finish_reason":"stop"`, `"finish_reason":"abort"`, 1), KindChat, 1},
		{"failed in the backend", strings.Replace(ok, `"finish_reason":"stop"`, `"finish_reason":"error"`, 1), KindChat, 1},
		{"fewer choices than n", ok, KindChat, 2},
		{"no message", `{"choices":[{"index":0,"finish_reason":"stop"}]}`, KindChat, 1},
		{"duplicate index", `{"choices":[{"index":0,"text":"a","finish_reason":"stop"},{"index":0,"text":"b","finish_reason":"stop"}]}`, KindCompletion, 2},
		{"embeddings without data", `{"object":"list","model":"m"}`, KindEmbeddings, 1},
		{"invalid JSON", ok[:len(ok)-3], KindChat, 1},
	}
	for _, tt := range tests {
		if _, err := NewEntry(tt.kind, []byte(tt.body), tt.n); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func TestRecorderDiscards(t *testing.T) {
	full := string(fixture(t, "vllm_chat_stream_usage.txt"))
	tests := []struct {
		name, stream string
		n, max       int
	}{
		{"no [DONE]", strings.Replace(full, "data: [DONE]\n\n", "", 1), 1, 0},
		{"error event", string(fixture(t, "vllm_stream_error.txt")), 1, 0},
		{"no finish_reason", strings.Replace(full, `"finish_reason":"length"`, `"finish_reason":null`, 1), 1, 0},
		{"cut by the backend's filter", strings.Replace(full, `"finish_reason":"length"`, `"finish_reason":"content_filter"`, 1), 1, 0},
		{"aborted by the backend", strings.Replace(full, `"finish_reason":"length"`, `"finish_reason":"abort"`, 1), 1, 0},
		{"failed in the backend", strings.Replace(full, `"finish_reason":"length"`, `"finish_reason":"error"`, 1), 1, 0},
		{"a choice beyond n", string(fixture(t, "openai_chat_stream_n2.txt")), 1, 0},
		{"a choice missing", full, 2, 0},
		{"event after [DONE]", full + full, 1, 0},
		{"malformed chunk", strings.Replace(full, `"content":"The"`, `"content":"The`, 1), 1, 0},
		{"too large", full, 1, 100},
		{"audio", strings.Replace(full, `"delta":{"content":"The"}`, `"delta":{"audio":{"id":"audio_1","data":"UklGRg==","transcript":"The"}}`, 1), 1, 0},
	}
	for _, tt := range tests {
		r := AcquireRecorder(KindChat, tt.n, tt.max)
		for _, p := range payloads(t, []byte(tt.stream)) {
			_ = r.Add(p)
		}
		if _, err := r.Entry(); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%s: err = %v, want ErrIncomplete", tt.name, err)
		}
		ReleaseRecorder(r)
	}
	// Interrupted: Entry before the stream ended.
	r := AcquireRecorder(KindChat, 1, 0)
	_ = r.Add(payloads(t, []byte(full))[0])
	if _, err := r.Entry(); !errors.Is(err, ErrIncomplete) {
		t.Errorf("interrupted: err = %v", err)
	}
	ReleaseRecorder(r)
}

// TestStreamPieces checks the chunking of replayed text: pieces of a few words, never an
// escape, surrogate pair or UTF-8 sequence cut in two.
func TestStreamPieces(t *testing.T) {
	texts := []string{
		"The quick brown fox jumps over the lazy dog and keeps running far away.",
		"Café \"au lait\"\nwith\ttabs \\ backslashes 😀😀😀😀😀😀😀😀😀😀😀😀😀😀 emoji and more words here",
		strings.Repeat("日本語", 40),
		strings.Repeat("x", 200) + " tail",
		"\x01\x02" + strings.Repeat("\u2028", 30),
	}
	for _, text := range texts {
		for _, esc := range []bool{false, true} {
			raw, _ := json.Marshal(text)
			if esc { // the same text with every non-ASCII rune as \u escapes
				raw = []byte(jsonASCII(text))
			}
			body := raw[1 : len(raw)-1]
			var joined strings.Builder
			pieces := 0
			for s := 0; s < len(body); {
				end := nextPiece(body, s)
				var part string
				if err := json.Unmarshal([]byte(`"`+string(body[s:end])+`"`), &part); err != nil {
					t.Fatalf("piece %q of %q is not a JSON string: %v", body[s:end], body, err)
				}
				if strings.Count(strings.TrimSpace(part), " ") >= wordsPerPiece {
					t.Fatalf("piece %q has too many words", part)
				}
				joined.WriteString(part)
				s = end
				pieces++
			}
			if joined.String() != text {
				t.Fatalf("pieces join to %q, want %q", joined.String(), text)
			}
			if len(text) > 2*maxPieceBytes && pieces < 2 {
				t.Fatalf("%q: one piece", text)
			}
		}
	}
}

// jsonASCII encodes s as a JSON string with every non-ASCII rune escaped.
func jsonASCII(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r > 0x7e:
			if r > 0xffff {
				r -= 0x10000
				writeU(&b, 0xd800+(r>>10))
				writeU(&b, 0xdc00+(r&0x3ff))
			} else {
				writeU(&b, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func writeU(b *strings.Builder, r rune) {
	b.WriteString(`\u`)
	for sh := 12; sh >= 0; sh -= 4 {
		b.WriteByte(hexDigits[r>>uint(sh)&0xf])
	}
}

// FuzzRecorder feeds arbitrary payloads (one per line) to a recorder: it must not panic, and
// whatever it accepts must replay as valid JSON and as an SSE stream of valid JSON events.
func FuzzRecorder(f *testing.F) {
	for _, name := range []string{"vllm_chat_stream_usage.txt", "openai_chat_stream_tools.txt", "openai_chat_stream_n2.txt"} {
		var lines []string
		for _, p := range payloads(f, fixture(f, name)) {
			lines = append(lines, string(p))
		}
		f.Add(strings.Join(lines, "\n"), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data string, n uint8) {
		for _, kind := range []Kind{KindChat, KindCompletion} {
			r := AcquireRecorder(kind, int(n%4), 0)
			for _, p := range strings.Split(data, "\n") {
				_ = r.Add([]byte(p))
			}
			e, err := r.Entry()
			ReleaseRecorder(r)
			if err != nil {
				continue
			}
			checkReplays(t, e)
		}
	})
}

// FuzzNewEntry: arbitrary backend bodies must not panic, and accepted ones replay validly.
func FuzzNewEntry(f *testing.F) {
	for _, name := range []string{"vllm_chat.json", "openai_chat_tools.json", "openai_chat_n2_logprobs.json", "vllm_completion.json"} {
		f.Add(fixture(f, name), uint8(1))
	}
	f.Add([]byte(`{ "user":"a" ,"id":"c1","metadata":{"t":1},"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"store":true}`), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, n uint8) {
		for _, kind := range []Kind{KindChat, KindCompletion, KindEmbeddings} {
			if e, err := NewEntry(kind, body, int(n%4)); err == nil {
				checkReplays(t, e)
			}
		}
	})
}

func checkReplays(t *testing.T, e *Entry) {
	t.Helper()
	if b := e.AppendJSON(nil, []byte("id"), 1); !json.Valid(b) {
		t.Fatalf("invalid buffered replay: %s", b)
	}
	stream := e.AppendSSE(nil, []byte("id"), 1, true)
	for _, p := range payloads(t, stream) {
		if !sse.IsDone(p) && !json.Valid(p) {
			t.Fatalf("invalid event %s in\n%s", p, stream)
		}
	}
	if e.kind != KindEmbeddings && !bytes.HasSuffix(stream, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream does not end with [DONE]: %s", stream)
	}
}

// Members the cache key leaves out (user, metadata, ...) are the requester's own: a backend
// that echoes them in its answer must not have them replayed to the next requester of the same
// prompt. Unknown members the key does cover stay.
func TestReplayDropsCallerFields(t *testing.T) {
	const choices = `"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]`
	for _, body := range []string{
		`{"id":"c1","object":"chat.completion","created":1,"model":"m","user":"alice@example.com",` +
			`"metadata":{"tenant":"alice"},"service_tier":"default",` + choices + `,"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`,
		"{ \"user\" : \"alice\" ,\n \"id\":\"c1\",\"service_tier\":\"default\"," + choices + ", \"metadata\": {\"t\":\"alice\"} }",
	} {
		e, err := NewEntry(KindChat, []byte(body), 1)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		for _, out := range [][]byte{e.AppendJSON(nil, []byte("x"), 2), e.AppendSSE(nil, []byte("x"), 2, true)} {
			if bytes.Contains(out, []byte("alice")) || !bytes.Contains(out, []byte(`"service_tier":"default"`)) {
				t.Errorf("replay carries the first requester's user or metadata, or lost service_tier:\n%s", out)
			}
		}
		if out := e.AppendJSON(nil, []byte("x"), 2); !json.Valid(out) || contentOf(t, e) != "hi" {
			t.Errorf("replay is not the answer without those members:\n%s", out)
		}
	}
}

// vLLM's return_token_ids streams each chunk's own token ids: the recorded answer holds them
// all, in order, as the backend's buffered answer does, for chat and completions alike.
func TestRecorderConcatenatesTokenIDs(t *testing.T) {
	chat := func(delta, ids, finish string) string {
		return `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta +
			`,"logprobs":null,"finish_reason":` + finish + `,"token_ids":` + ids + `}]}` + "\n\n"
	}
	text := func(s, ids, finish string) string {
		return `data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"` + s +
			`","logprobs":null,"finish_reason":` + finish + `,"token_ids":` + ids + `}]}` + "\n\n"
	}
	for _, tt := range []struct {
		kind   Kind
		stream string
	}{
		{KindChat, chat(`{"role":"assistant","content":""}`, `[]`, "null") + chat(`{"content":"Hello"}`, `[9906]`, "null") +
			chat(`{"content":" there"}`, `[1070, 13]`, "null") + chat(`{"content":""}`, `null`, `"stop"`) + "data: [DONE]\n\n"},
		{KindCompletion, text("Hello", `[9906]`, "null") + text(" there", `[1070,13]`, "null") + text("", `[]`, `"stop"`) + "data: [DONE]\n\n"},
	} {
		e, err := record(t, tt.kind, 1, []byte(tt.stream))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Choices []struct {
				TokenIDs []int `json:"token_ids"`
			} `json:"choices"`
		}
		body := e.AppendJSON(nil, []byte("x"), 1)
		if err := json.Unmarshal(body, &got); err != nil || len(got.Choices) != 1 || !slices.Equal(got.Choices[0].TokenIDs, []int{9906, 1070, 13}) {
			t.Errorf("kind %d: recorded %s (%v), want token_ids [9906 1070 13]", tt.kind, body, err)
		}
	}
}

// A buffered answer lists content before reasoning_content (vLLM's message field order); its
// stream replay sends the reasoning first, as the backend streams it, so that a client showing
// deltas as they come shows the thinking before the answer, and the answer adds up the same.
func TestStreamReplayReasoningFirst(t *testing.T) {
	body := `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant",` +
		`"content":"The answer is 4.","refusal":null,"tool_calls":[],"reasoning_content":"Two plus two makes four."},"logprobs":null,"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}`
	e, err := NewEntry(KindChat, []byte(body), 1)
	if err != nil {
		t.Fatal(err)
	}
	stream := e.AppendSSE(nil, []byte("x"), 1, true)
	var order []string
	for _, p := range payloads(t, stream) {
		var c openai.ChatCompletionStreamResponse
		if sse.IsDone(p) || json.Unmarshal(p, &c) != nil || len(c.Choices) == 0 {
			continue
		}
		d := c.Choices[0].Delta
		if d.ReasoningContent != "" && (len(order) == 0 || order[len(order)-1] != "reasoning") {
			order = append(order, "reasoning")
		}
		if d.Content != "" && (len(order) == 0 || order[len(order)-1] != "content") {
			order = append(order, "content")
		}
	}
	if fmt.Sprint(order) != "[reasoning content]" {
		t.Fatalf("deltas came as %v, want the reasoning, then the content:\n%s", order, stream)
	}
	got, _, _ := readChatStream(t, stream)
	sameView(t, "stream", got, viewOfChat(parseChat(t, []byte(body))))
}

// vLLM sends a stream's prompt_token_ids (return_token_ids) and its request metrics once, on
// the first chunk; a replay does too, instead of copying them into every chunk, while a scalar
// such as OpenAI's service_tier stays on every chunk as OpenAI sends it.
func TestStreamReplaySendsCompositeExtrasOnce(t *testing.T) {
	body := `{"id":"c1","object":"chat.completion","created":1,"model":"m","service_tier":"default",` +
		`"prompt_token_ids":[1,2,3,4,5,6,7,8],"metrics":{"arrival_time":1.5},` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"one two three four five six seven eight nine ten"},` +
		`"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":10,"total_tokens":18}}`
	e, err := NewEntry(KindChat, []byte(body), 1)
	if err != nil {
		t.Fatal(err)
	}
	ps := payloads(t, e.AppendSSE(nil, []byte("x"), 1, true))
	for i, p := range ps {
		if sse.IsDone(p) {
			continue
		}
		first := i == 0
		for _, member := range []string{`"prompt_token_ids":[1,2,3,4,5,6,7,8]`, `"metrics":{"arrival_time":1.5}`} {
			if bytes.Contains(p, []byte(member)) != first {
				t.Errorf("chunk %d: has %s = %v, want %v:\n%s", i, member, !first, first, p)
			}
		}
		if !bytes.Contains(p, []byte(`"service_tier":"default"`)) {
			t.Errorf("chunk %d lost service_tier:\n%s", i, p)
		}
	}
	// The replay records back to the same answer.
	r, err := record(t, KindChat, 1, e.AppendSSE(nil, []byte("x"), 1, true))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.AppendJSON(nil, []byte("x"), 1); !bytes.Contains(got, []byte(`"prompt_token_ids":[1,2,3,4,5,6,7,8]`)) {
		t.Errorf("recorded replay lost prompt_token_ids:\n%s", got)
	}
}
