package guard

import (
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

//go:embed rules/default.yaml
var defaultSafetyRules []byte

// DefaultSafetyRules returns a copy of the built-in rule set, to extend or edit.
func DefaultSafetyRules() []byte {
	return append([]byte(nil), defaultSafetyRules...)
}

// RuleError is a problem in a safety rule file.
type RuleError struct {
	Line int    // 1-based; 0 when unknown
	Rule string // rule id, when known
	Msg  string
}

// Error formats e as "guard: safety rules: line N: rule "id": msg".
func (e *RuleError) Error() string {
	var b strings.Builder
	b.WriteString("guard: safety rules: ")
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Rule != "" {
		b.WriteString("rule ")
		b.WriteString(strconv.Quote(e.Rule))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ruleSpec is one rule as written.
type ruleSpec struct {
	id, cat       string
	sev           Severity
	phrases, near []phraseSpec
	unless        []phraseSpec
	unlessNext    []phraseSpec
	unlessPrev    []phraseSpec
	within        int
	unlessWithin  int
	order         uint8
	line          int
}

type phraseSpec struct {
	text string
	line int
}

const (
	defaultWithin       = 8
	defaultUnlessWithin = 10
	maxWithin           = 64
)

// ruleParser walks the YAML tree; the first problem stops it.
type ruleParser struct {
	err    *RuleError
	ruleID string                  // id of the rule being read, for errors
	sets   map[string][]phraseSpec // named phrase lists, used as "$name"
}

func (p *ruleParser) fail(n ast.Node, format string, args ...any) {
	if p.err == nil {
		p.err = &RuleError{Line: ruleLine(n), Rule: p.ruleID, Msg: fmt.Sprintf(format, args...)}
	}
}

func ruleLine(n ast.Node) int {
	if n == nil || n.GetToken() == nil {
		return 0
	}
	return n.GetToken().Position.Line
}

// parseSafetyRules reads a rule file strictly: unknown keys, wrong types, duplicate ids and
// unknown categories are errors.
func parseSafetyRules(data []byte) ([]ruleSpec, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		e := &RuleError{Msg: err.Error()}
		var ye yaml.Error
		if errors.As(err, &ye) {
			e.Msg = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil {
				e.Line = tk.Position.Line
			}
		}
		return nil, e
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nil, &RuleError{Msg: "want one YAML document with a categories mapping"}
	}
	p := ruleParser{sets: map[string][]phraseSpec{}}
	var specs []ruleSpec
	var categories ast.Node
	ids := map[string]bool{}
	p.mapping(f.Docs[0].Body, func(key string, k, v ast.Node) {
		switch key {
		case "version":
			if s, ok := p.scalar(v); ok && s != "1" {
				p.fail(v, "version %s: only version 1 is known", s)
			}
		case "sets":
			p.mapping(v, func(name string, k, v ast.Node) {
				if !validSetName(name) {
					p.fail(k, "set name %q: want lower-case letters, digits and _", name)
					return
				}
				p.sets[name] = p.phrases(v)
			})
		case "categories":
			categories = v
		default:
			p.fail(k, "unknown key %q (want version, sets, categories)", key)
		}
	})
	if categories != nil && p.err == nil {
		p.mapping(categories, func(name string, k, v ast.Node) {
			code, msg := categoryCode(name)
			if msg != "" {
				p.fail(k, "%s", msg)
				return
			}
			p.sequence(v, func(n ast.Node) {
				r := p.rule(n, code)
				if p.err != nil {
					return
				}
				if ids[r.id] {
					p.fail(n, "duplicate rule id")
					return
				}
				ids[r.id] = true
				specs = append(specs, r)
			})
		})
	}
	if p.err != nil {
		return nil, p.err
	}
	if len(specs) == 0 {
		return nil, &RuleError{Msg: "no rules"}
	}
	return specs, nil
}

// rule reads one rule mapping.
func (p *ruleParser) rule(n ast.Node, cat string) ruleSpec {
	r := ruleSpec{cat: cat, sev: SeverityMedium, within: defaultWithin, unlessWithin: defaultUnlessWithin, line: ruleLine(n)}
	p.ruleID = ""
	if m, ok := n.(ast.MapNode); ok { // the id first, so that errors can name the rule
		for it := m.MapRange(); it.Next(); {
			if name, ok := ruleKeyName(it.Key()); ok && name == "id" {
				p.ruleID, _ = p.scalar(it.Value())
			}
		}
	}
	withinSet, unlessWithinSet := false, false
	p.mapping(n, func(key string, k, v ast.Node) {
		switch key {
		case "id":
			r.id, _ = p.scalar(v)
			if !validRuleID(r.id) {
				p.fail(v, "id %q: want letters, digits, '-', '_' or '.'", r.id)
			}
		case "severity":
			s, _ := p.scalar(v)
			switch s {
			case "low":
				r.sev = SeverityLow
			case "medium":
				r.sev = SeverityMedium
			case "high":
				r.sev = SeverityHigh
			default:
				p.fail(v, "severity %q: want low, medium or high", s)
			}
		case "phrases":
			r.phrases = p.phrases(v)
		case "near":
			r.near = p.phrases(v)
		case "unless":
			r.unless = p.phrases(v)
		case "unless_next":
			r.unlessNext = p.phrases(v)
		case "unless_prev":
			r.unlessPrev = p.phrases(v)
		case "within":
			r.within, withinSet = p.words(v, key), true
		case "unless_within":
			r.unlessWithin, unlessWithinSet = p.words(v, key), true
		case "order":
			s, _ := p.scalar(v)
			switch s {
			case "any":
				r.order = orderAny
			case "near_first":
				r.order = orderNearFirst
			case "near_last":
				r.order = orderNearLast
			default:
				p.fail(v, "order %q: want any, near_first or near_last", s)
			}
		default:
			p.fail(k, "unknown key %q (want id, severity, phrases, near, within, order, unless, unless_within, unless_next, unless_prev)", key)
		}
	})
	switch {
	case p.err != nil:
	case r.id == "":
		p.fail(n, "rule without an id")
	case len(r.phrases) == 0:
		p.fail(n, "rule without phrases")
	case len(r.near) == 0 && (withinSet || r.order != orderAny):
		p.fail(n, "within and order need near")
	case len(r.unless) == 0 && unlessWithinSet:
		p.fail(n, "unless_within needs unless")
	}
	return r
}

// words reads a word distance.
func (p *ruleParser) words(n ast.Node, key string) int {
	s, _ := p.scalar(n)
	w, err := strconv.Atoi(s)
	if err != nil || w < 0 || w > maxWithin {
		p.fail(n, "%s %q: want a number of words from 0 to %d", key, s, maxWithin)
	}
	return w
}

func validSetName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validRuleID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// phrases reads a list of phrases (or a single one); "$name" stands for the phrases of a set.
func (p *ruleParser) phrases(n ast.Node) []phraseSpec {
	var out []phraseSpec
	read := func(n ast.Node) {
		s, ok := p.scalar(n)
		switch {
		case !ok:
		case strings.HasPrefix(s, "$"):
			set, ok := p.sets[s[1:]]
			if !ok {
				p.fail(n, "unknown set %q", s)
			}
			out = append(out, set...)
		case strings.TrimSpace(s) == "":
			p.fail(n, "empty phrase")
		default:
			out = append(out, phraseSpec{s, ruleLine(n)})
		}
	}
	if _, ok := n.(*ast.SequenceNode); ok {
		p.sequence(n, read)
	} else {
		read(n)
	}
	return out
}

// scalar returns the text of a scalar node.
func (p *ruleParser) scalar(n ast.Node) (string, bool) {
	if msg := ruleUnsupported(n); msg != "" {
		p.fail(n, "%s", msg)
		return "", false
	}
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return n.GetToken().Value, true
	case nil, *ast.NullNode:
		p.fail(n, "missing value")
	default:
		p.fail(n, "want a single value, got %s", n.Type())
	}
	return "", false
}

// mapping calls fn for each key of the mapping n.
func (p *ruleParser) mapping(n ast.Node, fn func(key string, k, v ast.Node)) {
	if msg := ruleUnsupported(n); msg != "" {
		p.fail(n, "%s", msg)
		return
	}
	m, ok := n.(ast.MapNode)
	if !ok {
		p.fail(n, "want a mapping, got %s", ruleNodeType(n))
		return
	}
	seen := map[string]bool{}
	for it := m.MapRange(); it.Next() && p.err == nil; {
		k := it.Key()
		name, ok := ruleKeyName(k)
		switch {
		case ruleUnsupported(k) != "":
			p.fail(k, "%s", ruleUnsupported(k))
		case !ok:
			p.fail(k, "key %q is not a string", name)
		case seen[name]:
			p.fail(k, "duplicate key %q", name)
		default:
			seen[name] = true
			fn(name, k, it.Value())
		}
	}
}

// sequence calls fn for each item of the list n.
func (p *ruleParser) sequence(n ast.Node, fn func(ast.Node)) {
	if msg := ruleUnsupported(n); msg != "" {
		p.fail(n, "%s", msg)
		return
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		p.fail(n, "want a list, got %s", ruleNodeType(n))
		return
	}
	for _, v := range seq.Values {
		if p.err != nil {
			return
		}
		fn(v)
	}
}

func ruleNodeType(n ast.Node) string {
	if n == nil {
		return "nothing"
	}
	return n.Type().String()
}

// ruleKeyName returns the text of a map key and whether it is a string.
func ruleKeyName(k ast.MapKeyNode) (string, bool) {
	var n ast.Node = k
	if mk, ok := n.(*ast.MappingKeyNode); ok {
		n = mk.Value
	}
	if s, ok := n.(*ast.StringNode); ok {
		return s.Value, true
	}
	if n == nil || n.GetToken() == nil {
		return "", false
	}
	return n.GetToken().Value, false
}

// ruleUnsupported refuses the YAML features goccy's decoder handles worst (a bare "!" tag
// panics it) and that a rule file does not need.
func ruleUnsupported(n ast.Node) string {
	if n == nil {
		return ""
	}
	switch n.Type() {
	case ast.AnchorType, ast.AliasType:
		return "anchors and aliases (&name, *name) are not supported"
	case ast.MergeKeyType:
		return "merge keys (<<) are not supported"
	case ast.TagType:
		return "tags (!name) are not supported; quote the value"
	}
	return ""
}

// categoryCode checks a category key: a hazard code S1-S14 or its name (stored as the code),
// one of the three attack categories, or a custom snake_case name.
func categoryCode(name string) (string, string) {
	for i, n := range hazardNames {
		if name == n || name == hazardCodes[i] {
			return hazardCodes[i], ""
		}
	}
	if len(name) > 1 && (name[0] == 'S' || name[0] == 's') && strings.Trim(name[1:], "0123456789") == "" {
		return "", fmt.Sprintf("unknown hazard category %q (want S1 to S14)", name)
	}
	if name == "" || len(name) > 64 || name[0] < 'a' || name[0] > 'z' {
		return "", fmt.Sprintf("category %q: want S1 to S14 or a snake_case name", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "", fmt.Sprintf("category %q: want S1 to S14 or a snake_case name", name)
		}
	}
	return name, ""
}
