package guard

import (
	"strconv"
	"testing"
)

// BenchmarkGuard is what the gateway runs on a prompt with the guard fully on: the safety rules,
// then PII redaction into a request vault. Prompts are realistic chat text of 1, 4 and 32 KiB,
// clean and with 5 PII values.
func BenchmarkGuard(b *testing.B) {
	p, s := benchGuard(b)
	for _, size := range []int{1 << 10, 4 << 10, 32 << 10} {
		for _, n := range []int{0, 5} {
			name := strconv.Itoa(size>>10) + "KiB/clean"
			if n > 0 {
				name = strconv.Itoa(size>>10) + "KiB/5entities"
			}
			text := []byte(benchText(size, n))
			b.Run(name, func(b *testing.B) {
				v := AcquireVault()
				defer ReleaseVault(v)
				out := make([]byte, 0, 2*len(text))
				ms := make([]SafetyMatch, 0, 8)
				b.ReportAllocs()
				b.SetBytes(int64(len(text)))
				for b.Loop() {
					v.Reset()
					ms = s.Check(ms[:0], text)
					out, _ = p.Redact(out[:0], text, Prompt, v)
				}
				if len(ms) != 0 {
					b.Fatalf("benchmark text trips the safety rules: %+v", ms)
				}
			})
		}
	}
}

// benchGuard returns the guard the gateway runs with everything on: PII redaction both ways and
// the built-in safety rules.
func benchGuard(b *testing.B) (*PII, *Safety) {
	p, err := NewPII(PIIOptions{Prompt: ActionRedact, Completion: ActionRedact})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewSafety(SafetyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return p, s
}
