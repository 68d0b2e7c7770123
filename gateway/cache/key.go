// Package cache is llmgate's exact response cache: a canonical key per request, the rules for
// what may be cached, entries that replay as a buffered JSON body or as an SSE stream whatever
// shape they were recorded in, a byte-bounded store with O(1) invalidation, and request
// coalescing. It knows nothing of HTTP or of the gateway's request struct.
package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Kind is the OpenAI endpoint a request targets. The values match the gateway's operation
// order so it can convert with Kind(op).
type Kind uint8

// Endpoint kinds.
const (
	KindChat Kind = iota
	KindCompletion
	KindEmbeddings
	numKinds
)

// Key identifies a cached answer: 128 bits of hash of the kind, alias, version and canonical
// body, two 64-bit maphash values under independent seeds. The seeds are random per process
// (the cache lives in one process), so no client can aim a request at another request's key
// without seeing any key: two different requests share one with probability 2^-128, against
// the billions of requests a cache sees. SHA-256 was the key before; it cost 0.7 us of a
// 1 KiB request where these cost 0.17 (AES-based on amd64 and arm64), a twentieth of a hit.
// 128 bits so that a stored entry can verify a hit against the full key (see Store.Get).
type Key [2]uint64

// keySeeds are the seeds of Key's two halves.
var keySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// hashBytes returns the seeded hash of b: the runtime's AES hash, the one maphash.Bytes uses,
// over all of b in one call. maphash.Bytes hashes b in 128-byte blocks, one call and one
// finalisation each, which costs three times the instructions for a 1 KiB body.
func hashBytes(seed maphash.Seed, b []byte) uint64 {
	return maphash.Comparable(seed, unsafe.String(unsafe.SliceData(b), len(b)))
}

// Request is what the cache learned about one request body. It lives in the gateway's pooled
// per-request state between lookup (stage 5) and store (stage 8); Reset it before reuse.
type Request struct {
	Key  Key
	Kind Kind
	// N is the number of choices asked for (n); 1 when absent, -1 when not a small positive
	// integer (such requests are not cached).
	N int
	// prompts is how many prompts a completion request sends (a list of prompts is answered
	// with n choices for each); 0 stands for 1.
	prompts int
	// HasTemperature, ZeroTemperature and HasSeed decide determinism; null counts as absent.
	HasTemperature, ZeroTemperature, HasSeed bool
	// PerChunkUsage: stream_options asks for vLLM's continuous_usage_stats, usage on every
	// chunk, which a replay or a coalesced stream cannot give.
	PerChunkUsage bool

	ok     bool // Prepare succeeded
	gen    generation
	genSet bool   // gen was captured by Store.Get or Store.Begin
	scope  *Scope // where gen was captured: a version deployed again is a new scope

	// What Prepare was given, for rememberPrepared: a hash of the body as sent (its second
	// half only once the body is remembered or compared with a remembered one), the body
	// itself until Store.Get, and whether the result came from the memo already.
	raw            Key
	alias, version string
	body           []byte
	memoized       bool
}

// Choices returns how many choices a whole answer to r holds: n for each prompt (a
// completion request may send a list of prompts), -1 when n is not cacheable.
func (r *Request) Choices() int {
	if r.N < 1 || r.prompts == 0 {
		return r.N
	}
	return r.N * r.prompts
}

// Reset clears r for reuse.
func (r *Request) Reset() { *r = Request{} }

// excluded are the top-level members that do not change the answer, so they are left out of
// the key: model (replaced by alias and version), transport options (stream, stream_options),
// bookkeeping that identifies the caller or the call (user, metadata, request_id,
// safety_identifier, prompt_cache_key, store). Every other member, vendor extras included,
// is part of the key: an unknown field is assumed to change the answer. isExcluded spells
// the same list as a switch.
var excluded = [...]string{
	"model", "user", "stream", "stream_options", "metadata", "request_id",
	"safety_identifier", "prompt_cache_key", "store",
}

