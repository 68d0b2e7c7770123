package guard

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"weak"
)

// Safety categories that are not Llama Guard 3 hazards. Hazards use their codes "S1" to "S14".
const (
	CategoryPromptInjection        = "prompt_injection"
	CategoryJailbreak              = "jailbreak"
	CategorySystemPromptExtraction = "system_prompt_extraction"
)

// hazardNames are the Llama Guard 3 hazard categories S1 to S14, in order.
var hazardNames = [...]string{
	"violent_crimes", "non_violent_crimes", "sex_related_crimes", "child_sexual_exploitation",
	"defamation", "specialized_advice", "privacy", "intellectual_property",
	"indiscriminate_weapons", "hate", "suicide_self_harm", "sexual_content", "elections",
	"code_interpreter_abuse",
}

var hazardCodes = [...]string{"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11",
	"S12", "S13", "S14"}

// CategoryName returns the snake_case name of a category code: "S1" -> "violent_crimes".
// Other codes are their own names.
func CategoryName(code string) string {
	for i, c := range hazardCodes {
		if c == code {
			return hazardNames[i]
		}
	}
	return code
}

// Severity ranks a rule. The gateway may act on some severities only.
type Severity uint8

// Severities.
const (
	SeverityLow Severity = iota + 1
	SeverityMedium
	SeverityHigh
)

// String returns "low", "medium" or "high".
func (v Severity) String() string {
	switch v {
	case SeverityLow:
		return "low"
	case SeverityMedium:
		return "medium"
	case SeverityHigh:
		return "high"
	}
	return "unknown"
}

// SafetyOptions configures NewSafety.
type SafetyOptions struct {
	Rules []byte // YAML rule set (format in rules/default.yaml); nil = built-in default
}

// SafetyMatch is one rule that matched. Start and End are byte offsets in the text checked
// (in a stream: since its start); both are -1 when the match is inside a decoded base64 or
// hex segment.
type SafetyMatch struct {
	Category string // "prompt_injection", "jailbreak", "system_prompt_extraction", "S1".."S14", or a custom name
	Rule     string // rule id
	Start    int
	End      int
}

// Safety matches safety rules against text. It is immutable and safe for concurrent use.
type Safety struct {
	// Aho-Corasick automaton over normalised text (built in rules_compile.go). States are
	// numbered breadth first. The first dense have complete rows: the id of such a state is
	// its number premultiplied by stride, and trans[id+class] is the next state's id, with
	// bit 0 set when it has outputs. The others are sparse: id denseEnd+2*(number-dense),
	// their children are the states first[i]..first[i+1]-1 (i = number-dense), labelled
	// label[child-dense], and fail[i] is their failure state's number.
	cls      [256]uint8
	stride   uint32
	start    uint32 // state after the implicit space before the text
	dense    uint32
	denseEnd uint32 // a power of two at least dense*stride: ids below are dense
	trans    []uint32
	first    []uint32
	label    []uint8
	fail     []uint32
	depth    []uint8  // per state number: length of the pattern prefix it stands for
	maxDepth uint8    // the longest pattern, at most ringSize-1
	outStart []uint32 // per state number: its patterns are outs[outStart[i]:outStart[i+1]]
	outs     []int32
	// The same outputs as the segments they complete: a state's are
	// outRefs[outRefStart[i]:outRefStart[i+1]].
	outRefStart []uint32
	outRefs     []outRef
	strideInv   uint64 // 1<<32/stride + 1: stateNum divides by stride with it (see build)
	// Every token of the patterns, for walks that skip the tokens in none (see
	// safetyScanner.walk): an open-addressing table, home slot by tokenSlot, and the symbols
	// of the tokens longer than eight.
	tokens      []tokenEntry
	tokenRest   []byte
	tokenShift  uint8
	pairs       []tokenPair // the first two tokens of the patterns (see buildPairs)
	pairShift   uint8
	triples     []tokenPair // the first three tokens of the patterns (see buildTriples)
	tripleShift uint8

	pats     []safetyPattern
	segRefs  []segmentRef
	phrases  []safetyPhrase
	ruleRefs []ruleRef
	rules    []safetyRule
	maxReach int // the largest reach of a phrase
	byID     map[string]int
	pool     sync.Pool // *safetyScanner
	stream   sync.Pool // *SafetyStream
}

