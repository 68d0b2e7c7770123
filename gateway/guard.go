package gateway

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway/cache"
	"github.com/llmgate/llmgate/guard"
)

// aliasGuard is one alias's guard stages, built with the snapshot. Detectors are immutable and
// shared by every request of the alias.
type aliasGuard struct {
	pii                    *guard.PII    // nil when PII is off both ways
	safety                 *guard.Safety // nil when safety is off both ways
	piiPrompt, piiComplete bool
	piiRewrites            bool // some entity's completion action rewrites or blocks, not only detects
	restore                bool
	safetyPrompt           guard.Action // ActionBlock, ActionFlag, ActionDetect (log) or ActionOff
	safetyComplete         guard.Action
	holdback               int
	classifier             *classifier   // nil when the alias has none
	memo                   [2]*cleanMemo // by direction: texts in which the rules found nothing
}

// guardsCompletions reports whether the alias's guard has anything to do on an answer, buffered
// or streamed.
func (ag *aliasGuard) guardsCompletions() bool {
	return ag != nil && (ag.piiComplete || ag.restore || ag.safetyComplete != guard.ActionOff)
}

// rewritesCompletions reports whether the alias's guard may change or stop an answer's text
// (leaked PII rewritten, a blocking safety rule), not only restore placeholders or flag.
func (ag *aliasGuard) rewritesCompletions() bool {
	return ag != nil && (ag.piiRewrites || ag.safetyComplete == guard.ActionBlock)
}

// guardsAnswer reports whether this request's answer goes through the completion guard: an
// embeddings answer has vectors, no text.
func (r *request) guardsAnswer() bool {
	return r.op != opEmbeddings && r.guard.ag.guardsCompletions()
}

// guardMetrics are one model version's guard series, created with the snapshot.
type guardMetrics struct {
	set        *metrics.Set
	alias      string
	version    string
	labels     string                          // model="...",version="..."
	classifier *classifierMetrics              // nil when the alias has no classifier
	duration   [2]*metrics.PrometheusHistogram // by direction
	blocks     [2]*metrics.Counter
	memoHits   [2]*metrics.Counter            // texts not scanned again (see cleanMemo)
	pii        [2]map[string]*metrics.Counter // by entity type, with the action the alias takes on it
}

func newGuardMetrics(set *metrics.Set, alias, version string, ag *aliasGuard) *guardMetrics {
	m := &guardMetrics{set: set, alias: alias, version: version, labels: `model=` + promLabel(alias) + `,version=` + promLabel(version)}
	if ag.classifier != nil {
		m.classifier = newClassifierMetrics(set, m.labels)
	}
	for d := range m.blocks {
		dl := m.labels + `,direction="` + directionName(guard.Direction(d)) + `"`
		m.duration[d] = set.GetOrCreatePrometheusHistogramExt("llmgate_guard_duration_seconds{"+dl+"}", overheadBuckets)
		m.blocks[d] = set.GetOrCreateCounter(`llmgate_guard_blocks_total{` + dl + `}`)
		m.memoHits[d] = set.GetOrCreateCounter(`llmgate_guard_memo_hits_total{` + dl + `}`)
		m.pii[d] = map[string]*metrics.Counter{}
		if ag.pii == nil {
			continue
		}
		for _, e := range piiEntities {
			if a := ag.pii.Action(guard.Direction(d), e); a != guard.ActionOff {
				m.pii[d][e] = set.GetOrCreateCounter(`llmgate_guard_pii_total{` + dl + `,entity="` + e + `",action="` + piiActionName(a) + `"}`)
			}
		}
	}
	return m
}

// safetyHit counts a rule match. Categories come from the rule file, so their counters are made
// on first use rather than up front.
func (m *guardMetrics) safetyHit(d guard.Direction, category string) *metrics.Counter {
	return m.set.GetOrCreateCounter(`llmgate_guard_safety_total{` + m.labels + `,direction="` + directionName(d) + `",category=` + promLabel(category) + `}`)
}

func directionName(d guard.Direction) string {
	if d == guard.Prompt {
		return "prompt"
	}
	return "completion"
}

