// Package gateway composes llmgate: the fasthttp servers, the request pipeline, proxying and SSE
// streaming, /metrics and the admin listener. It is the only package that knows the order of
// the stages; see pipeline.go.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway/cache"
	"github.com/llmgate/llmgate/router"
	"github.com/llmgate/llmgate/router/store"
)

// Gateway serves the OpenAI-compatible data plane and the admin listener.
type Gateway struct {
	cfg       *config.Config
	id        []byte // this process's id in viaHeader (see loop.go)
	snap      atomic.Pointer[snapshot]
	pool      *router.Pool
	upstreams *upstreams
	metrics   *gatewayMetrics
	log       *slog.Logger
	// logRequests: one line per request at level info.
	logRequests bool
	accessLog   *asyncWriter
	tooLarge    *apiError // the 413 of this gateway's limits.max_body_bytes
	prober      *router.Prober
	// classifyQueue runs asynchronous safety classifier calls.
	classifyQueue classifyQueue
	// stats holds drift statistics per model version; nil when drift.off is set.
	stats *statsRegistry
	// modelConfig and guards are the config file's per-alias settings, by alias.
	modelConfig map[string]config.Model
	guards      map[string]*aliasGuard
	// deploy is the admin-managed deploy state; rollouts run progressive rollouts on it.
	deploy   deployState
	rollouts *rollouts
	// shadowSlots bounds mirrors in flight; Close waits for them (shadowsWG).
	shadowSlots chan struct{}
	shadowsWG   sync.WaitGroup
	// untilCloseWG counts streams to HTTP/1.0 clients, on hijacked connections that the
	// server's shutdown does not wait for; Close does (see sendUntilClose).
	untilCloseWG sync.WaitGroup
	// backendPolicy decides which backend URLs admin deploys may use (SSRF).
	backendPolicy *backendPolicy
	// adminKeyEnvs are the environment variables admin deploys may name as api_key_env.
	adminKeyEnvs map[string]bool
	// cacheStore holds cached answers; nil when no alias enables caching.
	cacheStore *cache.Store
	flights    cache.Group
	// adminTokens are the bearer tokens the admin listener accepts.
	adminTokens []adminToken

	startedAt time.Time

	server      *fasthttp.Server
	adminServer *fasthttp.Server
	closing     atomic.Bool
	draining    atomic.Bool // Drain ran: /readyz says shutting_down while requests are still served
	cutting     atomic.Bool // Shutdown's grace is over: a stream that breaks now was cut by it
	closeOnce   sync.Once
	listenersMu sync.Mutex
	listeners   []net.Listener // given to Serve and ServeAdmin; Close closes them
}

// snapshot is what one request runs on from start to end: the routing table and, per backend
// (by router.Backend.Index), its connection pool and metric handles.
type snapshot struct {
	table    *router.Table
	backends []*backendHandles
	guards   map[string]*aliasGuard // by alias; absent when the alias's guard is off
	// guardMetrics holds the guard series of every version of a guarded alias.
	guardMetrics map[*router.Version]*guardMetrics
	// stats holds each version's statistics; empty when drift is off.
	stats map[*router.Version]*versionStats
	// caches holds each version's cache settings.
	caches map[*router.Version]*versionCache
}

type backendHandles struct {
	backend *router.Backend
	up      *upstream
	metrics *backendMetrics
	// paths holds the upstream request path per operation, with the backend URL's prefix.
	paths [numOperations][]byte
	auth  []byte // "Bearer <key>" or nil
}

// Options are the parts of a gateway that are not configuration.
type Options struct {
	// LogOutput receives the JSON log, one line per request; nil means stderr.
	LogOutput io.Writer
	// Version is the gateway's version, for llmgate_build_info; empty means "dev".
	Version string
	// Dial, when set, replaces TCP dialing of backends (benchmarks use in-memory listeners).
	Dial func(addr string) (net.Conn, error)
	// Resolve, when set, replaces the DNS lookups of the backend names that admin.allow_backends
	// binds, at deploy and at each connection (tests stand in for DNS with it).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Store, when set, keeps the deploy state instead of the bbolt file at state.path (tests and
	// the demo use store.NewMemory). The gateway closes it.
	Store store.Store
}

