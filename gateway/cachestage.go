package gateway

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/drift"
	"github.com/llmgate/llmgate/gateway/cache"
	"github.com/llmgate/llmgate/gateway/jsonscan"
)

// The response cache (stages 5 and 8). What is stored is the backend's answer, before the
// completion guard: the key is the prompt after redaction, so two prompts that differ only in
// personal data share an entry, and each hit runs the completion guard (leaks, placeholders
// restored from the requester's own vault) like an answer fresh from the backend.

// Values of the x-llmgate-cache response header.
const (
	cacheHit       = "hit"
	cacheMiss      = "miss"
	cacheBypass    = "bypass"
	cacheRefresh   = "refresh" // x-llmgate-cache: refresh: not looked up, but stored
	cacheCoalesced = "coalesced"
)

var cacheResults = [...]string{cacheHit, cacheMiss, cacheBypass, cacheRefresh, cacheCoalesced}

// cacheResultIndex is the index of result in cacheResults: a switch, where a map lookup by
// the string cost a hash of it for every request.
func cacheResultIndex(result string) int {
	switch result {
	case cacheHit:
		return 0
	case cacheMiss:
		return 1
	case cacheBypass:
		return 2
	case cacheRefresh:
		return 3
	case cacheCoalesced:
		return 4
	}
	panic("BUG: unknown cache result " + result)
}

// versionCache is one version's cache settings and series, built with the snapshot.
type versionCache struct {
	policy  cache.Policy
	scope   *cache.Scope                        // nil when no alias caches (no store)
	results [len(cacheResults)]*metrics.Counter // by cacheResultIndex
	// duration is the version's gen_ai_server_request_duration_seconds, which answers from the
	// cache (hits, coalesced followers) count in too: the latency users of the version saw.
	duration *metrics.PrometheusHistogram
}

func (g *Gateway) newVersionCache(alias, version string, mc cacheSettings) *versionCache {
	vc := &versionCache{policy: cache.Policy{Enabled: mc.enabled && g.cacheStore != nil, TTL: mc.ttl, AllowNonDeterministic: mc.nondeterministic}}
	vc.duration = g.metrics.set.GetOrCreatePrometheusHistogramExt(`gen_ai_server_request_duration_seconds{model=`+promLabel(alias)+
		`,version=`+promLabel(version)+`}`, durationBuckets)
	if g.cacheStore != nil {
		vc.scope = g.cacheStore.Scope(alias, version)
	}
	for i, res := range cacheResults {
		vc.results[i] = g.metrics.set.GetOrCreateCounter(`llmgate_cache_requests_total{model=` + promLabel(alias) +
			`,version=` + promLabel(version) + `,result="` + res + `"}`)
	}
	return vc
}

type cacheSettings struct {
	enabled, nondeterministic bool
	ttl                       time.Duration
}

// cacheState is the cache's per-request state, part of the pooled request.
type cacheState struct {
	req      cache.Request
	decision cache.Decision
	vc       *versionCache
	flight   *cache.Flight // this request leads a flight: it must Finish or Fail it
	admit    bool          // a stored answer is wanted (see cache.Store.Admit)
	recorder *cache.Recorder
	result   string
	buf      []byte // a replayed answer
	id       []byte
}

func (s *cacheState) reset() {
	if s.flight != nil {
		s.flight.Fail() // a no-op after Finish; releases followers on every other path
		s.flight = nil
	}
	if s.recorder != nil {
		cache.ReleaseRecorder(s.recorder)
		s.recorder = nil
	}
	s.req.Reset()
	s.decision, s.vc, s.result, s.buf, s.id, s.admit = cache.Bypass, nil, "", s.buf[:0], s.id[:0], false
	if cap(s.buf) > maxPooledBody { // a long answer's replay (a stream's is several times its text) is not kept for every request after it
		s.buf = nil
	}
}

