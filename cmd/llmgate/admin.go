package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llmgate/llmgate/config"
)

// llmgate admin is a client of the gateway's admin HTTP API: it turns verbs into the documented
// requests and answers into tables. The gateway validates and decides; the client checks only
// what it must to build a request.

const adminUsage = `Usage: llmgate admin [--url URL] [--json] [--token-env NAME] VERB [ARGS]

Verbs:
  status [ALIAS]                       models, traffic split, versions, backend health
  deploy ALIAS VERSION --backend URL [--backend URL ...] --model NAME
         [--kind vllm|ollama|openai] [--weight N] [--api-key-env VAR] [--no-probe]
                                       --model, --kind, --weight and --api-key-env given once
                                       apply to every --backend; given once per --backend, to
                                       each in order
  traffic ALIAS --stable V [--canary V --percent P] [--sticky user|api_key|header:NAME|none] [--force]
                                       without --sticky the split is per request (sticky none)
  shadow ALIAS VERSION --percent P     mirror P% of requests to VERSION
  shadow ALIAS --off
  promote ALIAS [--force] [--reason TEXT]
                                       make the canary the stable version (refused while none of
                                       its backends is in service, unless --force)
  rollback ALIAS [--to V] [--reason TEXT]
  delete ALIAS VERSION                 remove a version that serves no traffic
  delete ALIAS                         remove the model and all its versions (refused during a rollout)
  history ALIAS
  rollout ALIAS start --canary V --steps 10,25,50,100 [--step-duration 5m] [--step-requests N]
         [--max-error-rate-increase 0.02] [--max-latency-ratio 1.5]
                                       a rollout keeps the sticky key; with none it splits by user
  rollout ALIAS status|pause|resume|abort

Global flags (before or after the verb):
  --url URL          admin API address (default http://127.0.0.1:8081)
  --json             print the raw JSON response instead of a table
  --token-env NAME   environment variable holding the admin token (default LLMGATE_ADMIN_TOKEN)

Write verbs accept --if-match REVISION: the change applies only if the model is still at that
revision (--if-match '*': only if the model exists). Run "llmgate admin VERB -h" for a verb's flags.
`

const (
	defaultAdminURL      = "http://127.0.0.1:8081"
	defaultAdminTokenEnv = "LLMGATE_ADMIN_TOKEN"
	// maxAdminResponse caps what is read of one answer; a status of many models is well under it.
	maxAdminResponse = 32 << 20
)

func runAdmin(args []string, stdout, stderr io.Writer) int {
	return adminMain(args, stdout, stderr, os.Getenv)
}

// adminTimeout bounds one request; deploys probe their backends before answering. A variable
// so a test need not wait as long.
var adminTimeout = 60 * time.Second

// adminMain runs one admin command; getenv supplies the token variable so tests need no
// process environment. Exit status: 0 done, 1 the gateway refused or is unreachable, 2 usage.
func adminMain(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &adminCmd{
		url:      defaultAdminURL,
		tokenEnv: defaultAdminTokenEnv,
		stdout:   stdout,
		getenv:   getenv,
		client:   &http.Client{Timeout: adminTimeout},
	}
	err := c.run(args)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "llmgate admin: %s (see llmgate admin -h)\n", oneLine(err.Error()))
		return 2
	}
	fmt.Fprintln(stderr, "llmgate admin:", oneLine(err.Error()))
	return 1
}

// adminCmd is one invocation: the global flags and where output goes.
type adminCmd struct {
	url      string
	tokenEnv string
	json     bool
	ifMatch  string
	stdout   io.Writer
	getenv   func(string) string
	client   *http.Client
}

// usageError is a bad flag or argument (exit status 2).
type usageError string

func (e usageError) Error() string { return string(e) }

func usagef(format string, a ...any) error { return usageError(fmt.Sprintf(format, a...)) }

// errHelpShown means -h printed the usage (exit status 0).
var errHelpShown = errors.New("help shown")

