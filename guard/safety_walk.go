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
// order, with the matches from encoded segments merged in where they were found. Once the
// block is half full it keeps only the last ringSize-1 symbols, which later matches and the
// hold-back may still need.
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
// after which it has outputs, and returns the state at the end. A block of ringSize symbols
// or more is walked in two parts at once, of 2*ringSize or more in four: each step waits on
// a table load, and independent chains of loads overlap. Every part but the first starts at
// the root maxDepth-1 symbols early, which brings it to the right state, since no pattern is
// longer; that warm-up costs less than the overlap saves even at these sizes, which a 1 KiB
// prompt reaches. A step from a dense state is one load; from a sparse state, rare in
// ordinary text, it is a call.
func (s *safetyScanner) walk(l *normLane, from, to int) uint32 {
	sf, sym := s.sf, l.sym[:to]
	for k := range s.walkOuts {
		s.walkOuts[k] = s.walkOuts[k][:0]
	}
	n := to - from
	switch {
	case n >= 2*ringSize:
		return s.walk4(sym, from, l.state)
	case n >= ringSize:
		return s.walk2(sym, from, l.state)
	}
	trans, cls, dend := sf.trans, &sf.cls, sf.denseEnd
	st, outs := l.state, s.walkOuts[0]
	for i := from; i < to; i++ {
		var v uint32
		if c := cls[sym[i]]; st < dend {
			v = trans[st+uint32(c)]
		} else {
			v = sf.sparseNext(st, c)
		}
		if st = v &^ 1; v&1 != 0 {
			outs = append(outs, walkOut{int32(i), st})
		}
	}
	s.walkOuts[0] = outs
	return st
}

// warm returns the state after sym[i-(maxDepth-1):i] from the root.
func (sf *Safety) warm(sym []byte, i int) uint32 {
	var st uint32
	for _, c := range sym[i-(int(sf.maxDepth)-1) : i] {
		st = sf.next(st, sf.cls[c]) &^ 1
	}
	return st
}

// warm3 is warm at three places at once, as three independent chains of loads.
func (sf *Safety) warm3(sym []byte, i1, i2, i3 int) (s1, s2, s3 uint32) {
	trans, cls, dend := sf.trans, &sf.cls, sf.denseEnd
	d := int(sf.maxDepth) - 1
	a, b, c := sym[i1-d:i1], sym[i2-d:i2], sym[i3-d:i3]
	b, c = b[:len(a)], c[:len(a)]
	for k, x := range a {
		c1, c2, c3 := cls[x], cls[b[k]], cls[c[k]]
		if s1|s2|s3 < dend {
			s1, s2, s3 = trans[s1+uint32(c1)]&^1, trans[s2+uint32(c2)]&^1, trans[s3+uint32(c3)]&^1
		} else {
			s1, s2, s3 = sf.next(s1, c1)&^1, sf.next(s2, c2)&^1, sf.next(s3, c3)&^1
		}
	}
	return s1, s2, s3
}

func (s *safetyScanner) walk2(sym []byte, from int, s0 uint32) uint32 {
	sf := s.sf
	trans, cls, dend := sf.trans, &sf.cls, sf.denseEnd
	mid := from + (len(sym)-from)/2
	s1 := sf.warm(sym, mid)
	a, b := sym[from:mid], sym[mid:]
	o0, o1 := s.walkOuts[0], s.walkOuts[1]
	for k, c := range a {
		var v0, v1 uint32
		c0, c1 := cls[c], cls[b[k]]
		if s0|s1 < dend { // both dense, the usual case: dend is a power of two
			v0, v1 = trans[s0+uint32(c0)], trans[s1+uint32(c1)]
		} else {
			v0, v1 = sf.next(s0, c0), sf.next(s1, c1)
		}
		s0, s1 = v0&^1, v1&^1
		if (v0|v1)&1 != 0 {
			if v0&1 != 0 {
				o0 = append(o0, walkOut{int32(from + k), s0})
			}
			if v1&1 != 0 {
				o1 = append(o1, walkOut{int32(mid + k), s1})
			}
		}
	}
	for k := len(a); k < len(b); k++ {
		v := sf.next(s1, cls[b[k]])
		if s1 = v &^ 1; v&1 != 0 {
			o1 = append(o1, walkOut{int32(mid + k), s1})
		}
	}
	s.walkOuts[0], s.walkOuts[1] = o0, o1
	return s1
}

func (s *safetyScanner) walk4(sym []byte, from int, s0 uint32) uint32 {
	sf := s.sf
	trans, cls, dend := sf.trans, &sf.cls, sf.denseEnd
	q := (len(sym) - from) / 4
	p1, p2, p3 := from+q, from+2*q, from+3*q
	s1, s2, s3 := sf.warm3(sym, p1, p2, p3)
	a, b, c, d := sym[from:p1], sym[p1:p2], sym[p2:p3], sym[p3:]
	b, c = b[:len(a)], c[:len(a)]
	o := &s.walkOuts
	for k, x := range a {
		var v0, v1, v2, v3 uint32
		c0, c1, c2, c3 := cls[x], cls[b[k]], cls[c[k]], cls[d[k]]
		if s0|s1|s2|s3 < dend { // all dense, the usual case: dend is a power of two
			v0, v1 = trans[s0+uint32(c0)], trans[s1+uint32(c1)]
			v2, v3 = trans[s2+uint32(c2)], trans[s3+uint32(c3)]
		} else {
			v0, v1, v2, v3 = sf.next(s0, c0), sf.next(s1, c1), sf.next(s2, c2), sf.next(s3, c3)
		}
		s0, s1, s2, s3 = v0&^1, v1&^1, v2&^1, v3&^1
		if (v0|v1|v2|v3)&1 != 0 {
			if v0&1 != 0 {
				o[0] = append(o[0], walkOut{int32(from + k), s0})
			}
			if v1&1 != 0 {
				o[1] = append(o[1], walkOut{int32(p1 + k), s1})
			}
			if v2&1 != 0 {
				o[2] = append(o[2], walkOut{int32(p2 + k), s2})
			}
			if v3&1 != 0 {
				o[3] = append(o[3], walkOut{int32(p3 + k), s3})
			}
		}
	}
	for k := len(a); k < len(d); k++ {
		v := sf.next(s3, cls[d[k]])
		if s3 = v &^ 1; v&1 != 0 {
			o[3] = append(o[3], walkOut{int32(p3 + k), s3})
		}
	}
	return s3
}
