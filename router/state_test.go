package router

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

var seedTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// stateTestConfig has chat (v1 stable, v2, v3) and embed (one version, stable left out).
func stateTestConfig() *config.Config {
	return &config.Config{Health: testHealth, Models: []config.Model{
		testModel("embed", "", testVersion("e1", config.Backend{URL: "http://gpu4:8000", Model: "bge", Weight: 1})),
		testModel("chat", "v1",
			testVersion("v1", testBackend("http://gpu1:8000", 1), testBackend("http://gpu1b:8000", 2)),
			testVersion("v2", testBackend("http://gpu2:8000", 1)),
			testVersion("v3", testBackend("http://gpu3:8000", 1)),
		),
	}}
}

func seedTestState(t testing.TB) *State {
	t.Helper()
	s, err := SeedState(stateTestConfig(), seedTime)
	if err != nil {
		t.Fatalf("SeedState: %v", err)
	}
	return s
}

// change returns a Change by "ops" at seedTime plus n minutes.
func change(n int) Change {
	return Change{Actor: "ops", Time: seedTime.Add(time.Duration(n) * time.Minute)}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSeedState(t *testing.T) {
	s := seedTestState(t)
	if s.Revision != 1 {
		t.Errorf("Revision = %d, want 1", s.Revision)
	}
	var aliases []string
	for _, m := range s.Models {
		aliases = append(aliases, m.Alias)
	}
	if got := strings.Join(aliases, ","); got != "chat,embed" {
		t.Errorf("aliases = %s, want chat,embed (sorted)", got)
	}
	chat, embed := s.Model("chat"), s.Model("embed")
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"chat stable", chat.Stable, "v1"},
		{"embed stable defaults to first version", embed.Stable, "e1"},
		{"embed kind defaults to openai", embed.Versions[0].Backends[0].Kind, config.KindOpenAI},
		{"chat versions in config order", []string{chat.Versions[0].Name, chat.Versions[1].Name, chat.Versions[2].Name}, []string{"v1", "v2", "v3"}},
		{"chat v1 backends", len(chat.Versions[0].Backends), 2},
		{"version actor", chat.Versions[1].Actor, ConfigActor},
		{"version created", chat.Versions[1].Created, seedTime},
		{"alias revision", chat.Revision, uint64(1)},
		{"sticky", chat.Sticky, "none"},
		{"history", chat.History, []HistoryEntry{{Revision: 1, Time: seedTime, Actor: ConfigActor, Action: ActionSeed, To: "v1", Reason: "seeded from config"}}},
		{"unknown alias", s.Model("nope"), (*ModelState)(nil)},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func TestSeedStateErrors(t *testing.T) {
	tests := []struct {
		name      string
		model     config.Model
		wantField string
	}{
		{"bad url", testModel("chat", "", testVersion("v1", testBackend("gpu1:8000", 1))), "backends[0].url"},
		{"stable names no version", testModel("chat", "v9", testVersion("v1", testBackend("http://gpu1", 1))), "stable"},
		{"bad alias", testModel("chat@x", "", testVersion("v1", testBackend("http://gpu1", 1))), "alias"},
		{"unaddressable alias", testModel("../chat", "", testVersion("v1", testBackend("http://gpu1", 1))), "alias"},
		{"unaddressable version", testModel("chat", "", testVersion("v1/", testBackend("http://gpu1", 1))), "version"},
		{"all weights zero", testModel("chat", "", testVersion("v1", testBackend("http://gpu1", 0))), "backends"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SeedState(&config.Config{Models: []config.Model{tt.model}}, seedTime)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Errorf("SeedState error = %v, want a FieldError on %q", err, tt.wantField)
			}
		})
	}
	dup := &config.Config{Models: []config.Model{
		testModel("chat", "", testVersion("v1", testBackend("http://gpu1", 1))),
		testModel("chat", "", testVersion("v1", testBackend("http://gpu1", 1))),
	}}
	if _, err := SeedState(dup, seedTime); !errors.Is(err, ErrInvalid) {
		t.Errorf("SeedState with a duplicate alias: error = %v, want ErrInvalid", err)
	}
}

