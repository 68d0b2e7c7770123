package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Load reads and parses the YAML file at path. Errors name the file and line. As with Parse,
// a Config may come back with the errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(data, path)
}

// Parse decodes one YAML document strictly: unknown keys, values of the wrong type and bad
// durations ("2s", "10m") are errors naming the line and key. It neither applies defaults nor
// validates; see Config for the usual sequence. When the file is YAML, the Config comes back
// with the error too, without the keys and values it could not read (which take their
// defaults, and of which Validate says nothing more), so that a caller can validate it and
// report every problem at once; otherwise it is nil.
func Parse(data []byte) (*Config, error) {
	return parse(data, "")
}

func parse(data []byte, file string) (*Config, error) {
	src := source{file: file, lines: map[string]int{}}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, src.yamlError(err, nil)
	}
	var c Config
	if len(f.Docs) == 0 || f.Docs[0].Body == nil {
		c.src = src
		return &c, nil
	}
	for _, d := range f.Docs[1:] {
		if d.Body != nil {
			return nil, &Error{File: file, Line: d.Body.GetToken().Position.Line, Msg: "more than one YAML document"}
		}
	}
	body := f.Docs[0].Body

	// Our own walk first: goccy's strict mode reports unknown keys without the path, silently
	// drops non-string keys and returns bad durations without a position. The walk follows the
	// Config type, so it also records the line of every key for Validate.
	w := walker{src: &src, keyAt: map[token.Position]string{}, bad: map[ast.Node]bool{}}
	w.walk(body, reflect.TypeFor[Config](), "")
	if len(w.errs) > 0 {
		// The values the walk could not read are left out (their keys take their defaults),
		// so the rest decodes, and a Config comes back with the errors so that Validate can
		// report the rest of the file's problems at once too: stopped at one unreadable
		// value, the user fixed one error per run.
		if w.bad[body] || !prune(body, w.bad) || !decodeLenient(body, &c) {
			return nil, errors.Join(w.errs...)
		}
		c.src = src
		return &c, errors.Join(w.errs...)
	}
	// goccy decodes and type-checks scalars; Strict stays on as a second line of defence.
	if err := yaml.NodeToValue(body, &c, yaml.Strict()); err != nil {
		return nil, src.yamlError(err, w.keyAt)
	}
	c.src = src
	return &c, nil
}

// prune leaves the bad nodes out of the tree at n: a bad value becomes null, as if the key
// were left out, and an entry with a bad key goes. It reports whether it could: a bad node it
// cannot take out leaves the tree undecodable.
func prune(n ast.Node, bad map[ast.Node]bool) bool {
	null := func(at ast.Node) ast.Node { return ast.Null(token.New("null", "null", at.GetToken().Position)) }
	switch n := n.(type) {
	case *ast.MappingNode:
		kept := n.Values[:0]
		for _, mv := range n.Values {
			if !bad[mv.Key] {
				kept = append(kept, mv)
			}
		}
		n.Values = kept
		for _, mv := range n.Values {
			if !prune(mv, bad) {
				return false
			}
		}
	case *ast.MappingValueNode:
		if bad[n.Key] {
			return false // a mapping of one entry, whose key is bad: nothing to keep it as
		}
		if bad[n.Value] {
			n.Value = null(n.Value)
			return true
		}
		return prune(n.Value, bad)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			if bad[v] {
				n.Values[i] = null(v)
			} else if !prune(v, bad) {
				return false
			}
		}
	}
	return true
}

// decodeLenient decodes body into c skipping unknown keys, and reports whether it could.
func decodeLenient(body ast.Node, c *Config) (ok bool) {
	defer func() {
		if recover() != nil { // goccy panics on some input the walk did not look into
			ok = false
		}
	}()
	return yaml.NodeToValue(body, c) == nil
}

// walker checks a YAML tree against a Go type and records key lines.
type walker struct {
	src   *source
	keyAt map[token.Position]string // value token position -> key path, to place goccy's errors
	errs  []error
	// bad holds the nodes the walk could not read (values, and keys of entries), which
	// prune leaves out before the tree is decoded for Validate.
	bad map[ast.Node]bool
}

var durationType = reflect.TypeFor[time.Duration]()

func (w *walker) fail(n ast.Node, key, format string, args ...any) {
	w.note(n, key, format, args...)
	w.unreadable(n, key)
}

// unreadable records that n, the value of key, cannot be read: it is left out of the decoded
// Config, so key takes its default, and Validate says nothing of key, whose error is said.
func (w *walker) unreadable(n ast.Node, key string) {
	w.bad[n] = true
	delete(w.src.lines, key)
	if w.src.unreadable == nil {
		w.src.unreadable = map[string]bool{}
	}
	w.src.unreadable[key] = true
}

