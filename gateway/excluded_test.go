package gateway

import (
	"testing"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
)

// A request with n above 1 that a canary with several Ollama backends hands to stable
// excludes fewer backends on stable: the canary's backends past the shorter list must not stay
// in the pooled request, which would keep a routing table a deploy replaced alive.
func TestExcludedKeepsNoBackendPastItsEnd(t *testing.T) {
	be := func(kind string) *router.Backend { return &router.Backend{Kind: kind} }
	canary := &router.Version{Backends: []*router.Backend{be(config.KindVLLM), be(config.KindOllama), be(config.KindOllama), be(config.KindOllama)}}
	stable := &router.Version{Backends: []*router.Backend{be(config.KindVLLM)}}
	r := acquireRequest(nil)
	r.notOllama = "n"
	r.version = canary
	r.tried[0], r.attempts = canary.Backends[0], 1
	if got := len(r.excluded()); got != 4 {
		t.Fatalf("on the canary: %d excluded, want 4", got)
	}
	r.version = stable
	if got := len(r.excluded()); got != 1 {
		t.Fatalf("on stable: %d excluded, want 1", got)
	}
	skip := r.skip
	releaseRequest(r)
	for i, b := range skip[:cap(skip)] {
		if b != nil {
			t.Errorf("the pooled request's skip[%d] still holds a backend", i)
		}
	}
}
