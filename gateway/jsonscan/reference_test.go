package jsonscan

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// The scanner before its SWAR rewrite (51f0131^), kept as the reference the fast one must
// agree with on every input, well-formed or not.

func refSkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func refSkipString(b []byte, i int) int {
	i++
	for {
		j := refIndexQuote(b, i)
		if j < 0 {
			return -1
		}
		i = j
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
}

func refIndexQuote(b []byte, i int) int {
	const ones, highs, quotes = 0x0101010101010101, 0x8080808080808080, 0x2222222222222222
	for end := min(len(b), i+32); i+8 <= end; i += 8 {
		y := binary.LittleEndian.Uint64(b[i:]) ^ quotes
		if z := (y - ones) &^ y & highs; z != 0 {
			return i + bits.TrailingZeros64(z)>>3
		}
	}
	if k := bytes.IndexByte(b[i:], '"'); k >= 0 {
		return i + k
	}
	return -1
}

func refSkipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return refSkipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = refSkipString(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return -1
				}
				return j
			}
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// checkAgainstReference compares skipSpace, skipString and skipValue with the reference at
// every start position of b.
func checkAgainstReference(t *testing.T, b []byte) {
	t.Helper()
	for i := 0; i <= len(b); i++ {
		if got, want := skipSpace(b, i), refSkipSpace(b, i); got != want {
			t.Fatalf("skipSpace(%q, %d) = %d, reference %d", b, i, got, want)
		}
		if i < len(b) && b[i] == '"' {
			if got, want := skipString(b, i), refSkipString(b, i); got != want {
				t.Fatalf("skipString(%q, %d) = %d, reference %d", b, i, got, want)
			}
		}
		if got, want := skipValue(b, i), refSkipValue(b, i); got != want {
			t.Fatalf("skipValue(%q, %d) = %d, reference %d", b, i, got, want)
		}
	}
}

// TestAgainstReference runs the comparison on random inputs over the bytes that matter
// (quotes, backslash runs, brackets, whitespace, bytes above 0x7f) at lengths around the
// 8-byte words and the 32-byte SWAR window.
func TestAgainstReference(t *testing.T) {
	alphabet := []byte("\"\\\\\\{}[],: \t\n\r\x00\x01\x1f\x7f\x80\xa2\xdc\xff\xfe\x22a0tn-.")
	r := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	b := make([]byte, 0, 96)
	for range n {
		b = b[:0]
		for range r.IntN(80) {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		checkAgainstReference(t, b)
		// A string with a backslash run before a quote, the run at every alignment.
		b = append(b[:0], '"')
		for range r.IntN(40) {
			b = append(b, 'x')
		}
		for range r.IntN(12) {
			b = append(b, '\\')
		}
		b = append(b, '"')
		for range r.IntN(10) {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		checkAgainstReference(t, b)
	}
}

func FuzzAgainstReference(f *testing.F) {
	for _, s := range []string{
		`{"model":"x","stream":true}`, `"abcdefg\\\\\\\"hij\\"`, `"0123456\\"`, `"0123456\"`, `"\\`,
		"\"\xff\xfe\xdc\xa2\"", `[1,"]",{"}":[]}]`, ` 12`, "\t\n\rnull", `"` + "\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\" + `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 512 {
			return
		}
		checkAgainstReference(t, b)
	})
}
