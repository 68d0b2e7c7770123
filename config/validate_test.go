package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

// valid returns a small Config, built in code, that passes Validate.
func valid() *config.Config {
	c := &config.Config{
		Admin: config.Admin{Tokens: []config.AdminToken{{Name: "ops", TokenEnv: "LLMGATE_ADMIN_TOKEN", Role: "admin"}}},
		Models: []config.Model{{
			Alias: "chat",
			Versions: []config.Version{{
				Version:  "v1",
				Backends: []config.Backend{{URL: "http://10.0.0.5:8000", Kind: config.KindVLLM, Model: "m"}},
			}},
		}},
	}
	c.ApplyDefaults()
	return c
}

// backend returns the first backend of the first version of the first model.
func backend(c *config.Config) *config.Backend { return &c.Models[0].Versions[0].Backends[0] }

func TestValidate(t *testing.T) {
	const b0 = "config: models[0].versions[0].backends[0]"
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   []string // one line per problem; none for a valid config
	}{
		{"valid", func(c *config.Config) {}, nil},

		{"no models", func(c *config.Config) { c.Models = nil }, []string{"config: models: at least one model is required"}},
		{"empty alias", func(c *config.Config) { c.Models[0].Alias = "" }, []string{"config: models[0].alias: alias must not be empty"}},
		{"alias with @", func(c *config.Config) { c.Models[0].Alias = "chat@v1" },
			[]string{`config: models[0].alias: alias "chat@v1" must not contain '@'; clients pin a version as alias@version`}},
		{"alias with space", func(c *config.Config) { c.Models[0].Alias = "my chat" },
			[]string{`config: models[0].alias: alias "my chat" may only contain letters, digits and . _ : / -`}},
		{"alias charset", func(c *config.Config) { c.Models[0].Alias = "meta-llama/Llama-3.1:8b_x" }, nil},
		{"alias with ..", func(c *config.Config) { c.Models[0].Alias = "../x" },
			[]string{`config: models[0].alias: alias "../x" has an empty, "." or ".." part between slashes; clients and proxies rewrite such URL paths, so the admin API could not address it`}},
		{"version with //", func(c *config.Config) { c.Models[0].Versions[0].Version = "a//b"; c.Models[0].Stable = "a//b" },
			[]string{`config: models[0].versions[0].version: version "a//b" has an empty, "." or ".." part between slashes; clients and proxies rewrite such URL paths, so the admin API could not address it`,
				`config: models[0].stable: names no version of this model: "a//b"`}},
		{"duplicate alias", func(c *config.Config) { c.Models = append(c.Models, c.Models[0]) },
			[]string{`config: models[1].alias: duplicate alias "chat" (also models[0])`}},

		{"no versions", func(c *config.Config) { c.Models[0].Versions = nil }, []string{
			"config: models[0].versions: at least one version is required",
			`config: models[0].stable: names no version of this model: "v1"`,
		}},
		{"empty version", func(c *config.Config) { c.Models[0].Versions[0].Version = ""; c.Models[0].Stable = "" },
			[]string{"config: models[0].versions[0].version: version must not be empty"}},
		{"version with @", func(c *config.Config) { c.Models[0].Versions[0].Version = "v@1"; c.Models[0].Stable = "" },
			[]string{`config: models[0].versions[0].version: version "v@1" must not contain '@'; clients pin a version as alias@version`}},
		{"duplicate version", func(c *config.Config) { m := &c.Models[0]; m.Versions = append(m.Versions, m.Versions[0]) },
			[]string{`config: models[0].versions[1].version: duplicate version "v1" (also models[0].versions[0])`}},
		{"same version name in two models", func(c *config.Config) {
			c.Models = append(c.Models, c.Models[0])
			c.Models[1].Alias = "other"
		}, nil},
		{"stable required with two versions", func(c *config.Config) {
			m := &c.Models[0]
			m.Versions = append(m.Versions, m.Versions[0])
			m.Versions[1].Version = "v2"
			m.Stable = ""
		}, []string{"config: models[0].stable: must name one of the versions when there are several"}},
		{"stable unknown", func(c *config.Config) { c.Models[0].Stable = "v9" },
			[]string{`config: models[0].stable: names no version of this model: "v9"`}},

		{"no backends", func(c *config.Config) { c.Models[0].Versions[0].Backends = nil },
			[]string{"config: models[0].versions[0].backends: at least one backend is required"}},
		{"empty url", func(c *config.Config) { backend(c).URL = "" }, []string{b0 + ".url: must not be empty"}},
		{"url scheme", func(c *config.Config) { backend(c).URL = "ftp://h" }, []string{b0 + `.url: scheme must be http or https, got "ftp://h"`}},
		{"url no scheme", func(c *config.Config) { backend(c).URL = "10.0.0.5:8000" }, []string{b0 + `.url: has no scheme: want "http://10.0.0.5:8000" (or https://)`}},
		{"host:port no scheme", func(c *config.Config) { backend(c).URL = "gpu1:8000" }, []string{b0 + `.url: has no scheme: want "http://gpu1:8000" (or https://)`}},
		{"host no scheme", func(c *config.Config) { backend(c).URL = "gpu1" }, []string{b0 + `.url: has no scheme: want "http://gpu1" (or https://)`}},
		{"no scheme with password", func(c *config.Config) { backend(c).URL = "u:secret@gpu1:8000" }, []string{b0 + ".url: has no scheme: want an http:// or https:// URL"}},
		{"url no host", func(c *config.Config) { backend(c).URL = "http:///v1" }, []string{b0 + `.url: has no host: "http:///v1"`}},
		{"url opaque", func(c *config.Config) { backend(c).URL = "http:h" }, []string{b0 + `.url: has no host: "http:h"`}},
		{"url userinfo", func(c *config.Config) { backend(c).URL = "http://u:secret@h" },
			[]string{b0 + ".url: must not contain user:password; put the key in api_key_env"}},
		{"url query", func(c *config.Config) { backend(c).URL = "http://h/?a=1" }, []string{b0 + `.url: must not have a query or fragment: "http://h/?a=1"`}},
		{"url empty query", func(c *config.Config) { backend(c).URL = "http://h?" }, []string{b0 + `.url: must not have a query or fragment: "http://h?"`}},
		{"url fragment", func(c *config.Config) { backend(c).URL = "http://h#x" }, []string{b0 + `.url: must not have a query or fragment: "http://h#x"`}},
		{"url port 0", func(c *config.Config) { backend(c).URL = "http://h:0" }, []string{b0 + `.url: port must be 1..65535, got "0"`}},
		{"url port too big", func(c *config.Config) { backend(c).URL = "http://h:65536" }, []string{b0 + `.url: port must be 1..65535, got "65536"`}},
		{"url https with path", func(c *config.Config) { backend(c).URL = "https://[::1]:8443/v1" }, nil},
		{"bad kind", func(c *config.Config) { backend(c).Kind = "tgi" }, []string{b0 + `.kind: must be vllm, ollama or openai, got "tgi"`}},
		{"empty model", func(c *config.Config) { backend(c).Model = "" },
			[]string{b0 + ".model: must not be empty; it is the name the backend serves the model under"}},
		{"model with newline", func(c *config.Config) { backend(c).Model = "m\n" },
			[]string{b0 + `.model: must be printable UTF-8 without surrounding spaces, got "m\n"`}},
		{"model path with space", func(c *config.Config) { backend(c).Model = "/models/My Model" }, nil},
		{"bad api_key_env", func(c *config.Config) { backend(c).APIKeyEnv = "sk-abc123" },
			[]string{b0 + `.api_key_env: want the name of an environment variable, got "sk-abc123"`}},
		{"duplicate backend", func(c *config.Config) { v := &c.Models[0].Versions[0]; v.Backends = append(v.Backends, v.Backends[0]) },
			[]string{"config: models[0].versions[0].backends[1]: same url and model as models[0].versions[0].backends[0]"}},
		{"negative weight", func(c *config.Config) { backend(c).Weight = -1 }, []string{
			b0 + ".weight: must be 0..1000000, got -1",
			"config: models[0].versions[0].backends: weights add up to 0; at least one backend needs weight > 0",
		}},
		{"huge weight", func(c *config.Config) { backend(c).Weight = config.MaxWeight + 1 }, []string{
			b0 + ".weight: must be 0..1000000, got 1000001",
			"config: models[0].versions[0].backends: weights add up to 0; at least one backend needs weight > 0",
		}},
		{"all weights zero", func(c *config.Config) { backend(c).Weight = 0 },
			[]string{"config: models[0].versions[0].backends: weights add up to 0; at least one backend needs weight > 0"}},
		{"one drained backend", func(c *config.Config) {
			v := &c.Models[0].Versions[0]
			v.Backends = append(v.Backends, config.Backend{URL: "http://10.0.0.6:8000", Kind: config.KindOllama, Model: "m", Weight: 0})
		}, nil},

		{"zero timeouts", func(c *config.Config) { c.Timeouts = config.Timeouts{} }, []string{
			"config: timeouts.connect: must be > 0, got 0s",
			"config: timeouts.first_byte: must be > 0, got 0s",
			"config: timeouts.idle: must be > 0, got 0s",
			"config: timeouts.total: must be > 0, got 0s",
		}},
		{"first_byte over total", func(c *config.Config) { c.Timeouts.FirstByte = 11 * time.Minute },
			[]string{"config: timeouts.first_byte: 11m0s exceeds timeouts.total 10m0s"}},
		{"idle over total", func(c *config.Config) { c.Timeouts.Total = 20 * time.Second },
			[]string{"config: timeouts.first_byte: the default, 1m0s, exceeds timeouts.total 20s; set timeouts.first_byte to at most 20s too",
				"config: timeouts.idle: the default, 30s, exceeds timeouts.total 20s; set timeouts.idle to at most 20s too"}},
		{"idle set over total", func(c *config.Config) {
			c.Timeouts.Total, c.Timeouts.FirstByte, c.Timeouts.Idle = 20*time.Second, 10*time.Second, 25*time.Second
		},
			[]string{"config: timeouts.idle: 25s exceeds timeouts.total 20s"}},
		{"connect over total", func(c *config.Config) { c.Timeouts.Connect = time.Hour },
			[]string{"config: timeouts.connect: 1h0m0s exceeds timeouts.total 10m0s"}},
		{"negative body limit", func(c *config.Config) { c.Limits.MaxBodyBytes = -1 },
			[]string{"config: limits.max_body_bytes: must be > 0, got -1"}},
		{"memory limit under the cache", func(c *config.Config) { c.Cache.MaxBytes, c.Limits.MemoryBytes = 16<<20, 40<<20 },
			[]string{"config: limits.memory_bytes: must be 0 (no limit) or at least cache.max_bytes + 40 MiB (58720256), got 41943040"}},
		{"negative memory limit", func(c *config.Config) { c.Limits.MemoryBytes = -1 },
			[]string{"config: limits.memory_bytes: must be 0 (no limit) or at least cache.max_bytes + 40 MiB (310378496), got -1"}},
		{"memory limit one byte short", func(c *config.Config) { c.Cache.MaxBytes, c.Limits.MemoryBytes = 16<<20, 56<<20-1 },
			[]string{"config: limits.memory_bytes: must be 0 (no limit) or at least cache.max_bytes + 40 MiB (58720256), got 58720255"}},
		{"memory limit just enough", func(c *config.Config) { c.Cache.MaxBytes, c.Limits.MemoryBytes = 16<<20, 56<<20 }, nil},
		{"zero retry attempts", func(c *config.Config) { c.Retry.Attempts = 0 }, []string{"config: retry.attempts: must be 1..10, got 0"}},
		{"too many retry attempts", func(c *config.Config) { c.Retry.Attempts = 11 }, []string{"config: retry.attempts: must be 1..10, got 11"}},
		{"max retry attempts", func(c *config.Config) { c.Retry.Attempts = 10 }, nil},
		{"negative drain delay", func(c *config.Config) { c.Shutdown.DrainDelay = -time.Second }, []string{"config: shutdown.drain_delay: must be >= 0, got -1s"}},
		{"zero shutdown grace", func(c *config.Config) { c.Shutdown.Grace = 0 }, []string{"config: shutdown.grace: must be > 0, got 0s"}},
		{"drain and grace", func(c *config.Config) { c.Shutdown.DrainDelay, c.Shutdown.Grace = 5*time.Second, time.Minute }, nil},
		{"zero failure threshold", func(c *config.Config) { c.Health.FailureThreshold = 0 },
			[]string{"config: health.failure_threshold: must be >= 1, got 0"}},
		{"zero health durations", func(c *config.Config) { c.Health.Interval, c.Health.Timeout, c.Health.EjectFor = 0, 0, -time.Second }, []string{
			"config: health.interval: must be > 0, got 0s",
			"config: health.timeout: must be > 0, got 0s",
			"config: health.eject_for: must be at least 1s, got -1s",
		}},
		{"eject_for under a second", func(c *config.Config) { c.Health.EjectFor = 500 * time.Millisecond },
			[]string{"config: health.eject_for: must be at least 1s, got 500ms"}},

		{"bad token role", func(c *config.Config) { c.Admin.Tokens[0].Role = "root" },
			[]string{`config: admin.tokens[0].role: must be admin or read, got "root"`}},
		{"empty token name", func(c *config.Config) { c.Admin.Tokens[0].Name = "" },
			[]string{"config: admin.tokens[0].name: must not be empty; it is recorded as the actor of admin changes"}},
		{"token name with control character", func(c *config.Config) { c.Admin.Tokens[0].Name = "o\x00ps" },
			[]string{`config: admin.tokens[0].name: must be printable UTF-8 without surrounding spaces, got "o\x00ps"`}},
		{"empty token_env", func(c *config.Config) { c.Admin.Tokens[0].TokenEnv = "" },
			[]string{`config: admin.tokens[0].token_env: want the name of an environment variable, got ""`}},
		{"duplicate token name", func(c *config.Config) {
			c.Admin.Tokens = append(c.Admin.Tokens, c.Admin.Tokens[0])
			c.Admin.Tokens[1].TokenEnv = "OTHER_TOKEN"
		}, []string{`config: admin.tokens[1].name: duplicate token name "ops" (also admin.tokens[0])`}},
		{"duplicate token_env", func(c *config.Config) {
			c.Admin.Tokens = append(c.Admin.Tokens, config.AdminToken{Name: "dash", TokenEnv: c.Admin.Tokens[0].TokenEnv, Role: "read"})
		}, []string{`config: admin.tokens[1].token_env: LLMGATE_ADMIN_TOKEN is also admin.tokens[0]'s variable; each token needs its own secret`}},
		{"api_key_envs", func(c *config.Config) {
			c.Admin.APIKeyEnvs = []string{"VLLM_KEY", "bad-name", "LLMGATE_ADMIN_TOKEN", "VLLM_KEY", "OPS_TOKEN"}
			c.Admin.Tokens[0].TokenEnv = "OPS_TOKEN"
		}, []string{
			`config: admin.api_key_envs[1]: want the name of an environment variable, got "bad-name"`,
			`config: admin.api_key_envs[2]: LLMGATE_ADMIN_TOKEN holds an admin token; it must never be sent to a backend`,
			`config: admin.api_key_envs[3]: duplicate "VLLM_KEY" (also admin.api_key_envs[0])`,
			`config: admin.api_key_envs[4]: OPS_TOKEN holds an admin token; it must never be sent to a backend`,
		}},
		{"backend key is an admin token", func(c *config.Config) {
			c.Admin.Tokens[0].TokenEnv = "OPS_TOKEN"
			backend(c).APIKeyEnv = "OPS_TOKEN"
			c.Models[0].Guard.Safety = config.SafetyGuard{Prompt: "block", Classifier: &config.Classifier{
				Kind: "moderations", URL: "http://c", Mode: "sync", OnError: "fail_open", Timeout: time.Second, APIKeyEnv: "LLMGATE_ADMIN_TOKEN"}}
		}, []string{
			b0 + `.api_key_env: OPS_TOKEN holds an admin token; it must never be sent to a backend: give the backend a variable of its own`,
			`config: models[0].guard.safety.classifier.api_key_env: LLMGATE_ADMIN_TOKEN holds an admin token; it must never be sent to the classifier: give it a variable of its own`,
		}},
		{"log prompts", func(c *config.Config) { c.Log.Prompts = true },
			[]string{`config: log.prompts: prompt logging is not implemented (the request log never holds prompt text); remove the key or set it to false`}},
		{"bad log level", func(c *config.Config) { c.Log.Level = "INFO" },
			[]string{`config: log.level: must be debug, info, warn or error, got "INFO"`}},

		{"listen without port", func(c *config.Config) { c.Listen = "8080" },
			[]string{`config: listen: want host:port such as ":8080", got "8080"`}},
		{"admin listen bad port", func(c *config.Config) { c.Admin.Listen = "localhost:http" },
			[]string{`config: admin.listen: want a port number 0..65535, got "http"`}},
		{"same listen", func(c *config.Config) { c.Admin.Listen = c.Listen },
			[]string{`config: admin.listen: ":8080" overlaps listen ":8080"; the admin API needs its own port`}},
		{"admin port inside wildcard listen", func(c *config.Config) { c.Admin.Listen = "127.0.0.1:8080" },
			[]string{`config: admin.listen: "127.0.0.1:8080" overlaps listen ":8080"; the admin API needs its own port`}},
		{"same port on different hosts", func(c *config.Config) { c.Listen, c.Admin.Listen = "10.0.0.1:9000", "127.0.0.1:9000" }, nil},
		{"both ephemeral", func(c *config.Config) { c.Listen, c.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0" }, nil},
		{"ipv6", func(c *config.Config) { c.Listen, c.Admin.Listen = "[::]:8080", "[::1]:8081" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			want := "<nil>"
			if tt.want != nil {
				want = strings.Join(tt.want, "\n")
			}
			if got := errString(c.Validate()); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestValidateLines checks that problems in a parsed file name the line of the value, or of
// the enclosing entry when the key is missing, and come in line order.
func TestValidateLines(t *testing.T) {
	c, err := config.Parse([]byte(`models:
  - alias: "chat@x"
    stable: v2
    versions:
      - version: v1
        backends:
          - url: "http://user:pw@10.0.0.5"
            model: m
          - url: "http://10.0.0.6"
            kind: tgi
retry:
  attempts: 0
shutdown: {drain_delay: 5s, grace: 0s}
`))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	want := strings.Join([]string{
		`config: line 2: models[0].alias: alias "chat@x" must not contain '@'; clients pin a version as alias@version`,
		`config: line 3: models[0].stable: names no version of this model: "v2"`,
		`config: line 7: models[0].versions[0].backends[0].url: must not contain user:password; put the key in api_key_env`,
		`config: line 9: models[0].versions[0].backends[1].model: must not be empty; it is the name the backend serves the model under`,
		`config: line 10: models[0].versions[0].backends[1].kind: must be vllm, ollama or openai, got "tgi"`,
		`config: line 12: retry.attempts: must be 1..10, got 0`,
		`config: line 13: shutdown.grace: must be > 0, got 0s`,
	}, "\n")
	if got := errString(c.Validate()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
