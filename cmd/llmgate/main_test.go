package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
)

func startFakeLLM(t *testing.T, opts fakellm.Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := fakellm.New(opts)
	go s.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { s.Close() })
	return "http://" + ln.Addr().String()
}

// Start-up failures are one line on stderr and a non-zero exit.
func TestServeFailsWithOneLine(t *testing.T) {
	t.Setenv("LLMGATE_STATE_PATH", filepath.Join(t.TempDir(), "state.db"))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + closed.Addr().String()
	closed.Close()
	backend := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m"})

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"bad flag", []string{"serve", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"config and backend", []string{"serve", "--config", "x.yaml", "--backend", backend}, 2, "either --config or --backend"},
		{"missing config", []string{"serve", "--config", "/nonexistent/llmgate.yaml"}, 1, "/nonexistent/llmgate.yaml"},
		{"unreachable backend", []string{"serve", "--backend", deadURL}, 1, "is unreachable"},
		{"bad backend url", []string{"serve", "--backend", "ftp://x"}, 1, "want an http(s) URL"},
		{"wrong backend kind", []string{"serve", "--backend", backend, "--backend-kind", "ollama"}, 1, "failed its health check: GET " + backend + "/: status 404; is its kind right?"},
		{"bad backend kind", []string{"serve", "--backend", backend, "--backend-kind", "tgi"}, 1, `--backend-kind "tgi"`},
		{"backend url with /v1", []string{"serve", "--backend", backend + "/v1"}, 1, "GET /v1/models: status 404; the URL ends in /v1, which llmgate adds itself: give the server's base URL without it"},
		{"port in use", []string{"serve", "--backend", backend, "--listen", busy.Addr().String(), "--admin-listen", "127.0.0.1:0"}, 1, "address already in use (set listen, --listen or LLMGATE_LISTEN to a free address)"},
		{"fakellm bad flavor", []string{"fakellm", "--flavor", "tgi"}, 2, `llmgate fakellm: flavor must be "vllm" or "ollama", got "tgi"`},
		{"demo bad flag", []string{"demo", "--lisen", "x"}, 2, "llmgate demo: flag provided but not defined: -lisen (llmgate demo -h lists the flags)"},
		{"duration without unit", []string{"fakellm", "--ttft", "200"}, 2, `llmgate fakellm: invalid value "200" for flag -ttft: want a duration with a unit, such as "200ms", "5s" or "1m" (llmgate fakellm -h lists the flags)`},
		{"fakellm bad flag", []string{"fakellm", "--bogus"}, 2, "-bogus (llmgate fakellm -h"},
		// A stray argument (a port meant for --listen) was ignored: the server started on the
		// default address. On a busy address, so that a server that starts fails instead.
		{"fakellm argument", []string{"fakellm", "--listen", busy.Addr().String(), "8000"}, 2, `llmgate fakellm: unexpected argument "8000"`},
		{"bareproxy argument", []string{"bareproxy", "--upstream", backend, "--listen", busy.Addr().String(), "8001"}, 2, `llmgate bareproxy: unexpected argument "8001"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("stderr %q does not say %q", stderr.String(), tt.wantErr)
			}
			if strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Fatalf("want one line on stderr, got:\n%s", stderr.String())
			}
		})
	}
}

// Several config errors are all said at once, each on its own line that names the command.
func TestServeSaysEveryConfigError(t *testing.T) {
	t.Setenv("LLMGATE_RETRY_ATTEMPTS", "0")
	t.Setenv("LLMGATE_LOG_LEVEL", "verbose")
	_, stderr := serveFails(t, "models: [{alias: m, versions: [{version: v1, backends: [{url: \"http://127.0.0.1:1\", kind: vllm, model: m}]}]}]\n")
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 || !strings.Contains(stderr.String(), "LLMGATE_RETRY_ATTEMPTS") || !strings.Contains(stderr.String(), "LLMGATE_LOG_LEVEL") {
		t.Fatalf("want both errors, one per line:\n%s", stderr.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "llmgate serve: config: ") {
			t.Errorf("line %q does not say where it comes from", l)
		}
	}
}

// A variable that does not parse does not hide the problems validation finds.
func TestServeSaysEnvAndValidationErrorsAtOnce(t *testing.T) {
	t.Setenv("LLMGATE_TIMEOUT_TOTAL", "600")
	t.Setenv("LLMGATE_LOG_LEVEL", "verbose")
	_, stderr := serveFails(t, "models: [{alias: m, versions: [{version: v1, backends: [{url: \"http://127.0.0.1:1\", kind: vlm, model: m}]}]}]\n")
	for _, want := range []string{"LLMGATE_TIMEOUT_TOTAL: timeouts.total", "LLMGATE_LOG_LEVEL: log.level", "kind: must be vllm"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
		}
	}
}

// serve --backend discovers each backend's models, detects its kind, and pools backends that
// serve the same model under one alias.
func TestDiscoverConfig(t *testing.T) {
	vllm := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "meta-llama/Llama-3.1-8B-Instruct"})
	vllm2 := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "meta-llama/Llama-3.1-8B-Instruct"})
	ollama := startFakeLLM(t, fakellm.Options{Flavor: "ollama", Model: "llama3.1:8b"})
	cfg, err := buildServeConfig("", []string{vllm, ollama, vllm2}, nil, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, m := range cfg.Models {
		for _, b := range m.Versions[0].Backends {
			got[m.Alias] = append(got[m.Alias], b.Kind+" "+b.URL+" "+b.Model)
		}
	}
	want := map[string][]string{
		"meta-llama/Llama-3.1-8B-Instruct": {"vllm " + vllm + " meta-llama/Llama-3.1-8B-Instruct", "vllm " + vllm2 + " meta-llama/Llama-3.1-8B-Instruct"},
		"llama3.1:8b":                      {"ollama " + ollama + " llama3.1:8b"},
	}
	if len(got) != len(want) {
		t.Fatalf("aliases %v, want %v", got, want)
	}
	for alias, backends := range want {
		if strings.Join(got[alias], "|") != strings.Join(backends, "|") {
			t.Errorf("alias %q: backends %v, want %v", alias, got[alias], backends)
		}
	}
	if err := checkBackends(cfg); err != nil {
		t.Fatalf("discovered backends fail the start-up probe: %v", err)
	}
}

// An Ollama model pulled without a tag is listed as "name:latest"; clients ask for "name", as
// Ollama's own API lets them: both are aliases.
func TestDiscoverConfigOllamaLatest(t *testing.T) {
	ollama := startFakeLLM(t, fakellm.Options{Flavor: "ollama", Model: "llama3.2:latest"})
	cfg, err := buildServeConfig("", []string{ollama}, nil, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var aliases []string
	for _, m := range cfg.Models {
		aliases = append(aliases, m.Alias+" -> "+m.Versions[0].Backends[0].Model)
	}
	if want := "llama3.2:latest -> llama3.2:latest|llama3.2 -> llama3.2:latest"; strings.Join(aliases, "|") != want {
		t.Fatalf("aliases %q, want %q", aliases, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "llmgate ") {
		t.Fatalf("version: exit %d, %q", code, stdout.String())
	}
}

// A binary without a version linked in reports its module's version, else the VCS revision
// it was built from: a go install of a checkout said only "dev".
func TestVersionOf(t *testing.T) {
	bi := func(v string, settings ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{Main: debug.Module{Path: "github.com/llmgate/llmgate", Version: v}}
		for i := 0; i+1 < len(settings); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return b
	}
	for _, tt := range []struct {
		name, linked string
		bi           *debug.BuildInfo
		want         string
	}{
		{"linked", "v1.2.3", bi("v0.9.0"), "v1.2.3"},
		{"module", "", bi("v0.9.0"), "v0.9.0"},
		{"pseudo-version", "", bi("v0.0.0-20261129190000-0123456789ab+dirty"), "v0.0.0-20261129190000-0123456789ab+dirty"},
		{"revision", "", bi("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), "dev-0123456789ab"},
		{"dirty", "", bi("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), "dev-0123456789ab-dirty"},
		{"nothing", "", bi("(devel)"), "dev"},
		{"no build info", "", nil, "dev"},
	} {
		if got := versionOf(tt.linked, tt.bi); got != tt.want {
			t.Errorf("%s: versionOf = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// limits.memory_bytes becomes the process's soft memory limit; without it Go's own stays.
func TestMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	dir := t.TempDir()
	path := filepath.Join(dir, "llmgate.yaml")
	backend := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m"})
	yaml := "state: {path: " + filepath.Join(dir, "state.db") + "}\n" +
		"cache: {max_bytes: 8388608}\n" +
		"models: [{alias: m, versions: [{version: v1, backends: [{url: \"" + backend + "\", kind: vllm, model: m}]}]}]\n"

	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := buildServeConfig(path, nil, nil, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if applyMemoryLimit(cfg) || debug.SetMemoryLimit(-1) != before {
		t.Fatalf("no limits.memory_bytes changed the memory limit to %d", debug.SetMemoryLimit(-1))
	}

	if err := os.WriteFile(path, []byte(yaml+"limits: {memory_bytes: 50331648}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = buildServeConfig(path, nil, nil, "127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if !applyMemoryLimit(cfg) || debug.SetMemoryLimit(-1) != 48<<20 {
		t.Fatalf("memory limit %d, want %d", debug.SetMemoryLimit(-1), 48<<20)
	}
}

// A model added to the config after the first start is not served (the deploy state decides);
// serve says so in its start-up summary instead of leaving it to a warning in the log.
func TestServeSaysConfigModelNotServed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "llmgate.yaml")
	backend := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m"})
	model := func(alias string) string {
		return "  - {alias: " + alias + ", versions: [{version: v1, backends: [{url: \"" + backend + "\", kind: vllm, model: m}]}]}\n"
	}
	serveOnce := func(yaml string) string {
		t.Helper()
		if err := os.WriteFile(path, []byte("state: {path: "+filepath.Join(dir, "state.db")+"}\nmodels:\n"+yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := buildServeConfig(path, nil, nil, "127.0.0.1:0", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g, lns, err := start(cfg, io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			g.Close()
			lns[0].Close()
			lns[1].Close()
		}()
		var out bytes.Buffer
		printModels(&out, g.Table(), cfg, g.RolloutSummary)
		return out.String()
	}
	if out := serveOnce(model("first")); strings.Contains(out, "not served") || !strings.Contains(out, `model "first": stable v1`) {
		t.Fatalf("first start:\n%s", out)
	}
	out := serveOnce(model("first") + model("added"))
	if !strings.Contains(out, `model "added" is in the config but not served`) || !strings.Contains(out, `model "first": stable v1`) {
		t.Fatalf("second start with a model added to the file:\n%s", out)
	}
}

// After the first start the store decides what is served: a restart with a backend down, one
// the file names but the store no longer serves or one of the served ones, starts and says so,
// where a first start with a dead backend is refused. A start that cannot bind its address
// leaves no state file behind to take over the next start.
func TestServeRestartsWithBackendsDown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "llmgate.yaml")
	state := filepath.Join(dir, "state.db")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := fakellm.New(fakellm.Options{Flavor: "vllm", Model: "m"})
	go fake.Serve(ln) //nolint:errcheck
	defer fake.Close()
	live := "http://" + ln.Addr().String()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + closed.Addr().String()
	closed.Close()
	write := func(backends ...string) *config.Config {
		t.Helper()
		yaml := "state: {path: " + state + "}\nmodels:\n  - {alias: m, versions: [{version: v1, backends: ["
		for i, b := range backends {
			if i > 0 {
				yaml += ", "
			}
			yaml += `{url: "` + b + `", kind: vllm, model: m}`
		}
		if err := os.WriteFile(path, []byte(yaml+"]}]}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := buildServeConfig(path, nil, nil, "127.0.0.1:0", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	serve := func(cfg *config.Config) (string, error) {
		_, stderr, err := startAndStop(cfg)
		return stderr, err
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := write(live)
	cfg.Listen = busy.Addr().String()
	if _, err := serve(cfg); err == nil || !strings.Contains(err.Error(), "address already in use") || fileExists(state) {
		t.Fatalf("a start on a busy port: %v; state file left: %v", err, fileExists(state))
	}
	if _, err := serve(write(live, dead)); err == nil || !strings.Contains(err.Error(), "is unreachable") {
		t.Fatalf("a first start with a dead backend: %v", err)
	}
	if _, err := serve(write(live)); err != nil {
		t.Fatalf("first start: %v", err)
	}
	// Later: the file names a dead backend the store does not serve, and the served one is down.
	fake.Close()
	warnings, err := serve(write(live, dead))
	if err != nil {
		t.Fatalf("a restart with backends down: %v", err)
	}
	if !strings.Contains(warnings, "warning: backend "+live) || strings.Contains(warnings, dead) {
		t.Fatalf("a restart with backends down said %q; want a warning for the served backend only", warnings)
	}
	// What the warning says is so: the backend found down is out of service from the start, so
	// no request goes to it (nor does /readyz say ready) before a health check passes, rather
	// than after the failed requests or probes that would eject it.
	if !strings.Contains(warnings, "(out of service until it passes a health check)") {
		t.Errorf("warning %q: want it to say the backend is out of service", warnings)
	}
	var out, errOut bytes.Buffer
	g, lns, err := startServing(write(live), nil, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { g.Close(); lns[0].Close(); lns[1].Close() }()
	for _, b := range g.Table().Backends() {
		if b.Healthy() {
			t.Errorf("backend %s found down at start is in service", b.URL)
		}
	}
}

// A first start whose config names a model its backend does not serve is refused, naming what
// the backend lists, as an admin deploy is: served, each request of the version would get the
// backend's 404 for a model the client never asked for.
func TestServeRefusesModelTheBackendDoesNotServe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "llmgate.yaml")
	state := filepath.Join(dir, "state.db")
	vllm := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "meta-llama/Llama-3.1-8B-Instruct"})
	ollama := startFakeLLM(t, fakellm.Options{Flavor: "ollama", Model: "llama3.1:8b"})
	tests := []struct {
		name    string
		backend string // one entry of backends, flow style
		wantErr string // "" for a start
	}{
		{"vllm served", `{url: "` + vllm + `", kind: vllm, model: meta-llama/Llama-3.1-8B-Instruct}`, ""},
		{"ollama served", `{url: "` + ollama + `", kind: ollama, model: "llama3.1:8b"}`, ""},
		{"vllm typo", `{url: "` + vllm + `", kind: vllm, model: llama-typo}`,
			`backend ` + vllm + ` (model chat version v1): it does not serve model "llama-typo"; its /v1/models lists meta-llama/Llama-3.1-8B-Instruct`},
		{"ollama typo", `{url: "` + ollama + `", kind: ollama, model: "llama3.2"}`, `does not serve model "llama3.2"`},
		{"url with /v1", `{url: "` + vllm + `/v1", kind: vllm, model: meta-llama/Llama-3.1-8B-Instruct}`,
			`backend ` + vllm + `/v1 (model chat version v1) failed its health check: GET ` + vllm + `/v1/health: status 404; the URL ends in /v1, which llmgate adds itself: give the server's base URL without it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(state)
			yaml := "state: {path: " + state + "}\nmodels:\n  - {alias: chat, versions: [{version: v1, backends: [" + tt.backend + "]}]}\n"
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := buildServeConfig(path, nil, nil, "127.0.0.1:0", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = startAndStop(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("start: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("start: %v; want an error saying %q", err, tt.wantErr)
			case tt.wantErr != "" && fileExists(state):
				t.Fatalf("a refused start left a state file")
			}
		})
	}
}

