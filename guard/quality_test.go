package guard_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/llmgate/llmgate/guard"
)

// The labelled corpus lives in testdata/ (see testdata/README.md). These tests hold the
// detectors to the quality bar of issue 3 and keep the corpus from silently shrinking.

const (
	piiCorpus    = "testdata/pii.jsonl"
	safetyCorpus = "testdata/safety.jsonl"

	minPrecision      = 0.95 // per PII entity type
	minRecall         = 0.95 // per PII entity type
	maxBenignFlagRate = 0.02 // safety: benign prompts flagged
	minDetectionRate  = 0.90 // safety: positives with any match

	minCases          = 600 // both files together
	minPositives      = 25  // expected values per entity type
	minPIINegatives   = 150 // PII cases with no entities
	minBenignPrompts  = 100 // safety cases labelled benign
	shortenTextToRune = 100 // how much of a failing case to print
)

// piiTypes are the entity types the corpus may use, in report order.
var piiTypes = []string{
	"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE",
	"IP_ADDRESS", "MAC_ADDRESS", "CRYPTO", "URL_CREDENTIALS", "SECRET",
}

// safetyCategories are the labels safety.jsonl may use, in report order.
var safetyCategories = []string{
	"prompt_injection", "jailbreak", "system_prompt_extraction",
	"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13", "S14",
	"benign",
}

type piiCase struct {
	Text     string      `json:"text"`
	Entities []piiEntity `json:"entities"`
	Note     string      `json:"note"`
	line     int
}

type piiEntity struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type safetyCase struct {
	Text     string `json:"text"`
	Category string `json:"category"`
	Note     string `json:"note"`
	line     int
}

