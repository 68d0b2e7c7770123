package drift

import "unicode/utf8"

// ScriptScanBytes bounds how much of a prompt DetectScript reads: the
// dominant script of a long prompt is settled well before its end, and the
// cost stays fixed (about a microsecond) whatever the prompt size.
const ScriptScanBytes = 2048

// String returns the script's stable label.
func (s Script) String() string {
	if s < numScript {
		return scriptLabels[s]
	}
	return "other"
}

// DetectScript returns the script with the most letters among the first
// ScriptScanBytes of text (UTF-8), or ScriptNone when there are none.
// Han ideographs count as Japanese (ScriptKana) once kana make up a tenth of
// the CJK letters, since Japanese mixes both. It does not allocate.
func DetectScript(text []byte) Script {
	if len(text) > ScriptScanBytes {
		text = text[:ScriptScanBytes]
	}
	var n [numScript]int
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if (c|0x20)-'a' < 26 {
				n[ScriptLatin]++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		i += size
		n[scriptOf(r)]++
	}
	if k := n[ScriptKana]; k > 0 && 10*k >= k+n[ScriptHan] {
		n[ScriptKana] += n[ScriptHan]
		n[ScriptHan] = 0
	}
	n[ScriptNone] = 0 // symbols and invalid bytes are not letters
	best := ScriptNone
	for s := ScriptLatin; s < numScript; s++ {
		if n[s] > n[best] {
			best = s
		}
	}
	return best
}

// scriptOf classifies a non-ASCII rune; ScriptNone for non-letters that
// matter (punctuation, symbols, digits, invalid bytes).
func scriptOf(r rune) Script {
	switch {
	case r < 0x0250:
		if r >= 0xC0 && r != 0xD7 && r != 0xF7 {
			return ScriptLatin
		}
		return ScriptNone
	case r >= 0x0370 && r < 0x0400, r >= 0x1F00 && r < 0x2000:
		return ScriptGreek
	case r >= 0x0400 && r < 0x0530:
		return ScriptCyrillic
	case r >= 0x0590 && r < 0x0600:
		return ScriptHebrew
	case r >= 0x0600 && r < 0x0780, r >= 0x08A0 && r < 0x0900, r >= 0xFB50 && r < 0xFE00, r >= 0xFE70 && r < 0xFF00:
		return ScriptArabic
	case r >= 0x0900 && r < 0x0980:
		return ScriptDevanagari
	case r >= 0x0E00 && r < 0x0E80:
		return ScriptThai
	case r >= 0x1E00 && r < 0x1F00:
		return ScriptLatin
	case r >= 0x3040 && r < 0x3100, r >= 0x31F0 && r < 0x3200, r >= 0xFF66 && r < 0xFFA0:
		return ScriptKana
	case r >= 0x1100 && r < 0x1200, r >= 0x3130 && r < 0x3190, r >= 0xAC00 && r < 0xD7B0:
		return ScriptHangul
	case r >= 0x3400 && r < 0x4DC0, r >= 0x4E00 && r < 0xA000, r >= 0xF900 && r < 0xFB00, r >= 0x20000 && r < 0x2FA20:
		return ScriptHan
	case r >= 0x2000 && r < 0x2C00, r >= 0x3000 && r < 0x3040, r >= 0xFF00 && r < 0xFF66, r == utf8.RuneError:
		return ScriptNone // punctuation, symbols, CJK punctuation, full-width forms
	}
	return ScriptOther
}
