package router

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// splitTable builds a table from the seed of stateTestConfig plus a second alias "chat2" with the
// same versions, both with canary v2 at percent (sticky by user) and chat shadowed to v3 at
// shadowPercent.
func splitTable(t testing.TB, percent, shadowPercent float64) *Table {
	t.Helper()
	must := musts(t)
	s := seedTestState(t)
	for _, v := range []string{"v1", "v2"} {
		s = must(s.Deploy(change(0), "chat2", VersionSpec{Name: v, Backends: oneBackend("http://gpu-" + v)}))
	}
	for _, alias := range []string{"chat", "chat2"} {
		s = must(s.SetTraffic(change(1), alias, Traffic{Stable: "v1", Canary: "v2", CanaryPercent: percent, Sticky: "user"}))
	}
	if shadowPercent > 0 {
		s = must(s.SetShadow(change(2), "chat", Shadow{Version: "v3", Percent: shadowPercent}))
	}
	tbl, err := NewTableFromState(s, testHealth, NewPool())
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// within reports whether k successes of n draws at probability p lie within 5 standard
// deviations of the mean: a fixed hash passes or fails for good, and a random draw fails
// about once in 2 million runs.
func within(k, n int, p float64) bool {
	mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	return math.Abs(float64(k)-mean) <= 5*sd
}

const stickyUsers = 10000

// canaryUsers resolves every test user once for alias and returns who got the canary.
func canaryUsers(t testing.TB, tbl *Table, alias string) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	for u := range stickyUsers {
		v, err := tbl.ResolveSticky([]byte(alias), nil, []byte("user-"+strconv.Itoa(u)))
		if err != nil {
			t.Fatal(err)
		}
		if v.Name == "v2" {
			out[u] = true
		}
	}
	return out
}

func TestStickyCanarySplit(t *testing.T) {
	at10 := splitTable(t, 10, 0)
	users10 := canaryUsers(t, at10, "chat")
	if !within(len(users10), stickyUsers, 0.10) {
		t.Errorf("at 10%%, %d of %d users on the canary", len(users10), stickyUsers)
	}
	if again := canaryUsers(t, at10, "chat"); len(again) != len(users10) || !subset(users10, again) {
		t.Errorf("a second pass put %d users on the canary, not the same %d", len(again), len(users10))
	}
	// A table rebuilt from the same state (a restart, another replica) assigns the same users.
	if rebuilt := canaryUsers(t, splitTable(t, 10, 0), "chat"); len(rebuilt) != len(users10) || !subset(users10, rebuilt) {
		t.Errorf("a rebuilt table put %d users on the canary, not the same %d", len(rebuilt), len(users10))
	}

	users25 := canaryUsers(t, splitTable(t, 25, 0), "chat")
	if !within(len(users25), stickyUsers, 0.25) {
		t.Errorf("at 25%%, %d of %d users on the canary", len(users25), stickyUsers)
	}
	if !subset(users10, users25) {
		t.Errorf("raising 10%% to 25%% moved some of the %d canary users back to stable", len(users10))
	}

	// Another alias splits independently: its canary users overlap chat's as chance has it.
	other := canaryUsers(t, at10, "chat2")
	t.Logf("canary users of %d: %d at 10%%, %d at 25%%; chat2 at 10%%: %d, shared with chat: %d",
		stickyUsers, len(users10), len(users25), len(other), overlap(users10, other))
	if both := overlap(users10, other); !within(both, stickyUsers, 0.10*0.10) {
		t.Errorf("chat and chat2 share %d canary users at 10%%, want about %d", both, stickyUsers/100)
	}
}

// A new canary draws a fresh cohort: the same users are not always the first to try a version.
func TestStickyNewCanaryNewCohort(t *testing.T) {
	must := musts(t)
	s := seedTestState(t)
	s = must(s.SetTraffic(change(1), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10, Sticky: "user"}))
	first, err := NewTableFromState(s, testHealth, NewPool())
	if err != nil {
		t.Fatal(err)
	}
	s = must(s.SetTraffic(change(2), "chat", Traffic{Stable: "v1", Canary: "v3", CanaryPercent: 10, Sticky: "user"}))
	second, err := NewTableFromState(s, testHealth, NewPool())
	if err != nil {
		t.Fatal(err)
	}
	a := canaryUsers(t, first, "chat")
	b := map[int]bool{}
	for u := range stickyUsers {
		if v, _ := second.ResolveSticky([]byte("chat"), nil, []byte("user-"+strconv.Itoa(u))); v.Name == "v3" {
			b[u] = true
		}
	}
	if both := overlap(a, b); !within(both, stickyUsers, 0.01) {
		t.Errorf("canaries v2 and v3 share %d of their users, want about %d", both, stickyUsers/100)
	}
}

