package config_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/llmgate/llmgate/config"
)

// FuzzParse checks that Parse never panics, and that a config which validates survives being
// written back out and parsed again unchanged.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("models: [{alias: a, versions: [{version: v, backends: [{url: 'http://h', model: m}]}]}]\n"))
	f.Add([]byte("timeouts: {idle: 5x}\n"))
	f.Add([]byte("models: &m [{alias: a}]\nlisten: *m\n"))
	f.Add([]byte("listen: \"[::1]:80\"\nadmin: {listen: \":81\", tokens: [{name: n, token_env: T, role: read}]}\ntimeouts: {total: 1h}\nmodels:\n- alias: a\n  versions:\n  - version: v\n    backends:\n    - {url: \"https://h/v1\", model: m, weight: 0}\n    - {url: \"http://h:9\", model: m, kind: ollama}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			return
		}
		c.ApplyDefaults()
		if c.Validate() != nil {
			return
		}
		// JSON (which is YAML) because goccy's YAML encoder leaves strings such as ".inf" and
		// "? x" unquoted, and they read back as something else.
		out, err := yaml.MarshalWithOptions(c, yaml.JSON())
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := config.Parse(out)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out)
		}
		again.ApplyDefaults()
		if err := again.Validate(); err != nil {
			t.Fatalf("re-validate: %v\n%s", err, out)
		}
		out2, err := yaml.MarshalWithOptions(again, yaml.JSON())
		if err != nil {
			t.Fatalf("marshal again: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
		}
	})
}
