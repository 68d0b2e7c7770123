package guard

import (
	"encoding/binary"
	"math/bits"
)

// walkOut is a symbol after which the automaton has outputs: its index in the block, the
// state it left the automaton in, and the spaces the walk has taken up to it, itself included.
type walkOut struct {
	i      int32
	state  uint32
	spaces int32
}

var spaceSym = []byte{' '}

// flush walks the main lane's buffered symbols and reports what their patterns match, in
// order, with the matches from encoded segments merged in where they were found. Once the
// block is half full it keeps only the last ringSize-1 symbols, which later matches and the
// hold-back may still need.
func (s *safetyScanner) flush() {
	l := &s.main
	from, to := l.walked-l.base, l.m
	final, spaces := s.walk(l, from, to)
	words := l.words
	for _, o := range s.walkOuts {
		i := int(o.i)
		s.release(l.base + i)
		l.state, l.n, l.words = o.state, l.base+i+1, words+int(o.spaces)
		s.report(l)
	}
	l.state, l.n, l.words = final, l.base+to, words+spaces
	l.walked = l.n
	s.release(l.n)
	if len(l.pending) > 0 {
		s.settle(l, l.words-1)
	}
	if drop := to - (ringSize - 1); drop > 0 && to > len(l.sym)/2 { // room is needed
		copy(l.sym, l.sym[drop:to])
		copy(l.span, l.span[drop:to])
		l.m, l.base = to-drop, l.base+drop
	}
}

// release appends the waiting matches from encoded segments that were found before the main
// lane's symbol n.
func (s *safetyScanner) release(n int) {
	k := 0
	for k < len(s.stamps) && s.stamps[k] <= n {
		k++
	}
	if k == 0 {
		return
	}
	s.out = append(s.out, s.inner[:k]...)
	s.inner = s.inner[:copy(s.inner, s.inner[k:])]
	s.stamps = s.stamps[:copy(s.stamps, s.stamps[k:])]
}

