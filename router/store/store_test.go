package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// seed returns the state of a config with one alias "chat" and versions v1 (stable) and v2.
func seed(t testing.TB) *router.State {
	t.Helper()
	b := func(url string) config.Backend {
		return config.Backend{URL: url, Kind: config.KindVLLM, Model: "m", Weight: 1}
	}
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Stable: "v1", Versions: []config.Version{
		{Version: "v1", Backends: []config.Backend{b("http://gpu1:8000")}},
		{Version: "v2", Backends: []config.Backend{b("http://gpu2:8000")}},
	}}}}
	s, err := router.SeedState(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// percentAt is the canary percentage that step writes at revision rev, so a reader can check
// any stored revision's content from its number alone.
func percentAt(rev uint64) float64 { return float64(rev % 101) }

// step returns s with chat's canary at percentAt(s.Revision+1).
func step(s *router.State) (*router.State, error) {
	c := router.Change{Actor: "test", Time: t0.Add(time.Duration(s.Revision) * time.Second)}
	return s.SetTraffic(c, "chat", router.Traffic{Stable: "v1", Canary: "v2", CanaryPercent: percentAt(s.Revision + 1), Sticky: "user"})
}

// checkAt fails t unless s is the state step wrote at revision rev.
func checkAt(t testing.TB, s *router.State, rev uint64) {
	t.Helper()
	m := s.Model("chat")
	if s.Revision != rev || m == nil || m.Revision != rev || m.CanaryPercent != percentAt(rev) {
		t.Errorf("state at revision %d: revision %d, chat %+v; want canary at %v%%", rev, s.Revision, m, percentAt(rev))
	}
}

// stores are the implementations every conformance test runs against; open reopens the same
// store (for Memory, the same value).
var stores = []struct {
	name string
	new  func(t testing.TB) (open func() Store)
}{
	{"memory", func(testing.TB) func() Store {
		m := NewMemory()
		return func() Store { return m }
	}},
	{"bolt", func(t testing.TB) func() Store {
		path := filepath.Join(t.TempDir(), "state.db")
		return func() Store {
			b, err := OpenBolt(path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}},
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	for _, impl := range stores {
		t.Run(impl.name, func(t *testing.T) {
			open := impl.new(t)
			st := open()
			if _, err := st.Load(ctx); !errors.Is(err, ErrEmpty) {
				t.Fatalf("Load on an empty store: %v, want ErrEmpty", err)
			}
			s1 := seed(t)
			s2, err := step(s1)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Commit(ctx, 1, s2); !errors.Is(err, router.ErrConflict) {
				t.Errorf("Commit(1) on an empty store: %v, want ErrConflict", err)
			}
			if err := st.Commit(ctx, 0, s1); err != nil {
				t.Fatalf("Commit(0, seed): %v", err)
			}
			s9 := s2.Clone()
			s9.Revision = 9
			tests := []struct {
				name     string
				expected uint64
				s        *router.State
				wantErr  error // nil: any error
			}{
				{"stale expected", 0, s2, router.ErrConflict},
				{"expected ahead", 5, s9, router.ErrConflict},
				{"revision not above expected", 1, s1, nil},
				{"nil state", 1, nil, nil},
			}
			for _, tt := range tests {
				err := st.Commit(ctx, tt.expected, tt.s)
				if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("%s: Commit = %v, want an error (%v)", tt.name, err, tt.wantErr)
				}
			}
			if err := st.Commit(ctx, 1, s2); err != nil {
				t.Fatalf("Commit(1, step): %v", err)
			}
			s2.Models[0].Stable = "changed after commit" // the store must hold its own copy
			got, err := st.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkAt(t, got, 2)
			if got.Model("chat").Stable != "v1" {
				t.Errorf("Load returned a state that aliases the committed value")
			}

			// Reopening serves the latest state and every revision before it.
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = open()
			defer st.Close()
			got, err = st.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := step(seed(t))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("after reopening, Load =\n%s\nwant\n%s", jsonOf(t, got), jsonOf(t, want))
			}
			type reviser interface {
				Revision(context.Context, uint64) (*router.State, error)
			}
			r := st.(reviser)
			if old, err := r.Revision(ctx, 1); err != nil || !reflect.DeepEqual(old, seed(t)) {
				t.Errorf("Revision(1) = %v, %v; want the seed", old, err)
			}
			if _, err := r.Revision(ctx, 3); !errors.Is(err, ErrNotFound) {
				t.Errorf("Revision(3) error = %v, want ErrNotFound", err)
			}
			canceled, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := st.Load(canceled); !errors.Is(err, context.Canceled) {
				t.Errorf("Load with a canceled context: %v, want context.Canceled", err)
			}
		})
	}
}

// Writers racing from the same revision: exactly one wins each round, the rest get ErrConflict.
func TestStoreConcurrentCommits(t *testing.T) {
	ctx := context.Background()
	for _, impl := range stores {
		t.Run(impl.name, func(t *testing.T) {
			st := impl.new(t)()
			defer st.Close()
			if err := st.Commit(ctx, 0, seed(t)); err != nil {
				t.Fatal(err)
			}
			const writers, rounds = 4, 10
			for round := range rounds {
				cur, err := st.Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				next, err := step(cur)
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				errs := make([]error, writers)
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[w] = st.Commit(ctx, cur.Revision, next)
					}()
				}
				wg.Wait()
				won := 0
				for _, err := range errs {
					switch {
					case err == nil:
						won++
					case !errors.Is(err, router.ErrConflict):
						t.Errorf("round %d: Commit error %v, want nil or ErrConflict", round, err)
					}
				}
				if won != 1 {
					t.Errorf("round %d: %d writers won, want 1", round, won)
				}
			}
			got, err := st.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkAt(t, got, rounds+1)
		})
	}
}

