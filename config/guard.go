package config

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// Guard configures PII redaction and safety filtering for one model alias. The zero value
// turns both off.
type Guard struct {
	PII    PIIGuard    `yaml:"pii"`
	Safety SafetyGuard `yaml:"safety"`
}

// PII actions.
const (
	PIIRedact = "redact" // typed placeholder such as <EMAIL_ADDRESS_1>
	PIIMask   = "mask"   // all but the last 4 characters hidden
	PIIHash   = "hash"   // a short keyed hash, stable per value (across replicas with hash_key_env)
	PIIBlock  = "block"  // the request is refused with a 400
	PIIDetect = "detect" // counted only
	GuardOff  = "off"
)

// PIIGuard configures personal-data handling per direction.
type PIIGuard struct {
	Prompt     string        `yaml:"prompt"`     // redact | mask | hash | block | detect | off
	Completion string        `yaml:"completion"` // redact | mask | hash | block | detect | off
	Restore    bool          `yaml:"restore"`    // put original values back into completions
	Entities   []string      `yaml:"entities"`   // entity types scanned; empty means all
	Overrides  []PIIOverride `yaml:"overrides"`  // per-entity actions that differ
	// HashKeyEnv names the environment variable holding the key of the hash action; without
	// it the key is random per process, so a value's hash changes with each restart and
	// differs between replicas.
	HashKeyEnv string `yaml:"hash_key_env"`
}

// PIIOverride sets the actions for one entity type.
type PIIOverride struct {
	Entity     string `yaml:"entity"`
	Prompt     string `yaml:"prompt"`
	Completion string `yaml:"completion"`
}

// Safety actions.
const (
	SafetyBlock = "block" // prompts: 400 content_filter; completions: the stream is stopped
	SafetyFlag  = "flag"  // x-llmgate-guard header and metrics
	SafetyLog   = "log"   // metrics and the log only
)

// SafetyGuard configures the safety filter per direction.
type SafetyGuard struct {
	Prompt        string `yaml:"prompt"`         // block | flag | log | off
	Completion    string `yaml:"completion"`     // block | flag | log | off
	HoldbackBytes int    `yaml:"holdback_bytes"` // completion text held back to catch split matches
	RulesFile     string `yaml:"rules_file"`     // YAML rule set; empty means the built-in one
	// Classifier is an optional external model that judges prompts (and completions) too.
	Classifier *Classifier `yaml:"classifier"`
}

// Classifier kinds.
const (
	ClassifierModerations = "moderations" // an OpenAI /v1/moderations-compatible endpoint
	ClassifierLlamaGuard  = "llama_guard" // a Llama Guard style model behind /v1/chat/completions
)

// Classifier modes and error policies.
const (
	ClassifierSync  = "sync"  // the prompt waits for the verdict, which can block it
	ClassifierAsync = "async" // verdicts are counted and logged only; requests never wait
	FailOpen        = "fail_open"
	FailClosed      = "fail_closed"
)

// Classifier configures an external safety classifier. Its verdicts are safety matches of the
// direction they judge, so the alias's safety action (block, flag, log) applies to them. It only
// ever sees text after PII redaction.
type Classifier struct {
	Kind      string `yaml:"kind"`        // moderations | llama_guard
	URL       string `yaml:"url"`         // base URL of its server; the kind's path is appended
	Model     string `yaml:"model"`       // model name sent in the request body
	APIKeyEnv string `yaml:"api_key_env"` // environment variable holding its API key
	Mode      string `yaml:"mode"`        // sync | async
	// Timeout bounds one sync verdict; a prompt never waits longer than this for it.
	Timeout time.Duration `yaml:"timeout"`
	OnError string        `yaml:"on_error"` // fail_open | fail_closed: what a sync failure does
	// Completions sends completions to the classifier too, asynchronously (monitoring only):
	// a verdict that arrives after the text was sent cannot unsend it.
	Completions bool `yaml:"completions"`
}

// Defaults for a classifier.
const (
	DefaultClassifierTimeout = 500 * time.Millisecond
)

// DefaultHoldbackBytes bounds how long streamed completion text may be held for scanning.
const DefaultHoldbackBytes = 256

// MinHoldbackBytes is the least hold-back allowed. A match is confirmed only a word after its
// phrase (rules may name words that must not follow), so a window shorter than a phrase and
// that word lets the phrase out before it is matched: 16 or 32 bytes did so for the built-in
// rules on ordinary word-by-word streams.
const MinHoldbackBytes = 128

// Enabled reports whether any guard stage runs for the alias.
func (g Guard) Enabled() bool {
	return on(g.PII.Prompt) || on(g.PII.Completion) || on(g.Safety.Prompt) || on(g.Safety.Completion)
}

func on(action string) bool { return action != "" && action != GuardOff }

// PIIEntityTypes are the entity types pii.entities and pii.overrides may name: what package
// guard finds (a test there keeps the two lists equal).
var PIIEntityTypes = []string{
	"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE",
	"IP_ADDRESS", "MAC_ADDRESS", "CRYPTO", "URL_CREDENTIALS", "SECRET",
}