// piiActions pairs the config's PII action names with the guard's actions.
var piiActions = [...]struct {
	name   string
	action guard.Action
}{
	{config.PIIRedact, guard.ActionRedact}, {config.PIIMask, guard.ActionMask}, {config.PIIHash, guard.ActionHash},
	{config.PIIBlock, guard.ActionBlock}, {config.PIIDetect, guard.ActionDetect},
}

func piiAction(s string) guard.Action {
	for _, a := range piiActions {
		if a.name == s {
			return a.action
		}
	}
	return guard.ActionOff
}

// piiActionName is the config's name of a PII action, for the action label of
// llmgate_guard_pii_total.
func piiActionName(a guard.Action) string {
	for _, p := range piiActions {
		if p.action == a {
			return p.name
		}
	}
	return config.PIIDetect
}

func safetyAction(s string) guard.Action {
	switch s {
	case config.SafetyBlock:
		return guard.ActionBlock
	case config.SafetyFlag:
		return guard.ActionFlag
	case config.SafetyLog:
		return guard.ActionDetect
	}
	return guard.ActionOff
}

// minHashKey is the shortest hash key taken: a hash is 32 bits of an HMAC, which hides the
// value only as long as the key cannot be guessed.
const minHashKey = 16

// newAliasGuard builds the guard of one alias, or nil when its guard is off.
func (g *Gateway) newAliasGuard(m config.Model) (*aliasGuard, error) {
	gc := m.Guard
	if !gc.Enabled() {
		return nil, nil
	}
	ag := &aliasGuard{
		piiPrompt:      piiAction(gc.PII.Prompt) != guard.ActionOff,
		piiComplete:    piiAction(gc.PII.Completion) != guard.ActionOff,
		restore:        gc.PII.Restore,
		safetyPrompt:   safetyAction(gc.Safety.Prompt),
		safetyComplete: safetyAction(gc.Safety.Completion),
		holdback:       gc.Safety.HoldbackBytes,
		memo:           [2]*cleanMemo{newCleanMemo(), newCleanMemo()},
	}
	if ag.piiPrompt || ag.piiComplete || ag.restore {
		opts := guard.PIIOptions{Entities: gc.PII.Entities, Prompt: piiAction(gc.PII.Prompt), Completion: piiAction(gc.PII.Completion)}
		for _, o := range gc.PII.Overrides {
			if o.Prompt != "" {
				opts.Overrides = append(opts.Overrides, guard.PIIOverride{Entity: o.Entity, Direction: guard.Prompt, Action: piiAction(o.Prompt)})
			}
			if o.Completion != "" {
				opts.Overrides = append(opts.Overrides, guard.PIIOverride{Entity: o.Entity, Direction: guard.Completion, Action: piiAction(o.Completion)})
			}
		}
		if name := gc.PII.HashKeyEnv; name != "" {
			key := os.Getenv(name)
			if len(key) < minHashKey {
				return nil, fmt.Errorf("model %q guard.pii.hash_key_env: environment variable %s holds %d bytes; the hash key needs at least %d", m.Alias, name, len(key), minHashKey)
			}
			opts.HashKey = []byte(key)
		}
		p, err := guard.NewPII(opts)
		if err != nil {
			return nil, fmt.Errorf("model %q guard.pii: %w", m.Alias, err)
		}
		ag.pii = p
		for _, e := range piiEntities {
			ag.piiRewrites = ag.piiRewrites || p.Action(guard.Completion, e) >= guard.ActionRedact
		}
	}
	if ag.safetyPrompt != guard.ActionOff || ag.safetyComplete != guard.ActionOff {
		var rules []byte
		if gc.Safety.RulesFile != "" {
			b, err := os.ReadFile(gc.Safety.RulesFile)
			if err != nil {
				return nil, fmt.Errorf("model %q guard.safety.rules_file: %w", m.Alias, err)
			}
			rules = b
		}
		s, err := guard.NewSafety(guard.SafetyOptions{Rules: rules})
		if err != nil && gc.Safety.RulesFile != "" {
			// The line the error names is the rules file's, not the config's.
			return nil, fmt.Errorf("model %q guard.safety.rules_file %s: %w", m.Alias, gc.Safety.RulesFile, err)
		}
		if err != nil {
			return nil, fmt.Errorf("model %q guard.safety: %w", m.Alias, err)
		}
		ag.safety = s
	}
	if gc.Safety.Classifier != nil {
		c, err := newClassifier(gc.Safety.Classifier)
		if err != nil {
			return nil, fmt.Errorf("model %q: %w", m.Alias, err)
		}
		ag.classifier = c
	}
	return ag, nil
}

