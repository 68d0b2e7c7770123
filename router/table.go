// Package router decides which backend serves a request: model alias -> version (pins) ->
// backend (least-loaded, health, ejection). A Table is an immutable snapshot built from config;
// backend load and health live in a Pool that outlives tables.
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
}

// Model is one public alias.
type Model struct {
	Alias    string
	Stable   *Version
	Versions []*Version // in config order
	byName   map[string]*Version
}

// Version is one model version and its pool of backends.
type Version struct {
	Alias     string
	Name      string
	Backends  []*Backend
	weightSum int
	now       func() time.Time // the Pool's clock
}

// NewTable builds a table from a validated config. API keys are read from the environment now,
// so a missing variable fails the build instead of a request.
func NewTable(cfg *config.Config, pool *Pool) (*Table, error) {
	t := &Table{models: make(map[string]*Model, len(cfg.Models))}
	for _, mc := range cfg.Models {
		m := &Model{Alias: mc.Alias, byName: map[string]*Version{}}
		for _, vc := range mc.Versions {
			v := &Version{Alias: mc.Alias, Name: vc.Version, now: pool.now}
			for _, bc := range vc.Backends {
				b, err := newBackend(bc, cfg.Health, pool)
				if err != nil {
					return nil, fmt.Errorf("model %q version %q: %w", mc.Alias, vc.Version, err)
				}
				b.Index, b.Alias, b.Version = len(t.backends), mc.Alias, vc.Version
				t.backends = append(t.backends, b)
				v.Backends = append(v.Backends, b)
				v.weightSum += b.Weight
			}
			m.Versions = append(m.Versions, v)
			m.byName[v.Name] = v
		}
		stable := mc.Stable
		if stable == "" && len(m.Versions) > 0 {
			stable = m.Versions[0].Name
		}
		m.Stable = m.byName[stable]
		if m.Stable == nil {
			return nil, fmt.Errorf("model %q: stable version %q not found", mc.Alias, stable)
		}
		t.models[m.Alias] = m
		t.aliases = append(t.aliases, m.Alias)
	}
	sort.Strings(t.aliases)
	return t, nil
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
		URL:       strings.TrimSuffix(u.Scheme+"://"+strings.TrimSuffix(u.Host, ":")+u.Path, "/"),
		Addr:      addr,
		TLS:       u.Scheme == "https",
		Kind:      bc.Kind,
		Model:     bc.Model,
		Weight:    bc.Weight,
		health:    pool.get(u.Scheme + "://" + addr),
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
// version serves.
func (t *Table) Resolve(model, pin []byte) (*Version, error) {
	alias := model
	if i := indexByte(model, '@'); i >= 0 {
		alias, pin = model[:i], model[i+1:]
		if len(pin) == 0 {
			return nil, ErrUnknownVersion // "chat@" names no version; serving stable would hide the typo
		}
	}
	m := t.models[string(alias)] // no allocation: the compiler special-cases map[string] lookups
	if m == nil {
		return nil, ErrUnknownModel
	}
	if len(pin) == 0 {
		return m.Stable, nil
	}
	v := m.byName[string(pin)]
	if v == nil {
		return nil, ErrUnknownVersion
	}
	return v, nil
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
// backend is ejected or already tried.
func (v *Version) Pick(tried []*Backend) (*Backend, error) {
	if v.weightSum <= 0 {
		// Every backend is drained (weight 0). Validate rejects this, but a Config built in
		// code may not have been validated, and rand.IntN(0) would panic.
		return nil, ErrNoBackend
	}
	now := v.now().UnixNano()
	n := len(v.Backends)
	if n == 1 {
		b := v.Backends[0]
		if contains(tried, b) || !b.health.available(now) {
			return nil, ErrNoBackend
		}
		return b, nil
	}
	a := v.weightedRandom(tried, nil, now)
	if a == nil {
		return nil, ErrNoBackend
	}
	// The second choice must differ from the first: drawn with replacement, a pool of two would
	// send a quarter of the traffic to a backend however far behind it is.
	c := v.weightedRandom(tried, a, now)
	if c == nil {
		return a, nil
	}
	// Compare in-flight per unit of weight without division: a/wa < c/wc  <=>  a*wc < c*wa.
	if c.InFlight()*int64(a.Weight) < a.InFlight()*int64(c.Weight) {
		return c, nil
	}
	return a, nil
}

// weightedRandom draws a backend with probability proportional to its weight among the
// eligible ones (not tried, not except, available); a few draws are cheaper than building a
// filtered list, and the fallback scan keeps the answer exact when most backends are out.
func (v *Version) weightedRandom(tried []*Backend, except *Backend, now int64) *Backend {
	eligible := func(b *Backend) bool {
		return b.Weight > 0 && b != except && !contains(tried, b) && b.health.available(now)
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

func contains(list []*Backend, b *Backend) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}
