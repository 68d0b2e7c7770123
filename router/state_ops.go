package router

import (
	"encoding/json"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/llmgate/llmgate/config"
)

// Change says who makes a change, when and why. Every operation takes one and records it in the
// alias's history; the time comes from the caller so operations stay deterministic.
type Change struct {
	Actor  string // the admin token's name, or "rollout" for automatic changes
	Time   time.Time
	Reason string
	// IfMatch is the alias's Revision the writer last saw (the If-Match header); 0 skips the
	// check. A different revision fails the operation with ErrConflict.
	IfMatch uint64
	// Rollout, when not nil, replaces the alias's rollout record (ModelState.Rollout) in the
	// same revision as the operation: a rollout's step and the record of how far it got are
	// one commit, so a restart never finds one without the other.
	Rollout *json.RawMessage
}

// Bounds on what an admin write may add to the document.
const (
	maxVersions  = 256
	maxBackends  = 256
	maxNameLen   = 256
	maxReasonLen = 1024
)

var (
	// As config's validation: names travel in the "model" field, URLs and metric labels, and
	// '@' is excluded because "alias@version" pins a version.
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9._:/-]+$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Deploy registers version v of alias with its backends. Versions are immutable: a name already
// deployed is refused. Deploying to an unknown alias creates it with v as its stable.
func (s *State) Deploy(c Change, alias string, v VersionSpec) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	v.Backends = slices.Clone(v.Backends) // checkVersion normalises in place; the caller's slice stays
	if err := checkVersion(&v); err != nil {
		return nil, err
	}
	v.Created, v.Actor = c.Time, c.Actor
	entry := HistoryEntry{Action: ActionDeploy, To: v.Name}
	if _, ok := s.index(alias); !ok {
		if err := checkName("alias", "alias", alias); err != nil {
			return nil, err
		}
		if c.IfMatch != 0 {
			return nil, fieldErr(ErrConflict, "If-Match", "model %q does not exist yet, If-Match %d", alias, c.IfMatch)
		}
		next := &State{Revision: s.Revision + 1, Models: slices.Clone(s.Models)}
		m := ModelState{Alias: alias, Stable: v.Name, Sticky: Sticky{}.String(), Versions: []VersionSpec{v}}
		m.record(next.Revision, c, entry)
		next.insert(m)
		return next, nil
	}
	return s.edit(c, alias, func(m *ModelState) (HistoryEntry, error) {
		if m.Version(v.Name) != nil {
			return entry, fieldErr(ErrRefused, "version", "%q is already deployed; versions are immutable, deploy a new name", v.Name)
		}
		if len(m.Versions) >= maxVersions {
			return entry, fieldErr(ErrRefused, "version", "model %q has %d versions; delete unused ones first", alias, len(m.Versions))
		}
		m.Versions = append(m.Versions, v)
		return entry, nil
	})
}

// SetTraffic sets the whole split of alias, as a PUT does: t.Stable (required), t.Canary (""
// clears it) taking t.CanaryPercent of requests, assigned by t.Sticky ("" is none). A shadow that
// becomes the stable is cleared.
func (s *State) SetTraffic(c Change, alias string, t Traffic) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	if t.Stable == "" {
		// Keeping the current stable when it is left out made {} a valid split that silently
		// removed the canary and the sticky key.
		return nil, fieldErr(ErrInvalid, "stable", "is required: PUT sets the whole split (stable, canary, canary_percent, sticky)")
	}
	sticky, err := ParseSticky(t.Sticky)
	if err != nil {
		return nil, fieldErr(ErrInvalid, "sticky", "%v", err)
	}
	if err := checkPercent("canary_percent", t.CanaryPercent); err != nil {
		return nil, err
	}
	t.CanaryPercent = atStep(t.CanaryPercent)
	return s.edit(c, alias, func(m *ModelState) (HistoryEntry, error) {
		entry := HistoryEntry{Action: ActionTraffic, From: m.describe()}
		fromSticky := m.Sticky
		stable := t.Stable
		if m.Version(stable) == nil {
			return entry, fieldErr(ErrUnknownVersion, "stable", "model %q has no version %q", alias, stable)
		}
		switch {
		case t.Canary == "" && t.CanaryPercent != 0:
			return entry, fieldErr(ErrInvalid, "canary_percent", "is %v but no canary is named", t.CanaryPercent)
		case t.Canary == "":
		case m.Version(t.Canary) == nil:
			return entry, fieldErr(ErrUnknownVersion, "canary", "model %q has no version %q", alias, t.Canary)
		case t.Canary == stable:
			return entry, fieldErr(ErrInvalid, "canary", "%q is the stable version; a canary must differ", t.Canary)
		}
		shadowed := m.Shadow.Version == stable && stable != m.Stable
		m.setStable(stable)
		m.Canary, m.CanaryPercent, m.Sticky = t.Canary, t.CanaryPercent, sticky.String()
		entry.To = m.describe()
		if entry.To == entry.From && m.Sticky != fromSticky {
			// Without a canary, describe leaves the sticky key out: say what changed.
			entry.From += " sticky " + orNone(fromSticky)
			entry.To += " sticky " + orNone(m.Sticky)
		}
		if shadowed { // setStable cleared it, as Promote does: a version cannot shadow itself
			entry.To += "; shadow cleared"
		}
		return entry, nil
	})
}

