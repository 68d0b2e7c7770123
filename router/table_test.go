package router

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

// testHealth is the health section of every test config unless a test says otherwise.
var testHealth = config.HealthCheck{
	Interval:         time.Second,
	Timeout:          5 * time.Second,
	FailureThreshold: 3,
	EjectFor:         10 * time.Second,
}

// fakeClock is a Pool clock that moves only when a test advances it. Safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newTestPool returns a pool whose tables read clock instead of the wall clock.
func newTestPool(clock *fakeClock) *Pool {
	p := NewPool()
	p.now = clock.Now
	return p
}

func testModel(alias, stable string, versions ...config.Version) config.Model {
	return config.Model{Alias: alias, Stable: stable, Versions: versions}
}

func testVersion(name string, backends ...config.Backend) config.Version {
	return config.Version{Version: name, Backends: backends}
}

func testBackend(url string, weight int) config.Backend {
	return config.Backend{URL: url, Kind: config.KindVLLM, Model: "served", Weight: weight}
}

func mustTable(t testing.TB, cfg *config.Config, pool *Pool) *Table {
	t.Helper()
	tbl, err := NewTable(cfg, pool)
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	return tbl
}

// testPoolVersion builds a table with one model "m", one version "v1" whose backends are
// http://b0:8000, http://b1:8000, ... with the given weights, and returns that version.
func testPoolVersion(t testing.TB, pool *Pool, hc config.HealthCheck, weights ...int) *Version {
	t.Helper()
	var bs []config.Backend
	for i, w := range weights {
		bs = append(bs, testBackend("http://b"+string(rune('0'+i))+":8000", w))
	}
	cfg := &config.Config{Health: hc, Models: []config.Model{testModel("m", "", testVersion("v1", bs...))}}
	return mustTable(t, cfg, pool).Model("m").Stable
}

func resolveTestTable(t testing.TB) *Table {
	t.Helper()
	cfg := &config.Config{Health: testHealth, Models: []config.Model{
		testModel("chat", "v1",
			testVersion("v1", testBackend("http://gpu1:8000", 1)),
			testVersion("v2", testBackend("http://gpu2:8000", 1)),
			testVersion("v3-canary", testBackend("http://gpu3:8000", 1)),
		),
		testModel("embed", "", testVersion("e1", testBackend("http://gpu4:8000", 1))),
		testModel("org/llama-3.1:8b", "", testVersion("q4", testBackend("http://gpu5:8000", 1))),
	}}
	return mustTable(t, cfg, NewPool())
}

func TestResolve(t *testing.T) {
	tbl := resolveTestTable(t)
	tests := []struct {
		name    string
		model   string
		pin     string // x-llmgate-version header
		want    string // alias/version
		wantErr error
	}{
		{name: "stable", model: "chat", want: "chat/v1"},
		{name: "stable defaults to the only version", model: "embed", want: "embed/e1"},
		{name: "header pin", model: "chat", pin: "v2", want: "chat/v2"},
		{name: "header pin names stable", model: "chat", pin: "v1", want: "chat/v1"},
		{name: "model pin", model: "chat@v3-canary", want: "chat/v3-canary"},
		{name: "model pin wins over header pin", model: "chat@v2", pin: "v1", want: "chat/v2"},
		{name: "alias with slash and colon", model: "org/llama-3.1:8b", want: "org/llama-3.1:8b/q4"},
		{name: "alias with slash and colon pinned", model: "org/llama-3.1:8b@q4", want: "org/llama-3.1:8b/q4"},
		{name: "unknown alias", model: "gpt-4o", wantErr: ErrUnknownModel},
		{name: "unknown alias with pin", model: "gpt-4o@v1", wantErr: ErrUnknownModel},
		{name: "unknown alias with header pin", model: "gpt-4o", pin: "v1", wantErr: ErrUnknownModel},
		{name: "alias is case sensitive", model: "Chat", wantErr: ErrUnknownModel},
		{name: "empty model", model: "", wantErr: ErrUnknownModel},
		{name: "unknown version in header", model: "chat", pin: "v9", wantErr: ErrUnknownVersion},
		{name: "unknown version in model", model: "chat@v9", wantErr: ErrUnknownVersion},
		{name: "version of another alias", model: "chat@e1", wantErr: ErrUnknownVersion},
		{name: "empty version after @", model: "chat@", wantErr: ErrUnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tbl.Resolve([]byte(tt.model), []byte(tt.pin))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Resolve(%q, %q) error = %v, want %v", tt.model, tt.pin, err, tt.wantErr)
			}
			got := ""
			if v != nil {
				got = v.Alias + "/" + v.Name
			}
			if got != tt.want {
				t.Errorf("Resolve(%q, %q) = %q, want %q", tt.model, tt.pin, got, tt.want)
			}
		})
	}
}

