package gateway

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/guard"
	"github.com/llmgate/llmgate/router"
)

// classifier calls one alias's external safety classifier: an OpenAI /v1/moderations endpoint
// or a Llama Guard model behind /v1/chat/completions. It only sees text after PII redaction.
type classifier struct {
	kind        string
	endpoint    string
	model       string
	auth        string // "Bearer <key>" or ""
	sync        bool
	timeout     time.Duration
	failClosed  bool
	completions bool
	client      *fasthttp.Client
	hint        string // advice for a URL that ends in /v1 (see router.URLHint), or ""
}

func newClassifier(c *config.Classifier) (*classifier, error) {
	cl := &classifier{
		kind:        c.Kind,
		endpoint:    c.Endpoint(),
		model:       c.Model,
		sync:        c.Mode == config.ClassifierSync,
		timeout:     c.Timeout,
		failClosed:  c.OnError == config.FailClosed,
		completions: c.Completions,
		hint:        router.URLHint(c.URL),
		client: &fasthttp.Client{
			Name:                     "llmgate-guard",
			NoDefaultUserAgentHeader: false,
			MaxConnsPerHost:          64,
			MaxIdleConnDuration:      4 * time.Second,
			MaxResponseBodySize:      1 << 20,
			ReadTimeout:              time.Minute, // each call has its own, shorter deadline
			// A call beyond MaxConnsPerHost waits for a free connection within its own
			// deadline (fasthttp waits the shorter of the two): failing at once, a burst of
			// prompts was refused (fail_closed) or served unchecked (fail_open) while the
			// classifier was answering.
			MaxConnWaitTimeout: max(c.Timeout, asyncTimeout),
		},
	}
	if c.APIKeyEnv != "" {
		key := os.Getenv(c.APIKeyEnv)
		if key == "" {
			return nil, fmt.Errorf("guard.safety.classifier: environment variable %s is empty", c.APIKeyEnv)
		}
		cl.auth = "Bearer " + key
	}
	return cl, nil
}

// asyncTimeout bounds a monitoring-only verdict; nothing waits for it but the worker.
const asyncTimeout = 10 * time.Second

// judge sends one payload and reads the verdict.
func (c *classifier) judge(payload []byte, timeout time.Duration) (guard.Verdict, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.endpoint)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	req.SetBodyRaw(payload)
	if err := c.client.DoTimeout(req, resp, timeout); err != nil {
		return guard.Verdict{}, err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		// Where it was asked: a wrong URL fails every call, which under fail_open only the
		// log says.
		return guard.Verdict{}, &classifierStatusError{msg: fmt.Sprintf("classifier answered %d at %s%s", resp.StatusCode(), c.endpoint, c.hint)}
	}
	if c.kind == config.ClassifierModerations {
		return guard.ParseModeration(resp.Body())
	}
	var p fastjson.Parser
	root, err := p.ParseBytes(resp.Body())
	if err != nil {
		return guard.Verdict{}, guard.ErrBadVerdict
	}
	return guard.ParseLlamaGuard(root.GetStringBytes("choices", "0", "message", "content"))
}

// classifierStatusError is a classifier's answer whose status is not 200.
type classifierStatusError struct{ msg string }

func (e *classifierStatusError) Error() string { return e.msg }

// promptPayload builds the classifier request for a prompt. Moderations get every text as one
// input each; Llama Guard gets the conversation. It returns nil when the prompt has no text (an
// image alone): an empty input is a request classifiers refuse.
func (c *classifier) promptPayload(op operation, root *fastjson.Value) []byte {
	if c.kind == config.ClassifierModerations {
		var texts [][]byte
		forEachPromptText(op, root, func(_ *fastjson.Value, text []byte, _ promptTextKind) {
			if len(text) > 0 {
				texts = append(texts, text)
			}
		})
		if len(texts) == 0 {
			return nil
		}
		return c.moderationPayload(texts)
	}
	turns := promptTurns(op, root)
	if len(turns) == 0 {
		return nil
	}
	return c.llamaGuardPayload(turns, nil)
}

