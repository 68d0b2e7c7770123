package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// crashChildEnv names the store file a re-executed test binary commits to; set only in the child.
const crashChildEnv = "LLMGATE_STORE_CRASH_CHILD"

// TestCrashChild is the child of TestBoltCrashSafety, not a test of its own: it loads the store,
// then commits one step after another until it is killed, printing each revision on stdout
// once Commit has returned, that is once the revision is acknowledged.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("runs only as the child of TestBoltCrashSafety")
	}
	ctx := context.Background()
	st, err := OpenBolt(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := st.Load(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for {
		next, err := step(s)
		if err == nil {
			err = st.Commit(ctx, s.Revision, next)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: the line leaves with this write, after the commit.
		fmt.Fprintln(os.Stdout, next.Revision)
		s = next
	}
}

// TestBoltCrashSafety kills a committing child process with SIGKILL mid-burst, several times,
// and checks after each kill that every revision the child acknowledged is stored intact and
// the latest is the last acknowledged, or the one after (durable, killed before it printed).
func TestBoltCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, 0, seed(t)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	acked := []uint64{1}
	for round := range 3 {
		killAfter := 10 + rand.IntN(50) // acknowledgements before the kill: a random point in the burst
		got := runAndKill(t, path, killAfter)
		if len(got) < killAfter {
			t.Fatalf("round %d: the child acknowledged %d commits and exited, want %d before the kill", round, len(got), killAfter)
		}
		for i, rev := range got {
			if want := acked[len(acked)-1] + uint64(i) + 1; rev != want {
				t.Fatalf("round %d: acknowledgement %d is revision %d, want %d", round, i, rev, want)
			}
		}
		acked = append(acked, got...)
		last := acked[len(acked)-1]

		st, err := OpenBolt(path)
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		latest, err := st.Load(ctx)
		if err != nil {
			t.Fatalf("round %d: Load after kill -9: %v", round, err)
		}
		if latest.Revision != last && latest.Revision != last+1 {
			t.Errorf("round %d: latest revision %d after the kill, last acknowledged %d", round, latest.Revision, last)
		}
		checkAt(t, latest, latest.Revision)
		// Every acknowledged change is in the latest state's history; the file keeps the
		// latest keptRevisions revisions whole.
		inHistory := map[uint64]bool{}
		for _, h := range latest.Model("chat").History {
			inHistory[h.Revision] = true
		}
		oldest := uint64(1)
		if latest.Revision > keptRevisions {
			oldest = latest.Revision - keptRevisions + 1
		}
		for _, rev := range acked {
			if !inHistory[rev] {
				t.Errorf("round %d: acknowledged revision %d is not in the history", round, rev)
			}
			if rev < oldest {
				continue
			}
			s, err := st.Revision(ctx, rev)
			if err != nil {
				t.Errorf("round %d: acknowledged revision %d: %v", round, rev, err)
				continue
			}
			if rev > 1 {
				checkAt(t, s, rev)
			}
		}
		if revs, err := st.Revisions(ctx); err != nil || len(revs) == 0 || revs[0] != oldest || revs[len(revs)-1] != latest.Revision || uint64(len(revs)) != latest.Revision-oldest+1 {
			t.Errorf("round %d: %d revisions stored (%v), want %d..%d", round, len(revs), err, oldest, latest.Revision)
		}
		t.Logf("round %d: killed after %d acknowledgements (%d printed), latest revision %d", round, killAfter, len(got), latest.Revision)
		// The next child carries on from the latest, acknowledged or not.
		if latest.Revision == last+1 {
			acked = append(acked, last+1)
		}
		st.Close()
	}
}

// runAndKill starts the child on path, sends SIGKILL once it has acknowledged killAfter
// revisions, and returns every revision it acknowledged, including those printed between the
// kill decision and the kill landing.
func runAndKill(t *testing.T, path string, killAfter int) []uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var revs []uint64
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		rev, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			continue // the test framework's own output, should the child end normally
		}
		revs = append(revs, rev)
		if len(revs) == killAfter && !killed {
			// Process.Kill is SIGKILL on Unix: no deferred code, no bbolt close, as with kill -9.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	// Wait reaps the child, which releases its flock on the file; only then may we reopen.
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child exited on its own: %v", err)
	}
	return revs
}
