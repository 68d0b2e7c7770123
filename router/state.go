package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/llmgate/llmgate/config"
)

// The deploy state is one JSON document: every alias's versions, traffic split, shadow and
// history. Operations (state_ops.go) are pure: they return a new *State and leave the receiver
// unchanged, so a failed operation changes nothing and a stored state is never aliased.
//
// Revisions are one global counter, bumped by every operation: the store compares and swaps a
// single number (bbolt key, etcd mod revision), and history entries of all aliases order
// totally. Each alias also records the global revision of its own last change (its ETag), and
// If-Match is checked against that, so a write on one alias (say, an automatic rollout step)
// does not fail a concurrent operator's If-Match on another.

// Errors of state operations. Each operation returns a *FieldError that wraps one of these or
// ErrUnknownModel / ErrUnknownVersion; the admin API maps them to HTTP statuses.
var (
	ErrConflict = errors.New("router: revision conflict")       // If-Match differs (412)
	ErrInvalid  = errors.New("router: invalid deploy request")  // malformed input (400)
	ErrRefused  = errors.New("router: refused by deploy state") // valid input the state refuses (409)
)

// FieldError is an operation's failure, naming the request field at fault as the admin API
// spells it ("alias", "version", "backends[0].url", "canary_percent", "to", "If-Match").
type FieldError struct {
	Field string
	Msg   string
	Err   error // ErrConflict, ErrInvalid, ErrRefused, ErrUnknownModel or ErrUnknownVersion
}

// Error returns "field: message".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap returns the sentinel, for errors.Is.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(kind error, field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Err: kind}
}

// Limits of the state document.
const (
	// MaxHistory bounds each alias's history in the document; older entries are dropped.
	MaxHistory = 1000
	// maxPastStables bounds the rollback lineage.
	maxPastStables = 32
	// ConfigActor is the actor of changes seeded from the config file.
	ConfigActor = "config"
)

// History actions.
const (
	ActionSeed     = "seed"
	ActionDeploy   = "deploy"
	ActionTraffic  = "traffic"
	ActionShadow   = "shadow"
	ActionPromote  = "promote"
	ActionRollback = "rollback"
	ActionDelete   = "delete"
	ActionRollout  = "rollout" // a rollout paused, resumed or ended without a change of the split
)

// State is the deploy state document. Treat a *State as immutable once built: operations
// return new states, and tables and stores may share it.
type State struct {
	Revision uint64       `json:"revision"` // of the last change to any alias; 0 before the first
	Models   []ModelState `json:"models"`   // sorted by alias
}

// ModelState is one alias: its versions, how traffic is split between them, and its history.
type ModelState struct {
	Alias    string `json:"alias"`
	Revision uint64 `json:"revision"` // global revision of this alias's last change; its ETag
	Stable   string `json:"stable"`
	// Canary, when set, takes CanaryPercent of the requests, assigned by Sticky.
	Canary        string  `json:"canary,omitempty"`
	CanaryPercent float64 `json:"canary_percent,omitempty"`
	Sticky        string  `json:"sticky"` // user | header:NAME | api_key | none; "" reads as none
	Shadow        Shadow  `json:"shadow"`
	// PastStables are the stables before the current one, most recent last: where a rollback
	// without a target goes.
	PastStables []string       `json:"past_stables,omitempty"`
	Versions    []VersionSpec  `json:"versions"` // in deploy order
	History     []HistoryEntry `json:"history"`  // oldest first, at most MaxHistory
	// Rollout is the alias's latest progressive rollout as the gateway records it (its plan,
	// step and state), opaque here; operations carry it over unchanged, and Change.Rollout
	// replaces it in the revision of the step it records.
	Rollout json.RawMessage `json:"rollout,omitempty"`
}

// Traffic is the split of an alias between its stable and canary versions; it is also the body
// of PUT /admin/models/{alias}/traffic.
type Traffic struct {
	Stable        string  `json:"stable,omitempty"` // "" keeps the current stable
	Canary        string  `json:"canary,omitempty"` // "" clears the canary
	CanaryPercent float64 `json:"canary_percent,omitempty"`
	Sticky        string  `json:"sticky,omitempty"`
}

