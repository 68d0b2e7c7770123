package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/router"
	"github.com/llmgate/llmgate/router/store"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// defaultOllama is where a local Ollama listens; serve with no config and no backend uses it.
const defaultOllama = "http://127.0.0.1:11434"

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", "", "config `file` (YAML); see llmgate.example.yaml")
	var backends, kinds listFlag
	fs.Var(&backends, "backend", "backend base `URL`, repeatable; its models are discovered (instead of --config)")
	fs.Var(&kinds, "backend-kind", "`kind` (vllm, ollama or openai) of the --backend at the same position (default: detected)")
	listen := fs.String("listen", "", "data-plane `host:port` (default :8080, env LLMGATE_LISTEN)")
	adminListen := fs.String("admin-listen", "", "admin and /metrics `host:port` (default 127.0.0.1:8081, env LLMGATE_ADMIN_LISTEN)")
	if rc, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return rc
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "llmgate serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *configPath != "" && len(backends) > 0 {
		fmt.Fprintln(stderr, "llmgate serve: use either --config or --backend, not both")
		return 2
	}
	cfg, err := buildServeConfig(*configPath, backends, kinds, *listen, *adminListen)
	if err != nil {
		// Every config error at once, each on a line of its own that says where it comes from.
		for line := range strings.Lines(err.Error()) {
			fmt.Fprintln(stderr, "llmgate serve:", strings.TrimSuffix(line, "\n"))
		}
		return 1
	}
	// With a config file, admin changes live in the bbolt file at state.path. With --backend the
	// models are whatever this command line discovers, so a file left by an earlier run with other
	// backends must not win over it: state stays in memory unless LLMGATE_STATE_PATH asks.
	var st store.Store
	if *configPath == "" && os.Getenv("LLMGATE_STATE_PATH") == "" {
		st = store.NewMemory()
	}
	sig := notifyStop()
	defer signal.Stop(sig)
	g, _, err := startServing(cfg, st, stdout, stderr)
	if err != nil {
		for line := range strings.Lines(err.Error()) { // checkEnv's, one a line
			fmt.Fprintln(stderr, "llmgate serve:", strings.TrimSuffix(line, "\n"))
		}
		return 1
	}
	return waitForSignal(g, cfg.Shutdown, stderr, sig, false)
}

// startServing checks the backends, starts the gateway on cfg with deploy state st (nil: the
// bbolt file at state.path) and prints the start-up summary.
func startServing(cfg *config.Config, st store.Store, stdout, stderr io.Writer) (*gateway.Gateway, [2]net.Listener, error) {
	// The gateway's log goroutine and the warnings below both write stderr: one at a time.
	stderr = &lockedWriter{w: stderr}
	// On a first start the file says what is served, and a backend it names that does not answer
	// is a mistake in it. From then on the store decides, and a backend down (one GPU node of
	// several, or one the store no longer serves) must not keep the gateway from starting: it is
	// only said, and the health checks keep it out until it answers.
	first := st != nil || !fileExists(cfg.State.Path)
	if err := config.JoinInLineOrder(checkEnv(cfg, os.Getenv, first), checkRulesFiles(cfg)); err != nil {
		return nil, [2]net.Listener{}, err
	}
	if first {
		if err := checkBackends(cfg); err != nil {
			return nil, [2]net.Listener{}, err
		}
	}
	g, lns, err := start(cfg, stderr, st)
	if err != nil {
		return nil, lns, err
	}
	if !first {
		for _, err := range probeBackends(g.Table().Backends(), cfg.Health.Timeout, g.ProbeClients(cfg.Health.Timeout)) {
			what := "(its requests get its 404, or another backend of the version, until it serves the model)"
			if errors.As(err, new(backendDown)) {
				what = "(out of service until it passes a health check)"
			}
			fmt.Fprintln(stderr, "llmgate serve: warning:", err, what)
		}
	}
	fmt.Fprintf(stdout, "llmgate %s serving OpenAI API on http://%s/v1, admin and /metrics on http://%s\n",
		buildVersion(), lns[0].Addr(), lns[1].Addr())
	if applyMemoryLimit(cfg) {
		fmt.Fprintf(stdout, "  memory limit %d MiB (limits.memory_bytes)\n", cfg.Limits.MemoryBytes>>20)
	}
	if st == nil {
		// Absolute: a relative state.path is relative to the working directory, and a start
		// from another one would seed a new store from the file without a word.
		path := cfg.State.Path
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		fmt.Fprintf(stdout, "  deploy state in %s\n", path)
	}
	printModels(stdout, g.Table(), cfg, g.RolloutSummary)
	return g, lns, nil
}

