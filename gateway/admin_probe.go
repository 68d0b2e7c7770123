package gateway

// Probing a deploy's backends before the deploy is accepted.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/llmgate/llmgate/router"
)

var errProbe = errors.New("backend probe failed")

// probeDeploy vets a deploy before it is made: op must apply to the current state and build a
// table, and every backend of the new version must answer its health endpoint. It runs without
// the deploy lock; the change itself is applied (and checked again) afterwards.
func (g *Gateway) probeDeploy(c router.Change, op func(*router.State, router.Change) (*router.State, error), alias, version string) error {
	next, err := matchAny(alias, op)(g.currentState(), c)
	if err != nil {
		return err
	}
	t, err := router.NewTableFromState(next, g.cfg.Health, g.pool)
	if err != nil {
		return &router.FieldError{Field: "backends", Msg: err.Error(), Err: router.ErrInvalid}
	}
	return g.probeVersion(t, alias, version)
}

// maxProbes bounds the health probes of one deploy that run at once.
const maxProbes = 16

// probeVersion checks every backend of the new version answers its health endpoint, probing up
// to maxProbes at a time so a version of many silent backends costs a few health.timeouts, not
// one per backend. The error names the first backend (in deploy order) that failed.
func (g *Gateway) probeVersion(t *router.Table, alias, version string) error {
	m := t.Model(alias)
	if m == nil {
		return nil
	}
	var backends []*router.Backend
	for _, v := range m.Versions {
		if v.Name == version {
			backends = v.Backends
		}
	}
	clientOf := func(b *router.Backend) *http.Client {
		// b's connections are held to the rules of its requests: a name the deploy check
		// resolved inside admin.allow_backends may resolve elsewhere by the time it is probed.
		return &http.Client{Timeout: g.cfg.Health.Timeout, Transport: viaTransport{id: string(g.id), next: g.upstreams.transport(b)},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	errs := make([]error, len(backends))
	slots := make(chan struct{}, maxProbes)
	var wg sync.WaitGroup
	for i, b := range backends {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Health.Timeout)
			defer cancel()
			client := clientOf(b)
			if errs[i] = router.Probe(ctx, client, b); errs[i] == nil {
				errs[i] = router.CheckServes(ctx, client, b)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if se, ok := errors.AsType[*router.ProbeStatusError](err); ok && se.Status == http.StatusLoopDetected {
			return fmt.Errorf("%w: %s leads back to this gateway (it answered 508 Loop Detected to the gateway's own probe): its requests would loop", errProbe, backends[i].URL)
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v%s (llmgate admin deploy --no-probe, or ?probe=false, skips the check)", errProbe, backends[i].URL, err, router.URLHint(backends[i].URL))
		}
	}
	return nil
}