// Shadow mirrors Percent of an alias's requests to Version; it is also the body of
// PUT /admin/models/{alias}/shadow. A zero Shadow mirrors nothing.
type Shadow struct {
	Version string  `json:"version,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// VersionSpec is one deployed version; without Created and Actor it is the body of
// POST /admin/models/{alias}/versions. Versions are immutable once deployed.
type VersionSpec struct {
	Name     string        `json:"version"`
	Backends []BackendSpec `json:"backends"`
	Created  time.Time     `json:"created"` // set by Deploy
	Actor    string        `json:"actor"`   // set by Deploy
}

// BackendSpec is one backend of a version, as in config.Backend. The API key is stored as the
// name of an environment variable, never the secret.
type BackendSpec struct {
	URL       string `json:"url"`
	Kind      string `json:"kind"`
	Model     string `json:"model"`
	APIKeyEnv string `json:"api_key_env,omitempty"`
	Weight    int    `json:"weight"`
}

// HistoryEntry is one change of an alias.
type HistoryEntry struct {
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"` // one of the Action constants
	From     string    `json:"from,omitempty"`
	To       string    `json:"to,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// Traffic returns m's current split.
func (m *ModelState) Traffic() Traffic {
	return Traffic{Stable: m.Stable, Canary: m.Canary, CanaryPercent: m.CanaryPercent, Sticky: m.Sticky}
}

// Version returns the named version of m, or nil.
func (m *ModelState) Version(name string) *VersionSpec {
	for i := range m.Versions {
		if m.Versions[i].Name == name {
			return &m.Versions[i]
		}
	}
	return nil
}

// Model returns the alias's state or nil. The result points into s: do not modify it.
func (s *State) Model(alias string) *ModelState {
	if s == nil {
		return nil
	}
	if i, ok := s.index(alias); ok {
		return &s.Models[i]
	}
	return nil
}

func (s *State) index(alias string) (int, bool) {
	return sort.Find(len(s.Models), func(i int) int { return strings.Compare(alias, s.Models[i].Alias) })
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := &State{Revision: s.Revision, Models: make([]ModelState, len(s.Models))}
	for i := range s.Models {
		c.Models[i] = s.Models[i].clone()
	}
	return c
}

func (m ModelState) clone() ModelState {
	m.PastStables = slices.Clone(m.PastStables)
	m.History = slices.Clone(m.History)
	m.Versions = slices.Clone(m.Versions)
	for i := range m.Versions {
		m.Versions[i].Backends = slices.Clone(m.Versions[i].Backends)
	}
	return m
}

// SeedState builds the first state from a validated config: every alias with its versions and
// stable, at revision 1, with a "seed" history entry dated at.
func SeedState(cfg *config.Config, at time.Time) (*State, error) {
	s := &State{Revision: 1}
	for i, mc := range cfg.Models {
		m := modelFromConfig(mc)
		if err := checkName("alias", "alias", m.Alias); err != nil {
			return nil, fmt.Errorf("models[%d]: %w", i, err)
		}
		for j := range m.Versions {
			v := &m.Versions[j]
			if err := checkVersion(v); err != nil {
				return nil, fmt.Errorf("models[%d].versions[%d]: %w", i, j, err)
			}
			v.Created, v.Actor = at, ConfigActor
		}
		if m.Version(m.Stable) == nil {
			return nil, fmt.Errorf("models[%d]: %w", i, fieldErr(ErrUnknownVersion, "stable", "%q names no version", m.Stable))
		}
		m.Revision, m.Sticky = 1, Sticky{}.String()
		m.History = []HistoryEntry{{Revision: 1, Time: at, Actor: ConfigActor, Action: ActionSeed, To: m.Stable, Reason: "seeded from config"}}
		if _, dup := s.index(m.Alias); dup {
			return nil, fmt.Errorf("models[%d]: %w", i, fieldErr(ErrInvalid, "alias", "duplicate alias %q", m.Alias))
		}
		s.insert(m)
	}
	return s, nil
}

// insert adds m in alias order; the alias must be new.
func (s *State) insert(m ModelState) {
	i, _ := s.index(m.Alias)
	s.Models = slices.Insert(s.Models, i, m)
}

// modelFromConfig converts one alias of the config; an empty stable means the first version,
// as the config documents.
func modelFromConfig(mc config.Model) ModelState {
	m := ModelState{Alias: mc.Alias, Stable: mc.Stable}
	for _, vc := range mc.Versions {
		v := VersionSpec{Name: vc.Version}
		for _, bc := range vc.Backends {
			v.Backends = append(v.Backends, BackendSpec{URL: bc.URL, Kind: bc.Kind, Model: bc.Model, APIKeyEnv: bc.APIKeyEnv, Weight: bc.Weight})
		}
		m.Versions = append(m.Versions, v)
	}
	if m.Stable == "" && len(m.Versions) > 0 {
		m.Stable = m.Versions[0].Name
	}
	return m
}

func (b BackendSpec) config() config.Backend {
	return config.Backend{URL: b.URL, Kind: b.Kind, Model: b.Model, APIKeyEnv: b.APIKeyEnv, Weight: b.Weight}
}

// DiffConfig lists, in a stable order, how a stored state differs from the config file: aliases,
// versions, backends and stables on one side only or changed. The store wins after the first
// start; the gateway logs these so an operator sees that editing the file changed nothing.
func DiffConfig(s *State, cfg *config.Config) []string {
	var out []string
	inConfig := map[string]bool{}
	for _, mc := range cfg.Models {
		inConfig[mc.Alias] = true
		cm := modelFromConfig(mc)
		sm := s.Model(mc.Alias)
		if sm == nil {
			out = append(out, fmt.Sprintf("model %q: in config, not in store", mc.Alias))
			continue
		}
		if cm.Stable != sm.Stable {
			out = append(out, fmt.Sprintf("model %q: stable %q in config, %q in store", mc.Alias, cm.Stable, sm.Stable))
		}
		for _, cv := range cm.Versions {
			switch sv := sm.Version(cv.Name); {
			case sv == nil:
				out = append(out, fmt.Sprintf("model %q version %q: in config, not in store", mc.Alias, cv.Name))
			case !slices.Equal(normalBackends(cv.Backends), normalBackends(sv.Backends)):
				out = append(out, fmt.Sprintf("model %q version %q: backends differ", mc.Alias, cv.Name))
			}
		}
		for _, sv := range sm.Versions {
			if cm.Version(sv.Name) == nil {
				out = append(out, fmt.Sprintf("model %q version %q: in store, not in config", mc.Alias, sv.Name))
			}
		}
	}
	for _, sm := range s.Models {
		if !inConfig[sm.Alias] {
			out = append(out, fmt.Sprintf("model %q: in store, not in config", sm.Alias))
		}
	}
	return out
}

// normalBackends fills the defaults a stored backend has and a config one may leave out, so a
// config "kind" left empty does not count as a difference.
func normalBackends(bs []BackendSpec) []BackendSpec {
	out := slices.Clone(bs)
	for i := range out {
		if out[i].Kind == "" {
			out[i].Kind = config.KindOpenAI
		}
	}
	return out
}
