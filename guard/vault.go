package guard

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"hash/maphash"
	"strconv"
	"sync"
)

// Vault holds, for one request, the original values behind the placeholders written into its
// prompt and completion, so the same value gets the same placeholder in every message of the
// request and placeholders can be restored. Placeholders are numbered per entity type in order
// of first appearance: <EMAIL_ADDRESS_1>, <EMAIL_ADDRESS_2>, <PHONE_NUMBER_1>.
//
// A Vault is used by one request at a time. Get one with AcquireVault and give it back with
// ReleaseVault when the response is done, or keep one in a pooled per-request struct and Reset
// it. The originals never leave it: they are not logged, String and GoString print only a
// count, and Reset zeroes them.
type Vault struct {
	vals    []byte // originals, back to back
	ents    []vaultEntry
	last    [numEntities]uint32 // last placeholder number used, per entity type
	found   [2][numEntities]uint32
	blocked EntitySet
	finds   []Finding        // scratch for Redact
	tmp     []byte           // scratch for Redact
	spans   []int            // scratch for Redact: output spans apply rewrote, start and end
	byVal   map[uint64]int32 // value key -> its newest entry; older ones chain through prev
	byPH    map[uint64]int32 // placeholder key -> entry
	indexed bool             // byVal and byPH are kept: ents has held more than smallVault
	mac     hash.Hash
	macKey  *byte // &key[0] of the key mac was made with
	sum     []byte
}

type vaultEntry struct {
	off, n  uint32
	prev    int32 // the previous entry with the same value key, or -1 (kept once indexed)
	e       entity
	restore bool   // its placeholders may be put back (values from the prompt)
	num     uint32 // placeholder number; 0 before one is given
	tag     uint32 // keyed hash, when tagged
	tagged  bool
	masked  bool // masked in the prompt: never restored, but RedactKnown masks it again
	tagDup  bool // tagged after another entry of its type with the same tag, which byPH keeps
}

// smallVault is the number of entries up to which a Vault finds values and placeholders by
// going through ents rather than by its maps: a request's few values are compared faster than
// they are hashed, looked up and added to two maps.
const smallVault = 16

var (
	vaultSeed = maphash.MakeSeed()
	vaultPool = sync.Pool{New: func() any { return new(Vault) }}
)

// AcquireVault returns an empty Vault from a pool. Give it back with ReleaseVault once the
// request is answered and no Restorer or LeakScanner uses it any more.
func AcquireVault() *Vault { return vaultPool.Get().(*Vault) }

// ReleaseVault resets v and returns it to the pool; v must not be used afterwards.
func ReleaseVault(v *Vault) {
	v.Reset()
	vaultPool.Put(v)
}

// Reset empties v for another request, zeroing the originals it held.
func (v *Vault) Reset() {
	clear(v.vals)
	clear(v.tmp)
	clear(v.sum[:cap(v.sum)]) // the MAC input held a value
	if cap(v.vals) > 64<<10 || cap(v.tmp) > 64<<10 {
		v.vals, v.tmp = nil, nil // do not pool huge buffers
	}
	v.vals, v.tmp = v.vals[:0], v.tmp[:0]
	v.ents = v.ents[:0]
	v.last = [numEntities]uint32{}
	v.found = [2][numEntities]uint32{}
	v.blocked = 0
	v.finds = v.finds[:0]
	v.indexed = false
	if len(v.byVal) > 1024 {
		v.byVal, v.byPH = nil, nil // do not pool huge maps
	}
	clear(v.byVal)
	clear(v.byPH)
}

// String describes v without its values.
func (v *Vault) String() string { return "guard.Vault(" + strconv.Itoa(len(v.ents)) + " values)" }

// GoString describes v without its values.
func (v *Vault) GoString() string { return v.String() }

// Len returns the number of distinct values held.
func (v *Vault) Len() int { return len(v.ents) }

// Blocked returns the entity types whose action is ActionBlock found so far.
func (v *Vault) Blocked() EntitySet { return v.blocked }

