package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/drift"
	"github.com/llmgate/llmgate/router"
	"github.com/llmgate/llmgate/router/store"
)

// deployState is the admin-managed deploy state: the config file seeds it on first start;
// afterwards the store is the truth. Every change goes one way (ARCHITECTURE.md, "State, config, deploys"):
// operation -> new routing table (a state that cannot serve is refused) -> durable commit ->
// swap the snapshot pointer -> acknowledge.
type deployState struct {
	mu    sync.Mutex // serialises changes
	store store.Store
	state *router.State // the last committed state; replaced, never modified
}

// openDeployState loads the deploy state (seeding it from cfg on first start), installs its
// table, and starts the rollout owner.
func (g *Gateway) openDeployState(cfg *config.Config, st store.Store) error {
	if st == nil {
		if dir := filepath.Dir(cfg.State.Path); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("state.path: %w", err)
			}
		}
		b, err := store.OpenBolt(cfg.State.Path)
		if err != nil {
			return fmt.Errorf("state.path %s: %w", cfg.State.Path, err)
		}
		st = b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := st.Load(ctx)
	switch {
	case errors.Is(err, store.ErrEmpty):
		if s, err = router.SeedState(cfg, time.Now().UTC()); err != nil {
			st.Close()
			return err
		}
		if err = st.Commit(ctx, 0, s); err != nil {
			st.Close()
			return fmt.Errorf("state: saving the seed: %w", err)
		}
	case err != nil:
		st.Close()
		return fmt.Errorf("state: %w", err)
	default:
		for _, d := range router.DiffConfig(s, cfg) {
			g.log.Warn("store differs from config; the store is the truth (admin changes win)", "difference", d)
		}
		warnRevokedKeyEnvs(g.log, s, adminKeyEnvs(cfg))
		warnDisallowedBackends(g.log, s, cfg, g.backendPolicy)
	}
	t, err := router.NewTableFromState(s, cfg.Health, g.pool)
	if err != nil {
		st.Close()
		return fmt.Errorf("state: %w", err)
	}
	g.deploy.store, g.deploy.state = st, s
	g.install(t)
	g.adminKeyEnvs = adminKeyEnvs(cfg)
	g.rollouts = &rollouts{byAlias: map[string]*rollout{}, actions: g, policy: drift.DefaultPolicy(), now: time.Now, log: g.log,
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
		stats: func(alias, version string) *versionStats {
			if g.stats == nil {
				return nil
			}
			return g.stats.get(alias, version)
		},
		stableOf: func(alias string) string {
			if m := g.Table().Model(alias); m != nil {
				return m.Stable.Name
			}
			return ""
		}}
	if g.stats != nil {
		g.rollouts.policy = g.stats.policy
	}
	for i := range s.Models {
		m := &s.Models[i]
		if len(m.Rollout) == 0 {
			continue
		}
		r, err := g.rollouts.restore(m.Alias, m.Rollout)
		switch {
		case err != nil:
			g.log.Error("rollout record unreadable; the rollout does not go on", "model", m.Alias, "err", err)
		case (r.State == rolloutRunning || r.State == rolloutPaused) && g.stats == nil:
			g.log.Error("rollout taken up after a restart, but drift.off leaves it no statistics to judge by: it holds its step; abort it or turn the statistics on",
				"model", m.Alias, "canary", r.Canary, "state", r.State, "step", r.Step+1, "steps", len(r.Steps))
		case r.State == rolloutRunning || r.State == rolloutPaused:
			g.log.Warn("rollout taken up after a restart; its step's evidence starts over", "model", m.Alias,
				"canary", r.Canary, "state", r.State, "step", r.Step+1, "steps", len(r.Steps))
		}
	}
	go g.rollouts.run(rolloutInterval)
	return nil
}

// rolloutInterval is how often running rollouts are analysed.
var rolloutInterval = time.Second

func (g *Gateway) closeDeploy() {
	if g.rollouts != nil {
		close(g.rollouts.stop)
		<-g.rollouts.done
	}
	if g.deploy.store != nil {
		_ = g.deploy.store.Close()
	}
}

// change applies op to the deploy state: the new state must build a table, then it is committed
// (durable before this returns) and served. It returns the new state, or the current one when op
// changes nothing (returns its input). Every change and every read of the state waits for the
// deploy lock, so only the commit may take time under it: deploy probes, which may take
// health.timeout, run before (probeDeploy).
func (g *Gateway) change(c router.Change, op func(*router.State, router.Change) (*router.State, error)) (*router.State, error) {
	return g.changeThen(c, op, nil)
}