// safetyPattern is one normalised form of a phrase segment, " like this ", spaces included.
type safetyPattern struct {
	n, words   int32 // symbols, tokens
	refs, nref int32 // segRefs[refs:refs+nref]: the segments it is a form of
}

// outRef is a segment that a pattern completes, with what report needs of the pattern.
type outRef struct {
	key      int32 // phrase<<8 | seg+1, as a remembered hit of the segment is keyed
	n, words int32 // the pattern's symbols and tokens
	last     bool  // the phrase's last segment: the phrase is seen
}

// segmentRef names segment seg of a phrase.
type segmentRef struct {
	phrase int32
	seg    uint8
}

// safetyPhrase is a phrase as written, matched in nseg segments.
type safetyPhrase struct {
	nseg       uint8
	context    bool  // a rule with near or unless phrases uses it: lanes remember where it was seen
	reach      int16 // words after it that a near rule may still pair it across as the earlier phrase; -1 none
	refs, nref int32 // ruleRefs[refs:refs+nref]: the rules that use it, and how
}

// ruleRef ties a phrase to a rule, with what phrase needs of the rule, so that a phrase seen,
// which in ordinary text nearly always leads to nothing, costs no read of the rule.
type ruleRef struct {
	rule   int32
	role   uint8 // roleMain, roleNear, roleUnless, roleNext or rolePrev
	act    uint8 // what a sighting does for the rule: actMatch, actCancel, actNear or actNone
	other  uint8 // actNear: the role of the phrases it pairs with
	within uint8 // actNear: the rule's within, at most maxWithin
}

// What a sighting of a phrase does for a rule that uses it (see phrase).
const (
	actNone   uint8 = iota // an unless phrase, or a near rule's phrase that its order lets come first only
	actMatch               // a match: the rule has no near phrases
	actCancel              // an unless_next phrase: it cancels a waiting match
	actNear                // pair it with an earlier phrase of the other role (see near)
)

// setAct fills in what a sighting of the phrase does for rule r (see ruleRef).
func (ref *ruleRef) setAct(r *safetyRule) {
	switch {
	case ref.role == roleMain && !r.near:
		ref.act = actMatch
	case ref.role == roleNext:
		ref.act = actCancel
	case ref.role == roleUnless, ref.role == rolePrev:
		ref.act = actNone
	default: // a near rule's main or near phrase: it comes after one of the other role
		ref.other, ref.within = roleNear, uint8(r.within)
		if ref.role == roleNear {
			ref.other = roleMain
		}
		ref.act = actNear
		if r.order == orderNearFirst && ref.other != roleNear || r.order == orderNearLast && ref.other != roleMain {
			ref.act = actNone
		}
	}
}

const (
	roleMain uint8 = iota
	roleNear
	roleUnless
	roleNext // unless_next: a phrase that starts on the word after a match cancels it
	rolePrev // unless_prev: a phrase that ends on the word before a match cancels it
)

// Orders a near rule may require.
const (
	orderAny uint8 = iota
	orderNearFirst
	orderNearLast
)

type safetyRule struct {
	id, cat      string
	sev          Severity
	near, unless bool // the rule has near phrases; unless phrases
	prev         bool // the rule has unless_prev phrases
	within       int  // near phrases: words apart at most
	unlessWithin int  // unless phrases: words before the match at most
	next         bool // the rule has unless_next phrases: its matches wait (see pending)
	nextWords    int  // the most words an unless_next phrase of the rule has
	order        uint8
}