// ErrDuplicateKey means an object in the body repeats a key. Backends disagree on which copy
// wins, so such bodies are not cached.
var ErrDuplicateKey = errors.New("cache: duplicate key in JSON object")

// Prepare computes r's key and decoding for a request body of kind, sent to version of alias.
// An error (invalid or duplicate-keyed JSON, absurd numbers) means the request is not
// cacheable; Decide then answers Bypass. Allocation free in the steady state. body must not
// change until Store.Get has looked r up: a hit reads it again (see rememberPrepared).
func Prepare(r *Request, kind Kind, alias, version string, body []byte) error {
	r.Reset()
	// The hash's second half is computed only against a remembered body whose first half
	// matches: a body that is not remembered, as every miss's, costs one pass, not two.
	raw0 := hashBytes(rawSeeds[0], body)
	if p := preparedBodies[raw0&(preparedSlots-1)].Load(); p != nil &&
		p.raw[0] == raw0 && p.Kind == kind && p.alias == alias && p.version == version &&
		p.raw[1] == hashBytes(rawSeeds[1], body) {
		*r = *p
		r.memoized = true
		return nil
	}
	r.Kind, r.raw[0], r.alias, r.version, r.body = kind, raw0, alias, version, body
	c := acquireCanon(r)
	defer releaseCanon(c)
	c.out = append(c.out, byte(kind))
	c.out = binary.AppendUvarint(c.out, uint64(len(alias)))
	c.out = append(c.out, alias...)
	c.out = binary.AppendUvarint(c.out, uint64(len(version)))
	c.out = append(c.out, version...)
	if err := c.canonical(body); err != nil {
		return err
	}
	r.Key = Key{hashBytes(keySeeds[0], c.out), hashBytes(keySeeds[1], c.out)}
	r.ok = true
	return nil
}

// rawSeeds are the seeds of the hash of a body as sent, which keys preparedBodies.
var rawSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// preparedSlots is the size of preparedBodies: the bodies of the answers a cache serves most
// are far fewer, and a slot's loser is only canonicalised again.
const preparedSlots = 4096

// preparedBodies remembers what Prepare made of the bodies of recent cache hits, by a 128-bit
// hash of the bytes as sent (with kind, alias and version compared in full): the same bytes
// always canonicalise to the same key, so a body that is sent again, byte for byte, as
// clients that repeat a request do, skips the canonical form, which is most of what a hit
// costs before the store is read. Each slot holds an immutable record; Store.Get fills it on
// a hit, so unique requests, which miss, never write here (they pay the first half of the
// hash, about 350 instructions per KiB). Two hot bodies that share a slot take it in turns: each of their hits then
// canonicalises and allocates a record, as it would, plus about 130 bytes.
var preparedBodies [preparedSlots]atomic.Pointer[Request]

// rememberPrepared notes a hit request in preparedBodies unless it came from there; body is
// what Prepare was given (kept in r.body until Store.Get), for the second half of its hash.
func rememberPrepared(r *Request, body []byte) {
	if r.memoized || !r.ok || body == nil {
		return
	}
	p := new(Request)
	*p = *r
	p.gen, p.genSet, p.body = generation{}, false, nil
	p.raw[1] = hashBytes(rawSeeds[1], body)
	preparedBodies[r.raw[0]&(preparedSlots-1)].Store(p)
}

// AppendCanonical appends the canonical form of body to dst: excluded members dropped,
// top-level keys sorted, whitespace removed, strings and numbers in one normal form. Two bodies
// with the same canonical form get the same key.
func AppendCanonical(dst []byte, body []byte) ([]byte, error) {
	var r Request
	c := acquireCanon(&r)
	defer releaseCanon(c)
	if err := c.canonical(body); err != nil {
		return dst, err
	}
	return append(dst, c.out...), nil
}

