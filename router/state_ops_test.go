package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// musts returns a function that unwraps an operation's result, failing t on an error.
func musts(t testing.TB) func(*State, error) *State {
	return func(s *State, err error) *State {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// summary is one line describing an alias's deploy state, for got/want comparisons.
func summary(m *ModelState) string {
	if m == nil {
		return "<none>"
	}
	var versions []string
	for _, v := range m.Versions {
		versions = append(versions, v.Name)
	}
	canary := "-"
	if m.Canary != "" {
		canary = fmt.Sprintf("%s %v%%", m.Canary, m.CanaryPercent)
	}
	shadow := "-"
	if m.Shadow.Version != "" {
		shadow = m.Shadow.describe()
	}
	last := m.History[len(m.History)-1]
	return fmt.Sprintf("stable=%s canary=%s sticky=%s shadow=%s past=%v versions=%v last=%s[%s -> %s]",
		m.Stable, canary, m.Sticky, shadow, m.PastStables, versions, last.Action, last.From, last.To)
}

func oneBackend(url string) []BackendSpec {
	return []BackendSpec{{URL: url, Kind: "vllm", Model: "m", Weight: 1}}
}

func TestStateOps(t *testing.T) {
	must := musts(t)
	base := seedTestState(t) // chat: v1 stable, v2, v3; embed: e1
	canary := must(base.SetTraffic(change(1), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10, Sticky: "user"}))
	shadowed := must(canary.SetShadow(change(2), "chat", Shadow{Version: "v2", Percent: 5}))
	promoted := must(canary.Promote(change(3), "chat"))
	shadowV3 := must(base.SetShadow(change(1), "chat", Shadow{Version: "v3", Percent: 5}))
	withBackends := func(bs ...BackendSpec) func(*State) (*State, error) {
		return func(s *State) (*State, error) {
			return s.Deploy(change(9), "chat", VersionSpec{Name: "v4", Backends: bs})
		}
	}
	b := func(url, kind, model, env string, weight int) BackendSpec {
		return BackendSpec{URL: url, Kind: kind, Model: model, APIKeyEnv: env, Weight: weight}
	}
	nan := math.NaN()

	tests := []struct {
		name      string
		from      *State
		alias     string // summarised after the op; "chat" when empty
		op        func(*State) (*State, error)
		want      string // summary of alias after the op
		wantErr   error
		wantField string
	}{
		// Deploy.
		{name: "deploy", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "chat", VersionSpec{Name: "v4", Backends: oneBackend("http://gpu9:8000")})
		}, want: "stable=v1 canary=- sticky=none shadow=- past=[] versions=[v1 v2 v3 v4] last=deploy[ -> v4]"},
		{name: "deploy creates an alias", from: base, alias: "new/model", op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "new/model", VersionSpec{Name: "n1", Backends: oneBackend("http://gpu9:8000")})
		}, want: "stable=n1 canary=- sticky=none shadow=- past=[] versions=[n1] last=deploy[ -> n1]"},
		{name: "deploy an existing name", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "chat", VersionSpec{Name: "v2", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrRefused, wantField: "version"},
		{name: "deploy a name with @", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "chat", VersionSpec{Name: "v@4", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "version"},
		{name: "deploy to a bad new alias", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "bad alias", VersionSpec{Name: "v1", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "alias"},
		{name: "deploy to alias ..", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "..", VersionSpec{Name: "v1", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "alias"},
		{name: "deploy to alias ../x", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "../x", VersionSpec{Name: "v1", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "alias"},
		{name: "deploy to alias a//b", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "a//b", VersionSpec{Name: "v1", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "alias"},
		{name: "deploy version ./v4", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(change(9), "chat", VersionSpec{Name: "./v4", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "version"},
		{name: "deploy to a new alias with If-Match", from: base, op: func(s *State) (*State, error) {
			c := change(9)
			c.IfMatch = 1
			return s.Deploy(c, "fresh", VersionSpec{Name: "v1", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrConflict, wantField: "If-Match"},
		{name: "deploy without backends", from: base, op: withBackends(), wantErr: ErrInvalid, wantField: "backends"},
		{name: "deploy ftp url", from: base, op: withBackends(b("ftp://gpu9", "vllm", "m", "", 1)), wantErr: ErrInvalid, wantField: "backends[0].url"},
		{name: "deploy url with password", from: base, op: withBackends(b("http://u:p@gpu9", "vllm", "m", "", 1)), wantErr: ErrInvalid, wantField: "backends[0].url"},
		{name: "deploy url with query", from: base, op: withBackends(b("http://gpu9/?a=1", "vllm", "m", "", 1)), wantErr: ErrInvalid, wantField: "backends[0].url"},
		{name: "deploy url with port 0", from: base, op: withBackends(b("http://gpu9:0", "vllm", "m", "", 1)), wantErr: ErrInvalid, wantField: "backends[0].url"},
		{name: "deploy bad kind", from: base, op: withBackends(b("http://gpu9", "vllm", "m", "", 1), b("http://gpu8", "tgi", "m", "", 1)), wantErr: ErrInvalid, wantField: "backends[1].kind"},
		{name: "deploy no model", from: base, op: withBackends(b("http://gpu9", "vllm", "", "", 1)), wantErr: ErrInvalid, wantField: "backends[0].model"},
		{name: "deploy negative weight", from: base, op: withBackends(b("http://gpu9", "vllm", "m", "", -1)), wantErr: ErrInvalid, wantField: "backends[0].weight"},
		{name: "deploy zero weights", from: base, op: withBackends(b("http://gpu9", "vllm", "m", "", 0)), wantErr: ErrInvalid, wantField: "backends"},
		{name: "deploy a secret as api_key_env", from: base, op: withBackends(b("http://gpu9", "vllm", "m", "sk-123", 1)), wantErr: ErrInvalid, wantField: "backends[0].api_key_env"},
		{name: "deploy a duplicate backend", from: base, op: withBackends(b("http://gpu9", "vllm", "m", "", 1), b("http://gpu9", "ollama", "m", "", 1)), wantErr: ErrInvalid, wantField: "backends[1]"},
		{name: "deploy without actor", from: base, op: func(s *State) (*State, error) {
			c := change(9)
			c.Actor = ""
			return s.Deploy(c, "chat", VersionSpec{Name: "v4", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "actor"},
		{name: "deploy without time", from: base, op: func(s *State) (*State, error) {
			return s.Deploy(Change{Actor: "ops"}, "chat", VersionSpec{Name: "v4", Backends: oneBackend("http://gpu9:8000")})
		}, wantErr: ErrInvalid, wantField: "time"},

		// SetTraffic.
		{name: "traffic canary", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10, Sticky: "user"})
		}, want: "stable=v1 canary=v2 10% sticky=user shadow=- past=[] versions=[v1 v2 v3] last=traffic[v1 -> v1 + canary v2 10% sticky user]"},
		{name: "traffic grows the canary", from: canary, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 25.5, Sticky: "header:X-User"})
		}, want: "stable=v1 canary=v2 25.5% sticky=header:X-User shadow=- past=[] versions=[v1 v2 v3] last=traffic[v1 + canary v2 10% sticky user -> v1 + canary v2 25.5% sticky header:X-User]"},
		{name: "traffic clears the canary", from: canary, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1"})
		}, want: "stable=v1 canary=- sticky=none shadow=- past=[] versions=[v1 v2 v3] last=traffic[v1 + canary v2 10% sticky user -> v1]"},
		{name: "traffic sets only the sticky key", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Sticky: "user"})
		}, want: "stable=v1 canary=- sticky=user shadow=- past=[] versions=[v1 v2 v3] last=traffic[v1 sticky none -> v1 sticky user]"},
		{name: "traffic moves the stable", from: shadowV3, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v3"})
		}, want: "stable=v3 canary=- sticky=none shadow=- past=[v1] versions=[v1 v2 v3] last=traffic[v1 -> v3; shadow cleared]"},
		{name: "traffic without stable", from: canary, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{})
		}, wantErr: ErrInvalid, wantField: "stable"},
		{name: "traffic canary without stable", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Canary: "v2", CanaryPercent: 20})
		}, wantErr: ErrInvalid, wantField: "stable"},
		{name: "traffic percent finer than 0.01", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10.005})
		}, wantErr: ErrInvalid, wantField: "canary_percent"},
		{name: "traffic percent over 100", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 101})
		}, wantErr: ErrInvalid, wantField: "canary_percent"},
		{name: "traffic percent NaN", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: nan})
		}, wantErr: ErrInvalid, wantField: "canary_percent"},
		{name: "traffic percent without canary", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", CanaryPercent: 5})
		}, wantErr: ErrInvalid, wantField: "canary_percent"},
		{name: "traffic unknown canary", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v9", CanaryPercent: 5})
		}, wantErr: ErrUnknownVersion, wantField: "canary"},
		{name: "traffic canary is the stable", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v2", Canary: "v2", CanaryPercent: 5})
		}, wantErr: ErrInvalid, wantField: "canary"},
		{name: "traffic unknown stable", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v9"})
		}, wantErr: ErrUnknownVersion, wantField: "stable"},
		{name: "traffic bad sticky", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 5, Sticky: "cookie"})
		}, wantErr: ErrInvalid, wantField: "sticky"},
		{name: "traffic bad sticky header", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 5, Sticky: "header:X User"})
		}, wantErr: ErrInvalid, wantField: "sticky"},
		{name: "traffic unknown alias", from: base, op: func(s *State) (*State, error) {
			return s.SetTraffic(change(9), "gpt-4o", Traffic{Stable: "v1"})
		}, wantErr: ErrUnknownModel, wantField: "alias"},

		// SetShadow.
		{name: "shadow", from: base, op: func(s *State) (*State, error) {
			return s.SetShadow(change(9), "chat", Shadow{Version: "v3", Percent: 5})
		}, want: "stable=v1 canary=- sticky=none shadow=v3 5% past=[] versions=[v1 v2 v3] last=shadow[ -> v3 5%]"},
		{name: "shadow cleared", from: shadowV3, op: func(s *State) (*State, error) {
			return s.SetShadow(change(9), "chat", Shadow{})
		}, want: "stable=v1 canary=- sticky=none shadow=- past=[] versions=[v1 v2 v3] last=shadow[v3 5% -> ]"},
		{name: "shadow of the stable", from: base, op: func(s *State) (*State, error) {
			return s.SetShadow(change(9), "chat", Shadow{Version: "v1", Percent: 5})
		}, wantErr: ErrInvalid, wantField: "version"},
		{name: "shadow unknown version", from: base, op: func(s *State) (*State, error) {
			return s.SetShadow(change(9), "chat", Shadow{Version: "v9", Percent: 5})
		}, wantErr: ErrUnknownVersion, wantField: "version"},
		{name: "shadow percent without version", from: base, op: func(s *State) (*State, error) {
			return s.SetShadow(change(9), "chat", Shadow{Percent: 5})
		}, wantErr: ErrInvalid, wantField: "percent"},
		{name: "shadow percent negative", from: base, op: func(s *State) (*State, error) {
			return s.SetShadow(change(9), "chat", Shadow{Version: "v3", Percent: -1})
		}, wantErr: ErrInvalid, wantField: "percent"},

		// Promote.
		{name: "promote", from: canary, op: func(s *State) (*State, error) { return s.Promote(change(9), "chat") },
			want: "stable=v2 canary=- sticky=user shadow=- past=[v1] versions=[v1 v2 v3] last=promote[v1 + canary v2 10% sticky user -> v2]"},
		{name: "promote clears a shadow that became stable", from: shadowed, op: func(s *State) (*State, error) { return s.Promote(change(9), "chat") },
			want: "stable=v2 canary=- sticky=user shadow=- past=[v1] versions=[v1 v2 v3] last=promote[v1 + canary v2 10% sticky user -> v2; shadow cleared]"},
		{name: "promote without canary", from: base, op: func(s *State) (*State, error) { return s.Promote(change(9), "chat") },
			wantErr: ErrRefused, wantField: "canary"},

		// Rollback.
		{name: "rollback clears a canary", from: canary, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "") },
			want: "stable=v1 canary=- sticky=user shadow=- past=[] versions=[v1 v2 v3] last=rollback[v1 + canary v2 10% sticky user -> v1]"},
		{name: "rollback to the previous stable", from: promoted, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "") },
			want: "stable=v1 canary=- sticky=user shadow=- past=[] versions=[v1 v2 v3] last=rollback[v2 -> v1]"},
		{name: "rollback with nothing before", from: base, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "") },
			wantErr: ErrRefused, wantField: "to"},
		{name: "rollback to a named version", from: canary, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "v3") },
			want: "stable=v3 canary=- sticky=user shadow=- past=[] versions=[v1 v2 v3] last=rollback[v1 + canary v2 10% sticky user -> v3]"},
		{name: "rollback named to the stable clears the canary", from: canary, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "v1") },
			want: "stable=v1 canary=- sticky=user shadow=- past=[] versions=[v1 v2 v3] last=rollback[v1 + canary v2 10% sticky user -> v1]"},
		{name: "rollback to the stable without canary", from: base, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "v1") },
			wantErr: ErrRefused, wantField: "to"},
		{name: "rollback to an unknown version", from: base, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "v9") },
			wantErr: ErrUnknownVersion, wantField: "to"},
		{name: "rollback clears a shadow that became stable", from: shadowV3, op: func(s *State) (*State, error) { return s.Rollback(change(9), "chat", "v3") },
			want: "stable=v3 canary=- sticky=none shadow=- past=[] versions=[v1 v2 v3] last=rollback[v1 -> v3; shadow cleared]"},

		// DeleteVersion.
		{name: "delete", from: base, op: func(s *State) (*State, error) { return s.DeleteVersion(change(9), "chat", "v3") },
			want: "stable=v1 canary=- sticky=none shadow=- past=[] versions=[v1 v2] last=delete[v3 -> ]"},
		{name: "delete a past stable", from: promoted, op: func(s *State) (*State, error) { return s.DeleteVersion(change(9), "chat", "v1") },
			want: "stable=v2 canary=- sticky=user shadow=- past=[] versions=[v2 v3] last=delete[v1 -> ]"},
		{name: "delete the stable", from: base, op: func(s *State) (*State, error) { return s.DeleteVersion(change(9), "chat", "v1") },
			wantErr: ErrRefused, wantField: "version"},
		{name: "delete the canary", from: canary, op: func(s *State) (*State, error) { return s.DeleteVersion(change(9), "chat", "v2") },
			wantErr: ErrRefused, wantField: "version"},
		{name: "delete the shadow", from: shadowV3, op: func(s *State) (*State, error) { return s.DeleteVersion(change(9), "chat", "v3") },
			wantErr: ErrRefused, wantField: "version"},
		{name: "delete an unknown version", from: base, op: func(s *State) (*State, error) { return s.DeleteVersion(change(9), "chat", "v9") },
			wantErr: ErrUnknownVersion, wantField: "version"},
		{name: "delete from an unknown alias", from: base, op: func(s *State) (*State, error) { return s.DeleteVersion(change(9), "gpt", "v1") },
			wantErr: ErrUnknownModel, wantField: "alias"},

		// DeleteModel.
		{name: "delete an unknown model", from: base, op: func(s *State) (*State, error) { return s.DeleteModel(change(9), "gpt") },
			wantErr: ErrUnknownModel, wantField: "alias"},
		{name: "delete a model with a stale If-Match", from: canary, op: func(s *State) (*State, error) {
			c := change(9)
			c.IfMatch = 1
			return s.DeleteModel(c, "chat")
		}, wantErr: ErrConflict, wantField: "If-Match"},

		// If-Match compares the alias's own revision.
		{name: "if-match current", from: canary, op: func(s *State) (*State, error) {
			c := change(9)
			c.IfMatch = 2
			return s.Promote(c, "chat")
		}, want: "stable=v2 canary=- sticky=user shadow=- past=[v1] versions=[v1 v2 v3] last=promote[v1 + canary v2 10% sticky user -> v2]"},
		{name: "if-match stale", from: canary, op: func(s *State) (*State, error) {
			c := change(9)
			c.IfMatch = 1
			return s.Promote(c, "chat")
		}, wantErr: ErrConflict, wantField: "If-Match"},
		{name: "if-match unaffected by another alias", from: canary, alias: "embed", op: func(s *State) (*State, error) {
			c := change(9)
			c.IfMatch = 1 // embed has not changed since the seed, though chat has
			return s.Deploy(c, "embed", VersionSpec{Name: "e2", Backends: oneBackend("http://gpu9")})
		}, want: "stable=e1 canary=- sticky=none shadow=- past=[] versions=[e1 e2] last=deploy[ -> e2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alias := tt.alias
			if alias == "" {
				alias = "chat"
			}
			before := mustJSON(t, tt.from)
			got, err := tt.op(tt.from)
			if after := mustJSON(t, tt.from); after != before {
				t.Errorf("the operation modified its input:\nbefore %s\nafter  %s", before, after)
			}
			if tt.wantErr != nil {
				var fe *FieldError
				if got != nil || !errors.Is(err, tt.wantErr) || !errors.As(err, &fe) || fe.Field != tt.wantField {
					t.Fatalf("got %v, %v; want nil and a FieldError on %q wrapping %v", got, err, tt.wantField, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), tt.wantField+": ") {
					t.Errorf("error %q does not start with its field", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			m := got.Model(alias)
			if s := summary(m); s != tt.want {
				t.Errorf("got  %s\nwant %s", s, tt.want)
			}
			last := m.History[len(m.History)-1]
			if got.Revision != tt.from.Revision+1 || m.Revision != got.Revision || last.Revision != got.Revision {
				t.Errorf("revisions: state %d, alias %d, history %d; want %d for all",
					got.Revision, m.Revision, last.Revision, tt.from.Revision+1)
			}
			if last.Actor != "ops" || !last.Time.Equal(change(9).Time) {
				t.Errorf("history entry %+v does not record the change's actor and time", last)
			}
			for _, o := range got.Models {
				if o.Alias != alias && mustJSON(t, o) != mustJSON(t, tt.from.Model(o.Alias)) {
					t.Errorf("alias %q changed too", o.Alias)
				}
			}
		})
	}
}