// Errors of the guard stages.
func contentFilterError(op operation, category string) *apiError {
	return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "content_filter", param: promptParams[op],
		message: "The prompt was blocked by the gateway's safety filter (category " + category + ")."}
}

func piiBlockedError(op operation, types []byte) *apiError {
	return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "pii_blocked", param: promptParams[op],
		message: "The prompt contains personal data that this model does not accept (" + string(types) + ")."}
}

// promptParams name the field holding the prompt, for the param of a guard's 400.
var promptParams = [numOperations]string{opChat: "messages", opCompletion: "prompt", opEmbeddings: "input"}

// guardState is the guard's per-request state, part of the pooled request.
type guardState struct {
	ag       *aliasGuard
	m        *guardMetrics // of the version serving the request
	vault    *guard.Vault
	arena    fastjson.Arena
	matches  []guard.SafetyMatch
	text     []byte // scratch for one rewritten text
	restored []byte // scratch for one text with its placeholders restored
	header   []byte // x-llmgate-guard value: what the client is told
	note     []byte // what the guard found, for the log: the header's entries and those of log-only actions
	blocked  string // why the request or completion was blocked, for the log
	chunk    []byte // a rewritten stream chunk
	// For the classifier's completion verdict: collect is set when it wants one.
	collect    bool
	completion []byte             // choice 0's text, bounded
	turns      []turn             // the prompt's conversation, after redaction (Llama Guard)
	answer     []*fastjson.Value  // scratch: the texts of one choice of a buffered answer
	parsers    []*fastjson.Parser // one per string set by setString, the first nparsers in use
	nparsers   int
	enc        []byte // scratch: a string's JSON encoding, for setString
	fixed      []byte // scratch: a body with lone surrogate escapes replaced, for parseJSON
}

func (s *guardState) reset() {
	if s.vault != nil {
		guard.ReleaseVault(s.vault)
		s.vault = nil
	}
	s.ag, s.m, s.matches, s.text, s.header, s.note, s.blocked = nil, nil, s.matches[:0], s.text[:0], s.header[:0], s.note[:0], ""
	s.chunk = s.chunk[:0]
	// Restored text holds the requester's originals: zeroed as the vault zeroes its own.
	clear(s.restored[:cap(s.restored)])
	if s.restored = s.restored[:0]; cap(s.restored) > 64<<10 {
		s.restored = nil
	}
	s.collect, s.completion, s.turns = false, s.completion[:0], nil
	clear(s.answer)
	s.answer = s.answer[:0]
	s.arena.Reset()
	if s.fixed = s.fixed[:0]; cap(s.fixed) > 64<<10 {
		s.fixed = nil
	}
	s.nparsers = 0
	if len(s.parsers) > 64 {
		s.parsers = nil // do not pool what a huge request needed
	}
}

// guardPrompt is stage 3: safety and PII on every text the prompt carries, then the external
// classifier when the alias has one. It rewrites r.body only when a text changed.
func (g *Gateway) guardPrompt(r *request, root *fastjson.Value) error {
	if err := g.guardPromptTexts(r, root); err != nil {
		return err
	}
	c := r.guard.ag.classifier
	if c == nil {
		return nil
	}
	if c.completions {
		r.guard.collect = true
		if c.kind == config.ClassifierLlamaGuard {
			r.guard.turns = promptTurns(r.op, root) // after redaction: the classifier sees no PII
		}
	}
	if r.guard.ag.safetyPrompt == guard.ActionOff {
		return nil
	}
	return g.classifyPrompt(r, root)
}