func (c *adminCmd) run(args []string) error {
	fs := c.flags("admin", false)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, adminUsage)
			return errHelpShown
		}
		return usageError(err.Error())
	}
	if fs.NArg() == 0 {
		return usageError("missing verb: status, deploy, traffic, shadow, promote, rollback, delete, history or rollout")
	}
	verbs := map[string]func([]string) error{
		"status": c.status, "deploy": c.deploy, "traffic": c.traffic, "shadow": c.shadow, "promote": c.promote,
		"rollback": c.rollback, "delete": c.delete, "history": c.history, "rollout": c.rollout,
	}
	verb := fs.Arg(0)
	if verb == "help" {
		fmt.Fprint(c.stdout, adminUsage)
		return errHelpShown
	}
	if run := verbs[verb]; run != nil {
		return run(fs.Args()[1:])
	}
	return usagef("unknown verb %q", verb)
}

// flags returns a verb's flag set with the global flags bound to the same variables, so they
// may come before or after the verb. Write verbs also take --if-match.
func (c *adminCmd) flags(verb string, write bool) *flag.FlagSet {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by adminMain
	fs.StringVar(&c.url, "url", c.url, "admin API `URL`")
	fs.BoolVar(&c.json, "json", c.json, "print the raw JSON response instead of a table")
	fs.StringVar(&c.tokenEnv, "token-env", c.tokenEnv, "environment variable `NAME` holding the admin token, sent as a bearer token")
	if write {
		fs.StringVar(&c.ifMatch, "if-match", "", "apply only if the model is still at this `revision` (If-Match)")
	}
	// A verb's set starts from what the flags before the verb said; its -h shows the defaults.
	fs.Lookup("url").DefValue = defaultAdminURL
	fs.Lookup("json").DefValue = "false"
	fs.Lookup("token-env").DefValue = defaultAdminTokenEnv
	return fs
}

// parse parses flags and positional arguments in any order ("deploy chat v3 --backend URL"),
// since Go's flag package stops at the first positional one. It wants between min and max
// non-empty positionals.
func (c *adminCmd) parse(fs *flag.FlagSet, args []string, synopsis string, min, max int) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.stdout, "Usage: llmgate admin %s\n\nFlags:\n", synopsis)
			fs.SetOutput(c.stdout)
			fs.PrintDefaults()
			return nil, errHelpShown
		}
		if err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...) // after "--" nothing is a flag
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) < min || len(pos) > max {
		return nil, usagef("usage: llmgate admin %s", synopsis)
	}
	for _, p := range pos {
		if p == "" {
			return nil, usagef("usage: llmgate admin %s (an argument is empty)", synopsis)
		}
	}
	return pos, nil
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// modelPath is the API path of one alias plus optional further segments, each escaped: aliases
// such as "meta-llama/Llama-3.1-8B-Instruct" contain slashes.
func modelPath(alias string, rest ...string) string {
	p := "/admin/models/" + url.PathEscape(alias)
	for _, s := range rest {
		p += "/" + s
	}
	return p
}

func (c *adminCmd) status(args []string) error {
	fs := c.flags("status", false)
	pos, err := c.parse(fs, args, "status [ALIAS]", 0, 1)
	if err != nil {
		return err
	}
	path := "/admin/models"
	if len(pos) == 1 {
		path = modelPath(pos[0])
	}
	var r struct { // one model, or {"revision", "models"} for all
		adminModel
		Models []adminModel `json:"models"`
	}
	if printed, err := c.read(path, &r); printed || err != nil {
		return err
	}
	models := r.Models
	if len(pos) == 1 {
		models = []adminModel{r.adminModel}
	}
	if len(models) == 0 {
		fmt.Fprintln(c.stdout, "no models")
	}
	for i := range models {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		printModel(c.stdout, &models[i])
	}
	return nil
}