// SetShadow mirrors sh.Percent of alias's requests to sh.Version; a zero Shadow stops mirroring.
// The stable cannot be its own shadow.
func (s *State) SetShadow(c Change, alias string, sh Shadow) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	if err := checkPercent("percent", sh.Percent); err != nil {
		return nil, err
	}
	sh.Percent = atStep(sh.Percent)
	return s.edit(c, alias, func(m *ModelState) (HistoryEntry, error) {
		entry := HistoryEntry{Action: ActionShadow, From: m.Shadow.describe()}
		switch {
		case sh.Version == "" && sh.Percent != 0:
			return entry, fieldErr(ErrInvalid, "percent", "is %v but no version is named", sh.Percent)
		case sh.Version == "":
		case m.Version(sh.Version) == nil:
			return entry, fieldErr(ErrUnknownVersion, "version", "model %q has no version %q", alias, sh.Version)
		case sh.Version == m.Stable:
			return entry, fieldErr(ErrInvalid, "version", "%q is the stable version; it cannot shadow itself", sh.Version)
		}
		m.Shadow = sh
		entry.To = m.Shadow.describe()
		return entry, nil
	})
}

// Promote makes alias's canary its stable and clears the canary; the old stable becomes the
// target of a later Rollback.
func (s *State) Promote(c Change, alias string) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	return s.edit(c, alias, func(m *ModelState) (HistoryEntry, error) {
		entry := HistoryEntry{Action: ActionPromote, From: m.describe()}
		if m.Canary == "" {
			return entry, fieldErr(ErrRefused, "canary", "model %q has no canary to promote", alias)
		}
		shadowed := m.Shadow.Version == m.Canary
		m.setStable(m.Canary)
		m.Canary, m.CanaryPercent = "", 0
		entry.To = m.describe()
		if shadowed { // setStable cleared it: a version cannot shadow itself
			entry.To += "; shadow cleared"
		}
		return entry, nil
	})
}

// Rollback returns alias to safety. With to empty: a running canary is cleared (all traffic back
// to the stable), and with no canary the previous stable is restored. With to named, that version
// becomes the stable and any canary is cleared. The version rolled away from is never queued as a
// rollback target itself, so repeated rollbacks walk further back.
func (s *State) Rollback(c Change, alias, to string) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	return s.edit(c, alias, func(m *ModelState) (HistoryEntry, error) {
		entry := HistoryEntry{Action: ActionRollback, From: m.describe()}
		// The version rolled away from is no target. States saved before setStable kept
		// PastStables free of the stable can still hold it.
		m.PastStables = slices.DeleteFunc(m.PastStables, func(p string) bool { return p == m.Stable })
		switch {
		case to == "" && m.Canary != "":
		case to == "":
			n := len(m.PastStables)
			if n == 0 {
				return entry, fieldErr(ErrRefused, "to", "model %q has no previous stable; name the version to roll back to", alias)
			}
			m.Stable, m.PastStables = m.PastStables[n-1], m.PastStables[:n-1]
		case m.Version(to) == nil:
			return entry, fieldErr(ErrUnknownVersion, "to", "model %q has no version %q", alias, to)
		case to == m.Stable && m.Canary == "":
			return entry, fieldErr(ErrRefused, "to", "%q is already the stable version", to)
		case to != m.Stable:
			// Going back in time: forget the stables that came after to.
			if i := slices.Index(m.PastStables, to); i >= 0 {
				m.PastStables = m.PastStables[:i]
			}
			m.Stable = to
		}
		m.Canary, m.CanaryPercent = "", 0
		entry.To = m.describe()
		if m.Shadow.Version == m.Stable {
			m.Shadow = Shadow{}
			entry.To += "; shadow cleared" // history says why mirroring stopped, as Promote's does
		}
		return entry, nil
	})
}