type canonicalizer struct {
	out     []byte
	tmp     []byte   // holds an object's members while they are reordered
	members []member // the top-level object's members
	req     *Request
}

// member locates one canonical member in out: key out[ks:ke] (quoted), value out[ke+1:ve].
type member struct{ ks, ke, ve int }

var canonPool = sync.Pool{New: func() any { return new(canonicalizer) }}

// acquireCanon returns a canonicalizer for one call; releaseCanon must follow before return.
func acquireCanon(r *Request) *canonicalizer {
	c := canonPool.Get().(*canonicalizer)
	c.out, c.tmp, c.members, c.req = c.out[:0], c.tmp[:0], c.members[:0], r
	return c
}

func releaseCanon(c *canonicalizer) {
	c.req = nil
	if cap(c.out) > 1<<20 || cap(c.tmp) > 1<<20 {
		c.out, c.tmp = nil, nil // one huge body must not pin its buffers in the pool
	}
	canonPool.Put(c)
}

func (c *canonicalizer) canonical(body []byte) error {
	c.req.N = 1
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return errSyntax
	}
	end, err := c.object(body, i)
	if err != nil {
		return err
	}
	if skipWS(body, end) != len(body) {
		return errSyntax
	}
	return nil
}

func (c *canonicalizer) value(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		var err error
		c.out, i, err = appendCanonString(c.out, b, i)
		return i, err
	case '{':
		if depth >= maxDepth {
			return 0, errTooDeep
		}
		return c.nested(b, i, depth+1)
	case '[':
		if depth >= maxDepth {
			return 0, errTooDeep
		}
		return c.array(b, i, depth+1)
	case 't', 'f', 'n':
		end, err := scanValue(b, i, depth)
		if err == nil {
			c.out = append(c.out, b[i:end]...)
		}
		return end, err
	default:
		end, n, err := scanNumber(b, i)
		if err != nil {
			return 0, err
		}
		c.out, err = appendCanonNumber(c.out, b, n)
		return end, err
	}
}

func (c *canonicalizer) array(b []byte, i, depth int) (int, error) {
	c.out = append(c.out, '[')
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		c.out = append(c.out, ']')
		return i + 1, nil
	}
	for {
		var err error
		if i < len(b) && b[i] == '"' {
			c.out, i, err = appendCanonString(c.out, b, i) // without value's frame
		} else {
			i, err = c.value(b, i, depth)
		}
		if err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case ']':
			c.out = append(c.out, ']')
			return i + 1, nil
		case ',':
			c.out = append(c.out, ',')
			i = skipWS(b, i+1)
		default:
			return 0, errSyntax
		}
	}
}

// nested appends the canonical form of an object below the top level: its members in the
// order sent. The order of a nested object's members can change the answer (a JSON schema's
// properties are generated in their order; a chat template writes tools' parameters as sent),
// so bodies that differ in it share no entry; and only the top level drops members or records
// parameters. The members of a message (role, content) go through here: out is kept in a
// local between the calls that append to it.
func (c *canonicalizer) nested(b []byte, i, depth int) (int, error) {
	out := append(c.out, '{')
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		c.out = append(out, '}')
		return i + 1, nil
	}
	for {
		var err error
		if out, i, err = appendCanonString(out, b, i); err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return 0, errSyntax
		}
		i = skipWS(b, i+1)
		out = append(out, ':')
		if i < len(b) && b[i] == '"' {
			out, i, err = appendCanonString(out, b, i)
		} else {
			c.out = out
			i, err = c.value(b, i, depth)
			out = c.out
		}
		if err != nil {
			return 0, err
		}
		out = append(out, ',')
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case '}':
			out[len(out)-1] = '}' // the last member's ','
			c.out = out
			return i + 1, nil
		case ',':
			i = skipWS(b, i+1)
		default:
			return 0, errSyntax
		}
	}
}

