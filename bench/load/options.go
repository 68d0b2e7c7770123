// Package load is llmgate's load generator: open-loop (fixed arrival rate, latency measured
// from the scheduled time, so without coordinated omission) or closed-loop load of
// OpenAI-style chat, streaming chat or embeddings requests against one or more targets, with
// exact percentiles, SSE time-to-first-token and inter-event gaps, per-process CPU and peak
// RSS, and interleaved comparison rounds rendered as a table, JSON and SVG.
package load

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options is the load to generate. RegisterFlags fills it from flags; the zero value is not
// usable, start from DefaultOptions in code.
type Options struct {
	URL         string        `json:"url,omitempty"`     // single target base URL
	Compare     []Target      `json:"compare,omitempty"` // targets for a comparison; the first is the baseline
	Workload    string        `json:"workload"`          // Chat, ChatStream or Embeddings
	Model       string        `json:"model"`
	Headers     []string      `json:"-"`                     // "Name: value", sent with every request
	Rate        float64       `json:"rate"`                  // requests/s; 0 is closed loop
	Connections int           `json:"connections,omitempty"` // closed-loop concurrency
	MaxWorkers  int           `json:"max_workers,omitempty"` // open-loop bound on concurrent requests
	Duration    time.Duration `json:"duration_ns"`
	Requests    int           `json:"requests,omitempty"` // measured requests per run; overrides Duration when > 0
	Warmup      time.Duration `json:"warmup_ns"`
	Timeout     time.Duration `json:"timeout_ns"` // per request, stream included
	Rounds      int           `json:"rounds"`
	PromptBytes int           `json:"prompt_bytes,omitempty"`
	PromptMix   []int         `json:"prompt_mix,omitempty"`
	PromptsFile string        `json:"prompts_file,omitempty"`
	PIIShare    float64       `json:"pii_share,omitempty"`
	RepeatShare float64       `json:"repeat_share,omitempty"`
	MaxTokens   int           `json:"max_tokens,omitempty"`
	Seed        uint64        `json:"seed,omitempty"`
	ProcNames   []string      `json:"proc_names,omitempty"`
	PIDs        []int         `json:"pids,omitempty"`
	// TargetPIDs are sampled only while their target runs: the proxy under test in a compare.
	TargetPIDs map[string][]int `json:"target_pids,omitempty"`
	// TargetModels are --target-model name=MODEL: a model name per target.
	TargetModels map[string]string `json:"target_models,omitempty"`
	JSONFile     string            `json:"-"`
	SVGFile      string            `json:"-"`
	Quiet        bool              `json:"-"`
}