func (c *adminCmd) deploy(args []string) error {
	fs := c.flags("deploy", true)
	var backends listFlag
	var kinds, models, weights, apiKeyEnvs listFlag
	fs.Var(&backends, "backend", "backend base `URL`, repeatable; --model, --kind, --weight and --api-key-env given once apply to every backend, or given once per --backend, to each in order")
	fs.Var(&kinds, "kind", "backend `kind`: vllm, ollama or openai (left out: openai)")
	fs.Var(&models, "model", "the `name` the backends serve the model under (required)")
	fs.Var(&weights, "weight", "relative share of the version's traffic per backend; 0 drains (default "+strconv.Itoa(config.DefaultWeight)+")")
	fs.Var(&apiKeyEnvs, "api-key-env", "environment `variable` on the gateway holding the backends' API key")
	noProbe := fs.Bool("no-probe", false, "skip the gateway's health check of the new backends")
	pos, err := c.parse(fs, args, deployUsage, 2, 2)
	if err != nil {
		return err
	}
	if len(backends) == 0 {
		return usageError("deploy: --backend is required")
	}
	// Each of these once for every backend, or once per backend in the order of --backend.
	for _, l := range []struct {
		name   string
		values listFlag
	}{{"kind", kinds}, {"model", models}, {"weight", weights}, {"api-key-env", apiKeyEnvs}} {
		if n := len(l.values); n > 1 && n != len(backends) {
			return usagef("deploy: --%s given %d times for %d --backend: give it once for every backend, or once per backend in their order", l.name, n, len(backends))
		}
	}
	for _, k := range kinds {
		switch k {
		case "", config.KindVLLM, config.KindOllama, config.KindOpenAI:
		default:
			return usagef("deploy: --kind %q: want vllm, ollama or openai", k)
		}
	}
	weightOf := make([]int, len(weights))
	for i, w := range weights {
		if weightOf[i], err = strconv.Atoi(w); err != nil {
			return usagef("deploy: invalid value %q for flag -weight: want a whole number", w)
		}
	}
	if len(models) == 0 || slices.Contains(models, "") {
		return usageError("deploy: --model is required: the name the backends serve the model under")
	}
	var specs []jsonObject
	for i, u := range backends {
		weight := config.DefaultWeight
		if len(weightOf) > 0 {
			weight = weightOf[min(i, len(weightOf)-1)]
		}
		specs = append(specs, jsonObject{"url": u, "kind": nth(kinds, i), "model": nth(models, i), "weight": weight, "api_key_env": nth(apiKeyEnvs, i)})
	}
	body := jsonObject{"version": pos[1], "backends": specs}
	var q url.Values
	if *noProbe {
		q = url.Values{"probe": {"false"}}
	}
	return c.write(http.MethodPost, modelPath(pos[0], "versions"), q, body, pos[0], func(*adminModel) string {
		return fmt.Sprintf("deployed version %s, %d backend(s)", pos[1], len(backends))
	})
}

const deployUsage = "deploy ALIAS VERSION --backend URL [--backend URL ...] --model NAME [--kind vllm|ollama|openai] [--weight N] [--api-key-env VAR] [--no-probe]"

// nth is a deploy flag's value for the i-th backend: its only value, or its i-th; "" when not
// given.
func nth(values listFlag, i int) string {
	if len(values) == 0 {
		return ""
	}
	return values[min(i, len(values)-1)]
}

const trafficUsage = "traffic ALIAS --stable V [--canary V --percent P] [--sticky user|api_key|header:NAME|none] [--force]"

// forceFlag is --force of promote and traffic: make a version stable though none of its backends
// is in service (the gateway refuses that otherwise).
func forceFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("force", false, "make the version stable even though none of its backends is in service")
}

// forceQuery is the query of a write with --force.
func forceQuery(force bool) url.Values {
	if force {
		return url.Values{"force": {"true"}}
	}
	return nil
}

