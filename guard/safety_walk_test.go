package guard

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// walkSerial is the walk in one part, symbol by symbol: the reference that the interleaved
// walks (walk2, walk4, with warm3 finding where their later parts start) must agree with.
func walkSerial(sf *Safety, sym []byte, from, to int, st uint32) ([]walkOut, uint32) {
	var outs []walkOut
	for i := from; i < to; i++ {
		v := sf.next(st, sf.cls[sym[i]])
		if st = v &^ 1; v&1 != 0 {
			outs = append(outs, walkOut{int32(i), st})
		}
	}
	return outs, st
}

// TestWalkParts checks the one-, two- and four-part walks against the serial walk, from the
// start state and from states deep in a pattern, with dense and mostly sparse layouts.
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
				got := sc.walk(l, from, to)
				var outs []walkOut
				for _, o := range sc.walkOuts {
					outs = append(outs, o...)
				}
				wantOuts, want := walkSerial(sf, text, from, to, s0)
				if sf.stateNum(got) != sf.stateNum(want) || !slices.Equal(outs, wantOuts) {
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