// RegisterFlags defines the bench flags on fs and returns the Options they fill.
func RegisterFlags(fs *flag.FlagSet) *Options {
	o := &Options{}
	fs.StringVar(&o.URL, "url", "", "base `URL` of the single target, e.g. http://127.0.0.1:8080 (a query string goes with every request)")
	fs.Func("compare", "`name=URL` of a target to compare (repeatable; the first is the baseline)", func(s string) error {
		name, u, ok := strings.Cut(s, "=")
		if !ok || name == "" || u == "" {
			return errors.New("want name=URL")
		}
		o.Compare = append(o.Compare, Target{Name: name, URL: u})
		return nil
	})
	fs.StringVar(&o.Workload, "workload", Chat, "request kind: chat, chat-stream or embeddings (chat-stream's TTFT is the first event with output: text, reasoning, a tool call or a refusal, not a role-only chunk)")
	fs.StringVar(&o.Model, "model", "chat", "model name sent in every request")
	fs.Func("target-model", "`name=MODEL`: the model name sent to one --compare target instead of --model (repeatable)", func(s string) error {
		name, model, ok := strings.Cut(s, "=")
		if !ok || name == "" || model == "" {
			return errors.New("want name=MODEL")
		}
		if o.TargetModels == nil {
			o.TargetModels = map[string]string{}
		}
		o.TargetModels[name] = model
		return nil
	})
	fs.Func("header", "`Name: value` header sent with every request (repeatable)", func(s string) error {
		if k, _, ok := strings.Cut(s, ":"); !ok || strings.TrimSpace(k) == "" {
			return errors.New("want Name: value")
		}
		o.Headers = append(o.Headers, s)
		return nil
	})
	fs.Float64Var(&o.Rate, "rate", 100, "open loop: requests per second; 0 for closed loop")
	fs.IntVar(&o.Connections, "connections", 16, "closed loop: concurrent connections (setting it without --rate implies --rate 0)")
	fs.IntVar(&o.MaxWorkers, "max-workers", 1024, "open loop: most requests in flight at once")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured length of each run")
	fs.IntVar(&o.Requests, "requests", 0, "measured requests per run, instead of --duration")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured load before each run's measurement")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per-request timeout, whole stream included")
	fs.IntVar(&o.Rounds, "rounds", 3, "interleaved rounds per target with --compare")
	fs.IntVar(&o.PromptBytes, "prompt-bytes", 1024, fmt.Sprintf("prompt size in bytes, at least %d (each prompt holds a nonce; with --pii-share, at least %d)", minPromptBytes(0), minPromptBytes(1)))
	fs.Func("prompt-mix", "comma-separated prompt sizes in bytes, picked uniformly (e.g. 200,1024,32768)", func(s string) error {
		o.PromptMix = o.PromptMix[:0]
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return fmt.Errorf("bad size %q", f)
			}
			o.PromptMix = append(o.PromptMix, n)
		}
		return nil
	})
	fs.StringVar(&o.PromptsFile, "prompts", "", "JSONL `file` of prompts: {\"prompt\": \"...\"} or {\"messages\": [...]} per line")
	fs.Float64Var(&o.PIIShare, "pii-share", 0, "fraction of prompts carrying an email, phone number or card number")
	fs.Float64Var(&o.RepeatShare, "repeat-share", 0, "fraction of requests repeating a recent body exactly (cacheable); 1: all repeat the first")
	fs.IntVar(&o.MaxTokens, "max-tokens", 64, "max_tokens of chat requests (0 leaves it out)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed for prompt text and the request mix (each run also adds a nonce of its own, so that no two runs send the same request: a cache in the target answers only --repeat-share)")
	fs.Func("proc-name", "`name` of a process to sample for CPU and peak RSS (repeatable)", func(s string) error {
		o.ProcNames = append(o.ProcNames, s)
		return nil
	})
	fs.Func("pid", "`PID` of a process to sample for CPU and peak RSS, or target=PID to sample it only during that target's runs (repeatable)", func(s string) error {
		target, num, scoped := strings.Cut(s, "=")
		if !scoped {
			num = s
		}
		pid, err := strconv.Atoi(num)
		if err != nil || pid <= 0 || (scoped && target == "") {
			return errors.New("want a process id, or target=PID")
		}
		if !scoped {
			o.PIDs = append(o.PIDs, pid)
			return nil
		}
		if o.TargetPIDs == nil {
			o.TargetPIDs = map[string][]int{}
		}
		o.TargetPIDs[target] = append(o.TargetPIDs[target], pid)
		return nil
	})
	fs.StringVar(&o.JSONFile, "json", "", "write all results as JSON to `file`")
	fs.StringVar(&o.SVGFile, "svg", "", "write a latency and throughput chart as SVG to `file`")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress lines on stderr")
	return o
}

// DefaultOptions returns the flag defaults.
func DefaultOptions() *Options {
	return RegisterFlags(flag.NewFlagSet("bench", flag.ContinueOnError))
}

// Targets returns the targets of a run: the --compare list, or the single --url.
func (o *Options) Targets() []Target {
	if len(o.Compare) == 0 {
		return []Target{{Name: "target", URL: o.URL}}
	}
	ts := slices.Clone(o.Compare)
	for i := range ts {
		ts[i].Model = o.TargetModels[ts[i].Name]
	}
	return ts
}

// workloadFor returns the workload of target t: w, or one like it with t's model.
func (o *Options) workloadFor(t Target, w *Workload) (*Workload, error) {
	if t.Model == "" || t.Model == o.Model {
		return w, nil
	}
	ot := *o
	ot.Model = t.Model
	return NewWorkload(&ot)
}