var (
	errCacheMiss  = &apiError{status: fasthttp.StatusGatewayTimeout, typ: typeInvalidRequest, code: "cache_miss", message: "x-llmgate-cache: only-if-cached was asked and no cached answer exists."}
	errCacheValue = badRequest("", "The x-llmgate-cache header must be bypass, refresh or only-if-cached.")
)

// cacheLookup is stage 5. It answers the request from the cache, from a flight it joins, or
// readies this request to lead a flight and store its answer. handled reports that the response
// was produced (done as proxy returns it).
func (g *Gateway) cacheLookup(ctx *fasthttp.RequestCtx, r *request, snap *snapshot) (handled, done bool) {
	vc := snap.caches[r.version]
	if vc == nil {
		return false, false
	}
	cs := &r.cache
	cs.vc = vc
	var req *cache.Request
	if vc.policy.Enabled {
		// An error leaves req unprepared and Decide bypasses it.
		_ = cache.Prepare(&cs.req, cache.Kind(r.op), r.version.Alias, r.version.Name, r.body)
		req = &cs.req
	}
	d, why := cache.Decide(vc.policy, req, ctx.Request.Header.Peek("X-Llmgate-Cache"), ctx.Request.Header.Peek("Cache-Control"))
	if why == cache.ReasonBadHeader {
		return true, g.fail(ctx, r, errCacheValue)
	}
	cs.decision = d
	cs.result = cacheBypass
	if d&cache.Lookup != 0 {
		if e, ok := g.cacheStore.Get(vc.scope, &cs.req); ok {
			return true, g.replay(ctx, r, e, cacheHit)
		}
		cs.result = cacheMiss
		r.stats.cache = drift.CacheMiss
		if d&cache.OnlyCached == 0 { // an only-if-cached miss gets no answer: none to admit, and not asked
			cs.admit = g.cacheStore.Admit(&cs.req)
		}
	} else if d&cache.Save != 0 {
		g.cacheStore.Begin(vc.scope, &cs.req) // refresh: stored in the generation it started in
		cs.admit = true                       // asked for: stored whatever is new
	}
	if d&cache.OnlyCached != 0 {
		cs.result = cacheMiss
		if d&cache.Lookup == 0 {
			// Nothing was looked up (the model has no cache, or the request is not cacheable):
			// no miss, not counted against the hit ratio.
			cs.result = cacheBypass
		}
		g.setCacheHeader(ctx, r)
		// The miss is final, but the OpenAI SDKs retry a 504 twice unless the server says not to.
		ctx.Response.Header.Set("X-Should-Retry", "false")
		// No model answered: the version's statistics (error and refusal rates, which the
		// rollouts judge) are of its answers, and a poll of the cache is none.
		r.stats.vs = nil
		if msg := uncachedWhy(why, r.version.Alias); msg != "" {
			return true, g.fail(ctx, r, &apiError{status: errCacheMiss.status, typ: errCacheMiss.typ, code: errCacheMiss.code,
				message: "x-llmgate-cache: only-if-cached was asked, and " + msg})
		}
		return true, g.fail(ctx, r, errCacheMiss)
	}
	if d&cache.Lookup != 0 {
		f, leader := g.flights.Join(&cs.req)
		if leader {
			cs.flight = f
		} else {
			if d&cache.Save != 0 {
				f.WantSaved() // the leader may be a no-store request: its answer is this one's too
			}
			if handled, done := g.follow(ctx, r, f); handled {
				g.cacheStore.Coalesced(vc.scope) // not the miss Get counted
				return true, done
			}
		}
	}
	if d&cache.Save != 0 && cs.result == cacheBypass {
		// Refresh: not looked up, but stored. Not a miss: nothing was looked for, and a miss
		// would lower the hit ratio a dashboard computes from llmgate_cache_requests_total.
		cs.result = cacheRefresh
	}
	g.setCacheHeader(ctx, r)
	return false, false
}