// completionPayload builds the classifier request for a completion; turns is the prompt's
// conversation (Llama Guard judges the last turn in its context).
func (c *classifier) completionPayload(turns []turn, completion []byte) []byte {
	if c.kind == config.ClassifierModerations {
		return c.moderationPayload([][]byte{completion})
	}
	return c.llamaGuardPayload(turns, completion)
}

func (c *classifier) moderationPayload(texts [][]byte) []byte {
	var a fastjson.Arena
	body := a.NewObject()
	if c.model != "" {
		body.Set("model", a.NewString(c.model))
	}
	input := a.NewArray()
	n := 0
	for _, t := range texts {
		if len(t) > 0 {
			input.SetArrayItem(n, a.NewStringBytes(t))
			n++
		}
	}
	body.Set("input", input)
	return marshalJSON(nil, body)
}

func (c *classifier) llamaGuardPayload(turns []turn, completion []byte) []byte {
	var a fastjson.Arena
	body := a.NewObject()
	body.Set("model", a.NewString(c.model))
	msgs := a.NewArray()
	if completion != nil {
		turns = appendTurn(append([]turn(nil), turns...), "assistant", completion)
	}
	for i, t := range turns {
		m := a.NewObject()
		m.Set("role", a.NewString(t.role))
		m.Set("content", a.NewStringBytes(t.text))
		msgs.SetArrayItem(i, m)
	}
	body.Set("messages", msgs)
	body.Set("temperature", a.NewNumberInt(0))
	body.Set("max_tokens", a.NewNumberInt(20)) // "unsafe\nS1,S2,..." is short
	return marshalJSON(nil, body)
}

// promptTurns returns the prompt as a conversation whose roles alternate user/assistant and
// that starts with the user, as Llama Guard's chat template requires: system, developer and
// tool turns count as the user's, consecutive turns of one role are joined. The texts are
// copies, valid after the request body's parser moves on.
func promptTurns(op operation, root *fastjson.Value) []turn {
	var turns []turn
	if op == opChat {
		msgs := root.GetArray("messages") // nil when absent or not an array
		for _, m := range msgs {
			role := "user"
			if string(m.GetStringBytes("role")) == "assistant" {
				role = "assistant"
			}
			turns = appendTurn(turns, role, messageText(m.Get("content")))
		}
	} else {
		forEachPromptText(op, root, func(_ *fastjson.Value, text []byte, _ promptTextKind) { turns = appendTurn(turns, "user", text) })
	}
	for len(turns) > 0 && turns[0].role != "user" {
		turns = turns[1:]
	}
	return turns
}

type turn struct {
	role string
	text []byte
}

func appendTurn(turns []turn, role string, text []byte) []turn {
	if len(text) == 0 {
		return turns
	}
	if n := len(turns); n > 0 && turns[n-1].role == role {
		turns[n-1].text = append(append(turns[n-1].text, "\n\n"...), text...)
		return turns
	}
	return append(turns, turn{role: role, text: append([]byte(nil), text...)})
}

// messageText returns a message content's text: the string, or its parts' texts (see
// partTextKeys) joined.
func messageText(c *fastjson.Value) []byte {
	if c == nil {
		return nil
	}
	if c.Type() == fastjson.TypeString {
		return c.GetStringBytes()
	}
	var out []byte
	parts, _ := c.Array()
	for _, p := range parts {
		for _, key := range partTextKeys {
			if t := p.GetStringBytes(key); len(t) > 0 {
				if len(out) > 0 {
					out = append(out, '\n')
				}
				out = append(out, t...)
			}
		}
	}
	return out
}

// Classifier results, the values of the result label.
const (
	verdictSafe = iota
	verdictUnsafe
	verdictError
	verdictDropped
	numVerdicts
)

var verdictNames = [numVerdicts]string{"safe", "unsafe", "error", "dropped"}

// classifierMetrics are one version's classifier series.
type classifierMetrics struct {
	results  [2][numVerdicts]*metrics.Counter // by direction
	duration *metrics.PrometheusHistogram
}

