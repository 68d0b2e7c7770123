package guard

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
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
			unless: len(r.unless) > 0, within: r.within, unlessWithin: r.unlessWithin, order: r.order})
		s.byID[r.id] = ri
		for role, list := range [][]phraseSpec{r.phrases, r.near, r.unless} {
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
				if slices.ContainsFunc(ruleRefs[id], func(o ruleRef) bool { return o.rule == ref.rule && o.role != ref.role }) {
					return nil, fail("in two of phrases, near and unless")
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
			ph.context = ph.context || r.near || r.unless
			if r.near && ref.role != roleUnless {
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
	if err := s.build(texts); err != nil {
		return nil, err
	}
	return s, nil
}

// build makes the Aho-Corasick automaton of the patterns, complete as a DFA.
func (s *Safety) build(pats [][]byte) error {
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

	next := make([]int32, stride) // trie, then goto function; node 0 is the root
	depth := []uint8{0}
	own := []int32{-1}
	for id, p := range pats {
		u := int32(0)
		for _, c := range p {
			k := uint32(u)*stride + uint32(s.cls[c])
			if next[k] == 0 {
				next[k] = int32(len(depth))
				next = slices.Grow(next, int(stride)) // the new row: fresh memory, zero
				next = next[:len(next)+int(stride)]
				depth = append(depth, depth[u]+1)
				own = append(own, -1)
			}
			u = next[k]
		}
		own[u] = int32(id)
	}
	nodes := len(depth)
	if uint64(nodes)*uint64(stride) >= 1<<31 {
		return &RuleError{Msg: fmt.Sprintf("rules too large: %d automaton states", nodes)}
	}

	// Breadth first: failure links, missing transitions and output lists.
	fail := make([]int32, nodes)
	order := make([]int32, 0, nodes)
	lists := make([][]int32, nodes)
	for c := range stride {
		if v := next[c]; v != 0 {
			order = append(order, v)
		}
	}
	for h := 0; h < len(order); h++ {
		u := order[h]
		if own[u] >= 0 {
			lists[u] = append(lists[u], own[u])
		}
		lists[u] = append(lists[u], lists[fail[u]]...)
		for c := range stride {
			k := uint32(u)*stride + c
			f := next[uint32(fail[u])*stride+c]
			if v := next[k]; v != 0 {
				fail[v] = f
				order = append(order, v)
			} else {
				next[k] = f
			}
		}
	}

	// Number the states breadth first, so that the shallow ones, where a scan of ordinary
	// text spends nearly all its time, share a few pages of the table.
	num := make([]uint32, nodes)
	for i, u := range order {
		num[u] = uint32(i + 1)
	}
	s.trans = make([]uint32, len(next))
	s.depth = make([]uint8, nodes)
	s.outStart = make([]uint32, nodes+1)
	for i := -1; i < len(order); i++ {
		u := int32(0)
		if i >= 0 {
			u = order[i]
		}
		nu := num[u]
		s.depth[nu] = depth[u]
		s.outs = append(s.outs, lists[u]...)
		s.outStart[nu+1] = uint32(len(s.outs))
		for c := range stride {
			v := next[uint32(u)*stride+c]
			t := num[v] * stride
			if len(lists[v]) > 0 {
				t |= 1
			}
			s.trans[nu*stride+c] = t
		}
	}
	s.start = s.trans[s.cls[' ']] &^ 1
	return nil
}