func (v *validator) guard(key string, g Guard) {
	entity := func(k, name string) {
		if !slices.Contains(PIIEntityTypes, name) {
			v.addf(k, "unknown PII entity type %q; want one of %s", name, strings.Join(PIIEntityTypes, ", "))
		}
	}
	for i, e := range g.PII.Entities {
		entity(indexKey(key+".pii.entities", i), e)
	}
	piiAction := func(k, a string) {
		switch a {
		case "", GuardOff, PIIRedact, PIIMask, PIIHash, PIIBlock, PIIDetect:
		default:
			v.addf(k, "must be redact, mask, hash, block, detect or off, got %q", a)
		}
	}
	safetyAction := func(k, a string) {
		switch a {
		case "", GuardOff, SafetyBlock, SafetyFlag, SafetyLog:
		default:
			v.addf(k, "must be block, flag, log or off, got %q", a)
		}
	}
	piiAction(key+".pii.prompt", g.PII.Prompt)
	piiAction(key+".pii.completion", g.PII.Completion)
	overridden := map[string]int{} // "entity/direction": the override that set it
	for i, o := range g.PII.Overrides {
		k := indexKey(key+".pii.overrides", i)
		if o.Entity == "" {
			v.addf(k+".entity", "must name an entity type")
		} else {
			entity(k+".entity", o.Entity)
			// Likewise for a type pii.entities leaves out: it is not scanned at all.
			if len(g.PII.Entities) > 0 && slices.Contains(PIIEntityTypes, o.Entity) && !slices.Contains(g.PII.Entities, o.Entity) {
				v.addf(k+".entity", "%s is not in pii.entities, so it is not scanned and this override has no effect; add it there", o.Entity)
			}
		}
		piiAction(k+".prompt", o.Prompt)
		piiAction(k+".completion", o.Completion)
		// An override only changes what a direction's scan does with one entity type; with
		// the direction off nothing is scanned, and a "block" here would pass values silently.
		for _, d := range [...]struct{ name, base, action string }{{"prompt", g.PII.Prompt, o.Prompt}, {"completion", g.PII.Completion, o.Completion}} {
			if (d.base == "" || d.base == GuardOff) && d.action != "" && d.action != GuardOff {
				v.addf(k+"."+d.name, "has no effect while pii.%s is off (nothing is scanned); set pii.%s too (detect only counts)", d.name, d.name)
			}
			// Two overrides of one type and direction: the later one silently won, so a
			// "block" above a forgotten "detect" let the values through.
			if d.action == "" || o.Entity == "" {
				continue
			}
			if j, dup := overridden[o.Entity+"/"+d.name]; dup {
				v.addf(k+"."+d.name, "%s's %s action is set already by pii.overrides[%d]; keep one", o.Entity, d.name, j)
			}
			overridden[o.Entity+"/"+d.name] = i
		}
	}
	if g.PII.HashKeyEnv != "" && !envNameRE.MatchString(g.PII.HashKeyEnv) {
		v.addf(key+".pii.hash_key_env", "want the name of an environment variable, got %q", g.PII.HashKeyEnv)
	}
	if g.PII.Restore && g.PII.Prompt != PIIRedact {
		v.addf(key+".pii.restore", "needs pii.prompt: redact (only placeholders can be restored)")
	}
	safetyAction(key+".safety.prompt", g.Safety.Prompt)
	safetyAction(key+".safety.completion", g.Safety.Completion)
	if g.Safety.RulesFile != "" && !on(g.Safety.Prompt) && !on(g.Safety.Completion) {
		// As for an override: the rules would be read and never run.
		v.addf(key+".safety.rules_file", "has no effect while safety.prompt and safety.completion are off; set one of them (log only counts)")
	}
	if h := g.Safety.HoldbackBytes; h != 0 && (h < MinHoldbackBytes || h > 1<<20) {
		v.addf(key+".safety.holdback_bytes", "must be %d..1048576 (0 for the default, %d), got %d", MinHoldbackBytes, DefaultHoldbackBytes, h)
	}
	if c := g.Safety.Classifier; c != nil {
		v.classifier(key+".safety.classifier", c, g.Safety)
	}
}

func (v *validator) classifier(key string, c *Classifier, s SafetyGuard) {
	switch c.Kind {
	case ClassifierModerations, ClassifierLlamaGuard:
	default:
		v.addf(key+".kind", "must be moderations or llama_guard, got %q", c.Kind)
	}
	v.backendURL(key+".url", c.URL)
	if c.Kind == ClassifierLlamaGuard && c.Model == "" {
		v.addf(key+".model", "must name the Llama Guard model its server serves")
	}
	if c.APIKeyEnv != "" && !envNameRE.MatchString(c.APIKeyEnv) {
		v.addf(key+".api_key_env", "want the name of an environment variable, got %q", c.APIKeyEnv)
	}
	switch c.Mode {
	case ClassifierSync, ClassifierAsync:
	default:
		v.addf(key+".mode", "must be sync or async, got %q", c.Mode)
	}
	switch c.OnError {
	case FailOpen, FailClosed:
	default:
		v.addf(key+".on_error", "must be fail_open or fail_closed, got %q", c.OnError)
	}
	if c.OnError == FailClosed && c.Mode == ClassifierAsync {
		// Nothing waits for an async verdict, so nothing is refused when it fails: prompts
		// would be served unchecked under a setting that says otherwise.
		v.addf(key+".on_error", "fail_closed needs mode: sync; an async classifier never holds a prompt, so its failures refuse none")
	}
	if c.Timeout <= 0 || c.Timeout > time.Minute {
		v.addf(key+".timeout", "must be > 0 and at most 1m, got %s", c.Timeout)
	}
	if !on(s.Prompt) && !(c.Completions && on(s.Completion)) {
		v.addf(key, "judges nothing: set safety.prompt, or completions: true with safety.completion")
	} else if c.Completions && !on(s.Completion) {
		// With the completion guard off no completion text is collected for it (unless
		// another completion stage happened to be on): it judged none, without a word.
		v.addf(key+".completions", "needs safety.completion (log will do): while it is off, no completion is judged")
	}
}

// Endpoint returns the URL the classifier is called on.
func (c *Classifier) Endpoint() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return c.URL
	}
	path := "/v1/moderations"
	if c.Kind == ClassifierLlamaGuard {
		path = "/v1/chat/completions"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}