// Every empty environment variable the config names for a secret is said at once, before any
// backend is probed (the backends here do not answer): one line each, naming the config key.
func TestServeSaysEveryEmptySecretVariable(t *testing.T) {
	cfg := `models: [{alias: m, versions: [{version: v1, backends: [` +
		`{url: "http://127.0.0.1:1", kind: vllm, model: m, api_key_env: LLMGATE_TEST_KEY_A},` +
		`{url: "http://127.0.0.1:2", kind: vllm, model: m, api_key_env: LLMGATE_TEST_KEY_B}]}],` + "\n" +
		`  guard: {pii: {prompt: hash, hash_key_env: LLMGATE_TEST_HASH_KEY}}}]
admin: {tokens: [{name: ops, role: admin, token_env: LLMGATE_TEST_OPS}]}
state: {path: "` + filepath.Join(t.TempDir(), "state.db") + `"}
`
	path, stderr := serveFails(t, cfg)
	want := []string{
		"llmgate serve: config: " + path + ":1: models[0].versions[0].backends[0].api_key_env: environment variable LLMGATE_TEST_KEY_A is empty; set it before starting llmgate",
		"llmgate serve: config: " + path + ":1: models[0].versions[0].backends[1].api_key_env: environment variable LLMGATE_TEST_KEY_B is empty; set it before starting llmgate",
		"llmgate serve: config: " + path + ":2: models[0].guard.pii.hash_key_env: environment variable LLMGATE_TEST_HASH_KEY is empty; set it before starting llmgate",
		"llmgate serve: config: " + path + ":3: admin.tokens[0].token_env: environment variable LLMGATE_TEST_OPS is empty; set it before starting llmgate",
	}
	if got := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !slices.Equal(got, want) {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
}

// After the first start the store decides what is served: a model the file names but the store
// does not serve needs no API key for its backends, and a restart without it goes on (it said
// "environment variable ... is empty" and refused to start). The admin token's is still needed.
func TestServeRestartNeedsNoKeyOfAnUnservedBackend(t *testing.T) {
	dir := t.TempDir()
	path, state := filepath.Join(dir, "llmgate.yaml"), filepath.Join(dir, "state.db")
	live := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m"})
	write := func(extra string) {
		t.Helper()
		yaml := "state: {path: " + state + "}\nmodels:\n  - {alias: m, versions: [{version: v1, backends: [{url: \"" + live + "\", kind: vllm, model: m}]}]}\n" + extra
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	serve := func() (string, error) {
		t.Helper()
		cfg, err := buildServeConfig(path, nil, nil, "127.0.0.1:0", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		stdout, _, err := startAndStop(cfg)
		return stdout, err
	}
	write("")
	if _, err := serve(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	write("  - {alias: x, versions: [{version: v1, backends: [{url: \"http://127.0.0.1:1\", kind: vllm, model: x, api_key_env: LLMGATE_TEST_UNSET_KEY}]}]}\n")
	out, err := serve()
	if err != nil {
		t.Fatalf("a restart with a model the store does not serve: %v", err)
	}
	if !strings.Contains(out, `model "x" is in the config but not served`) {
		t.Fatalf("restart said %q", out)
	}
	write("admin: {tokens: [{name: ops, role: admin, token_env: LLMGATE_TEST_UNSET_OPS}]}\n")
	if _, err := serve(); err == nil || !strings.Contains(err.Error(), "LLMGATE_TEST_UNSET_OPS is empty") {
		t.Fatalf("a restart without the admin token's variable: %v", err)
	}
}

// startAndStop starts serving cfg as serve does (deploy state at cfg.State.Path), stops at once
// when it started, and returns what it printed.
func startAndStop(cfg *config.Config) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	g, lns, err := startServing(cfg, nil, &out, &errOut)
	if err == nil {
		g.Close()
		lns[0].Close()
		lns[1].Close()
	}
	return out.String(), errOut.String(), err
}

// A bad --listen is said to come from the flag, not from the line of the file it overrides.
func TestServeNamesTheFlagOfABadListen(t *testing.T) {
	_, stderr := serveFails(t, "listen: \":8080\"\nmodels: [{alias: m, versions: [{version: v1, backends: [{url: \"http://127.0.0.1:1\", model: m}]}]}]\n", "--listen", "8080")
	want := "llmgate serve: config: --listen: listen: want host:port such as \":8080\", got \"8080\"\n"
	if stderr.String() != want {
		t.Errorf("got  %q\nwant %q", stderr.String(), want)
	}
}

// The start says where the deploy state is as an absolute path: a relative state.path is
// relative to the working directory, which the path as written does not tell.
func TestServeSaysTheAbsoluteStatePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	backend := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m"})
	if err := os.WriteFile("gw.yaml", []byte("state: {path: gw-state.db}\nmodels: [{alias: m, versions: [{version: v1, backends: [{url: \""+backend+"\", kind: vllm, model: m}]}]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := buildServeConfig("gw.yaml", nil, nil, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, err := startAndStop(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "deploy state in " + filepath.Join(dir, "gw-state.db") + "\n"; !strings.Contains(stdout, want) {
		t.Errorf("stdout %q does not say %q", stdout, want)
	}
}

// Every command's -h goes to stdout, so that it pipes into less or grep.
func TestHelpOnStdout(t *testing.T) {
	for _, cmd := range []string{"serve", "demo", "fakellm", "bareproxy", "bench"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{cmd, "-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "-listen") && !strings.Contains(stdout.String(), "-url") || stderr.Len() != 0 {
			t.Errorf("llmgate %s -h: exit %d\nstdout: %s\nstderr: %s", cmd, code, stdout.String(), stderr.String())
		}
	}
}

// A safety rules file that cannot be read is said with its line, beside the other problems.
func TestServeSaysAMissingRulesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "llmgate.yaml")
	cfg := "state: {path: " + filepath.Join(dir, "state.db") + "}\nmodels:\n  - alias: m\n    versions: [{version: v1, backends: [{url: \"http://127.0.0.1:1\", model: m, api_key_env: LLMGATE_TEST_KEY_C}]}]\n" +
		"    guard:\n      safety:\n        prompt: block\n        rules_file: no-such-rules.yaml\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--config", path}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
	}
	want := []string{
		"llmgate serve: config: " + path + ":4: models[0].versions[0].backends[0].api_key_env: environment variable LLMGATE_TEST_KEY_C is empty; set it before starting llmgate",
		"llmgate serve: config: " + path + ":8: models[0].guard.safety.rules_file: open no-such-rules.yaml: no such file or directory (a relative path is relative to the working directory)",
	}
	if got := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !slices.Equal(got, want) {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
}

