// Package testtools lets tests depend on external tools (node, etcd, promtool) without making
// `go test ./...` fail on a machine that lacks them. It is test support: import it only from
// _test.go files.
//
// A missing tool skips the test, unless LLMGATE_REQUIRE_TOOLS is set (CI sets it in .ci/run), in
// which case it fails the test, so that CI cannot go green by skipping.
package testtools

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv is the environment variable that turns a missing tool from a skip into a failure.
const RequireEnv = "LLMGATE_REQUIRE_TOOLS"

// Require skips or fails t when tool is not found on PATH. It returns the tool's path.
func Require(t testing.TB, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		missing(t, tool+" not found on PATH; install it or run .ci/run")
	}
	return path
}

// RequireNodeModules skips or fails t when dir has no node_modules/openai, that is when
// `npm ci --prefix dir` has not been run.
func RequireNodeModules(t testing.TB, dir string) {
	t.Helper()
	pkg := filepath.Join(dir, "node_modules", "openai", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		missing(t, filepath.Join(dir, "node_modules", "openai")+" not found; run npm ci --prefix "+dir)
	}
}

// missing reports an absent tool as a skip, or as a failure when RequireEnv is set.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%s; %s is set, so this is a failure", what, RequireEnv)
	}
	t.Skipf("skipping: %s; set %s=1 to make this a failure", what, RequireEnv)
}