func TestDecodeRefusesOtherFormats(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"newer format", `{"format":2,"state":{"revision":1,"models":[]}}`, "state format 2 is newer than this llmgate reads (1)"},
		{"older format", `{"format":0,"state":{"revision":1,"models":[]}}`, "unknown state format 0"},
		{"no state", `{"format":1}`, "a state document without its state"},
		{"not json", `{"format":1,`, "decoding state"},
	}
	for _, tt := range tests {
		if s, err := decode([]byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: decode = %+v, %v; want an error saying %q", tt.name, s, err, tt.want)
		}
	}
}

// A latest revision that cannot be read fails Load with the file and the revision named, for
// the operator to find, rather than only the decoder's words.
func TestBoltLoadNamesTheUnreadableRevision(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Commit(ctx, 0, &router.State{Revision: 1}); err != nil {
		t.Fatal(err)
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(revisionsBucket).Put(revKey(2), []byte(`{"format":2,"state":{"revision":2,"models":[]}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Load(ctx)
	want := path + " revision 2: store: state format 2 is newer than this llmgate reads (1)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load of a newer format: %v; want an error saying %q", err, want)
	}
}

func TestBoltSecondOpenFails(t *testing.T) {
	defer func(d time.Duration) { lockTimeout = d }(lockTimeout)
	lockTimeout = 100 * time.Millisecond
	path := filepath.Join(t.TempDir(), "state.db")
	first, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// bbolt's flock is per open file description, so a second open in one process conflicts as
	// a second gateway would; it fails after lockTimeout instead of hanging.
	second, err := OpenBolt(path)
	if err == nil {
		second.Close()
		t.Fatal("a second OpenBolt on a locked file succeeded")
	}
	if !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("error %q does not say the file is in use", err)
	}
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The gateway's sequence, start to restart: an empty store is seeded from config; an admin
// write builds the new table before committing, so a state that cannot serve is never stored;
// after a restart the store wins and its differences from the file are reported.
func TestStartupAndWriteFlow(t *testing.T) {
	t.Setenv("LLMGATE_STORE_TEST_UNSET", "") // empty fails a table build as unset does
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	cfg := &config.Config{Models: []config.Model{{Alias: "chat", Versions: []config.Version{
		{Version: "v1", Backends: []config.Backend{{URL: "http://gpu1:8000", Kind: "vllm", Model: "m", Weight: 1}}},
	}}}}
	pool := router.NewPool()
	startup := func() (Store, *router.State, *router.Table) {
		st, err := OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := st.Load(ctx)
		if errors.Is(err, ErrEmpty) {
			if s, err = router.SeedState(cfg, t0); err == nil {
				err = st.Commit(ctx, 0, s)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := router.NewTableFromState(s, cfg.Health, pool)
		if err != nil {
			t.Fatal(err)
		}
		return st, s, tbl
	}

	st, s, tbl := startup()
	if tbl.Revision() != 1 || router.DiffConfig(s, cfg) != nil {
		t.Fatalf("first start: revision %d, differences %q; want 1 and none", tbl.Revision(), router.DiffConfig(s, cfg))
	}
	write := func(next *router.State, err error) error {
		if err != nil {
			return err
		}
		if _, err := router.NewTableFromState(next, cfg.Health, pool); err != nil {
			return err // nothing committed
		}
		if err := st.Commit(ctx, s.Revision, next); err != nil {
			return err
		}
		s = next
		return nil
	}
	c := router.Change{Actor: "ops", Time: t0.Add(time.Minute)}
	unset := router.VersionSpec{Name: "v2", Backends: []router.BackendSpec{{URL: "http://gpu2:8000", Model: "m", Weight: 1, APIKeyEnv: "LLMGATE_STORE_TEST_UNSET"}}}
	if err := write(s.Deploy(c, "chat", unset)); err == nil {
		t.Fatal("a version whose API key variable is unset was committed")
	}
	ok := router.VersionSpec{Name: "v2", Backends: []router.BackendSpec{{URL: "http://gpu2:8000", Model: "m", Weight: 1}}}
	if err := write(s.Deploy(c, "chat", ok)); err != nil {
		t.Fatal(err)
	}
	if err := write(s.SetTraffic(c, "chat", router.Traffic{Stable: "v1", Canary: "v2", CanaryPercent: 10, Sticky: "user"})); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, s, tbl = startup()
	defer st.Close()
	if tbl.Revision() != 3 || tbl.Model("chat").Canary == nil {
		t.Errorf("after restart: revision %d, canary %v; want 3 and v2", tbl.Revision(), tbl.Model("chat").Canary)
	}
	want := []string{`model "chat" version "v2": in store, not in config`}
	if got := router.DiffConfig(s, cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("DiffConfig after restart = %q, want %q", got, want)
	}
}

// BenchmarkCommit prices one admin write: encode, compare revision, put, and (for bolt) fsync.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	for _, impl := range stores {
		b.Run(impl.name, func(b *testing.B) {
			st := impl.new(b)()
			defer st.Close()
			s := seed(b)
			if err := st.Commit(ctx, 0, s); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				next, err := step(s)
				if err == nil {
					err = st.Commit(ctx, s.Revision, next)
				}
				if err != nil {
					b.Fatal(err)
				}
				s = next
			}
		})
	}
}

// The state file keeps the latest keptRevisions revisions, not every one: each is the whole
// state with its history, and a file of every revision grew without bound. The latest state,
// history included, survives the pruning and a reopen.
func TestBoltKeepsLatestRevisions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	s := seed(t)
	if err := b.Commit(ctx, 0, s); err != nil {
		t.Fatal(err)
	}
	const commits = 3 * keptRevisions
	for range commits - 1 {
		next, err := step(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(ctx, s.Revision, next); err != nil {
			t.Fatal(err)
		}
		s = next
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	revs, err := b.Revisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != keptRevisions || revs[0] != commits-keptRevisions+1 || revs[len(revs)-1] != commits {
		t.Fatalf("stored revisions %d..%d (%d), want the latest %d: %d..%d", revs[0], revs[len(revs)-1], len(revs), keptRevisions, commits-keptRevisions+1, commits)
	}
	got, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAt(t, got, commits)
	if !reflect.DeepEqual(got, s) {
		t.Errorf("the latest state changed in the pruning:\n%s\nwant\n%s", jsonOf(t, got), jsonOf(t, s))
	}
	if _, err := b.Revision(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revision(1) after pruning: %v, want ErrNotFound", err)
	}
}

// A store file with a damaged page (the header of the page that holds the revisions) fails
// OpenBolt with an error naming the file, where bbolt would panic on its first read of the page
// ("assertion failed: Page expected to be: 3, but self identifies as ..."), crashing the
// start, or a running gateway at its next commit.
func TestBoltDamagedPageIsAnOpenError(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	for rev := uint64(1); rev <= 3; rev++ {
		// Documents of 2 KB: a bucket of a few small ones is inline, in its parent's page.
		s := &router.State{Revision: rev, Models: []router.ModelState{{Alias: strings.Repeat("a", 2048)}}}
		if err := b.Commit(ctx, rev-1, s); err != nil {
			t.Fatal(err)
		}
	}
	var root, pageSize int64
	err = b.db.View(func(tx *bolt.Tx) error {
		root, pageSize = int64(tx.Bucket(revisionsBucket).Root()), int64(b.db.Info().PageSize)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if root == 0 {
		t.Fatal("the revisions bucket is inline: no page of its own to damage")
	}
	b.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x41}, 16), root*pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = OpenBolt(path)
	if err == nil {
		b.Close()
		t.Fatal("OpenBolt of a damaged file succeeded")
	}
	if want := path + " is damaged"; !strings.Contains(err.Error(), want) {
		t.Fatalf("OpenBolt: %v; want an error saying %q", err, want)
	}
}
