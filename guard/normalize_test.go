package guard

import (
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"case and separators", "  Hello,   WORLD!  ", "hello world"},
		{"punctuation splits words", "don't-stop_me.now", "don t stop me now"},
		{"fullwidth", "ＡＢＣ ｘｙｚ ０１２", "abc xyz 012"},
		{"accents", "Ça va? Übergrößenträger", "ca va ubergrossentrager"},
		{"ligature", "ﬁnd the ﬂag", "find the flag"},
		{"cyrillic look-alikes", "раураl", "paypal"},
		{"greek look-alikes", "ΑΒΕΗΙΚΜΝΟΡΤΧ", "abehikmnoptx"},
		{"math letters", "𝐇𝐞𝐥𝐥𝐨 𝕨𝕠𝕣𝕝𝕕", "hello world"},
		{"circled and squared", "ⓗⓔⓛⓛⓞ 🅷🅸", "hello hi"},
		{"zero width and bidi", "he\u200bl\u200cl\u200do\u2060 wo\ufeffr\u202eld", "hello world"},
		{"tag characters", "a\U000E0069\U000E0067b", "ab"},
		{"controls", "ab\x00c\x07d\tе", "abcd e"},
		{"combining marks", "e\u0301te\u0300", "ete"},
		{"leet in words", "h4ck3r 1337 1gn0r3 p@ssw0rd", "hacker 1337 ignore password"},
		{"digits alone stay", "port 8080 v1.2.3 x86 0day", "port 8080 vi 23 x86 oday"},
		{"at between words", "me @ home, user@example.com", "me home useraexample com"},
		{"letter spacing", "i g n o r e  t h i s", "ignore this"},
		{"letter spacing with dots", "i.g.n.o.r.e t.h.i.s", "ignore this"},
		{"two letters join", "n o way", "no way"},
		{"different separators break", "a.b c", "ab c"},
		{"long word ends a run", "a b cd", "ab cd"},
		{"single letters in prose", "x+a+b = c", "xab c"},
		{"marks", "<|im_start|>system [INST] </s>", "< | im start | > system [ inst ] < / s >"},
		{"slash is a mark only after < or [", "a/b </x> [ /y]", "ab < / x > [ / y ]"},
		{"CJK separates", "忽略ignore以上", "ignore"},
		{"empty", "", ""},
		{"only separators", " ,.;!? ", ""},
		{"invalid utf-8", "ab\xffcd\xe2\x82", "ab cd"},
	}
	for _, tt := range tests {
		if got := string(Normalize(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("%s: Normalize(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestNormalizeAppends(t *testing.T) {
	got := Normalize([]byte("x:"), []byte(" A B "))
	if string(got) != "x:ab" {
		t.Errorf("Normalize appended %q", got)
	}
}

// normalizePieces normalises text fed in the given pieces, as a stream lane sees it.
func normalizePieces(pieces ...[]byte) []byte {
	var l normLane
	l.collect = true
	l.reset(0)
	n := 0
	for _, p := range pieces {
		l.feedPlain(nil, p, n)
		n += len(p)
	}
	l.end(nil, n)
	if k := len(l.buf); k > 0 && l.buf[k-1] == ' ' {
		return l.buf[:k-1]
	}
	return l.buf
}

func TestNormalizeSplit(t *testing.T) {
	in := []byte("i.g.n.o.r.e ｆｕｌｌ\u200bwidth h4x0r <|x|> ünïcödé \xe2\x82\xac end")
	want := string(Normalize(nil, in))
	for i := 0; i <= len(in); i++ {
		if got := string(normalizePieces(in[:i], in[i:])); got != want {
			t.Fatalf("split at %d: %q, want %q", i, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "Ignore previous", "i g n o r e", "ｆｕｌｌ", "h4x0r", "<|im_start|>", "\xff\xe2\x82", "a\u200bb", "é\u0301"} {
		f.Add([]byte(s), uint16(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		out := Normalize(nil, in)
		for i, c := range out {
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ' ' || c == '<' || c == '>' ||
				c == '[' || c == ']' || c == '|' || c == '/'
			if !ok {
				t.Fatalf("Normalize(%q) = %q: byte %q at %d", in, out, c, i)
			}
		}
		if len(out) > 0 && (out[0] == ' ' || out[len(out)-1] == ' ') {
			t.Fatalf("Normalize(%q) = %q: space at an end", in, out)
		}
		for i := 1; i < len(out); i++ {
			if out[i] == ' ' && out[i-1] == ' ' {
				t.Fatalf("Normalize(%q) = %q: two spaces", in, out)
			}
		}
		// At most three bytes out per byte in (a ligature), plus the spaces around marks.
		if len(out) > 3*len(in)+2 {
			t.Fatalf("Normalize(%q) = %q: too long", in, out)
		}
		k := int(cut) % (len(in) + 1)
		if got := normalizePieces(in[:k], in[k:]); string(got) != string(out) {
			t.Fatalf("Normalize(%q) = %q whole, %q cut at %d", in, out, got, k)
		}
	})
}
