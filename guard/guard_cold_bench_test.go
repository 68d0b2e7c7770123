package guard

import "testing"

// BenchmarkGuardCold is BenchmarkGuard/1KiB/clean with the CPU caches flushed before each
// prompt: what a request pays on a gateway at a low request rate, where other processes run
// between requests and evict the guard's tables. The size of the tables matters here far
// more than in the hot loop of BenchmarkGuard.
func BenchmarkGuardCold(b *testing.B) {
	p, s := benchGuard(b)
	text := []byte(benchText(1<<10, 0))
	// Larger than this machine's L2 and L3 together (2 MiB + 32 MiB), walked with a stride
	// of a cache line.
	evict := make([]byte, 48<<20)
	v := AcquireVault()
	defer ReleaseVault(v)
	out := make([]byte, 0, 2*len(text))
	ms := make([]SafetyMatch, 0, 8)
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < len(evict); i += 64 {
			evict[i]++
		}
		b.StartTimer()
		v.Reset()
		ms = s.Check(ms[:0], text)
		out, _ = p.Redact(out[:0], text, Prompt, v)
	}
}
