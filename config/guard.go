package config

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
	PIIHash   = "hash"   // a short keyed hash, stable per value
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
}

// DefaultHoldbackBytes bounds how long streamed completion text may be held for scanning.
const DefaultHoldbackBytes = 256

// Enabled reports whether any guard stage runs for the alias.
func (g Guard) Enabled() bool {
	return on(g.PII.Prompt) || on(g.PII.Completion) || on(g.Safety.Prompt) || on(g.Safety.Completion)
}

func on(action string) bool { return action != "" && action != GuardOff }

func (v *validator) guard(key string, g Guard) {
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
	for i, o := range g.PII.Overrides {
		k := indexKey(key+".pii.overrides", i)
		if o.Entity == "" {
			v.addf(k+".entity", "must name an entity type")
		}
		piiAction(k+".prompt", o.Prompt)
		piiAction(k+".completion", o.Completion)
	}
	if g.PII.Restore && g.PII.Prompt != PIIRedact {
		v.addf(key+".pii.restore", "needs pii.prompt: redact (only placeholders can be restored)")
	}
	safetyAction(key+".safety.prompt", g.Safety.Prompt)
	safetyAction(key+".safety.completion", g.Safety.Completion)
	if g.Safety.HoldbackBytes < 0 || g.Safety.HoldbackBytes > 1<<20 {
		v.addf(key+".safety.holdback_bytes", "must be 0..1048576, got %d", g.Safety.HoldbackBytes)
	}
}
