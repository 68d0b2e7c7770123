package gateway

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

var stderr io.Writer = os.Stderr

// logFlushEvery bounds how long a log line waits before it is written.
const logFlushEvery = 100 * time.Millisecond

// logBufferStart is the initial capacity of the log buffers.
const logBufferStart = 64 << 10

// asyncWriter collects log lines in memory and writes them from one goroutine in batches, so a
// request never waits on a terminal or disk and a busy gateway makes one write syscall per
// batch, not one per request (nor a goroutine wake-up per request). When the buffer is full,
// lines are dropped and counted rather than blocking.
type asyncWriter struct {
	out     io.Writer
	limit   int // bytes buffered before lines are dropped
	dropped *metrics.Counter

	mu     sync.Mutex
	buf    []byte // lines waiting to be written
	spare  []byte // the flusher's buffer; touched only by the flusher
	closed bool

	kick chan struct{} // wakes the flusher early when the buffer is half full
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newAsyncWriter(out io.Writer, limit int, dropped *metrics.Counter) *asyncWriter {
	w := &asyncWriter{
		out: out, limit: limit, dropped: dropped,
		// The buffers start small and grow with the traffic (to at most limit): a quiet
		// gateway should not hold megabytes for lines it never writes.
		buf: make([]byte, 0, min(limit, logBufferStart)), spare: make([]byte, 0, min(limit, logBufferStart)),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go w.run()
	return w
}

// Write queues a copy of p. It never blocks on the output.
func (w *asyncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	switch {
	case w.closed:
	case len(w.buf)+len(p) > w.limit:
		w.dropped.Inc()
	default:
		w.buf = append(w.buf, p...)
		if len(w.buf) >= w.limit/2 {
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
	}
	w.mu.Unlock()
	return len(p), nil
}

func (w *asyncWriter) run() {
	defer close(w.done)
	tick := time.NewTicker(logFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			w.flush()
			return
		case <-tick.C:
		case <-w.kick:
		}
		w.flush()
	}
}

func (w *asyncWriter) flush() {
	w.mu.Lock()
	w.buf, w.spare = w.spare[:0], w.buf
	w.mu.Unlock()
	if len(w.spare) > 0 {
		_, _ = w.out.Write(w.spare)
	}
}

// Close writes what is queued and stops the flusher; later writes are discarded.
func (w *asyncWriter) Close() {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
		<-w.done
	})
}

// logSecond is the part of a log line's time that changes once a second: the date and time to
// the second, and the zone, as time.RFC3339Nano writes them.
type logSecond struct {
	unix   int64
	loc    *time.Location
	prefix string // "2006-01-02T15:04:05"
	zone   string // "Z" or "-07:00"
}

// The seconds whose year has four digits whatever the zone: the shape appendLogTime caches.
var (
	logTimeMin = time.Date(1001, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	logTimeMax = time.Date(9998, 12, 31, 0, 0, 0, 0, time.UTC).Unix()
)

// lastLogSecond is the logSecond of the latest line. Formatting the whole time for every
// request cost about 0.1 us of each line; now only the fraction is written per line.
var lastLogSecond atomic.Pointer[logSecond]

// appendLogTime appends t as t.AppendFormat(dst, time.RFC3339Nano) does.
func appendLogTime(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if sec < logTimeMin || sec > logTimeMax { // years that are not four digits in every zone
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	s := lastLogSecond.Load()
	if s == nil || s.unix != sec || s.loc != t.Location() {
		whole := t.Truncate(time.Second).AppendFormat(nil, time.RFC3339Nano) // no fraction
		s = &logSecond{unix: sec, loc: t.Location(), prefix: string(whole[:19]), zone: string(whole[19:])}
		lastLogSecond.Store(s)
	}
	dst = append(dst, s.prefix...)
	if ns := t.Nanosecond(); ns != 0 {
		// ".999999999": nine digits, trailing zeros dropped.
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := len(frac)
		for frac[n-1] == '0' {
			n--
		}
		dst = append(dst, frac[:n]...)
	}
	return append(dst, s.zone...)
}
