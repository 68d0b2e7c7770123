package gateway

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// blockingWriter blocks every write until release is closed, like a stuck terminal.
type blockingWriter struct{ release chan struct{} }

func (b *blockingWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

func TestAsyncWriterKeepsEveryLineInOrder(t *testing.T) {
	var out lockedBuffer
	dropped := metrics.NewSet().NewCounter("dropped_total")
	w := newAsyncWriter(&out, 1<<20, dropped)
	var want strings.Builder
	for i := range 1000 {
		line := strings.Repeat(string(rune('a'+i%26)), 10+i%7) + "\n"
		want.WriteString(line)
		w.Write([]byte(line))
	}
	w.Close()
	if dropped.Get() != 0 {
		t.Fatalf("dropped %d lines with room to spare", dropped.Get())
	}
	if got := out.b.String(); got != want.String() {
		t.Fatalf("got %q, want %q", got, want.String())
	}
}

func TestAsyncWriterDropsInsteadOfBlocking(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	dropped := metrics.NewSet().NewCounter("dropped_total")
	w := newAsyncWriter(out, 50, dropped) // room for 10 lines
	for range 100 {
		w.Write([]byte("line\n")) // must return although the output is stuck
	}
	// At most 10 lines fit the buffer and at most 10 more the one stuck write took.
	if dropped.Get() < 100-20 {
		t.Fatalf("dropped %d of 100 lines with a stuck writer and room for 10", dropped.Get())
	}
	close(out.release)
	w.Close()
}