// printModels lists the models served: the store's, which may differ from the file's, with the
// state of each one's rollout (rollout says it; nil for none).
func printModels(w io.Writer, t *router.Table, cfg *config.Config, rollout func(alias string) string) {
	for _, m := range t.Models() {
		canary := ""
		if m.Canary != nil {
			// A canary left by an operator, or by a rollout that the restart takes up.
			canary = fmt.Sprintf(", canary %s at %g%%", m.Canary.Name, m.CanaryPercent)
		}
		if rollout != nil {
			if r := rollout(m.Alias); r != "" {
				canary += " (" + r + ")"
			}
		}
		fmt.Fprintf(w, "  model %q: stable %s%s, %d version(s)\n", m.Alias, m.Stable.Name, canary, len(m.Versions))
	}
	// Editing the file after the first start changes nothing the store already decides; a model
	// added to it is the edit an operator most expects to work, so say that it did not.
	for _, mc := range cfg.Models {
		if t.Model(mc.Alias) == nil {
			fmt.Fprintf(w, "  model %q is in the config but not served: after the first start the deploy state decides (add it with llmgate admin deploy)\n", mc.Alias)
		}
	}
}

// applyMemoryLimit sets the process's soft memory limit from limits.memory_bytes, when given
// (otherwise GOMEMLIMIT from the environment, or none, as Go decides), and says whether it did.
func applyMemoryLimit(cfg *config.Config) bool {
	if cfg.Limits.MemoryBytes <= 0 {
		return false
	}
	debug.SetMemoryLimit(cfg.Limits.MemoryBytes)
	return true
}

