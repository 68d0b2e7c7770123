package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestDemo runs what `llmgate demo` prints, the way a user pasting it would: every curl example
// (with its grep), then the admin commands, and checks what each shows.
func TestDemo(t *testing.T) {
	t.Setenv(defaultAdminTokenEnv, "") // the demo makes up a token and prints it
	var log bytes.Buffer               // what --log shows; read once the gateway is closed and its log writer done
	d, err := startDemo("127.0.0.1:0", "127.0.0.1:0", &log)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	closeDemo := func() {
		if !closed {
			closed = true
			d.gateway.Close() // flushes the request log
			d.closeBackends()
		}
	}
	t.Cleanup(closeDemo)
	var out bytes.Buffer
	d.print(&out)
	curls, admins, token := demoCommands(t, out.String())

	// What each curl example must show, in the order printed.
	want := []string{
		`"id":"chat"`,                                 // models
		`"object":"chat.completion"`,                  // chat
		"data: [DONE]",                                // stream pinned to v2
		`"object":"embedding"`,                        // embeddings
		"x-llmgate-guard: pii_prompt=EMAIL_ADDRESS=1", // guard header, counts only
		`"code":"content_filter"`,                     // prompt injection
		"x-llmgate-cache: miss",                       // cache, first run
		"llmgate_requests_total{",                     // metrics
	}
	if len(curls) != len(want) {
		t.Fatalf("the demo prints %d curl examples, the test knows %d:\n%s", len(curls), len(want), out.String())
	}
	for i, c := range curls {
		got := c.run(t)
		if !strings.Contains(strings.ToLower(got), strings.ToLower(want[i])) {
			t.Errorf("%s\nshows %q, want it to contain %q", c.line, got, want[i])
		}
		if strings.Contains(c.line, "jane.doe@example.com") && strings.Contains(got, "jane.doe") {
			t.Errorf("%s\nshows the address in the guard header: %q", c.line, got)
		}
		if strings.Contains(want[i], "cache: miss") {
			if again := c.run(t); !strings.Contains(strings.ToLower(again), "x-llmgate-cache: hit") {
				t.Errorf("%s run twice shows %q, want a hit", c.line, again)
			}
		}
	}

	// The admin commands: a sticky 50 % canary, its status, a rollback and the history.
	if token == "" {
		t.Fatalf("the demo prints no admin token:\n%s", out.String())
	}
	getenv := func(name string) string {
		if name == defaultAdminTokenEnv {
			return token
		}
		return ""
	}
	wantAdmin := []string{"canary v2", "50", "rolled back", "rollback"}
	if len(admins) != len(wantAdmin) {
		t.Fatalf("the demo prints %d admin commands, the test knows %d:\n%s", len(admins), len(wantAdmin), out.String())
	}
	for i, args := range admins {
		var stdout, stderr bytes.Buffer
		if rc := adminMain(args, &stdout, &stderr, getenv); rc != 0 {
			t.Fatalf("llmgate admin %q: exit %d: %s", args, rc, stderr.String())
		}
		if !strings.Contains(strings.ToLower(stdout.String()), wantAdmin[i]) {
			t.Errorf("llmgate admin %q shows\n%s\nwant it to contain %q", args, stdout.String(), wantAdmin[i])
		}
		if i == 0 { // the canary is live: users split between v1 and v2, each user on one
			if got := demoVersions(t, d.base); len(got) != 2 {
				t.Errorf("with a 50 %% canary, 20 users were served by %v, want v1 and v2", got)
			}
		}
	}
	if got := demoVersions(t, d.base); len(got) != 1 || !got["v1"] {
		t.Errorf("after the rollback, 20 users were served by %v, want v1 only", got)
	}

	// With --log, one JSON line per request on stderr, and never the prompt's personal data.
	closeDemo()
	if lines := strings.Count(log.String(), `"request_id":`); lines < len(curls) {
		t.Errorf("the request log has %d lines for at least %d requests:\n%s", lines, len(curls), log.String())
	}
	if strings.Contains(log.String(), "jane.doe") {
		t.Errorf("the request log holds the address from a prompt")
	}
}

// demoCurl is one curl example of the demo's output.
type demoCurl struct {
	line    string // as printed, continuation lines joined
	url     string
	headers []string // "Name: value"
	body    string   // -d, which makes it a POST
	include bool     // -i: headers before the body
	grep    *regexp.Regexp
}

var (
	demoQuoted = regexp.MustCompile(`(-H|-d) '([^']*)'`)
	demoURL    = regexp.MustCompile(`http://\S+`)
)

