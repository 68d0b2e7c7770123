package cache

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// requestBody returns a realistic chat request of about size bytes: a system prompt, turns
// of conversation, sampling parameters and vendor extras, keys in client order.
func requestBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"llama-3.1-8b","messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly and cite sources when you can."}`)
	turn := 0
	for b.Len() < size-220 {
		role := []string{"user", "assistant"}[turn%2]
		fmt.Fprintf(&b, `,{"role":%q,"content":"Turn %d: could you explain how the cache key is computed, and why \"field order\" does not matter?"}`, role, turn)
		turn++
	}
	b.WriteString(`],"temperature":0,"max_tokens":256,"top_p":1.0,"top_k":40,"seed":1234,"stream":false,"user":"user-42","response_format":{"type":"text"}}`)
	return []byte(b.String())
}

// gatewayBody is a request shaped like the gateway's benchmark traffic: a short system prompt
// and one long user message, so the string scanner's speed dominates.
func gatewayBody() []byte {
	const sentence = "The cache keys every request by its canonical form, so clients that reorder fields still share answers. "
	prose := strings.Repeat(sentence, 950/len(sentence)+1)[:950]
	return []byte(`{"model":"chat","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"` +
		prose + `"}],"temperature":0,"top_k":40}`)
}

func BenchmarkKey(b *testing.B) {
	cases := []struct {
		name string
		body []byte
	}{
		{"1KiB", requestBody(1 << 10)},
		{"8KiB", requestBody(8 << 10)},
		{"gateway", gatewayBody()},
	}
	for _, c := range cases {
		body := c.body
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			var r Request
			for b.Loop() {
				if err := Prepare(&r, KindChat, "chat", "v1", body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// answer16 is the vLLM chat fixture with a 16-token answer.
func answer16(t testing.TB) []byte {
	body := strings.Replace(string(fixture(t, "vllm_chat.json")), "Hello! How can I help you today?",
		"Hello! The cache answered this from memory, so it costs no GPU time at all.", 1)
	return []byte(strings.Replace(body, `"completion_tokens":10`, `"completion_tokens":16`, 1))
}

// BenchmarkNewEntry is the store path of a buffered answer: copying and indexing it.
func BenchmarkNewEntry(b *testing.B) {
	body := answer16(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := NewEntry(KindChat, body, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func hitSetup(b *testing.B) (*Store, *Scope, *Request, []byte) {
	st := newStore(b, 64<<20)
	s := st.Scope("chat", "v1")
	body := requestBody(1 << 10)
	var r Request
	if err := Prepare(&r, KindChat, "chat", "v1", body); err != nil {
		b.Fatal(err)
	}
	e, err := NewEntry(KindChat, fixture(b, "vllm_chat.json"), 1)
	if err != nil {
		b.Fatal(err)
	}
	st.Set(s, &r, e, 0)
	st.Wait()
	if _, ok := st.Get(s, &r); !ok {
		b.Fatal("no hit")
	}
	return st, s, &r, body
}

func BenchmarkLookupHit(b *testing.B) {
	st, s, r, _ := hitSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := st.Get(s, r); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkReplayBuffered(b *testing.B) {
	e, err := NewEntry(KindChat, fixture(b, "vllm_chat.json"), 1)
	if err != nil {
		b.Fatal(err)
	}
	var id, dst []byte
	b.ReportAllocs()
	for b.Loop() {
		id = AppendID(id[:0], KindChat)
		dst = e.AppendJSON(dst[:0], id, 1800000000)
	}
}

func BenchmarkReplayStream(b *testing.B) {
	for _, f := range []string{"vllm_chat.json", "openai_chat_n2_logprobs.json"} {
		n := 1
		if strings.Contains(f, "n2") {
			n = 2
		}
		e, err := NewEntry(KindChat, fixture(b, f), n)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f, func(b *testing.B) {
			var id, dst []byte
			b.ReportAllocs()
			for b.Loop() {
				id = AppendID(id[:0], KindChat)
				dst = e.AppendSSE(dst[:0], id, 1800000000, true)
			}
		})
	}
}

// BenchmarkHit is the whole hit path for a 1 KiB request: key, lookup, buffered replay.
func BenchmarkHit(b *testing.B) {
	st, s, _, body := hitSetup(b)
	var r Request
	var id, dst []byte
	b.ReportAllocs()
	for b.Loop() {
		_ = Prepare(&r, KindChat, "chat", "v1", body)
		e, ok := st.Get(s, &r)
		if !ok {
			b.Fatal("miss")
		}
		id = AppendID(id[:0], KindChat)
		dst = e.AppendJSON(dst[:0], id, 1800000000)
	}
}

// BenchmarkRecord is the store path of a stream: recording it and building the entry.
func BenchmarkRecord(b *testing.B) {
	events := payloads(b, fixture(b, "openai_chat_stream_n2.txt"))
	b.ReportAllocs()
	for b.Loop() {
		r := AcquireRecorder(KindChat, 2, 0)
		for _, ev := range events {
			_ = r.Add(ev)
		}
		if _, err := r.Entry(); err != nil {
			b.Fatal(err)
		}
		ReleaseRecorder(r)
	}
}

// TestHitAllocs guards the hit path against allocations.
func TestHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	st := newStore(t, 1<<20)
	s := st.Scope("chat", "v1")
	body := requestBody(1 << 10)
	var r Request
	_ = Prepare(&r, KindChat, "chat", "v1", body)
	e, _ := NewEntry(KindChat, fixture(t, "vllm_chat.json"), 1)
	st.Set(s, &r, e, 0)
	st.Wait()
	id, dst := make([]byte, 0, 64), make([]byte, 0, 8192)
	allocs := testing.AllocsPerRun(200, func() {
		_ = Prepare(&r, KindChat, "chat", "v1", body)
		e, ok := st.Get(s, &r)
		if !ok {
			t.Fatal("miss")
		}
		id = AppendID(id[:0], KindChat)
		dst = e.AppendJSON(dst[:0], id, 1)
		dst = e.AppendSSE(dst[:0], id, 1, true)
	})
	if allocs > 0 {
		t.Fatalf("hit path allocates %.1f times", allocs)
	}
}

// TestMissAllocs guards the key of a request the cache has not seen (each run a new body, so
// the memo of prepared hit bodies never answers) against allocations.
func TestMissAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, body := range [][]byte{requestBody(1 << 10), gatewayBody(), requestBody(8 << 10)} {
		var r Request
		n, at := 0, bytes.Index(body, []byte(`"content":"`))+len(`"content":"`)+2 // inside the first content
		allocs := testing.AllocsPerRun(200, func() {
			n++
			body[at] = byte('0' + n%10) // never the body as sent, which a hit test may have remembered
			if err := Prepare(&r, KindChat, "chat", "v1", body); err != nil || r.memoized {
				t.Fatalf("err %v, memoized %v", err, r.memoized)
			}
		})
		if allocs > 0 {
			t.Fatalf("%d-byte body: Prepare allocates %.1f times", len(body), allocs)
		}
	}
}
