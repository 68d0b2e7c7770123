package router

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// StickyKind says which part of a request keeps a user on one side of a canary split.
type StickyKind uint8

// Sticky kinds.
const (
	StickyNone   StickyKind = iota // no key: each request is split at random
	StickyUser                     // the OpenAI "user" field of the body
	StickyHeader                   // the request header named by Sticky.Header
	StickyAPIKey                   // the client's API key (Authorization bearer)
)

// Sticky is an alias's sticky mode; its text form is none, user, api_key or header:NAME.
type Sticky struct {
	Kind   StickyKind
	Header string // for StickyHeader
}

// String returns the text form that ParseSticky reads.
func (s Sticky) String() string {
	switch s.Kind {
	case StickyUser:
		return "user"
	case StickyHeader:
		return "header:" + s.Header
	case StickyAPIKey:
		return "api_key"
	}
	return "none"
}

// ParseSticky reads a sticky mode: "" or none, user, api_key, or header:NAME with NAME an
// HTTP header name.
func ParseSticky(s string) (Sticky, error) {
	switch s {
	case "", "none":
		return Sticky{}, nil
	case "user":
		return Sticky{Kind: StickyUser}, nil
	case "api_key":
		return Sticky{Kind: StickyAPIKey}, nil
	}
	name, ok := strings.CutPrefix(s, "header:")
	if !ok {
		return Sticky{}, fmt.Errorf("want user, api_key, header:NAME or none, got %q", s)
	}
	if !isToken(name) {
		return Sticky{}, fmt.Errorf("header name %q is not an HTTP token", name)
	}
	return Sticky{Kind: StickyHeader, Header: name}, nil
}

// isToken reports whether s is an RFC 9110 token, as header names are.
func isToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// bpScale is the resolution of a split: percentages are compared in basis points.
const bpScale = 10000

// setSplit fills m's canary and shadow from its state; m's versions are already built.
func (m *Model) setSplit(ms ModelState) error {
	sticky, err := ParseSticky(ms.Sticky)
	if err != nil {
		return fmt.Errorf("sticky: %w", err)
	}
	m.Sticky = sticky
	if ms.Canary != "" {
		if m.Canary = m.byName[ms.Canary]; m.Canary == nil {
			return fmt.Errorf("canary version %q not found", ms.Canary)
		}
		m.CanaryPercent, m.canaryBP = ms.CanaryPercent, basisPoints(ms.CanaryPercent)
	}
	if ms.Shadow.Version != "" {
		if m.Shadow = m.byName[ms.Shadow.Version]; m.Shadow == nil {
			return fmt.Errorf("shadow version %q not found", ms.Shadow.Version)
		}
		m.ShadowPercent, m.shadowBP = ms.Shadow.Percent, basisPoints(ms.Shadow.Percent)
	}
	// The salt names the canary too: each new canary draws a fresh cohort instead of sending
	// every experiment to the same unlucky users, while one canary keeps its users as its
	// percentage grows. The alias in it makes aliases split independently.
	m.salt = fnv1a(fnvOffset, m.Alias)
	m.salt = fnv1a(m.salt, "\x00")
	m.salt = fnv1a(m.salt, ms.Canary)
	return nil
}

func basisPoints(p float64) uint64 {
	return uint64(math.Round(min(max(p, 0), 100) * 100))
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv1a continues an FNV-1a hash over s. FNV, not maphash: a bucket must be the same in every
// process and replica, or users would switch versions on a restart.
func fnv1a[T string | []byte](h uint64, s T) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// bucket places a sticky key in [0, bpScale). The murmur3 finaliser spreads FNV's output, whose
// low bits alone vary too little across keys that differ in their last byte.
func (m *Model) bucket(key []byte) uint64 {
	h := fnv1a(m.salt, key)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h % bpScale
}

// ResolveSticky is Resolve with the canary split: an unpinned request goes to the alias's canary
// when its bucket is below CanaryPercent. A request with a sticky key (the user, header value or
// API key that the alias's Sticky names; see StickyFor) gets a bucket from hashing the key, so it
// sees the same version on every request and stays on the canary while the percentage only
// grows; without a key the bucket is drawn at random. It does not allocate.
func (t *Table) ResolveSticky(model, pin, stickyKey []byte) (*Version, error) {
	m, v, err := t.lookup(model, pin)
	if err != nil || v != nil {
		return v, err
	}
	if m.canaryBP == 0 {
		return m.Stable, nil
	}
	var b uint64
	if len(stickyKey) == 0 {
		b = rand.Uint64N(bpScale)
	} else {
		b = m.bucket(stickyKey)
	}
	if b < m.canaryBP {
		return m.Canary, nil
	}
	return m.Stable, nil
}

// InService reports whether a request to v could be sent now: one of its backends with weight
// is not ejected (or its ejection has run out) and not out for lacking its model.
func (v *Version) InService() bool {
	now := v.now().UnixNano()
	for _, b := range v.Backends {
		if b.Weight > 0 && b.health.inService(now) && b.served.serves(now) {
			return true
		}
	}
	return false
}

// StableFallback returns the version to serve instead of v when v is its alias's canary and none
// of its backends is in service while the stable's are: a user in the canary's share then gets
// an answer rather than an error. It returns nil when v should serve.
func (v *Version) StableFallback() *Version {
	m := v.model
	if m == nil || m.Canary != v || m.Stable == v || v.InService() || !m.Stable.InService() {
		return nil
	}
	return m.Stable
}

// CanaryStable returns the stable version of v's alias when v is the alias's canary; nil
// otherwise.
func (v *Version) CanaryStable() *Version {
	m := v.model
	if m == nil || m.Canary != v || m.Stable == v {
		return nil
	}
	return m.Stable
}

// StickyFor returns the sticky mode of the request's alias, so the caller knows which key to
// pass to ResolveSticky. A model pinned as "alias@version", an unknown alias, or an alias
// without a canary needs no key: the result is then StickyNone.
func (t *Table) StickyFor(model []byte) Sticky {
	if indexByte(model, '@') >= 0 {
		return Sticky{}
	}
	m := t.models[string(model)]
	if m == nil || m.canaryBP == 0 {
		return Sticky{}
	}
	return m.Sticky
}

// DrawShadow draws whether a request served by v is mirrored: it returns the alias's shadow
// version with probability ShadowPercent, and nil otherwise or when v is the shadow itself.
func (v *Version) DrawShadow() *Version {
	m := v.model
	if m == nil || m.shadowBP == 0 || m.Shadow == v {
		return nil
	}
	if rand.Uint64N(bpScale) < m.shadowBP {
		return m.Shadow
	}
	return nil
}