// uncachedWhy says why a request of alias is never answered from the cache, for an
// only-if-cached 504; "" when it may be (it was looked up and missed).
func uncachedWhy(why cache.Reason, alias string) string {
	switch why {
	case cache.ReasonDisabled:
		return "model `" + alias + "` has no response cache (its cache.enabled is off)."
	case cache.ReasonNonDeterministic:
		return "this request is not cached: it is not deterministic (send temperature 0 or a seed, or set the model's cache.nondeterministic)."
	case cache.ReasonChoices:
		return "this request is not cached: its n is not a small positive integer."
	case cache.ReasonPerChunkUsage:
		return "this request is not cached: it asks for usage on every chunk (stream_options.continuous_usage_stats), which a cached answer cannot give."
	case cache.ReasonUncacheable:
		return "this request is not cached: its body cannot be keyed (it is not a JSON object, repeats a key, or holds a number out of range)."
	}
	return ""
}

func (g *Gateway) setCacheHeader(ctx *fasthttp.RequestCtx, r *request) {
	ctx.Response.Header.Set("X-Llmgate-Cache", r.cache.result)
}

// follow waits for the flight's leader and answers with its result. When the leader failed
// (or its answer is not one to share) it returns handled false: the request goes to the backend
// on its own.
func (g *Gateway) follow(ctx *fasthttp.RequestCtx, r *request, f *cache.Flight) (handled, done bool) {
	wctx, cancel := context.WithDeadline(context.Background(), r.start.Add(g.cfg.Timeouts.Total))
	defer func() { cancel() }()
	if !r.stream {
		e, err := f.Wait(wctx)
		if err != nil || e == nil {
			return false, false
		}
		return true, g.replay(ctx, r, e, cacheCoalesced)
	}
	r.cache.id = cache.AppendID(r.cache.id[:0], cache.Kind(r.op))
	fl := f.Follow(r.cache.id, time.Now().Unix())
begun:
	for {
		ev, err := fl.Next(wctx)
		switch {
		case errors.Is(err, io.EOF) && fl.Events() == 0:
			// The leader was a buffered request: replay its answer as a stream.
			if e := fl.Entry(); e != nil {
				return true, g.replay(ctx, r, e, cacheCoalesced)
			}
			return false, false
		case err != nil, hasErrorMember(ev):
			// The leader's backend failed before its answer began (an error as its first
			// event, or after chunks that only opened the answer with its role): nothing has
			// reached this client yet, so it goes to the backend itself, as when a leader
			// fails before its 200, rather than share an error its own request may not meet.
			return false, false
		case !opensAnswer(ev):
			break begun
		}
	}
	fl.Rewind() // the client gets the leader's stream from its first event
	r.cache.result = cacheCoalesced
	r.stats.cache = drift.CacheHit // answered by the leader's backend call, as replay's followers are
	g.setCacheHeader(ctx, r)
	g.startStream(ctx, r, &followerSource{fl: fl, ctx: wctx, cancel: cancel})
	cancel = func() {} // the source owns the context now
	return true, false
}

// opensAnswer reports whether a stream event payload only opens the answer: a chunk whose choices
// carry no generated content and no finish_reason, as the chunk with the role that vLLM and
// OpenAI send first.
func opensAnswer(data []byte) bool {
	cs, ce := jsonscan.Find(data, "choices")
	if cs < 0 {
		return false
	}
	choices := data[cs:ce]
	i := jsonscan.FirstElementStart(choices)
	if i < 0 || carriesTokens(choices) {
		return false
	}
	for ; i >= 0; i = jsonscan.NextElementStart(choices, i) {
		choice := choices[i:] // Find reads up to the choice's closing brace
		if fs, fe := jsonscan.Find(choice, "finish_reason"); fs >= 0 && string(choice[fs:fe]) != "null" {
			return false
		}
	}
	return true
}

// hasErrorMember reports whether a stream event payload is an error event: a top-level "error"
// member that is not null.
func hasErrorMember(data []byte) bool {
	s, e := jsonscan.Find(data, "error")
	return s >= 0 && string(data[s:e]) != "null"
}

