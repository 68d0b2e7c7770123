package guard

import (
	"runtime"
	"strconv"
	"testing"
)

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

// BenchmarkGuardWarm is BenchmarkGuard/{1,4}KiB/clean as the running gateway sees it: between
// two prompts a request's networking (kernel socket buffers, fasthttp's buffers), its JSON
// decoding and the backend's response touch about a megabyte of other memory, which evicts
// the guard's tables from the core's L2 (512 KiB here) but not from L3 (32 MiB), so a scan
// finds its tables in L3. 1.25 MiB, written with a stride of a cache line, is that: more than
// twice L2, so nothing of the last prompt's scan is left there, and far less than L3. In the
// gateway (perf of llmgate serve under closed-loop load) the walk costs about 8 us per 1 KiB
// prompt, against about 1 us in BenchmarkGuard's hot loop and 60 us in BenchmarkGuardCold,
// which evicts L3 too; this benchmark is what a change to the size of the tables shows in.
// On a shared machine, cpu-ns/op (the thread's CPU time in Check and Redact, on Linux) is
// steadier than ns/op, which counts the time other processes took the core.
func BenchmarkGuardWarm(b *testing.B) {
	p, s := benchGuard(b)
	evict := make([]byte, 5<<18) // 1.25 MiB
	for _, size := range []int{1 << 10, 4 << 10} {
		text := []byte(benchText(size, 0))
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			runtime.LockOSThread() // threadCPU is this goroutine's
			defer runtime.UnlockOSThread()
			v := AcquireVault()
			defer ReleaseVault(v)
			out := make([]byte, 0, 2*len(text))
			ms := make([]SafetyMatch, 0, 8)
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			cpu := int64(0)
			for b.Loop() {
				b.StopTimer()
				for i := 0; i < len(evict); i += 64 {
					evict[i]++
				}
				b.StartTimer()
				t0 := threadCPU()
				v.Reset()
				ms = s.Check(ms[:0], text)
				out, _ = p.Redact(out[:0], text, Prompt, v)
				cpu += threadCPU() - t0
			}
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
