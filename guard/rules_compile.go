package guard

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"unsafe"
)

// A written phrase is matched in segments: runs of whole words whose (a|b) groups stand for at
// most maxSegmentForms patterns each. A phrase of many groups would otherwise multiply out
// into tens of thousands of patterns; in segments their counts add up instead. The scanner
// joins a segment to the one before when that ended on the word before.
const (
	maxSegmentForms = 1024
	maxSegments     = 32
)

// stopWords are words so common that a segment made of them only would fire on most
// sentences.
var stopWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an the to of and or in on at for with by from as is are was
		were be been it its this that these those you your yours my me i we our us they them their
		he him his she her not no do does did can could will would should may might must how what
		which who when where why all any some so but if then than there here now just about like up
		out into over more one has have had get got make made s t re m ve ll d`) {
		stopWords[w] = true
	}
}

// phraseUnit is a run of words with no space outside its groups: "(a|b)", "kill(s|ed|)", "x".
type phraseUnit struct {
	text      string
	forms     int
	empty     bool // a form normalises to nothing
	stopOrNil bool // a form is empty or stop words only
}

// splitPhrase cuts a phrase into segments at the spaces between groups, so that no segment
// stands for more than maxSegmentForms patterns or has a form of stop words only, and the
// segments together stand for as few patterns as they can.
func splitPhrase(norm *normLane, p string) ([]string, error) {
	depth := 0
	for _, c := range []byte(p) {
		switch c {
		case '(':
			if depth++; depth > 1 {
				return nil, errors.New("groups do not nest")
			}
		case ')':
			if depth--; depth < 0 {
				return nil, errors.New("')' without '('")
			}
		}
	}
	if depth != 0 {
		return nil, errors.New("'(' without ')'")
	}
	var units []phraseUnit
	start, empty := 0, true
	for i := 0; i <= len(p); i++ {
		switch {
		case i < len(p) && p[i] == '(':
			depth++
		case i < len(p) && p[i] == ')':
			depth--
		case i == len(p) || p[i] == ' ' && depth == 0:
			if t := strings.TrimSpace(p[start:i]); t != "" {
				alts, err := expandPhrase(t)
				if err != nil {
					return nil, err
				}
				u := phraseUnit{text: t, forms: len(alts)}
				for _, a := range alts {
					words := strings.Fields(string(norm.normalize(nil, []byte(a))))
					u.empty = u.empty || len(words) == 0
					u.stopOrNil = u.stopOrNil || !slices.ContainsFunc(words, func(w string) bool { return !stopWords[w] })
				}
				units, empty = append(units, u), empty && u.empty
			}
			start = i + 1
		}
	}
	if empty {
		return nil, errors.New("nothing left to match after normalisation")
	}
	// best[j]: least cost of cutting units[:j]; cost: forms, plus a large penalty for a
	// segment that fires on stop words. A segment that can be empty cannot stand alone.
	const stopPenalty = 1 << 20
	inf := math.MaxInt / 2
	best, cut := make([]int, len(units)+1), make([]int, len(units)+1)
	for j := 1; j <= len(units); j++ {
		best[j] = inf
		forms, empty, stop := 1, true, true
		for i := j - 1; i >= 0; i-- {
			u := units[i]
			forms, empty, stop = forms*u.forms, empty && u.empty, stop && u.stopOrNil
			if forms > maxSegmentForms {
				break
			}
			if empty || best[i] == inf {
				continue
			}
			c := best[i] + forms
			if stop {
				c += stopPenalty
			}
			if c < best[j] {
				best[j], cut[j] = c, i
			}
		}
	}
	if best[len(units)] == inf {
		return nil, fmt.Errorf("more than %d forms in a run of words that cannot be split", maxSegmentForms)
	}
	var segs []string
	for j := len(units); j > 0; j = cut[j] {
		var b strings.Builder
		for _, u := range units[cut[j]:j] {
			b.WriteString(u.text)
			b.WriteByte(' ')
		}
		segs = append(segs, strings.TrimSpace(b.String()))
	}
	slices.Reverse(segs)
	if len(segs) > maxSegments {
		return nil, fmt.Errorf("more than %d segments", maxSegments)
	}
	return segs, nil
}

// expandPhrase expands the (a|b|c) groups of a phrase: "(ignore|forget) (all|) rules" is
// four phrases and "kill(s|ed|)" three. An empty branch makes a group optional.
func expandPhrase(p string) ([]string, error) {
	out := []string{""}
	for p != "" {
		i := strings.IndexAny(p, "()")
		if i < 0 {
			i = len(p)
		}
		for k := range out {
			out[k] += p[:i]
		}
		if p = p[i:]; p == "" {
			break
		}
		j := strings.IndexByte(p, ')')
		alts := strings.Split(p[1:j], "|")
		if len(out)*len(alts) > maxSegmentForms {
			return nil, fmt.Errorf("more than %d forms in a run of words that cannot be split", maxSegmentForms)
		}
		next := make([]string, 0, len(out)*len(alts))
		for _, o := range out {
			for _, a := range alts {
				next = append(next, o+a)
			}
		}
		out, p = next, p[j+1:]
	}
	return out, nil
}

// compileSafety builds the automaton for the rules.
func compileSafety(specs []ruleSpec) (*Safety, error) {
	return compileSafetyDense(specs, denseStates)
}

// compileSafetyDense is compileSafety with at most dense states given complete rows.
func compileSafetyDense(specs []ruleSpec, dense int) (*Safety, error) {
	return compileSafetyLayout(specs, dense, true)
}

// compileSafetyLayout is compileSafetyDense, with the phrases that share a form merged (see
// mergeSharedForms) or, for tests to compare with, kept apart.
func compileSafetyLayout(specs []ruleSpec, dense int, mergeForms bool) (*Safety, error) {
	s := &Safety{byID: make(map[string]int, len(specs))}
	patID := map[string]int32{}
	phraseID := map[string]int32{}
	var texts [][]byte
	var segRefs [][]segmentRef // per pattern
	var ruleRefs [][]ruleRef   // per phrase
	var norm []byte
	nl := &normLane{collect: true}
	for ri, r := range specs {
		s.rules = append(s.rules, safetyRule{id: r.id, cat: r.cat, sev: r.sev, near: len(r.near) > 0,
			unless: len(r.unless) > 0, next: len(r.unlessNext) > 0, prev: len(r.unlessPrev) > 0, within: r.within,
			unlessWithin: r.unlessWithin,
			order:        r.order})
		s.byID[r.id] = ri
		for role, list := range [][]phraseSpec{r.phrases, r.near, r.unless, r.unlessNext, r.unlessPrev} {
			for _, ph := range list {
				fail := func(format string, args ...any) error {
					return &RuleError{Line: ph.line, Rule: r.id, Msg: fmt.Sprintf("phrase %q: ", ph.text) + fmt.Sprintf(format, args...)}
				}
				key := strings.Join(strings.Fields(ph.text), " ")
				id, ok := phraseID[key]
				if !ok {
					segs, err := splitPhrase(nl, key)
					if err != nil {
						return nil, fail("%v", err)
					}
					id = int32(len(s.phrases))
					phraseID[key] = id
					s.phrases = append(s.phrases, safetyPhrase{nseg: uint8(len(segs))})
					ruleRefs = append(ruleRefs, nil)
					for k, seg := range segs {
						alts, err := expandPhrase(seg)
						if err != nil {
							return nil, fail("%v", err)
						}
						for _, a := range alts {
							norm = nl.normalize(append(norm[:0], ' '), []byte(a))
							if len(norm) == 1 {
								return nil, fail("%q has nothing left to match after normalisation", strings.TrimSpace(a))
							}
							if norm = append(norm, ' '); len(norm) >= ringSize {
								return nil, fail("too long: %d bytes normalised, at most %d", len(norm)-2, ringSize-3)
							}
							pid, ok := patID[string(norm)]
							if !ok {
								pid = int32(len(texts))
								patID[string(norm)] = pid
								texts = append(texts, slices.Clone(norm))
								segRefs = append(segRefs, nil)
							}
							if ref := (segmentRef{phrase: id, seg: uint8(k)}); !slices.Contains(segRefs[pid], ref) {
								segRefs[pid] = append(segRefs[pid], ref)
							}
						}
					}
				}
				ref := ruleRef{rule: int32(ri), role: uint8(role)}
				ref.setAct(&s.rules[ri])
				if slices.ContainsFunc(ruleRefs[id], func(o ruleRef) bool { return o.rule == ref.rule && o.role != ref.role }) {
					return nil, fail("in two of phrases, near, unless, unless_next and unless_prev")
				}
				if uint8(role) == roleNext {
					w, err := phraseWords(nl, key)
					if err != nil {
						return nil, fail("%v", err)
					}
					s.rules[ri].nextWords = max(s.rules[ri].nextWords, w)
				}
				if !slices.Contains(ruleRefs[id], ref) {
					ruleRefs[id] = append(ruleRefs[id], ref)
				}
			}
		}
	}
	for id, refs := range ruleRefs {
		ph := &s.phrases[id]
		ph.refs, ph.nref = int32(len(s.ruleRefs)), int32(len(refs))
		ph.reach = -1
		for _, ref := range refs {
			r := &s.rules[ref.rule]
			ph.context = ph.context || r.near || r.unless || r.prev
			// The reach is how long a stream holds the phrase back (see earliest): a match of
			// a near rule starts at its earlier phrase, so only a phrase that its rule's
			// order lets come first is held, not a near phrase of a near_last rule or a main
			// phrase of a near_first one, which can only end a match.
			first := ref.role == roleMain && r.order != orderNearFirst || ref.role == roleNear && r.order != orderNearLast
			if r.near && first {
				ph.reach = max(ph.reach, int16(r.within))
			}
		}
		s.maxReach = max(s.maxReach, int(ph.reach))
		s.ruleRefs = append(s.ruleRefs, refs...)
	}
	for id, t := range texts {
		s.pats = append(s.pats, safetyPattern{n: int32(len(t)), words: int32(strings.Count(string(t), " ") - 1),
			refs: int32(len(s.segRefs)), nref: int32(len(segRefs[id]))})
		s.segRefs = append(s.segRefs, segRefs[id]...)
	}
	if err := s.build(texts, dense); err != nil {
		return nil, err
	}
	s.buildTokens(texts)
	s.buildPairs(texts)
	s.buildTriples(texts)
	if mergeForms {
		s.mergeSharedForms()
	}
	s.flattenOutputs()
	return s, nil
}

// phraseWords returns the most words a normalised form of phrase has.
func phraseWords(nl *normLane, phrase string) (int, error) {
	segs, err := splitPhrase(nl, phrase)
	if err != nil {
		return 0, err
	}
	total := 0
	var norm []byte
	for _, seg := range segs {
		alts, err := expandPhrase(seg)
		if err != nil {
			return 0, err
		}
		most := 0
		for _, a := range alts {
			norm = nl.normalize(append(norm[:0], ' '), []byte(a))
			most = max(most, len(strings.Fields(string(norm))))
		}
		total += most
	}
	return total, nil
}

// mergeSharedForms gives each run of one-segment phrases that a pattern is a form of, next to
// each other in its list, a phrase of its own that stands for all of them: its rule refs are
// theirs, in their order, duplicates kept, so that a scan makes the same calls in the same
// order. Phrases written with alternatives share forms ("(write|create) code" and "write (me|us)"
// both have "write ..."-like forms, and one word may be a near or unless phrase of a dozen
// rules); without this a scan of ordinary text reported and remembered one hit per phrase for
// each such word. What changes is the lane's hit ring (hitRing hits): it holds one hit where it
// held a copy per phrase, so a word repeated a few times no longer pushes an earlier near
// partner or segment out of it, and matches that the copies hid are found
// (TestMergedFormsCheck).
func (s *Safety) mergeSharedForms() {
	merged := map[string]int32{}
	var segRefs []segmentRef
	var run []int32
	flush := func() {
		switch len(run) {
		case 0:
			return
		case 1:
			segRefs = append(segRefs, segmentRef{phrase: run[0]})
			run = run[:0]
			return
		}
		key := fmt.Sprint(run)
		id, ok := merged[key]
		if !ok {
			id = int32(len(s.phrases))
			merged[key] = id
			ph := safetyPhrase{nseg: 1, reach: -1, refs: int32(len(s.ruleRefs))}
			for _, from := range run {
				f := &s.phrases[from]
				ph.context = ph.context || f.context
				ph.reach = max(ph.reach, f.reach)
				s.ruleRefs = append(s.ruleRefs, s.ruleRefs[f.refs:f.refs+f.nref]...)
			}
			ph.nref = int32(len(s.ruleRefs)) - ph.refs
			s.phrases = append(s.phrases, ph)
		}
		segRefs = append(segRefs, segmentRef{phrase: id})
		run = run[:0]
	}
	for pid := range s.pats {
		p := &s.pats[pid]
		start := int32(len(segRefs))
		for _, ref := range s.segRefs[p.refs : p.refs+p.nref] {
			if s.phrases[ref.phrase].nseg == 1 {
				run = append(run, ref.phrase)
				continue
			}
			flush()
			segRefs = append(segRefs, ref)
		}
		flush()
		p.refs, p.nref = start, int32(len(segRefs))-start
	}
	s.segRefs = segRefs
}

// flattenOutputs lists, per state, the segments that its patterns complete, so that a scan
// reads one run of outRefs where it would go from outs to pats to segRefs to phrases.
func (s *Safety) flattenOutputs() {
	s.outRefStart = make([]uint32, len(s.outStart))
	for si := range len(s.outStart) - 1 {
		for _, pid := range s.outs[s.outStart[si]:s.outStart[si+1]] {
			p := &s.pats[pid]
			for _, ref := range s.segRefs[p.refs : p.refs+p.nref] {
				s.outRefs = append(s.outRefs, outRef{key: ref.phrase<<8 | int32(ref.seg) + 1, n: p.n, words: p.words,
					last: int(ref.seg)+1 == int(s.phrases[ref.phrase].nseg)})
			}
		}
		s.outRefStart[si+1] = uint32(len(s.outRefs))
	}
}

// strideInverse returns the multiplier with which stateNum divides a dense id by stride (even,
// at least 2): st*inv>>32 is st/stride for every multiple st of stride below 1<<32, since
// st*inv = q<<32 + q*stride*e for st = q*stride and inv = 1<<32/stride + e, 0 < e <= 1, and
// q*stride*e <= st < 1<<32. Dense ids are below 1<<31 (see build's check), whatever the rules.
func strideInverse(stride uint32) uint64 { return 1<<32/uint64(stride) + 1 }

// build makes the Aho-Corasick automaton of the patterns. States are numbered breadth first;
// the first dense of them, where a scan of ordinary text spends nearly all its time, get a
// complete row of transitions, and the deeper ones, nearly all a chain of one child each,
// only their children and failure link (see Safety.sparseNext). A full DFA of the default
// rules was 26 MB of rows; this is a few MB, and the build never makes the full table.
func (s *Safety) build(pats [][]byte, maxDense int) error {
	var used [256]bool
	for _, p := range pats {
		for _, c := range p {
			used[c] = true
		}
	}
	n := uint32(1) // class 0: bytes in no pattern
	for c := range used {
		if used[c] {
			s.cls[c] = uint8(n)
			n++
		}
	}
	stride := n + n&1 // even, so that bit 0 of a premultiplied state is free for the output flag
	s.stride = stride
	s.strideInv = strideInverse(stride)

	// The trie, with children as sibling lists; node 0 is the root.
	child, sibling, label := []int32{-1}, []int32{-1}, []uint8{0}
	own := []int32{-1}
	for id, p := range pats {
		u := int32(0)
		for _, b := range p {
			c := s.cls[b]
			v := child[u]
			for v >= 0 && label[v] != c {
				v = sibling[v]
			}
			if v < 0 {
				v = int32(len(label))
				child, sibling, label, own = append(child, -1), append(sibling, child[u]), append(label, c), append(own, -1)
				child[u] = v
			}
			u = v
		}
		own[u] = int32(id)
	}
	nodes := len(label)
	if uint64(nodes)*2+2*uint64(min(nodes, maxDense))*uint64(stride) >= 1<<31 {
		return &RuleError{Msg: fmt.Sprintf("rules too large: %d automaton states", nodes)}
	}

	// Breadth first, children in class order, so that the children of a state are
	// consecutive and after it, and a failure link points to an earlier state.
	order := make([]int32, 1, nodes)
	var kids [64]int32
	for h := 0; h < len(order); h++ {
		k := 0
		for v := child[order[h]]; v >= 0; v = sibling[v] {
			kids[k] = v
			k++
		}
		slices.SortFunc(kids[:k], func(a, b int32) int { return int(label[a]) - int(label[b]) })
		order = append(order, kids[:k]...)
	}
	num := make([]int32, nodes) // trie node -> state number
	for i, u := range order {
		num[u] = int32(i)
	}
	dense := max(1, min(nodes, maxDense))
	s.dense = uint32(dense)
	// Sparse ids start at a power of two, so that a walk tells that several states are all
	// dense from their bitwise or.
	s.denseEnd = uint32(1) << bits.Len32(uint32(dense)*stride-1)
	s.trans = make([]uint32, dense*int(stride))
	sparse := nodes - dense
	s.first = make([]uint32, sparse+1)
	s.label = make([]uint8, sparse)
	s.fail = make([]uint32, sparse)
	s.depth = make([]uint8, nodes)
	s.outStart = make([]uint32, nodes+1)
	fail := make([]int32, nodes) // by state number
	next := int32(1)             // the number of the first child of the state being numbered
	for i, u := range order {
		si := int32(i)
		if i > 0 {
			// A state's outputs: its own pattern, then those of its failure state, which
			// comes earlier and is done.
			if own[u] >= 0 {
				s.outs = append(s.outs, own[u])
			}
			f := fail[si]
			s.outs = append(s.outs, s.outs[s.outStart[f]:s.outStart[f+1]]...)
		} else if own[u] >= 0 {
			s.outs = append(s.outs, own[u])
		}
		s.outStart[si+1] = uint32(len(s.outs))
		firstKid := next
		for v := child[u]; v >= 0; v = sibling[v] {
			next++
		}
		if si >= int32(dense) {
			s.first[si-int32(dense)] = uint32(firstKid)
			s.fail[si-int32(dense)] = uint32(fail[si])
		}
		// The failure link of each child: where the failure state goes on its label.
		for v := child[u]; v >= 0; v = sibling[v] {
			cv := num[v]
			s.depth[cv] = s.depth[si] + 1
			s.maxDepth = max(s.maxDepth, s.depth[cv])
			if cv >= int32(dense) { // set now: a later state's failure state may look it up
				s.label[cv-int32(dense)] = label[v]
			}
			if si == 0 {
				fail[cv] = 0
			} else {
				fail[cv] = int32(s.stateNum(s.next(s.stateID(uint32(fail[si])), label[v]) &^ 1))
			}
		}
		if si < int32(dense) {
			row := s.trans[si*int32(stride) : (si+1)*int32(stride)]
			if si > 0 {
				copy(row, s.trans[fail[si]*int32(stride):(fail[si]+1)*int32(stride)])
			} else {
				for c := range row {
					row[c] = 0
				}
			}
			for v := child[u]; v >= 0; v = sibling[v] {
				row[label[v]] = s.stateID(uint32(num[v])) // flags below, once outputs are known
			}
		}
	}
	s.first[sparse] = uint32(next)
	// Bit 0 of a dense transition: the state it goes to has outputs.
	for k, t := range s.trans {
		if sn := s.stateNum(t); s.outStart[sn+1] > s.outStart[sn] {
			s.trans[k] = t | 1
		}
	}
	s.start = s.next(0, s.cls[' ']) &^ 1
	return nil
}

// denseStates is how many states, breadth first, get a complete row of transitions. Scans
// of chat text spend about 99% of their symbol steps in the first 16384 states of the
// default rules, about 88% in the first 4096; but the walk now steps symbol by symbol only
// through the third and later tokens of a pattern under way (see safetyScanner.walk), rare
// enough that rows for 16384 states (2.9 MB, against 0.7 MB) gained nothing measurable.
const denseStates = 1 << 12

// stateID returns the id of state number n: premultiplied by the stride for a dense state,
// above denseEnd and even for a sparse one.
func (s *Safety) stateID(n uint32) uint32 {
	if n < s.dense {
		return n * s.stride
	}
	return s.denseEnd + (n-s.dense)*2
}

// stateNum returns the number of the state with id st (bit 0 ignored).
func (s *Safety) stateNum(st uint32) uint32 {
	if st < s.denseEnd {
		// A division, whose latency report waits on for every output, as a multiplication
		// (see strideInv).
		return uint32(uint64(st&^1) * s.strideInv >> 32)
	}
	return s.dense + (st-s.denseEnd)>>1
}

// next returns the transition from state id st on class c, with bit 0 set when the state
// it goes to has outputs.
func (s *Safety) next(st uint32, c uint8) uint32 {
	if st < s.denseEnd {
		return s.trans[st+uint32(c)]
	}
	return s.sparseNext(st, c)
}

// sparseNext is next from a sparse state: a child of its own if it has one on c, else the
// failure state's transition. Failure states are shallower, so the chain ends, mostly one
// or two links on, in a dense row.
func (s *Safety) sparseNext(st uint32, c uint8) uint32 {
	n := (st - s.denseEnd) >> 1 // index in the sparse arrays
	for {
		for k := s.first[n]; k < s.first[n+1]; k++ {
			if s.label[k-s.dense] == c {
				id := s.denseEnd + (k-s.dense)*2
				if s.outStart[k+1] > s.outStart[k] {
					id |= 1
				}
				return id
			}
		}
		f := s.fail[n]
		if f < s.dense {
			return s.trans[f*s.stride+uint32(c)]
		}
		n = f - s.dense
	}
}

// automatonSize returns the bytes the automaton's tables take: transitions, sparse states, depths,
// output lists and the token table.
func (s *Safety) automatonSize() int {
	return int(unsafe.Sizeof(tokenEntry{}))*len(s.tokens) + len(s.tokenRest) + int(unsafe.Sizeof(tokenPair{}))*(len(s.pairs)+len(s.triples)) +
		4*len(s.trans) + 4*len(s.first) + len(s.label) + 4*len(s.fail) + len(s.depth) +
		4*len(s.outStart) + 4*len(s.outs) + 4*len(s.outRefStart) + int(unsafe.Sizeof(outRef{}))*len(s.outRefs)
}
