package guard

// IBANs: found by the digit matchers (see digit) where a token starts with a country code and
// its check digits, validated by length per country and mod 97.

// iban tries an IBAN at the token [ts, te), compact or in groups of four (joined by spaces or
// dashes), in upper or lower case. An IBAN-shaped run that fails its length or mod-97 check is
// still consumed (ok with nothing reported), so its groups are not taken for a card or a phone
// number.
func (s *scan) iban(ts, te int) (int, bool) {
	t := s.t
	L := ibanLen(asciiUpper(t[ts]), asciiUpper(t[ts+1]))
	if L == 0 {
		return 0, false
	}
	// One case throughout: "DE89..." or "de89...".
	lower := isLower(t[ts])
	ok := func(c byte) bool { return isDigit(c) || !lower && isUpper(c) || lower && isLower(c) }
	var buf [40]byte // the IBAN in upper case, for ibanMod97
	if te-ts != 4 {
		if te-ts < 15 || te-ts > 34 {
			return 0, false
		}
		for k := ts; k < te; k++ {
			if !ok(t[k]) {
				return 0, false
			}
			buf[k-ts] = asciiUpper(t[k])
		}
		if te-ts == L && ibanMod97(buf[:L]) {
			s.emitIBAN(ts, te, lower)
		}
		return te, true
	}
	for k := 0; k < 4; k++ {
		buf[k] = asciiUpper(t[ts+k])
	}
	cnt, p, valid := 4, te, -1
	w := ibanSep(t, p) // every group after the first has the same separator
	for cnt < len(buf)-4 && w > 0 && p+w < len(t) && string(t[p:p+w]) == string(t[te:te+w]) {
		q := p + w
		for q < len(t) && q-p-w <= 4 && ok(t[q]) {
			buf[cnt+q-p-w] = asciiUpper(t[q])
			q++
		}
		g := q - p - w
		if g == 0 || g > 4 || wordAt(t, q) {
			break
		}
		cnt, p = cnt+g, q
		if cnt == L && ibanMod97(buf[:L]) {
			valid = p
		}
		if g < 4 {
			break
		}
	}
	if p == te {
		return 0, false
	}
	if valid > 0 {
		s.emitIBAN(ts, valid, lower)
		return valid, true
	}
	return p, true
}

// emitIBAN reports the IBAN [a, b). One in lower case needs a context word ("iban: de89..."):
// lower-case tokens are common in code, and one in 97 of the right length passes mod-97.
func (s *scan) emitIBAN(a, b int, lower bool) {
	score := 1.0
	if lower {
		pos, neg := nearWords(s.t, a)
		score = adjust(0.3, ctxIBAN, pos, neg)
	}
	s.emit(eIBAN, a, b, score)
}

// ibanSep returns the length of a separator between IBAN groups at i: a space, a dash or a
// no-break space; 0 when there is none.
func ibanSep(t []byte, i int) int {
	if i < len(t) && (t[i] == ' ' || t[i] == '-') {
		return 1
	}
	if w, c := wideSep(t, i); c == ' ' {
		return w
	}
	return 0
}
