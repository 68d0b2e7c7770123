package router

import (
	"errors"
	"testing"

	"github.com/llmgate/llmgate/config"
)

// A server that answers "model not found" for a version's model (its model removed, or it was
// restarted under another name) passes its health probe, so only those answers can take it out:
// after health.failure_threshold of them in a row it gets none of the model's requests until
// eject_for has passed, and a server serving other models too (an Ollama) keeps serving them.
func TestModelMissingTakesServerOutForThatModelOnly(t *testing.T) {
	clock := newFakeClock()
	pool := newTestPool(clock)
	lost := config.Backend{URL: "http://ollama:11434", Kind: config.KindOllama, Model: "llama3", Weight: 1}
	other := config.Backend{URL: "http://gpu2:8000", Kind: config.KindVLLM, Model: "llama3", Weight: 1}
	sameServer := config.Backend{URL: "http://ollama:11434", Kind: config.KindOllama, Model: "qwen", Weight: 1}
	cfg := &config.Config{Health: testHealth, Models: []config.Model{
		testModel("chat", "v1", testVersion("v1", lost, other)),
		testModel("code", "v1", testVersion("v1", sameServer)),
	}}
	tbl := mustTable(t, cfg, pool)
	chat, code := tbl.Model("chat").Stable, tbl.Model("code").Stable
	b := chat.Backends[0]
	picks := func(v *Version) map[*Backend]int {
		got := map[*Backend]int{}
		for range 200 {
			p, err := v.Pick(nil)
			if err != nil {
				t.Fatalf("Pick: %v", err)
			}
			got[p]++
			p.Acquire().Release()
		}
		return got
	}
	for i := range testHealth.FailureThreshold {
		hold := b.Acquire()
		d := hold.ReportModelMissing()
		hold.Release()
		if last := i == testHealth.FailureThreshold-1; (d > 0) != last {
			t.Fatalf("after %d model-not-found answers taken out for %v", i+1, d)
		}
	}
	if n := picks(chat)[b]; n != 0 {
		t.Errorf("the server without the model got %d of 200 picks", n)
	}
	if b.Healthy() || !chat.InService() {
		t.Errorf("Healthy() = %v, version InService() = %v; want false, true", b.Healthy(), chat.InService())
	}
	if _, err := code.Pick(nil); err != nil || !code.Backends[0].Healthy() {
		t.Errorf("the same server's other model: Pick error %v, healthy %v; want it served", err, code.Backends[0].Healthy())
	}
	// The same pair in a table built later (a deploy) is still out.
	if n := picks(mustTable(t, cfg, pool).Model("chat").Stable)[b]; n != 0 {
		t.Errorf("after a table swap the server without the model got %d of 200 picks", n)
	}

	clock.Advance(testHealth.EjectFor)
	if picks(chat)[b] == 0 {
		t.Fatal("the server got no request once eject_for had passed")
	}
	// Still without the model: out again at its first answer, for twice as long.
	hold := b.Acquire()
	if d := hold.ReportModelMissing(); d != 2*testHealth.EjectFor {
		t.Errorf("taken out again for %v, want %v", d, 2*testHealth.EjectFor)
	}
	hold.Release()
	if _, err := chat.Pick([]*Backend{chat.Backends[1]}); !errors.Is(err, ErrNoBackend) {
		t.Errorf("Pick with the other backend tried = %v, want ErrNoBackend", err)
	}
	clock.Advance(2 * testHealth.EjectFor)
	hold = b.Acquire()
	hold.ReportSuccess() // the model is back
	hold.Release()
	hold = b.Acquire()
	if d := hold.ReportModelMissing(); d != 0 {
		t.Errorf("one model-not-found after a success took it out for %v, want the threshold to count again", d)
	}
	hold.Release()
}
