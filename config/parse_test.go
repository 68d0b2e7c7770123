package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

const examplePath = "../llmgate.example.yaml"

func TestExampleConfig(t *testing.T) {
	c, err := config.Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The example documents the defaults, so its values must be them.
	tests := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, config.DefaultListen},
		{"admin.listen", c.Admin.Listen, config.DefaultAdminListen},
		{"max_body_bytes", c.Limits.MaxBodyBytes, config.DefaultMaxBodyBytes},
		{"timeouts", c.Timeouts, config.Default().Timeouts},
		{"health", c.Health, config.Default().Health},
		{"retry", c.Retry, config.Default().Retry},
		{"shutdown", c.Shutdown, config.Default().Shutdown},
		{"log", c.Log, config.Default().Log},
		{"aliases", len(c.Models), 2},
		{"chat versions", len(c.Models[0].Versions), 2},
		{"chat stable", c.Models[0].Stable, "v3"},
		{"embed stable defaulted", c.Models[1].Stable, "2024-06"},
		{"embed kind defaulted", c.Models[1].Versions[0].Backends[0].Kind, config.KindOpenAI},
		{"ollama key env", c.Models[0].Versions[1].Backends[0].APIKeyEnv, "OLLAMA_KEY"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	c, err := config.Parse([]byte(`
listen: "0.0.0.0:9000"
timeouts: {connect: 500ms, total: 1h}
log: {level: debug, prompts: true}
models:
  - alias: chat
    versions:
      - version: 3   # a number is fine where a string is wanted
        backends: [{url: "http://h:1", kind: vllm, model: true, weight: 0}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "0.0.0.0:9000"},
		{"connect", c.Timeouts.Connect, 500 * time.Millisecond},
		{"total", c.Timeouts.Total, time.Hour},
		{"idle unset", c.Timeouts.Idle, time.Duration(0)},
		{"level", c.Log.Level, "debug"},
		{"prompts", c.Log.Prompts, true},
		{"version", c.Models[0].Versions[0].Version, "3"},
		{"kind", c.Models[0].Versions[0].Backends[0].Kind, config.KindVLLM},
		{"bool as string", c.Models[0].Versions[0].Backends[0].Model, "true"},
		{"weight", c.Models[0].Versions[0].Backends[0].Weight, 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "listen: ':1'\nlisen: ':2'\n", `config: line 2: unknown key "lisen"; did you mean "listen"?`},
		{"misspelt key", "timeouts:\n  conect: 2s\n", `config: line 2: timeouts: unknown key "conect"; did you mean "connect"?`},
		{"dashed key", "timeouts:\n  first-byte: 2s\n", `config: line 2: timeouts: unknown key "first-byte"; did you mean "first_byte"?`},
		{"camel-case key", "limits:\n  maxBodyBytes: 1\n", `config: line 2: limits: unknown key "maxBodyBytes"; did you mean "max_body_bytes"?`},
		{"key near none", "timeouts:\n  deadline: 2s\n", `config: line 2: timeouts: unknown key "deadline"`},
		{
			"unknown nested key",
			"models:\n  - alias: chat\n    versions:\n      - version: v1\n        backends:\n          - url: http://h\n            urll: x\n",
			`config: line 7: models[0].versions[0].backends[0]: unknown key "urll"; did you mean "url"?`,
		},
		{
			"every unknown key",
			"lisen: 1\nadmin:\n  tokenz: []\n",
			"config: line 1: unknown key \"lisen\"; did you mean \"listen\"?\nconfig: line 3: admin: unknown key \"tokenz\"; did you mean \"tokens\"?",
		},
		{"traffic in the file", "models:\n  - alias: chat\n    traffic: {canary: v4, canary_percent: 10}\n    shadow: {version: v4, percent: 5}\n", strings.Join([]string{
			`config: line 3: models[0]: unknown key "traffic": a canary split is not set in the file; once serving, run llmgate admin traffic ALIAS --stable V --canary V --percent P`,
			`config: line 4: models[0]: unknown key "shadow": shadow traffic is not set in the file; once serving, run llmgate admin shadow ALIAS VERSION --percent P`,
		}, "\n")},
		{"non-string key", "1: x\n", `config: line 1: unknown key "1"`},
		{"integer for string list", "models: 7\n", `config: line 1: models: want a list, got "7"`},
		{"list for mapping", "admin: [1]\n", `config: line 1: admin: want a mapping, got a list`},
		{"mapping for list", "models: {alias: x}\n", `config: line 1: models: want a list, got a mapping`},
		{"not a mapping", "- a\n", `config: line 1: want a mapping, got a list`},
		{"string for integer", "limits:\n  max_body_bytes: lots\n", `config: line 2: limits.max_body_bytes: want an integer, got "lots"`},
		{"list for string", "listen: [a]\n", `config: line 1: listen: want a string, got a list`},
		{"string for bool", "log: {prompts: maybe}\n", `config: line 1: log.prompts: want true or false, got "maybe"`},
		{"every wrong type", "limits:\n  max_body_bytes: 32MB\nretry:\n  attempts: two\nlog:\n  prompts: yes\nlisten: [a]\n", strings.Join([]string{
			`config: line 2: limits.max_body_bytes: want an integer, got "32MB"`,
			`config: line 4: retry.attempts: want an integer, got "two"`,
			`config: line 6: log.prompts: want true or false, got "yes"`,
			`config: line 7: listen: want a string, got a list`,
		}, "\n")},
		{"overflow", "retry: {attempts: 99999999999999999999}\n", `config: line 1: retry.attempts: 99999999999999999999 is too large for an integer`},
		{"bad duration", "timeouts:\n  idle: 5x\n", `config: line 2: timeouts.idle: want a duration such as "2s", got "5x"`},
		{"number for duration", "health: {interval: 5}\n", `config: line 1: health.interval: "5" has no unit; write "5s" for seconds (or ms, m, h)`},
		{"quoted number for duration", "health: {interval: \"0.5\"}\n", `config: line 1: health.interval: "0.5" has no unit; write "0.5s" for seconds (or ms, m, h)`},
		{"number that changes as a string", "models:\n  - alias: a\n    versions:\n      - version: 1.10\n",
			`config: line 4: models[0].versions[0].version: 1.10 reads as 1.1; quote it to keep the text: "1.10"`},
		{"hex number as a string", "listen: 0x1F\n", `config: line 1: listen: 0x1F reads as 31; quote it to keep the text: "0x1F"`},
		{"infinity as a string", "log: {level: .inf}\n", `config: line 1: log.level: .inf reads as +Inf; quote it to keep the text: ".inf"`},
		{"anchor", "admin: &a {listen: ':1'}\n", `config: line 1: admin: anchors and aliases (&name, *name) are not supported; write the value out`},
		{"alias", "models:\n  - alias: a\n    versions: &v []\n  - alias: b\n    versions: *v\n", strings.Join([]string{
			`config: line 3: models[0].versions: anchors and aliases (&name, *name) are not supported; write the value out`,
			`config: line 5: models[1].versions: anchors and aliases (&name, *name) are not supported; write the value out`,
		}, "\n")},
		{"merge key", "timeouts:\n  <<: {idle: 1s}\n", `config: line 2: timeouts: merge keys (<<) are not supported; write the keys out`},
		{"tag", "admin:\n  tokens: !!seq []\n", `config: line 2: admin.tokens: tags (!name) are not supported; quote a value to make it a string`},
		{"empty tag", "admin: #\n tokens: ! ", `config: line 2: admin.tokens: tags (!name) are not supported; quote a value to make it a string`},
		{"tagged key", "!!str listen: ':1'\n", `config: line 1: tags (!name) are not supported; quote a value to make it a string`},
		{"duplicate key", "listen: ':1'\nlisten: ':2'\n", `config: line 2: duplicate key "listen" (first on line 1); keep one`},
		{"tab indent", "models:\n\t- alias: chat\n", `config: line 2: a tab indents this line; YAML indents with spaces only`},
		{"tab indent in a mapping", "timeouts:\n  idle: 1s\n\ttotal: 2s\n", `config: line 3: a tab indents this line; YAML indents with spaces only`},
		{"two documents", "listen: ':1'\n---\nlisten: ':2'\n", `config: line 3: more than one YAML document`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			if got := errString(err); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// Unknown keys leave a Config to validate, so that its problems are said with them; a key
// that an unknown one misspells is not reported missing besides.
func TestParseErrorsWithAConfig(t *testing.T) {
	c, err := config.Parse([]byte("timeouts: {conect: 2s}\nmodels:\n  - alias: a\n    versons: []\n  - alias: b\n    versions: [{version: v, backends: [{url: 'gpu1:80', model: m, kind: vlm}]}]\n"))
	if c == nil {
		t.Fatalf("no Config with the errors %v", err)
	}
	c.ApplyDefaults()
	got := errString(errors.Join(err, c.Validate()))
	want := strings.Join([]string{
		`config: line 1: timeouts: unknown key "conect"; did you mean "connect"?`,
		`config: line 4: models[0]: unknown key "versons"; did you mean "versions"?`,
		`config: line 6: models[1].versions[0].backends[0].url: has no scheme: want "http://gpu1:80" (or https://)`,
		`config: line 6: models[1].versions[0].backends[0].kind: must be vllm, ollama or openai, got "vlm"`,
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A value that cannot be read (a bad duration, a value of the wrong type or shape) is said and
// left out, its key taking its default, and the rest of the file is still decoded and
// validated: stopped at the first such value, the user fixed one error per run. Validate says
// nothing of the keys left out, whose errors are said.
func TestParseUnreadableValuesLeaveTheRest(t *testing.T) {
	c, err := config.Parse([]byte("lisen: x\ntimeouts: {idle: 5x, total: 90}\nretry: {attempts: many}\n" +
		"health: [1]\nmodels:\n  - alias: b\n    versions: [{version: v, backends: [{url: 'gpu1:80', model: m, kind: vlm, weight: heavy}]}]\n" +
		"  - alias: c\n    versions: {version: v}\n"))
	if c == nil {
		t.Fatalf("no Config with the errors %v", err)
	}
	c.ApplyDefaults()
	got := errString(errors.Join(err, c.Validate()))
	want := strings.Join([]string{
		`config: line 1: unknown key "lisen"; did you mean "listen"?`,
		`config: line 2: timeouts.idle: want a duration such as "2s", got "5x"`,
		`config: line 2: timeouts.total: "90" has no unit; write "90s" for seconds (or ms, m, h)`,
		`config: line 3: retry.attempts: want an integer, got "many"`,
		`config: line 4: health: want a mapping, got a list`,
		`config: line 7: models[0].versions[0].backends[0].weight: want an integer, got "heavy"`,
		`config: line 9: models[1].versions: want a list, got a mapping`,
		`config: line 7: models[0].versions[0].backends[0].url: has no scheme: want "http://gpu1:80" (or https://)`,
		`config: line 7: models[0].versions[0].backends[0].kind: must be vllm, ollama or openai, got "vlm"`,
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// A file that is not YAML, or whose whole document cannot be read, leaves nothing.
	for _, doc := range []string{"[1, 2]\n", "listen: [\n"} {
		if c, err := config.Parse([]byte(doc)); c != nil || err == nil {
			t.Errorf("%q: got %v, %v; want no Config and an error", doc, c, err)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct{ name, yaml string }{
		{"empty", ""},
		{"comments only", "# nothing\n"},
		{"null sections", "timeouts:\nadmin:\nmodels:\n"},
		{"quoted keys", "'listen': ':1'\n\"log\": {level: info}\n"},
		{"complex key", "? listen\n: ':1'\n"},
		{"trailing empty document", "listen: ':1'\n---\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := config.Parse([]byte(tt.yaml)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yaml")
	bad := "models:\n  - alias: chat\n    versions:\n      - version: v1\n        backends:\n          - {url: 'ftp://h', model: m}\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	want := "config: " + path + `:6: models[0].versions[0].backends[0].url: scheme must be http or https, got "ftp://h"`
	if got := errString(c.Validate()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	if err := os.WriteFile(path, []byte("lisen: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(path)
	if want := "config: " + path + `:1: unknown key "lisen"; did you mean "listen"?`; errString(err) != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}

	_, err = config.Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("got %v, want a not-exist error naming the file", err)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := config.Parse([]byte("admin:\n  lisen: x\n"))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %T, want *config.Error", err)
	}
	got := *ce
	want := config.Error{Line: 2, Key: "admin", Msg: `unknown key "lisen"; did you mean "listen"?`}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
