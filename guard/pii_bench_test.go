package guard

import (
	"strconv"
	"strings"
	"testing"
)

// benchParagraphs are the kind of text chat prompts carry: prose, a list, numbers, code, logs.
var benchParagraphs = []string{
	"You are a helpful assistant. Summarize the following meeting notes for the engineering team and list the action items with their owners. Keep it under 200 words and use plain language.\n\n",
	"Notes: We reviewed the Q3 roadmap. Latency on the search API went from 120 ms to 85 ms after the cache change, and error rates stayed below 0.1% for 14 days. The team agreed to ship version 2.4 on March 15.\n",
	"- Maria will migrate the billing service to the new queue by Friday.\n- Ken will write the post-mortem for the outage on 2024-02-11 (about 43 minutes of downtime).\n- Priya owns the dashboard for p95 and p99 latency.\n\n",
	"```go\nfunc handler(w http.ResponseWriter, r *http.Request) {\n\tctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)\n\tdefer cancel()\n\tif err := process(ctx, r.Body); err != nil {\n\t\thttp.Error(w, err.Error(), 500)\n\t}\n}\n```\n",
	"Can you also explain why the retry loop above might double-charge a customer when the upstream returns a timeout? I think it's related to idempotency keys, but I'm not sure how they work in our payment flow.\n\n",
	"Log excerpt: [2024-03-15 14:22:05] worker-7 processed 1,204 jobs in 00:14:32; queue depth peaked at 318 and memory stayed at 512 MiB. Nothing else stood out in the logs from that afternoon.\n",
}

// benchEntities are the five values a "with entities" prompt carries.
var benchEntities = []string{
	" Contact me at maria.gonzalez@example.com if anything is unclear. ",
	" My phone is +1 415 555 0132 during the day. ",
	" The test card was 4111 1111 1111 1111 with any expiry. ",
	" Refunds go to DE89 3704 0044 0532 0130 00 as usual. ",
	" Our staging key is sk-proj-Xv7c1imwqSYt5dyqH2cqT3BlbkFJ6bmzOc1hik, rotate it later. ",
}

// benchText returns about size bytes of chat prompt with n (at most 5) PII values spread out.
func benchText(size, n int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		b.WriteString(benchParagraphs[i%len(benchParagraphs)])
	}
	text := b.String()[:size]
	if n == 0 {
		return text
	}
	// Replace whole paragraphs-worth of text at even spacing so the size stays put.
	out := []byte(text)
	for k := 0; k < n; k++ {
		e := benchEntities[k%len(benchEntities)]
		at := (k*2 + 1) * size / (2 * n)
		at = min(at, size-len(e))
		copy(out[at:], e)
	}
	return string(out)
}

func BenchmarkPIIFind(b *testing.B) {
	p := mustPII(b, PIIOptions{})
	for _, size := range []int{1 << 10, 4 << 10, 32 << 10} {
		for _, n := range []int{0, 5} {
			name := strconv.Itoa(size>>10) + "KiB/clean"
			if n > 0 {
				name = strconv.Itoa(size>>10) + "KiB/5entities"
			}
			text := []byte(benchText(size, n))
			b.Run(name, func(b *testing.B) {
				dst := make([]Finding, 0, 16)
				if got := len(p.Find(dst, text)); got != n {
					b.Fatalf("found %d entities, want %d", got, n)
				}
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				for b.Loop() {
					dst = p.Find(dst[:0], text)
				}
			})
		}
	}
}

func BenchmarkPIIRedact(b *testing.B) {
	p := mustPII(b, PIIOptions{Prompt: ActionRedact})
	for _, n := range []int{0, 5} {
		text := []byte(benchText(4<<10, n))
		b.Run("4KiB/"+strconv.Itoa(n)+"entities", func(b *testing.B) {
			v := &Vault{}
			dst := make([]byte, 0, 8<<10)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				v.Reset()
				dst, _ = p.Redact(dst[:0], text, Prompt, v)
			}
		})
	}
}

// BenchmarkLeakScanner feeds a 4 KiB completion in 16-byte deltas.
func BenchmarkLeakScanner(b *testing.B) {
	p := mustPII(b, PIIOptions{Completion: ActionRedact})
	for _, n := range []int{0, 5} {
		text := []byte(benchText(4<<10, n))
		b.Run("4KiB/"+strconv.Itoa(n)+"entities", func(b *testing.B) {
			v := &Vault{}
			var s LeakScanner
			dst := make([]byte, 0, 8<<10)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				v.Reset()
				s.Reset(p, v, 0)
				dst = dst[:0]
				for i := 0; i < len(text); i += 16 {
					dst = s.Write(dst, text[i:min(i+16, len(text))])
				}
				dst = s.Close(dst)
			}
		})
	}
}

// BenchmarkRestorer restores a 4 KiB completion with five placeholders in 16-byte deltas.
func BenchmarkRestorer(b *testing.B) {
	p := mustPII(b, PIIOptions{Prompt: ActionRedact})
	v := &Vault{}
	text, _ := p.Redact(nil, []byte(benchText(4<<10, 5)), Prompt, v)
	var r Restorer
	dst := make([]byte, 0, 8<<10)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(v)
		dst = dst[:0]
		for i := 0; i < len(text); i += 16 {
			dst = r.Write(dst, text[i:min(i+16, len(text))])
		}
		dst = r.Flush(dst)
	}
}
