package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Workload kinds.
const (
	Chat       = "chat"
	ChatStream = "chat-stream"
	Embeddings = "embeddings"
)

// Workload holds the request bodies of a run, built once before it starts so that producing
// a body costs one copy and a 16-byte patch. It is read-only and safe for concurrent use.
//
// Request i is mapped to a body key: either i itself (a fresh body, unique to that request
// because the key is written into the prompt) or, with probability RepeatShare, the key of a
// recent earlier request, which reproduces that request's body byte for byte.
type Workload struct {
	Kind  string
	Path  string // request path under the target's base URL
	tmpls []template
	// variants is the number of templates per prompt: plain, then one per PII kind.
	variants    int
	piiShare    float64
	repeatShare float64
	seed        uint64
	maxBody     int
}

// template is a finished body with a placeholder where the per-key nonce goes.
type template struct {
	b     []byte
	nonce int // offset of the nonceLen-byte placeholder in b, or -1 when there is none
}

const (
	nonceLen = 16
	// nonceMark is the placeholder text; letters only, so that neither it nor any nonce
	// written over it can look like a phone or card number to a PII detector.
	nonceMark = "zqxjzqxjzqxjzqxj"
	// repeatWindow bounds how far back a repeat reaches, so that repeats stay within what a
	// bounded response cache can still hold.
	repeatWindow = 1024
)

// piiSnippets are inserted into a PII-carrying prompt, one kind per variant.
var piiSnippets = []string{
	"Please reply to jane.doe@example.com with the summary. ",
	"You can call me back on +1 415-555-0132 after five. ",
	"Charge it to my card 4111 1111 1111 1111, expiry 12/29. ",
}

// NewWorkload builds the bodies described by o.
func NewWorkload(o *Options) (*Workload, error) {
	w := &Workload{
		Kind:        o.Workload,
		Path:        "/v1/chat/completions",
		variants:    1 + len(piiSnippets),
		piiShare:    o.PIIShare,
		repeatShare: o.RepeatShare,
		seed:        o.Seed,
	}
	if w.Kind == Embeddings {
		w.Path = "/v1/embeddings"
	}
	var prompts []prompt
	switch {
	case o.PromptsFile != "":
		var err error
		if prompts, err = readPrompts(o.PromptsFile); err != nil {
			return nil, err
		}
	case len(o.PromptMix) > 0:
		for i, n := range o.PromptMix {
			prompts = append(prompts, prompt{size: n, seed: o.Seed + uint64(i)})
		}
	default:
		prompts = []prompt{{size: o.PromptBytes, seed: o.Seed}}
	}
	for _, p := range prompts {
		for v := range w.variants {
			pii := ""
			if v > 0 {
				pii = piiSnippets[v-1]
			}
			t, err := w.build(o, p, pii)
			if err != nil {
				return nil, err
			}
			w.tmpls = append(w.tmpls, t)
			w.maxBody = max(w.maxBody, len(t.b))
		}
	}
	return w, nil
}

// Key returns the body key of request i (see Workload).
func (w *Workload) Key(i uint64) uint64 {
	if w.repeatShare >= 1 { // every request repeats an earlier one: all repeat the first
		return 0
	}
	// Following a repeat to the request it copies is deterministic per index, so the chain
	// always ends at the same fresh request; the bound only stops pathological shares.
	for range 64 {
		if i == 0 || unit(mix(i^w.seed^0x5bd1e995)) >= w.repeatShare {
			return i
		}
		i -= 1 + mix(i^w.seed^0x27d4eb2f)%min(i, repeatWindow)
	}
	return i
}

// Body appends the body for key in run to dst and returns it. The run changes only the nonce
// that makes each key's body unique: the same key gets the same prompt in every run, and no two
// runs (rounds, targets, invocations) send the same body, which a cache in the target would
// answer. Repeats within a run (see Key) stay exact repeats.
func (w *Workload) Body(dst []byte, key, run uint64) []byte {
	h := mix(key ^ w.seed)
	t := &w.tmpls[int(h%uint64(len(w.tmpls)/w.variants))*w.variants+w.variant(key)]
	dst = append(dst, t.b...)
	if t.nonce >= 0 {
		putNonce(dst[len(dst)-len(t.b)+t.nonce:], key^mix(run))
	}
	return dst
}

// MaxBody returns the size of the largest body, for sizing buffers.
func (w *Workload) MaxBody() int { return w.maxBody }

func (w *Workload) variant(key uint64) int {
	h := mix(key ^ w.seed ^ 0x9e3779b9)
	if unit(h) >= w.piiShare {
		return 0
	}
	return 1 + int(h>>8)%(w.variants-1)
}

// prompt is one prompt source: generated text of a size, text from a prompts file, or a
// whole messages array from a prompts file.
type prompt struct {
	size     int
	seed     uint64
	text     string
	messages []map[string]any
}

// promptPrefix is what build puts before a prompt's text: the nonce placeholder, then pii.
func promptPrefix(pii string) string { return "Request " + nonceMark + ". " + pii }

// minPromptBytes is the smallest generated prompt that holds its prefix: with a piiShare, the
// longest PII snippet too. A smaller size would come out larger than asked for.
func minPromptBytes(piiShare float64) int {
	n := len(promptPrefix(""))
	if piiShare > 0 {
		for _, pii := range piiSnippets {
			n = max(n, len(promptPrefix(pii)))
		}
	}
	return n
}