func (c *adminCmd) traffic(args []string) error {
	fs := c.flags("traffic", true)
	stable := fs.String("stable", "", "`version` that serves the traffic the canary does not")
	canary := fs.String("canary", "", "`version` that gets --percent of the traffic")
	percent := fs.Float64("percent", 0, "canary share, 0..100 in steps of 0.01")
	sticky := fs.String("sticky", "", "keep a caller on one version by user|api_key|header:NAME, or none (left out: none, each request split on its own)")
	force := forceFlag(fs)
	pos, err := c.parse(fs, args, trafficUsage, 1, 1)
	if err != nil {
		return err
	}
	switch {
	case *stable == "":
		return usageError("traffic: --stable is required")
	case *canary != "" && !isSet(fs, "percent"):
		return usageError("traffic: --canary needs --percent")
	case *canary == "" && isSet(fs, "percent"):
		return usageError("traffic: --percent needs --canary")
	case !(*percent >= 0 && *percent <= 100):
		return usagef("traffic: --percent %v: want 0..100", *percent)
	}
	// "none" as status shows it: the same as leaving --sticky out.
	if s := *sticky; s != "" && s != "none" && s != "user" && s != "api_key" && (!strings.HasPrefix(s, "header:") || s == "header:") {
		return usagef("traffic: --sticky %q: want user, api_key, header:NAME or none", s)
	}
	// PUT replaces the whole split: what is not given is turned off.
	body := jsonObject{"stable": *stable, "canary": *canary, "canary_percent": *percent, "sticky": *sticky}
	return c.write(http.MethodPut, modelPath(pos[0], "traffic"), forceQuery(*force), body, pos[0], trafficSummary)
}

const shadowUsage = "shadow ALIAS VERSION --percent P | shadow ALIAS --off"

func (c *adminCmd) shadow(args []string) error {
	fs := c.flags("shadow", true)
	percent := fs.Float64("percent", 0, "share of requests mirrored to VERSION, 0..100 in steps of 0.01; mirrored answers are discarded")
	off := fs.Bool("off", false, "stop mirroring")
	pos, err := c.parse(fs, args, shadowUsage, 1, 2)
	if err != nil {
		return err
	}
	body := jsonObject{"version": "", "percent": 0}
	switch {
	case *off && (len(pos) == 2 || isSet(fs, "percent")):
		return usageError("shadow: --off takes no VERSION or --percent")
	case *off:
	case len(pos) == 1:
		return usagef("usage: llmgate admin %s", shadowUsage)
	case !isSet(fs, "percent"):
		return usageError("shadow: --percent is required")
	case !(*percent >= 0 && *percent <= 100):
		return usagef("shadow: --percent %v: want 0..100", *percent)
	default:
		body = jsonObject{"version": pos[1], "percent": *percent}
	}
	return c.write(http.MethodPut, modelPath(pos[0], "shadow"), nil, body, pos[0], func(m *adminModel) string {
		return "shadow " + share(m.Shadow.Version, m.Shadow.Percent, "off")
	})
}

func (c *adminCmd) promote(args []string) error {
	fs := c.flags("promote", true)
	force := forceFlag(fs)
	reason := fs.String("reason", "", "why, recorded in the history")
	pos, err := c.parse(fs, args, "promote ALIAS [--force] [--reason TEXT]", 1, 1)
	if err != nil {
		return err
	}
	body := jsonObject{}
	if *reason != "" {
		body["reason"] = *reason
	}
	return c.write(http.MethodPost, modelPath(pos[0], "promote"), forceQuery(*force), body, pos[0], func(m *adminModel) string {
		return "promoted; " + trafficSummary(m)
	})
}

func (c *adminCmd) rollback(args []string) error {
	fs := c.flags("rollback", true)
	to := fs.String("to", "", "`version` to make stable (default: the gateway picks the previous stable)")
	reason := fs.String("reason", "", "why, recorded in the history")
	pos, err := c.parse(fs, args, "rollback ALIAS [--to V] [--reason TEXT]", 1, 1)
	if err != nil {
		return err
	}
	body := jsonObject{"to": *to, "reason": *reason}
	return c.write(http.MethodPost, modelPath(pos[0], "rollback"), nil, body, pos[0], func(m *adminModel) string {
		return "rolled back; " + trafficSummary(m)
	})
}

