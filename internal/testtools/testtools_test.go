package testtools

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Skipf and Fatalf instead of reporting them to the real
// test. Like *testing.T, it ends the calling goroutine with runtime.Goexit.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f on a recorder in its own goroutine, as the testing package would.
func run(t *testing.T, f func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestRequire(t *testing.T) {
	const absent = "llmgate-no-such-tool-7f3a"
	emptyDir := t.TempDir()
	npmDir := t.TempDir()
	pkg := filepath.Join(npmDir, "node_modules", "openai", "package.json")
	if err := os.MkdirAll(filepath.Dir(pkg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pkg, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		require     string // value of LLMGATE_REQUIRE_TOOLS
		f           func(testing.TB)
		wantSkipped bool
		wantFailed  bool
	}{
		{"present tool", "1", func(tb testing.TB) { Require(tb, "go") }, false, false},
		{"absent tool skips", "", func(tb testing.TB) { Require(tb, absent) }, true, false},
		{"absent tool fails when required", "1", func(tb testing.TB) { Require(tb, absent) }, false, true},
		{"present node_modules", "1", func(tb testing.TB) { RequireNodeModules(tb, npmDir) }, false, false},
		{"absent node_modules skips", "", func(tb testing.TB) { RequireNodeModules(tb, emptyDir) }, true, false},
		{"absent node_modules fails when required", "1", func(tb testing.TB) { RequireNodeModules(tb, emptyDir) }, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(RequireEnv, tt.require)
			r := run(t, tt.f)
			if r.skipped != tt.wantSkipped || r.failed != tt.wantFailed {
				t.Errorf("skipped, failed = %v, %v; want %v, %v (message %q)", r.skipped, r.failed, tt.wantSkipped, tt.wantFailed, r.msg)
			}
			if (r.skipped || r.failed) && !strings.Contains(r.msg, RequireEnv) {
				t.Errorf("message %q does not name %s", r.msg, RequireEnv)
			}
		})
	}
}