// object appends the canonical form of the top-level object at b[i]: excluded members dropped,
// the others in key order, the parameters Decide needs recorded.
func (c *canonicalizer) object(b []byte, i int) (int, error) {
	const depth = 0
	start := len(c.out)
	c.out = append(c.out, '{')
	base := len(c.members)
	sorted := true // the members so far are in strictly increasing key order
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		c.out = append(c.out, '}')
		return i + 1, nil
	}
	for {
		ks := len(c.out)
		var err error
		c.out, i, err = appendCanonString(c.out, b, i)
		if err != nil {
			return 0, err
		}
		ke := len(c.out)
		i = skipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return 0, errSyntax
		}
		i = skipWS(b, i+1)
		if isExcluded(c.out[ks+1 : ke-1]) {
			streamOptions := string(c.out[ks+1:ke-1]) == "stream_options"
			c.out = c.out[:ks]
			start := i
			if i, err = scanValue(b, i, depth); err != nil {
				return 0, err
			}
			if streamOptions && continuousUsage(b[start:i]) {
				c.req.PerChunkUsage = true
			}
		} else {
			c.out = append(c.out, ':')
			if i < len(b) && b[i] == '"' {
				c.out, i, err = appendCanonString(c.out, b, i) // the common case, without value's frame
			} else {
				i, err = c.value(b, i, depth)
			}
			if err != nil {
				return 0, err
			}
			m := member{ks, ke, len(c.out)}
			// Compare with the previous member as it arrives: an object sent in key order
			// (or a one-member object) then needs no sorting and no duplicate check.
			if sorted && len(c.members) > base {
				switch cmp := c.compareKeys(c.members[len(c.members)-1], m); {
				case cmp == 0:
					return 0, ErrDuplicateKey
				case cmp > 0:
					sorted = false
				}
			}
			c.members = append(c.members, m)
			c.param(c.out[ks+1:ke-1], c.out[ke+1:])
			c.out = append(c.out, ',')
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		if b[i] == '}' {
			i++
			break
		}
		if b[i] != ',' {
			return 0, errSyntax
		}
		i = skipWS(b, i+1)
	}
	ms := c.members[base:]
	c.members = c.members[:base] // ms stays valid: nothing appends until this object is done
	if len(ms) == 0 {
		c.out = append(c.out[:start+1], '}')
		return i, nil
	}
	// Only the top level is put in key order (see nested).
	if !sorted {
		if err := c.sortMembers(ms); err != nil {
			return 0, err
		}
		c.reorder(start, ms)
	}
	c.out[len(c.out)-1] = '}' // the last member's ','
	return i, nil
}

// maxInsertionSort is the size up to which sortMembers uses insertion sort: request objects
// have a handful of members, and for those it beats a general sort's setup.
const maxInsertionSort = 12

// sortMembers sorts ms by key and returns ErrDuplicateKey if two keys are equal.
func (c *canonicalizer) sortMembers(ms []member) error {
	if len(ms) > maxInsertionSort {
		slices.SortFunc(ms, c.compareKeys)
		for j := 1; j < len(ms); j++ {
			if c.compareKeys(ms[j-1], ms[j]) == 0 {
				return ErrDuplicateKey
			}
		}
		return nil
	}
	// Insertion sort meets every duplicate: the insertion of a key stops at an equal key,
	// which is compared before any smaller one.
	for j := 1; j < len(ms); j++ {
		m, k := ms[j], j
		for ; k > 0; k-- {
			cmp := c.compareKeys(ms[k-1], m)
			if cmp == 0 {
				return ErrDuplicateKey
			}
			if cmp < 0 {
				break
			}
			ms[k] = ms[k-1]
		}
		ms[k] = m
	}
	return nil
}

