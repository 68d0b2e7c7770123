package guard

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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
//
// The texts are BenchmarkGuard's chat text and the word salad of bench/load, which the
// gateway's load tests send: common words, nearly all of them tokens of the patterns, so
// that the walk looks up a pair of tokens at nearly every word, as it did in the gateway's
// profile. ns/op is the mean time of the scans alone; med-ns/op and cpu-ns/op (the thread's
// CPU time, on Linux) are medians, which on a shared machine leave out the scans that other
// processes interrupted.
func BenchmarkGuardWarm(b *testing.B) {
	p, s := benchGuard(b)
	evict := make([]byte, 5<<18) // 1.25 MiB
	for _, size := range []int{1 << 10, 4 << 10} {
		for _, kind := range []string{"chat", "salad"} {
			text := []byte(benchText(size, 0))
			if kind == "salad" {
				text = []byte(wordSalad(size))
			}
			b.Run(strconv.Itoa(size>>10)+"KiB/"+kind, func(b *testing.B) {
				runtime.LockOSThread() // threadCPU is this goroutine's
				defer runtime.UnlockOSThread()
				v := AcquireVault()
				defer ReleaseVault(v)
				out := make([]byte, 0, 2*len(text))
				ms := make([]SafetyMatch, 0, 8)
				var wall, cpu []int64
				for b.Loop() {
					for i := 0; i < len(evict); i += 64 {
						evict[i]++
					}
					t0, c0 := time.Now(), threadCPU()
					v.Reset()
					ms = s.Check(ms[:0], text)
					out, _ = p.Redact(out[:0], text, Prompt, v)
					cpu = append(cpu, threadCPU()-c0)
					wall = append(wall, int64(time.Since(t0)))
				}
				if len(ms) != 0 {
					b.Fatalf("benchmark text trips the safety rules: %+v", ms)
				}
				total := int64(0)
				for _, t := range wall {
					total += t
				}
				b.ReportMetric(float64(total)/float64(len(wall)), "ns/op")
				b.ReportMetric(median(wall), "med-ns/op")
				b.ReportMetric(median(cpu), "cpu-ns/op")
			})
		}
	}
}

func median(x []int64) float64 {
	slices.Sort(x)
	return float64(x[len(x)/2])
}

// saladWords are the words of bench/load's word salad (fillerWords in workload.go).
var saladWords = strings.Fields(`the of and to in is was that for on with as by at from this
an be are or which have has one had not but what all were when we there can more if no so about
into than them some could time these two may then do first any my now such like our over man
me even most made after also did many before must through back years where much your way well
down should because each just those people how too little state good very make world still own
see men work long get here between both life being under never day same another know while last
might us great old year off come since against go came right used take three model river cloud`)

// wordSalad returns n bytes of words drawn from saladWords, a sentence ending after one in
// sixteen, as bench/load's generated prompts are.
func wordSalad(n int) string {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(saladWords[r.IntN(len(saladWords))])
		if r.IntN(16) == 0 {
			b.WriteString(". ")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()[:n]
}