// streamWriteTimeout bounds the writing of one response, a whole stream included: the
// request's total time and some to spare.
func (g *Gateway) streamWriteTimeout() time.Duration { return g.cfg.Timeouts.Total + 10*time.Second }

// New builds a gateway from a validated config. It does not listen yet.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	out := opts.LogOutput
	if out == nil {
		out = stderr
	}
	m := newGatewayMetrics()
	m.buildInfo(opts.Version)
	aw := newAsyncWriter(out, 4<<20, m.set.NewCounter("llmgate_log_lines_dropped_total"))
	g := &Gateway{
		cfg:  cfg,
		pool: router.NewPool(),
		upstreams: &upstreams{byAddr: map[string]*upstream{}, to: cfg.Timeouts, dial: opts.Dial,
			policy: newBackendPolicy(cfg.Admin.AllowBackends), trusted: configBackendURLs(cfg)},
		metrics:   m,
		startedAt: time.Now(),
		accessLog: aw,
		log:       slog.New(slog.NewJSONHandler(aw, &slog.HandlerOptions{Level: logLevel(cfg.Log.Level)})),
	}
	if opts.Resolve != nil {
		g.upstreams.policy.resolve = opts.Resolve
	}
	g.backendPolicy = g.upstreams.policy
	g.logRequests = g.log.Enabled(context.Background(), slog.LevelInfo)
	g.tooLarge = bodyTooLarge(cfg.Limits.MaxBodyBytes)
	g.pool.OnHealthChange(func(url string, ejectedFor time.Duration, why string) {
		// One address may serve several versions; the line says which ones it takes out, and
		// why, which tells a dead server (probes) from one failing requests or streams.
		serves := g.versionsAt(url)
		if ejectedFor > 0 {
			g.log.Warn("backend ejected", "backend", url, "serves", serves, "for", ejectedFor.String(), "reason", why)
			return
		}
		g.log.Info("backend back in service", "backend", url, "serves", serves)
	})
	if !cfg.Drift.Off {
		g.stats = newStatsRegistry(cfg, m.set, g.log)
	}
	for _, mc := range cfg.Models {
		if mc.Cache.Enabled && g.cacheStore == nil {
			st, err := cache.New(cache.Config{MaxBytes: cfg.Cache.MaxBytes})
			if err != nil {
				aw.Close()
				return nil, fmt.Errorf("cache: %w", err)
			}
			g.cacheStore = st
		}
	}
	var err error
	if g.adminTokens, err = loadAdminTokens(cfg.Admin.Tokens); err != nil {
		aw.Close()
		return nil, err
	}
	g.shadowSlots = make(chan struct{}, maxShadows)
	g.id = newGatewayID()
	g.modelConfig = map[string]config.Model{}
	g.guards = map[string]*aliasGuard{}
	for _, m := range cfg.Models {
		g.modelConfig[m.Alias] = m
		ag, err := g.newAliasGuard(m)
		if err != nil {
			aw.Close()
			return nil, err
		}
		if ag != nil {
			g.guards[m.Alias] = ag
		}
	}
	if err := g.openDeployState(cfg, opts.Store); err != nil {
		aw.Close()
		return nil, err
	}
	g.prober = router.NewProber(g.Table, cfg.Health, g.ProbeClients(cfg.Health.Timeout))
	g.classifyQueue.start(g)
	if g.stats != nil {
		g.stats.stableOf = func(alias string) string {
			if m := g.Table().Model(alias); m != nil {
				return m.Stable.Name
			}
			return ""
		}
		g.stats.start()
	}
	g.server = &fasthttp.Server{
		Handler:                       g.handle,
		ErrorHandler:                  g.handleTransportError,
		Logger:                        fasthttpLogger{g.log},
		Name:                          "llmgate",
		MaxRequestBodySize:            cfg.Limits.MaxBodyBytes,
		ReadTimeout:                   30 * time.Second, // request headers and body; never the response
		IdleTimeout:                   2 * time.Minute,
		WriteTimeout:                  g.streamWriteTimeout(),
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 false,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		ReduceMemoryUsage:             false,
		StreamRequestBody:             false,
	}
	g.adminServer = &fasthttp.Server{
		Handler:               g.handleAdmin,
		ErrorHandler:          handleAdminTransportError,
		Logger:                fasthttpLogger{g.log},
		Name:                  "llmgate-admin",
		MaxRequestBodySize:    maxAdminBody,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          30 * time.Second,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
	}
	return g, nil
}