func subset(a, b map[int]bool) bool {
	for u := range a {
		if !b[u] {
			return false
		}
	}
	return true
}

func overlap(a, b map[int]bool) int {
	n := 0
	for u := range a {
		if b[u] {
			n++
		}
	}
	return n
}

func TestRandomSplitWithoutKey(t *testing.T) {
	tbl := splitTable(t, 10, 0)
	const n = 20000
	k := 0
	for range n {
		if v, _ := tbl.ResolveSticky([]byte("chat"), nil, nil); v.Name == "v2" {
			k++
		}
	}
	if !within(k, n, 0.10) {
		t.Errorf("without a key, %d of %d requests went to the canary at 10%%", k, n)
	}
}

func TestResolveSticky(t *testing.T) {
	tests := []struct {
		name       string
		percent    float64
		model, pin string
		key        string
		want       string // version, or the error
	}{
		{name: "0% is all stable", percent: 0, model: "chat", key: "user-1", want: "v1"},
		{name: "100% is all canary", percent: 100, model: "chat", key: "user-1", want: "v2"},
		{name: "100% without key", percent: 100, model: "chat", want: "v2"},
		{name: "model pin beats the split", percent: 100, model: "chat@v3", key: "user-1", want: "v3"},
		{name: "header pin beats the split", percent: 100, model: "chat", pin: "v1", key: "user-1", want: "v1"},
		{name: "alias without canary", percent: 100, model: "embed", key: "user-1", want: "e1"},
		{name: "unknown alias", percent: 100, model: "gpt", want: ErrUnknownModel.Error()},
		{name: "unknown pin", percent: 100, model: "chat@v9", want: ErrUnknownVersion.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := splitTable(t, tt.percent, 0)
			for range 100 { // the same answer every time, key or not
				v, err := tbl.ResolveSticky([]byte(tt.model), []byte(tt.pin), []byte(tt.key))
				got := ""
				if err != nil {
					got = err.Error()
				} else {
					got = v.Name
				}
				if got != tt.want {
					t.Fatalf("ResolveSticky(%q, %q, %q) = %s, want %s", tt.model, tt.pin, tt.key, got, tt.want)
				}
			}
		})
	}
}

func TestStickyFor(t *testing.T) {
	must := musts(t)
	s := must(seedTestState(t).SetTraffic(change(1), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10, Sticky: "header:X-User"}))
	tbl, err := NewTableFromState(s, testHealth, NewPool())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model string
		want  Sticky
	}{
		{"chat", Sticky{Kind: StickyHeader, Header: "X-User"}},
		{"chat@v2", Sticky{}}, // pinned: no key needed
		{"embed", Sticky{}},   // no canary
		{"gpt", Sticky{}},
	}
	for _, tt := range tests {
		if got := tbl.StickyFor([]byte(tt.model)); got != tt.want {
			t.Errorf("StickyFor(%q) = %+v, want %+v", tt.model, got, tt.want)
		}
	}
}