// Found returns how many values of an entity type were found so far in a direction.
func (v *Vault) Found(d Direction, entity string) int {
	e, ok := entityOf(entity)
	if !ok || d > Completion {
		return 0
	}
	return int(v.found[d][e])
}

// Findings returns how many values were found so far in a direction, of every type.
func (v *Vault) Findings(d Direction) int {
	n := 0
	for _, c := range v.found[d] {
		n += int(c)
	}
	return n
}

// FoundTypes returns the entity types found in either direction, as a set whose bits follow
// the order of PIIEntities.
func (v *Vault) FoundTypes() EntitySet {
	var s EntitySet
	for e := range v.found[Prompt] {
		if v.found[Prompt][e] > 0 || v.found[Completion][e] > 0 {
			s |= 1 << e
		}
	}
	return s
}

// AppendSummary appends the counts found in a direction to dst, "EMAIL_ADDRESS=2,US_SSN=1"
// (nothing when none): types and counts, never values, for a header or a log line.
func (v *Vault) AppendSummary(dst []byte, d Direction) []byte {
	first := true
	for e, n := range v.found[d] {
		if n == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, entityNames[e]...)
		dst = append(dst, '=')
		dst = strconv.AppendUint(dst, uint64(n), 10)
	}
	return dst
}

// Redact appends src to dst with the PII found rewritten by the action for its type in
// direction d: a placeholder recorded in v (ActionRedact, and ActionBlock so that nothing
// leaks if the caller goes on), a masked or hashed value, or the value itself (ActionDetect).
// Call it once per message with the request's Vault. It returns the types found whose action
// is ActionBlock: the caller must then refuse the request. Prompt placeholders can be restored;
// completion ones (leaks) cannot.
func (p *PII) Redact(dst, src []byte, d Direction, v *Vault) ([]byte, EntitySet) {
	v.finds = p.Find(v.finds[:0], src)
	if len(v.finds) == 0 {
		return append(dst, src...), 0
	}
	v.reserve(src)
	start := len(dst)
	v.spans = v.spans[:0]
	dst, blocked := p.apply(dst, src, v.finds, 0, d, v, false)
	// A placeholder is shorter or longer than its value and is no context word, so a weak
	// pattern nearby (nine plain digits, a phone number after "order@example.com") may score
	// differently in the output: rescan what was written until nothing new is found. Only
	// text near a rewritten value can score differently (see rescan).
	for round := 0; round < 4; round++ {
		out := dst[start:]
		v.finds = p.rescan(v.finds[:0], out, v.spans, start)
		n := 0
		for _, f := range v.finds {
			if a := p.act[d][entityIndex(f.Entity)]; a >= ActionRedact && !inPlaceholder(out, f) {
				v.finds[n] = f
				n++
			}
		}
		if n == 0 {
			break
		}
		v.tmp = append(v.tmp[:0], out...)
		var b EntitySet
		v.spans = v.spans[:0]
		dst, b = p.apply(dst[:start], v.tmp, v.finds[:n], 0, d, v, false)
		blocked |= b
	}
	return dst, blocked
}

// Rescan reach: a value found anew after a rewrite has its context (48 bytes before it) or
// its edge on the rewritten text, and its trigger byte (the '@' of an e-mail address, the
// first digit of a number, the ':' after a URL scheme) at most an e-mail local part (64
// bytes) further on. The one trigger that reads further back is the '@' after a URL's
// userinfo (see urlCred): windowEnd reaches it.
const rescanAfter = 128

// windowEnd returns where the rescan window of a span rewritten in out and ending at b ends:
// rescanAfter on, or further when a URL's userinfo may run from the span to an '@' beyond
// that. A masked value's '*' is a userinfo byte, so masking a key that was a URL's password
// makes the whole userinfo a value; urlCred reads it back from its '@' over up to 256 bytes.
func windowEnd(out []byte, b int) int {
	end := min(len(out), b+rescanAfter)
	if end == len(out) || !userinfoByte(out[end-1]) {
		return end
	}
	k := b
	for k < len(out) && k-b < 256 && userinfoByte(out[k]) {
		k++
	}
	return min(len(out), max(end, k+1))
}