// Repeated rollbacks walk back through the stables, never to the one just abandoned.
func TestRollbackWalksBack(t *testing.T) {
	must := musts(t)
	s := seedTestState(t)
	for i, v := range []string{"v2", "v3"} {
		s = must(s.SetTraffic(change(2*i), "chat", Traffic{Stable: s.Model("chat").Stable, Canary: v, CanaryPercent: 50}))
		s = must(s.Promote(change(2*i+1), "chat"))
	}
	var got []string
	for i := range 3 {
		next, err := s.Rollback(change(10+i), "chat", "")
		if err != nil {
			got = append(got, "refused")
			break
		}
		s = next
		got = append(got, s.Model("chat").Stable)
	}
	if want := "v2 v1 refused"; strings.Join(got, " ") != want {
		t.Errorf("stables after each rollback = %q, want %q", got, want)
	}
}

// A stable set again by hand is not also a rollback target: after v1 -> v2 -> v1 by traffic and a
// promote of v2, one rollback returns to v1 and a second has nowhere to go (it went back to v2,
// the version just rolled away from).
func TestRollbackNeverReturnsToTheVersionLeft(t *testing.T) {
	must := musts(t)
	s := seedTestState(t) // chat: v1 stable
	s = must(s.SetTraffic(change(1), "chat", Traffic{Stable: "v2"}))
	s = must(s.SetTraffic(change(2), "chat", Traffic{Stable: "v1"}))
	s = must(s.SetTraffic(change(3), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10}))
	s = must(s.Promote(change(4), "chat"))
	if past := s.Model("chat").PastStables; strings.Join(past, " ") != "v1" {
		t.Errorf("PastStables after promote = %q, want [v1]: no stable, no duplicates", past)
	}
	s = must(s.Rollback(change(5), "chat", ""))
	if got := s.Model("chat").Stable; got != "v1" {
		t.Fatalf("stable after the first rollback = %q, want v1", got)
	}
	if next, err := s.Rollback(change(6), "chat", ""); err == nil {
		t.Errorf("second rollback went to %q, want it refused (no earlier stable)", next.Model("chat").Stable)
	}

	// A state saved before the fix can hold the stable in PastStables: a rollback skips it.
	m := s.Models[0].clone()
	m.Stable, m.PastStables = "v1", []string{"v3", "v2", "v1"}
	s = &State{Revision: s.Revision, Models: []ModelState{m}}
	s = must(s.Rollback(change(7), "chat", ""))
	if got := s.Model("chat").Stable; got != "v2" {
		t.Errorf("rollback from v1 with past [v3 v2 v1] went to %q, want v2", got)
	}
}

