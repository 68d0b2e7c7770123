package gateway

// copiedKeys remembers the header names a copy (prepareUpstream, copyResponseHeaders) has set,
// so that a name that comes again (a backend's second Vary or Link line, a client's repeated
// vendor header) is added next to the first value instead of replacing it: Set, which the
// copies use so that a header the gateway set before them is replaced, keeps only the last
// line of a repeated header. The keys are the source header's own bytes, valid while its
// iteration runs. Past len(keys) distinct names a name is not remembered, and a repeat of it
// replaces as Set does.
type copiedKeys struct {
	n    int
	keys [32][]byte
}

// repeat reports whether a header named k was copied before, and remembers k if not.
func (c *copiedKeys) repeat(k []byte) bool {
	for _, p := range c.keys[:c.n] {
		if string(p) == string(k) {
			return true
		}
	}
	if c.n < len(c.keys) {
		c.keys[c.n] = k
		c.n++
	}
	return false
}
