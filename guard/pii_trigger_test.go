package guard

import (
	"encoding/binary"
	"testing"
)

// TestTrigger8 checks the eight-byte trigger test of the PII scan against the trigger
// table: every trigger byte is flagged and no other, in every position, whatever its
// neighbours.
func TestTrigger8(t *testing.T) {
	for pos := range 8 {
		for _, fill := range []byte{0, ' ', 'a', 'Z', '9', 0x7f, 0x80, 0xff} {
			for c := range 256 {
				var b [8]byte
				for k := range b {
					b[k] = fill
				}
				b[pos] = byte(c)
				m := trigger8(binary.LittleEndian.Uint64(b[:]))
				for k := range b {
					flagged := m>>(8*k+7)&1 != 0
					if trig[b[k]] != 0 && !flagged {
						t.Fatalf("%q: trigger byte %d not flagged", b, k)
					}
					if flagged && trig[b[k]] == 0 {
						t.Fatalf("%q: byte %d (%#x) flagged", b, k, b[k])
					}
				}
			}
		}
	}
}