func newClassifierMetrics(set *metrics.Set, labels string) *classifierMetrics {
	m := &classifierMetrics{duration: set.GetOrCreatePrometheusHistogramExt("llmgate_guard_classifier_duration_seconds{"+labels+"}", classifierBuckets)}
	for d := range m.results {
		for v := range m.results[d] {
			m.results[d][v] = set.GetOrCreateCounter(`llmgate_guard_classifier_total{` + labels + `,direction="` + directionName(guard.Direction(d)) + `",result="` + verdictNames[v] + `"}`)
		}
	}
	return m
}

var classifierBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// The 503s of fail_closed, by what the classifier did: the operator of a classifier that
// answers errors looks at it, not at the network.
var (
	errClassifierUnavailable = &apiError{status: fasthttp.StatusServiceUnavailable, typ: typeServer, code: "guard_unavailable", retryAfter: 1,
		message: "The gateway's safety classifier did not answer, and this model does not serve prompts it has not checked."}
	errClassifierFailed = &apiError{status: fasthttp.StatusServiceUnavailable, typ: typeServer, code: "guard_unavailable", retryAfter: 1,
		message: "The gateway's safety classifier answered with an error, and this model does not serve prompts it has not checked."}
	errClassifierUnreadable = &apiError{status: fasthttp.StatusServiceUnavailable, typ: typeServer, code: "guard_unavailable", retryAfter: 1,
		message: "The gateway's safety classifier answered with no verdict the gateway can read, and this model does not serve prompts it has not checked."}
)

// classifierUnavailable is the fail_closed 503 for a classifier call that failed with err.
func classifierUnavailable(err error) *apiError {
	var status *classifierStatusError
	switch {
	case errors.As(err, &status):
		return errClassifierFailed
	case errors.Is(err, guard.ErrBadVerdict):
		return errClassifierUnreadable
	}
	return errClassifierUnavailable
}

// classifyPrompt runs the alias's classifier on the prompt (stage 3, after redaction): in sync
// mode the verdict can block the request; in async mode it is queued and the request goes on.
func (g *Gateway) classifyPrompt(r *request, root *fastjson.Value) error {
	c := r.guard.ag.classifier
	payload := c.promptPayload(r.op, root)
	if payload == nil {
		return nil // no text to judge
	}
	if !c.sync {
		g.classifyQueue.push(g, classifyJob{c: c, m: r.guard.m, dir: guard.Prompt, payload: payload, requestID: string(r.requestID)})
		return nil
	}
	start := time.Now()
	v, err := c.judge(payload, c.timeout)
	cm := r.guard.m.classifier
	cm.duration.Update(time.Since(start).Seconds())
	if err != nil {
		cm.results[guard.Prompt][verdictError].Inc()
		// Why, as for an async verdict: the header and the metric say only that it failed, and
		// under fail_open a classifier at a wrong address or refusing its key would otherwise
		// go unchecked without a word of the cause.
		g.logClassifierError(string(r.requestID), guard.Prompt, err)
		r.guard.report("classifier_prompt", "unavailable", true)
		if c.failClosed {
			// A prompt refused, as the log's guard_blocked says: counted with the other blocks.
			r.guard.m.blocks[guard.Prompt].Inc()
			r.guard.blocked = "classifier_unavailable"
			return classifierUnavailable(err)
		}
		return nil
	}
	if !v.Unsafe {
		cm.results[guard.Prompt][verdictSafe].Inc()
		return nil
	}
	cm.results[guard.Prompt][verdictUnsafe].Inc()
	cat := "unsafe"
	for _, c := range v.Categories {
		r.guard.m.safetyHit(guard.Prompt, c).Inc()
		r.stats.safety |= safetyBit(c)
	}
	if len(v.Categories) > 0 {
		cat = v.Categories[0]
	}
	action := r.guard.ag.safetyPrompt
	r.guard.report("classifier_prompt", cat, action == guard.ActionFlag || action == guard.ActionBlock)
	if action == guard.ActionBlock {
		r.guard.m.blocks[guard.Prompt].Inc()
		r.guard.blocked = "classifier:" + cat
		return contentFilterError(r.op, cat)
	}
	return nil
}

// maxClassifiedCompletion bounds the completion text kept for the classifier.
const maxClassifiedCompletion = 64 << 10

