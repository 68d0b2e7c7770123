package config

import (
	"strings"
	"testing"
)

func TestGuardConfig(t *testing.T) {
	base := `
models:
  - alias: chat
    versions:
      - version: v1
        backends: [{url: "http://127.0.0.1:8000", kind: vllm, model: m}]
    guard:
`
	tests := []struct {
		name, guard, wantErr string
		enabled              bool
	}{
		{"off by default", "      {}\n", "", false},
		{"pii redact with restore", "      pii: {prompt: redact, completion: redact, restore: true, entities: [EMAIL_ADDRESS]}\n", "", true},
		{"safety only", "      safety: {prompt: block, completion: flag, holdback_bytes: 512}\n", "", true},
		{"override", "      pii: {prompt: mask, overrides: [{entity: CREDIT_CARD, prompt: block}]}\n", "", true},
		{"bad pii action", "      pii: {prompt: scrub}\n", "models[0].guard.pii.prompt: must be redact, mask, hash, block, detect or off", false},
		{"bad safety action", "      safety: {completion: redact}\n", "models[0].guard.safety.completion: must be block, flag, log or off", false},
		{"restore without redact", "      pii: {prompt: mask, restore: true}\n", "models[0].guard.pii.restore: needs pii.prompt: redact", false},
		{"override without entity", "      pii: {overrides: [{prompt: block}]}\n", "models[0].guard.pii.overrides[0].entity", false},
		{"override of a direction that is off", "      pii: {overrides: [{entity: CREDIT_CARD, prompt: block}]}\n",
			"models[0].guard.pii.overrides[0].prompt: has no effect while pii.prompt is off (nothing is scanned); set pii.prompt too (detect only counts)", false},
		{"completion override with only the prompt on", "      pii: {prompt: redact, overrides: [{entity: SECRET, completion: block}]}\n",
			"models[0].guard.pii.overrides[0].completion: has no effect while pii.completion is off", false},
		{"override turning an entity off", "      pii: {prompt: detect, overrides: [{entity: IP_ADDRESS, prompt: off, completion: off}]}\n", "", true},
		{"unknown entity", "      pii: {prompt: redact, entities: [EMAIL_ADDRESS, EMAIL]}\n", `models[0].guard.pii.entities[1]: unknown PII entity type "EMAIL"`, false},
		{"override of an unknown entity", "      pii: {prompt: redact, overrides: [{entity: SSN, prompt: block}]}\n", `models[0].guard.pii.overrides[0].entity: unknown PII entity type "SSN"`, false},
		{"override of an entity not scanned", "      pii: {prompt: redact, entities: [EMAIL_ADDRESS], overrides: [{entity: CREDIT_CARD, prompt: block}]}\n",
			"models[0].guard.pii.overrides[0].entity: CREDIT_CARD is not in pii.entities, so it is not scanned and this override has no effect; add it there", false},
		{"two overrides of one entity and direction", "      pii: {prompt: redact, overrides: [{entity: EMAIL_ADDRESS, prompt: block}, {entity: EMAIL_ADDRESS, prompt: detect}]}\n",
			"models[0].guard.pii.overrides[1].prompt: EMAIL_ADDRESS's prompt action is set already by pii.overrides[0]; keep one", false},
		{"overrides of one entity in each direction", "      pii: {prompt: redact, completion: redact, entities: [EMAIL_ADDRESS], overrides: [{entity: EMAIL_ADDRESS, prompt: block}, {entity: EMAIL_ADDRESS, completion: mask}]}\n", "", true},
		{"hash key", "      pii: {prompt: hash, hash_key_env: LLMGATE_HASH_KEY}\n", "", true},
		{"hash key not a variable name", "      pii: {prompt: hash, hash_key_env: \"$KEY\"}\n", `models[0].guard.pii.hash_key_env: want the name of an environment variable, got "$KEY"`, false},
		{"rules file with safety off", "      pii: {prompt: redact}\n      safety: {rules_file: rules.yaml}\n",
			"models[0].guard.safety.rules_file: has no effect while safety.prompt and safety.completion are off; set one of them (log only counts)", false},
		{"negative holdback", "      safety: {holdback_bytes: -1}\n", "holdback_bytes: must be 128..1048576", false},
		{"holdback too short to match", "      safety: {completion: block, holdback_bytes: 32}\n", "holdback_bytes: must be 128..1048576 (0 for the default, 256), got 32", false},
		{"unknown key", "      pii: {prompt: redact, restor: true}\n", `unknown key "restor"`, false},
		{"classifier", "      safety: {prompt: block, classifier: {kind: moderations, url: \"http://mod:8000\"}}\n", "", true},
		{"classifier llama guard async", "      safety: {completion: log, classifier: {kind: llama_guard, url: \"http://lg:8000\", model: lg3, mode: async, completions: true}}\n", "", true},
		{"classifier bad kind", "      safety: {prompt: block, classifier: {kind: presidio, url: \"http://mod:8000\"}}\n", "classifier.kind: must be moderations or llama_guard", false},
		{"classifier bad url", "      safety: {prompt: block, classifier: {kind: moderations, url: \"ftp://mod\"}}\n", "classifier.url: scheme must be http or https", false},
		{"classifier without model", "      safety: {prompt: block, classifier: {kind: llama_guard, url: \"http://lg:8000\"}}\n", "classifier.model: must name the Llama Guard model", false},
		{"classifier bad policy", "      safety: {prompt: block, classifier: {kind: moderations, url: \"http://m:1\", on_error: ignore}}\n", "classifier.on_error: must be fail_open or fail_closed", false},
		{"classifier judges nothing", "      safety: {completion: block, classifier: {kind: moderations, url: \"http://m:1\"}}\n", "classifier: judges nothing", false},
		{"classifier completions without safety.completion", "      safety: {prompt: block, classifier: {kind: moderations, url: \"http://m:1\", completions: true}}\n",
			"models[0].guard.safety.classifier.completions: needs safety.completion (log will do): while it is off, no completion is judged", false},
		{"classifier async fail_closed", "      safety: {prompt: block, classifier: {kind: moderations, url: \"http://m:1\", mode: async, on_error: fail_closed}}\n",
			"models[0].guard.safety.classifier.on_error: fail_closed needs mode: sync; an async classifier never holds a prompt, so its failures refuse none", false},
		{"classifier unknown key", "      safety: {prompt: block, classifier: {kind: moderations, url: \"http://m:1\", timeot: 1s}}\n", `unknown key "timeot"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base + tt.guard))
			if err == nil {
				c.ApplyDefaults()
				err = c.Validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Models[0].Guard.Enabled(); got != tt.enabled {
				t.Fatalf("Enabled() = %v, want %v", got, tt.enabled)
			}
			if c.Models[0].Guard.Safety.HoldbackBytes == 0 {
				t.Fatal("holdback_bytes has no default")
			}
			if cl := c.Models[0].Guard.Safety.Classifier; cl != nil && (cl.Timeout != DefaultClassifierTimeout || cl.OnError != FailOpen || cl.Mode == "") {
				t.Fatalf("classifier defaults not applied: %+v", cl)
			}
		})
	}
}
