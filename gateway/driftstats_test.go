package gateway

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/drift"
)

// A drift score whose statistic becomes undefined (the live window empties) leaves /metrics,
// as it was before the first score: it neither keeps its last value, which would show a drift
// that nothing measures any more, nor turns NaN, which would make sums and averages over the
// series NaN. The verdict series stays, at 0.
func TestDriftScoreLeavesMetricsWhenUndefined(t *testing.T) {
	set := metrics.NewSet()
	s := newStatsRegistry(config.Default(), set, slog.New(slog.DiscardHandler))
	now := time.Unix(1_700_000_000, 0)
	vs := s.forVersion("chat", "v1", config.ModelDrift{Window: 15 * time.Minute, Reference: config.ReferenceManual})
	vs.rec = drift.NewRecorder(drift.Options{Window: vs.opts.Window, Slice: vs.opts.Slice, Now: func() time.Time { return now }})
	observe := func(n int, bytes func(i int) int64) {
		for i := range n {
			var smp drift.Sample
			smp.Reset()
			smp.PromptBytes = bytes(i)
			vs.observe(&smp)
		}
	}
	scrape := func() string {
		var b bytes.Buffer
		set.WritePrometheus(&b)
		return b.String()
	}
	const score = `llmgate_drift_score{model="chat",version="v1",feature="prompt_bytes",`
	const detected = `llmgate_drift_detected{model="chat",version="v1",feature="prompt_bytes"} `

	observe(300, func(i int) int64 { return int64(100 + i%100) })
	vs.rec.FreezeReference()
	now = now.Add(time.Minute)
	observe(300, func(i int) int64 { return int64(400 + i%100) })
	s.evaluate()
	if text := scrape(); !strings.Contains(text, score) || !strings.Contains(text, detected+"1") {
		t.Fatalf("after drifted traffic, /metrics has no prompt_bytes score or no drift verdict:\n%s", text)
	}

	now = now.Add(time.Hour) // the live window empties; the frozen reference stays
	s.evaluate()
	text := scrape()
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, score) {
			t.Errorf("with an empty live window, /metrics still reports %s", line)
		}
	}
	if !strings.Contains(text, detected+"0") {
		t.Errorf("with an empty live window, want %s0:\n%s", detected, text)
	}

	now = now.Add(time.Minute) // traffic again: the score is back
	observe(300, func(i int) int64 { return int64(400 + i%100) })
	s.evaluate()
	if text := scrape(); !strings.Contains(text, score) || !strings.Contains(text, detected+"1") {
		t.Errorf("after traffic again, /metrics has no prompt_bytes score or no drift verdict:\n%s", text)
	}
}