// Validate reports the first problem with o.
func (o *Options) Validate() error {
	switch {
	case o.URL == "" && len(o.Compare) == 0:
		return errors.New("need --url or --compare")
	case o.URL != "" && len(o.Compare) > 0:
		return errors.New("use --url or --compare, not both")
	case len(o.TargetModels) > 0 && len(o.Compare) == 0:
		return errors.New("--target-model needs --compare; with --url, --model names the model")
	case o.Workload != Chat && o.Workload != ChatStream && o.Workload != Embeddings:
		return fmt.Errorf("--workload %q: want chat, chat-stream or embeddings", o.Workload)
	case !(o.Rate >= 0 && o.Rate <= 1e7): // NaN too
		return fmt.Errorf("--rate %g: want 0 (closed loop) up to 1e7", o.Rate)
	case o.Rate == 0 && o.Connections <= 0:
		return errors.New("--connections must be positive")
	case o.MaxWorkers <= 0:
		return errors.New("--max-workers must be positive")
	case o.Requests < 0:
		return errors.New("--requests must not be negative")
	case o.Requests == 0 && o.Duration <= 0:
		return errors.New("--duration must be positive")
	case o.Warmup < 0:
		return errors.New("--warmup must not be negative")
	case o.Timeout <= 0:
		return errors.New("--timeout must be positive")
	case o.Rounds <= 0:
		return errors.New("--rounds must be positive")
	case o.Rate > 0 && o.Requests == 0 && math.Round(o.Duration.Seconds()*o.Rate) < 1:
		// The schedule is rate x duration arrivals: none at all would be an empty run that
		// fails only after its warmup, with "no request succeeded".
		return fmt.Errorf("--rate %g for --duration %v schedules no request: raise either, or use --requests", o.Rate, o.Duration)
	case o.MaxTokens < 0:
		return errors.New("--max-tokens must not be negative (0 leaves it out)")
	case o.PromptBytes <= 0 && len(o.PromptMix) == 0 && o.PromptsFile == "":
		return errors.New("--prompt-bytes must be positive")
	case !(o.PIIShare >= 0 && o.PIIShare <= 1):
		return errors.New("--pii-share must be within [0, 1]")
	case !(o.RepeatShare >= 0 && o.RepeatShare <= 1):
		return errors.New("--repeat-share must be within [0, 1]")
	}
	if o.PromptsFile == "" {
		name, sizes := "--prompt-bytes", []int{o.PromptBytes}
		if len(o.PromptMix) > 0 {
			name, sizes = "--prompt-mix", o.PromptMix
		}
		least, nonce := minPromptBytes(o.PIIShare), minPromptBytes(0)
		holds := fmt.Sprintf("a %d-byte nonce", nonce)
		if least > nonce {
			holds += fmt.Sprintf(" and, with --pii-share, up to %d bytes of PII", least-nonce)
		}
		for _, n := range sizes {
			if n < least {
				return fmt.Errorf("%s %d: a prompt holds %s; want at least %d", name, n, holds, least)
			}
		}
	}
	seen := map[string]bool{}
	for _, t := range o.Targets() {
		if _, err := parseTarget(t.URL); err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		if seen[t.Name] {
			return fmt.Errorf("--compare: name %q used twice", t.Name)
		}
		seen[t.Name] = true
	}
	for name := range o.TargetPIDs {
		if !seen[name] {
			return fmt.Errorf("--pid %s=...: no target is named %q", name, name)
		}
	}
	for name := range o.TargetModels {
		if !seen[name] {
			return fmt.Errorf("--target-model %s=...: no --compare target is named %q", name, name)
		}
	}
	return nil
}

func (o *Options) headerPairs() [][2]string {
	out := make([][2]string, len(o.Headers))
	for i, h := range o.Headers {
		k, v, _ := strings.Cut(h, ":")
		out[i] = [2]string{strings.TrimSpace(k), strings.TrimSpace(v)}
	}
	return out
}

