package guard

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// tripleList returns the first three tokens of patterns in the triple table, "first second
// third", naming the state after the first two by the pair that leads there.
func tripleList(sf *Safety) []string {
	byState := map[uint32]string{}
	for _, p := range pairList(sf) {
		_, st := walkSerial(sf, []byte(" "+p+" "), 0, len(p)+2, sf.start)
		byState[st] = p
	}
	var triples []string
	for _, e := range sf.triples {
		if e.key != 0 {
			triples = append(triples, byState[uint32(e.key>>32)]+" "+tokenAtSlot(sf, int(uint32(e.key))-1))
		}
	}
	return triples
}

// TestWalkTriples checks the walk against the serial walk on symbols made of the first three
// tokens of patterns, the first two, the first two followed by any token, and single tokens:
// the paths by the triple table, by the pair table after a pair, and back to the start.
func TestWalkTriples(t *testing.T) {
	for _, sf := range []*Safety{testSafety(t), compileDefaultDense(t, 64)} {
		toks, pairs, triples := tokenList(sf), pairList(sf), tripleList(sf)
		if len(triples) < 1000 || slices.Contains(triples, "") {
			t.Fatalf("%d triples", len(triples))
		}
		r := rand.New(rand.NewPCG(7, 8))
		sc := sf.newScanner(checkBlock)
		for range 3000 {
			var sym []byte
			for range 1 + r.IntN(30) {
				switch r.IntN(5) {
				case 0:
					sym = append(sym, triples[r.IntN(len(triples))]...)
				case 1:
					sym = append(sym, pairs[r.IntN(len(pairs))]...)
				case 2:
					sym = append(sym, pairs[r.IntN(len(pairs))]+" "+toks[r.IntN(len(toks))]...)
				case 3:
					sym = append(sym, "x"...)
				default:
					sym = append(sym, toks[r.IntN(len(toks))]...)
				}
				sym = append(sym, ' ')
			}
			checkWalkRange(t, sf, sc, r, sym)
		}
	}
}