// guardPromptTexts runs the in-process rules: safety, then PII.
func (g *Gateway) guardPromptTexts(r *request, root *fastjson.Value) error {
	ag := r.guard.ag
	if ag.safetyPrompt == guard.ActionOff && !ag.piiPrompt {
		return nil
	}
	if p := promptParams[r.op]; r.op != opChat && !onlyText(root.Get(p)) {
		// A prompt or input of token ids is text the rules cannot read: refused rather than
		// let it carry to the model what the guard would redact or block.
		return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "unsupported_parameter", param: p,
			message: "'" + p + "' must be a string or an array of strings on model `" + r.version.Alias + "`: its prompt guard reads text, and token ids would reach the model unchecked."}
	}
	if s := root.Get("suffix"); r.op == opCompletion && s != nil && s.Type() != fastjson.TypeString && s.Type() != fastjson.TypeNull {
		return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "unsupported_parameter", param: "suffix",
			message: "'suffix' must be a string on model `" + r.version.Alias + "`: its prompt guard reads text, and token ids would reach the model unchecked."}
	}
	if pe := root.Get("prompt_embeds"); r.op == opCompletion && pe != nil && pe.Type() != fastjson.TypeNull {
		// vLLM's prompt embeddings are prompts too, as tensors: no rule can read them.
		return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "unsupported_parameter", param: "prompt_embeds",
			message: "'prompt_embeds' is not supported on model `" + r.version.Alias + "`: its prompt guard reads text, and embeddings would reach the model unchecked."}
	}
	if m := root.Get("messages"); r.op == opEmbeddings && m != nil && m.Type() != fastjson.TypeNull {
		// vLLM's chat embeddings: the guard reads an embeddings request's input only.
		return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "unsupported_parameter", param: "messages",
			message: "'messages' is not supported on /v1/embeddings for model `" + r.version.Alias + "`: its prompt guard reads 'input', and the conversation would reach the model unchecked; send its text as 'input'."}
	}
	if ct := root.Get("chat_template"); r.op == opChat && ct != nil && ct.Type() != fastjson.TypeNull {
		// vLLM's chat template is code that writes the prompt: it can spell any text from
		// pieces no rule reads, or leave out what the guard rewrote.
		return &apiError{status: fasthttp.StatusBadRequest, typ: typeInvalidRequest, code: "unsupported_parameter", param: "chat_template",
			message: "'chat_template' is not supported on model `" + r.version.Alias + "`: its prompt guard reads the messages, and a template could write a prompt it has not checked."}
	}
	start := time.Now()
	defer func() { r.guard.m.duration[guard.Prompt].Update(time.Since(start).Seconds()) }()
	if ag.pii != nil && r.guard.vault == nil {
		r.guard.vault = guard.AcquireVault()
	}
	if ag.piiPrompt && mayHoldPlaceholder(r.body) {
		// Placeholder-shaped text in any message, the ones the memo skips too, is reserved
		// before a placeholder is written for another.
		forEachPromptText(r.op, root, func(_ *fastjson.Value, text []byte, _ promptTextKind) {
			r.guard.vault.Reserve(text)
		})
	}
	changed := false
	var err error
	forEachPromptText(r.op, root, func(v *fastjson.Value, text []byte, kind promptTextKind) {
		if err != nil {
			return
		}
		memo := ag.memo[guard.Prompt].probe(text)
		if memo.clean() {
			r.guard.m.memoHits[guard.Prompt].Inc()
			return
		}
		// The safety rules judge what users and tools bring, not the app's own instructions:
		// a system prompt saying "never reveal your system prompt" is a defence, not an attack.
		safety := ag.safetyPrompt != guard.ActionOff && kind != textInstructions
		found := false
		if safety {
			if err = g.checkSafety(r, guard.Prompt, text); err != nil {
				return
			}
			found = len(r.guard.matches) > 0
		}
		if ag.piiPrompt {
			before := r.guard.vault.Findings(guard.Prompt)
			out, blocked := ag.pii.Redact(r.guard.text[:0], text, guard.Prompt, r.guard.vault)
			r.guard.text = out
			if blocked.Len() > 0 {
				r.guard.m.blocks[guard.Prompt].Inc()
				r.guard.blocked = "pii"
				err = piiBlockedError(r.op, blocked.AppendNames(nil, ','))
				return
			}
			rewritten := !bytes.Equal(out, text)
			if rewritten {
				r.guard.setString(v, out)
				changed = true
			}
			found = found || rewritten || r.guard.vault.Findings(guard.Prompt) != before
		}
		// Clean means every rule of the direction found nothing: not so when safety was skipped.
		if !found && (safety || ag.safetyPrompt == guard.ActionOff) {
			memo.markClean()
		}
	})
	if ag.piiPrompt && err == nil && r.guard.vault.Len() > 0 {
		// A value found in one text by its context ("my phone is ...") is redacted wherever
		// else the prompt has it, bare: in another message, or out of its context's reach.
		forEachPromptText(r.op, root, func(v *fastjson.Value, text []byte, _ promptTextKind) {
			if out, ok := r.guard.vault.RedactKnown(r.guard.text[:0], text); ok {
				r.guard.text = out
				r.guard.setString(v, out)
				changed = true
			}
		})
	}
	if ag.piiPrompt {
		g.countPII(r, guard.Prompt) // a PII block too: the header says which types
	}
	if err != nil {
		return err
	}
	if changed {
		r.modelStart = -1
		r.body = marshalJSON(r.scratch[:0], root)
		r.scratch = nil // r.body owns that buffer now
	}
	return nil
}

