package guard

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestRulesCustom(t *testing.T) {
	rules := `
version: 1
categories:
  competitors:
    - id: acme
      severity: low
      phrases: [acme corp, "acme (inc|ltd)"]
  violent_crimes:            # a hazard by name is stored as its code
    - id: near-rule
      phrases: [(punch|kick)]
      near: [my neighbor]
      within: 2
      order: near_last
      unless: [$fiction]
sets:                        # sets may come after the categories that use them
  fiction: [in the game, in my novel]
`
	s, err := NewSafety(SafetyOptions{Rules: []byte(rules)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text  string
		rules []string
	}{
		{"we beat ACME Corp last year", []string{"acme"}},
		{"Acme, Ltd. and acme inc", []string{"acme", "acme"}},
		{"how do I punch my neighbor", []string{"near-rule"}},
		{"how do I punch him, my neighbor", []string{"near-rule"}},
		{"how do I punch the sad old man, my neighbor", nil},             // too far apart
		{"my neighbor wants to punch", nil},                              // wrong order
		{"in the game, how do I punch my neighbor", nil},                 // unless phrase before
		{"how do I kick my neighbor in the game", []string{"near-rule"}}, // unless only looks back
	}
	for _, tt := range tests {
		var got []string
		for _, m := range s.Check(nil, []byte(tt.text)) {
			got = append(got, m.Rule)
			if m.Rule == "near-rule" && m.Category != "S1" {
				t.Errorf("category %q, want S1", m.Category)
			}
		}
		if !slices.Equal(got, tt.rules) {
			t.Errorf("Check(%q) rules %v, want %v", tt.text, got, tt.rules)
		}
	}
}

func TestRulesNearSpan(t *testing.T) {
	s, err := NewSafety(SafetyOptions{Rules: []byte(`
categories:
  x:
    - id: r
      phrases: [blue]
      near: [red]
      within: 3
`)})
	if err != nil {
		t.Fatal(err)
	}
	text := "a red and a blue"
	ms := s.Check(nil, []byte(text))
	if len(ms) != 1 || text[ms[0].Start:ms[0].End] != "red and a blue" {
		t.Errorf("Check(%q) = %v, want one match over both phrases", text, ms)
	}
}

func TestRulesSegments(t *testing.T) {
	// Eight groups of four choices stand for 65536 phrases; they are matched in segments.
	g := "(a1|b1|c1|d1)"
	var parts []string
	for i := range 8 {
		parts = append(parts, strings.ReplaceAll(g, "1", string(rune('a'+i))))
	}
	rules := "categories:\n  x:\n    - id: long\n      phrases: [\"" + strings.Join(parts, " ") + " (end|)\"]\n"
	s, err := NewSafety(SafetyOptions{Rules: []byte(rules)})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.pats) > 1000 {
		t.Errorf("%d patterns, want the segments' forms added, not multiplied", len(s.pats))
	}
	for _, tt := range []struct {
		text string
		want int
	}{
		{"aa ab ac ad ae af ag ah", 1},
		{"x da cb bc ad ae bf dg ch end y", 1}, // with and without the optional word: one match
		{"aa ab ac ad ae af ag", 0},
		{"aa ab ac ad zz ae af ag ah", 0},
	} {
		if got := len(s.Check(nil, []byte(tt.text))); got != tt.want {
			t.Errorf("Check(%q): %d matches, want %d", tt.text, got, tt.want)
		}
	}
}

func TestRulesErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		line       int
		rule, msg  string
	}{
		{"syntax", "categories: [", 1, "", ""},
		{"not a mapping", "- a\n- b\n", 1, "", "want a mapping"},
		{"unknown top key", "version: 1\nrules: {}\n", 2, "", `unknown key "rules"`},
		{"bad version", "version: 2\ncategories: {}\n", 1, "", "only version 1"},
		{"no rules", "categories: {}\n", 0, "", "no rules"},
		{"unknown hazard", "categories:\n  S15:\n    - id: a\n      phrases: [x]\n", 2, "", "S1 to S14"},
		{"bad category", "categories:\n  Bad-Name:\n    - id: a\n      phrases: [x]\n", 2, "", "snake_case"},
		{"unknown rule key", "categories:\n  x:\n    - id: a\n      phrase: [x]\n", 4, "a", `unknown key "phrase"`},
		{"missing id", "categories:\n  x:\n    - phrases: [x]\n", 3, "", "without an id"},
		{"bad id", "categories:\n  x:\n    - id: a b\n      phrases: [x]\n", 3, "a b", "want letters"},
		{"duplicate id", "categories:\n  x:\n    - id: a\n      phrases: [x]\n    - id: a\n      phrases: [y]\n", 5, "a", "duplicate rule id"},
		{"no phrases", "categories:\n  x:\n    - id: a\n      severity: low\n", 3, "a", "without phrases"},
		{"bad severity", "categories:\n  x:\n    - id: a\n      severity: extreme\n      phrases: [x]\n", 4, "a", "low, medium or high"},
		{"bad within", "categories:\n  x:\n    - id: a\n      phrases: [x]\n      near: [y]\n      within: 99\n", 6, "a", "0 to 64"},
		{"within without near", "categories:\n  x:\n    - id: a\n      phrases: [x]\n      within: 3\n", 3, "a", "need near"},
		{"bad order", "categories:\n  x:\n    - id: a\n      phrases: [x]\n      near: [y]\n      order: before\n", 6, "a", "near_first"},
		{"empty phrase", "categories:\n  x:\n    - id: a\n      phrases: ['  ']\n", 4, "a", "empty phrase"},
		{"punctuation only", "categories:\n  x:\n    - id: a\n      phrases: ['ok', '?!']\n", 4, "a", "nothing left"},
		{"unbalanced", "categories:\n  x:\n    - id: a\n      phrases:\n        - (a|b\n", 5, "a", "without ')'"},
		{"nested", "categories:\n  x:\n    - id: a\n      phrases:\n        - ((a|b)|c)\n", 5, "a", "do not nest"},
		{"too many forms", "categories:\n  x:\n    - id: a\n      phrases:\n        - (a|b|c|d|e|f)(a|b|c|d|e|f)(a|b|c|d|e|f)(a|b|c|d|e|f)\n", 5, "a", "cannot be split"},
		{"too long", "categories:\n  x:\n    - id: a\n      phrases:\n        - " + strings.Repeat("word ", 30) + "\n", 5, "a", "too long"},
		{"phrase and near", "categories:\n  x:\n    - id: a\n      phrases: [x]\n      near: [x]\n", 5, "a", "two of phrases"},
		{"anchor", "categories:\n  x:\n    - id: a\n      phrases: &p [x]\n", 4, "a", "anchors"},
		{"tag", "categories:\n  x:\n    - id: a\n      phrases: [!x y]\n", 4, "a", "tags"},
		{"unknown set", "categories:\n  x:\n    - id: a\n      phrases: [$nope]\n", 4, "a", `unknown set "$nope"`},
		{"bad set name", "sets:\n  Bad: [x]\ncategories:\n  x:\n    - id: a\n      phrases: [x]\n", 2, "", "set name"},
		{"list for id", "categories:\n  x:\n    - id: [a]\n      phrases: [x]\n", 3, "", "single value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSafety(SafetyOptions{Rules: []byte(tt.yaml)})
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want a *RuleError", err, err)
			}
			if re.Line != tt.line || re.Rule != tt.rule || !strings.Contains(re.Msg, tt.msg) {
				t.Errorf("got line %d rule %q msg %q (%v), want line %d rule %q msg containing %q",
					re.Line, re.Rule, re.Msg, err, tt.line, tt.rule, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "guard: safety rules: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
		})
	}
}

func TestRulesDefault(t *testing.T) {
	specs, err := parseSafetyRules(DefaultSafetyRules())
	if err != nil {
		t.Fatal(err)
	}
	cats := map[string]bool{}
	for _, r := range specs {
		cats[r.cat] = true
	}
	for _, c := range append([]string{CategoryPromptInjection, CategoryJailbreak, CategorySystemPromptExtraction}, hazardCodes[:]...) {
		if !cats[c] {
			t.Errorf("default rules have no %s rule", c)
		}
	}
	d := DefaultSafetyRules()
	d[0] = '!'
	if DefaultSafetyRules()[0] == '!' {
		t.Error("DefaultSafetyRules returns the embedded bytes, not a copy")
	}
}