// install builds a snapshot for a routing table and swaps it in. In-flight requests finish on
// the snapshot they started with. Per-alias settings (guard, cache, drift) come from the config
// file by alias; an alias created through the admin API has the defaults (all off but drift).
func (g *Gateway) install(t *router.Table) {
	s := &snapshot{table: t, backends: make([]*backendHandles, len(t.Backends())), guards: map[string]*aliasGuard{},
		guardMetrics: map[*router.Version]*guardMetrics{}, stats: map[*router.Version]*versionStats{},
		caches: map[*router.Version]*versionCache{}}
	for _, m := range t.Models() {
		mc := g.modelConfig[m.Alias]
		ag := g.guards[m.Alias]
		for _, v := range m.Versions {
			if g.stats != nil {
				s.stats[v] = g.stats.forVersion(m.Alias, v.Name, mc.Drift)
			}
			s.caches[v] = g.newVersionCache(m.Alias, v.Name, cacheSettings{enabled: mc.Cache.Enabled, ttl: mc.Cache.TTL, nondeterministic: mc.Cache.Nondeterministic})
			if ag != nil {
				s.guardMetrics[v] = newGuardMetrics(g.metrics.set, m.Alias, v.Name, ag)
			}
		}
		if ag != nil {
			s.guards[m.Alias] = ag
		}
	}
	versions := map[string]*versionMetrics{}
	for _, b := range t.Backends() {
		key := b.Alias + "@" + b.Version
		vm := versions[key]
		if vm == nil {
			vm = g.metrics.forVersion(b.Alias, b.Version)
			versions[key] = vm
		}
		h := &backendHandles{backend: b, up: g.upstreams.get(b), metrics: g.metrics.forBackend(vm, b)}
		prefix := pathPrefix(b.URL)
		for op, p := range operationPaths {
			h.paths[op] = []byte(prefix + p)
		}
		if b.APIKey != "" {
			h.auth = []byte("Bearer " + b.APIKey)
		}
		s.backends[b.Index] = h
	}
	g.snap.Store(s)
	g.metrics.dropUnusedBackends(t.Backends())
}

// pathPrefix returns the path part of a backend URL ("http://h:1/prefix" -> "/prefix"), so
// backends mounted under a path keep it.
func pathPrefix(url string) string {
	i := 0
	for n := 0; i < len(url); i++ {
		if url[i] == '/' {
			n++
			if n == 3 {
				return url[i:]
			}
		}
	}
	return ""
}

// started is the "created" time of the models the gateway lists.
func (g *Gateway) started() int64 { return g.startedAt.Unix() }

// versionsAt lists the versions ("alias@version") whose backends are at the address url, the
// health hook's scheme://host:port (with the port, which a backend's URL may leave out).
func (g *Gateway) versionsAt(url string) []string {
	snap := g.snap.Load()
	if snap == nil {
		return nil
	}
	var out []string
	for _, b := range snap.table.Backends() {
		scheme := "http://"
		if b.TLS {
			scheme = "https://"
		}
		if len(url) == len(scheme)+len(b.Addr) && strings.HasPrefix(url, scheme) && strings.HasSuffix(url, b.Addr) {
			out = append(out, b.Alias+"@"+b.Version)
		}
	}
	return out
}

// Table returns the routing table in force.
func (g *Gateway) Table() *router.Table { return g.snap.Load().table }

// Serve serves the data plane on ln until Close. It starts the health prober.
func (g *Gateway) Serve(ln net.Listener) error {
	if !g.track(ln) {
		return nil
	}
	g.prober.Start()
	err := g.server.Serve(ln)
	if g.closing.Load() {
		return nil
	}
	return err
}

// ServeAdmin serves the admin API and /metrics on ln until Close.
func (g *Gateway) ServeAdmin(ln net.Listener) error {
	if !g.track(ln) {
		return nil
	}
	err := g.adminServer.Serve(ln)
	if g.closing.Load() {
		return nil
	}
	return err
}