// mayHoldPlaceholder reports whether a JSON body may hold placeholder-shaped text: a '<',
// raw or escaped as encoding/json writes it (\u003c). Most prompts have none, and then the
// walk over their texts that reserves placeholder numbers is skipped.
func mayHoldPlaceholder(body []byte) bool {
	return bytes.IndexByte(body, '<') >= 0 || bytes.Contains(body, []byte(`\u003c`)) || bytes.Contains(body, []byte(`\u003C`))
}

// checkSafety runs the safety rules on one text and applies the alias's action.
func (g *Gateway) checkSafety(r *request, d guard.Direction, text []byte) error {
	ag := r.guard.ag
	action := ag.safetyPrompt
	if d == guard.Completion {
		action = ag.safetyComplete
	}
	r.guard.matches = ag.safety.Check(r.guard.matches[:0], text)
	if len(r.guard.matches) == 0 {
		return nil
	}
	for _, m := range r.guard.matches {
		r.guard.m.safetyHit(d, m.Category).Inc()
		r.stats.safety |= safetyBit(m.Category)
	}
	// The category reported is the earliest match's in the text, not the first found: a
	// rule with unless_next phrases reports its match only once the words after it are read,
	// so which is found first changes with the rules, and the answer must not.
	first := r.guard.matches[0]
	for _, m := range r.guard.matches[1:] {
		if m.Start >= 0 && (first.Start < 0 || m.Start < first.Start) {
			first = m
		}
	}
	cat := first.Category
	r.guard.report("safety_"+directionName(d), cat, action == guard.ActionFlag || action == guard.ActionBlock)
	if action == guard.ActionBlock {
		r.guard.m.blocks[d].Inc()
		r.guard.blocked = "safety:" + cat
		if d == guard.Prompt {
			return contentFilterError(r.op, cat)
		}
		return errCompletionFiltered
	}
	return nil
}

var errChoiceUnguarded = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend sent a choice index the gateway's guard cannot track (at most 128 choices); the stream was stopped."}

var errEventUnguarded = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend sent a stream event that is not JSON, which the gateway's guard cannot check; the stream was stopped."}

var errContentUnguarded = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend streamed a content that is not a string, which the gateway's guard cannot check; the stream was stopped."}

var errAnswerUnguarded = &apiError{status: fasthttp.StatusBadGateway, typ: typeServer, code: "upstream_error", message: "The model backend's answer is not JSON, which the gateway's guard cannot check; it was withheld."}

var errCompletionFiltered = &apiError{status: fasthttp.StatusOK, typ: typeInvalidRequest, code: "content_filter", message: "The completion was stopped by the gateway's safety filter."}

