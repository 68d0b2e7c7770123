package gateway

import (
	"io"
	"os"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

var stderr io.Writer = os.Stderr

// asyncWriter hands log lines to one goroutine that writes them, so a slow terminal or disk
// never blocks a request. When the queue is full the line is dropped and counted.
type asyncWriter struct {
	out     io.Writer
	lines   chan *[]byte
	free    sync.Pool
	dropped *metrics.Counter
	done    chan struct{}
	once    sync.Once
	mu      sync.RWMutex // held for reading by Write, for writing by Close: no send on a closed channel
	closed  bool
}

func newAsyncWriter(out io.Writer, queue int, dropped *metrics.Counter) *asyncWriter {
	w := &asyncWriter{out: out, lines: make(chan *[]byte, queue), dropped: dropped, done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues a copy of p (slog reuses its buffer after Write returns).
func (w *asyncWriter) Write(p []byte) (int, error) {
	buf, _ := w.free.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	*buf = append((*buf)[:0], p...)
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return len(p), nil
	}
	select {
	case w.lines <- buf:
	default:
		w.dropped.Inc()
		w.free.Put(buf)
	}
	return len(p), nil
}

// run writes queued lines, batching those already queued into one write: under load that is
// one write syscall per batch instead of one per request.
func (w *asyncWriter) run() {
	defer close(w.done)
	batch := make([]byte, 0, 64<<10)
	for line := range w.lines {
		batch = append(batch[:0], *line...)
		w.free.Put(line)
	drain:
		for len(batch) < 60<<10 {
			select {
			case more, ok := <-w.lines:
				if !ok {
					break drain
				}
				batch = append(batch, *more...)
				w.free.Put(more)
			default:
				break drain
			}
		}
		_, _ = w.out.Write(batch)
	}
}

// Close flushes queued lines and stops the writer goroutine.
func (w *asyncWriter) Close() {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		close(w.lines)
		w.mu.Unlock()
		<-w.done
	})
}