// NewSafety compiles a rule set. A bad rule file is a *RuleError naming the rule and line.
// A Safety is immutable, so rule sets are compiled once and shared: the built-in rules for
// the life of the process, a custom rule set (by its content) for as long as a caller holds
// the Safety made of it, so that model aliases that share a rules file share one automaton.
func NewSafety(opts SafetyOptions) (*Safety, error) {
	if opts.Rules == nil {
		defaultSafety.once.Do(func() {
			defaultSafety.s, defaultSafety.err = newSafety(defaultSafetyRules)
		})
		return defaultSafety.s, defaultSafety.err
	}
	return cachedSafety(opts.Rules)
}

// safetyCache holds the custom rule sets compiled, by the SHA-256 of their text, weakly: an
// entry goes when its Safety is collected, so a config reload that changes a file does not
// keep the old automaton alive.
var safetyCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*safetyEntry
}

type safetyEntry struct {
	done chan struct{} // closed once s and err are set
	s    weak.Pointer[Safety]
	err  error
}

// cachedSafety returns the Safety of a custom rule set, compiling it once however many
// callers ask at the same time.
func cachedSafety(rules []byte) (*Safety, error) {
	key := sha256.Sum256(rules)
	c := &safetyCache
	for {
		c.mu.Lock()
		e, ok := c.m[key]
		if !ok {
			break // c.mu is held
		}
		c.mu.Unlock()
		<-e.done
		if e.err != nil {
			return nil, e.err
		}
		if s := e.s.Value(); s != nil {
			return s, nil
		}
		c.mu.Lock() // collected: drop the entry, unless someone already has
		if c.m[key] == e {
			delete(c.m, key)
		}
		c.mu.Unlock()
	}
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]*safetyEntry)
	}
	e := &safetyEntry{done: make(chan struct{})}
	c.m[key] = e
	c.mu.Unlock()

	s, err := newSafety(rules)
	e.err = err
	if err == nil {
		e.s = weak.Make(s)
		runtime.AddCleanup(s, dropSafety, key)
	}
	close(e.done)
	if err != nil { // a bad file may be fixed and reread: do not keep the error
		dropSafety(key)
	}
	return s, err
}

// dropSafety removes the cache entry of key once its Safety is gone (or failed to compile).
func dropSafety(key [sha256.Size]byte) {
	c := &safetyCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		select {
		case <-e.done:
			if e.err != nil || e.s.Value() == nil {
				delete(c.m, key)
			}
		default: // being compiled anew
		}
	}
}

var defaultSafety struct {
	once sync.Once
	s    *Safety
	err  error
}

func newSafety(rules []byte) (*Safety, error) {
	specs, err := parseSafetyRules(rules)
	if err != nil {
		return nil, err
	}
	return compileSafety(specs)
}

// Severity returns the severity of the rule with the given id, or 0 when there is none.
func (s *Safety) Severity(rule string) Severity {
	if i, ok := s.byID[rule]; ok {
		return s.rules[i].sev
	}
	return 0
}

// Check appends the rule matches in text to dst, in the order they are found: by where they
// end, and a match inside an encoded segment where the segment's text was read. A stream
// finds the same matches in the same order, however the text is cut. Check does not allocate
// unless dst must grow (its scratch, about 60 KB, is pooled).
func (s *Safety) Check(dst []SafetyMatch, text []byte) []SafetyMatch {
	sc, _ := s.pool.Get().(*safetyScanner)
	if sc == nil {
		sc = s.newScanner(checkBlock)
	}
	sc.reset()
	sc.out = dst
	sc.feed(text)
	sc.finish()
	dst = sc.out
	sc.out = nil
	s.pool.Put(sc)
	return dst
}