// buildServeConfig loads the config file, or builds one from discovered backends, then applies
// defaults, environment overrides and flags, and validates.
func buildServeConfig(path string, backends, kinds []string, listen, adminListen string) (*config.Config, error) {
	var cfg *config.Config
	var err, loadErr error
	if path != "" {
		// A Config that comes back with errors (unknown keys, values it could not read left
		// out) is validated too, so that every problem is said at once.
		if cfg, loadErr = config.Load(path); cfg == nil {
			return nil, loadErr
		}
	} else {
		if len(backends) == 0 {
			if cfg, err = discoverConfig([]string{defaultOllama}, []string{"ollama"}); err != nil {
				return nil, fmt.Errorf("no --config or --backend given, and no local Ollama at %s (%v); see llmgate serve -h", defaultOllama, err)
			}
		} else if cfg, err = discoverConfig(backends, kinds); err != nil {
			return nil, err
		}
	}
	cfg.ApplyDefaults()
	// A variable that does not parse leaves the file's value; validate anyway, so that every
	// problem is said at once.
	envErr := cfg.ApplyEnv(os.Getenv)
	// Through SetFlag, so that a bad value is said to come from the flag, not the file.
	if listen != "" {
		cfg.SetFlag("listen", "--listen", listen) //nolint:errcheck // a string always sets
	}
	if adminListen != "" {
		cfg.SetFlag("admin.listen", "--admin-listen", adminListen) //nolint:errcheck
	}
	// The secrets' variables and the rules files with the rest: checked only once the rest
	// was valid, an empty one came to light a run after every other error was fixed. The
	// backends' keys are needed on a first start only, as startServing decides (see checkEnv).
	first := (path == "" && os.Getenv("LLMGATE_STATE_PATH") == "") || !fileExists(cfg.State.Path)
	if err := config.JoinInLineOrder(loadErr, envErr, cfg.Validate(), checkEnv(cfg, os.Getenv, first), checkRulesFiles(cfg)); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkEnv says, all at once, which environment variables that the config names for secrets
// (backend API keys, admin tokens, the classifier's key, the PII hash key) are empty: checked one at a time
// where each is used, the first hid the next until it was set, and an admin token's came
// only after every backend had been probed. The backends' are checked on a first start only
// (backends): from then on the store decides what is served, and a backend of the file that it
// no longer serves needs no key (the router checks the served ones').
func checkEnv(cfg *config.Config, getenv func(string) string, backends bool) error {
	var errs []error
	need := func(key, name string) {
		if name != "" && getenv(name) == "" {
			errs = append(errs, cfg.ErrorAt(key, fmt.Sprintf("environment variable %s is empty; set it before starting llmgate", name)))
		}
	}
	for i, m := range cfg.Models {
		for j, v := range m.Versions {
			for k, be := range v.Backends {
				if backends {
					need(fmt.Sprintf("models[%d].versions[%d].backends[%d].api_key_env", i, j, k), be.APIKeyEnv)
				}
			}
		}
		if c := m.Guard.Safety.Classifier; c != nil {
			need(fmt.Sprintf("models[%d].guard.safety.classifier.api_key_env", i), c.APIKeyEnv)
		}
		need(fmt.Sprintf("models[%d].guard.pii.hash_key_env", i), m.Guard.PII.HashKeyEnv)
	}
	secretOf := map[string]int{} // an admin token's secret -> the first token that has it
	for i, t := range cfg.Admin.Tokens {
		key := fmt.Sprintf("admin.tokens[%d].token_env", i)
		need(key, t.TokenEnv)
		secret := getenv(t.TokenEnv)
		if t.TokenEnv == "" || secret == "" {
			continue
		}
		if j, dup := secretOf[secret]; dup {
			// The last token a secret matches would decide its role and name (a read-only
			// dashboard's token that is also an admin's); the gateway refuses it too, but
			// without the line.
			if o := cfg.Admin.Tokens[j]; o.TokenEnv != t.TokenEnv { // the same variable twice is Validate's
				errs = append(errs, cfg.ErrorAt(key, fmt.Sprintf("environment variable %s holds the same token as %s, admin.tokens[%d]'s (%q); each token needs its own secret", t.TokenEnv, o.TokenEnv, j, o.Name)))
			}
			continue
		}
		secretOf[secret] = i
	}
	return errors.Join(errs...)
}

// checkRulesFiles says, with the others and located in the file, which safety rules files
// cannot be read: the gateway would refuse them one at a time, without a line.
func checkRulesFiles(cfg *config.Config) error {
	var errs []error
	for i, m := range cfg.Models {
		if p := m.Guard.Safety.RulesFile; p != "" {
			if f, err := os.Open(p); err != nil {
				errs = append(errs, cfg.ErrorAt(fmt.Sprintf("models[%d].guard.safety.rules_file", i),
					fmt.Sprintf("%v (a relative path is relative to the working directory)", err)))
			} else {
				f.Close()
			}
		}
	}
	return errors.Join(errs...)
}

// checkBackends probes every backend of the config once: on a first start an unreachable backend
// is a mistake in the file, said in one line; once serving, the same backend would only be
// marked unhealthy.
func checkBackends(cfg *config.Config) error {
	t, err := router.NewTable(cfg, router.NewPool())
	if err != nil {
		return err
	}
	if errs := probeBackends(t.Backends(), cfg.Health.Timeout, nil); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// probeBackends probes each backend address once for each model it is to serve, all at the
// same time, and returns what failed, in the order of bs. A backend that answers must list its
// model, as an admin deploy must: a typo'd model name would 404 every request of the version
// with the backend's "model does not exist", naming a model the client never asked for.
// clientOf gives each backend's client (the gateway's, which holds admin-deployed backends to
// admin.allow_backends); nil probes with one plain client.
func probeBackends(bs []*router.Backend, timeout time.Duration, clientOf func(*router.Backend) *http.Client) []error {
	if clientOf == nil {
		client := &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		clientOf = func(*router.Backend) *http.Client { return client }
	}
	errs := make([]error, len(bs))
	seen := map[[2]string]bool{}
	var wg sync.WaitGroup
	for i, b := range bs {
		if seen[[2]string{b.URL, b.Model}] {
			continue
		}
		seen[[2]string{b.URL, b.Model}] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			client := clientOf(b)
			err := router.Probe(ctx, client, b)
			cancel()
			if err != nil {
				// Found down before it serves: out of service now, not after the failed
				// probes or requests that would take it out, so that no request is sent to
				// it (and /readyz does not say ready) until its first passing probe.
				b.ReportDown("failed its health check at start")
			}
			var status *router.ProbeStatusError
			switch {
			case errors.As(err, &status) && router.URLHint(b.URL) != "":
				errs[i] = fmt.Errorf("backend %s (model %s version %s) failed its health check: %v%s",
					b.URL, b.Alias, b.Version, err, router.URLHint(b.URL))
			case errors.As(err, &status):
				errs[i] = fmt.Errorf("backend %s (model %s version %s, kind %s) failed its health check: %v; is its kind right?",
					b.URL, b.Alias, b.Version, b.Kind, err)
			case err != nil:
				errs[i] = fmt.Errorf("backend %s (model %s version %s) is unreachable: %v", b.URL, b.Alias, b.Version, shortErr(err))
			default:
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				if err := router.CheckServes(ctx, client, b); err != nil {
					errs[i] = fmt.Errorf("backend %s (model %s version %s): %v%s", b.URL, b.Alias, b.Version, err, router.URLHint(b.URL))
				}
				cancel()
			}
			if err != nil {
				errs[i] = backendDown{errs[i]}
			}
		}()
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// backendDown is a probeBackends error of a backend that failed its health check, which took it
// out of service; the others are of a backend that answers but does not list its model.
type backendDown struct{ error }

func (e backendDown) Unwrap() error { return e.error }

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// start listens on both addresses, then opens the deploy state and serves in the background.
// The addresses come first: a start that cannot bind must leave no state file behind, or the
// next start would take that file, seeded from this config, over the edited one.
func start(cfg *config.Config, logOut io.Writer, st store.Store) (*gateway.Gateway, [2]net.Listener, error) {
	var lns [2]net.Listener
	var err error
	if lns[0], err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, lns, fmt.Errorf("listen %s: %v (set listen, --listen or LLMGATE_LISTEN to a free address)", cfg.Listen, shortErr(err))
	}
	if lns[1], err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		lns[0].Close()
		return nil, lns, fmt.Errorf("admin listen %s: %v (set admin.listen, --admin-listen or LLMGATE_ADMIN_LISTEN to a free address)", cfg.Admin.Listen, shortErr(err))
	}
	g, err := gateway.New(cfg, gateway.Options{LogOutput: logOut, Store: st, Version: buildVersion()})
	if err != nil {
		lns[0].Close()
		lns[1].Close()
		return nil, lns, err
	}
	go g.Serve(lns[0])      //nolint:errcheck // Close ends it
	go g.ServeAdmin(lns[1]) //nolint:errcheck
	return g, lns, nil
}

// notifyStop returns the channel waitForSignal reads the stop signals from; the caller stops it
// (signal.Stop) when it returns without serving.
func notifyStop() chan os.Signal {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return sig
}

// waitForSignal serves until SIGINT or SIGTERM, then stops as sd says: for sd.DrainDelay the
// gateway still serves, new connections included, while /readyz says shutting_down (a load
// balancer takes a while to stop sending); then the listeners close and the requests in flight
// get sd.Grace to finish, after which the streams still running end with an error event (see
// gateway.Shutdown). A second SIGINT or SIGTERM, during the drain or the grace, stops at once
// (Ctrl-C twice). The exit status is 0, or 1 when requests were cut.
//
// SIGHUP stops the demo (its terminal closed) but not serve: the config is read at start only,
// and a SIGHUP sent for a reload, as many daemons take it, would otherwise kill the gateway at
// once, every stream in flight cut without a drain.
//
// sig is from notifyStop, called before serving starts, so that a signal sent once the start-up
// summary is out is never the default action's.
func waitForSignal(g *gateway.Gateway, sd config.Shutdown, stderr io.Writer, sig chan os.Signal, hupStops bool) int {
	// stop returns at the next stop signal; the SIGHUPs before it are said and ignored.
	stop := func(until <-chan struct{}) bool {
		for {
			select {
			case s := <-sig:
				if s != syscall.SIGHUP || hupStops {
					return true
				}
				fmt.Fprintln(stderr, "llmgate: SIGHUP ignored: the config is read at start only; restart llmgate (SIGTERM drains requests in flight) to apply a changed file, or use llmgate admin")
			case <-until:
				return false
			}
		}
	}
	stop(nil)
	g.Drain()
	if sd.DrainDelay > 0 {
		fmt.Fprintf(stderr, "llmgate: stopping: serving %s more while /readyz says shutting_down, then up to %s for requests in flight; a second signal stops at once\n", sd.DrainDelay, sd.Grace)
		drained := make(chan struct{})
		t := time.AfterFunc(sd.DrainDelay, func() { close(drained) })
		defer t.Stop()
		if stop(drained) {
			fmt.Fprintln(stderr, "llmgate: second signal: stopped at once, during the drain")
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sd.Grace)
	defer cancel()
	type result struct {
		cut int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		cut, err := g.Shutdown(ctx)
		done <- result{cut, err}
	}()
	var r result
	for waiting := true; waiting; {
		select {
		case r = <-done: // at the grace's end, once Shutdown cut what was left and logged it
			waiting = false
		case s := <-sig:
			if s == syscall.SIGHUP && !hupStops {
				continue // said at the first one
			}
			fmt.Fprintln(stderr, "llmgate: second signal: stopped at once, with requests in flight")
			return 1
		}
	}
	switch {
	case r.err != nil:
		fmt.Fprintln(stderr, "llmgate: shutdown:", r.err)
		return 1
	case r.cut > 0:
		return 1 // the gateway's log said how many
	}
	return 0
}

// shortErr drops Go's wrapping ("dial tcp 127.0.0.1:1: connect: connection refused" keeps its
// last, human part) so the one line a user sees is readable.
func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// lockedWriter serialises writes to w, which is written from more than one goroutine.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
