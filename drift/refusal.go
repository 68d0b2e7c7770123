package drift

import "bytes"

// DefaultRefusalPhrases are openings of refusals in English, Spanish,
// French, German, Portuguese, Italian, Russian, Chinese and Japanese. They
// are matched case-insensitively anywhere in the first RefusalWindow bytes,
// so each says who declines or what is declined: a bare "cannot" (Japanese
// "できません") opens benign answers as often as refusals ("この操作は元に戻す
// ことができません": this cannot be undone). An apology counts only with its
// "but", in every language as in English ("i'm sorry, but"): alone it opens
// sympathy and corrections ("Es tut mir leid, dass...", "抱歉，我刚才的回答有误").
var DefaultRefusalPhrases = []string{
	"i can't", "i cannot", "i can not", "i'm sorry, but", "i am sorry, but", "sorry, but i",
	"i'm unable to", "i am unable to", "i'm not able to", "i won't be able", "as an ai",
	"i must decline",
	"lo siento, pero", "no puedo", "como ia", "como modelo de lenguaje", "como una ia",
	"je ne peux pas", "désolé, mais", "en tant qu'ia", "en tant qu'intelligence artificielle",
	"ich kann nicht", "ich kann ihnen nicht", "es tut mir leid, aber", "leider kann ich", "als ki",
	"não posso", "desculpe, mas", "sinto muito, mas", "como uma ia",
	"non posso", "mi dispiace, ma", "in quanto ia", "come ia",
	"я не могу", "извините, но", "к сожалению, я не", "как ии",
	"我不能", "我无法", "抱歉，但", "对不起，但", "作为一个人工智能", "作为ai",
	"申し訳ありませんが", "申し訳ございませんが", "お答えできません", "お応えできません", "お手伝いできません",
	"提供できません", "aiとして",
}

// RefusalWindow is how many leading bytes of a completion Match reads by
// default: refusals announce themselves in the first sentence.
const RefusalWindow = 256

// maxRefusalWindow bounds the stack buffer Match folds text into.
const maxRefusalWindow = 1024

// RefusalDetector tells whether a completion starts like a refusal. It is
// immutable and safe for concurrent use.
type RefusalDetector struct {
	phrases [][]byte
	byFirst [256][]uint16 // phrase indexes by first byte: one pass over the text
	// pairs has a bit for each first two bytes a phrase starts with: most word starts in a
	// completion begin no phrase, and one bit test rules them out.
	pairs  [1 << 16 / 64]uint64
	window int
}

func (d *RefusalDetector) setPair(a, b byte) {
	i := uint16(a)<<8 | uint16(b)
	d.pairs[i/64] |= 1 << (i % 64)
}

func (d *RefusalDetector) hasPair(a, b byte) bool {
	i := uint16(a)<<8 | uint16(b)
	return d.pairs[i/64]&(1<<(i%64)) != 0
}

// NewRefusalDetector returns a detector for phrases (DefaultRefusalPhrases
// when nil) over the first window bytes (RefusalWindow when <= 0, at most
// 1024). Phrases are folded like the text: case, curly apostrophes, runs of
// white space.
func NewRefusalDetector(phrases []string, window int) *RefusalDetector {
	if phrases == nil {
		phrases = DefaultRefusalPhrases
	}
	if window <= 0 {
		window = RefusalWindow
	}
	d := &RefusalDetector{window: min(window, maxRefusalWindow)}
	for _, p := range phrases {
		f := fold(nil, []byte(p))
		switch len(f) {
		case 0:
			continue
		case 1: // any second byte may follow
			for b := range 256 {
				d.setPair(f[0], byte(b))
			}
		default:
			d.setPair(f[0], f[1])
		}
		d.byFirst[f[0]] = append(d.byFirst[f[0]], uint16(len(d.phrases)))
		d.phrases = append(d.phrases, f)
	}
	return d
}

// Match reports whether a phrase occurs in the first window bytes of
// completion, as whole words: a phrase that starts (ends) with an ASCII
// letter must not have one just before (after) it. It does not allocate.
func (d *RefusalDetector) Match(completion []byte) bool {
	if len(completion) > d.window {
		completion = completion[:d.window]
	}
	var buf [maxRefusalWindow]byte
	text := fold(buf[:0], completion)
	for i, c := range text {
		// A phrase starting with a letter must start a word: "i can't" is
		// not in "wifi can't".
		if i > 0 && isASCIILetter(c) && isASCIILetter(text[i-1]) {
			continue
		}
		if i+1 < len(text) && !d.hasPair(c, text[i+1]) {
			continue
		}
		for _, k := range d.byFirst[c] {
			ph := d.phrases[k]
			// And one ending with a letter must end a word: "as an ai" is not in
			// "as an aid", nor "als ki" in "als Kind".
			if bytes.HasPrefix(text[i:], ph) && (i+len(ph) == len(text) ||
				!isASCIILetter(ph[len(ph)-1]) || !isASCIILetter(text[i+len(ph)])) {
				return true
			}
		}
	}
	return false
}

// fold appends src to dst lower-cased (ASCII, Latin-1, Cyrillic), with
// U+2019 as an ASCII apostrophe and white space runs as one space. It never
// grows src, so a dst with cap >= len(src) does not allocate.
func fold(dst, src []byte) []byte {
	space := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if f := asciiFold[c&0x7f]; c < 0x80 && f != foldSpace { // most bytes: one lookup
			dst = append(dst, f)
			space = false
			continue
		}
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			if !space {
				dst = append(dst, ' ')
			}
			space = true
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case i+1 < len(src):
			n := src[i+1]
			switch {
			case c == 0xC3 && n >= 0x80 && n <= 0x9E && n != 0x97: // À..Þ
				dst = append(dst, c, n+0x20)
				i++
				space = false
				continue
			case c == 0xD0 && n >= 0x90 && n <= 0x9F: // А..П
				dst = append(dst, 0xD0, n+0x20)
				i++
				space = false
				continue
			case c == 0xD0 && n >= 0xA0 && n <= 0xAF: // Р..Я
				dst = append(dst, 0xD1, n-0x20)
				i++
				space = false
				continue
			case c == 0xD0 && n == 0x81: // Ё
				dst = append(dst, 0xD1, 0x91)
				i++
				space = false
				continue
			case c == 0xE2 && n == 0x80 && i+2 < len(src) && src[i+2] == 0x99: // ’
				dst = append(dst, '\'')
				i += 2
				space = false
				continue
			}
		}
		dst = append(dst, c)
		space = false
	}
	return dst
}

// asciiFold lower-cases an ASCII byte; the white space fold turns into one space is foldSpace.
var asciiFold = func() (t [128]byte) {
	for c := range t {
		t[c] = byte(c)
		if c >= 'A' && c <= 'Z' {
			t[c] += 'a' - 'A'
		}
	}
	for _, c := range []byte{' ', '\n', '\t', '\r'} {
		t[c] = foldSpace
	}
	return t
}()

const foldSpace = 0xff // no ASCII byte folds to it

func isASCIILetter(c byte) bool { return (c|0x20)-'a' < 26 }
