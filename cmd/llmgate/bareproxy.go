package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/llmgate/llmgate/bench/bareproxy"
)

// runBareProxy serves the bare fasthttp reverse proxy that benchmarks compare llmgate against.
func runBareProxy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "backend base URL, e.g. http://127.0.0.1:8000")
	listen := fs.String("listen", "127.0.0.1:8001", "address to serve on")
	if rc, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return rc
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "llmgate bareproxy: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *upstream == "" {
		fmt.Fprintln(stderr, "llmgate bareproxy: --upstream is required")
		return 2
	}
	p := bareproxy.New(*upstream)
	return serveUntilSignal("bareproxy", *listen, p.Serve, p.Close, stderr, "bareproxy -> "+*upstream)
}