// RecordRollout changes only alias's rollout record (c.Rollout): a rollout paused or resumed,
// or one that ends without a change of the split. History says from and to, the rollout's
// state before and after.
func (s *State) RecordRollout(c Change, alias, from, to string) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	if c.Rollout == nil {
		return nil, fieldErr(ErrInvalid, "rollout", "no rollout record to save")
	}
	return s.edit(c, alias, func(m *ModelState) (HistoryEntry, error) {
		return HistoryEntry{Action: ActionRollout, From: from, To: to}, nil
	})
}

// DeleteVersion removes a version of alias. A version that serves traffic (stable, canary or
// shadow) is refused.
func (s *State) DeleteVersion(c Change, alias, version string) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	return s.edit(c, alias, func(m *ModelState) (HistoryEntry, error) {
		entry := HistoryEntry{Action: ActionDelete, From: version}
		var role string
		switch version {
		case m.Stable:
			role = "stable"
		case m.Canary:
			role = "canary"
		case m.Shadow.Version:
			role = "shadow"
		}
		switch {
		case m.Version(version) == nil:
			return entry, fieldErr(ErrUnknownVersion, "version", "model %q has no version %q", alias, version)
		case role != "":
			return entry, fieldErr(ErrRefused, "version", "%q is the %s of model %q; move its traffic first", version, role, alias)
		}
		m.Versions = slices.DeleteFunc(m.Versions, func(v VersionSpec) bool { return v.Name == version })
		m.PastStables = slices.DeleteFunc(m.PastStables, func(v string) bool { return v == version })
		return entry, nil
	})
}

// DeleteModel removes alias and all its versions. Its history goes with it; the caller logs
// the deletion. Nothing brings the alias back but a new deploy: the config file seeds only an
// empty store.
func (s *State) DeleteModel(c Change, alias string) (*State, error) {
	if err := checkChange(c); err != nil {
		return nil, err
	}
	i, ok := s.index(alias)
	if !ok {
		return nil, fieldErr(ErrUnknownModel, "alias", "no model %q", alias)
	}
	if rev := s.Models[i].Revision; c.IfMatch != 0 && c.IfMatch != rev {
		return nil, fieldErr(ErrConflict, "If-Match", "model %q is at revision %d, not %d", alias, rev, c.IfMatch)
	}
	return &State{Revision: s.Revision + 1, Models: slices.Delete(slices.Clone(s.Models), i, i+1)}, nil
}

// edit applies f to a copy of alias's model and returns the state at the next revision, with
// f's history entry recorded. s is left unchanged. When f changes nothing (the split or shadow
// the alias already has), edit returns s itself: no revision, no history entry.
func (s *State) edit(c Change, alias string, f func(m *ModelState) (HistoryEntry, error)) (*State, error) {
	i, ok := s.index(alias)
	if !ok {
		return nil, fieldErr(ErrUnknownModel, "alias", "no model %q", alias)
	}
	if rev := s.Models[i].Revision; c.IfMatch != 0 && c.IfMatch != rev {
		return nil, fieldErr(ErrConflict, "If-Match", "model %q is at revision %d, not %d", alias, rev, c.IfMatch)
	}
	m := s.Models[i].clone()
	entry, err := f(&m)
	if err != nil {
		return nil, err
	}
	if c.Rollout != nil {
		m.Rollout = *c.Rollout
	}
	// Admin writes are rare; comparing the whole model keeps this right as fields are added.
	if reflect.DeepEqual(m, s.Models[i]) {
		return s, nil
	}
	// Other aliases are shared with s, not copied: nothing modifies a ModelState in place.
	next := &State{Revision: s.Revision + 1, Models: slices.Clone(s.Models)}
	m.record(next.Revision, c, entry)
	next.Models[i] = m
	return next, nil
}

