// Package router decides which backend serves a request: model alias -> version (pins, canary
// split, sticky hash) -> backend (least-loaded, health, ejection). A Table is an immutable
// snapshot built from config or from the deploy State; backend load and health live in a Pool
// that outlives tables. The deploy State and its operations (deploy, traffic, shadow, promote,
// rollback) are pure values here; router/store makes them durable.
package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/llmgate/llmgate/config"
)

// Sentinel errors returned by Resolve and Pick.
var (
	ErrUnknownModel   = errors.New("router: unknown model")
	ErrUnknownVersion = errors.New("router: unknown model version")
	ErrNoBackend      = errors.New("router: no healthy backend")
)

// Table is an immutable routing snapshot. It is safe for concurrent use.
type Table struct {
	models   map[string]*Model
	aliases  []string // sorted
	backends []*Backend
	revision uint64 // of the State it was built from; 0 when built from config
}

// Model is one public alias.
type Model struct {
	Alias    string
	Stable   *Version
	Versions []*Version // in config (or deploy) order
	// Canary, when not nil, serves CanaryPercent of the unpinned requests; Sticky says which
	// request key keeps a user on one side (see ResolveSticky).
	Canary        *Version
	CanaryPercent float64
	Sticky        Sticky
	// Shadow, when not nil, receives a copy of ShadowPercent of the requests (see DrawShadow).
	Shadow        *Version
	ShadowPercent float64

	byName   map[string]*Version
	canaryBP uint64 // CanaryPercent in basis points, compared with a bucket in [0, 10000)
	shadowBP uint64
	salt     uint64 // hash state after the alias and canary names, see bucket
}

// Version is one model version and its pool of backends.
type Version struct {
	Alias     string
	Name      string
	Backends  []*Backend
	weightSum int
	model     *Model
	now       func() time.Time // the Pool's clock
}

// NewTable builds a table from a validated config. API keys are read from the environment now,
// so a missing variable fails the build instead of a request.
func NewTable(cfg *config.Config, pool *Pool) (*Table, error) {
	models := make([]ModelState, len(cfg.Models))
	for i, mc := range cfg.Models {
		models[i] = modelFromConfig(mc)
	}
	return buildTable(models, 0, cfg.Health, pool)
}

// NewTableFromState builds a table from a deploy state, with the canary split, sticky mode and
// shadow it records. As with NewTable, API keys are read from the environment now: build the
// table of a new state before committing it, so a state that cannot serve is never stored.
func NewTableFromState(s *State, hc config.HealthCheck, pool *Pool) (*Table, error) {
	return buildTable(s.Models, s.Revision, hc, pool)
}

// Revision returns the revision of the State the table was built from, 0 for a config.
func (t *Table) Revision() uint64 { return t.revision }

// buildTable is NewTable and NewTableFromState: both describe models the same way, so both
// build backends, health sharing and indexes the same way.
func buildTable(models []ModelState, rev uint64, hc config.HealthCheck, pool *Pool) (*Table, error) {
	t := &Table{models: make(map[string]*Model, len(models)), revision: rev}
	for _, ms := range models {
		if t.models[ms.Alias] != nil {
			return nil, fmt.Errorf("model %q: duplicate alias", ms.Alias)
		}
		m := &Model{Alias: ms.Alias, byName: make(map[string]*Version, len(ms.Versions))}
		for _, vs := range ms.Versions {
			v := &Version{Alias: ms.Alias, Name: vs.Name, model: m, now: pool.now}
			for _, bs := range vs.Backends {
				b, err := newBackend(bs.config(), hc, pool)
				if err != nil {
					return nil, fmt.Errorf("model %q version %q: %w", ms.Alias, vs.Name, err)
				}
				b.Index, b.Alias, b.Version = len(t.backends), ms.Alias, vs.Name
				t.backends = append(t.backends, b)
				v.Backends = append(v.Backends, b)
				v.weightSum += b.Weight
			}
			m.Versions = append(m.Versions, v)
			m.byName[v.Name] = v
		}
		m.Stable = m.byName[ms.Stable]
		if m.Stable == nil {
			return nil, fmt.Errorf("model %q: stable version %q not found", ms.Alias, ms.Stable)
		}
		if err := m.setSplit(ms); err != nil {
			return nil, fmt.Errorf("model %q: %w", ms.Alias, err)
		}
		t.models[m.Alias] = m
		t.aliases = append(t.aliases, m.Alias)
	}
	sort.Strings(t.aliases)
	return t, nil
}

