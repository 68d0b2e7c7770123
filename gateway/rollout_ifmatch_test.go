package gateway

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
	"github.com/llmgate/llmgate/router/store"
)

// A rollout start or verb sent with If-Match commits only if the alias is still at that
// revision when its change commits. The If-Match check runs first, under the rollouts' lock,
// which a deploy or shadow change does not take: one of those landing after the check (here,
// inside it) must make the rollout's write a conflict, not a second winner of the same
// revision.
func TestRolloutIfMatchHoldsUntilTheCommit(t *testing.T) {
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Versions: []config.Version{
		{Version: "v1", Backends: []config.Backend{{URL: "http://127.0.0.1:9", Kind: "vllm", Model: "m"}}},
		{Version: "v2", Backends: []config.Backend{{URL: "http://127.0.0.2:9", Kind: "vllm", Model: "m"}}},
	}}}}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	revision := func() uint64 { return g.currentState().Model("chat").Revision }
	// checkThenOtherWriter is the admin API's If-Match check of rev, after which another
	// operator's shadow change commits.
	checkThenOtherWriter := func(rev uint64, percent float64) func() error {
		return func() error {
			if err := g.ifMatch("chat", rev)(); err != nil {
				return err
			}
			_, err := g.change(router.Change{Actor: "other", Time: time.Now().UTC()}, func(s *router.State, c router.Change) (*router.State, error) {
				return s.SetShadow(c, "chat", router.Shadow{Version: "v2", Percent: percent})
			})
			return err
		}
	}

	rev := revision()
	r := &rollout{Alias: "chat", Actor: "ops", Canary: "v2", Steps: []rolloutStep{{CanaryPercent: 10}, {CanaryPercent: 50}}}
	if err := g.rollouts.startIf(r, rev, checkThenOtherWriter(rev, 5)); !errors.Is(err, router.ErrConflict) {
		t.Fatalf("start with If-Match %d after another change: %v; want a conflict", rev, err)
	}
	if m := g.currentState().Model("chat"); m.Canary != "" || len(m.Rollout) != 0 {
		t.Fatalf("the refused start changed the split: canary %q, rollout %s", m.Canary, m.Rollout)
	}

	if err := g.rollouts.start(&rollout{Alias: "chat", Actor: "ops", Canary: "v2", Steps: r.Steps}); err != nil {
		t.Fatal(err)
	}
	rev = revision()
	if _, err := g.rollouts.verb("chat", "pause", "ops", rev, checkThenOtherWriter(rev, 7)); !errors.Is(err, router.ErrConflict) {
		t.Fatalf("pause with If-Match %d after another change: %v; want a conflict", rev, err)
	}
	if got := g.rollouts.get("chat").State; got != rolloutRunning {
		t.Fatalf("the refused pause left the rollout %s", got)
	}
}
