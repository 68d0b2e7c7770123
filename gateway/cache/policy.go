package cache

import (
	"bytes"
	"time"
)

// Policy is one alias's cache settings, resolved when the gateway builds a config snapshot.
type Policy struct {
	Enabled bool
	TTL     time.Duration // 0: entries live until evicted
	// AllowNonDeterministic caches requests without temperature 0 or a seed: every client
	// then gets the first sampled answer.
	AllowNonDeterministic bool
}

// Decision says what the cache does for one request. It is a set of flags so that each
// request header can remove what it forbids.
type Decision uint8

// Decision flags and the combinations the gateway sees.
const (
	// Lookup: answer from the cache or a coalesced flight when possible.
	Lookup Decision = 1 << iota
	// Save: store the backend's answer.
	Save
	// OnlyCached: never call the backend; a miss answers 504.
	OnlyCached

	Bypass       Decision = 0
	Use                   = Lookup | Save
	Refresh               = Save
	OnlyIfCached          = Lookup | OnlyCached
)

// Reason says why a request is not fully cacheable; a bounded metric label.
type Reason uint8

// Reasons.
const (
	ReasonNone             Reason = iota // cacheable: lookup and store
	ReasonDisabled                       // the alias has caching off
	ReasonUncacheable                    // Prepare failed: invalid JSON, duplicate keys, huge numbers
	ReasonNonDeterministic               // no temperature 0 and no seed
	ReasonChoices                        // n is not a small positive integer
	ReasonBypass                         // x-llmgate-cache: bypass
	ReasonRefresh                        // x-llmgate-cache: refresh (Cache-Control: no-cache is ignored: see Decide)
	ReasonNoStore                        // Cache-Control: no-store
	ReasonOnlyIfCached                   // x-llmgate-cache or Cache-Control: only-if-cached
	ReasonBadHeader                      // x-llmgate-cache has an unknown value
	ReasonPerChunkUsage                  // stream_options.continuous_usage_stats: usage on every chunk
	numReasons
)

var reasonNames = [numReasons]string{"none", "disabled", "uncacheable", "non_deterministic",
	"choices", "bypass", "refresh", "no_store", "only_if_cached", "bad_header", "per_chunk_usage"}

// String returns r as a metric label value.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Decide applies p and the request's headers to req, prepared by Prepare (nil when the
// gateway skipped Prepare because p is disabled). cacheHeader is x-llmgate-cache (bypass,
// refresh, only-if-cached); cacheControl is Cache-Control, of which no-store and only-if-cached
// count. no-cache does not: the OpenAI SDKs send it on every stream request as an SSE habit,
// not as a wish about the gateway's cache (x-llmgate-cache: refresh says that). Reason explains
// the first rule that took something away.
//
// Rules: a disabled alias or an uncacheable body bypasses (only-if-cached then answers 504
// without lookup); a body that is not deterministic (temperature 0 or a seed; embeddings always
// are) bypasses unless p allows it; bypass wins over every other header; refresh skips the
// lookup but stores; no-store never stores; only-if-cached never calls the backend.
func Decide(p Policy, req *Request, cacheHeader, cacheControl []byte) (Decision, Reason) {
	var noStore, noCache, onlyCached bool
	forEachToken(cacheControl, func(tok []byte) {
		switch {
		case bytes.EqualFold(tok, []byte("no-store")):
			noStore = true
		case bytes.EqualFold(tok, []byte("only-if-cached")):
			onlyCached = true
		}
	})
	h := bytes.TrimSpace(cacheHeader)
	switch {
	case len(h) == 0:
	case bytes.EqualFold(h, []byte("bypass")):
		return Bypass, ReasonBypass
	case bytes.EqualFold(h, []byte("refresh")):
		noCache = true
	case bytes.EqualFold(h, []byte("only-if-cached")):
		onlyCached = true
	default:
		return Bypass, ReasonBadHeader
	}
	d, why := Use, ReasonNone
	switch {
	case !p.Enabled:
		d, why = Bypass, ReasonDisabled
	case req == nil || !req.ok:
		d, why = Bypass, ReasonUncacheable
	case req.N < 1:
		d, why = Bypass, ReasonChoices
	case req.PerChunkUsage:
		d, why = Bypass, ReasonPerChunkUsage
	case req.Kind != KindEmbeddings && !p.AllowNonDeterministic &&
		!req.HasSeed && !(req.HasTemperature && req.ZeroTemperature):
		d, why = Bypass, ReasonNonDeterministic
	}
	if d == Bypass {
		if onlyCached {
			return OnlyCached, why // nothing can be looked up: a 504 at once
		}
		return Bypass, why
	}
	switch {
	case onlyCached:
		// RFC 9111 5.2.1.7: answer from the cache or 504; it never stores since it never
		// reaches the backend.
		return OnlyIfCached, ReasonOnlyIfCached
	case noCache && noStore:
		return Bypass, ReasonNoStore
	case noCache:
		return Refresh, ReasonRefresh
	case noStore:
		// A stored answer may still be served (RFC 9111 5.2.1.5 forbids storing only).
		return Lookup, ReasonNoStore
	}
	return d, why
}

// forEachToken calls f with each comma-separated directive of a Cache-Control value, without
// its arguments (max-age=0 gives max-age).
func forEachToken(v []byte, f func(tok []byte)) {
	for len(v) > 0 {
		tok, rest, _ := bytes.Cut(v, []byte(","))
		v = rest
		if name, _, ok := bytes.Cut(tok, []byte("=")); ok {
			tok = name
		}
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			f(tok)
		}
	}
}