// A misspelt key does not hide the file's other problems.
func TestServeSaysUnknownKeysWithTheRest(t *testing.T) {
	path, stderr := serveFails(t, "timeouts: {conect: 2s}\nmodels: [{alias: m, versions: [{version: v1, backends: [{url: \"http://127.0.0.1:1\", kind: vlm, model: m}]}]}]\n")
	want := []string{
		"llmgate serve: config: " + path + `:1: timeouts: unknown key "conect"; did you mean "connect"?`,
		"llmgate serve: config: " + path + `:2: models[0].versions[0].backends[0].kind: must be vllm, ollama or openai, got "vlm"`,
	}
	if got := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !slices.Equal(got, want) {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
}

// Every problem of the file is said in line order, parse errors among validation's, and what
// an environment variable set after them: they came parse errors first, then validation's in
// the order it checks the keys.
func TestServeSaysConfigErrorsInLineOrder(t *testing.T) {
	t.Setenv("LLMGATE_LOG_LEVEL", "verbose")
	path, stderr := serveFails(t, "models: [{alias: m, versions: [{version: v1, backends: [{url: \"http://127.0.0.1:1\", kind: vlm, model: m}]}]}]\n"+
		"retry: {attempts: 0}\n"+
		"timeouts: {conect: 2s}\n")
	want := []string{
		"llmgate serve: config: " + path + `:1: models[0].versions[0].backends[0].kind: must be vllm, ollama or openai, got "vlm"`,
		"llmgate serve: config: " + path + `:2: retry.attempts: must be 1..`,
		"llmgate serve: config: " + path + `:3: timeouts: unknown key "conect"; did you mean "connect"?`,
		"llmgate serve: config: LLMGATE_LOG_LEVEL: log.level: ",
	}
	got := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(got) != len(want) {
		t.Fatalf("stderr:\n%s\nwant lines beginning:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d: %q, want it to begin %q", i+1, got[i], want[i])
		}
	}
}

