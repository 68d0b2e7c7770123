package guard

import "unicode/utf8"

// DefaultHoldback is the hold-back window of a SafetyStream, in bytes, when none is given.
const DefaultHoldback = 256

// SafetyStream checks a completion as it flows. Write takes each piece of text as it arrives
// and returns the bytes that are safe to pass on: those no match still being read can include.
// It holds back at most the window (and the rest of a character the window would cut), so a
// match split across pieces is found before its start is passed on, and text is never
// delayed by more than the window; only a match just found is kept back longer, since the
// caller may block it. Matches are the same, with
// the same offsets (counted from the start of the stream), however the text is cut.
//
// A stream is used by one goroutine. Get one with AcquireStream and give it back with
// ReleaseStream once the completion is done; nothing it returned may be used after that.
type SafetyStream struct {
	sc      *safetyScanner
	window  int
	held    []byte // input not yet passed on; held[0] is at offset heldOff
	heldOff int
	done    bool // Flush has ended the text
}

// NoHoldback is the window of a stream that holds nothing back, for a caller that only flags
// or logs matches: it blocks nothing, so holding text back would only delay it. The matches
// are the same.
const NoHoldback = -1

// AcquireStream returns a stream over s with the given hold-back window (0: the default;
// NoHoldback: none).
func (s *Safety) AcquireStream(window int) *SafetyStream {
	st, _ := s.stream.Get().(*SafetyStream)
	if st == nil {
		st = &SafetyStream{sc: s.newScanner(streamBlock)}
	}
	switch {
	case window == NoHoldback:
		window = 0
	case window <= 0:
		window = DefaultHoldback
	}
	st.window = window
	if cap(st.held) < window {
		st.held = make([]byte, 0, window)
	}
	st.Reset()
	return st
}

// ReleaseStream gives st back for reuse.
func (s *Safety) ReleaseStream(st *SafetyStream) {
	st.sc.out = nil
	s.stream.Put(st)
}

// Reset starts a new stream.
func (st *SafetyStream) Reset() {
	st.sc.reset()
	st.held, st.heldOff, st.done = st.held[:0], 0, false
}

// Write scans the next piece of the text. It appends to out the bytes now safe to pass on and
// to ms the matches found; when there is one, out stops before it starts, so a caller that
// blocks can end the stream there. A caller that only flags a match may go on writing: what
// was held comes out with the next call.
func (st *SafetyStream) Write(out []byte, ms []SafetyMatch, p []byte) ([]byte, []SafetyMatch) {
	sc := st.sc
	sc.out, sc.hitStart = ms, -1
	sc.feed(p)
	sc.flush()
	ms, sc.out = sc.out, nil
	if st.window == 0 { // NoHoldback
		st.heldOff += len(p)
		return append(out, p...), ms
	}
	// The window bounds the hold-back, but never lets out a match found here: the caller may
	// block, and then nothing of the match may have gone.
	safe := max(sc.earliest(), sc.pos-st.window)
	if sc.hitStart >= 0 {
		safe = min(safe, sc.hitStart)
	}
	return st.emit(out, p, safe), ms
}

// Flush ends the text: it appends to out the held bytes and to ms the last matches, which
// only the end of the text completes. Like Write, out stops before a match found here; the
// rest stays held, and a caller that only flags the match gets it from a second Flush.
func (st *SafetyStream) Flush(out []byte, ms []SafetyMatch) ([]byte, []SafetyMatch) {
	sc := st.sc
	if !st.done {
		sc.out, sc.hitStart = ms, -1
		sc.finish()
		ms, sc.out = sc.out, nil
		st.done = true
		if sc.hitStart >= 0 { // a match that starts in what went out already holds the rest too
			return st.emit(out, nil, sc.hitStart), ms
		}
	}
	out = append(out, st.held...)
	st.heldOff += len(st.held)
	st.held = st.held[:0]
	return out, ms
}

// Held returns how many bytes the stream holds back.
func (st *SafetyStream) Held() int { return len(st.held) }

// emit passes on the input before offset safe; p is the piece just scanned, which ends the
// input.
func (st *SafetyStream) emit(out, p []byte, safe int) []byte {
	// A cut inside a character would send its halves in two pieces, each invalid UTF-8 on
	// its own: the cut moves back to the character's first byte.
	for n := 0; n < utf8.UTFMax-1 && safe > st.heldOff; n++ {
		k := safe - st.heldOff
		var b byte
		switch {
		case k < len(st.held):
			b = st.held[k]
		case k-len(st.held) < len(p):
			b = p[k-len(st.held)]
		}
		if b&0xc0 != 0x80 { // not a continuation byte (or the end of the input)
			break
		}
		safe--
	}
	k := safe - st.heldOff
	if k <= 0 {
		st.held = append(st.held, p...)
		return out
	}
	if k <= len(st.held) {
		out = append(out, st.held[:k]...)
		n := copy(st.held, st.held[k:])
		st.held = append(st.held[:n], p...)
	} else {
		out = append(out, st.held...)
		k -= len(st.held)
		out = append(out, p[:k]...)
		st.held = append(st.held[:0], p[k:]...)
	}
	st.heldOff = safe
	return out
}
