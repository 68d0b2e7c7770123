// Command llmgate is an OpenAI-compatible gateway for self-hosted LLM backends. This file only
// parses flags and wires packages together; decisions live in the packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"time"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module
// version or the VCS revision (see versionOf).
var version = ""

const usage = `llmgate: an OpenAI-compatible gateway for vLLM, Ollama and other backends.

Usage:
  llmgate serve --config FILE          run the gateway from a config file
  llmgate serve --backend URL ...      run in front of backends, discovering their models
  llmgate demo                         gateway plus two simulated backends, with examples
  llmgate fakellm --flavor vllm|ollama simulated backend for tests and benchmarks
  llmgate admin VERB ...               deploy, shift traffic, promote, roll back (admin API client)
  llmgate bench ...                    load generator and side-by-side comparisons
  llmgate bareproxy --upstream URL     bare fasthttp reverse proxy, the benchmarks' yardstick
  llmgate version                      print the version

Run "llmgate COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "fakellm":
		return runFakeLLM(args[1:], stdout, stderr)
	case "admin":
		return runAdmin(args[1:], stdout, stderr)
	case "bench":
		return runBench(args[1:], stdout, stderr)
	case "bareproxy":
		return runBareProxy(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "llmgate", buildVersion(), runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "llmgate: unknown command %q (llmgate help lists the commands)\n", args[0])
	return 2
}

func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(version, bi)
}

// versionOf is the version a binary reports: the one linked in, else its module's (go install
// of a tagged version, or the pseudo-version Go 1.24 and later stamp from the VCS), else
// "dev" with the VCS revision it was built from ("dev-0123456789ab", "-dirty" with
// uncommitted changes), else "dev".
func versionOf(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	v := "dev-" + rev[:min(len(rev), 12)]
	if dirty {
		v += "-dirty"
	}
	return v
}

// parseFlags parses a subcommand's flags. -h prints its flags to stdout; a bad flag is one line
// on stderr that says where the list is, not the whole list. ok is false when the command
// must exit with rc.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (rc int, ok bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stdout, "Usage of llmgate %s:\n", fs.Name())
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0, false
	}
	fmt.Fprintf(stderr, "llmgate %s: %v (llmgate %s -h lists the flags)\n", fs.Name(), flagError(fs, err), fs.Name())
	return 2, false
}

// badValueRE matches the flag package's error for a value its flag cannot parse.
var badValueRE = regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -([^:]+): parse error$`)

// flagError rewrites the flag package's "parse error" for a duration flag ("--ttft 200"), which
// does not say what a duration looks like.
func flagError(fs *flag.FlagSet, err error) error {
	m := badValueRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	if f := fs.Lookup(m[2]); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				return fmt.Errorf("invalid value %s for flag -%s: want a duration with a unit, such as \"200ms\", \"5s\" or \"1m\"", m[1], m[2])
			}
		}
	}
	return err
}
