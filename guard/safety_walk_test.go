package guard

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// walkSerial is the walk symbol by symbol: the reference that the walk, which skips tokens
// that are in no pattern and looks up the state after the others, must agree with.
// checkWalkRange walks a random range of sym, from the state a serial walk reaches there, and
// fails t unless the walk agrees with the serial walk in end state, outputs and spaces.
func checkWalkRange(t *testing.T, sf *Safety, sc *safetyScanner, r *rand.Rand, sym []byte) {
	t.Helper()
	from, to := r.IntN(len(sym)), len(sym)
	if r.IntN(2) == 0 {
		to = from + r.IntN(len(sym)-from+1)
	}
	_, s0 := walkSerial(sf, sym, r.IntN(from+1), from, sf.start)
	l := &normLane{state: s0, sym: sym}
	got, spaces := sc.walk(l, from, to)
	wantOuts, want := walkSerial(sf, sym, from, to, s0)
	if got != want || !slices.Equal(sc.walkOuts, wantOuts) || spaces != bytes.Count(sym[from:to], spaceSym) {
		t.Fatalf("walk %q [%d:%d]: state %d, outputs %v; serial: state %d, outputs %v",
			sym, from, to, got, sc.walkOuts, want, wantOuts)
	}
}

func walkSerial(sf *Safety, sym []byte, from, to int, st uint32) ([]walkOut, uint32) {
	var outs []walkOut
	spaces := int32(0)
	for i := from; i < to; i++ {
		if sym[i] == ' ' {
			spaces++
		}
		v := sf.next(st, sf.cls[sym[i]])
		if st = v &^ 1; v&1 != 0 {
			outs = append(outs, walkOut{int32(i), st, spaces})
		}
	}
	return outs, st
}