func TestDiffConfig(t *testing.T) {
	s := seedTestState(t)
	if d := DiffConfig(s, stateTestConfig()); len(d) != 0 {
		t.Errorf("DiffConfig(seed of cfg, cfg) = %q, want none", d)
	}
	// The store moves on: a deploy to chat, a promote, and a new alias; the file also changes.
	s, err := s.Deploy(change(1), "chat", VersionSpec{Name: "v4", Backends: []BackendSpec{{URL: "http://gpu5:8000", Model: "m", Weight: 1}}})
	if err == nil {
		s, err = s.SetTraffic(change(2), "chat", Traffic{Stable: "v1", Canary: "v4", CanaryPercent: 10})
	}
	if err == nil {
		s, err = s.Promote(change(3), "chat")
	}
	if err == nil {
		s, err = s.Deploy(change(4), "admin-only", VersionSpec{Name: "a1", Backends: []BackendSpec{{URL: "http://gpu6:8000", Model: "m", Weight: 1}}})
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg := stateTestConfig()
	cfg.Models[1].Versions[1].Backends[0].Weight = 5 // chat v2
	cfg.Models = append(cfg.Models, testModel("file-only", "", testVersion("f1", testBackend("http://gpu7", 1))))
	want := []string{ // embed is unchanged, so it is absent
		`model "chat": stable "v1" in config, "v4" in store`,
		`model "chat" version "v2": backends differ`,
		`model "chat" version "v4": in store, not in config`,
		`model "file-only": in config, not in store`,
		`model "admin-only": in store, not in config`,
	}
	if got := DiffConfig(s, cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("DiffConfig =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewTableFromState(t *testing.T) {
	s := seedTestState(t)
	s, err := s.SetTraffic(change(1), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 12.5, Sticky: "header:X-User"})
	if err == nil {
		s, err = s.SetShadow(change(2), "chat", Shadow{Version: "v3", Percent: 5})
	}
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := NewTableFromState(s, testHealth, NewPool())
	if err != nil {
		t.Fatalf("NewTableFromState: %v", err)
	}
	m := tbl.Model("chat")
	type split struct {
		Stable, Canary, Shadow string
		CanaryPercent          float64
		CanaryBP, ShadowBP     uint64
		Sticky                 Sticky
	}
	got := split{m.Stable.Name, m.Canary.Name, m.Shadow.Name, m.CanaryPercent, m.canaryBP, m.shadowBP, m.Sticky}
	want := split{"v1", "v2", "v3", 12.5, 1250, 500, Sticky{Kind: StickyHeader, Header: "X-User"}}
	if got != want {
		t.Errorf("chat split = %+v, want %+v", got, want)
	}
	if tbl.Revision() != s.Revision {
		t.Errorf("Revision() = %d, want %d", tbl.Revision(), s.Revision)
	}
	if e := tbl.Model("embed"); e.Canary != nil || e.Shadow != nil || e.Sticky != (Sticky{}) {
		t.Errorf("embed has a split: %+v", e)
	}

	// A state whose references dangle (written by hand, or by a buggy binary) fails the build.
	bad := s.Clone()
	bad.Models[0].Canary = "v9"
	if _, err := NewTableFromState(bad, testHealth, NewPool()); err == nil || !strings.Contains(err.Error(), `"v9"`) {
		t.Errorf("NewTableFromState with a dangling canary: error = %v, want one naming v9", err)
	}
}

// The seed of a config builds the same table as the config itself.
func TestSeedBuildsSameTableAsConfig(t *testing.T) {
	t.Setenv("LLMGATE_ROUTER_TEST_KEY", "sk-test")
	cfg := stateTestConfig()
	cfg.Models[1].Versions[2].Backends[0].APIKeyEnv = "LLMGATE_ROUTER_TEST_KEY"
	fromCfg := mustTable(t, cfg, NewPool())
	s, err := SeedState(cfg, seedTime)
	if err != nil {
		t.Fatal(err)
	}
	fromState, err := NewTableFromState(s, cfg.Health, NewPool())
	if err != nil {
		t.Fatal(err)
	}
	// Backend indexes follow the order of models, which is the file's in a config and the
	// alias order in a state; compare model by model.
	type row struct {
		Alias, Version, URL, Addr, Kind, Model, Key string
		Weight                                      int
		Stable                                      bool
	}
	rows := func(tbl *Table) []row {
		var out []row
		for _, m := range tbl.Models() {
			for _, v := range m.Versions {
				for _, b := range v.Backends {
					out = append(out, row{b.Alias, b.Version, b.URL, b.Addr, b.Kind, b.Model, b.APIKey, b.Weight, m.Stable == v})
				}
			}
		}
		return out
	}
	if a, b := rows(fromCfg), rows(fromState); !reflect.DeepEqual(a, b) {
		t.Errorf("backends from config:\n%+v\nfrom seeded state:\n%+v", a, b)
	}
}

// The document survives a JSON round trip unchanged: the store relies on it.
func TestStateJSONRoundTrip(t *testing.T) {
	s := seedTestState(t)
	s, err := s.SetTraffic(change(1), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 0.25, Sticky: "api_key"})
	if err == nil {
		s, err = s.SetShadow(change(2), "chat", Shadow{Version: "v3", Percent: 100})
	}
	if err == nil {
		s, err = s.Promote(change(3), "chat")
	}
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal([]byte(mustJSON(t, s)), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, s) {
		t.Errorf("round trip:\n%s\nwant\n%s", mustJSON(t, &back), mustJSON(t, s))
	}
}