// replay answers from a cache entry, buffered or as a stream, through the same completion
// stages as a backend answer.
func (g *Gateway) replay(ctx *fasthttp.RequestCtx, r *request, e *cache.Entry, result string) bool {
	cs := &r.cache
	cs.result = result
	r.stats.cache = drift.CacheHit
	g.setCacheHeader(ctx, r)
	cs.id = cache.AppendID(cs.id[:0], cache.Kind(r.op))
	now := ctx.Time().Unix() // when the request arrived: one clock read fewer per hit
	r.status = fasthttp.StatusOK
	if r.stream {
		// The entry replays with its usage chunk; the stream stage drops it when the client did
		// not ask, exactly as for a backend stream.
		cs.buf = e.AppendSSE(cs.buf[:0], cs.id, now, true)
		g.startStream(ctx, r, &bytesSource{b: cs.buf})
		return false
	}
	body := e.AppendJSON(cs.buf[:0], cs.id, now)
	cs.buf = body
	r.inputTokens, r.outputTokens = e.Tokens()
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	if r.stats.vs != nil {
		r.stats.noteCached(e.First())
		r.stats.refused = e.Refused() // as noteCompletion reads the backend's answer
		r.stats.replayed = e
	}
	if !g.cachedAnswerClean(r, e) {
		var err error
		if body, err = g.guardCompletion(r, body); err != nil {
			return g.fail(ctx, r, err) // not for a stored entry, which was JSON when stored
		}
	}
	setGuardHeader(ctx, r)
	ctx.Response.SetBody(body)
	return true
}

// cacheStoreBuffered is stage 8 for a buffered answer: the backend's body, before the guard.
func (g *Gateway) cacheStoreBuffered(r *request, backendBody []byte) {
	cs := &r.cache
	if cs.flight == nil && cs.decision&cache.Save == 0 {
		return
	}
	if r.status != fasthttp.StatusOK {
		return // reset fails the flight
	}
	store := cs.saves() && cs.admitted()
	if !store {
		if cs.flight == nil || cs.flight.EndUnfollowed() {
			cs.flight = nil
			return // an entry nobody would use
		}
		store = cs.saves() // a request joined the flight just now: asked again
	}
	e, err := cache.NewEntry(cache.Kind(r.op), backendBody, cs.req.Choices())
	if err != nil {
		return
	}
	if store {
		g.cacheStore.Set(cs.vc.scope, &cs.req, e, cs.vc.policy.TTL)
	}
	if cs.flight != nil {
		cs.flight.Finish(e)
		cs.flight = nil
	}
}

// saves reports whether the answer this request gets may be stored: the request allows it, or
// a request that does joined its flight (see cache.Flight.WantSaved).
func (cs *cacheState) saves() bool {
	return cs.decision&cache.Save != 0 || cs.flight != nil && cs.flight.SaveWanted()
}

// admitted reports whether the answer this request gets is to be stored: Admit said so at the
// lookup, or an identical request joined its flight since, and was thus asked again (Admit
// would store the next one's answer; this one is the same).
func (cs *cacheState) admitted() bool {
	return cs.admit || cs.flight != nil && cs.flight.Followed()
}

// maxCachedStream bounds what one recorded stream may hold.
const maxCachedStream = 4 << 20

// startRecording readies stage 8 for a stream this request leads or stores.
func (cs *cacheState) startRecording(op operation) {
	if cs.flight != nil || cs.decision&cache.Save != 0 {
		cs.recorder = cache.AcquireRecorder(cache.Kind(op), cs.req.Choices(), maxCachedStream)
	}
}

// record is stage 8 per stream event: the backend's payload, before guard and usage stripping.
func (cs *cacheState) record(data []byte) {
	if cs.recorder == nil {
		return
	}
	if cs.recorder.Add(data) != nil {
		cache.ReleaseRecorder(cs.recorder) // not cacheable; followers still get the events
		cs.recorder = nil
	}
	if cs.flight != nil {
		cs.flight.Publish(data)
	}
}