// demoCommands picks the curl examples, the admin commands (their arguments after "admin") and
// the exported admin token out of the demo's output.
func demoCommands(t *testing.T, out string) (curls []demoCurl, admins [][]string, token string) {
	t.Helper()
	joined := strings.ReplaceAll(out, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "curl "):
			cmd, grep, _ := strings.Cut(line, " | grep ")
			c := demoCurl{line: line, url: demoURL.FindString(cmd), include: strings.HasPrefix(cmd, "curl -si")}
			for _, m := range demoQuoted.FindAllStringSubmatch(cmd, -1) {
				if m[1] == "-H" {
					c.headers = append(c.headers, m[2])
				} else {
					c.body = m[2]
				}
			}
			if grep != "" {
				c.grep = demoGrep(t, grep)
			}
			curls = append(curls, c)
		case strings.HasPrefix(line, "export "+defaultAdminTokenEnv+"="):
			token = strings.TrimPrefix(line, "export "+defaultAdminTokenEnv+"=")
		case strings.HasPrefix(line, "go run ./cmd/llmgate admin "):
			admins = append(admins, shellWords(strings.TrimPrefix(line, "go run ./cmd/llmgate admin ")))
		}
	}
	return curls, admins, token
}

// demoGrep turns the grep of an example (-i and one pattern, quoted or not) into a regexp: the
// demo's patterns mean the same in grep's basic syntax and Go's.
func demoGrep(t *testing.T, args string) *regexp.Regexp {
	t.Helper()
	words := shellWords(args)
	flags := ""
	if words[0] == "-i" {
		flags, words = "(?i)", words[1:]
	}
	if len(words) != 1 {
		t.Fatalf("grep %s: the test reads one pattern", args)
	}
	return regexp.MustCompile(flags + words[0])
}

// shellWords splits a command line the way a shell does for the demo's commands: on spaces,
// with single and double quotes grouping.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ':
			if inWord {
				words = append(words, w.String())
				w.Reset()
			}
			inWord = false
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// run does what curl and the grep after it would show.
func (c demoCurl) run(t *testing.T) string {
	t.Helper()
	method, body := http.MethodGet, io.Reader(nil)
	if c.body != "" {
		method, body = http.MethodPost, strings.NewReader(c.body)
	}
	req, err := http.NewRequest(method, c.url, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.line, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", c.line, err)
	}
	var shown strings.Builder
	if c.include {
		fmt.Fprintf(&shown, "%s\n", resp.Status)
		for name, values := range resp.Header {
			for _, v := range values {
				fmt.Fprintf(&shown, "%s: %s\n", strings.ToLower(name), v)
			}
		}
		shown.WriteString("\n")
	}
	shown.Write(b)
	if c.grep == nil {
		return shown.String()
	}
	var kept []string
	for _, line := range strings.Split(shown.String(), "\n") {
		if c.grep.MatchString(line) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// demoVersions sends one chat request for each of 20 users, twice, and returns the versions
// that answered; a user answered by two versions fails the test (the split is sticky).
func demoVersions(t *testing.T, base string) map[string]bool {
	t.Helper()
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		wg   sync.WaitGroup
	)
	for u := range 20 { // users in parallel: each answer takes the simulated backend's TTFT
		wg.Go(func() {
			var first string
			for range 2 {
				body := fmt.Sprintf(`{"model":"chat","user":"user-%d","max_tokens":2,"messages":[{"role":"user","content":"Hello!"}]}`, u)
				resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				v := resp.Header.Get("X-Llmgate-Version")
				if resp.StatusCode != http.StatusOK || v == "" {
					t.Errorf("user-%d: status %d, version %q", u, resp.StatusCode, v)
					return
				}
				if first != "" && v != first {
					t.Errorf("user-%d was served by %s, then by %s: the canary is not sticky", u, first, v)
				}
				first = v
				mu.Lock()
				seen[v] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return seen
}

// The printed admin commands run llmgate as the demo was run: an installed binary has no
// ./cmd/llmgate to go run; go run's own build path is no command to paste.
func TestDemoCLI(t *testing.T) {
	for arg0, want := range map[string]string{
		"llmgate":                            "llmgate",
		"./llmgate":                          "./llmgate",
		"/root/go/bin/llmgate":               "/root/go/bin/llmgate",
		"/tmp/go-build1234/b001/exe/llmgate": "go run ./cmd/llmgate",
		"/home/a b/llmgate":                  "llmgate",
		"":                                   "go run ./cmd/llmgate",
	} {
		if got := demoCLI(arg0); got != want {
			t.Errorf("demoCLI(%q) = %q, want %q", arg0, got, want)
		}
	}
}

// A token the user already has in LLMGATE_ADMIN_TOKEN is their secret: the demo uses it but
// never prints it, and its admin commands work with it as it stands.
func TestDemoKeepsTheUsersToken(t *testing.T) {
	const secret = "users-own-secret-token-5f2c"
	t.Setenv(defaultAdminTokenEnv, secret)
	d, err := startDemo("127.0.0.1:0", "127.0.0.1:0", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.gateway.Close(); d.closeBackends() })
	var out bytes.Buffer
	d.print(&out)
	if strings.Contains(out.String(), secret) {
		t.Fatalf("the demo printed the user's own admin token:\n%s", out.String())
	}
	if strings.Contains(out.String(), "export "+defaultAdminTokenEnv) {
		t.Errorf("the demo asks to export a token the user already has:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "admin --url "+d.admin+" status chat") {
		t.Errorf("the admin commands are missing:\n%s", out.String())
	}
}