func TestResolveDoesNotAllocate(t *testing.T) {
	tbl := resolveTestTable(t)
	tests := []struct{ name, model, pin string }{
		{name: "stable", model: "chat"},
		{name: "model pin", model: "chat@v2"},
		{name: "header pin", model: "chat", pin: "v3-canary"},
		{name: "unknown alias", model: "gpt-4o"},
		{name: "unknown version", model: "chat@v9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, pin := []byte(tt.model), []byte(tt.pin)
			got := testing.AllocsPerRun(100, func() { _, _ = tbl.Resolve(model, pin) })
			if got != 0 {
				t.Errorf("Resolve(%q, %q) allocates %v times per call, want 0", tt.model, tt.pin, got)
			}
		})
	}
}

func TestModelsSortedByAlias(t *testing.T) {
	tbl := resolveTestTable(t)
	var got []string
	for _, m := range tbl.Models() {
		got = append(got, m.Alias)
	}
	want := []string{"chat", "embed", "org/llama-3.1:8b"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Models() = %q, want %q", got, want)
	}
	if m := tbl.Model("nope"); m != nil {
		t.Errorf("Model(%q) = %v, want nil", "nope", m)
	}
}

func TestNewTableErrors(t *testing.T) {
	t.Setenv("LLMGATE_ROUTER_TEST_EMPTY", "")
	os.Unsetenv("LLMGATE_ROUTER_TEST_UNSET") // t.Setenv above restores the environment after
	withKey := func(b config.Backend, env string) config.Backend { b.APIKeyEnv = env; return b }
	tests := []struct {
		name     string
		model    config.Model
		wantText []string // the error must name these so the operator can find the mistake
	}{
		{
			name:     "url without scheme",
			model:    testModel("chat", "", testVersion("v1", testBackend("gpu1:8000", 1))),
			wantText: []string{`"chat"`, `"v1"`, "gpu1:8000"},
		},
		{
			name:     "url with other scheme",
			model:    testModel("chat", "", testVersion("v1", testBackend("ftp://gpu1", 1))),
			wantText: []string{"ftp://gpu1"},
		},
		{
			name:     "url without host",
			model:    testModel("chat", "", testVersion("v1", testBackend("http:///v1", 1))),
			wantText: []string{"http:///v1"},
		},
		{
			name:     "url that does not parse",
			model:    testModel("chat", "", testVersion("v1", testBackend("http://gpu1:80%zz", 1))),
			wantText: []string{`"chat"`},
		},
		{
			name:     "bad url in a later version",
			model:    testModel("chat", "v1", testVersion("v1", testBackend("http://gpu1", 1)), testVersion("v2", testBackend("gpu2", 1))),
			wantText: []string{`"v2"`, "gpu2"},
		},
		{
			name:     "api key variable unset",
			model:    testModel("chat", "", testVersion("v1", withKey(testBackend("https://api.example.com", 1), "LLMGATE_ROUTER_TEST_UNSET"))),
			wantText: []string{"LLMGATE_ROUTER_TEST_UNSET", "https://api.example.com"},
		},
		{
			name:     "api key variable empty",
			model:    testModel("chat", "", testVersion("v1", withKey(testBackend("https://api.example.com", 1), "LLMGATE_ROUTER_TEST_EMPTY"))),
			wantText: []string{"LLMGATE_ROUTER_TEST_EMPTY"},
		},
		{
			name:     "stable names no version",
			model:    testModel("chat", "v2", testVersion("v1", testBackend("http://gpu1", 1))),
			wantText: []string{`"chat"`, `"v2"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Health: testHealth, Models: []config.Model{tt.model}}
			tbl, err := NewTable(cfg, NewPool())
			if err == nil {
				t.Fatalf("NewTable = %v, nil; want an error", tbl)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("NewTable error %q does not mention %s", err, s)
				}
			}
		})
	}
}

func TestBackendURLAndAddr(t *testing.T) {
	tests := []struct {
		url      string
		wantURL  string
		wantAddr string
		wantTLS  bool
	}{
		{url: "http://gpu1:8000", wantURL: "http://gpu1:8000", wantAddr: "gpu1:8000"},
		{url: "http://gpu1:8000/", wantURL: "http://gpu1:8000", wantAddr: "gpu1:8000"},
		{url: "http://gpu1", wantURL: "http://gpu1", wantAddr: "gpu1:80"},
		{url: "http://gpu1/", wantURL: "http://gpu1", wantAddr: "gpu1:80"},
		{url: "http://gpu1:/", wantURL: "http://gpu1", wantAddr: "gpu1:80"},
		{url: "HTTP://gpu1:8000", wantURL: "http://gpu1:8000", wantAddr: "gpu1:8000"},
		{url: "https://api.example.com", wantURL: "https://api.example.com", wantAddr: "api.example.com:443", wantTLS: true},
		{url: "https://api.example.com/", wantURL: "https://api.example.com", wantAddr: "api.example.com:443", wantTLS: true},
		{url: "https://api.example.com:8443/", wantURL: "https://api.example.com:8443", wantAddr: "api.example.com:8443", wantTLS: true},
		{url: "https://gw.example.com/openai/", wantURL: "https://gw.example.com/openai", wantAddr: "gw.example.com:443", wantTLS: true},
		{url: "http://10.0.0.7:11434", wantURL: "http://10.0.0.7:11434", wantAddr: "10.0.0.7:11434"},
		{url: "http://[::1]:8000/", wantURL: "http://[::1]:8000", wantAddr: "[::1]:8000"},
		{url: "http://[::1]", wantURL: "http://[::1]", wantAddr: "[::1]:80"},
		{url: "https://[fd00::7]", wantURL: "https://[fd00::7]", wantAddr: "[fd00::7]:443", wantTLS: true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg := &config.Config{Health: testHealth, Models: []config.Model{
				testModel("m", "", testVersion("v1", testBackend(tt.url, 1))),
			}}
			b := mustTable(t, cfg, NewPool()).Backends()[0]
			if b.URL != tt.wantURL || b.Addr != tt.wantAddr || b.TLS != tt.wantTLS {
				t.Errorf("URL, Addr, TLS = %q, %q, %v; want %q, %q, %v",
					b.URL, b.Addr, b.TLS, tt.wantURL, tt.wantAddr, tt.wantTLS)
			}
		})
	}
}

func TestBackendFields(t *testing.T) {
	t.Setenv("LLMGATE_ROUTER_TEST_KEY", "sk-test")
	cfg := &config.Config{Health: testHealth, Models: []config.Model{
		testModel("chat", "v1",
			testVersion("v1",
				config.Backend{URL: "http://gpu1:8000", Kind: config.KindVLLM, Model: "meta/llama", Weight: 3},
				config.Backend{URL: "http://gpu2:11434", Kind: config.KindOllama, Model: "llama3.1:8b", Weight: 1},
			),
			testVersion("v2",
				config.Backend{URL: "https://api.example.com", Model: "gpt", APIKeyEnv: "LLMGATE_ROUTER_TEST_KEY", Weight: 2},
			),
		),
	}}
	tbl := mustTable(t, cfg, NewPool())
	type row struct {
		Index                               int
		Alias, Version, Kind, Model, APIKey string
		Weight                              int
	}
	want := []row{
		{0, "chat", "v1", config.KindVLLM, "meta/llama", "", 3},
		{1, "chat", "v1", config.KindOllama, "llama3.1:8b", "", 1},
		{2, "chat", "v2", config.KindOpenAI, "gpt", "sk-test", 2}, // kind left out: openai
	}
	var got []row
	for _, b := range tbl.Backends() {
		got = append(got, row{b.Index, b.Alias, b.Version, b.Kind, b.Model, b.APIKey, b.Weight})
	}
	if len(got) != len(want) {
		t.Fatalf("Backends() = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Backends()[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := tbl.Model("chat").Versions; len(got) != 2 || len(got[0].Backends) != 2 || got[0].Backends[1] != tbl.Backends()[1] {
		t.Errorf("version v1 does not list its backends in config order")
	}
}

// State keyed by address must survive a config reload: a backend ejected, or busy, under the
// old table is ejected, or busy, under the new one.
func TestHealthSharedAcrossTables(t *testing.T) {
	clock := newFakeClock()
	pool := newTestPool(clock)
	hc := testHealth
	hc.FailureThreshold = 1
	before := &config.Config{Health: hc, Models: []config.Model{
		testModel("chat", "", testVersion("v1", testBackend("http://gpu1:8000", 1), testBackend("http://gpu2:8000", 1))),
	}}
	// The reload adds a model and names the same servers with other spellings of their URLs.
	after := &config.Config{Health: hc, Models: []config.Model{
		testModel("chat", "", testVersion("v1", testBackend("http://gpu2:8000/", 1), testBackend("http://gpu1:8000/", 1))),
		testModel("embed", "", testVersion("e1", testBackend("http://gpu1:8000", 1))),
	}}
	old := mustTable(t, before, pool)
	gpu1, gpu2 := old.Backends()[0], old.Backends()[1]
	gpu1.ReportFailure()
	gpu2.Acquire()
	hold := gpu2.Acquire()

	cur := mustTable(t, after, pool)
	tests := []struct {
		name        string
		b           *Backend
		wantHealthy bool
		wantLoad    int64
	}{
		{name: "chat gpu2", b: cur.Model("chat").Stable.Backends[0], wantHealthy: true, wantLoad: 2},
		{name: "chat gpu1", b: cur.Model("chat").Stable.Backends[1], wantHealthy: false, wantLoad: 0},
		{name: "embed gpu1", b: cur.Model("embed").Stable.Backends[0], wantHealthy: false, wantLoad: 0},
	}
	for _, tt := range tests {
		if got := tt.b.Healthy(); got != tt.wantHealthy {
			t.Errorf("%s: Healthy() = %v, want %v", tt.name, got, tt.wantHealthy)
		}
		if got := tt.b.InFlight(); got != tt.wantLoad {
			t.Errorf("%s: InFlight() = %d, want %d", tt.name, got, tt.wantLoad)
		}
	}
	if b, err := cur.Model("chat").Stable.Pick(nil); err != nil || b.Addr != "gpu2:8000" {
		t.Errorf("Pick on the new table = %v, %v; want gpu2:8000 (gpu1 was ejected before the swap)", b, err)
	}

	// Releases of requests started on the old table land on the same counter.
	hold.Release()
	if got := cur.Model("chat").Stable.Backends[0].InFlight(); got != 1 {
		t.Errorf("after Release on the old table, InFlight() on the new one = %d, want 1", got)
	}

	// A table built on another pool starts fresh.
	fresh := mustTable(t, after, newTestPool(clock))
	for _, b := range fresh.Backends() {
		if !b.Healthy() || b.InFlight() != 0 {
			t.Errorf("fresh pool: %s Healthy=%v InFlight=%d, want true 0", b.Addr, b.Healthy(), b.InFlight())
		}
	}
}
