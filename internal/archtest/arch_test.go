// Package archtest holds the test that keeps imports pointing the way ARCHITECTURE.md draws them:
// cmd -> gateway -> router, guard, drift -> config, with config and drift importing nothing of
// ours, router, guard and drift never importing each other or gateway, and nothing in
// production importing bench.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/llmgate/llmgate/"

// allowed lists, per package of ours, the packages of ours it may import (subpackages of a
// package may import their parent's allowed set and their siblings are listed explicitly).
var allowed = map[string][]string{
	"config":           {},
	"drift":            {},
	"guard":            {"config"},
	"router":           {"config"},
	"router/store":     {"config", "router"},
	"gateway/jsonscan": {},
	"gateway/sse":      {},
	"gateway/cache":    {"gateway/jsonscan", "gateway/sse"},
	"gateway":          {"config", "router", "router/store", "guard", "drift", "gateway/jsonscan", "gateway/sse", "gateway/cache"},
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if strings.HasPrefix(dep, "bench") && !strings.HasPrefix(pkg, "bench") && !strings.HasPrefix(pkg, "cmd") {
				t.Errorf("%s imports %s: bench is for tests and tools, never production code", pkg, dep)
			}
			ok, known := allowed[pkg]
			if !known {
				continue // cmd, bench, internal: wiring and tools
			}
			if !contains(ok, dep) {
				t.Errorf("%s imports %s, which ARCHITECTURE.md's arrows do not allow", pkg, dep)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