// report handles the patterns that end at the symbol lane l just took.
func (s *safetyScanner) report(l *normLane) {
	sf := s.sf
	si := sf.stateNum(l.state)
	w1 := l.words - 1
	main := l == &s.main
	if len(l.pending) > 0 {
		s.settle(l, w1-1)
	}
	var h seenAt // set field by field: see remember
	for _, o := range sf.outRefs[sf.outRefStart[si]:sf.outRefStart[si+1]] {
		h.key, h.w0, h.w1, h.st, h.en = o.key, w1-int(o.words)+1, w1, -1, -1
		// The input spans are read once a segment is known to count: most joins fail.
		if o.key&0xff > 1 { // join the segment before, which must end on the word before
			p := l.seen(h.key-1, h.w0-1)
			if p == nil {
				continue
			}
			h.w0, h.st = p.w0, p.st
		} else if main {
			h.st = l.symSt(l.n - int(o.n) + 1)
		}
		if main {
			h.en = l.symEn(l.n - 2)
		}
		if !o.last {
			l.remember(&h)
		} else {
			h.key &^= 0xff
			s.phrase(l, &sf.phrases[h.key>>8], &h)
		}
	}
}

// seen returns the latest remembered hit of key that ends on word w, or nil.
func (l *normLane) seen(key int32, w int) *seenAt {
	for k := 1; k <= min(l.nhits, hitRing); k++ {
		o := &l.hits[(l.nhits-k)&(hitRing-1)]
		if o.w1 < w {
			return nil
		}
		if o.key == key && o.w1 == w {
			return o
		}
	}
	return nil
}

// remember adds h to the lane's recent hits. It copies field by field: a whole-struct copy
// reads h with wide loads that the narrow stores which just built it cannot forward to, a
// stall that once made this the most expensive line of a scan.
func (l *normLane) remember(h *seenAt) {
	o := &l.hits[l.nhits&(hitRing-1)]
	o.key, o.w0, o.w1, o.st, o.en = h.key, h.w0, h.w1, h.st, h.en
	l.nhits++
}

// phrase handles a whole phrase seen at h.
func (s *safetyScanner) phrase(l *normLane, ph *safetyPhrase, h *seenAt) {
	sf := s.sf
	refs := sf.ruleRefs[ph.refs : ph.refs+ph.nref]
	for _, ref := range refs {
		switch ref.act {
		case actMatch:
			s.match(l, ref.rule, h)
		case actCancel:
			l.cancel(ref.rule, h.w0)
		case actNear:
			if l.mayHave(ref.rule, ref.other, h.w0, int(ref.within)) {
				s.near(l, ref, h)
			}
		}
	}
	if ph.context {
		l.remember(h)
		// Note, per rule and role, the last word of this latest hit, so that near and match
		// can tell without reading the hits whether any is close enough to look for.
		for _, ref := range refs {
			if ref.role < roleNext { // latest has entries for the first three roles only
				l.latest[int(ref.rule)*3+int(ref.role)] = latestHit{gen: l.gen, w1: h.w1}
			}
		}
	}
}

// latestHit is the last word of the latest remembered phrase that a rule uses in a role, in
// the lane's generation gen (an older generation's is stale).
type latestHit struct {
	gen uint32
	w1  int
}

// mayHave reports whether a phrase that rule ri uses in role may have been seen, ending no
// more than within words before word w0: false means none was. It spares near and match,
// which nearly always find nothing in ordinary text, a walk over the lane's recent hits.
func (l *normLane) mayHave(ri int32, role uint8, w0, within int) bool {
	e := &l.latest[int(ri)*3+int(role)]
	return e.gen == l.gen && w0-e.w1-1 <= within
}

// role reports whether the remembered hit o is of a whole phrase that rule uses in role.
func (sf *Safety) role(o *seenAt, rule int32, role uint8) bool {
	if o.key&0xff != 0 {
		return false // a segment
	}
	ph := &sf.phrases[o.key>>8]
	for _, ref := range sf.ruleRefs[ph.refs : ph.refs+ph.nref] {
		if ref.rule == rule && ref.role == role {
			return true
		}
	}
	return false
}