// collectCompletion keeps completion text (after leak redaction, before placeholders are
// restored: the classifier never sees personal data) for classifyCompletion.
func (s *guardState) collectCompletion(text []byte) {
	if s.collect {
		s.completion = append(s.completion, text[:min(len(text), maxClassifiedCompletion-len(s.completion))]...)
	}
}

// classifyCompletion queues the collected completion for the classifier (monitoring only: the
// text has been sent by the time a verdict could come).
func (g *Gateway) classifyCompletion(r *request) {
	if !r.guard.collect || len(r.guard.completion) == 0 {
		return
	}
	r.guard.collect = false
	c := r.guard.ag.classifier
	payload := c.completionPayload(r.guard.turns, r.guard.completion)
	g.classifyQueue.push(g, classifyJob{c: c, m: r.guard.m, dir: guard.Completion, payload: payload, requestID: string(r.requestID)})
}

// classifyJob is one asynchronous verdict to fetch.
type classifyJob struct {
	c         *classifier
	m         *guardMetrics
	dir       guard.Direction
	payload   []byte
	requestID string
}

// classifyQueue runs asynchronous classifier calls on a few workers. It never blocks a request:
// when full, a job is dropped and counted. The Gateway owns it: started in New, stopped in Close.
type classifyQueue struct {
	jobs   chan classifyJob
	wg     sync.WaitGroup
	mu     sync.RWMutex // closed and the channel's close; pushes share it
	closed bool
}

const (
	classifyWorkers  = 4
	classifyQueueLen = 1024
)

func (q *classifyQueue) start(g *Gateway) {
	q.jobs = make(chan classifyJob, classifyQueueLen)
	for range classifyWorkers {
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			for j := range q.jobs {
				if q.isClosed() {
					// Shutting down: a verdict still queued is dropped, as on a full queue.
					// Fetching them all (a full queue of a slow classifier, four at a time
					// and up to asyncTimeout each) held a stopping gateway for minutes.
					j.m.classifier.results[j.dir][verdictDropped].Inc()
					continue
				}
				g.runClassifyJob(j)
			}
		}()
	}
}

func (q *classifyQueue) push(g *Gateway, j classifyJob) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return
	}
	select {
	case q.jobs <- j:
	default:
		j.m.classifier.results[j.dir][verdictDropped].Inc()
	}
}

func (q *classifyQueue) isClosed() bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.closed
}

// close stops the workers: the jobs still queued and later pushes are dropped, and the calls
// running are waited for until wait has passed. A call may run for asyncTimeout, longer than a
// stopping gateway may take (see Gateway.Shutdown): one still running then is abandoned, and
// close reports whether any was.
func (q *classifyQueue) close(wait time.Duration) (abandoned bool) {
	q.mu.Lock()
	q.closed = true
	close(q.jobs)
	q.mu.Unlock()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

// logClassifierError logs a classifier call that failed, as a warning: an answer that is no
// verdict too (a URL pointing at another service), which under fail_open leaves prompts as
// unchecked as a classifier that is down.
func (g *Gateway) logClassifierError(requestID string, dir guard.Direction, err error) {
	g.log.Warn("guard classifier failed", "request_id", requestID, "direction", directionName(dir), "error", err.Error())
}

func (g *Gateway) runClassifyJob(j classifyJob) {
	start := time.Now()
	v, err := j.c.judge(j.payload, asyncTimeout)
	cm := j.m.classifier
	cm.duration.Update(time.Since(start).Seconds())
	switch {
	case err != nil:
		cm.results[j.dir][verdictError].Inc()
		g.logClassifierError(j.requestID, j.dir, err)
	case v.Unsafe:
		cm.results[j.dir][verdictUnsafe].Inc()
		for _, c := range v.Categories {
			j.m.safetyHit(j.dir, c).Inc()
		}
		g.log.Warn("guard classifier flagged", "request_id", j.requestID, "model", j.m.alias, "version", j.m.version,
			"direction", directionName(j.dir), "categories", v.Categories)
	default:
		cm.results[j.dir][verdictSafe].Inc()
	}
}
