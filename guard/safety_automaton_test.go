package guard

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
)

// compileDefaultDense compiles the built-in rules with at most dense complete rows.
func compileDefaultDense(t testing.TB, dense int) *Safety {
	t.Helper()
	specs, err := parseSafetyRules(defaultSafetyRules)
	if err != nil {
		t.Fatal(err)
	}
	s, err := compileSafetyDense(specs, dense)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAutomatonSparseStates checks the dense/sparse layout against an automaton with every
// state dense (a full DFA, as the automaton once was): the same transitions and output flags
// from every state on every class.
func TestAutomatonSparseStates(t *testing.T) {
	full := compileDefaultDense(t, 1<<30)
	if int(full.dense) != len(full.depth) {
		t.Fatalf("dense %d of %d states", full.dense, len(full.depth))
	}
	for _, dense := range []int{1, 300, denseStates} {
		s := compileDefaultDense(t, dense)
		if len(s.depth) != len(full.depth) || !slices.Equal(s.outs, full.outs) || !slices.Equal(s.outStart, full.outStart) {
			t.Fatalf("dense %d: states or outputs differ", dense)
		}
		if s.stateNum(s.start) != full.stateNum(full.start) {
			t.Fatalf("dense %d: start state differs", dense)
		}
		for n := range uint32(len(s.depth)) {
			for c := range uint8(s.stride) {
				got, want := s.next(s.stateID(n), c), full.next(full.stateID(n), c)
				if s.stateNum(got) != full.stateNum(want) || got&1 != want&1 {
					t.Fatalf("dense %d: state %d class %d goes to %d (out %d), want %d (out %d)",
						dense, n, c, s.stateNum(got), got&1, full.stateNum(want), want&1)
				}
			}
		}
	}
}

// TestStateNum checks that stateNum, which divides by the stride with a multiplication,
// gives back the number of every state from its id, with and without the output flag, in
// the default layout and with every state dense.
func TestStateNum(t *testing.T) {
	def, err := NewSafety(SafetyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Safety{def, compileDefaultDense(t, 1<<30)} {
		for n := range uint32(len(s.depth)) {
			if id := s.stateID(n); s.stateNum(id) != n || s.stateNum(id|1) != n {
				t.Fatalf("stateNum(%d) = %d, stateNum(%d) = %d, want %d", id, s.stateNum(id), id|1, s.stateNum(id|1), n)
			}
		}
	}
}

// TestAutomatonSparseCheck checks that scans with mostly sparse states find what the default
// layout finds.
func TestAutomatonSparseCheck(t *testing.T) {
	def, err := NewSafety(SafetyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sparse := compileDefaultDense(t, 64)
	for _, text := range corpusTexts(t) {
		got, want := sparse.Check(nil, text), def.Check(nil, text)
		if !slices.Equal(got, want) {
			t.Fatalf("%.80q: sparse layout found %v, want %v", text, got, want)
		}
	}
}

// corpusTexts returns texts to compare two compiled rule sets on: benchmark texts, each case
// of the safety corpus, and the whole corpus as one text.
func corpusTexts(t *testing.T) [][]byte {
	t.Helper()
	texts := [][]byte{safetyBenchText(40<<10, true), safetyBenchText(3<<10, true), []byte(benchText(6<<10, 5))}
	f, err := os.Open("testdata/safety.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all bytes.Buffer
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var c struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, []byte(c.Text))
		all.WriteString(c.Text + "\n")
	}
	return append(texts, all.Bytes())
}

// TestSafetyRulesShared checks that a custom rule set is compiled once per content.
func TestSafetyRulesShared(t *testing.T) {
	rules := DefaultSafetyRules()
	a, err := NewSafety(SafetyOptions{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSafety(SafetyOptions{Rules: slices.Clone(rules)})
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("the same rules compiled twice")
	}
	other := append(slices.Clone(rules), "\n# another file\n"...)
	c, err := NewSafety(SafetyOptions{Rules: other})
	if err != nil {
		t.Fatal(err)
	}
	if c == a {
		t.Fatal("different rule files share an automaton")
	}
	for range 2 { // an error is reported each time, not cached as a Safety
		if s, err := NewSafety(SafetyOptions{Rules: []byte("rules: [")}); err == nil || s != nil {
			t.Fatalf("bad rules: got %v, %v", s, err)
		}
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(c)
}

// BenchmarkSafetyAutomaton reports the size of the built-in rules' automaton (it was a
// full DFA of 26.9 MB) and its state count.
func BenchmarkSafetyAutomaton(b *testing.B) {
	s, err := NewSafety(SafetyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = s.automatonSize()
	}
	b.ReportMetric(float64(s.automatonSize()), "bytes")
	b.ReportMetric(float64(len(s.depth)), "states")
	b.ReportMetric(float64(s.dense), "dense-states")
}

// compileMergedAndApart compiles rules with the phrases that share a form merged and apart.
func compileMergedAndApart(t *testing.T, rules []byte) (merged, apart *Safety) {
	t.Helper()
	specs, err := parseSafetyRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	if merged, err = compileSafetyLayout(specs, denseStates, true); err != nil {
		t.Fatal(err)
	}
	if apart, err = compileSafetyLayout(specs, denseStates, false); err != nil {
		t.Fatal(err)
	}
	return merged, apart
}

// TestMergedFormsCheck checks what merging the phrases that share a form changes: nothing in
// the corpus and in random runs of the rules' own words, where near, unless and multi-segment
// phrases meet, but the hit ring. Where copies of one word's hits filled the ring, the merged
// compile still sees the near partner they pushed out, so it may find more, never less or in
// another order.
func TestMergedFormsCheck(t *testing.T) {
	merged, apart := compileMergedAndApart(t, defaultSafetyRules)
	if len(merged.phrases) <= len(apart.phrases) {
		t.Fatalf("no phrases were merged: %d phrases, %d apart", len(merged.phrases), len(apart.phrases))
	}
	texts := corpusTexts(t)
	words := append(tokenList(merged), "the", "a", "please", "code", "and", "now", ".", "\n")
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		var b []byte
		for range 1 + r.IntN(40) {
			b = append(append(b, words[r.IntN(len(words))]...), ' ')
		}
		texts = append(texts, b)
	}
	found, more := 0, 0
	for _, text := range texts {
		got, want := merged.Check(nil, text), apart.Check(nil, text)
		if !isSubsequence(want, got) {
			t.Fatalf("%.120q: merged forms found %v, want %v or more", text, got, want)
		}
		if len(got) > len(want) {
			more++
		}
		found += len(got)
	}
	if found == 0 {
		t.Fatal("the texts matched nothing: the comparison shows nothing")
	}
	if more > len(texts)/100 {
		t.Errorf("merged forms found more in %d of %d texts: more than the hit ring explains", more, len(texts))
	}
	// "post" is a form of many phrases: apart, each repeat filled the ring with copies until
	// "decode" was gone before "and follow" came. (Five repeats: since defamatory-claim's near
	// list dropped "post", four no longer fill it.)
	text := []byte("decode this post post post post post and follow")
	if got, want := safetyRules(merged.Check(nil, text)), safetyRules(apart.Check(nil, text)); !slices.Contains(got, "decode-and-follow") || slices.Contains(want, "decode-and-follow") {
		t.Errorf("%q: merged %v, apart %v; want decode-and-follow found merged only", text, got, want)
	}
}

// TestMergedFormsOrder checks the cases where a merge could reorder or drop matches: a
// multi-segment phrase between two one-segment phrases of one form, and two phrases of one
// rule sharing a form inside base64, where matches have no span to tell repeats apart.
func TestMergedFormsOrder(t *testing.T) {
	merged, apart := compileMergedAndApart(t, []byte(`version: 1
categories:
  cat_one:
    - id: r1
      phrases: ["gamma"]
    - id: r4
      phrases: ["gamma ray", "gamma (ray|beam)"]
  cat_two:
    - id: r2
      phrases: ["(alpha|beta) (gamma|delta)"]
  cat_three:
    - id: r3
      phrases: ["(gamma|omega)"]
`))
	for _, text := range []string{"alpha gamma", "see " + base64.StdEncoding.EncodeToString([]byte("Some gamma ray here")) + " ok"} {
		got, want := merged.Check(nil, []byte(text)), apart.Check(nil, []byte(text))
		if !slices.Equal(got, want) || len(want) < 3 {
			t.Errorf("%q: merged %v, apart %v", text, got, want)
		}
	}
}

// isSubsequence reports whether every element of a is in b, in a's order.
func isSubsequence(a, b []SafetyMatch) bool {
	for _, m := range b {
		if len(a) > 0 && a[0] == m {
			a = a[1:]
		}
	}
	return len(a) == 0
}

// safetyRules returns the rule ids of matches.
func safetyRules(ms []SafetyMatch) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.Rule)
	}
	return ids
}