// note records a problem after which the tree still decodes (see fatal).
func (w *walker) note(n ast.Node, key, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.src.file, Line: n.GetToken().Position.Line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// walk visits n, which is to be decoded into a value of type t at key.
func (w *walker) walk(n ast.Node, t reflect.Type, key string) {
	if isNull(n) {
		return
	}
	if msg := unsupported(n); msg != "" {
		w.fail(n, key, "%s", msg)
		return
	}
	w.keyAt[*n.GetToken().Position] = key
	switch {
	case t.Kind() == reflect.Pointer: // optional sections
		w.walk(n, t.Elem(), key)
	case t == durationType:
		s, ok := n.(*ast.StringNode)
		switch {
		case !ok && (n.Type() == ast.IntegerType || n.Type() == ast.FloatType):
			w.fail(n, key, "%s", durationProblem(n.GetToken().Value))
		case !ok:
			w.fail(n, key, "want a duration such as \"2s\", got %s", describeNode(n.Type(), n.GetToken()))
		default:
			if _, err := time.ParseDuration(s.Value); err != nil {
				w.fail(n, key, "%s", durationProblem(s.Value))
			}
		}
	case t.Kind() == reflect.String || t.Kind() == reflect.Bool || isInteger(t.Kind()):
		// Decode the scalar on its own, as goccy will decode the whole tree, so that every
		// value of the wrong type is reported at once: goccy stops at the first.
		if err := yaml.NodeToValue(n, reflect.New(t).Interface(), yaml.Strict()); err != nil {
			if e, ok := w.src.yamlError(err, nil).(*Error); ok {
				e.Key, e.Line = key, n.GetToken().Position.Line
				w.errs = append(w.errs, e)
				w.unreadable(n, key)
				return
			}
		}
		if t.Kind() != reflect.String {
			return
		}
		// goccy turns a number into its canonical text, so "version: 1.10" would become "1.1"
		// and "0x1F" "31". Refuse rather than serve a name the user never wrote.
		if text, ok := scalarText(n); ok && text != n.GetToken().Value {
			w.note(n, key, "%s reads as %s; quote it to keep the text: \"%s\"", n.GetToken().Value, text, n.GetToken().Value)
		}
	case t.Kind() == reflect.Struct:
		w.mapping(n, t, key)
	case t.Kind() == reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			w.fail(n, key, "want a list, got %s", describeNode(n.Type(), n.GetToken()))
			return
		}
		for i, v := range seq.Values {
			child := indexKey(key, i)
			if !isNull(v) {
				w.src.lines[child] = v.GetToken().Position.Line
			}
			w.walk(v, t.Elem(), child)
		}
	}
}

// mapping checks the keys of n against the yaml tags of struct type t.
func (w *walker) mapping(n ast.Node, t reflect.Type, key string) {
	m, ok := n.(ast.MapNode)
	if !ok {
		w.fail(n, key, "want a mapping, got %s", describeNode(n.Type(), n.GetToken()))
		return
	}
	for it := m.MapRange(); it.Next(); {
		k := it.Key()
		if msg := unsupported(k); msg != "" {
			w.note(k, key, "%s", msg)
			w.bad[k] = true // the entry is left out
			continue
		}
		name, isString := keyName(k)
		field, known := structField(t, name)
		if !isString || !known {
			switch hint, near := elsewhere[name], nearestKey(t, name); {
			case !isString:
				w.note(k, key, "unknown key %q", name) // goccy would drop it without a word
				w.bad[k] = true                        // the entry is left out
			case t == reflect.TypeFor[Model]() && hint != "":
				w.note(k, key, "unknown key %q: %s", name, hint)
			case near != "":
				w.note(k, key, "unknown key %q; did you mean %q?", name, near)
				if w.src.misspelt == nil {
					w.src.misspelt = map[string]bool{}
				}
				w.src.misspelt[childKey(key, near)] = true
			default:
				w.note(k, key, "unknown key %q", name)
			}
			continue
		}
		child := childKey(key, name)
		if !isNull(it.Value()) {
			// A null value ("timeouts:") means "left out", so defaults still apply to it.
			w.src.lines[child] = k.GetToken().Position.Line
		}
		w.walk(it.Value(), field.Type, child)
	}
}

// elsewhere explains, for keys of a model that users expect in the file, where that setting
// lives instead: the split and the shadow are deploy state, changed through the admin API.
var elsewhere = map[string]string{
	"traffic":        "a canary split is not set in the file; once serving, run llmgate admin traffic ALIAS --stable V --canary V --percent P",
	"canary":         "a canary split is not set in the file; once serving, run llmgate admin traffic ALIAS --stable V --canary V --percent P",
	"canary_percent": "a canary split is not set in the file; once serving, run llmgate admin traffic ALIAS --stable V --canary V --percent P",
	"shadow":         "shadow traffic is not set in the file; once serving, run llmgate admin shadow ALIAS VERSION --percent P",
}

// keyName returns the text of a map key and whether it is a string (only string keys can
// name a field; goccy silently drops the others).
func keyName(k ast.MapKeyNode) (string, bool) {
	var n ast.Node = k
	if mk, ok := n.(*ast.MappingKeyNode); ok {
		n = mk.Value
	}
	if s, ok := n.(*ast.StringNode); ok {
		return s.Value, true
	}
	if n == nil {
		return "", false
	}
	return n.GetToken().Value, false
}