func TestHistoryBounded(t *testing.T) {
	must := musts(t)
	s := seedTestState(t)
	for i := range MaxHistory + 10 {
		s = must(s.SetShadow(change(i), "chat", Shadow{Version: "v3", Percent: float64(i % 100)}))
	}
	h := s.Model("chat").History
	if len(h) != MaxHistory || h[len(h)-1].Revision != s.Revision || h[0].Revision != s.Revision-MaxHistory+1 {
		t.Errorf("history has %d entries, revisions %d..%d; want the last %d up to %d",
			len(h), h[0].Revision, h[len(h)-1].Revision, MaxHistory, s.Revision)
	}
}

func TestChangeReason(t *testing.T) {
	must := musts(t)
	c := change(1)
	c.Reason = "p95 TTFT 2.1x stable (Mann-Whitney p=0.001)"
	s := must(seedTestState(t).SetTraffic(change(0), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 5}))
	s = must(s.Rollback(c, "chat", ""))
	if h := s.Model("chat").History; h[len(h)-1].Reason != c.Reason {
		t.Errorf("reason = %q, want %q", h[len(h)-1].Reason, c.Reason)
	}
	c.Reason = strings.Repeat("x", maxReasonLen+1)
	if _, err := s.Promote(c, "chat"); !errors.Is(err, ErrInvalid) {
		t.Errorf("an overlong reason: error %v, want ErrInvalid", err)
	}
}

// Deploy normalises a copy: the caller's backends stay as given.
func TestDeployDoesNotModifyArgument(t *testing.T) {
	must := musts(t)
	bs := []BackendSpec{{URL: "http://gpu9", Model: "m", Weight: 1}}
	s := must(seedTestState(t).Deploy(change(1), "chat", VersionSpec{Name: "v4", Backends: bs}))
	if bs[0].Kind != "" {
		t.Errorf("caller's backend kind became %q", bs[0].Kind)
	}
	if got := s.Model("chat").Version("v4").Backends[0].Kind; got != "openai" {
		t.Errorf("stored kind = %q, want openai", got)
	}
}

// DeleteModel removes the alias with all its versions at the next revision; the other aliases
// are untouched, and the input state is not modified.
func TestDeleteModel(t *testing.T) {
	must := musts(t)
	s := must(seedTestState(t).SetTraffic(change(1), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10}))
	before := mustJSON(t, s)
	got := must(s.DeleteModel(change(2), "chat"))
	if mustJSON(t, s) != before {
		t.Errorf("DeleteModel modified its input")
	}
	if got.Model("chat") != nil || got.Revision != s.Revision+1 || len(got.Models) != len(s.Models)-1 {
		t.Fatalf("after DeleteModel: revision %d, %d models, chat %v; want revision %d without chat", got.Revision, len(got.Models), got.Model("chat"), s.Revision+1)
	}
	if mustJSON(t, got.Model("embed")) != mustJSON(t, s.Model("embed")) {
		t.Errorf("embed changed")
	}
}