var errCompletionPIIBlocked = &apiError{status: fasthttp.StatusOK, typ: typeInvalidRequest, code: "content_filter", message: "The completion was stopped by the gateway: it held personal data that this model does not give out."}

// completionStopped is the error event that ends a stream the guard stopped: the same code
// either way, but a value of a blocked PII type is not the safety filter's doing.
func (r *request) completionStopped() *apiError {
	if r.guard.blocked == "pii" {
		return errCompletionPIIBlocked
	}
	return errCompletionFiltered
}

// piiEntities is guard.PIIEntities() once: that returns a copy each call.
var piiEntities = guard.PIIEntities()

// countPII counts what the vault saw in direction d and notes it for the header.
func (g *Gateway) countPII(r *request, d guard.Direction) {
	v := r.guard.vault
	if v == nil || v.Findings(d) == 0 {
		return
	}
	for _, e := range piiEntities {
		if n := v.Found(d, e); n > 0 && r.guard.m.pii[d][e] != nil {
			r.guard.m.pii[d][e].Add(n)
		}
	}
	if sum := v.AppendSummary(nil, d); len(sum) > 0 {
		r.guard.report("pii_"+directionName(d), string(sum), true)
	}
}

// report notes what the guard found, as key=value (types, counts and categories, never
// values), for the log, and for the client in x-llmgate-guard when tell is set: a safety rule
// whose action is log shows in the log only.
func (s *guardState) report(key, value string, tell bool) {
	if hasGuardEntry(s.note, key, value) {
		// Said once: a phrase in every message a conversation resends is one finding, not an
		// entry per message in a header that would grow with the conversation.
		return
	}
	s.note = appendGuardEntry(s.note, key, value)
	if tell {
		s.header = appendGuardEntry(s.header, key, value)
	}
}

// hasGuardEntry reports whether list, entries as appendGuardEntry writes them, holds key=value.
func hasGuardEntry(list []byte, key, value string) bool {
	for len(list) > 0 {
		var e []byte
		e, list, _ = bytes.Cut(list, []byte("; "))
		if len(e) == len(key)+1+len(value) && string(e[:len(key)]) == key && e[len(key)] == '=' && string(e[len(key)+1:]) == value {
			return true
		}
	}
	return false
}

func appendGuardEntry(dst []byte, key, value string) []byte {
	if len(dst) > 0 {
		dst = append(dst, "; "...)
	}
	dst = append(dst, key...)
	dst = append(dst, '=')
	return append(dst, value...)
}

// setString overwrites the string value v in place with text. fastjson has no setter for a
// value, so v's content is swapped for that of a value parsed from text's JSON encoding. Not
// one made by the arena: fastjson stores an arena string in Go's escapes (\x1b for ESC, \a,
// \U0001...), which its own reader then reads back wrong (the backslash kept), and which no JSON
// reader reads at all once marshalled. A parsed value holds JSON's escapes and reads back as
// text. Each value keeps its own parser until the parsers are reset: after the request's
// prompt is guarded, and after each stream chunk is written.
func (s *guardState) setString(v *fastjson.Value, text []byte) {
	if s.nparsers == len(s.parsers) {
		s.parsers = append(s.parsers, new(fastjson.Parser))
	}
	p := s.parsers[s.nparsers]
	s.nparsers++
	s.enc = appendJSONString(s.enc[:0], unsafeString(text))
	nv, err := p.ParseBytes(s.enc)
	if err != nil {
		panic("BUG: a JSON string the gateway encoded does not parse: " + err.Error())
	}
	*v = *nv
}