// loadJSONL decodes one JSON object per non-empty line of path, rejecting unknown fields.
// setLine records the 1-based line number in each case.
func loadJSONL[T any](t *testing.T, path string, setLine func(*T, int)) []T {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var c T
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		setLine(&c, n)
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

func loadPII(t *testing.T) []piiCase {
	t.Helper()
	return loadPIIFile(t, piiCorpus)
}

// loadPIIFile loads a PII corpus in the format of pii.jsonl and checks each case.
func loadPIIFile(t *testing.T, path string) []piiCase {
	t.Helper()
	cases := loadJSONL(t, path, func(c *piiCase, n int) { c.line = n })
	for _, c := range cases {
		where := fmt.Sprintf("%s:%d", path, c.line)
		if c.Text == "" || c.Note == "" {
			t.Fatalf("%s: text and note must be set", where)
		}
		if c.Entities == nil {
			t.Fatalf("%s: entities must be present (use [] for a negative)", where)
		}
		for _, e := range c.Entities {
			if !slices.Contains(piiTypes, e.Type) {
				t.Fatalf("%s: unknown entity type %q", where, e.Type)
			}
			if e.Value == "" || !strings.Contains(c.Text, e.Value) {
				t.Fatalf("%s: %s value %q is not a substring of the text", where, e.Type, e.Value)
			}
		}
	}
	return cases
}

func loadSafety(t *testing.T) []safetyCase {
	t.Helper()
	cases := loadJSONL(t, safetyCorpus, func(c *safetyCase, n int) { c.line = n })
	for _, c := range cases {
		where := fmt.Sprintf("%s:%d", safetyCorpus, c.line)
		if c.Text == "" || c.Note == "" {
			t.Fatalf("%s: text and note must be set", where)
		}
		if !slices.Contains(safetyCategories, c.Category) {
			t.Fatalf("%s: unknown category %q", where, c.Category)
		}
	}
	return cases
}

// TestQualityCorpus checks that the corpus is well formed and keeps its size.
func TestQualityCorpus(t *testing.T) {
	pii := loadPII(t)
	safety := loadSafety(t)

	if n := len(pii) + len(safety); n < minCases {
		t.Errorf("corpus has %d cases, want >= %d", n, minCases)
	}
	positives := map[string]int{}
	negatives := 0
	for _, c := range pii {
		if len(c.Entities) == 0 {
			negatives++
		}
		for _, e := range c.Entities {
			positives[e.Type]++
		}
	}
	for _, typ := range piiTypes {
		if positives[typ] < minPositives {
			t.Errorf("%s has %d positives, want >= %d", typ, positives[typ], minPositives)
		}
	}
	if negatives < minPIINegatives {
		t.Errorf("pii corpus has %d negatives, want >= %d", negatives, minPIINegatives)
	}
	benign := 0
	for _, c := range safety {
		if c.Category == "benign" {
			benign++
		}
	}
	if benign < minBenignPrompts {
		t.Errorf("safety corpus has %d benign prompts, want >= %d", benign, minBenignPrompts)
	}

	seen := map[string]string{}
	for _, c := range pii {
		if prev, ok := seen[c.Text]; ok {
			t.Errorf("%s:%d duplicates %s", piiCorpus, c.line, prev)
		}
		seen[c.Text] = fmt.Sprintf("%s:%d", piiCorpus, c.line)
	}
	for _, c := range safety {
		if prev, ok := seen[c.Text]; ok {
			t.Errorf("%s:%d duplicates %s", safetyCorpus, c.line, prev)
		}
		seen[c.Text] = fmt.Sprintf("%s:%d", safetyCorpus, c.line)
	}
	t.Logf("corpus: %d PII cases (%d negatives), %d safety cases (%d benign)", len(pii), negatives, len(safety), benign)
}

// piiScore counts, for one entity type, expected values found (tp) and missed (fn), and
// findings that match an expected value (hits) or do not (fp).
type piiScore struct {
	tp, fn, hits, fp int
}

func (s piiScore) precision() float64 { return ratio(s.hits, s.hits+s.fp, 1) }
func (s piiScore) recall() float64    { return ratio(s.tp, s.tp+s.fn, 1) }

func ratio(a, b int, empty float64) float64 {
	if b == 0 {
		return empty
	}
	return float64(a) / float64(b)
}

type span struct{ start, end int }

func (s span) overlaps(start, end int) bool { return start < s.end && s.start < end }

// TestQualityPII measures precision and recall per entity type over testdata/pii.jsonl
// (see scorePII for how findings are scored).
func TestQualityPII(t *testing.T) {
	cases := loadPII(t)
	p, err := guard.NewPII(guard.PIIOptions{})
	if err != nil {
		t.Fatalf("NewPII: %v", err)
	}

	res := scorePII(t, p, cases, piiCorpus)
	t.Logf("PII quality over %d cases:\n%s", len(cases), res.table)
	var failed []string
	for _, typ := range res.types {
		s := res.scores[typ]
		if s.precision() < minPrecision || s.recall() < minRecall {
			failed = append(failed, typ)
		}
	}
	if len(failed) > 0 {
		t.Errorf("precision or recall below %.2f/%.2f for %s\n%s\nfailing cases:\n%s",
			minPrecision, minRecall, strings.Join(failed, ", "), res.table, strings.Join(res.failures, "\n"))
	} else if len(res.failures) > 0 {
		t.Logf("misses within the bar:\n%s", strings.Join(res.failures, "\n"))
	}
}

// piiResult is the PII detector's result over a labelled corpus.
type piiResult struct {
	scores   map[string]*piiScore // by entity type, one for every type in types
	types    []string             // piiTypes, then any type the detector invented
	table    string               // the per-type table
	failures []string             // every false positive and false negative, one a line
}

// scorePII runs p over cases (read from path) and scores every finding against the labels.
// A finding is a true positive when it has the expected type and overlaps an expected
// value; every other finding is a false positive. An expected value with no overlapping
// finding of its type is a false negative.
func scorePII(t *testing.T, p *guard.PII, cases []piiCase, path string) piiResult {
	t.Helper()
	scores := map[string]*piiScore{}
	score := func(typ string) *piiScore {
		if scores[typ] == nil {
			scores[typ] = &piiScore{}
		}
		return scores[typ]
	}
	var failures []string
	var found []guard.Finding
	for _, c := range cases {
		text := []byte(c.Text)
		found = p.Find(found[:0], text)

		// Every occurrence of an expected value is a place it may be found.
		spans := make([][]span, len(c.Entities))
		for i, e := range c.Entities {
			for off := 0; ; {
				j := strings.Index(c.Text[off:], e.Value)
				if j < 0 {
					break
				}
				spans[i] = append(spans[i], span{off + j, off + j + len(e.Value)})
				off += j + len(e.Value)
			}
		}
		matches := func(i int, f guard.Finding) bool {
			if f.Entity != c.Entities[i].Type {
				return false
			}
			// A PEM key must be found whole: its body is the secret, so a finding of the
			// BEGIN line alone leaks it.
			whole := c.Entities[i].Type == "SECRET" && strings.HasPrefix(c.Entities[i].Value, "-----BEGIN")
			for _, s := range spans[i] {
				if whole && f.Start <= s.start && s.end <= f.End || !whole && s.overlaps(f.Start, f.End) {
					return true
				}
			}
			return false
		}

		for _, f := range found {
			if f.Start < 0 || f.End > len(text) || f.Start >= f.End {
				t.Errorf("%s:%d: finding %s has span [%d,%d) outside the text of %d bytes",
					path, c.line, f.Entity, f.Start, f.End, len(text))
				score(f.Entity).fp++
				continue
			}
			hit := false
			for i := range c.Entities {
				if matches(i, f) {
					hit = true
					break
				}
			}
			if hit {
				score(f.Entity).hits++
				continue
			}
			score(f.Entity).fp++
			failures = append(failures, fmt.Sprintf("line %d  FP %-15s %q in %q (%s)",
				c.line, f.Entity, text[f.Start:f.End], shorten(c.Text), c.Note))
		}
		for i, e := range c.Entities {
			if slices.ContainsFunc(found, func(f guard.Finding) bool { return matches(i, f) }) {
				score(e.Type).tp++
				continue
			}
			score(e.Type).fn++
			failures = append(failures, fmt.Sprintf("line %d  FN %-15s %q in %q (%s)",
				c.line, e.Type, e.Value, shorten(c.Text), c.Note))
		}
	}

	types := slices.Clone(piiTypes)
	for typ := range scores {
		if !slices.Contains(types, typ) {
			types = append(types, typ) // a type the detector invented: all its findings are FPs
		}
	}
	var tbl strings.Builder
	tw := tabwriter.NewWriter(&tbl, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tTP\tFP\tFN\tprecision\trecall\t")
	for _, typ := range types {
		s := score(typ)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.3f\t%.3f\t\n", typ, s.tp, s.fp, s.fn, s.precision(), s.recall())
	}
	tw.Flush()
	return piiResult{scores: scores, types: types, table: tbl.String(), failures: failures}
}

// TestQualitySafety measures the built-in safety rules over testdata/safety.jsonl: the
// share of benign prompts flagged, the share of unsafe prompts caught, and how often the
// match carries the labelled category.
func TestQualitySafety(t *testing.T) {
	cases := loadSafety(t)
	s, err := guard.NewSafety(guard.SafetyOptions{})
	if err != nil {
		t.Fatalf("NewSafety: %v", err)
	}

	sc := scoreSafety(t, s, cases, "safety")
	fpRate, detRate := sc.fpRate(), sc.recall()
	flagged, benign, detected, positives := sc.flagged, sc.benign, sc.detected, sc.positives
	if fpRate > maxBenignFlagRate {
		t.Errorf("benign false-positive rate %.2f%% (%d/%d), want <= %.0f%%", 100*fpRate, flagged, benign, 100*maxBenignFlagRate)
	}
	if detRate < minDetectionRate {
		t.Errorf("detection rate %.3f (%d/%d), want >= %.2f", detRate, detected, positives, minDetectionRate)
	}
}

// safetyScore is the safety filter's result over a labelled corpus.
type safetyScore struct {
	benign, flagged, positives, detected, correct int
}

func (sc safetyScore) fpRate() float64 { return ratio(sc.flagged, sc.benign, 0) }
func (sc safetyScore) recall() float64 { return ratio(sc.detected, sc.positives, 1) }

// scoreSafety checks every case with s, logs the per-category table and every miss, benign
// flag and wrong category under name, and returns the counts.
func scoreSafety(t *testing.T, s *guard.Safety, cases []safetyCase, name string) safetyScore {
	t.Helper()
	type tally struct{ n, detected, correct int }
	per := map[string]*tally{}
	var sc safetyScore
	var flaggedCases, missedCases, wrongCategory []string
	var matches []guard.SafetyMatch
	for _, c := range cases {
		matches = s.Check(matches[:0], []byte(c.Text))
		got := describe(matches, c.Text)
		if c.Category == "benign" {
			sc.benign++
			if len(matches) > 0 {
				sc.flagged++
				flaggedCases = append(flaggedCases, fmt.Sprintf("line %d  %q -> %s (%s)",
					c.line, shorten(c.Text), got, c.Note))
			}
			continue
		}
		sc.positives++
		tl := per[c.Category]
		if tl == nil {
			tl = &tally{}
			per[c.Category] = tl
		}
		tl.n++
		if len(matches) == 0 {
			missedCases = append(missedCases, fmt.Sprintf("line %d  %-24s %q (%s)",
				c.line, c.Category, shorten(c.Text), c.Note))
			continue
		}
		sc.detected++
		tl.detected++
		if slices.ContainsFunc(matches, func(m guard.SafetyMatch) bool { return m.Category == c.Category }) {
			sc.correct++
			tl.correct++
		} else {
			wrongCategory = append(wrongCategory, fmt.Sprintf("line %d  want %-24s got %s  %q",
				c.line, c.Category, got, shorten(c.Text)))
		}
	}
	var tbl strings.Builder
	tw := tabwriter.NewWriter(&tbl, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "category\tcases\tdetected\trecall\tright category\t")
	for _, cat := range safetyCategories {
		if tl := per[cat]; tl != nil {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%d\t\n", cat, tl.n, tl.detected, ratio(tl.detected, tl.n, 1), tl.correct)
		}
	}
	tw.Flush()
	t.Logf("%s: benign flagged %d/%d (%.2f%%), positives detected %d/%d (%.3f), right category %d/%d (%.3f)\n%s",
		name, sc.flagged, sc.benign, 100*sc.fpRate(), sc.detected, sc.positives, sc.recall(), sc.correct, sc.positives,
		ratio(sc.correct, sc.positives, 1), tbl.String())
	for _, l := range []struct {
		what  string
		lines []string
	}{{"detected under another category", wrongCategory}, {"benign prompts flagged", flaggedCases}, {"positives missed", missedCases}} {
		if len(l.lines) > 0 {
			t.Logf("%s:\n%s", l.what, strings.Join(l.lines, "\n"))
		}
	}
	return sc
}

// describe lists the matches as category/rule "matched text".
func describe(ms []guard.SafetyMatch, text string) string {
	if len(ms) == 0 {
		return "no match"
	}
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		frag := ""
		if 0 <= m.Start && m.Start <= m.End && m.End <= len(text) {
			frag = fmt.Sprintf(" %q", shorten(text[m.Start:m.End]))
		}
		parts = append(parts, m.Category+"/"+m.Rule+frag)
	}
	return strings.Join(parts, ", ")
}

// shorten keeps the first shortenTextToRune runes of s on one line.
func shorten(s string) string {
	if utf8.RuneCountInString(s) <= shortenTextToRune {
		return s
	}
	n := 0
	for i := range s {
		if n == shortenTextToRune {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
