package drift

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// benchSamples returns varied, realistic samples so buckets spread as in
// production rather than all hitting one counter.
func benchSamples(n int) []Sample {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]Sample, n)
	for i := range out {
		s := &out[i]
		s.Reset()
		s.PromptTokens = int64(rng.ExpFloat64() * 500)
		s.CompletionTokens = int64(rng.ExpFloat64() * 200)
		s.PromptBytes = s.PromptTokens * 4
		s.Latency = time.Duration(rng.ExpFloat64() * float64(2*time.Second))
		s.TTFT = time.Duration(rng.ExpFloat64() * float64(200*time.Millisecond))
		s.InterToken = time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond))
		s.Overhead = time.Duration(rng.ExpFloat64() * float64(80*time.Microsecond))
		s.FinishReason = FinishReason(1 + rng.IntN(2))
		s.Status = Status(rng.IntN(100) / 97 * 4)
		s.Cache = CacheResult(rng.IntN(3))
		if rng.IntN(20) == 0 {
			s.Entities = 1 << rng.IntN(5)
		}
		s.Script = ScriptLatin
		s.Stream = rng.IntN(2) == 0
	}
	return out
}

// BenchmarkObserve measures the request-path cost with 8 goroutines in
// parallel (for GOMAXPROCS up to 8), the clock read by the Recorder.
func BenchmarkObserve(b *testing.B) {
	r := NewRecorder(Options{})
	samples := benchSamples(1024)
	b.ReportAllocs()
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // 8 goroutines in all
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe(&samples[i&1023])
			i++
		}
	})
}

func BenchmarkObserveSerial(b *testing.B) {
	r := NewRecorder(Options{})
	samples := benchSamples(1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Observe(&samples[i&1023])
	}
}

// BenchmarkObserveAt is BenchmarkObserve with Sample.At set, as the gateway
// does: it already read the clock for the latency.
func BenchmarkObserveAt(b *testing.B) {
	r := NewRecorder(Options{})
	samples := benchSamples(1024)
	now := time.Now()
	for i := range samples {
		samples[i].At = now
	}
	b.ReportAllocs()
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe(&samples[i&1023])
			i++
		}
	})
}

func BenchmarkDetectScript(b *testing.B) {
	text := []byte("Пожалуйста, переведи этот текст на английский язык и сократи его до трёх предложений. " +
		"Please keep the names as they are.")
	b.ReportAllocs()
	for b.Loop() {
		DetectScript(text)
	}
}

func BenchmarkRefusalMatch(b *testing.B) {
	d := NewRefusalDetector(nil, 0)
	text := []byte("Sure! Here is a concise summary of the article you shared, in three bullet points: first, ...")
	b.ReportAllocs()
	for b.Loop() {
		d.Match(text)
	}
}

// BenchmarkReport is the periodic off-path cost per version: read the live
// window and the reference and run every feature's test.
func BenchmarkReport(b *testing.B) {
	r := NewRecorder(Options{})
	for _, s := range benchSamples(5000) {
		r.Observe(&s)
	}
	r.FreezeReference()
	for _, s := range benchSamples(800) {
		r.Observe(&s)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Report(nil)
	}
}
