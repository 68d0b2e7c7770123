package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/llmgate/llmgate/bench/bareproxy"
)

// runBareProxy serves the bare fasthttp reverse proxy that benchmarks compare llmgate against.
func runBareProxy(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	upstream := fs.String("upstream", "", "backend base URL, e.g. http://127.0.0.1:8000")
	listen := fs.String("listen", "127.0.0.1:8001", "address to serve on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *upstream == "" {
		fmt.Fprintln(stderr, "llmgate bareproxy: --upstream is required")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "llmgate bareproxy: listen %s: %v\n", *listen, shortErr(err))
		return 1
	}
	p := bareproxy.New(*upstream)
	fmt.Fprintf(stderr, "bareproxy on http://%s -> %s\n", ln.Addr(), *upstream)
	go p.Serve(ln) //nolint:errcheck // Close ends it
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	p.Close()
	return 0
}