// reorder rewrites the object that starts at out[start] with its members in the order of ms,
// each followed by a comma.
func (c *canonicalizer) reorder(start int, ms []member) {
	if start < len(c.out)-start {
		// What precedes the object is shorter than the object (the top level, the first
		// message): write the result into tmp and swap the buffers, which copies the object
		// once instead of out to tmp and back.
		t := append(c.tmp[:0], c.out[:start+1]...)
		for _, m := range ms {
			t = append(t, c.out[m.ks:m.ve]...)
			t = append(t, ',')
		}
		c.out, c.tmp = t, c.out
		return
	}
	c.tmp = append(c.tmp[:0], c.out[start+1:]...)
	c.out = c.out[:start+1]
	for _, m := range ms {
		c.out = append(c.out, c.tmp[m.ks-start-1:m.ve-start-1]...)
		c.out = append(c.out, ',')
	}
}

func (c *canonicalizer) compareKeys(x, y member) int {
	a, b := c.out[x.ks+1:x.ke-1], c.out[y.ks+1:y.ke-1]
	// Most keys differ in their first byte; compare it without a call.
	if len(a) > 0 && len(b) > 0 && a[0] != b[0] {
		return int(a[0]) - int(b[0])
	}
	return bytes.Compare(a, b)
}

// continuousUsage reports whether a stream_options object asks for continuous_usage_stats.
func continuousUsage(v []byte) bool {
	k := bytes.Index(v, []byte(`"continuous_usage_stats"`))
	if k < 0 {
		return false
	}
	i := skipWS(v, k+len(`"continuous_usage_stats"`))
	if i >= len(v) || v[i] != ':' {
		return false
	}
	i = skipWS(v, i+1)
	return bytes.HasPrefix(v[i:], []byte("true"))
}

// isExcluded reports whether key is one of excluded (a switch: Go compiles it to a search by
// length and value, cheaper than a loop of comparisons).
func isExcluded(key []byte) bool {
	switch string(key) {
	case "model", "user", "stream", "stream_options", "metadata", "request_id",
		"safety_identifier", "prompt_cache_key", "store":
		return true
	}
	return false
}

// param records the top-level members Decide needs, from their canonical values.
func (c *canonicalizer) param(key, v []byte) {
	r := c.req
	null := string(v) == "null"
	switch string(key) {
	case "temperature":
		r.HasTemperature = !null
		r.ZeroTemperature = string(v) == "0"
	case "seed":
		r.HasSeed = !null
	case "n":
		r.N = 1
		if !null {
			r.N = canonSmallInt(v)
		}
	case "prompt":
		if r.Kind == KindCompletion {
			r.prompts = countPrompts(v)
		}
	}
}

// countPrompts returns how many prompts the canonical completion prompt v holds: a list of
// strings or of token lists is one prompt per element, a string or one token list is one
// prompt; -1 for an empty list, which no backend answers.
func countPrompts(v []byte) int {
	if len(v) == 0 || v[0] != '[' {
		return 1
	}
	n, tokens := 0, false
	_, _ = eachElement(v, 0, func(vs, _ int) error {
		n++
		tokens = tokens || (v[vs] != '"' && v[vs] != '[')
		return nil
	}, 1)
	switch {
	case tokens:
		return 1
	case n == 0:
		return -1
	}
	return n
}

// maxN bounds the n the cache accepts; larger values are -1 (not cached).
const maxN = 128

// canonSmallInt returns the canonical number v as an int in [1, maxN], or -1.
func canonSmallInt(v []byte) int {
	digits, exp := v, 0
	if e := bytes.IndexByte(v, 'e'); e >= 0 {
		digits = v[:e]
		for _, d := range v[e+1:] {
			if d < '0' || d > '9' || exp > 3 {
				return -1 // a negative exponent: a fraction
			}
			exp = exp*10 + int(d-'0')
		}
	}
	n := 0
	for _, d := range digits {
		if d < '0' || d > '9' || n > maxN {
			return -1
		}
		n = n*10 + int(d-'0')
	}
	for ; exp > 0 && n <= maxN; exp-- {
		n *= 10
	}
	if n < 1 || n > maxN {
		return -1
	}
	return n
}