// record stamps m with revision rev and appends e, dropping the oldest entries beyond MaxHistory.
func (m *ModelState) record(rev uint64, c Change, e HistoryEntry) {
	e.Revision, e.Time, e.Actor, e.Reason = rev, c.Time, c.Actor, c.Reason
	m.Revision = rev
	m.History = append(m.History, e)
	if n := len(m.History) - MaxHistory; n > 0 {
		m.History = slices.Delete(m.History, 0, n)
	}
}

// setStable makes v the stable, queueing the old one as a rollback target. PastStables never
// holds the stable nor a version twice: a rollback that popped the current stable, or the same
// version again, would bring back the version it was meant to leave.
func (m *ModelState) setStable(v string) {
	if v == m.Stable {
		return
	}
	m.PastStables = slices.DeleteFunc(m.PastStables, func(p string) bool { return p == m.Stable || p == v })
	m.PastStables = append(m.PastStables, m.Stable)
	if n := len(m.PastStables) - maxPastStables; n > 0 {
		m.PastStables = slices.Delete(m.PastStables, 0, n)
	}
	m.Stable = v
	if m.Shadow.Version == v {
		m.Shadow = Shadow{}
	}
}

func orNone(sticky string) string {
	if sticky == "" {
		return "none"
	}
	return sticky
}

// describe is m's split for history: "v3" or "v3 + canary v4 10% sticky user".
func (m *ModelState) describe() string {
	if m.Canary == "" {
		return m.Stable
	}
	d := m.Stable + " + canary " + m.Canary + " " + strconv.FormatFloat(m.CanaryPercent, 'f', -1, 64) + "%"
	if m.Sticky != "" {
		d += " sticky " + m.Sticky
	}
	return d
}

func (sh Shadow) describe() string {
	if sh.Version == "" {
		return ""
	}
	return sh.Version + " " + strconv.FormatFloat(sh.Percent, 'f', -1, 64) + "%"
}

func checkChange(c Change) error {
	switch {
	case c.Actor == "" || !printable(c.Actor):
		return fieldErr(ErrInvalid, "actor", "must be printable and not empty, got %q", c.Actor)
	case c.Time.IsZero():
		return fieldErr(ErrInvalid, "time", "must be set")
	case len(c.Reason) > maxReasonLen || !utf8.ValidString(c.Reason):
		return fieldErr(ErrInvalid, "reason", "must be UTF-8 of at most %d bytes", maxReasonLen)
	}
	return nil
}

// checkPercent accepts 0..100 in steps of 0.01, the resolution of the split (basis points).
func checkPercent(field string, p float64) error {
	if !(p >= 0 && p <= 100) { // also catches NaN
		return fieldErr(ErrInvalid, field, "must be 0..100, got %v", p)
	}
	if bp := p * 100; math.Abs(bp-math.Round(bp)) > 1e-6 {
		return fieldErr(ErrInvalid, field, "must be a multiple of 0.01, got %v", p)
	}
	return nil
}

// atStep returns p, which checkPercent accepted, at its step of 0.01: a script's
// 30.000000000000004 is stored, shown and compared as the 30 it means, and -0 as 0.
func atStep(p float64) float64 {
	if p = math.Round(p*100) / 100; p == 0 {
		return 0 // not -0
	}
	return p
}

