package config_test

import (
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

func TestDefaults(t *testing.T) {
	c := config.Default()
	tests := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, ":8080"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:8081"},
		{"max_body_bytes", c.Limits.MaxBodyBytes, 33554432},
		{"connect", c.Timeouts.Connect, 2 * time.Second},
		{"first_byte", c.Timeouts.FirstByte, 60 * time.Second},
		{"idle", c.Timeouts.Idle, 30 * time.Second},
		{"total", c.Timeouts.Total, 10 * time.Minute},
		{"health interval", c.Health.Interval, 5 * time.Second},
		{"health timeout", c.Health.Timeout, 2 * time.Second},
		{"failure_threshold", c.Health.FailureThreshold, 3},
		{"eject_for", c.Health.EjectFor, 10 * time.Second},
		{"retry attempts", c.Retry.Attempts, 2},
		{"drain_delay", c.Shutdown.DrainDelay, time.Duration(0)},
		{"grace", c.Shutdown.Grace, 30 * time.Second},
		{"log level", c.Log.Level, "info"},
		{"log prompts", c.Log.Prompts, false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestApplyDefaultsModels(t *testing.T) {
	c, err := config.Parse([]byte(`
retry: {attempts: 0}   # explicit zero: kept, so Validate reports it
timeouts:              # null: left out, so defaulted
models:
  - alias: one
    versions:
      - version: v1
        backends:
          - {url: "http://a", model: m}
          - {url: "http://b", model: m, weight: 0, kind: vllm}
  - alias: two
    versions:
      - {version: v1, backends: [{url: "http://a", model: m}]}
      - {version: v2, backends: [{url: "http://a", model: m}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	b := c.Models[0].Versions[0].Backends
	tests := []struct {
		name      string
		got, want any
	}{
		{"explicit zero retry kept", c.Retry.Attempts, 0},
		{"null section defaulted", c.Timeouts, config.Default().Timeouts},
		{"stable of a single version", c.Models[0].Stable, "v1"},
		{"no stable guessed among two", c.Models[1].Stable, ""},
		{"kind defaulted", b[0].Kind, config.KindOpenAI},
		{"kind kept", b[1].Kind, config.KindVLLM},
		{"weight defaulted", b[0].Weight, 1},
		{"explicit weight 0 kept", b[1].Weight, 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	// In code there is no file to say "written", so zero means unset.
	built := config.Config{Models: []config.Model{{Versions: []config.Version{{Version: "v", Backends: []config.Backend{{}}}}}}}
	built.ApplyDefaults()
	if got := built.Models[0].Versions[0].Backends[0]; got.Weight != 1 || got.Kind != config.KindOpenAI {
		t.Errorf("built in code: got %+v, want weight 1 kind openai", got)
	}
	if got := built.Models[0].Stable; got != "v" {
		t.Errorf("built in code: got stable %q, want v", got)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"LLMGATE_LISTEN":             ":9000",
		"LLMGATE_ADMIN_LISTEN":       "127.0.0.1:9001",
		"LLMGATE_MAX_BODY_BYTES":     "1024",
		"LLMGATE_TIMEOUT_CONNECT":    "1s",
		"LLMGATE_TIMEOUT_FIRST_BYTE": "2m",
		"LLMGATE_TIMEOUT_IDLE":       "45s",
		"LLMGATE_TIMEOUT_TOTAL":      "1h",
		"LLMGATE_RETRY_ATTEMPTS":     "3",
		"LLMGATE_LOG_LEVEL":          "debug",
	}
	c := valid()
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, ":9000"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9001"},
		{"max_body_bytes", c.Limits.MaxBodyBytes, 1024},
		{"connect", c.Timeouts.Connect, time.Second},
		{"first_byte", c.Timeouts.FirstByte, 2 * time.Minute},
		{"idle", c.Timeouts.Idle, 45 * time.Second},
		{"total", c.Timeouts.Total, time.Hour},
		{"retry", c.Retry.Attempts, 3},
		{"log level", c.Log.Level, "debug"},
		{"untouched", c.Health, config.Default().Health},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

// A bad value from a flag is said to come from the flag, not from the file's line that the
// flag overrode.
func TestSetFlag(t *testing.T) {
	c, err := config.Parse([]byte("listen: ':8080'\nadmin: {listen: '127.0.0.1:8081'}\nmodels: [{alias: a, versions: [{version: v, backends: [{url: 'http://h', model: m}]}]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.ApplyEnv(func(k string) string { return map[string]string{"LLMGATE_LISTEN": ":9000"}[k] }); err != nil {
		t.Fatal(err)
	}
	if err := c.SetFlag("listen", "--listen", "8080"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetFlag("admin.listen", "--admin-listen", "127.0.0.1:9001"); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "8080" || c.Admin.Listen != "127.0.0.1:9001" {
		t.Errorf("got listen %q, admin.listen %q", c.Listen, c.Admin.Listen)
	}
	want := `config: --listen: listen: want host:port such as ":8080", got "8080"`
	if got := errString(c.Validate()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestApplyEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // from ApplyEnv, or else from Validate
	}{
		{"unset leaves defaults", nil, "<nil>"},
		{"bad duration", map[string]string{"LLMGATE_TIMEOUT_IDLE": "5x"},
			`config: LLMGATE_TIMEOUT_IDLE: timeouts.idle: want a duration such as "2s", got "5x"`},
		{"duration without unit", map[string]string{"LLMGATE_TIMEOUT_TOTAL": "600"},
			`config: LLMGATE_TIMEOUT_TOTAL: timeouts.total: "600" has no unit; write "600s" for seconds (or ms, m, h)`},
		{"bad integer", map[string]string{"LLMGATE_MAX_BODY_BYTES": "32MiB"},
			`config: LLMGATE_MAX_BODY_BYTES: limits.max_body_bytes: want an integer, got "32MiB"`},
		{"every bad variable", map[string]string{"LLMGATE_RETRY_ATTEMPTS": "two", "LLMGATE_TIMEOUT_TOTAL": "forever"},
			"config: LLMGATE_TIMEOUT_TOTAL: timeouts.total: want a duration such as \"2s\", got \"forever\"\n" +
				`config: LLMGATE_RETRY_ATTEMPTS: retry.attempts: want an integer, got "two"`},
		{"out of range is named by Validate", map[string]string{"LLMGATE_RETRY_ATTEMPTS": "0"},
			"config: LLMGATE_RETRY_ATTEMPTS: retry.attempts: must be 1..10, got 0"},
		{"bad listen is named by Validate", map[string]string{"LLMGATE_LISTEN": "8080"},
			`config: LLMGATE_LISTEN: listen: want host:port such as ":8080", got "8080"`},
		{"total under a default timeout", map[string]string{"LLMGATE_TIMEOUT_TOTAL": "45s"},
			"config: timeouts.first_byte: the default, 1m0s, exceeds timeouts.total 45s (from LLMGATE_TIMEOUT_TOTAL); set timeouts.first_byte to at most 45s too"},
		{"total under a timeout set to the default's value", map[string]string{"LLMGATE_TIMEOUT_TOTAL": "45s", "LLMGATE_TIMEOUT_FIRST_BYTE": "1m"},
			"config: LLMGATE_TIMEOUT_FIRST_BYTE: timeouts.first_byte: 1m0s exceeds timeouts.total 45s (from LLMGATE_TIMEOUT_TOTAL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Env before defaults on purpose: an env value must survive ApplyDefaults.
			c, err := config.Parse([]byte("retry: {attempts: 2}\nmodels: [{alias: a, versions: [{version: v, backends: [{url: 'http://h', model: m}]}]}]\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = c.ApplyEnv(func(k string) string { return tt.env[k] })
			if err == nil {
				c.ApplyDefaults()
				err = c.Validate()
			}
			if got := errString(err); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