// CanonicalURL returns the URL that a Backend built from raw has (Backend.URL): without a
// trailing slash or an empty port; raw itself when it does not parse.
func CanonicalURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return canonicalURL(u)
}

func canonicalURL(u *url.URL) string {
	return strings.TrimSuffix(u.Scheme+"://"+strings.TrimSuffix(u.Host, ":")+u.Path, "/")
}

func newBackend(bc config.Backend, hc config.HealthCheck, pool *Pool) (*Backend, error) {
	u, err := url.Parse(bc.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("backend url %q: want http(s)://host[:port]", bc.URL)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	// JoinHostPort, not u.Host+":80": it brackets IPv6 literals and copes with "http://h:/".
	addr := net.JoinHostPort(u.Hostname(), port)
	b := &Backend{
		URL:       canonicalURL(u),
		Addr:      addr,
		TLS:       u.Scheme == "https",
		Kind:      bc.Kind,
		Model:     bc.Model,
		Weight:    bc.Weight,
		path:      strings.TrimSuffix(u.Path, "/"),
		health:    pool.get(u.Scheme + "://" + addr),
		served:    pool.served(servedKey(u.Scheme+"://"+addr, strings.TrimSuffix(u.Path, "/"), bc.Model)),
		threshold: max(hc.FailureThreshold, 1),
		ejectBase: max(hc.EjectFor, time.Second),
		now:       pool.now,
	}
	if b.Kind == "" {
		b.Kind = config.KindOpenAI
	}
	if bc.APIKeyEnv != "" {
		b.APIKey = os.Getenv(bc.APIKeyEnv)
		if b.APIKey == "" {
			return nil, fmt.Errorf("backend %s: environment variable %s is empty", bc.URL, bc.APIKeyEnv)
		}
	}
	return b, nil
}

// Resolve maps the request's model field and optional version pin (header x-llmgate-version)
// to a version. The model may carry a pin itself as "alias@version". With no pin the stable
// version serves; ResolveSticky also applies the canary split.
func (t *Table) Resolve(model, pin []byte) (*Version, error) {
	m, v, err := t.lookup(model, pin)
	if err != nil || v != nil {
		return v, err
	}
	return m.Stable, nil
}

// lookup finds the model of a request and, when the request pins one, the pinned version.
func (t *Table) lookup(model, pin []byte) (*Model, *Version, error) {
	alias := model
	if i := indexByte(model, '@'); i >= 0 {
		alias, pin = model[:i], model[i+1:]
		if len(pin) == 0 {
			return nil, nil, ErrUnknownVersion // "chat@" names no version; serving stable would hide the typo
		}
	}
	m := t.models[string(alias)] // no allocation: the compiler special-cases map[string] lookups
	if m == nil {
		return nil, nil, ErrUnknownModel
	}
	if len(pin) == 0 {
		return m, nil, nil
	}
	v := m.byName[string(pin)]
	if v == nil {
		return nil, nil, ErrUnknownVersion
	}
	return m, v, nil
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// Models returns the aliases in name order.
func (t *Table) Models() []*Model {
	out := make([]*Model, len(t.aliases))
	for i, a := range t.aliases {
		out[i] = t.models[a]
	}
	return out
}

// Model returns the alias's model or nil.
func (t *Table) Model(alias string) *Model { return t.models[alias] }

// Backends returns every backend of the table, indexed by Backend.Index.
func (t *Table) Backends() []*Backend { return t.backends }

// Pick chooses the backend for the next attempt: power of two choices on in-flight requests
// scaled by weight, among available backends not in tried. It returns ErrNoBackend when every
// backend is ejected, busy with its half-open trial, or already tried. A half-open backend it
// returns is the request's trial, taken atomically: the caller must Acquire it at once, so the
// trial is the request's, and Release it (see Backend.Acquire).
func (v *Version) Pick(tried []*Backend) (*Backend, error) {
	if v.weightSum <= 0 {
		// Every backend is drained (weight 0). Validate rejects this, but a Config built in
		// code may not have been validated, and rand.IntN(0) would panic.
		return nil, ErrNoBackend
	}
	now := v.now().UnixNano()
	for {
		b := v.choose(tried, now)
		if b == nil {
			return nil, ErrNoBackend
		}
		if b.health.admit(now) {
			return b, nil
		}
		// A concurrent pick took b's half-open trial: choose among the others. Rare, so the
		// copy of tried costs nothing on the hot path.
		tried = append(tried[:len(tried):len(tried)], b)
	}
}

// PickShadow is Pick for a mirror of a request that primary serves. A mirror never takes the
// half-open trial of a server primary's pool has too (one vLLM serving both versions): the
// trial would be the mirror's, and primary's request, sent after it, would find no backend. A
// server only the shadow version has takes its trial from mirrors, as nothing else sends it
// requests. Backends in skip are not picked either.
func (v *Version) PickShadow(primary *Version, skip []*Backend) (*Backend, error) {
	skip = skip[:len(skip):len(skip)] // appends below must not write into the caller's array
	for _, b := range v.Backends {
		if b.health.ejectedUntil.Load() != 0 && primary.has(b.health) {
			skip = append(skip, b)
		}
	}
	return v.Pick(skip)
}

// Shares reports whether b's server is also a backend of v: one server serving two versions
// (a vLLM with the other version as a LoRA adapter).
func (v *Version) Shares(b *Backend) bool { return v.has(b.health) }

// has reports whether a backend of v is the server whose health is h.
func (v *Version) has(h *health) bool {
	for _, b := range v.Backends {
		if b.health == h {
			return true
		}
	}
	return false
}

// choose is Pick's choice among the eligible backends, without admitting it; nil when none is.
func (v *Version) choose(tried []*Backend, now int64) *Backend {
	n := len(v.Backends)
	if n == 1 {
		b := v.Backends[0]
		if contains(tried, b) || !b.health.eligible(now) || !b.served.serves(now) {
			return nil
		}
		return b
	}
	a := v.weightedRandom(tried, nil, now)
	if a == nil {
		return nil
	}
	// The second choice must differ from the first: drawn with replacement, a pool of two would
	// send a quarter of the traffic to a backend however far behind it is.
	c := v.weightedRandom(tried, a, now)
	if c == nil {
		return a
	}
	// Compare in-flight per unit of weight without division: a/wa < c/wc  <=>  a*wc < c*wa.
	if c.InFlight()*int64(a.Weight) < a.InFlight()*int64(c.Weight) {
		return c
	}
	return a
}

// weightedRandom draws a backend with probability proportional to its weight among the
// eligible ones (not tried, not except, available); a few draws are cheaper than building a
// filtered list, and the fallback scan keeps the answer exact when most backends are out.
func (v *Version) weightedRandom(tried []*Backend, except *Backend, now int64) *Backend {
	eligible := func(b *Backend) bool {
		return b.Weight > 0 && b != except && !contains(tried, b) && b.health.eligible(now) && b.served.serves(now)
	}
	for range 4 {
		r := rand.IntN(v.weightSum)
		for _, b := range v.Backends {
			if r -= b.Weight; r < 0 {
				if eligible(b) {
					return b
				}
				break
			}
		}
	}
	start := rand.IntN(len(v.Backends))
	for i := range v.Backends {
		if b := v.Backends[(start+i)%len(v.Backends)]; eligible(b) {
			return b
		}
	}
	return nil
}

// contains reports whether list holds b, or another backend for the same server, path and
// model: one server named twice in a version, under URLs spelled differently ("http://h:80/"
// and "http://h"), and a retry must not send the request to the server that failed it. (A proxy
// that routes by path prefix to other servers keeps its paths apart.)
func contains(list []*Backend, b *Backend) bool {
	for _, x := range list {
		if x == b || x.health == b.health && x.path == b.path && x.Model == b.Model {
			return true
		}
	}
	return false
}
