package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits Validate enforces.
const (
	MaxRetryAttempts = 10
	MaxWeight        = 1_000_000 // keeps the sum of a version's weights far from overflow
)

var (
	// Aliases and version names travel in the "model" field, URLs and metric labels.
	// '@' is excluded because "alias@version" pins a version.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9._:/-]+$`)
	// Catches a secret pasted where the name of the variable holding it belongs.
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate checks c, normally after ApplyDefaults, and returns every problem found joined with
// errors.Join in line order (JoinInLineOrder; nil if none). Each is an *Error naming the key path and, for a Config from
// Parse or Load, the line (or the environment variable that set the value).
func (c *Config) Validate() error {
	v := validator{src: &c.src}
	v.listen("listen", c.Listen)
	v.listen("admin.listen", c.Admin.Listen)
	if listenConflict(c.Listen, c.Admin.Listen) {
		v.addf("admin.listen", "%q overlaps listen %q; the admin API needs its own port", c.Admin.Listen, c.Listen)
	}
	v.tokens(c.Admin.Tokens)
	if c.Limits.MaxBodyBytes <= 0 {
		v.addf("limits.max_body_bytes", "must be > 0, got %d", c.Limits.MaxBodyBytes)
	}
	v.timeouts(c.Timeouts)
	v.positive("health.interval", c.Health.Interval)
	v.positive("health.timeout", c.Health.Timeout)
	if c.Health.EjectFor < time.Second {
		// The router ejects for at least a second; less would be raised without a word.
		v.addf("health.eject_for", "must be at least 1s, got %s", c.Health.EjectFor)
	}
	if c.Health.FailureThreshold < 1 {
		v.addf("health.failure_threshold", "must be >= 1, got %d", c.Health.FailureThreshold)
	}
	if c.Shutdown.DrainDelay < 0 {
		v.addf("shutdown.drain_delay", "must be >= 0, got %s", c.Shutdown.DrainDelay)
	}
	v.positive("shutdown.grace", c.Shutdown.Grace)
	if n := c.Retry.Attempts; n < 1 || n > MaxRetryAttempts {
		v.addf("retry.attempts", "must be 1..%d, got %d", MaxRetryAttempts, n)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.addf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Prompts {
		// Nothing reads it: the request log never holds prompt text. Refused rather than
		// ignored, so that no one counts on a log of prompts that is not written.
		v.addf("log.prompts", "prompt logging is not implemented (the request log never holds prompt text); remove the key or set it to false")
	}
	v.models(c.Models)
	v.observe(c)
	return JoinInLineOrder(v.errs...)
}

// validator collects problems located through src.
type validator struct {
	src  *source
	errs []error
}

func (v *validator) addf(key, format string, args ...any) {
	if v.src.misspelt[key] || v.src.underUnreadable(key) {
		return
	}
	v.errs = append(v.errs, v.src.errorAt(key, fmt.Sprintf(format, args...)))
}

func (v *validator) listen(key, addr string) {
	if _, _, err := splitListen(addr); err != nil {
		v.addf(key, "%v", err)
	}
}

// splitListen splits a host:port listen address; the host may be empty (all interfaces) and
// port 0 picks a free port.
func splitListen(addr string) (host string, port uint64, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port such as \":8080\", got %q", addr)
	}
	port, err = strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("want a port number 0..65535, got %q", p)
	}
	return host, port, nil
}