// rescan finds the values of out whose trigger byte is near a rewritten span: spans holds
// the spans apply wrote, as offsets in dst, whose out starts at dst offset base. Each window
// starts where a scan of the whole text is in the same state as one started there (see
// windowStart); windows that meet are scanned as one.
func (p *PII) rescan(dst []Finding, out []byte, spans []int, base int) []Finding {
	from, to := -1, -1 // the window being grown
	// A PEM key's body runs over spaces and lines. Only spans before the first PEM header
	// may start their windows between words.
	pem := len(out)
	if len(spans) > 0 {
		if i := pemIndex(out[:spans[len(spans)-2]-base]); i >= 0 {
			pem = i
		}
	}
	keyStart, keyEnd := 0, 0 // the first PEM key not ending before the last window start
	k0 := 0                  // the first span of the window being grown
	var s scan               // the windows' scan, zeroed once: rescanWindow resets what it reads
	for k := 0; k <= len(spans); k += 2 {
		var a, b int
		if k < len(spans) {
			a, b = spans[k]-base, spans[k+1]-base
			gaps := a <= pem
			start := windowStart(out, a, gaps)
			if a > pem {
				// A line start may be inside a key that was not rewritten (a type not
				// rewritten, or only detected): a rescan there would find values in its
				// body that a scan of the whole text skips. Start at the key instead.
				for keyEnd <= start && keyEnd < len(out) {
					keyStart, keyEnd = p.nextPEMKey(out, keyEnd)
				}
				if keyStart < start && start < keyEnd {
					start = keyStart
				}
			}
			end := windowEnd(out, b)
			if gaps {
				end = contextEnd(out, b, end)
			}
			if from >= 0 && start <= to {
				to = max(to, end)
				continue
			}
			a, b = start, end
		}
		if from >= 0 {
			if n := len(dst); n > 0 {
				from = max(from, dst[n-1].End) // a value from the window before may reach in
			}
			if from < to {
				dst = s.rescanWindow(p, dst, out, from, to, spans[k0:k], base)
			}
		}
		from, to, k0 = a, b, k
	}
	return dst
}

// rescanWindow is findTo(dst, out, from, to) for a window of rescan that holds spans (as
// rescan's), but that it does not scan inside the numbered placeholders among them
// ("<EMAIL_ADDRESS_1>"): there a scan finds nothing and goes on at the placeholder's end
// whatever came before it, which TestPlaceholderInsideInert checks. Each holds three to five
// trigger bytes (the '_'s, an 'A', the number) of the few that a window holds.
func (s *scan) rescanWindow(p *PII, dst []Finding, out []byte, from, to int, spans []int, base int) []Finding {
	// As findTo's scan: numeric's scratch is set before it is read.
	s.p, s.t, s.lo, s.from, s.dst, s.ctxStart = p, out, from, from, dst, 0
	n := min(to, len(out))
	i := from
	for k := 0; k < len(spans); k += 2 {
		a, b := spans[k]-base, spans[k+1]-base
		if b > n || !numberedPlaceholder(out[a:b]) {
			continue
		}
		i = max(s.scanTo(i, a), b)
	}
	s.scanTo(i, n)
	return s.dst
}

// numberedPlaceholder reports whether b, a span apply wrote, is a numbered placeholder
// ("<EMAIL_ADDRESS_1>"), not a hashed one ("<EMAIL_ADDRESS_h:1a2b3c4d>") or a masked value
// (which starts with '*' or, kept whole, with the value's first byte, never '<'): whether it
// starts with '<' and ends with '_', digits and '>'. It is asked per span of each rescan, and
// parsePlaceholder's lookup of the type name cost as much as the scan it spares.
func numberedPlaceholder(b []byte) bool {
	k := len(b) - 2
	for k > 0 && isDigit(b[k]) {
		k--
	}
	return len(b) > 3 && b[0] == '<' && b[len(b)-1] == '>' && k < len(b)-2 && b[k] == '_'
}