// delete removes one version of an alias, or with no VERSION the alias itself.
func (c *adminCmd) delete(args []string) error {
	fs := c.flags("delete", true)
	pos, err := c.parse(fs, args, "delete ALIAS [VERSION]", 1, 2)
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		return c.deleteModel(pos[0])
	}
	return c.write(http.MethodDelete, modelPath(pos[0], "versions", url.PathEscape(pos[1])), nil, nil, pos[0], func(*adminModel) string {
		return "deleted version " + pos[1]
	})
}

// deleteModel removes alias with every version; its answer names what went, not a model.
func (c *adminCmd) deleteModel(alias string) error {
	data, _, err := c.call(http.MethodDelete, modelPath(alias), nil, nil)
	if err != nil || c.json {
		return c.printJSON(data, err)
	}
	var r struct {
		Revision int64 `json:"revision"`
		Deleted  struct {
			Versions []string `json:"versions"`
		} `json:"deleted"`
	}
	if err := decodeAnswer(data, &r); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: revision %d: deleted the model and its versions %s\n", alias, r.Revision, strings.Join(r.Deleted.Versions, ", "))
	return nil
}

func (c *adminCmd) history(args []string) error {
	fs := c.flags("history", false)
	pos, err := c.parse(fs, args, "history ALIAS", 1, 1)
	if err != nil {
		return err
	}
	var h struct {
		Entries []struct {
			Revision int64  `json:"revision"`
			Time     string `json:"time"`
			Actor    string `json:"actor"`
			Action   string `json:"action"`
			From     string `json:"from"`
			To       string `json:"to"`
			Reason   string `json:"reason"`
		} `json:"entries"`
	}
	if printed, err := c.read(modelPath(pos[0], "history"), &h); printed || err != nil {
		return err
	}
	if len(h.Entries) == 0 {
		fmt.Fprintf(c.stdout, "%s: no history\n", pos[0])
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tTIME\tACTOR\tACTION\tCHANGE\tREASON")
	for _, e := range h.Entries {
		change := ""
		if e.From != "" || e.To != "" {
			change = orDefault(e.From, "-") + " -> " + orDefault(e.To, "-")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Revision, e.Time, orDefault(e.Actor, "-"), e.Action, change, oneLine(e.Reason))
	}
	return tw.Flush()
}

func (c *adminCmd) rollout(args []string) error {
	fs := c.flags("rollout", true)
	canary := fs.String("canary", "", "start: `version` to roll out")
	steps := fs.String("steps", "", "start: canary percentages, one per step, e.g. 10,25,50,100")
	stepDuration := fs.String("step-duration", "5m", "start: least time at each step")
	stepRequests := fs.Int64("step-requests", 0, "start: least canary requests at each step (the analysis also waits for drift.min_samples on each side)")
	maxErr := fs.Float64("max-error-rate-increase", 0.02, "start: roll back when the canary's error rate exceeds stable's by more")
	maxLatency := fs.Float64("max-latency-ratio", 1.5, "start: roll back when the canary's p95 latency or TTFT exceeds stable's by this factor")
	pos, err := c.parse(fs, args, "rollout ALIAS start --canary V --steps 10,25,50,100 [--step-duration 5m] [--step-requests N] [--max-error-rate-increase 0.02] [--max-latency-ratio 1.5] | rollout ALIAS status|pause|resume|abort", 2, 2)
	if err != nil {
		return err
	}
	alias, action := pos[0], pos[1]
	startOnly := []string{"canary", "steps", "step-duration", "step-requests", "max-error-rate-increase", "max-latency-ratio"}
	if action != "start" {
		for _, name := range startOnly {
			if isSet(fs, name) {
				return usagef("rollout %s: --%s applies to rollout start only", action, name)
			}
		}
	}
	switch action {
	case "status":
		if c.ifMatch != "" {
			return usageError("rollout status: --if-match applies to writes only")
		}
		return c.rolloutStatus(alias)
	case "pause", "resume", "abort":
		return c.write(http.MethodPost, modelPath(alias, "rollout", action), nil, jsonObject{}, alias, func(m *adminModel) string {
			return "rollout " + rolloutSummary(m.Rollout)
		})
	case "start":
	default:
		return usagef("rollout: unknown action %q: want start, status, pause, resume or abort", action)
	}
	if *canary == "" || *steps == "" {
		return usageError("rollout start: --canary and --steps are required")
	}
	if d, err := time.ParseDuration(*stepDuration); err != nil || d < 0 {
		return usagef("rollout start: --step-duration %q: want a duration such as 5m", *stepDuration)
	}
	var stepList []adminStep
	for _, s := range strings.Split(*steps, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p < 1 || p > 100 {
			return usagef("rollout start: --steps %q: want rising percentages 1..100 separated by commas", *steps)
		}
		// Sent as typed: the gateway parses durations, and "5m" reads better in its history.
		stepList = append(stepList, adminStep{CanaryPercent: float64(p), MinDuration: *stepDuration, MinRequests: *stepRequests})
	}
	body := jsonObject{"canary": *canary, "steps": stepList, "checks": jsonObject{
		"max_error_rate_increase": *maxErr, "max_p95_latency_ratio": *maxLatency, "max_ttft_p95_ratio": *maxLatency}}
	return c.write(http.MethodPost, modelPath(alias, "rollouts"), nil, body, alias, func(m *adminModel) string {
		return "rollout started: " + rolloutSummary(m.Rollout)
	})
}

func (c *adminCmd) rolloutStatus(alias string) error {
	// The answer is the rollout object (null when there is none); a {"revision","model"}
	// wrapper is read too, so either shape of the gateway's answer prints.
	var r struct {
		adminRollout
		Model *adminModel `json:"model"`
	}
	if printed, err := c.read(modelPath(alias, "rollout"), &r); printed || err != nil {
		return err
	}
	ro := &r.adminRollout
	if r.Model != nil {
		ro = r.Model.Rollout
	}
	if ro == nil || ro.State == "" {
		fmt.Fprintf(c.stdout, "%s: no rollout\n", alias)
		return nil
	}
	fmt.Fprintf(c.stdout, "%s: rollout %s\n", alias, rolloutSummary(ro))
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tCANARY\tMIN-DURATION\tMIN-REQUESTS")
	for i, s := range ro.Steps {
		mark := "  "
		if i == ro.Step {
			mark = "> "
		}
		fmt.Fprintf(tw, "%s%d\t%s\t%s\t%d\n", mark, i+1, pct(s.CanaryPercent), orDefault(s.MinDuration, "-"), s.MinRequests)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ro.ActionError != "" {
		// The store refused what the analysis called for (a full disk): nothing changed yet.
		fmt.Fprintf(c.stdout, "not committed, tried again every second: %s\n", ro.ActionError)
	}
	if ro.Last == nil {
		return nil
	}
	// What holds the rollout where it is: the checks that have not passed.
	fmt.Fprintf(c.stdout, "last analysis: %s\n", ro.Last.Verdict)
	for _, ch := range ro.Last.Checks {
		if ch.Verdict != "pass" {
			fmt.Fprintf(c.stdout, "  %s: %s (stable %d, canary %d requests) %s\n", ch.Check, ch.Verdict, ch.StableN, ch.CanaryN, ch.Rationale)
		}
	}
	return nil
}

// jsonObject is a request body; the admin API's bodies are small and sent once.
type jsonObject = map[string]any

// Answers. Percentages are read as float64 so a fractional split still prints.
type (
	// adminStep is one rollout step, sent and read back.
	adminStep struct {
		CanaryPercent float64 `json:"canary_percent"`
		MinDuration   string  `json:"min_duration"`
		MinRequests   int64   `json:"min_requests"`
	}
	// adminModel is the admin API's model object.
	adminModel struct {
		Alias         string  `json:"alias"`
		Revision      int64   `json:"revision"`
		Stable        string  `json:"stable"`
		Canary        string  `json:"canary"`
		CanaryPercent float64 `json:"canary_percent"`
		Sticky        string  `json:"sticky"`
		Shadow        struct {
			Version string  `json:"version"`
			Percent float64 `json:"percent"`
		} `json:"shadow"`
		Versions []struct {
			Name     string `json:"version"`
			Backends []struct {
				URL      string `json:"url"`
				Kind     string `json:"kind"`
				Model    string `json:"model"`
				Weight   int    `json:"weight"`
				Healthy  bool   `json:"healthy"`
				InFlight int64  `json:"in_flight"`
			} `json:"backends"`
		} `json:"versions"`
		Rollout *adminRollout `json:"rollout"`
	}
	// adminRollout is a progressive rollout; Step indexes Steps.
	adminRollout struct {
		Canary string      `json:"canary"`
		Step   int         `json:"step"`
		Steps  []adminStep `json:"steps"`
		State  string      `json:"state"`
		Reason string      `json:"reason"`
		// ActionError: why the step, promote or rollback the analysis called for is not committed.
		ActionError string `json:"action_error"`
		Last        *struct {
			Verdict string `json:"verdict"`
			Checks  []struct {
				Check     string `json:"check"`
				Verdict   string `json:"verdict"`
				StableN   uint64 `json:"stable_n"`
				CanaryN   uint64 `json:"canary_n"`
				Rationale string `json:"rationale"`
			} `json:"checks"`
		} `json:"last_analysis"`
	}
)

// printModel prints one alias: a summary line, then a row per version and backend.
func printModel(w io.Writer, m *adminModel) {
	fmt.Fprintf(w, "%s  revision %d  stable %s  canary %s  sticky %s  shadow %s  rollout %s\n",
		m.Alias, m.Revision, orDefault(m.Stable, "-"), share(m.Canary, m.CanaryPercent, "none"), orDefault(m.Sticky, "none"), share(m.Shadow.Version, m.Shadow.Percent, "off"), rolloutSummary(m.Rollout))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VERSION\tROLE\tBACKEND\tKIND\tMODEL\tWEIGHT\tHEALTH\tIN-FLIGHT")
	for _, v := range m.Versions {
		role := orDefault(strings.Join(m.roles(v.Name), ","), "-")
		if len(v.Backends) == 0 {
			fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\t-\t-\n", v.Name, role)
		}
		for _, b := range v.Backends {
			health := "healthy"
			if !b.Healthy {
				health = "UNHEALTHY"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", v.Name, role, b.URL, orDefault(b.Kind, "-"), orDefault(b.Model, "-"), b.Weight, health, b.InFlight)
		}
	}
	tw.Flush()
}

// roles lists what traffic a version takes.
func (m *adminModel) roles(version string) []string {
	var r []string
	if version == m.Stable {
		r = append(r, "stable")
	}
	if version == m.Canary {
		r = append(r, "canary")
	}
	if version == m.Shadow.Version {
		r = append(r, "shadow")
	}
	return r
}

// share is "v4 10%", or none when there is no version.
func share(version string, percent float64, none string) string {
	if version == "" {
		return none
	}
	return version + " " + pct(percent)
}

func trafficSummary(m *adminModel) string {
	return fmt.Sprintf("stable %s, canary %s, sticky %s", orDefault(m.Stable, "-"), share(m.Canary, m.CanaryPercent, "none"), orDefault(m.Sticky, "none"))
}

func rolloutSummary(r *adminRollout) string {
	if r == nil || r.State == "" {
		return "none"
	}
	s := r.State
	if r.Canary != "" {
		s = r.Canary + " " + s
	}
	if len(r.Steps) > 0 {
		s += fmt.Sprintf(" step %d/%d", r.Step+1, len(r.Steps))
		if r.Step >= 0 && r.Step < len(r.Steps) {
			s += " (" + pct(r.Steps[r.Step].CanaryPercent) + ")"
		}
	}
	if r.Reason != "" {
		s += ": " + oneLine(r.Reason)
	}
	return s
}

func pct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// oneLine keeps a message to the one stderr line the CLI promises.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