// endStream is stage 8 at the end of a stream: a complete stream is stored and finishes the
// flight; anything else fails it (in reset).
func (g *Gateway) endStream(r *request, clean bool) {
	cs := &r.cache
	if !clean || (cs.flight == nil && cs.recorder == nil) {
		return
	}
	var e *cache.Entry
	if cs.recorder != nil {
		if entry, err := cs.recorder.Entry(); err == nil {
			e = entry
			if cs.saves() && cs.admitted() {
				g.cacheStore.Set(cs.vc.scope, &cs.req, e, cs.vc.policy.TTL)
			}
		}
	}
	if cs.flight != nil {
		cs.flight.Finish(e) // nil: complete but not cacheable; followers already have every event
		cs.flight = nil
	}
}

// bytesSource is a replayed stream body.
type bytesSource struct{ b []byte }

func (s *bytesSource) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// followerSource is the stream of a flight's leader as this follower reads it, framed as SSE.
type followerSource struct {
	fl     *cache.Follower
	pend   []byte
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

func (s *followerSource) Read(p []byte) (int, error) {
	for len(s.pend) == 0 {
		if s.err != nil {
			s.cancel()
			return 0, s.err
		}
		var data []byte
		if data, s.err = s.fl.Next(s.ctx); s.err != nil {
			if errors.Is(s.err, cache.ErrLeaderFailed) {
				s.err = io.ErrUnexpectedEOF // the stream stage reports a broken stream
			}
			continue
		}
		s.pend = append(append(append(s.pend[:0], "data: "...), data...), "\n\n"...)
	}
	n := copy(p, s.pend)
	s.pend = s.pend[n:]
	return n, nil
}

// syncCacheMetrics copies the store's own counters into /metrics before a scrape.
func (g *Gateway) syncCacheMetrics() {
	if g.cacheStore == nil {
		return
	}
	st := g.cacheStore.Stats()
	set := g.metrics.set
	set.GetOrCreateCounter("llmgate_cache_evictions_total").Set(st.Evictions)
	set.GetOrCreateCounter("llmgate_cache_stores_total").Set(st.Stores)
	set.GetOrCreateCounter("llmgate_cache_not_admitted_total").Set(st.NotAdmitted)
	set.GetOrCreateGauge("llmgate_cache_bytes", nil).Set(float64(st.Bytes))
	set.GetOrCreateGauge("llmgate_cache_entries", nil).Set(float64(st.Entries))
	set.GetOrCreateGauge("llmgate_cache_max_bytes", nil).Set(float64(st.MaxBytes))
	fs := g.flights.Stats()
	set.GetOrCreateGauge("llmgate_cache_flights_in_flight", nil).Set(float64(fs.InFlight))
}

// cacheView is GET /admin/cache.
type cacheView struct {
	Enabled     bool             `json:"enabled"`
	Bytes       int64            `json:"bytes"`
	MaxBytes    int64            `json:"max_bytes"`
	Entries     int64            `json:"entries"`
	Hits        uint64           `json:"hits"`
	Misses      uint64           `json:"misses"`
	Coalesced   uint64           `json:"coalesced"` // answered by an identical request's backend call
	HitRatio    float64          `json:"hit_ratio"`
	Stores      uint64           `json:"stores"`
	NotAdmitted uint64           `json:"not_admitted"` // answers to new requests not stored while the cache was nearly full
	Evicted     uint64           `json:"evictions"`
	Aliases     []aliasCacheView `json:"models"`
	Flights     cache.GroupStats `json:"coalescing"`
}

type aliasCacheView struct {
	Alias     string  `json:"model"`
	Enabled   bool    `json:"enabled"` // the model's cache is on: its requests may be answered from here
	Entries   int64   `json:"entries"`
	Bytes     int64   `json:"bytes"`
	Hits      uint64  `json:"hits"`
	Misses    uint64  `json:"misses"`
	Coalesced uint64  `json:"coalesced"`
	HitRatio  float64 `json:"hit_ratio"`
}

// serveCache answers GET /admin/cache and DELETE /admin/cache[?model=alias[&version=v]].
func (g *Gateway) serveCache(ctx *fasthttp.RequestCtx, seg []string) bool {
	if len(seg) != 2 || seg[0] != "admin" || seg[1] != "cache" {
		return false
	}
	method := string(ctx.Method())
	// As in serveDeploy: methods that write need the admin role, and any other (HEAD, OPTIONS)
	// is a read token's to try and gets the 405 saying what the URL takes.
	role := roleRead
	switch method {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodDelete, fasthttp.MethodPatch:
		role = roleAdmin
	}
	if _, err := g.authorize(ctx, role); err != nil {
		writeError(ctx, err)
		return true
	}
	switch method {
	case fasthttp.MethodGet:
		if !onlyQueryArgs(ctx) {
			return true
		}
		v := cacheView{Enabled: g.cacheStore != nil, Aliases: []aliasCacheView{}, Flights: g.flights.Stats()}
		if g.cacheStore != nil {
			st := g.cacheStore.Stats()
			v.Bytes, v.MaxBytes, v.Entries, v.Hits, v.Misses, v.HitRatio = st.Bytes, st.MaxBytes, st.Entries, st.Hits, st.Misses, st.HitRatio()
			v.Coalesced, v.Stores, v.NotAdmitted, v.Evicted = st.Coalesced, st.Stores, st.NotAdmitted, st.Evictions
			enabled := map[string]bool{}
			for ver, vc := range g.snap.Load().caches {
				enabled[ver.Alias] = enabled[ver.Alias] || vc.policy.Enabled
			}
			for _, a := range st.Aliases {
				v.Aliases = append(v.Aliases, aliasCacheView{Alias: a.Alias, Enabled: enabled[a.Alias], Entries: a.Entries, Bytes: a.Bytes,
					Hits: a.Hits, Misses: a.Misses, Coalesced: a.Coalesced, HitRatio: a.HitRatio()})
			}
		}
		encodeJSON(ctx, fasthttp.StatusOK, v)
	case fasthttp.MethodDelete:
		if !onlyQueryArgs(ctx, "model", "version") {
			return true
		}
		args := ctx.QueryArgs()
		alias, version := string(args.Peek("model")), string(args.Peek("version"))
		switch {
		case args.Has("model") && alias == "":
			// An empty shell variable must not turn "empty this model" into "empty everything".
			writeError(ctx, badRequest("model", "?model= names no model; leave it out to empty the whole cache."))
			return true
		case args.Has("version") && alias == "":
			writeError(ctx, badRequest("version", "A version is deleted from the cache together with its model: ?model=alias&version=v."))
			return true
		case args.Has("version") && version == "":
			writeError(ctx, badRequest("version", "?version= names no version; leave it out to empty the whole model."))
			return true
		}
		if alias != "" {
			// The deploy state says what exists: a misspelt name is a 404, not "deleted: 0".
			// Deleting a version or a model from the deploy state also empties its cache, so no
			// entries outlive their name.
			m := g.currentState().Model(alias)
			if m == nil {
				writeError(ctx, &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", param: "model",
					message: "No model `" + alias + "`; GET /admin/models lists them."})
				return true
			}
			if version != "" && m.Version(version) == nil {
				writeError(ctx, &apiError{status: fasthttp.StatusNotFound, typ: typeInvalidRequest, code: "version_not_found", param: "version",
					message: "Model `" + alias + "` has no version `" + version + "`; GET /admin/models/" + alias + " lists them."})
				return true
			}
		}
		n := 0
		if g.cacheStore != nil {
			switch {
			case version != "":
				n = g.cacheStore.DeleteVersion(alias, version)
			case alias != "":
				n = g.cacheStore.DeleteAlias(alias)
			default:
				n = g.cacheStore.DeleteAll()
			}
		}
		encodeJSON(ctx, fasthttp.StatusOK, map[string]any{"deleted": n, "model": alias, "version": version})
	default:
		methodNotAllowed(ctx, "GET, DELETE")
	}
	return true
}
