package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t *testing.T, r *Reader) ([]string, error) {
	t.Helper()
	var out []string
	for {
		ev, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, string(ev))
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name, stream string
		want         []string
	}{
		{"two events and done", "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n", []string{`data: {"a":1}`, `data: {"b":2}`, "data: [DONE]"}},
		{"crlf", "data: x\r\n\r\ndata: y\r\n\r\n", []string{"data: x", "data: y"}},
		{"comment and blank lines", ": ping\n\n\n\ndata: z\n\n", []string{": ping", "data: z"}},
		{"unterminated tail", "data: a\n\ndata: b", []string{"data: a", "data: b"}},
		{"multi-line event", "event: error\ndata: x\n\n", []string{"event: error\ndata: x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time proves events split across reads are joined.
			for _, src := range []io.Reader{strings.NewReader(tt.stream), iotest.OneByteReader(strings.NewReader(tt.stream))} {
				got, err := readAll(t, NewReader(src, 1<<20))
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(got, "|") != strings.Join(tt.want, "|") {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestReaderGrowsAndLimits(t *testing.T) {
	big := "data: " + strings.Repeat("x", 10000) + "\n\n"
	got, err := readAll(t, NewReader(strings.NewReader(big+big), 1<<20))
	if err != nil || len(got) != 2 || len(got[0]) != 10006 {
		t.Fatalf("got %d events, err %v", len(got), err)
	}
	_, err = readAll(t, NewReader(strings.NewReader(big), 8192))
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err = %v, want ErrEventTooLarge", err)
	}
}

func TestReaderPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: partial"), iotest.ErrReader(boom)), 1<<20)
	got, err := readAll(t, r)
	if !errors.Is(err, boom) || len(got) != 1 {
		t.Fatalf("got %q, %v; want one event then boom", got, err)
	}
}

func TestData(t *testing.T) {
	tests := []struct {
		ev, want string
		ok       bool
	}{
		{"data: {}", "{}", true},
		{"data:{}", "{}", true},
		{"data: [DONE]", "[DONE]", true},
		{": ping", "", false},
		{"event: x", "", false},
		// Other fields beside the data line, in any order, and data over several lines.
		{"event: message\ndata: {\"a\":1}", `{"a":1}`, true},
		{"id: 7\r\ndata: {}\r\nretry: 10", "{}", true},
		{": note\ndata: {\ndata:  \"a\": 1\ndata: }", "{\n \"a\": 1\n}", true},
		{"event: ping\nid: 1", "", false},
	}
	var buf []byte
	for _, tt := range tests {
		got, b, ok := Data([]byte(tt.ev), buf)
		buf = b
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("Data(%q) = %q, %v; want %q, %v", tt.ev, got, ok, tt.want, tt.ok)
		}
	}
	if got := string(AppendEvent(nil, []byte("{\n \"a\": 1\n}"))); got != "data: {\ndata:  \"a\": 1\ndata: }\n\n" {
		t.Errorf("AppendEvent of a payload with newlines = %q", got)
	}
	if !IsDone([]byte("[DONE]")) || IsDone([]byte("[DONE")) {
		t.Error("IsDone")
	}
}

// FuzzReader checks that framing a stream never panics, never returns an event containing a
// blank-line terminator, and loses no non-blank bytes however the input is split into reads.
func FuzzReader(f *testing.F) {
	f.Add([]byte("data: a\n\ndata: b\r\n\r\n: c\n\n"), 3)
	f.Add([]byte("\n\n\n"), 1)
	f.Fuzz(func(t *testing.T, stream []byte, chunk int) {
		if chunk <= 0 || chunk > 64 {
			chunk = 7
		}
		r := NewReader(&chunkReader{b: stream, n: chunk}, 1<<16)
		var total int
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			if bytes.Contains(ev, []byte("\n\n")) || bytes.Contains(ev, []byte("\r\n\r\n")) {
				t.Fatalf("event %q contains a terminator", ev)
			}
			total += len(bytes.TrimSpace(ev))
		}
		if total > len(stream) {
			t.Fatalf("events hold %d bytes, stream only %d", total, len(stream))
		}
	})
}

type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

func BenchmarkReader(b *testing.B) {
	ev := []byte("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"}}]}\n\n")
	stream := bytes.Repeat(ev, 64)
	src := bytes.NewReader(stream)
	r := NewReader(src, 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		src.Reset(stream)
		r.Reset(src)
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}

func TestBuffered(t *testing.T) {
	r := NewReader(strings.NewReader("data: a\n\ndata: b\n\ndata: c"), 1<<20)
	if r.Buffered() {
		t.Fatal("nothing read yet, but Buffered")
	}
	if ev, _ := r.Next(); string(ev) != "data: a" {
		t.Fatalf("Next = %q", ev)
	}
	if !r.Buffered() {
		t.Fatal("event b arrived with a, but not Buffered")
	}
	r.Next()
	if r.Buffered() {
		t.Fatal("the unterminated tail is not a complete event")
	}
}

// Blank lines after an event are no complete event: Next would skip them and wait for the
// source, so Buffered must not report one.
func TestBufferedStrayBlankLines(t *testing.T) {
	for _, tail := range []string{"\n\n", "\n\n\n", "\r\n\r\n", " \n\n", "\n\n: ping"} {
		r := NewReader(strings.NewReader("data: a\n\n"+tail), 1<<20)
		if ev, _ := r.Next(); string(ev) != "data: a" {
			t.Fatalf("%q: Next = %q", tail, ev)
		}
		if r.Buffered() {
			t.Errorf("%q after an event: Buffered, but no event is complete", tail)
		}
	}
	r := NewReader(strings.NewReader("data: a\n\n\n\ndata: b\n\n"), 1<<20)
	r.Next()
	if !r.Buffered() {
		t.Error("event b behind blank lines is complete, but not Buffered")
	}
}