// checkName checks an alias or version name as config's validation does.
func checkName(field, what, s string) error {
	switch {
	case s == "":
		return fieldErr(ErrInvalid, field, "%s must not be empty", what)
	case len(s) > maxNameLen:
		return fieldErr(ErrInvalid, field, "%s is longer than %d bytes", what, maxNameLen)
	case strings.Contains(s, "@"):
		return fieldErr(ErrInvalid, field, "%s %q must not contain '@'; clients pin a version as alias@version", what, s)
	case !nameRE.MatchString(s):
		return fieldErr(ErrInvalid, field, "%s %q may only contain letters, digits and . _ : / -", what, s)
	case !addressable(s):
		return fieldErr(ErrInvalid, field, "%s %q has an empty, \".\" or \"..\" part between slashes; clients and proxies rewrite such URL paths, so the admin API could not address it", what, s)
	}
	return nil
}

// addressable reports whether a name survives as one admin URL path segment: HTTP clients and
// proxies resolve "." and ".." and merge "//" (RFC 3986 5.2.4), so "..", "../x" or "a//b" would
// be served on /v1/models and never reachable as /admin/models/{alias}.
func addressable(s string) bool {
	for part := range strings.SplitSeq(s, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}

// checkVersion validates v and fills the default kind, as config's validation and NewTable do,
// so a stored version always builds.
func checkVersion(v *VersionSpec) error {
	if err := checkName("version", "version", v.Name); err != nil {
		return err
	}
	switch n := len(v.Backends); {
	case n == 0:
		return fieldErr(ErrInvalid, "backends", "at least one backend is required")
	case n > maxBackends:
		return fieldErr(ErrInvalid, "backends", "at most %d backends, got %d", maxBackends, n)
	}
	type target struct{ url, model string }
	seen := map[target]int{}
	total := 0
	for i := range v.Backends {
		b := &v.Backends[i]
		k := "backends[" + strconv.Itoa(i) + "]"
		if err := checkBackendURL(k+".url", b.URL); err != nil {
			return err
		}
		switch b.Kind {
		case "":
			b.Kind = config.KindOpenAI
		case config.KindVLLM, config.KindOllama, config.KindOpenAI:
		default:
			return fieldErr(ErrInvalid, k+".kind", "must be vllm, ollama or openai, got %q", b.Kind)
		}
		if b.Model == "" || !printable(b.Model) {
			return fieldErr(ErrInvalid, k+".model", "must be the name the backend serves the model under, printable, got %q", b.Model)
		}
		if j, dup := seen[target{b.URL, b.Model}]; dup {
			return fieldErr(ErrInvalid, k, "same url and model as backends[%d]", j)
		}
		seen[target{b.URL, b.Model}] = i
		if b.APIKeyEnv != "" && !envNameRE.MatchString(b.APIKeyEnv) {
			return fieldErr(ErrInvalid, k+".api_key_env", "want the name of an environment variable, got %q", b.APIKeyEnv)
		}
		if b.Weight < 0 || b.Weight > config.MaxWeight {
			return fieldErr(ErrInvalid, k+".weight", "must be 0..%d, got %d", config.MaxWeight, b.Weight)
		}
		total += b.Weight
	}
	if total == 0 {
		return fieldErr(ErrInvalid, "backends", "weights add up to 0; at least one backend needs weight > 0")
	}
	return nil
}

// checkBackendURL accepts http(s)://host[:port][/path]. Credentials belong in api_key_env, and
// a query or fragment could not be combined with the paths the gateway appends. The SSRF
// allow-list is the admin API's business: it knows the config and resolves names.
func checkBackendURL(field, s string) error {
	if s == "" {
		return fieldErr(ErrInvalid, field, "must not be empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fieldErr(ErrInvalid, field, "not a valid URL") // the text may hold a password
	}
	shown := u.Redacted()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fieldErr(ErrInvalid, field, "scheme must be http or https, got %q", shown)
	case u.Opaque != "" || u.Hostname() == "":
		return fieldErr(ErrInvalid, field, "has no host: %q", shown)
	case u.User != nil:
		return fieldErr(ErrInvalid, field, "must not contain user:password; put the key in api_key_env")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return fieldErr(ErrInvalid, field, "must not have a query or fragment: %q", shown)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fieldErr(ErrInvalid, field, "port must be 1..65535, got %q", p)
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters or surrounding space:
// free-form names end up in logs, headers and persisted state.
func printable(s string) bool {
	if !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
