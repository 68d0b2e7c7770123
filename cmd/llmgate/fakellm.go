package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/llmgate/llmgate/bench/fakellm"
)

func runFakeLLM(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakellm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := fakellm.RegisterFlags(fs)
	listen := fs.String("listen", "127.0.0.1:8000", "address to serve on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(stderr, "llmgate fakellm:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "llmgate fakellm: listen %s: %v\n", *listen, shortErr(err))
		return 1
	}
	s := fakellm.New(*opts)
	fmt.Fprintf(stderr, "fakellm (%s, model %q) on http://%s\n", opts.Flavor, opts.Model, ln.Addr())
	go s.Serve(ln) //nolint:errcheck // Close ends it
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Close()
	return 0
}
