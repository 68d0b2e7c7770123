package gateway

import (
	"hash/maphash"
	"sync/atomic"
)

// cleanMemo remembers texts in which the guard found nothing, so that a text seen again is not
// scanned again. Chat clients resend the whole conversation with every turn, so without it the
// guard rescans every earlier message on each request (quadratic in the conversation), and a
// cache hit pays a full scan of a prompt that passed the same scan before. The verdict of the
// in-process rules is a pure function of the text and the alias's guard, and a memo belongs to
// one aliasGuard, which is rebuilt whenever the guard's configuration changes.
//
// Only "found nothing" is remembered: a text with a match or a PII value is always scanned,
// since its outcome (placeholders, counts, blocks) depends on the request. The memo is a
// direct-mapped table of fingerprints: a lookup is two hashes of the text and one atomic load,
// a collision of slots simply forgets the older text. A fingerprint is 64 bits from a second,
// independent seed (plus the slot index from the first): both seeds are random per process, so
// a client cannot craft a text that passes for a clean one it has not seen.
type cleanMemo struct {
	index, check maphash.Seed
	slots        [memoSlots]atomic.Uint64
}

const (
	memoSlots = 1 << 13 // 64 KiB per direction and alias
	// memoMinText is the shortest text remembered. Short texts are remembered too: a lookup
	// (about 40 ns) is cheaper than even the scan of "hello there" (95 ns), and a replayed
	// cache entry whose answers are all remembered skips parsing its own JSON to guard them
	// (see cachedAnswerClean), which costs far more than either.
	memoMinText = 1
)

func newCleanMemo() *cleanMemo {
	return &cleanMemo{index: maphash.MakeSeed(), check: maphash.MakeSeed()}
}

// fingerprint returns text's slot and the value that marks it clean there (never 0, the value
// of an empty slot).
func (m *cleanMemo) fingerprint(text []byte) (*atomic.Uint64, uint64) {
	// maphash.Comparable on the text as a string is the runtime's AES hash over all of it in
	// one call; maphash.Bytes hashes it in 128-byte blocks, one call and one finalisation each,
	// about three times the instructions for a 1 KiB prompt (as gateway/cache's hashBytes).
	s := unsafeString(text)
	slot := &m.slots[maphash.Comparable(m.index, s)&(memoSlots-1)]
	return slot, maphash.Comparable(m.check, s) | 1
}

// clean reports whether text was marked clean.
func (m *cleanMemo) clean(text []byte) bool {
	if m == nil || len(text) < memoMinText {
		return false
	}
	slot, fp := m.fingerprint(text)
	return slot.Load() == fp
}

// memoProbe is one text's place in a cleanMemo: a scan that looks the text up and, when the
// rules found nothing, marks it clean hashes it once, not once for each (two hashes of a 1 KiB
// prompt per call).
type memoProbe struct {
	slot *atomic.Uint64 // nil: the text is not remembered (no memo, or too short)
	fp   uint64
}

// probe returns text's place in m; text must not change before the probe's last use.
func (m *cleanMemo) probe(text []byte) memoProbe {
	if m == nil || len(text) < memoMinText {
		return memoProbe{}
	}
	slot, fp := m.fingerprint(text)
	return memoProbe{slot, fp}
}

// clean reports whether the text was marked clean, as cleanMemo.clean.
func (p memoProbe) clean() bool { return p.slot != nil && p.slot.Load() == p.fp }

// markClean remembers that the guard found nothing in the text.
func (p memoProbe) markClean() {
	if p.slot != nil {
		p.slot.Store(p.fp)
	}
}