// TestWalkParts checks the walk against the serial walk, from the start state, from states
// deep in a pattern and from inside a token, with dense and mostly sparse layouts.
func TestWalkParts(t *testing.T) {
	def, err := NewSafety(SafetyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	texts := [][]byte{Normalize(nil, safetyBenchText(12<<10, true)), Normalize(nil, []byte(benchText(12<<10, 5)))}
	for _, sf := range []*Safety{def, compileDefaultDense(t, 64)} {
		sc := sf.newScanner(checkBlock)
		for _, text := range texts {
			for range 200 {
				n := r.IntN(len(text) - 1)
				from := r.IntN(len(text) - n)
				to := from + n
				// The state before from, as a scan would have it.
				_, s0 := walkSerial(sf, text, max(0, from-int(sf.maxDepth)), from, sf.start)
				l := &normLane{state: s0, sym: text}
				got, spaces := sc.walk(l, from, to)
				outs := sc.walkOuts
				wantOuts, want := walkSerial(sf, text, from, to, s0)
				if sf.stateNum(got) != sf.stateNum(want) || !slices.Equal(outs, wantOuts) || spaces != bytes.Count(text[from:to], spaceSym) {
					t.Fatalf("walk [%d:%d] (%d symbols): state %d, %d outputs; serial: state %d, %d outputs",
						from, to, n, sf.stateNum(got), len(outs), sf.stateNum(want), len(wantOuts))
				}
			}
		}
	}
}

// TestFeedNormalizes checks the scanner's feed, with its fast paths for ASCII words, against
// Normalize, which takes every rune through the general path: the same symbols, for texts fed
// whole and in pieces.
func TestFeedNormalizes(t *testing.T) {
	sf, err := NewSafety(SafetyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "b", "x", "I", "Ab", "word", "longerword", " ", "  ", ".", ",", "-", "1", "4", "@",
		"\n", "<", "[", "/", "|", "\u200b", "é", "ı", "ａ", "aGVsbG8gd29ybGQ=", "deadbeef", "\xff",
		"_", "+", "\t", "internationalization", "Eightlet"}
	texts := [][]byte{safetyBenchText(6<<10, true), []byte(benchText(6<<10, 5)), []byte("i g n o r e all a b c de f")}
	for range 300 {
		var b []byte
		for range r.IntN(60) {
			b = append(b, alphabet[r.IntN(len(alphabet))]...)
		}
		texts = append(texts, b)
	}
	for _, text := range texts {
		want := Normalize(nil, text)
		for _, piece := range []int{len(text) + 1, 1, 7, 24} {
			sc := sf.newScanner(1 << 16) // no flush: the block keeps every symbol
			sc.reset()
			for p := text; len(p) > 0; p = p[min(piece, len(p)):] {
				sc.feed(p[:min(piece, len(p))])
			}
			sc.b64.n = 0 // finish without its flush
			sc.main.end(sc, sc.pos)
			got := sc.main.sym[:sc.main.m]
			if len(got) > 0 && got[len(got)-1] == ' ' {
				got = got[:len(got)-1]
			}
			if string(got) != string(want) {
				t.Fatalf("feed(%q) in pieces of %d:\n got %q\nwant %q", text, piece, got, want)
			}
		}
	}
}

// TestPlainClass checks plainRun's byte classes against the tables of the general paths.
func TestPlainClass(t *testing.T) {
	for b := range 256 {
		e, want := foldTable[min(b, len(foldTable)-1)], plainOther
		switch {
		case b >= 0x80:
		case e.kind == kWord:
			want = plainLetter
		case e.kind == kDigit:
			want = plainDigit
		case e.kind == kSep && encClass[b] != 0:
			want = plainSepB64
		case e.kind == kSep:
			want = plainSep
		}
		if plainClass[b] != want {
			t.Errorf("plainClass[%#x] = %d, want %d", b, plainClass[b], want)
		}
	}
}

// tokenList returns the tokens in the token table.
func tokenList(sf *Safety) []string {
	var toks []string
	for k, e := range sf.tokens {
		if e.info != 0 {
			toks = append(toks, tokenAtSlot(sf, k))
		}
	}
	return toks
}

// tokenAtSlot returns the token in slot k of the token table.
func tokenAtSlot(sf *Safety, k int) string {
	e := sf.tokens[k]
	n := int(e.info & 0xff)
	b := make([]byte, 0, n)
	for k := range min(n, 8) {
		b = append(b, byte(e.key>>(8*k)))
	}
	if n > 8 {
		return string(sf.tokenRest[e.key : e.key+uint64(n)])
	}
	return string(b)
}

// pairList returns the pairs of tokens in the pair table, "first second".
func pairList(sf *Safety) []string {
	var pairs []string
	for _, e := range sf.pairs {
		if e.key != 0 {
			pairs = append(pairs, tokenAtSlot(sf, int(e.key>>32)-1)+" "+tokenAtSlot(sf, int(uint32(e.key))-1))
		}
	}
	return pairs
}

// TestTokenTable checks the token table: every token of the patterns is in it with the state
// that the automaton reaches over it from the start state, and words that are not, among them
// a token's prefixes and extensions and the empty word, are not.
func TestTokenTable(t *testing.T) {
	sf, err := NewSafety(SafetyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	toks := tokenList(sf)
	if len(toks) < 1000 {
		t.Fatalf("%d tokens", len(toks))
	}
	in := map[string]bool{}
	for _, tok := range toks {
		in[tok] = true
	}
	lookup := func(w string) (uint32, bool) {
		sym := []byte(w + "        ") // tokenAt reads eight symbols at a time
		n, key := tokenAt(sym, 0, len(sym))
		if n != len(w) {
			t.Fatalf("tokenAt(%q) = %d", w, n)
		}
		v, _, ok := sf.token(sym[:n], key, sf.start)
		return v, ok
	}
	for _, tok := range toks {
		_, want := walkSerial(sf, []byte(tok+" "), 0, len(tok)+1, sf.start)
		wantOut := sf.outStart[sf.stateNum(want)+1] > sf.outStart[sf.stateNum(want)]
		v, ok := lookup(tok)
		if !ok || v&^1 != want || (v&1 != 0) != wantOut {
			t.Fatalf("token %q: %d %v, want state %d (outputs %v)", tok, v, ok, want, wantOut)
		}
		for _, w := range []string{tok[:len(tok)-1], tok + "s", tok + "xq", "q" + tok, tok[1:]} {
			if _, ok := lookup(w); ok != in[w] {
				t.Fatalf("word %q: found %v, want %v", w, ok, in[w])
			}
		}
	}
}

// TestWalkTokens checks the walk against the serial walk on symbols made of tokens of the
// patterns, the first two tokens of patterns, words close to them, long words and empty
// tokens (two spaces), from random states.
func TestWalkTokens(t *testing.T) {
	for _, sf := range []*Safety{testSafety(t), compileDefaultDense(t, 64)} {
		toks, pairs := tokenList(sf), pairList(sf)
		if len(pairs) < 1000 {
			t.Fatalf("%d pairs", len(pairs))
		}
		r := rand.New(rand.NewPCG(5, 6))
		words := []string{"", "x", "internationalization", "instructionsx", "<", "|", "/", "0", "a", "the"}
		sc := sf.newScanner(checkBlock)
		for range 2000 {
			var sym []byte
			for range r.IntN(40) {
				switch w := toks[r.IntN(len(toks))]; r.IntN(5) {
				case 0:
					sym = append(sym, words[r.IntN(len(words))]...)
				case 1:
					sym = append(sym, w[:r.IntN(len(w)+1)]...)
				case 2: // the start of a pattern
					sym = append(sym, pairs[r.IntN(len(pairs))]...)
				default:
					sym = append(sym, w...)
				}
				sym = append(sym, ' ')
			}
			if len(sym) == 0 {
				continue
			}
			checkWalkRange(t, sf, sc, r, sym)
		}
	}
}

// TestPairFilter checks that the pair filter in the token table's entries never keeps a pair
// of the pair table out (pair finds exactly the pairs in the table, so the walk, which asks
// mayPair first, finds them all), and that it keeps most pairs of tokens of the patterns that
// start no pattern out of the table.
func TestPairFilter(t *testing.T) {
	for _, sf := range []*Safety{testSafety(t), compileDefaultDense(t, 64)} {
		n := 0
		for _, e := range sf.pairs {
			if e.key == 0 {
				continue
			}
			n++
			first, second := int(e.key>>32)-1, int(uint32(e.key))-1
			if !sf.mayPair(first, second) {
				t.Fatalf("the pair filter keeps %q %q out", tokenAtSlot(sf, first), tokenAtSlot(sf, second))
			}
		}
		var slots []int
		for k, e := range sf.tokens {
			if e.info != 0 {
				slots = append(slots, k)
			}
		}
		r := rand.New(rand.NewPCG(7, 8))
		passed, tries := 0, 100000
		for range tries {
			first, second := slots[r.IntN(len(slots))], slots[r.IntN(len(slots))]
			if sf.mayPair(first, second) {
				passed++
			}
		}
		if passed > tries/20 {
			t.Errorf("the pair filter lets %d of %d random pairs of tokens through (%d pairs in the table)", passed, tries, n)
		}
	}
}