// walk runs the automaton over l.sym[from:to] from l.state, noting in s.walkOuts the symbols
// after which it has outputs, and returns the state at the end and the spaces it took.
//
// It goes a token at a time rather than a symbol at a time. Every pattern is whole tokens
// between spaces, so after a token that is in no pattern and the space after it the
// automaton is back at the start state, with no output on the way, whatever state it was in
// before: no pattern has " token " in it. From the start state, a token of a pattern and its
// space lead to one state, which the token table holds; from there, the next token leads to
// one state too, which the pair table holds when a pattern starts with the two (see
// buildPairs). So a token costs a lookup or two in tables of a few hundred KB rather than a
// chain of loads from the rows of the automaton, megabytes, one per symbol, each waiting on
// the one before: that chain is what a scan paid for most with its caches cold. Only the
// third and later tokens of a pattern under way, and a token that the block cuts, are walked
// symbol by symbol.
func (s *safetyScanner) walk(l *normLane, from, to int) (uint32, int) {
	sf, sym := s.sf, l.sym
	start := sf.start
	st := l.state
	s.walkOuts = s.walkOuts[:0]
	i, spaces := from, int32(0)
	// A token the last walk stopped inside goes symbol by symbol up to its space. The start
	// state is only ever entered on a space.
	if st != start && (i == 0 || sym[i-1] != ' ') {
		for i < to {
			c := sym[i]
			if c == ' ' {
				spaces++
			}
			v := sf.next(st, sf.cls[c])
			if st = v &^ 1; v&1 != 0 {
				s.walkOuts = append(s.walkOuts, walkOut{int32(i), st, spaces})
			}
			i++
			if c == ' ' {
				break
			}
		}
	}
	// Here sym[i] starts a token (or is a space, an empty token).
	tokens, shift, mask := sf.tokens, sf.tokenShift, uint64(len(sf.tokens)-1)
	// prev is the slot+1 of the token before when the state is where it leads from the start
	// state (see buildPairs), or where the pair table took it and the token before (two),
	// else 0.
	prev, two := 0, false
tokens:
	for i < to {
		if st == start {
			// From the start state, a token in no pattern and its space lead back to it with
			// no output, and a token of a pattern leads where the token table says: a loop
			// of its own takes these, two in five of a text's tokens and the first of every
			// run of pattern tokens, without the general loop's decisions and its dozen
			// live values, which the compiler spilled and reloaded around every token.
			n, slot := 0, 0
			var v uint32
			for {
				n = -1
				var key uint64
				if i+8 <= len(sym) {
					x := binary.LittleEndian.Uint64(sym[i:])
					y := x ^ 0x2020202020202020
					if z := (y - 0x0101010101010101) &^ y & 0x8080808080808080; z != 0 {
						n = bits.TrailingZeros64(z) >> 3
						key = x & (1<<(8*uint(n)) - 1)
					}
				}
				if n >= 0 && i+n < to {
					slot = int((key ^ uint64(n)) * tokenMul >> shift & mask)
					e := &tokens[slot]
					if e.info == 0 {
						spaces++
						if i += n + 1; i >= to {
							break tokens
						}
						continue
					}
					if e.key == key && int(e.info&0xff) == n {
						v = e.next
						break
					}
				} else if n, key = tokenAt(sym, i, to); n < 0 { // the block cut the token
					break tokens
				}
				var ok bool
				if v, slot, ok = sf.token(sym[i:i+n], key, start); ok {
					break
				}
				spaces++
				if i += n + 1; i >= to {
					break tokens
				}
			}
			// A token of a pattern, from the start state: one step by the token table.
			spaces++
			if st = v &^ 1; v&1 != 0 {
				s.walkOuts = append(s.walkOuts, walkOut{int32(i + n), st, spaces})
			}
			prev, two = slot+1, false
			i += n + 1
			continue
		}
		n, slot := -1, 0
		var key uint64
		var v uint32
		var ok bool
		// The usual case inline: a token of under eight symbols, found at its home slot or
		// missing from there; the rest in tokenAt and token.
		if i+8 <= len(sym) {
			x := binary.LittleEndian.Uint64(sym[i:])
			y := x ^ 0x2020202020202020 // a space is a zero byte of y
			if z := (y - 0x0101010101010101) &^ y & 0x8080808080808080; z != 0 {
				n = bits.TrailingZeros64(z) >> 3 // the lowest set bit is exact, as in tokenAt
				key = x & (1<<(8*uint(n)) - 1)
			}
		}
		if n >= 0 && i+n < to {
			slot = int((key ^ uint64(n)) * tokenMul >> shift & mask)
			switch e := &tokens[slot]; {
			case e.info == 0:
				v, ok = start, false
			case e.key == key && int(e.info&0xff) == n:
				v, ok = e.next, true
			default:
				v, slot, ok = sf.token(sym[i:i+n], key, start)
			}
		} else {
			if n, key = tokenAt(sym, i, to); n < 0 { // no space before to: the block cut the token
				break
			}
			v, slot, ok = sf.token(sym[i:i+n], key, start)
		}
		spaces++ // the token's
		if !ok { // in no pattern: back to the start state, with no output
			st, prev, two = start, 0, false
			i += n + 1
			continue
		}
		// Here the state is not the start state (see above) and the token is in a pattern.
		if prev != 0 {
			// From where the token before led from the start state or the pair table: one
			// step, by the tables (see buildTriples).
			paired := false
			w, three := uint32(0), false
			if two {
				w, three = sf.triple(st, slot)
			}
			if three {
				v, slot = w, -1 // deeper than a pair table's state
			} else if sf.mayPair(prev-1, slot) { // the pair filter, in entries in L1
				if w, pair := sf.pair(prev-1, slot); pair {
					v, paired = w, true
				}
			}
			if st = v &^ 1; v&1 != 0 {
				s.walkOuts = append(s.walkOuts, walkOut{int32(i + n), st, spaces})
			}
			prev, two = slot+1, paired
		} else { // a pattern may be under way: symbol by symbol
			two = false
			for k := i; k <= i+n; k++ {
				v := sf.next(st, sf.cls[sym[k]])
				if st = v &^ 1; v&1 != 0 {
					// Before the token's space, its count is one less.
					s.walkOuts = append(s.walkOuts, walkOut{int32(k), st, spaces - int32(min(i+n-k, 1))})
				}
			}
		}
		i += n + 1
	}
	for ; i < to; i++ {
		if sym[i] == ' ' {
			spaces++
		}
		v := sf.next(st, sf.cls[sym[i]])
		if st = v &^ 1; v&1 != 0 {
			s.walkOuts = append(s.walkOuts, walkOut{int32(i), st, spaces})
		}
	}
	return st, int(spaces)
}

// tokenAt returns the length of the token that starts at sym[i], up to the next space, and
// its first eight symbols little-endian (zero-padded), the token table's key; n is -1 when
// there is no space before sym[to].
func tokenAt(sym []byte, i, to int) (n int, key uint64) {
	const ones, highs, spaces = 0x0101010101010101, 0x8080808080808080, 0x2020202020202020
	for k := i; k < to; k += 8 {
		var x uint64
		if k+8 <= len(sym) {
			x = binary.LittleEndian.Uint64(sym[k:])
		} else {
			for j := len(sym) - 1; j >= k; j-- {
				x = x<<8 | uint64(sym[j])
			}
		}
		y := x ^ spaces // a space is a zero byte of y
		// The lowest set bit marks the first zero byte exactly (higher ones may be wrong).
		z := (y - ones) &^ y & highs
		if k == i {
			key = x
		}
		if z != 0 {
			n = k - i + bits.TrailingZeros64(z)>>3
			if i+n >= to {
				return -1, 0
			}
			return n, key & (1<<(8*uint(n)) - 1) // a shift of 64 or more is 0: all of key

		}
	}
	return -1, 0
}
