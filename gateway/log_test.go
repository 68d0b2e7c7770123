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
	w := newAsyncWriter(&out, 16, metrics.NewSet().NewCounter("dropped_total"))
	var want strings.Builder
	for i := range 10 {
		line := strings.Repeat(string(rune('a'+i)), 10) + "\n"
		want.WriteString(line)
		for {
			// The queue is small: wait for room rather than count drops in this test.
			if len(w.lines) < cap(w.lines) {
				break
			}
		}
		w.Write([]byte(line))
	}
	w.Close()
	if got := out.b.String(); got != want.String() {
		t.Fatalf("got %q, want %q", got, want.String())
	}
}

func TestAsyncWriterDropsInsteadOfBlocking(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	dropped := metrics.NewSet().NewCounter("dropped_total")
	w := newAsyncWriter(out, 4, dropped)
	for range 100 {
		w.Write([]byte("line\n")) // must return although the output is stuck
	}
	if dropped.Get() < 100-4-1 {
		t.Fatalf("dropped %d of 100 lines with a stuck writer and a queue of 4", dropped.Get())
	}
	close(out.release)
	w.Close()
}
