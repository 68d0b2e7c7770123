package gateway

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

func TestAppendLogTime(t *testing.T) {
	east := time.FixedZone("east", 5*3600+30*60)
	base := time.Date(2026, 11, 29, 13, 12, 39, 0, time.UTC)
	var times []time.Time
	for _, ns := range []int{0, 1, 10, 100_000, 123_456_789, 500_000_000, 999_999_999, 386_958_854} {
		for _, loc := range []*time.Location{time.UTC, east, time.Local} {
			times = append(times, base.Add(time.Duration(ns)).In(loc), base.Add(time.Second+time.Duration(ns)).In(loc))
		}
	}
	times = append(times, time.Now(), time.Now().Add(time.Hour), time.Date(999, 1, 1, 0, 0, 0, 5, time.UTC), time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, tm := range times {
		got, want := string(appendLogTime([]byte("x"), tm)), "x"+tm.Format(time.RFC3339Nano)
		if got != want {
			t.Errorf("appendLogTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

func TestAppendMillis(t *testing.T) {
	for _, d := range []time.Duration{0, 999, time.Microsecond, 1234567 * time.Nanosecond, 42 * time.Millisecond, 999999 * time.Microsecond,
		3*time.Hour + 7*time.Microsecond, -1500 * time.Microsecond, -time.Microsecond, 1<<62 + 12345} {
		got := string(appendMillis([]byte("x"), d))
		want := "x" + strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
		if got != want {
			t.Errorf("appendMillis(%v) = %q, want %q", d, got, want)
		}
	}
}