// near pairs a phrase of a near rule (ref.act is actNear) with the latest phrase of the other
// role that ends, not too far, before it starts.
func (s *safetyScanner) near(l *normLane, ref ruleRef, h *seenAt) {
	sf := s.sf
	for k := 1; k <= min(l.nhits, hitRing); k++ {
		o := &l.hits[(l.nhits-k)&(hitRing-1)]
		if h.w0-o.w1-1 > int(ref.within) {
			return // hits are in word order: older ones are further away
		}
		if o.w1 < h.w0 && sf.role(o, ref.rule, ref.other) {
			m := *h
			if m.st >= 0 {
				m.st = min(m.st, o.st)
			}
			m.w0 = o.w0
			s.match(l, ref.rule, &m)
			return
		}
	}
}

// match appends a match of rule ri spanning h, unless one of the rule's unless phrases ends
// shortly before it, or one of its unless_prev phrases on the word right before it.
func (s *safetyScanner) match(l *normLane, ri int32, h *seenAt) {
	r := &s.sf.rules[ri]
	if r.unless && l.mayHave(ri, roleUnless, h.w0, r.unlessWithin) {
		for k := 1; k <= min(l.nhits, hitRing); k++ {
			o := &l.hits[(l.nhits-k)&(hitRing-1)]
			if h.w0-o.w1-1 > r.unlessWithin {
				break
			}
			if o.w1 < h.w0 && s.sf.role(o, ri, roleUnless) {
				return
			}
		}
	}
	if r.prev {
		for k := 1; k <= min(l.nhits, hitRing); k++ {
			o := &l.hits[(l.nhits-k)&(hitRing-1)]
			if o.w1 < h.w0-1 {
				break // hits are in word order: older ones end further back
			}
			if o.w1 == h.w0-1 && s.sf.role(o, ri, rolePrev) {
				return
			}
		}
	}
	if s.last.lane == l && s.last.rule == ri && s.last.start == h.st && h.st >= 0 {
		return // the same phrase with optional words at its end
	}
	s.last.lane, s.last.rule, s.last.start = l, ri, h.st
	if r.next { // wait for the words after it, which an unless_next phrase may start
		l.pending = append(l.pending, pendingMatch{rule: ri, h: *h, until: h.w1 + r.nextWords})
		return
	}
	s.emit(l, ri, h)
}

// pendingMatch is a match of a rule with unless_next phrases, waiting until a phrase seen
// after it has ended past word until: then none of its unless_next phrases can still start
// on the word after it.
type pendingMatch struct {
	rule  int32
	h     seenAt
	until int
}

// cancel drops the waiting matches of rule ri that end on the word before w0, where one of
// its unless_next phrases starts.
func (l *normLane) cancel(ri int32, w0 int) {
	k := 0
	for _, p := range l.pending {
		if p.rule != ri || p.h.w1+1 != w0 {
			l.pending[k] = p
			k++
		}
	}
	l.pending = l.pending[:k]
}

// settle emits the waiting matches of lane l that no unless_next phrase can cancel any more:
// those whose unless_next phrases would have ended by word done, which the lane has read and
// reported. It runs before the phrases that end on a later word are handled, after a walk of
// the main lane, and when a lane ends, so a match waits at most for the next words.
func (s *safetyScanner) settle(l *normLane, done int) {
	k := 0
	for i := range l.pending {
		p := &l.pending[i]
		if p.until > done {
			l.pending[k] = *p
			k++
			continue
		}
		s.emit(l, p.rule, &p.h)
	}
	l.pending = l.pending[:k]
}

// emit appends a match of rule ri spanning h.
func (s *safetyScanner) emit(l *normLane, ri int32, h *seenAt) {
	r := &s.sf.rules[ri]
	m := SafetyMatch{Category: r.cat, Rule: r.id, Start: h.st, End: h.en}
	if l == &s.main {
		s.out = append(s.out, m)
	} else { // in order with the main lane's matches, which are found when its block is walked
		s.inner, s.stamps = append(s.inner, m), append(s.stamps, s.main.base+s.main.m)
	}
	at := h.st
	switch l {
	case &s.b64.lane:
		at = s.b64.start
	case &s.hex.lane:
		at = s.hex.start
	}
	if s.hitStart < 0 || at < s.hitStart {
		s.hitStart = at
	}
}
