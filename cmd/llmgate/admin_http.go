package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The admin API client's HTTP side: requests, answers and the gateway's error envelope.

// read GETs path and decodes the answer into v, or prints it raw with --json (printed).
func (c *adminCmd) read(path string, v any) (printed bool, err error) {
	data, _, err := c.call(http.MethodGet, path, nil, nil)
	if err != nil || c.json {
		return true, c.printJSON(data, err)
	}
	return false, decodeAnswer(data, v)
}

// write sends a change and prints one line saying what the model now is, or the raw answer.
func (c *adminCmd) write(method, path string, query url.Values, body any, alias string, what func(*adminModel) string) error {
	data, hdr, err := c.call(method, path, query, body)
	if err != nil || c.json {
		return c.printJSON(data, err)
	}
	var r struct {
		Revision     int64      `json:"revision"`
		Model        adminModel `json:"model"`
		RolloutEnded string     `json:"rollout_ended"` // this change ended the alias's rollout
	}
	if err := decodeAnswer(data, &r); err != nil {
		return err
	}
	rev := strconv.FormatInt(r.Revision, 10)
	if r.Revision == 0 && etagRevision(hdr) != "" {
		rev = etagRevision(hdr)
	}
	if r.Model.Alias != "" {
		alias = r.Model.Alias
	}
	fmt.Fprintf(c.stdout, "%s: revision %s: %s\n", alias, rev, what(&r.Model))
	if r.RolloutEnded != "" {
		fmt.Fprintf(c.stdout, "%s: the rollout was aborted (%s)\n", alias, r.RolloutEnded)
	}
	return nil
}

// call sends one request and returns the body of a 2xx answer; any other answer is an
// *adminAPIError. body, when not nil, is sent as JSON.
func (c *adminCmd) call(method, path string, query url.Values, body any) ([]byte, http.Header, error) {
	base, err := c.baseURL()
	if err != nil {
		return nil, nil, err
	}
	ifMatch, err := c.ifMatchHeader()
	if err != nil {
		return nil, nil, err
	}
	target := base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic("BUG: admin request does not marshal: " + err.Error())
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return nil, nil, usagef("--url %q: %v", c.url, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	token := c.getenv(c.tokenEnv)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.client.Do(req)
	var timeout net.Error
	var dial *net.OpError
	if err != nil && errors.As(err, &timeout) && timeout.Timeout() && !(errors.As(err, &dial) && dial.Op == "dial") {
		// Connected, then no answer (a deploy probing many silent backends, say): not
		// "unreachable", and a write may have been made all the same.
		msg := fmt.Sprintf("%s took the request but did not answer within %s", base, c.client.Timeout)
		if method != http.MethodGet {
			msg += ": the change may have been made or not; llmgate admin status and history say which"
		}
		return nil, nil, errors.New(msg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s is unreachable: %s (is llmgate serving its admin API there? see --url)", base, shortErr(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading the answer: %s", base, shortErr(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := newAdminAPIError(resp, data)
		if resp.StatusCode == http.StatusUnauthorized && token == "" {
			e.noToken = c.tokenEnv
		}
		return nil, nil, e
	}
	return data, resp.Header, nil
}

// baseURL checks --url and returns it without a trailing slash.
func (c *adminCmd) baseURL() (string, error) {
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("--url %q: want http://host:port", c.url)
	}
	return strings.TrimSuffix(c.url, "/"), nil
}

// ifMatchHeader turns --if-match into a quoted entity tag (RFC 9110), accepting 13 or "13", or
// passes "*" (the alias must exist) as the API takes it. A weak tag, W/"13", is refused: If-Match
// compares strongly, so the gateway would answer it with a 412 whatever the model's revision.
func (c *adminCmd) ifMatchHeader() (string, error) {
	if c.ifMatch == "" || c.ifMatch == "*" {
		return c.ifMatch, nil
	}
	if strings.HasPrefix(c.ifMatch, "W/") {
		return "", usagef("--if-match %q: a weak entity tag never matches (If-Match compares strongly); want a revision number, or * (the model must exist)", c.ifMatch)
	}
	rev := strings.Trim(c.ifMatch, `"`)
	if _, err := strconv.ParseUint(rev, 10, 64); err != nil {
		return "", usagef("--if-match %q: want a revision number, or * (the model must exist)", c.ifMatch)
	}
	return `"` + rev + `"`, nil
}

// etagRevision reads the revision out of an ETag header such as "13" or W/"13".
func etagRevision(h http.Header) string {
	return strings.Trim(strings.TrimPrefix(h.Get("ETag"), "W/"), `"`)
}

// printJSON prints a successful answer indented; it passes err through so callers can return
// printJSON(data, err) whether or not the call failed.
func (c *adminCmd) printJSON(data []byte, err error) error {
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return err
	}
	var buf bytes.Buffer
	if json.Indent(&buf, data, "", "  ") != nil {
		buf.Reset()
		buf.Write(bytes.TrimSpace(data)) // not JSON: print what came, the user asked for raw
	}
	buf.WriteByte('\n')
	_, err = c.stdout.Write(buf.Bytes())
	return err
}

// decodeAnswer reads a 2xx answer into v; an empty answer leaves v as it is.
func decodeAnswer(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("unexpected answer from the admin API: %v", err)
	}
	return nil
}

// adminAPIError is a non-2xx answer, read from the OpenAI error envelope when there is one.
type adminAPIError struct {
	status    int
	message   string
	param     string
	revision  string // from the ETag of a 412: the model's current revision
	noToken   string // the token variable, when it was empty and the answer was 401
	dataPlane bool   // a 404 from llmgate's data plane: --url names the OpenAI API's port
}

func newAdminAPIError(resp *http.Response, body []byte) *adminAPIError {
	e := &adminAPIError{status: resp.StatusCode, revision: etagRevision(resp.Header)}
	// The data plane names itself "llmgate", the admin listener "llmgate-admin": the data
	// plane's 404 lists the /v1 paths, which would only puzzle an admin command.
	e.dataPlane = resp.StatusCode == http.StatusNotFound && resp.Header.Get("Server") == "llmgate"
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error.Message != "" {
		e.message = env.Error.Message
		if env.Error.Param != nil {
			e.param = *env.Error.Param
		}
		return e
	}
	// Not an envelope (a proxy in between, an old gateway): say what came, briefly.
	e.message = http.StatusText(resp.StatusCode)
	if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		e.message += ": " + s
	}
	return e
}

func (e *adminAPIError) Error() string {
	if e.status == http.StatusPreconditionFailed && e.revision != "" {
		return "conflict: the model changed (now revision " + e.revision + "); re-read and retry"
	}
	// A 412 without the model's revision is of a model that does not exist (--if-match '*',
	// or a revision for a deploy that would create it): the gateway's message says so.
	s := fmt.Sprintf("%d: %s", e.status, e.message)
	if e.param != "" {
		s += " (field " + e.param + ")"
	}
	if e.noToken != "" {
		s += " (no token was sent: " + e.noToken + " is empty)"
	}
	if e.dataPlane {
		s += " (--url is llmgate's OpenAI API; the admin API listens on admin.listen, default 127.0.0.1:8081)"
	}
	return s
}