// Main runs the bench command line: parse args, check every target with one request, run,
// print the table to stdout and write the --json and --svg files. It returns the exit code:
// 0 on success, 1 when a target is unreachable, a run fails or every request of a target
// failed, 2 for bad flags.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // one-line errors; the full usage only on -h
	o := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// On stdout, as every other command's -h, so that it pipes into less or grep.
			fmt.Fprintln(stdout, "Usage of llmgate bench: (--url URL | --compare name=URL ...) [flags]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		if name, ok := strings.CutPrefix(err.Error(), "invalid value "); ok && strings.HasSuffix(name, ": parse error") {
			// "--duration 5": the flag package says only "parse error".
			val, fl, _ := strings.Cut(strings.TrimSuffix(name, ": parse error"), " for flag -")
			if f := fs.Lookup(fl); f != nil {
				if g, ok := f.Value.(flag.Getter); ok {
					if _, ok := g.Get().(time.Duration); ok {
						err = fmt.Errorf("invalid value %s for flag -%s: want a duration with a unit, such as \"500ms\", \"10s\" or \"1m\"", val, fl)
					}
				}
			}
		}
		fmt.Fprintf(stderr, "llmgate bench: %v (llmgate bench -h lists the flags)\n", err)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["connections"] && !set["rate"] {
		o.Rate = 0
	}
	if len(o.Compare) == 0 && !set["rounds"] {
		o.Rounds = 1 // rounds interleave targets; one target needs one run
	}
	fail := func(code int, err error) int {
		fmt.Fprintln(stderr, "llmgate bench:", err)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	promptSources := 0 // only one of them makes the prompts; the others would be ignored
	for _, f := range []string{"prompt-bytes", "prompt-mix", "prompts"} {
		if set[f] {
			promptSources++
		}
	}
	// Each loop has its own bound on requests in flight; the other's would be ignored (wrk2's
	// -c with -R bounds an open loop, so a user may well expect that of --connections).
	switch {
	case set["connections"] && o.Rate > 0:
		return fail(2, errors.New("--connections is the closed loop's (--rate 0); with --rate, --max-workers bounds the requests in flight"))
	case set["max-workers"] && o.Rate == 0:
		return fail(2, errors.New("--max-workers is the open loop's; with --rate 0, --connections sets the requests in flight"))
	case set["duration"] && set["requests"]:
		return fail(2, errors.New("use --duration or --requests, not both"))
	case promptSources > 1:
		return fail(2, errors.New("use one of --prompt-bytes, --prompt-mix and --prompts"))
	}
	if err := o.Validate(); err != nil {
		return fail(2, err)
	}
	// A --json or --svg file that cannot be written fails now, not after the run it was for.
	for _, f := range []struct{ flag, path string }{{"json", o.JSONFile}, {"svg", o.SVGFile}} {
		if f.path == "" {
			continue
		}
		if err := checkWritable(f.path); err != nil {
			return fail(2, fmt.Errorf("--%s: %w", f.flag, err))
		}
	}
	pids := append([]int(nil), o.PIDs...)
	for _, ps := range append([][]int{o.PIDs}, slices.Collect(maps.Values(o.TargetPIDs))...) {
		for _, pid := range ps {
			if _, _, _, err := ReadProc(pid); err != nil {
				return fail(1, fmt.Errorf("--pid %d: %w", pid, err))
			}
		}
	}
	for _, name := range o.ProcNames {
		p, err := FindProcs(name)
		if err != nil {
			return fail(1, err)
		}
		pids = append(pids, p...)
	}
	slices.Sort(pids)
	pids = slices.Compact(pids) // a process named by --pid and by --proc-name is reported once
	w, err := NewWorkload(o)
	if err != nil {
		return fail(2, fmt.Errorf("--prompts: %w", err)) // building bodies fails only on the prompts file
	}
	var progress io.Writer
	if !o.Quiet {
		progress = stderr
	}
	for _, t := range o.Targets() {
		wt, err := o.workloadFor(t, w)
		if err != nil {
			return fail(1, err)
		}
		if err := checkSaying(o, wt, t, progress); err != nil {
			return fail(1, err)
		}
	}

	// Ctrl-C or a kill (timeout(1) sends SIGTERM) ends the run early: what was measured is
	// still printed and written, marked as interrupted, and the exit status says so.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Compare(ctx, o, w, pids, progress)
	if err != nil {
		return fail(1, err)
	}
	rep.Interrupted = ctx.Err() != nil
	WriteTable(stdout, rep)
	if o.JSONFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(o.JSONFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			return fail(1, err)
		}
	}
	if o.SVGFile != "" {
		if err := os.WriteFile(o.SVGFile, SVG(rep), 0o644); err != nil {
			return fail(1, err)
		}
	}
	if rep.Interrupted {
		return fail(130, errors.New("interrupted: the results above are partial"))
	}
	for _, s := range rep.Summaries {
		switch {
		case s.OK > 0:
		case s.Requests == 0:
			why := "" // closed loop: the warmup's requests held every connection to the end
			if s.Unsent > 0 {
				why = fmt.Sprintf("; %d arrivals not sent", s.Unsent)
			}
			return fail(1, fmt.Errorf("target %s: no measured request completed%s", s.Target, why))
		default:
			return fail(1, fmt.Errorf("target %s: no request succeeded (last error: %s)", s.Target, s.LastError))
		}
	}
	return 0
}

// checkWritable reports whether path can be created or overwritten, leaving no file behind
// that was not there.
func checkWritable(path string) error {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	if errors.Is(statErr, fs.ErrNotExist) {
		return os.Remove(path)
	}
	return nil
}