func TestParseSticky(t *testing.T) {
	tests := []struct {
		in      string
		want    Sticky
		wantStr string
		wantErr bool
	}{
		{in: "", want: Sticky{}, wantStr: "none"},
		{in: "none", want: Sticky{}, wantStr: "none"},
		{in: "user", want: Sticky{Kind: StickyUser}, wantStr: "user"},
		{in: "api_key", want: Sticky{Kind: StickyAPIKey}, wantStr: "api_key"},
		{in: "header:X-User-ID", want: Sticky{Kind: StickyHeader, Header: "X-User-ID"}, wantStr: "header:X-User-ID"},
		{in: "header:", wantErr: true},
		{in: "header:X User", wantErr: true},
		{in: "header:X:Y", wantErr: true},
		{in: "User", wantErr: true},
		{in: "cookie", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseSticky(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSticky(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			continue
		}
		if err == nil && got.String() != tt.wantStr {
			t.Errorf("ParseSticky(%q).String() = %q, want %q", tt.in, got.String(), tt.wantStr)
		}
	}
}

func TestDrawShadow(t *testing.T) {
	tbl := splitTable(t, 10, 5)
	chat := tbl.Model("chat")
	const n = 20000
	k := 0
	for range n {
		if sv := chat.Stable.DrawShadow(); sv != nil {
			if sv.Name != "v3" {
				t.Fatalf("DrawShadow = %s, want v3", sv.Name)
			}
			k++
		}
	}
	if !within(k, n, 0.05) {
		t.Errorf("%d of %d requests mirrored at 5%%", k, n)
	}
	if full := splitTable(t, 10, 100).Model("chat"); full.Canary.DrawShadow() != full.Shadow {
		t.Errorf("at 100%%, a canary request was not mirrored")
	}
	for _, v := range []*Version{chat.Shadow, tbl.Model("chat2").Stable, tbl.Model("embed").Stable} {
		for range 1000 {
			if sv := v.DrawShadow(); sv != nil {
				t.Fatalf("%s/%s mirrored to %s; want never (it is the shadow, or its alias has none)", v.Alias, v.Name, sv.Name)
			}
		}
	}
}

func TestResolveStickyDoesNotAllocate(t *testing.T) {
	tbl := splitTable(t, 10, 5)
	tests := []struct{ name, model, pin, key string }{
		{name: "sticky key", model: "chat", key: "user-42"},
		{name: "no key", model: "chat"},
		{name: "pinned", model: "chat@v3", key: "user-42"},
		{name: "unknown", model: "gpt", key: "user-42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, pin, key := []byte(tt.model), []byte(tt.pin), []byte(tt.key)
			got := testing.AllocsPerRun(100, func() {
				v, _ := tbl.ResolveSticky(model, pin, key)
				if v != nil {
					v.DrawShadow()
				}
				tbl.StickyFor(model)
			})
			if got != 0 {
				t.Errorf("ResolveSticky, DrawShadow, StickyFor allocate %v times per request, want 0", got)
			}
		})
	}
}

func BenchmarkResolveSticky(b *testing.B) {
	tbl := splitTable(b, 10, 5)
	model := []byte("chat")
	benches := []struct {
		name string
		key  []byte
	}{
		{"key", []byte("user-0123456789abcdef")},
		{"nokey", nil},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tbl.ResolveSticky(model, nil, bb.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("resolve", func(b *testing.B) { // the unsplit Resolve, for comparison
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tbl.Resolve(model, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("shadow", func(b *testing.B) {
		v := tbl.Model("chat").Stable
		b.ReportAllocs()
		for b.Loop() {
			v.DrawShadow()
		}
	})
}

// Requests resolve at full rate while a writer changes the split and swaps tables, as the
// gateway does; under -race this checks that nothing writes a table or state once published.
func TestSwapUnderTraffic(t *testing.T) {
	s := seedTestState(t)
	pool := NewPool()
	tbl, err := NewTableFromState(s, testHealth, pool)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[Table]
	cur.Store(tbl)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			model, key := []byte("chat"), []byte("user-"+strconv.Itoa(r))
			for {
				select {
				case <-done:
					return
				default:
				}
				v, err := cur.Load().ResolveSticky(model, nil, key)
				if err != nil {
					t.Error(err)
					return
				}
				if b, err := v.Pick(nil); err == nil {
					b.Acquire().Release()
				}
				v.DrawShadow()
			}
		}()
	}
	for i := range 200 {
		next, err := s.SetTraffic(change(i), "chat", Traffic{Stable: "v1", Canary: "v2", CanaryPercent: float64(i % 100), Sticky: "user"})
		if err == nil {
			next, err = next.SetShadow(change(i), "chat", Shadow{Version: "v3", Percent: float64(i % 7)})
		}
		var tbl *Table
		if err == nil {
			tbl, err = NewTableFromState(next, testHealth, pool)
		}
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(tbl)
		s = next
	}
	close(done)
	wg.Wait()
	for _, b := range cur.Load().Backends() {
		if n := b.InFlight(); n != 0 {
			t.Errorf("%s: %d in flight after every request released, want 0", b.Addr, n)
		}
	}
}