// guardCompletion is stage 7 for a buffered answer: safety on each choice's text, PII leaks
// rewritten, placeholders restored. It returns the body to send, or errAnswerUnguarded for an
// answer it cannot read (which then is not sent).
func (g *Gateway) guardCompletion(r *request, body []byte) ([]byte, error) {
	ag := r.guard.ag
	if !r.guardsAnswer() {
		return body, nil
	}
	start := time.Now()
	defer func() { r.guard.m.duration[guard.Completion].Update(time.Since(start).Seconds()) }()
	root, err := parseJSON(&r.parser, body, &r.guard.fixed)
	if err != nil {
		return nil, errAnswerUnguarded
	}
	if ag.pii != nil && r.guard.vault == nil {
		r.guard.vault = guard.AcquireVault()
	}
	changed := false
	choices := root.GetArray("choices") // nil when absent or not an array
	for i, c := range choices {
		var args int
		r.guard.answer, args = answerTexts(r.guard.answer[:0], c.Get("message"), c)
		// A blocked text empties its whole choice, the texts read before it included, and the
		// choice says why, as OpenAI does: the rest of the choice goes unread.
		blockChoice := func() {
			for _, w := range r.guard.answer {
				r.guard.setString(w, nil)
			}
			c.Set("finish_reason", r.guard.arena.NewString("content_filter"))
			changed = true
		}
	texts:
		for k, v := range r.guard.answer {
			text := v.GetStringBytes()
			out := text
			memo := ag.memo[guard.Completion].probe(text)
			if memo.clean() {
				// A cached answer replayed, or the same answer again: its scan found nothing.
				r.guard.m.memoHits[guard.Completion].Inc()
			} else {
				found := false
				if ag.safetyComplete != guard.ActionOff {
					if g.checkSafety(r, guard.Completion, text) != nil {
						blockChoice()
						break texts
					}
					found = len(r.guard.matches) > 0
				}
				if ag.piiComplete {
					// Leaks first: the model's own text, where placeholders are not PII.
					before := r.guard.vault.Findings(guard.Completion)
					var blocked guard.EntitySet
					out, blocked = ag.pii.Redact(r.guard.text[:0], text, guard.Completion, r.guard.vault)
					r.guard.text = out
					if blocked.Len() > 0 {
						// An entity whose completion action is block: the text goes, as a
						// blocking safety rule's does.
						r.guard.m.blocks[guard.Completion].Inc()
						r.guard.blocked = "pii"
						blockChoice()
						break texts
					}
					found = found || !bytes.Equal(out, text) || r.guard.vault.Findings(guard.Completion) != before
				}
				if !found {
					memo.markClean()
				}
			}
			if i == 0 && k == 0 {
				r.guard.collectCompletion(out)
			}
			if ag.restore {
				if k >= args || r.jsonOutput && (v == c.Get("message", "content") || v == c.Get("text")) {
					// Tool call arguments and JSON-mode content are JSON text: a value with
					// newlines must go in escaped, or the client cannot parse it.
					r.guard.restored = r.guard.vault.RestoreInJSONString(r.guard.restored[:0], out)
				} else {
					r.guard.restored = r.guard.vault.Restore(r.guard.restored[:0], out)
				}
				out = r.guard.restored
			}
			if !bytes.Equal(out, text) {
				r.guard.setString(v, out)
				changed = true
			}
		}
	}
	if ag.piiComplete {
		g.countPII(r, guard.Completion)
	}
	g.classifyCompletion(r)
	if !changed {
		return body, nil
	}
	return marshalJSON(nil, root), nil
}

// cachedAnswerClean reports whether a replayed cache entry needs no completion guard, so that
// the replay need not parse its own answer: every choice's text is one the rules already found
// nothing in (the memo), spelled without JSON escapes (the stored bytes are then the text the
// memo saw), and the request has no placeholders to restore and no classifier to feed.
func (g *Gateway) cachedAnswerClean(r *request, e *cache.Entry) bool {
	ag := r.guard.ag
	if !r.guardsAnswer() {
		return true
	}
	if r.guard.collect || (ag.restore && r.guard.vault != nil && r.guard.vault.Len() > 0) {
		return false
	}
	memo := ag.memo[guard.Completion]
	texts := 0
	for i := range e.Choices() {
		for _, key := range otherAnswerTexts {
			if e.Has(i, key) {
				return false // the memo knows contents only
			}
		}
		text := e.Text(i)
		if text == nil && e.Has(i, "content") {
			return false // a content of parts: the memo knows strings only
		}
		if text == nil {
			continue
		}
		if bytes.IndexByte(text, '\\') >= 0 || !memo.clean(text) {
			return false
		}
		texts++
	}
	r.guard.m.memoHits[guard.Completion].Add(texts)
	return true
}