// rescanContext is how far before a value's start its scan reads: nearWords' 48 bytes, the
// byte before them (is the first word cut?) and, for an accented letter there, the one before.
const rescanContext = 50

// contextEnd returns an end for the rescan window of a span rewritten in out and ending at b,
// with no PEM key starting before the span (windowStart's gaps), that is often well before
// windowEnd's end: the first ASCII space x from b+rescanContext-1 on that is not before the
// first point after b where a scan is in the same state however it started (see windowStart);
// end when there is none before it.
//
// A value found anew reads the rewritten text, so it starts before b+rescanContext, which is
// at or before x: a value starting after x reads only text at or after b, the same as in the
// original. And no value holds a space from its start to its trigger byte (the first digit of
// a number, the '@' of an e-mail address or of a URL's userinfo, a key's prefix): what comes
// before a value's trigger byte is a run of letters, digits and punctuation; the parts that
// may hold spaces (digit groups, a PEM key's body) follow it. So a value found anew has its
// trigger byte before x. From x on a rescan visits the trigger bytes that the scan of the
// original text visited, both being in the same state from the sync point on, and finds
// what it found.
func contextEnd(out []byte, b, end int) int {
	for w := b + 1; w < end; w++ {
		if c := out[w-1]; c == '\n' || c == ' ' && w >= b+2 && isLower(out[w]) && isLower(out[w-2]) {
			x := max(b+rescanContext-1, w-1)
			for x < end && !isSpace(out[x]) {
				x++
			}
			return min(x, end)
		}
	}
	return end
}

// pemIndex returns the offset of the first "-----BEGIN" in b, or -1. It looks for "BEGIN" and
// then for the dashes before it: bytes.Index would stop at every '-', common in chat text
// (list items, dates, compound words), and this search ran over every redacted text.
func pemIndex(b []byte) int {
	for from := 5; from < len(b); {
		k := bytes.Index(b[from:], pemBegin[5:])
		if k < 0 {
			return -1
		}
		if j := from + k; string(b[j-5:j]) == "-----" {
			return j - 5
		}
		from += k + 1
	}
	return -1
}

var pemBegin = []byte("-----BEGIN")

// nextPEMKey returns the span of the first PEM key that a scan of out starting at from finds
// (len(out) twice when none), as a scan of the whole text sees it when from is the end of the
// key before.
func (p *PII) nextPEMKey(out []byte, from int) (start, end int) {
	for {
		k := pemIndex(out[from:])
		if k < 0 {
			return len(out), len(out)
		}
		h := from + k
		if hasPrefixAt(out, h, "-----BEGIN ") && (h == 0 || out[h-1] != '-') {
			s := scan{p: p, t: out, lo: h + 1} // lo after h: measure, do not emit
			if end, ok := s.pem(h); ok {
				return h, end
			}
		}
		from = h + 1
	}
}

// windowStart returns where the rescan window of a span starting at a starts: the nearest
// point within 1 KiB before a that is a line start or, with gaps, a word start after a space
// between two lower-case letters ("me at"); the text start when there is none.
//
// A scan of the whole text is in the same state at such a point as a scan started there: no
// value but a PEM key spans lines, and a PEM key is never rewritten in part. When no PEM key
// starts before a (gaps), no value and no parse crosses a space between lower-case letters
// either: digit groups join only digits and parentheses, IBAN groups only upper-case letters
// and digits, and the other matchers stop at any space. With PEM keys before a, windows keep to
// line starts: one may be inside a key that was not rewritten (a type not scanned, or only
// detected), and a rescan there finds what a scan of the whole text does not; rescan moves
// such starts back to the key's header.
func windowStart(out []byte, a int, gaps bool) int {
	low := max(0, a-1024)
	for w := a; w > low; w-- {
		switch c := out[w-1]; {
		case c == '\n':
			return w
		case gaps && c == ' ' && w < a && w >= 2 && isLower(out[w]) && isLower(out[w-2]):
			return w
		}
	}
	return 0
}

