package fakellm

import (
	"math"
)

// vocab is the closed word list generated text is drawn from. Plain
// lower-case ASCII, so words never need JSON escaping on the hot path.
var vocab = [...]string{
	"the", "model", "returns", "a", "short", "answer", "about", "data",
	"and", "this", "is", "simulated", "output", "from", "fake", "gpu",
	"tokens", "flow", "through", "gateway", "to", "client", "with", "low",
	"latency", "every", "request", "gets", "deterministic", "text", "for", "its",
	"prompt", "seed", "inference", "server", "batch", "cache", "stream", "chunk",
	"backend", "route", "canary", "stable", "version", "metric", "drift", "score",
	"safe", "content", "policy", "filter", "user", "system", "assistant", "reply",
	"quick", "brown", "fox", "jumps", "over", "lazy", "dog", "again",
}

// rng is splitmix64: tiny, fast, and good enough for picking words. It is a
// value type so a generator can live inside pooled structs without allocation.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a uniform float64 in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// mix scrambles one 64-bit value (a single splitmix64 step).
func mix(x uint64) uint64 {
	r := rng{x}
	return r.next()
}

// fnv1a64 hashes b continuing from h; start with fnvOffset.
func fnv1a64(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	return h
}

const fnvOffset = 0xcbf29ce484222325

// countWords counts whitespace-separated words, our stand-in for tokens.
func countWords(b []byte) int {
	n, in := 0, false
	for _, c := range b {
		space := c == ' ' || c == '\n' || c == '\t' || c == '\r'
		if !space && !in {
			n++
		}
		in = !space
	}
	return n
}

// words yields the deterministic token texts of one completion: the first
// word bare, later ones with a leading space, as BPE tokenizers emit them.
type words struct {
	r rng
	i int
}

func newWords(seed int64, promptHash uint64) words {
	return words{r: rng{uint64(seed) ^ promptHash}}
}

// choiceWords returns the generator of choice i (of n) for the prompt that
// base came from: choice 0 is base itself, so n=1 text does not depend on n.
func choiceWords(base words, i int) words {
	if i == 0 {
		return base
	}
	return words{r: rng{base.r.s ^ mix(uint64(i))}}
}

// appendNext appends the next token text to dst.
func (w *words) appendNext(dst []byte) []byte {
	k, space := w.nextToken()
	if space {
		dst = append(dst, ' ')
	}
	return append(dst, vocab[k]...)
}

// nextToken returns the next token: its word in vocab, and whether a space leads it.
func (w *words) nextToken() (k int, space bool) {
	space = w.i > 0
	w.i++
	return int(w.r.next() % uint64(len(vocab))), space
}

// fillEmbedding appends dim unit-length components derived from seed and h.
func fillEmbedding(v []float32, seed int64, h uint64, dim int) []float32 {
	r := rng{uint64(seed) ^ h ^ 0x5bd1e995}
	var sum float64
	for i := 0; i < dim; i++ {
		f := r.float()*2 - 1
		sum += f * f
		v = append(v, float32(f))
	}
	if sum > 0 {
		inv := 1 / math.Sqrt(sum)
		for i := range v {
			v[i] = float32(float64(v[i]) * inv)
		}
	}
	return v
}

const hexDigits = "0123456789abcdef"

// appendHexID appends 32 lower-case hex digits (a uuid4().hex look-alike)
// derived from x.
func appendHexID(dst []byte, x uint64) []byte {
	a, b := mix(x), mix(x^0xa5a5a5a5a5a5a5a5)
	for _, v := range [2]uint64{a, b} {
		for shift := 60; shift >= 0; shift -= 4 {
			dst = append(dst, hexDigits[(v>>uint(shift))&0xf])
		}
	}
	return dst
}

// appendJSONString appends s as a quoted JSON string.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONText(dst, s)
	return append(dst, '"')
}

// appendJSONText appends s escaped as the inside of a JSON string.
func appendJSONText[T string | []byte](dst []byte, s T) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	return append(dst, s[start:]...)
}