// changeThen is change, with forget run once the new state is committed, before it is served
// and under the deploy lock: the clean-up of what the change removed (a deleted version's
// statistics, series and cached answers). Run after the lock, it could come after a deploy of
// the same name that the lock let in meanwhile, and drop the new version's statistics, which
// that deploy had found still there and taken over.
func (g *Gateway) changeThen(c router.Change, op func(*router.State, router.Change) (*router.State, error), forget func()) (*router.State, error) {
	g.deploy.mu.Lock()
	defer g.deploy.mu.Unlock()
	next, err := op(g.deploy.state, c)
	if err != nil {
		return nil, err
	}
	if next == g.deploy.state {
		return next, nil // a write that changes nothing: nothing to save or serve
	}
	t, err := router.NewTableFromState(next, g.cfg.Health, g.pool)
	if err != nil {
		return nil, &router.FieldError{Field: "backends", Msg: err.Error(), Err: router.ErrInvalid}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.deploy.store.Commit(ctx, g.deploy.state.Revision, next); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	g.deploy.state = next
	if forget != nil {
		forget()
	}
	g.install(t)
	return next, nil
}

// currentState returns the committed deploy state.
func (g *Gateway) currentState() *router.State {
	g.deploy.mu.Lock()
	defer g.deploy.mu.Unlock()
	return g.deploy.state
}

// onPromoted freezes the drift reference of a version that became stable, when its alias asks.
func (g *Gateway) onPromoted(alias, version string) {
	if g.stats == nil {
		return
	}
	ref := g.modelConfig[alias].Drift.Reference
	if ref != "" && ref != config.ReferenceOnPromote {
		return
	}
	if vs := g.stats.get(alias, version); vs != nil {
		frozen := vs.rec.FreezeReference()
		if min := g.stats.policy.MinSamples; frozen.Count() < min {
			// As a manual freeze says: every verdict stays insufficient until a new freeze.
			g.log.Warn("drift reference frozen at promote with too few requests", "model", alias, "version", version,
				"requests", frozen.Count(), "min_samples", min)
		}
	}
}

// The rollout controller's actions (rolloutActions).

func (g *Gateway) setCanaryPercent(alias, canary string, percent int, actor, reason string, rec *json.RawMessage, ifMatch uint64) error {
	c := rolloutChange(actor, reason, rec)
	c.IfMatch = ifMatch
	_, err := g.change(c, func(s *router.State, c router.Change) (*router.State, error) {
		m := s.Model(alias)
		if m == nil {
			return nil, router.ErrUnknownModel
		}
		t := m.Traffic()
		t.Canary, t.CanaryPercent = canary, float64(percent)
		if t.Sticky == "" || t.Sticky == "none" {
			// Stored states spell "no sticky key" as "none": without this a rollout would
			// split every request at random and move users between versions as it goes.
			t.Sticky = "user"
		}
		return s.SetTraffic(c, alias, t)
	})
	return err
}

func (g *Gateway) promote(alias, actor, reason string, rec *json.RawMessage) error {
	next, err := g.change(rolloutChange(actor, reason, rec), func(s *router.State, c router.Change) (*router.State, error) {
		next, err := s.Promote(c, alias)
		if err == nil {
			unsetRolloutSticky(s, next, alias, rec)
		}
		return next, err
	})
	if err == nil {
		g.onPromoted(alias, next.Model(alias).Stable)
		g.log.Info("model promoted", "model", alias, "stable", next.Model(alias).Stable, "actor", actor, "reason", reason)
	}
	return err
}

// rollback sends all of alias's traffic back to its stable. It only ever clears the canary:
// when there is none (nothing to roll back), it changes only the rollout's record, where a bare
// Rollback would restore the previous stable and undo an earlier, healthy promote.
func (g *Gateway) rollback(alias, actor, reason string, rec *json.RawMessage, ifMatch uint64) error {
	c := rolloutChange(actor, reason, rec)
	c.IfMatch = ifMatch
	_, err := g.change(c, func(s *router.State, c router.Change) (*router.State, error) {
		if m := s.Model(alias); m != nil && m.Canary == "" {
			if c.Rollout != nil {
				return s.RecordRollout(c, alias, "", "")
			}
			return nil, errNoCanary
		}
		next, err := s.Rollback(c, alias, "")
		if err == nil {
			unsetRolloutSticky(s, next, alias, rec)
		}
		return next, err
	})
	if errors.Is(err, errNoCanary) {
		return nil
	}
	if err == nil {
		g.log.Warn("model rolled back", "model", alias, "actor", actor, "reason", reason)
		if g.stats != nil { // the webhook lives with the statistics
			g.stats.hook.send(map[string]any{"event": "rollback", "model": alias, "actor": actor, "reason": reason, "time": time.Now().UTC()})
		}
	}
	return err
}

var errNoCanary = errors.New("no canary to roll back")

// unsetRolloutSticky edits next, the state a rollout's promote or rollback made of prev: when
// the rollout's record rec says the rollout set the split's sticky key (rollout.StickySet), it
// goes back to none in the same change, as the canary is gone and the key was the rollout's,
// not the operator's. A key the operator chose stays for the next canary.
func unsetRolloutSticky(prev, next *router.State, alias string, rec *json.RawMessage) {
	if next == prev || rec == nil {
		return // no change of its own to edit: prev is the state served
	}
	var r struct {
		StickySet bool `json:"sticky_set"`
	}
	if json.Unmarshal(*rec, &r) != nil || !r.StickySet {
		return
	}
	if m := next.Model(alias); m != nil && m.Canary == "" {
		m.Sticky = router.Sticky{}.String() // next's own copy: State.edit clones the model it changes
	}
}

// rolloutChange is the change a rollout action makes: by actor, now, for reason, committing
// the rollout's record rec with it.
func rolloutChange(actor, reason string, rec *json.RawMessage) router.Change {
	return router.Change{Actor: actor, Time: time.Now().UTC(), Reason: clipReason(reason), Rollout: rec}
}

func (g *Gateway) recordRollout(alias, actor, reason, from, to string, rec *json.RawMessage, ifMatch uint64) error {
	c := rolloutChange(actor, reason, rec)
	c.IfMatch = ifMatch
	_, err := g.change(c, func(s *router.State, c router.Change) (*router.State, error) {
		return s.RecordRollout(c, alias, from, to)
	})
	return err
}

// maxReason is the longest reason a change may record (router's limit): an automatic rollback
// with many failed checks must still be recorded, not refused and retried at every tick.
const maxReason = 1024

// clipReason shortens s to maxReason bytes on a UTF-8 boundary.
func clipReason(s string) string {
	if len(s) <= maxReason {
		return s
	}
	s = s[:maxReason-len("…")]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// warnRevokedKeyEnvs warns about each stored backend whose api_key_env the config no longer
// allows (see adminKeyEnvs): an admin deploy named it while it was allowed. The store is the
// truth, so the backend keeps its key; the operator who took the variable off the list is told
// which versions still send it.
func warnRevokedKeyEnvs(log *slog.Logger, s *router.State, allowed map[string]bool) {
	for _, m := range s.Models {
		for _, v := range m.Versions {
			for _, b := range v.Backends {
				if b.APIKeyEnv != "" && !allowed[b.APIKeyEnv] {
					log.Warn("a stored backend names an api_key_env that the config no longer allows; its value is still sent to it: "+
						"list the variable in admin.api_key_envs again, or remove the version",
						"model", m.Alias, "version", v.Name, "backend", b.URL, "api_key_env", b.APIKeyEnv)
				}
			}
		}
	}
}

// warnDisallowedBackends warns about each stored backend that an admin deploy added while
// admin.allow_backends allowed it and that the config's list no longer allows. The store is the
// truth, so the version stays, but every connection to the backend is held to the list (see
// backendPolicy.dial) and refused: the operator who narrowed the list learns which versions no
// longer serve. The config file's backends are trusted as the operator wrote them, so they are
// not checked.
func warnDisallowedBackends(log *slog.Logger, s *router.State, cfg *config.Config, policy *backendPolicy) {
	if len(cfg.Admin.AllowBackends) == 0 {
		return
	}
	fromConfig := configBackendURLs(cfg)
	refused := map[string]error{} // by URL: each is resolved once
	for _, m := range s.Models {
		for _, v := range m.Versions {
			for _, b := range v.Backends {
				if fromConfig[router.CanonicalURL(b.URL)] {
					continue
				}
				err, seen := refused[b.URL]
				if !seen {
					err = policy.check(b.URL)
					refused[b.URL] = err
				}
				if err != nil {
					log.Warn("a stored backend is outside admin.allow_backends; the gateway refuses to connect to it, "+
						"so it serves nothing: allow it again, or remove or redeploy the version",
						"model", m.Alias, "version", v.Name, "backend", b.URL, "reason", err.Error())
				}
			}
		}
	}
}

// configBackendURLs are the URLs (router.CanonicalURL) of the config file's backends: the
// operator's own, which admin.allow_backends does not bind.
func configBackendURLs(cfg *config.Config) map[string]bool {
	urls := map[string]bool{}
	for _, m := range cfg.Models {
		for _, v := range m.Versions {
			for _, b := range v.Backends {
				urls[router.CanonicalURL(b.URL)] = true
			}
		}
	}
	return urls
}

// adminKeyEnvs are the environment variables an admin deploy may name as a backend's
// api_key_env: those the config's backends name, and admin.api_key_envs. The gateway sends the
// variable's value to the backend URL the deploy chose, so any other variable (an admin token,
// cloud credentials) must not be reachable that way.
func adminKeyEnvs(cfg *config.Config) map[string]bool {
	envs := map[string]bool{}
	for _, m := range cfg.Models {
		for _, v := range m.Versions {
			for _, b := range v.Backends {
				if b.APIKeyEnv != "" {
					envs[b.APIKeyEnv] = true
				}
			}
		}
	}
	for _, e := range cfg.Admin.APIKeyEnvs {
		envs[e] = true
	}
	return envs
}
