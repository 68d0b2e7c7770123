package guard

import (
	"encoding/binary"
	"strings"
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

// TestSkipClean checks skipClean against a byte loop over the trigger table: from every start
// and up to every end in texts with triggers sparse and dense, it stops at the first word of
// eight bytes holding a trigger, with that word's flags, or where eight bytes no longer fit.
func TestSkipClean(t *testing.T) {
	texts := []string{
		"", "a", "abcdefgh", "abcdefg-", "-bcdefgh", strings.Repeat("plain words ", 9) + "9",
		benchText(300, 0), benchText(300, 5), "\x80\xff\xc3\xa9 caf\xc3\xa9 A J _ @ : 0 9 . /",
	}
	for _, text := range texts {
		b := []byte(text)
		for n := 0; n <= len(b); n++ {
			for i := 0; i <= n; i++ {
				want, wantM := i, uint64(0)
				for ; want+8 <= n; want += 8 {
					for k := want; k < want+8; k++ {
						if trig[b[k]] != 0 {
							wantM |= 0x80 << (8 * (k - want))
						}
					}
					if wantM != 0 {
						break
					}
				}
				if got, m := skipClean(b, i, n); got != want || m != wantM {
					t.Fatalf("skipClean(%q, %d, %d) = %d, %#x; want %d, %#x", b, i, n, got, m, want, wantM)
				}
			}
		}
	}
}
