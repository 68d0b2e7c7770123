//go:build unix

package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
)

// serveChildEnv names the backend URL a child test process serves in front of.
const serveChildEnv = "LLMGATE_TEST_SERVE_CHILD_BACKEND"

// syncBuffer is a bytes.Buffer safe for a writer and a reader on other goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A SIGHUP, which many daemons take as "reload your config", neither kills serve (it killed the
// process at once, every stream in flight cut without a drain) nor reloads it: it says so and
// serving goes on; SIGTERM then stops it with exit status 0.
func TestServeIgnoresSIGHUP(t *testing.T) {
	if url := os.Getenv(serveChildEnv); url != "" {
		os.Exit(runServe([]string{"--backend", url, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, os.Stdout, os.Stderr))
	}
	backend := startFakeLLM(t, fakellm.Options{Flavor: "vllm", Model: "m"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeIgnoresSIGHUP$")
	cmd.Env = append(os.Environ(), serveChildEnv+"="+backend)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	started, exited := make(chan struct{}), make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.OnceFunc(func() { close(started) })
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving OpenAI API") {
				once()
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-started:
	case err := <-exited:
		t.Fatalf("serve exited before serving (%v): %s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not start: %s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("serve exited on SIGHUP (%v): %s", err, stderr.String())
	case <-time.After(500 * time.Millisecond):
	}
	if !strings.Contains(stderr.String(), "SIGHUP ignored") {
		t.Errorf("stderr %q: want it to say the SIGHUP was ignored", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}