// A write that leaves the alias as it is (the same split, the same shadow) returns the state
// itself: no revision, no history entry. If-Match is still checked.
func TestNoOpWritesChangeNothing(t *testing.T) {
	must := musts(t)
	s := must(seedTestState(t).SetTraffic(change(1), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10, Sticky: "user"}))
	s = must(s.SetShadow(change(2), "chat", Shadow{Version: "v3", Percent: 5}))
	ops := map[string]func(c Change) (*State, error){
		"same split":  func(c Change) (*State, error) { return s.SetTraffic(c, "chat", s.Model("chat").Traffic()) },
		"same shadow": func(c Change) (*State, error) { return s.SetShadow(c, "chat", Shadow{Version: "v3", Percent: 5}) },
	}
	for name, op := range ops {
		if got := must(op(change(3))); got != s {
			t.Errorf("%s: got a new state at revision %d, want the same state at %d", name, got.Revision, s.Revision)
		}
		c := change(3)
		c.IfMatch = 1
		if _, err := op(c); !errors.Is(err, ErrConflict) {
			t.Errorf("%s with a stale If-Match: %v, want a conflict", name, err)
		}
	}
	if got := must(s.SetTraffic(change(3), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10})); got == s || got.Model("chat").Sticky != "none" {
		t.Errorf("a different sticky key is a change: %+v", got.Model("chat"))
	}
}