// inPlaceholder reports whether the finding overlaps a placeholder in b.
func inPlaceholder(b []byte, f Finding) bool {
	for k := max(0, f.Start-maxPlaceholder+1); k < f.End; k++ {
		if b[k] != '<' {
			continue
		}
		if _, _, _, _, n, st := parsePlaceholder(b[k:]); st == phOK && k+n > f.Start {
			return true
		}
	}
	return false
}

// apply rewrites src with the findings fs, whose offsets are off bytes ahead of src's. With
// trunc the last finding was cut by a window's end: a mask then hides all of it.
func (p *PII) apply(dst, src []byte, fs []Finding, off int, d Direction, v *Vault, trunc bool) ([]byte, EntitySet) {
	var blocked EntitySet
	last := 0
	for k, f := range fs {
		e, _ := entityOf(f.Entity)
		a := p.act[d][e]
		if a == ActionOff {
			continue
		}
		v.found[d][e]++
		if a == ActionDetect {
			continue
		}
		if a == ActionBlock {
			blocked |= 1 << e
			a = ActionRedact
		}
		start, end := f.Start-off, f.End-off
		dst = append(dst, src[last:start]...)
		val := src[start:end]
		at := len(dst)
		switch a {
		case ActionRedact:
			dst = v.placeholder(dst, e, val, d == Prompt)
		case ActionHash:
			dst = v.hashed(dst, p.key, e, val, d == Prompt)
		case ActionMask:
			keep := 4
			if trunc && k == len(fs)-1 {
				keep = 0
			}
			if d == Prompt {
				// Kept so that RedactKnown masks the value where it appears without its context.
				v.ents[v.entry(e, val, true)].masked = true
			}
			dst = appendMasked(dst, val, keep)
		}
		v.spans = append(v.spans, at, len(dst))
		last = end
	}
	v.blocked |= blocked
	return append(dst, src[last:]...), blocked
}

// appendMasked appends val with all but its last keep bytes replaced by '*'.
func appendMasked(dst, val []byte, keep int) []byte {
	if keep > len(val) {
		keep = len(val)
	}
	for range len(val) - keep {
		dst = append(dst, '*')
	}
	return append(dst, val[len(val)-keep:]...)
}

// entry returns the index of the entry of a value, adding it when new.
func (v *Vault) entry(e entity, val []byte, restore bool) int32 {
	if !v.indexed {
		for i := range v.ents {
			en := &v.ents[i]
			if en.e == e && sameKey(e, v.vals[en.off:en.off+en.n], val) {
				en.restore = en.restore || restore
				return int32(i)
			}
		}
		if len(v.ents) < smallVault {
			v.vals = append(v.vals, val...)
			v.ents = append(v.ents, vaultEntry{off: uint32(len(v.vals) - len(val)), n: uint32(len(val)), prev: -1, e: e, restore: restore})
			return int32(len(v.ents) - 1)
		}
		v.index()
	}
	key := valueKey(e, val)
	head, ok := v.byVal[key]
	for i := head; ok && i >= 0; i = v.ents[i].prev {
		en := &v.ents[i]
		if en.e == e && sameValue(e, v.vals[en.off:en.off+en.n], val) {
			en.restore = en.restore || restore
			return i
		}
	}
	prev := int32(-1)
	if ok {
		prev = head
	}
	off := len(v.vals)
	v.vals = append(v.vals, val...)
	v.byVal[key] = int32(len(v.ents))
	v.ents = append(v.ents, vaultEntry{off: uint32(off), n: uint32(len(val)), prev: prev, e: e, restore: restore})
	return int32(len(v.ents) - 1)
}

// index builds byVal and byPH from ents, as entry, placeholder and hashed would have.
func (v *Vault) index() {
	if v.byVal == nil {
		v.byVal, v.byPH = make(map[uint64]int32), make(map[uint64]int32)
	}
	for i := range v.ents {
		en := &v.ents[i]
		key := valueKey(en.e, v.vals[en.off:en.off+en.n])
		en.prev = -1
		if head, ok := v.byVal[key]; ok {
			en.prev = head
		}
		v.byVal[key] = int32(i)
		if en.num != 0 {
			v.byPH[phKey(en.e, en.num, 0, false)] = int32(i)
		}
		if en.tagged && !en.tagDup {
			v.byPH[phKey(en.e, 0, en.tag, true)] = int32(i)
		}
	}
	v.indexed = true
}

