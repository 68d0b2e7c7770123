package guard

import (
	"bytes"
	"math/bits"
)

// tokenEntry is a token of the patterns in the token table (see safetyScanner.walk).
type tokenEntry struct {
	key  uint64 // the token's first eight symbols, little-endian, zero-padded; a longer one's offset in tokenRest
	info uint32 // its pair filter (see pairBits) | its length; 0: an empty slot
	next uint32 // the transition from the start state over the token and its space, with bit 0 set when it has outputs
}

// buildTokens fills the token table with every token of the patterns: an open-addressing
// table at most half full, so that a lookup of a word in no pattern, the usual case, ends at
// an empty slot a probe or two on.
func (s *Safety) buildTokens(pats [][]byte) {
	seen := map[string]bool{}
	var toks [][]byte
	for _, p := range pats {
		for _, t := range bytes.Split(bytes.Trim(p, " "), spaceSym) { // " token token "
			if !seen[string(t)] {
				seen[string(t)] = true
				toks = append(toks, t)
			}
		}
	}
	size := 1 << bits.Len(uint(max(8, 2*len(toks)-1)))
	s.tokens, s.tokenShift = make([]tokenEntry, size), uint8(64-bits.TrailingZeros(uint(size)))
	for _, t := range toks {
		e := tokenEntry{info: uint32(len(t))} // len(t) < ringSize
		for k := min(len(t), 8) - 1; k >= 0; k-- {
			e.key = e.key<<8 | uint64(t[k])
		}
		k := s.tokenSlot(e.key, len(t))
		if len(t) > 8 {
			// A long token's symbols are in tokenRest, all of them: its entry holds where,
			// so that a lookup, which compares them there, reads no other table.
			e.key = uint64(len(s.tokenRest))
			s.tokenRest = append(s.tokenRest, t...)
		}
		st := s.start
		for _, c := range t {
			st = s.next(st, s.cls[c]) &^ 1
		}
		e.next = s.next(st, s.cls[' '])
		mask := uint64(size - 1)
		for s.tokens[k].info != 0 {
			k = (k + 1) & mask
		}
		s.tokens[k] = e
	}
}

// tokenSlot returns the home slot of a token of n symbols whose first eight are key.
func (s *Safety) tokenSlot(key uint64, n int) uint64 {
	return (key ^ uint64(n)) * tokenMul >> s.tokenShift
}

const tokenMul = 0x9e3779b97f4a7c15

// token looks up w, whose first eight symbols are key (see tokenAt), in the token table. It
// returns the transition from the start state over w and a space, and whether w is in a
// pattern; when it is in none, the transition is to start itself from any state, which is
// what it returns.
func (s *Safety) token(w []byte, key uint64, start uint32) (v uint32, slot int, ok bool) {
	n, mask := len(w), uint64(len(s.tokens)-1)
	for k := s.tokenSlot(key, n); ; k = (k + 1) & mask {
		e := &s.tokens[k]
		if e.info == 0 {
			return start, 0, false
		}
		if int(e.info&0xff) != n {
			continue
		}
		if n <= 8 {
			if e.key == key {
				return e.next, int(k), true
			}
		} else if string(s.tokenRest[e.key:e.key+uint64(n)]) == string(w) {
			return e.next, int(k), true
		}
	}
}

// tokenPair is a pattern's first two tokens, by their slots in the token table, and the
// transition from the start state over both and their spaces.
type tokenPair struct {
	key  uint64 // first slot+1 <<32 | second slot+1; 0: an empty slot
	next uint32
}

// buildPairs fills the pair table with the first two tokens of every pattern of two or more.
// From the state after " first " (which the token table gives), a space and a token lead to
// the state of " first second " when some pattern starts so, and otherwise where the token
// leads from the start state: no other suffix of " first second " starts a pattern.
func (s *Safety) buildPairs(pats [][]byte) {
	seen := map[uint64]bool{}
	var pairs []tokenPair
	for _, p := range pats {
		toks := bytes.Split(bytes.Trim(p, " "), spaceSym)
		if len(toks) < 2 {
			continue
		}
		key := uint64(s.tokenSlotOf(toks[0])+1)<<32 | uint64(s.tokenSlotOf(toks[1])+1)
		if seen[key] {
			continue
		}
		seen[key] = true
		st := s.start
		for _, c := range p[1 : 1+len(toks[0])+1+len(toks[1])] {
			st = s.next(st, s.cls[c]) &^ 1
		}
		pairs = append(pairs, tokenPair{key: key, next: s.next(st, s.cls[' '])})
		first, second := int(key>>32)-1, int(uint32(key))-1
		s.tokens[first].info |= pairBits(first, second) & succMask
		s.tokens[second].info |= pairBits(first, second) & predMask
	}
	s.pairs, s.pairShift = pairTable(pairs)
}

