package guard

import "bytes"

// walkOut is a symbol after which the automaton has outputs: its index in the block and the
// state it left the automaton in.
type walkOut struct {
	i     int32
	state uint32
}

var spaceSym = []byte{' '}

// flush walks the main lane's buffered symbols and reports what their patterns match, in
// order, with the matches from encoded segments merged in where they were found. It keeps
// the last ringSize-1 symbols, which later matches and the hold-back may still need.
func (s *safetyScanner) flush() {
	l := &s.main
	from, to := l.walked-l.base, l.m
	final := s.walk(l, from, to)
	words, k := l.words, from
	for _, outs := range s.walkOuts {
		for _, o := range outs {
			i := int(o.i)
			words += bytes.Count(l.sym[k:i+1], spaceSym)
			k = i + 1
			s.release(l.base + i)
			l.state, l.n, l.words = o.state, l.base+i+1, words
			s.report(l)
		}
	}
	l.state, l.n, l.words = final, l.base+to, words+bytes.Count(l.sym[k:to], spaceSym)
	l.walked = l.n
	s.release(l.n)
	if drop := to - (ringSize - 1); drop > 0 {
		copy(l.sym, l.sym[drop:to])
		copy(l.ost, l.ost[drop:to])
		copy(l.olen, l.olen[drop:to])
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
// after which it has outputs, and returns the state at the end. A long block is walked as
// two halves at once: each step waits on a table load, and two independent chains of loads
// overlap. The second half starts at the root ringSize-1 symbols early, which brings it to
// the right state, since no pattern is longer.
func (s *safetyScanner) walk(l *normLane, from, to int) uint32 {
	trans, cls, sym := s.sf.trans, &s.sf.cls, l.sym[:to]
	o1, o2 := s.walkOuts[0][:0], s.walkOuts[1][:0]
	s1 := l.state
	if to-from < 4*ringSize {
		for i := from; i < to; i++ {
			v := trans[s1+uint32(cls[sym[i]])]
			if s1 = v &^ 1; v&1 != 0 {
				o1 = append(o1, walkOut{int32(i), s1})
			}
		}
		s.walkOuts = [2][]walkOut{o1, o2}
		return s1
	}
	mid := from + (to-from)/2
	var s2 uint32
	for _, c := range sym[mid-(ringSize-1) : mid] {
		s2 = trans[s2+uint32(cls[c])] &^ 1
	}
	a, b := sym[from:mid], sym[mid:to]
	b0 := b[:len(a)]
	for k, c := range a {
		v1, v2 := trans[s1+uint32(cls[c])], trans[s2+uint32(cls[b0[k]])]
		s1, s2 = v1&^1, v2&^1
		if (v1|v2)&1 != 0 {
			if v1&1 != 0 {
				o1 = append(o1, walkOut{int32(from + k), s1})
			}
			if v2&1 != 0 {
				o2 = append(o2, walkOut{int32(mid + k), s2})
			}
		}
	}
	for k := len(a); k < len(b); k++ {
		v := trans[s2+uint32(cls[b[k]])]
		if s2 = v &^ 1; v&1 != 0 {
			o2 = append(o2, walkOut{int32(mid + k), s2})
		}
	}
	s.walkOuts = [2][]walkOut{o1, o2}
	return s2
}