// sameKey reports whether a and b have one valueKey and are one value (sameValue): an e-mail
// address's key is its lower-cased first 254 bytes.
func sameKey(e entity, a, b []byte) bool {
	if e != eEmail {
		return bytes.Equal(a, b)
	}
	if x, y := a[:min(len(a), 254)], b[:min(len(b), 254)]; len(x) != len(y) {
		return false
	} else {
		for k := range x {
			if asciiLower(x[k]) != asciiLower(y[k]) {
				return false
			}
		}
	}
	return bytes.EqualFold(a, b)
}

// phEntry returns the entry of a placeholder key, as byPH holds it.
func (v *Vault) phEntry(e entity, num, tag uint32, hashed bool) (int32, bool) {
	if v.indexed {
		i, ok := v.byPH[phKey(e, num, tag, hashed)]
		return i, ok
	}
	for i := range v.ents {
		en := &v.ents[i]
		if en.e == e && (!hashed && num != 0 && en.num == num || hashed && en.tagged && !en.tagDup && en.tag == tag) {
			return int32(i), true
		}
	}
	return 0, false
}

// valueKey is the key of a value in byVal. An e-mail address is one mailbox however its
// letters are cased (Bob@Example.com, bob@example.com): one placeholder, so the model sees
// one person; restoring gives back the first spelling.
func valueKey(e entity, val []byte) uint64 {
	mix := uint64(e+1) * 0x9e3779b97f4a7c15
	if e != eEmail {
		return maphash.Bytes(vaultSeed, val) ^ mix
	}
	var buf [254]byte // the longest address a mail system takes
	n := copy(buf[:], val)
	for i := range n {
		buf[i] = asciiLower(buf[i])
	}
	return maphash.Bytes(vaultSeed, buf[:n]) ^ mix // a longer one is keyed by its start
}

// sameValue reports whether a and b are one value of entity e (see valueKey).
func sameValue(e entity, a, b []byte) bool {
	if e == eEmail {
		return bytes.EqualFold(a, b)
	}
	return bytes.Equal(a, b)
}

// phKey is the key of a placeholder in byPH.
func phKey(e entity, num, tag uint32, hashed bool) uint64 {
	k := uint64(e)<<32 | uint64(num)
	if hashed {
		k = 1<<63 | uint64(e)<<32 | uint64(tag)
	}
	return k
}

// placeholder appends the placeholder of a value, "<EMAIL_ADDRESS_1>".
func (v *Vault) placeholder(dst []byte, e entity, val []byte, restore bool) []byte {
	i := v.entry(e, val, restore)
	en := &v.ents[i]
	if en.num == 0 {
		v.last[e]++
		en.num = v.last[e]
		if v.indexed {
			v.byPH[phKey(e, en.num, 0, false)] = i
		}
	}
	dst = append(dst, '<')
	dst = append(dst, entityNames[e]...)
	dst = append(dst, '_')
	dst = strconv.AppendUint(dst, uint64(en.num), 10)
	return append(dst, '>')
}

// RedactKnown appends src to dst with every occurrence of a value v already rewrote in the
// prompt (one that Redact found somewhere in the request) rewritten the same way: its numbered
// or hashed placeholder, or masked, and reports whether it replaced any. A value is found by
// its context: "my phone is 4155550132" once, then "4155550132" bare in another message, or
// further on where no context word is near. An occurrence counts only as a whole token: not
// inside a longer run of letters and digits.
func (v *Vault) RedactKnown(dst, src []byte) ([]byte, bool) {
	start, changed := len(dst), false
	dst = append(dst, src...)
	for i := range v.ents {
		en := &v.ents[i]
		if !en.restore || en.num == 0 && !en.tagged && !en.masked || en.n < minKnownValue {
			continue
		}
		val := v.vals[en.off : en.off+en.n]
		for from := start; ; {
			k := bytes.Index(dst[from:], val)
			if k < 0 {
				break
			}
			a, b := from+k, from+k+len(val)
			if a > start && isAlnum(dst[a-1]) || b < len(dst) && isAlnum(dst[b]) {
				from = a + 1
				continue
			}
			v.tmp = append(v.tmp[:0], dst[b:]...)
			switch {
			case en.masked:
				dst = appendMasked(dst[:a], val, 4)
			case en.num != 0:
				dst = v.placeholder(dst[:a], en.e, val, true)
			default:
				dst = appendHashed(dst[:a], en.e, en.tag)
			}
			from = len(dst)
			dst = append(dst, v.tmp...)
			changed = true
		}
	}
	return dst, changed
}