// serve -h names what each flag takes, not Go's "value".
func TestServeHelpNamesFlagValues(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run([]string{"serve", "-h"}, &stdout, &stderr)
	for _, want := range []string{"-backend URL", "-backend-kind kind", "-config file", "-listen host:port"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("serve -h does not say %q:\n%s", want, stdout.String())
		}
	}
}

// serveFails writes cfg as a config file, runs llmgate serve on it with flags, checks that it
// exits 1, and returns the file's path and what it said on stderr.
func serveFails(t *testing.T, cfg string, flags ...string) (string, *bytes.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "llmgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"serve", "--config", path}, flags...), &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
	}
	return path, &stderr
}

// Two admin tokens whose variables hold the same secret are refused with the line of the
// second (the gateway refused them too, without a line), and with the file's other problems.
func TestServeSaysTwoTokensWithOneSecret(t *testing.T) {
	t.Setenv("LLMGATE_TEST_OPS", "s3cret-token")
	t.Setenv("LLMGATE_TEST_DASH", "s3cret-token")
	path, stderr := serveFails(t, `models: [{alias: m, versions: [{version: v1, backends: [{url: "http://127.0.0.1:1", kind: vlm, model: m}]}]}]
admin:
  tokens:
    - {name: ops, role: admin, token_env: LLMGATE_TEST_OPS}
    - {name: dashboard, role: read, token_env: LLMGATE_TEST_DASH}
`)
	want := []string{
		"llmgate serve: config: " + path + `:1: models[0].versions[0].backends[0].kind: must be vllm, ollama or openai, got "vlm"`,
		"llmgate serve: config: " + path + `:5: admin.tokens[1].token_env: environment variable LLMGATE_TEST_DASH holds the same token as LLMGATE_TEST_OPS, admin.tokens[0]'s ("ops"); each token needs its own secret`,
	}
	if got := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !slices.Equal(got, want) {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
}

// An empty secret variable is said with the file's other problems, not only once they are fixed.
func TestServeSaysEmptySecretsWithTheRest(t *testing.T) {
	path, stderr := serveFails(t, `models: [{alias: m, versions: [{version: v1, backends: [{url: "http://127.0.0.1:1", kind: vlm, model: m, api_key_env: LLMGATE_TEST_KEY_D}]}]}]
state: {path: "`+filepath.Join(t.TempDir(), "state.db")+`"}
`)
	want := []string{
		"llmgate serve: config: " + path + `:1: models[0].versions[0].backends[0].kind: must be vllm, ollama or openai, got "vlm"`,
		"llmgate serve: config: " + path + ":1: models[0].versions[0].backends[0].api_key_env: environment variable LLMGATE_TEST_KEY_D is empty; set it before starting llmgate",
	}
	if got := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !slices.Equal(got, want) {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
}
