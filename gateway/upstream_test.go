package gateway

import (
	"net"
	"testing"
	"time"
)

// scriptConn is a backend connection that answers reads from a script, one entry per Read, and
// records the read deadline each Read was given.
type scriptConn struct {
	net.Conn
	reads     []string
	deadlines []time.Time
	deadline  time.Time
}

func (c *scriptConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { c.deadline = t; return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

func (c *scriptConn) Read(p []byte) (int, error) {
	c.deadlines = append(c.deadlines, c.deadline)
	n := copy(p, c.reads[0])
	c.reads = c.reads[1:]
	return n, nil
}

// TestStreamConnFirstByteCoversPrefill: a stream's body must start within first_byte, and the
// idle timeout applies only from its first byte on. vLLM sends a stream's headers at once and
// its first event after the prefill: the wait between the two is first_byte's, not idle's.
func TestStreamConnFirstByteCoversPrefill(t *testing.T) {
	const headers = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	const event = "1a\r\ndata: {\"choices\":[]}\n\n\r\n"
	tests := []struct {
		name  string
		reads []string
		idle  []bool // per read: waited idle (true) or first_byte (false)
	}{
		{"headers, then the first event", []string{headers, event, event}, []bool{false, false, true}},
		{"headers and an event together", []string{headers + event, event}, []bool{false, true}},
		{"headers in pieces", []string{headers[:20], headers[20 : len(headers)-3], headers[len(headers)-3:], event, event}, []bool{false, false, false, false, true}},
		{"headers split after the last CR", []string{headers[:len(headers)-1], "\n" + event, event}, []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := &scriptConn{reads: tt.reads}
			// first_byte an hour and idle a millisecond: which one a deadline came from is plain.
			c := &streamConn{Conn: sc, firstByte: time.Hour, idle: time.Millisecond}
			for range 2 { // a second request on the kept-alive connection starts over
				sc.reads, sc.deadlines = tt.reads, nil
				if _, err := c.Write([]byte("POST / HTTP/1.1\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4096)
				for range tt.reads {
					if _, err := c.Read(buf); err != nil {
						t.Fatal(err)
					}
				}
				for i, d := range sc.deadlines {
					if idle := time.Until(d) < time.Minute; idle != tt.idle[i] {
						t.Errorf("read %d: deadline in %s; want idle %v", i, time.Until(d).Round(time.Second), tt.idle[i])
					}
				}
			}
		})
	}
}