// minKnownValue is the shortest value RedactKnown looks for: shorter ones (a 4-digit card
// tail) would match unrelated text.
const minKnownValue = 6

// hashed appends the hash placeholder of a value, "<EMAIL_ADDRESS_h:1a2b3c4d>": the first 32
// bits of HMAC-SHA256(key, type, value), an e-mail address lower-cased, the same for a value
// everywhere the key is.
func (v *Vault) hashed(dst, key []byte, e entity, val []byte, restore bool) []byte {
	i := v.entry(e, val, restore)
	en := &v.ents[i]
	if !en.tagged {
		if v.mac == nil || v.macKey != &key[0] {
			v.mac, v.macKey = hmac.New(sha256.New, key), &key[0]
		}
		v.mac.Reset()
		v.sum = append(append(append(v.sum[:0], entityNames[e]...), 0), val...)
		if e == eEmail {
			// One mailbox however it is cased (see valueKey): hashed lower-cased, or its
			// hash would be that of the spelling a request met first.
			folded := v.sum[len(v.sum)-len(val):]
			for i := range folded {
				folded[i] = asciiLower(folded[i])
			}
		}
		v.mac.Write(v.sum)
		v.sum = v.mac.Sum(v.sum[:0])
		en.tag = uint32(v.sum[0])<<24 | uint32(v.sum[1])<<16 | uint32(v.sum[2])<<8 | uint32(v.sum[3])
		if _, dup := v.phEntry(e, 0, en.tag, true); dup { // en is not tagged yet: another one
			en.tagDup = true
		} else if v.indexed {
			v.byPH[phKey(e, 0, en.tag, true)] = i
		}
		en.tagged = true
	}
	return appendHashed(dst, e, en.tag)
}

// appendHashed appends the hash placeholder of entity e with tag.
func appendHashed(dst []byte, e entity, tag uint32) []byte {
	dst = append(dst, '<')
	dst = append(dst, entityNames[e]...)
	dst = append(dst, "_h:"...)
	const hexd = "0123456789abcdef"
	for s := 28; s >= 0; s -= 4 {
		dst = append(dst, hexd[tag>>uint(s)&15])
	}
	return append(dst, '>')
}

// Reserve raises the placeholder counters past the numbers of placeholder-shaped text in src.
// Redact does so for the text it rewrites; call Reserve with every text of a request before
// redacting any, so that a placeholder written for one message never equals text that
// another holds (an earlier answer's placeholder sent back as history), whose restoring would
// then put a value where the client wrote the placeholder.
func (v *Vault) Reserve(src []byte) { v.reserve(src) }

// reserve raises the placeholder counters past the numbers of placeholder-shaped text already
// in src, so a placeholder written now never equals text the client sent, and restoring it
// cannot change that text. The highest number a placeholder has (six digits) reserves none:
// the next would have seven, which parsePlaceholder does not read, and that value would never
// be restored; a vault does not reach it by counting.
func (v *Vault) reserve(src []byte) {
	for i := 0; ; {
		k := bytes.IndexByte(src[i:], '<')
		if k < 0 {
			return
		}
		i += k
		e, num, _, _, n, st := parsePlaceholder(src[i:])
		if st == phOK && num > v.last[e] && num < 999999 {
			v.last[e] = num
		}
		i += max(n, 1)
	}
}
