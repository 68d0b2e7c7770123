package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/llmgate/llmgate/bench/fakellm"
)

func runFakeLLM(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakellm", flag.ContinueOnError)
	opts := fakellm.RegisterFlags(fs)
	listen := fs.String("listen", "127.0.0.1:8000", "address to serve on")
	if rc, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return rc
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "llmgate fakellm: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := opts.Validate(); err != nil {
		// The package names itself in its errors; the command line has already said who speaks.
		fmt.Fprintln(stderr, "llmgate fakellm:", strings.TrimPrefix(err.Error(), "fakellm: "))
		return 2
	}
	s := fakellm.New(*opts)
	return serveUntilSignal("fakellm", *listen, s.Serve, s.Close, stderr,
		fmt.Sprintf("fakellm (%s, model %q)", opts.Flavor, opts.Model))
}

// serveUntilSignal listens on addr, serves with serve until SIGINT or SIGTERM, then closes.
// A listen error is one line on stderr and exit status 1.
func serveUntilSignal(cmd, addr string, serve func(net.Listener) error, close func() error, stderr io.Writer, what string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "llmgate %s: listen %s: %v\n", cmd, addr, shortErr(err))
		return 1
	}
	fmt.Fprintf(stderr, "%s on http://%s\n", what, ln.Addr())
	go serve(ln) //nolint:errcheck // close ends it
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = close()
	return 0
}