// build renders the body for p with the nonce placeholder and pii inserted up front.
func (w *Workload) build(o *Options, p prompt, pii string) (template, error) {
	prefix := promptPrefix(pii)
	text, msgs := p.text, p.messages
	if msgs != nil {
		// Mark the last user message that has text: a string content, or the first text part
		// of a content array. A line without one gets identical bodies every time. Embeddings
		// embed that text, marked the same way.
		msgs = cloneMessages(msgs)
		for i := len(msgs) - 1; i >= 0; i-- {
			if msgs[i]["role"] != "user" {
				continue
			}
			if c, t, ok := markContent(msgs[i]["content"], prefix); ok {
				msgs[i]["content"], text = c, t
				break
			}
		}
	} else if p.size > 0 {
		// Generated prompts are exactly size bytes, prefix included.
		text = prefix + filler(max(0, p.size-len(prefix)), p.seed)
	} else {
		text = prefix + text
	}
	var body any
	switch w.Kind {
	case Embeddings:
		body = struct {
			Model string `json:"model"`
			Input string `json:"input"`
		}{o.Model, text}
	default:
		if msgs == nil {
			msgs = []map[string]any{{"role": "user", "content": text}}
		}
		body = struct {
			Model       string           `json:"model"`
			Messages    []map[string]any `json:"messages"`
			MaxTokens   int              `json:"max_tokens,omitempty"`
			Temperature float64          `json:"temperature"`
			Stream      bool             `json:"stream,omitempty"`
		}{o.Model, msgs, o.MaxTokens, 0, w.Kind == ChatStream}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // prompts reach the server as written
	if err := enc.Encode(body); err != nil {
		return template{}, err
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return template{b: b, nonce: bytes.Index(b, []byte(nonceMark))}, nil
}

// markContent returns a message content with prefix before its text, and that text: a string
// content, or the first {"type": "text"} part of a content array (the parts are copied, as
// templates share them). ok is false when the content has no text.
func markContent(content any, prefix string) (marked any, text string, ok bool) {
	switch c := content.(type) {
	case string:
		return prefix + c, prefix + c, true
	case []any:
		for j, part := range c {
			m, _ := part.(map[string]any)
			if t, isText := m["text"].(string); isText && m["type"] == "text" {
				m = maps.Clone(m)
				m["text"] = prefix + t
				parts := slices.Clone(c)
				parts[j] = m
				return parts, prefix + t, true
			}
		}
	}
	return content, "", false
}

func cloneMessages(msgs []map[string]any) []map[string]any {
	out := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		out[i] = make(map[string]any, len(m))
		for k, v := range m {
			out[i][k] = v
		}
	}
	return out
}

// readPrompts reads a JSONL file whose lines are {"prompt": "..."}, {"messages": [...]} or a
// bare messages array.
func readPrompts(path string) ([]prompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []prompt
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\ufeff")) // a byte order mark some editors write
		}
		if len(b) == 0 {
			continue
		}
		var p prompt
		if b[0] == '[' {
			err = json.Unmarshal(b, &p.messages)
		} else {
			var v struct {
				Prompt   *string          `json:"prompt"`
				Messages []map[string]any `json:"messages"`
			}
			if err = json.Unmarshal(b, &v); err == nil {
				switch {
				case v.Prompt != nil:
					p.text = *v.Prompt
				case len(v.Messages) > 0:
					p.messages = v.Messages
				default:
					err = errors.New(`want "prompt" or "messages"`)
				}
			}
		}
		const want = `want {"prompt": "..."}, {"messages": [{"role": ..., "content": ...}]} or a messages array`
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			// encoding/json names Go types here ("Go value of type struct { Prompt *string ...").
			at := ""
			if te.Field != "" {
				at = fmt.Sprintf(" in %q", te.Field)
			}
			err = fmt.Errorf("a JSON %s%s; %s", te.Value, at, want)
		case errors.As(err, &se): // a file of plain-text prompts, one a line
			err = fmt.Errorf("not JSON (%v); %s", err, want)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no prompts", path)
	}
	return out, nil
}

var fillerWords = strings.Fields(`the of and to in is was that for on with as by at from this
an be are or which have has one had not but what all were when we there can more if no so about
into than them some could time these two may then do first any my now such like our over man
me even most made after also did many before must through back years where much your way well
down should because each just those people how too little state good very make world still own
see men work long get here between both life being under never day same another know while last
might us great old year off come since against go came right used take three model river cloud`)

// filler returns n bytes of deterministic, JSON-safe word salad seeded by seed.
func filler(n int, seed uint64) string {
	var sb strings.Builder
	sb.Grow(n + 16)
	h := seed
	for sb.Len() < n {
		h = mix(h + 1)
		sb.WriteString(fillerWords[h%uint64(len(fillerWords))])
		if h>>60 == 0 {
			sb.WriteString(". ")
		} else {
			sb.WriteByte(' ')
		}
	}
	return sb.String()[:n]
}

// putNonce writes key as nonceLen letters a..p (4 bits each) over dst[:nonceLen].
func putNonce(dst []byte, key uint64) {
	for i := nonceLen - 1; i >= 0; i-- {
		dst[i] = 'a' + byte(key&15)
		key >>= 4
	}
}

// mix is splitmix64's finaliser: a cheap, well-spread hash of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// unit maps h to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }
