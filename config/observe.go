package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Drift configures the drift statistics the gateway keeps per model version.
type Drift struct {
	// Off turns statistics and drift tests off; they are on by default.
	Off bool `yaml:"off"`
	// Interval is how often drift is evaluated (off the request path).
	Interval time.Duration `yaml:"interval"`
	// MinSamples is the fewest requests on each side before a verdict is given.
	MinSamples int `yaml:"min_samples"`
	// RefusalPhrases replace the built-in list of completion openings that count as refusals.
	RefusalPhrases []string `yaml:"refusal_phrases"`
	// Webhook, when set, receives a POST of JSON each time a version's verdict changes.
	Webhook string `yaml:"webhook"`
}

// Drift references.
const (
	ReferenceOnPromote = "on_promote" // frozen when the version becomes stable, or on demand
	ReferenceManual    = "manual"     // frozen only on demand (admin API)
	ReferenceRolling   = "rolling"    // the previous window
)

// ModelDrift configures one alias's drift windows.
type ModelDrift struct {
	Window    time.Duration `yaml:"window"`    // live window length, in 1/15 slices
	Reference string        `yaml:"reference"` // on_promote | manual | rolling
}

// Cache configures the response cache's store, shared by every alias.
type Cache struct {
	MaxBytes int64 `yaml:"max_bytes"` // bound on stored responses
}

// ModelCache configures response caching for one alias.
type ModelCache struct {
	Enabled bool          `yaml:"enabled"`
	TTL     time.Duration `yaml:"ttl"`
	// Nondeterministic caches requests whose answers vary (temperature > 0, no seed) too.
	Nondeterministic bool `yaml:"nondeterministic"`
}

// Defaults of the drift and cache sections.
const (
	DefaultDriftInterval   = 30 * time.Second
	DefaultDriftMinSamples = 100
	DefaultDriftWindow     = 15 * time.Minute
	DefaultDriftReference  = ReferenceOnPromote
	DefaultCacheMaxBytes   = 256 << 20
	DefaultCacheTTL        = 10 * time.Minute
	DefaultStatePath       = "llmgate-state.db"
)

// MemoryHeadroom is the least room limits.memory_bytes must leave beside a full cache. With the
// built-in safety rules and the cache full, the rest of the heap is about 15 MB (the safety
// tables 9, the access log's buffers up to 8 under heavy load, the cache's own bookkeeping 4),
// and the runtime holds about 17 MB more than the live heap (spans, stacks, pages not yet
// returned). At 32 MiB of headroom the heap goal met the live heap once the cache and the log
// buffers were full: the collector ran 15 times a second, and cache hits fell from 76,000 to
// 45,000 req/s (bench/RESULTS.md, 2026-11-29). 40 MiB leaves about 8 MB of garbage between
// collections. It is a floor for the built-in rules, not a guarantee: more rule sets, more
// connections and more model versions need more.
const MemoryHeadroom = 40 << 20

func (c *Config) applyObserveDefaults() {
	setDefault(c, "drift.interval", &c.Drift.Interval, DefaultDriftInterval)
	setDefault(c, "drift.min_samples", &c.Drift.MinSamples, DefaultDriftMinSamples)
	setDefault(c, "cache.max_bytes", &c.Cache.MaxBytes, DefaultCacheMaxBytes)
	setDefault(c, "state.path", &c.State.Path, DefaultStatePath)
	for i := range c.Models {
		m := &c.Models[i]
		mk := indexKey("models", i)
		setDefault(c, mk+".drift.window", &m.Drift.Window, DefaultDriftWindow)
		setDefault(c, mk+".drift.reference", &m.Drift.Reference, DefaultDriftReference)
		setDefault(c, mk+".cache.ttl", &m.Cache.TTL, DefaultCacheTTL)
	}
}

func (v *validator) observe(c *Config) {
	if c.Drift.Interval < time.Second {
		v.addf("drift.interval", "must be at least 1s, got %s", c.Drift.Interval)
	}
	if c.Drift.MinSamples < 1 {
		v.addf("drift.min_samples", "must be >= 1, got %d", c.Drift.MinSamples)
	}
	for i, p := range c.Drift.RefusalPhrases {
		if p == "" {
			v.addf(indexKey("drift.refusal_phrases", i), "must not be empty")
		}
	}
	if c.Drift.Webhook != "" {
		v.backendURL("drift.webhook", c.Drift.Webhook)
	}
	for i, a := range c.Admin.AllowBackends {
		if msg := allowEntryProblem(a); msg != "" {
			v.addf(indexKey("admin.allow_backends", i), "%s", msg)
		}
	}
	tokenEnvs := map[string]bool{"LLMGATE_ADMIN_TOKEN": true}
	for _, t := range c.Admin.Tokens {
		tokenEnvs[t.TokenEnv] = true
	}
	// The backends' variables are sent to the backends, and an admin deploy may name any of
	// them for a URL it chooses: an admin token's variable there would hand the token out.
	for i, m := range c.Models {
		mk := indexKey("models", i)
		for j, ver := range m.Versions {
			for k, b := range ver.Backends {
				if b.APIKeyEnv != "" && tokenEnvs[b.APIKeyEnv] {
					v.addf(indexKey(indexKey(mk+".versions", j)+".backends", k)+".api_key_env",
						"%s holds an admin token; it must never be sent to a backend: give the backend a variable of its own", b.APIKeyEnv)
				}
			}
		}
		if cl := m.Guard.Safety.Classifier; cl != nil && cl.APIKeyEnv != "" && tokenEnvs[cl.APIKeyEnv] {
			v.addf(mk+".guard.safety.classifier.api_key_env",
				"%s holds an admin token; it must never be sent to the classifier: give it a variable of its own", cl.APIKeyEnv)
		}
	}
	seenEnv := map[string]int{}
	for i, e := range c.Admin.APIKeyEnvs {
		k := indexKey("admin.api_key_envs", i)
		j, dup := seenEnv[e]
		switch {
		case !envNameRE.MatchString(e):
			v.addf(k, "want the name of an environment variable, got %q", e)
		case tokenEnvs[e]:
			// A deploy could send the admin token to any backend URL it names.
			v.addf(k, "%s holds an admin token; it must never be sent to a backend", e)
		case dup:
			v.addf(k, "duplicate %q (also admin.api_key_envs[%d])", e, j)
		}
		seenEnv[e] = i
	}
	if c.State.Path == "" {
		v.addf("state.path", "must not be empty")
	}
	if c.Cache.MaxBytes < 1<<20 {
		v.addf("cache.max_bytes", "must be at least 1048576 (1 MiB), got %d", c.Cache.MaxBytes)
	}
	// Below the cache plus the rest of the gateway the collector would run without pause.
	if least := int64(c.Cache.MaxBytes) + MemoryHeadroom; c.Limits.MemoryBytes != 0 && c.Limits.MemoryBytes < least {
		v.addf("limits.memory_bytes", "must be 0 (no limit) or at least cache.max_bytes + %d MiB (%d), got %d",
			MemoryHeadroom>>20, least, c.Limits.MemoryBytes)
	}
	for i, m := range c.Models {
		mk := indexKey("models", i)
		if m.Drift.Window < 15*time.Second || m.Drift.Window > 24*time.Hour {
			v.addf(mk+".drift.window", "must be 15s..24h, got %s", m.Drift.Window)
		}
		switch m.Drift.Reference {
		case ReferenceOnPromote, ReferenceManual, ReferenceRolling:
		default:
			v.addf(mk+".drift.reference", "must be on_promote, manual or rolling, got %q", m.Drift.Reference)
		}
		if m.Cache.TTL <= 0 {
			v.addf(mk+".cache.ttl", "must be > 0, got %s", m.Cache.TTL)
		}
	}
}

// allowEntryProblem checks one admin.allow_backends entry: a CIDR block, or a host name in
// which "*" stands for any run of characters within one label ("gpu-*.internal", "*.lab").
func allowEntryProblem(a string) string {
	if strings.Contains(a, "/") {
		if _, _, err := net.ParseCIDR(a); err != nil {
			return fmt.Sprintf("want a CIDR block such as 10.0.0.0/8 or a host name such as gpu-*.internal, got %q", a)
		}
		return ""
	}
	if a == "" || strings.Trim(a, "*.") == "" {
		return fmt.Sprintf("%q would allow every host; leave allow_backends out instead", a)
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '*') {
			return fmt.Sprintf("want a CIDR block or a host name (letters, digits, - . and *), got %q", a)
		}
	}
	return ""
}