// scalarText returns the text goccy would store in a string field for a non-string scalar.
func scalarText(n ast.Node) (string, bool) {
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		switch v := n.(ast.ScalarNode).GetValue().(type) {
		case int64:
			return strconv.FormatInt(v, 10), true
		case uint64:
			return strconv.FormatUint(v, 10), true
		case float64:
			return fmt.Sprint(v), true
		case bool:
			return strconv.FormatBool(v), true
		}
	}
	return "", false
}

// structField finds the exported field of t whose yaml tag is name.
func structField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// nearestKey returns the key of struct type t that name most likely misspells: the same but for
// case, "-" or "_" (firstByte, first-byte), or the one nearest by edit distance, within 1 for
// short names and 2 for longer ones; "" when none is that near, or two are equally near.
func nearestKey(t reflect.Type, name string) string {
	fold := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	limit := 1
	if len(name) > 5 {
		limit = 2
	}
	best, bestDist, tie := "", limit+1, false
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		if fold(tag) == fold(name) {
			return tag
		}
		switch d := editDistance(tag, name); {
		case d < bestDist:
			best, bestDist, tie = tag, d, false
		case d == bestDist:
			tie = true
		}
	}
	if tie {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unsupported explains why n is refused, or returns "". Plain YAML is enough for a short
// file, and these features are where goccy's decoder is weakest (a bare "!" tag panics it).
// An aliased value would also have no lines or "written" keys of its own, so "weight: 0"
// behind an alias would be defaulted to 1.
func unsupported(n ast.Node) string {
	switch n.Type() {
	case ast.AnchorType, ast.AliasType:
		return "anchors and aliases (&name, *name) are not supported; write the value out"
	case ast.MergeKeyType:
		return "merge keys (<<) are not supported; write the keys out"
	case ast.TagType:
		return "tags (!name) are not supported; quote a value to make it a string"
	}
	return ""
}

// durationProblem explains why s is not a duration; a bare number is missing its unit.
func durationProblem(s string) string {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return fmt.Sprintf("%q has no unit; write %q for seconds (or ms, m, h)", s, s+"s")
	}
	return fmt.Sprintf("want a duration such as \"2s\", got %q", s)
}

// isInteger reports whether k is one of Go's integer kinds.
func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// isNull reports whether n is absent or null: a key left for defaults.
func isNull(n ast.Node) bool {
	return n == nil || n.Type() == ast.NullType
}

// yamlError turns a goccy error into an *Error, naming the key when keyAt knows the token.
func (s *source) yamlError(err error, keyAt map[token.Position]string) error {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		// goccy returns a few plain errors (a bad duration, a missing anchor); the walk
		// catches those cases first, so this is a fallback without a position.
		return &Error{File: s.file, Msg: err.Error()}
	}
	e := &Error{File: s.file, Msg: ye.GetMessage()}
	switch m := duplicateKeyRE.FindStringSubmatch(e.Msg); {
	case m != nil:
		e.Msg = fmt.Sprintf("duplicate key %s (first on line %s); keep one", m[1], m[2])
	case strings.Contains(e.Msg, "'\t'"):
		e.Msg = "a tab indents this line; YAML indents with spaces only"
	}
	tk := ye.GetToken()
	if tk == nil {
		return e
	}
	e.Line = tk.Position.Line
	e.Key = keyAt[*tk.Position]
	var te *yaml.TypeError
	if errors.As(err, &te) {
		e.Msg = fmt.Sprintf("want %s, got %s", describe(te.DstType), describeSrc(te.SrcType, tk))
	}
	var ue *yaml.UnexpectedNodeTypeError
	if errors.As(err, &ue) {
		e.Msg = fmt.Sprintf("want %s, got %s", describeNode(ue.Expected, nil), describeNode(ue.Actual, tk))
	}
	var oe *yaml.OverflowError
	if errors.As(err, &oe) {
		e.Msg = fmt.Sprintf("%s is too large for %s", oe.SrcNum, describe(oe.DstType))
	}
	return e
}

// duplicateKeyRE matches goccy's message for a key given twice in one mapping.
var duplicateKeyRE = regexp.MustCompile(`^mapping key ("(?:[^"\\]|\\.)*") already defined at \[(\d+):\d+\]$`)

// describe names a destination type in the user's terms, not Go's.
func describe(t reflect.Type) string {
	if t == durationType {
		return `a duration such as "2s"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return t.String()
}

// describeSrc names what the file held: collections by kind, scalars by their text.
func describeSrc(t reflect.Type, tk *token.Token) string {
	if t != nil {
		switch t.Kind() {
		case reflect.Slice:
			return "a list"
		case reflect.Map, reflect.Struct:
			return "a mapping"
		}
	}
	return fmt.Sprintf("%q", tk.Value)
}

// describeNode names what the file held: collections by kind, scalars by their text.
func describeNode(t ast.NodeType, tk *token.Token) string {
	switch t {
	case ast.SequenceType:
		return "a list"
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	}
	if tk == nil {
		return t.YAMLName()
	}
	return strconv.Quote(tk.Value)
}