// listenConflict reports whether two listen addresses would bind the same port: equal fixed
// ports on the same host, or where either binds all interfaces.
func listenConflict(a, b string) bool {
	ha, pa, errA := splitListen(a)
	hb, pb, errB := splitListen(b)
	if errA != nil || errB != nil || pa != pb || pa == 0 {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

func (v *validator) tokens(tokens []AdminToken) {
	seen, seenEnv := map[string]int{}, map[string]int{}
	for i, t := range tokens {
		k := indexKey("admin.tokens", i)
		if t.Name == "" {
			v.addf(k+".name", "must not be empty; it is recorded as the actor of admin changes")
		} else if !printable(t.Name) {
			v.addf(k+".name", "must be printable UTF-8 without surrounding spaces, got %q", t.Name)
		} else if j, dup := seen[t.Name]; dup {
			v.addf(k+".name", "duplicate token name %q (also admin.tokens[%d])", t.Name, j)
		} else {
			seen[t.Name] = i
		}
		if !envNameRE.MatchString(t.TokenEnv) {
			v.addf(k+".token_env", "want the name of an environment variable, got %q", t.TokenEnv)
		} else if j, dup := seenEnv[t.TokenEnv]; dup {
			v.addf(k+".token_env", "%s is also admin.tokens[%d]'s variable; each token needs its own secret", t.TokenEnv, j)
		} else {
			seenEnv[t.TokenEnv] = i
		}
		if t.Role != "admin" && t.Role != "read" {
			v.addf(k+".role", "must be admin or read, got %q", t.Role)
		}
	}
}

// printable reports whether s is valid UTF-8 with no control characters and no leading or
// trailing space: free-form names end up in logs, headers and persisted state.
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

func (v *validator) timeouts(t Timeouts) {
	v.positive("timeouts.connect", t.Connect)
	v.positive("timeouts.first_byte", t.FirstByte)
	v.positive("timeouts.idle", t.Idle)
	v.positive("timeouts.total", t.Total)
	total := t.Total.String()
	if env, ok := v.src.env["timeouts.total"]; ok {
		// The error is located at the other key, whose line or variable holds no total.
		total += " (from " + env + ")"
	}
	for _, p := range []struct {
		key    string
		d, def time.Duration
	}{{"timeouts.connect", t.Connect, DefaultConnectTimeout}, {"timeouts.first_byte", t.FirstByte, DefaultFirstByteTimeout}, {"timeouts.idle", t.Idle, DefaultIdleTimeout}} {
		switch {
		case p.d <= t.Total || t.Total <= 0:
		case p.d == p.def && !v.src.written(p.key):
			// Only total was set, shorter than this default: say which key to set as well.
			v.addf(p.key, "the default, %s, exceeds timeouts.total %s; set %s to at most %s too", p.d, total, p.key, t.Total)
		default:
			v.addf(p.key, "%s exceeds timeouts.total %s", p.d, total)
		}
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.addf(key, "must be > 0, got %s", d)
	}
}

func (v *validator) models(models []Model) {
	if len(models) == 0 {
		v.addf("models", "at least one model is required")
	}
	seen := map[string]int{}
	for i, m := range models {
		k := indexKey("models", i)
		if v.name(k+".alias", "alias", m.Alias) {
			if j, dup := seen[m.Alias]; dup {
				v.addf(k+".alias", "duplicate alias %q (also models[%d])", m.Alias, j)
			} else {
				seen[m.Alias] = i
			}
		}
		v.versions(k, m)
		v.guard(k+".guard", m.Guard)
	}
}

// name checks an alias or version name and reports whether it is well formed.
func (v *validator) name(key, what, s string) bool {
	switch {
	case s == "":
		v.addf(key, "%s must not be empty", what)
	case strings.Contains(s, "@"):
		v.addf(key, "%s %q must not contain '@'; clients pin a version as alias@version", what, s)
	case !nameRE.MatchString(s):
		v.addf(key, "%s %q may only contain letters, digits and . _ : / -", what, s)
	case !addressable(s):
		v.addf(key, "%s %q has an empty, \".\" or \"..\" part between slashes; clients and proxies rewrite such URL paths, so the admin API could not address it", what, s)
	default:
		return true
	}
	return false
}

// addressable reports whether a name survives as one admin URL path segment: HTTP clients and
// proxies resolve "." and ".." and merge "//" (RFC 3986 5.2.4). The router applies the same rule
// to names deployed through the admin API.
func addressable(s string) bool {
	for part := range strings.SplitSeq(s, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}

func (v *validator) versions(mk string, m Model) {
	if len(m.Versions) == 0 {
		v.addf(mk+".versions", "at least one version is required")
	}
	seen := map[string]int{}
	for i, ver := range m.Versions {
		k := indexKey(mk+".versions", i)
		if v.name(k+".version", "version", ver.Version) {
			if j, dup := seen[ver.Version]; dup {
				v.addf(k+".version", "duplicate version %q (also %s)", ver.Version, indexKey(mk+".versions", j))
			} else {
				seen[ver.Version] = i
			}
		}
		v.backends(k, ver.Backends)
	}
	switch _, ok := seen[m.Stable]; {
	case m.Stable == "" && len(m.Versions) > 1:
		v.addf(mk+".stable", "must name one of the versions when there are several")
	case m.Stable != "" && !ok:
		v.addf(mk+".stable", "names no version of this model: %q", m.Stable)
	}
}

func (v *validator) backends(vk string, backends []Backend) {
	if len(backends) == 0 {
		v.addf(vk+".backends", "at least one backend is required")
		return
	}
	type target struct{ url, model string }
	seen := map[target]int{}
	total := 0
	for i, b := range backends {
		k := indexKey(vk+".backends", i)
		v.backendURL(k+".url", b.URL)
		switch b.Kind {
		case KindVLLM, KindOllama, KindOpenAI:
		default:
			v.addf(k+".kind", "must be vllm, ollama or openai, got %q", b.Kind)
		}
		if b.Model == "" {
			v.addf(k+".model", "must not be empty; it is the name the backend serves the model under")
		} else if !printable(b.Model) {
			v.addf(k+".model", "must be printable UTF-8 without surrounding spaces, got %q", b.Model)
		}
		if j, dup := seen[target{b.URL, b.Model}]; dup && b.URL != "" {
			v.addf(k, "same url and model as %s", indexKey(vk+".backends", j))
		} else {
			seen[target{b.URL, b.Model}] = i
		}
		if b.APIKeyEnv != "" && !envNameRE.MatchString(b.APIKeyEnv) {
			v.addf(k+".api_key_env", "want the name of an environment variable, got %q", b.APIKeyEnv)
		}
		if b.Weight < 0 || b.Weight > MaxWeight {
			v.addf(k+".weight", "must be 0..%d, got %d", MaxWeight, b.Weight)
		} else {
			total += b.Weight
		}
	}
	if total == 0 {
		v.addf(vk+".backends", "weights add up to 0; at least one backend needs weight > 0")
	}
}

// backendURL checks a backend base URL. Credentials belong in api_key_env, not the URL, and a
// query or fragment could not be combined with the request paths the gateway appends.
func (v *validator) backendURL(key, s string) {
	u, err := url.Parse(s)
	if s == "" {
		v.addf(key, "must not be empty")
		return
	}
	if !strings.Contains(s, "://") && (err != nil || u.Scheme != "http" && u.Scheme != "https") {
		// "10.0.0.5:8000" does not even parse, and "gpu1:8000" parses with scheme "gpu1".
		if u, err := url.Parse("http://" + s); err == nil && u.User == nil && u.Hostname() != "" {
			v.addf(key, "has no scheme: want %q (or https://)", u.String())
		} else {
			v.addf(key, "has no scheme: want an http:// or https:// URL")
		}
		return
	}
	if err != nil {
		v.addf(key, "not a valid URL") // the text may hold a password, so it is not echoed
		return
	}
	shown := u.Redacted()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		v.addf(key, "scheme must be http or https, got %q", shown)
	case u.Opaque != "" || u.Hostname() == "":
		v.addf(key, "has no host: %q", shown)
	case u.User != nil:
		v.addf(key, "must not contain user:password; put the key in api_key_env")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		v.addf(key, "must not have a query or fragment: %q", shown)
	default:
		if p := u.Port(); p != "" {
			if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
				v.addf(key, "port must be 1..65535, got %q", p)
			}
		}
	}
}