// A pair filter in the token table's entries keeps most lookups of pairs that no pattern
// starts with out of the pair table, a table of 256 KB, where a lookup is a miss in L2 on a
// running gateway: between two prompts a request's networking evicts the guard's tables (see
// BenchmarkGuardWarm). Most pairs of pattern tokens in a row start no pattern: of those in
// BenchmarkGuard's chat text one in five does, of those in the load generator's word salad
// (common words, nearly all of them pattern tokens) one in fifty. The first token's entry has
// a bit for each second token it starts a pair with, by the low four bits of the second's
// slot, and the second's one for each first, by the low three bits of the first's slot; the
// walk has just read both entries. The filter lets one in four of the chat text's pairs
// through, one in six of the word salad's, one in a hundred of random pairs of tokens.
const (
	succMask = 0xffff << 8
	predMask = 0xff << 24
)

// mayPair reports whether the pair filter lets the tokens in slots first and second through
// to the pair table: when it does not, no pattern starts with the two.
func (s *Safety) mayPair(first, second int) bool {
	b := pairBits(first, second)
	return s.tokens[first].info&b&succMask != 0 && s.tokens[second].info&b&predMask != 0
}

// pairBits returns the bits of the pair filter for the tokens in slots first and second: the
// two may start a pattern only if the first's entry has the bit of them in succMask and the
// second's the bit in predMask.
func pairBits(first, second int) uint32 {
	return 1<<(8+second&15) | 1<<(24+first&7)
}

// pairTable returns an open-addressing table of es, at most half full, and its hash shift.
func pairTable(es []tokenPair) ([]tokenPair, uint8) {
	size := 1 << bits.Len(uint(max(8, 2*len(es)-1)))
	table, shift := make([]tokenPair, size), uint8(64-bits.TrailingZeros(uint(size)))
	for _, e := range es {
		k := e.key * tokenMul >> shift
		for table[k].key != 0 {
			k = (k + 1) & uint64(size-1)
		}
		table[k] = e
	}
	return table, shift
}

// tokenSlotOf returns the slot of token t in the token table, which holds it.
func (s *Safety) tokenSlotOf(t []byte) int {
	var key uint64
	for k := min(len(t), 8) - 1; k >= 0; k-- {
		key = key<<8 | uint64(t[k])
	}
	_, slot, ok := s.token(t, key, s.start)
	if !ok {
		panic("BUG: a pattern's token is not in the token table")
	}
	return slot
}

// pair returns the transition from the state after " first " over a space and the token
// second, given their slots, when some pattern starts with the two.
func (s *Safety) pair(first, second int) (uint32, bool) {
	key, mask := uint64(first+1)<<32|uint64(second+1), uint64(len(s.pairs)-1)
	for k := key * tokenMul >> s.pairShift; ; k = (k + 1) & mask {
		e := &s.pairs[k]
		if e.key == key {
			return e.next, true
		}
		if e.key == 0 {
			return 0, false
		}
	}
}

// buildTriples fills the triple table with the first three tokens of every pattern of three
// or more, keyed by the state after the first two (which the pair table gives) and the third
// token's slot. From that state, " first second ", a token leads to the state of " first
// second third " when some pattern starts so; else to where the pair table takes " second
// third "; else to where the token leads from the start state: those are the suffixes of
// " first second third " that a pattern may start with, longest first. So the token after a
// pair goes by the tables too, rather than symbol by symbol through the sparse states deep
// in the automaton, a chain of dependent loads per symbol.
func (s *Safety) buildTriples(pats [][]byte) {
	seen := map[uint64]bool{}
	var triples []tokenPair
	for _, p := range pats {
		toks := bytes.Split(bytes.Trim(p, " "), spaceSym)
		if len(toks) < 3 {
			continue
		}
		st := s.start
		two := 1 + len(toks[0]) + 1 + len(toks[1]) // p[:two] is " first second", p[two] a space
		for _, c := range p[1 : two+1] {
			st = s.next(st, s.cls[c]) &^ 1
		}
		key := uint64(st)<<32 | uint64(s.tokenSlotOf(toks[2])+1)
		if seen[key] {
			continue
		}
		seen[key] = true
		for _, c := range toks[2] {
			st = s.next(st, s.cls[c]) &^ 1
		}
		triples = append(triples, tokenPair{key: key, next: s.next(st, s.cls[' '])})
	}
	s.triples, s.tripleShift = pairTable(triples)
}

// triple returns the transition from st, the state after a pattern's first two tokens, over
// a space and the token in slot third, when some pattern starts with the three.
func (s *Safety) triple(st uint32, third int) (uint32, bool) {
	key, mask := uint64(st)<<32|uint64(third+1), uint64(len(s.triples)-1)
	for k := key * tokenMul >> s.tripleShift; ; k = (k + 1) & mask {
		e := &s.triples[k]
		if e.key == key {
			return e.next, true
		}
		if e.key == 0 {
			return 0, false
		}
	}
}