// track notes a listener about to be served, so that Close can close it even when fasthttp has
// not registered it yet: a Close that ran between Serve's start and fasthttp's own bookkeeping
// found nothing to shut down, and Serve then accepted for ever. It reports false (and closes
// ln) when Close has already run.
func (g *Gateway) track(ln net.Listener) bool {
	g.listenersMu.Lock()
	defer g.listenersMu.Unlock()
	if g.closing.Load() {
		_ = ln.Close()
		return false
	}
	g.listeners = append(g.listeners, ln)
	return true
}

// cutWait bounds how long Shutdown waits, once its grace is over, for the streams it cut to
// send their error event: their clients are slow to read at worst (the server's write timeout
// is far longer).
const cutWait = 2 * time.Second

// Drain marks the gateway as stopping while it still serves: /readyz answers 503
// shutting_down, so that a load balancer stops sending (Kubernetes removes a pod's endpoints
// asynchronously, and new connections keep coming for a few seconds), and every request, new
// ones included, is served as before. Shutdown or Close follows.
func (g *Gateway) Drain() { g.draining.Store(true) }

// Close stops both listeners, waits for every in-flight request, stops the prober and flushes
// the log. It is Shutdown without a deadline.
func (g *Gateway) Close() error {
	_, err := g.Shutdown(context.Background())
	return err
}

// Shutdown stops both listeners and idle connections, waits for the requests in flight, streams
// included, until ctx ends, then stops the prober and flushes the log. When ctx ends first, the
// requests still in flight are cut: a stream ends with a server_shutting_down error event (its
// backend connection is closed), one log line says how many requests were cut, and Shutdown
// waits at most cutWait for the cut streams to send their event. It returns that number.
// Only the first call of Shutdown or Close does anything.
func (g *Gateway) Shutdown(ctx context.Context) (cut int64, err error) {
	g.closeOnce.Do(func() {
		g.listenersMu.Lock()
		g.closing.Store(true)
		g.listenersMu.Unlock()
		err = errors.Join(g.server.ShutdownWithContext(ctx), g.adminServer.ShutdownWithContext(ctx))
		// As Shutdown waits for streams on the connections it still owns.
		hijacked := make(chan struct{})
		go func() { g.untilCloseWG.Wait(); close(hijacked) }()
		select {
		case <-hijacked:
		case <-ctx.Done():
		}
		// The process exits at most cutWait after the grace (README, Stopping): what is
		// waited for from here on ends by then.
		stopBy := time.Now().Add(cutWait)
		if ctx.Err() != nil {
			err = nil // the servers' ctx.Err(): what is left is cut
			cut = g.cut(hijacked)
		}
		for _, ln := range g.listeners {
			_ = ln.Close() // closed already by Shutdown, unless Serve had not registered it yet
		}
		g.waitShadows(5 * time.Second)
		g.prober.Close()
		if g.classifyQueue.close(time.Until(stopBy)) { // its workers log: before the log closes
			g.log.Warn("shutdown: classifier calls still in flight were abandoned")
		}
		if g.stats != nil {
			g.stats.close()
		}
		if g.cacheStore != nil {
			g.cacheStore.Close()
		}
		g.closeDeploy()
		g.accessLog.Close()
	})
	return cut, err
}

// cut ends the requests still in flight when Shutdown's grace is over: it closes every backend
// stream, so that each stream reading one ends with the server_shutting_down error event (see
// streamReadError), logs how many requests were in flight, and waits at most cutWait for them
// to end and for hijacked (the HTTP/1.0 streams' wait) to close. It returns that number.
func (g *Gateway) cut(hijacked <-chan struct{}) int64 {
	n := g.metrics.inFlight.Load()
	if n == 0 {
		return 0
	}
	g.cutting.Store(true)
	g.upstreams.cutStreams()
	g.log.Error("shutdown grace over: requests cut", "requests", n)
	deadline := time.NewTimer(cutWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond) // fasthttp's shutdown polls its connections too
	defer tick.Stop()
	for g.metrics.inFlight.Load() > 0 {
		select {
		case <-deadline.C:
			return n
		case <-tick.C:
		}
	}
	select {
	case <-hijacked:
	case <-deadline.C:
	}
	return n
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// fasthttpLogger sends fasthttp's own messages (connection errors, oversized bodies) to the
// JSON log at debug level: the client already got an OpenAI-style answer for each.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug("fasthttp", "detail", fmt.Sprintf(format, args...))
}