// A rollout's record rides on the operation it goes with: one revision for the split and the
// record, carried unchanged by later operations, and a record-only change is a change of its
// own with history; the same record again changes nothing.
func TestRolloutRecord(t *testing.T) {
	must := musts(t)
	base := seedTestState(t)
	rec := func(s string) *json.RawMessage { r := json.RawMessage(s); return &r }
	c := change(1)
	c.Rollout = rec(`{"state":"running","step":0}`)
	step1 := must(base.SetTraffic(c, "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10, Sticky: "user"}))
	if m := step1.Model("chat"); step1.Revision != base.Revision+1 || string(m.Rollout) != `{"state":"running","step":0}` || m.Canary != "v2" {
		t.Fatalf("after the first step: revision %d, %s, record %s", step1.Revision, summary(m), m.Rollout)
	}
	if base.Model("chat").Rollout != nil {
		t.Fatal("the operation changed its receiver's record")
	}
	shadowed := must(step1.SetShadow(change(2), "chat", Shadow{Version: "v3", Percent: 5}))
	if got := string(shadowed.Model("chat").Rollout); got != `{"state":"running","step":0}` {
		t.Fatalf("an operation without a record changed it to %s", got)
	}

	c = change(3)
	c.Reason = "rollout paused by ops"
	c.Rollout = rec(`{"state":"paused","step":0}`)
	paused := must(shadowed.RecordRollout(c, "chat", "running", "paused"))
	m := paused.Model("chat")
	if paused.Revision != shadowed.Revision+1 || m.Revision != paused.Revision || string(m.Rollout) != `{"state":"paused","step":0}` ||
		summary(m) != "stable=v1 canary=v2 10% sticky=user shadow=v3 5% past=[] versions=[v1 v2 v3] last=rollout[running -> paused]" {
		t.Fatalf("after the pause: revision %d, %s, record %s", paused.Revision, summary(m), m.Rollout)
	}
	if again := must(paused.RecordRollout(c, "chat", "running", "paused")); again != paused {
		t.Fatal("recording the same rollout again made a new revision")
	}
	c.Rollout = nil
	if _, err := paused.RecordRollout(c, "chat", "paused", "running"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a record-only change without a record: %v", err)
	}

	// The record survives the store's encoding.
	var back State
	if err := json.Unmarshal([]byte(mustJSON(t, paused)), &back); err != nil || string(back.Model("chat").Rollout) != `{"state":"paused","step":0}` {
		t.Fatalf("after a JSON round trip: %v %s", err, back.Model("chat").Rollout)
	}
}

// A percent of -0 (which JSON allows) is stored, shown and recorded as 0.
func TestNegativeZeroPercent(t *testing.T) {
	must := musts(t)
	s := must(seedTestState(t).SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: math.Copysign(0, -1)}))
	s = must(s.SetShadow(change(10), "chat", Shadow{Version: "v3", Percent: math.Copysign(0, -1)}))
	m := s.Model("chat")
	if math.Signbit(m.CanaryPercent) || math.Signbit(m.Shadow.Percent) {
		t.Fatalf("stored -0: canary %v, shadow %v", m.CanaryPercent, m.Shadow.Percent)
	}
	for _, h := range m.History {
		if strings.Contains(h.To, "-0") {
			t.Errorf("history shows -0: %+v", h)
		}
	}
}

// A percent within checkPercent's tolerance of a step of 0.01 (a script's 0.1*3*100) is stored,
// shown and recorded as that step, and the same split sent as 30 is then no change.
func TestPercentStoredAtItsStep(t *testing.T) {
	must := musts(t)
	tenth := 0.1
	noisy := tenth * 3 * 100 // 30.000000000000004 at run time
	s := must(seedTestState(t).SetTraffic(change(9), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: noisy}))
	s = must(s.SetShadow(change(10), "chat", Shadow{Version: "v3", Percent: noisy}))
	m := s.Model("chat")
	if m.CanaryPercent != 30 || m.Shadow.Percent != 30 {
		t.Fatalf("stored canary %v, shadow %v; want 30 and 30", m.CanaryPercent, m.Shadow.Percent)
	}
	if got := m.History[len(m.History)-2].To; got != "v1 + canary v2 30% sticky none" {
		t.Errorf("history of the split: %q", got)
	}
	if again := must(s.SetTraffic(change(11), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 30})); again != s {
		t.Errorf("the same split as 30 made revision %d; want no change", again.Revision)
	}
}
