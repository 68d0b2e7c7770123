package gateway

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/llmgate/llmgate/router"
)

// Bucket boundaries advised by the OpenTelemetry GenAI semantic conventions, so stock
// Prometheus can compute quantiles from the cumulative `le` buckets.
var (
	durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	ttftBuckets     = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}
	tpotBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	// The gateway's own overhead is microseconds; the GenAI buckets start at 10 ms and would
	// put every sample in the first bucket.
	overheadBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1}
)

// gatewayMetrics are the series of one gateway, in its own set so several gateways (tests)
// can live in one process.
type gatewayMetrics struct {
	set      *metrics.Set
	inFlight atomic.Int64
	rejected map[string]*metrics.Counter // by reason
	panics   *metrics.Counter
	// shadows counts mirrored requests answered (or failed); shadowsSkipped those not sent, by
	// reason (shadowInFlight, shadowNoBackend, shadowUnsupported).
	shadows        *metrics.Counter
	shadowsSkipped [numShadowSkips]*metrics.Counter
	// canaryFallbacks counts requests of a canary's share served by stable because no canary
	// backend was in service.
	canaryFallbacks *metrics.Counter

	errorCodesMu sync.Mutex
	errorCodes   map[string]bool // the code labels of llmgate_request_errors_total so far
}

// maxErrorCodes bounds the code label of llmgate_request_errors_total. The gateway's own codes
// are a few dozen; a backend's error code is passed on as it sent it, so a backend that puts
// an id in its codes would add a series per error. Codes past the bound count as "other".
const maxErrorCodes = 64

// errorCodeLabel returns code as the label of llmgate_request_errors_total, or "other" once
// maxErrorCodes distinct codes have been seen, or for a backend's code that is no code (see
// isCodeLabel). Error paths only: the lock is no hot path's.
func (m *gatewayMetrics) errorCodeLabel(code string) string {
	if !isCodeLabel(code) {
		return "other"
	}
	m.errorCodesMu.Lock()
	defer m.errorCodesMu.Unlock()
	if m.errorCodes[code] {
		return code
	}
	if len(m.errorCodes) >= maxErrorCodes {
		return "other"
	}
	if m.errorCodes == nil {
		m.errorCodes = map[string]bool{}
	}
	m.errorCodes[code] = true
	return code
}

// isCodeLabel reports whether an error code may be a label value: a name of at most 64 letters,
// digits and _ . : -, as OpenAI's codes and the gateway's own are. A backend's code is passed
// on as it sent it: a byte that is not UTF-8 makes Prometheus refuse the whole page, and a
// sentence or an id in it is no class to count by.
func isCodeLabel(code string) bool {
	if code == "" || len(code) > 64 {
		return false
	}
	for i := 0; i < len(code); i++ {
		switch c := code[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// Reasons a shadow mirror was not sent (llmgate_shadow_skipped_total).
const (
	shadowInFlight    = iota // maxShadows were in flight
	shadowNoBackend          // none of the shadow version's backends was in service
	shadowUnsupported        // the shadow's backends cannot answer it (n above 1 or echo, Ollama only)
	numShadowSkips
)

var shadowSkipReasons = [numShadowSkips]string{"in_flight", "no_backend", "unsupported"}

// Reasons a request was rejected before reaching a model version.
const (
	rejectBadRequest   = "bad_request"
	rejectUnknownModel = "unknown_model"
	rejectTooLarge     = "too_large"
	rejectNotFound     = "unknown_url"
	rejectMethod       = "method_not_allowed"
	rejectLoop         = "loop_detected" // the request came through this gateway before (loop.go)
)

func newGatewayMetrics() *gatewayMetrics {
	metrics.ExposeMetadata(true)
	m := &gatewayMetrics{set: metrics.NewSet(), rejected: map[string]*metrics.Counter{}}
	m.set.NewGauge("llmgate_requests_in_flight", func() float64 { return float64(m.inFlight.Load()) })
	m.panics = m.set.NewCounter("llmgate_panics_total")
	m.shadows = m.set.NewCounter("llmgate_shadow_requests_total")
	for i, r := range shadowSkipReasons {
		m.shadowsSkipped[i] = m.set.NewCounter(`llmgate_shadow_skipped_total{reason="` + r + `"}`)
	}
	m.canaryFallbacks = m.set.NewCounter("llmgate_canary_fallbacks_total")
	for _, r := range []string{rejectBadRequest, rejectUnknownModel, rejectTooLarge, rejectNotFound, rejectMethod, rejectLoop} {
		m.rejected[r] = m.set.NewCounter(`llmgate_rejected_requests_total{reason="` + r + `"}`)
	}
	return m
}

// versionMetrics are the handles of one (alias, version), created when a table is installed so
// requests never format metric names.
type versionMetrics struct {
	duration, ttft, tpot, overhead *metrics.PrometheusHistogram
	firstChunk                     *metrics.PrometheusHistogram // the backend's first event
	inputTokens, outputTokens      *metrics.PrometheusHistogram
	inputTotal, outputTotal        *metrics.Counter
}

// backendMetrics are the handles of one backend within a version.
type backendMetrics struct {
	version  *versionMetrics
	upstream *metrics.PrometheusHistogram
	requests [6]*metrics.Counter // by status class: index status/100, 0 for transport errors
}

func (m *gatewayMetrics) forVersion(alias, version string) *versionMetrics {
	l := `{model=` + promLabel(alias) + `,version=` + promLabel(version) + `}`
	tok := func(typ string) string {
		return `gen_ai_client_token_usage{model=` + promLabel(alias) + `,version=` + promLabel(version) + `,gen_ai_token_type="` + typ + `"}`
	}
	tot := func(typ string) string {
		return `llmgate_tokens_total{model=` + promLabel(alias) + `,version=` + promLabel(version) + `,type="` + typ + `"}`
	}
	s := m.set
	return &versionMetrics{
		duration:     s.GetOrCreatePrometheusHistogramExt("gen_ai_server_request_duration_seconds"+l, durationBuckets),
		ttft:         s.GetOrCreatePrometheusHistogramExt("gen_ai_server_time_to_first_token_seconds"+l, ttftBuckets),
		tpot:         s.GetOrCreatePrometheusHistogramExt("gen_ai_server_time_per_output_token_seconds"+l, tpotBuckets),
		firstChunk:   s.GetOrCreatePrometheusHistogramExt("gen_ai_client_operation_time_to_first_chunk_seconds"+l, durationBuckets),
		overhead:     s.GetOrCreatePrometheusHistogramExt("llmgate_gateway_overhead_seconds"+l, overheadBuckets),
		inputTokens:  s.GetOrCreatePrometheusHistogramExt(tok("input"), tokenBuckets),
		outputTokens: s.GetOrCreatePrometheusHistogramExt(tok("output"), tokenBuckets),
		inputTotal:   s.GetOrCreateCounter(tot("input")),
		outputTotal:  s.GetOrCreateCounter(tot("output")),
	}
}

func (m *gatewayMetrics) forBackend(vm *versionMetrics, b *router.Backend) *backendMetrics {
	l := `model=` + promLabel(b.Alias) + `,version=` + promLabel(b.Version) + `,backend=` + promLabel(b.URL)
	bm := &backendMetrics{
		version:  vm,
		upstream: m.set.GetOrCreatePrometheusHistogramExt(`llmgate_upstream_duration_seconds{`+l+`}`, durationBuckets),
	}
	for i := range bm.requests {
		class := strconv.Itoa(i) + "xx"
		if i == 0 {
			class = "error"
		}
		bm.requests[i] = m.set.GetOrCreateCounter(`llmgate_requests_total{` + l + `,status="` + class + `"}`)
	}
	// GetOrCreate: a table swap re-registers the same backend.
	m.set.GetOrCreateGauge(`llmgate_backend_up{`+l+`}`, func() float64 { return boolFloat(b.Healthy()) })
	m.set.GetOrCreateGauge(inFlightName(b.URL), func() float64 { return float64(b.InFlight()) })
	return bm
}

// promLabel quotes a label value as the Prometheus text format wants it: backslash, double
// quote and newline escaped, every other byte as it is. strconv.Quote also writes \u00e9 and
// \x00 style escapes, which the format does not have, so a scraper would reject the page.
func promLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// dropUnusedBackends unregisters llmgate_backend_in_flight of the backend URLs that none of
// backends (a new table's) has any more. That series is labelled by URL alone, so deleting a
// version or a model, which drops the series labelled with its name, leaves it behind.
func (m *gatewayMetrics) dropUnusedBackends(backends []*router.Backend) {
	used := make(map[string]bool, len(backends))
	for _, b := range backends {
		used[inFlightName(b.URL)] = true
	}
	for _, name := range m.set.ListMetricNames() {
		if strings.HasPrefix(name, "llmgate_backend_in_flight{") && !used[name] {
			m.set.UnregisterMetric(name)
		}
	}
}

func inFlightName(url string) string {
	return `llmgate_backend_in_flight{backend=` + promLabel(url) + `}`
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// countStatus counts one answer from the backend by status class; status 0 is a transport error.
func (bm *backendMetrics) countStatus(status int) {
	i := status / 100
	if i < 0 || i >= len(bm.requests) {
		i = 0
	}
	bm.requests[i].Inc()
}

// metricHelp is the HELP text of each family. VictoriaMetrics/metrics writes empty HELP lines;
// Prometheus linters (promtool check metrics) want a description.
var metricHelp = map[string]string{
	"llmgate_requests_total":                              "Requests answered by a backend, by model, version, backend and status class (error: no answer).",
	"llmgate_rejected_requests_total":                     "Requests refused before reaching a model version, by reason.",
	"llmgate_requests_in_flight":                          "Data-plane requests being served.",
	"llmgate_backend_up":                                  "1 when the backend takes traffic (not ejected, probes pass), else 0.",
	"llmgate_backend_in_flight":                           "Requests this gateway has open on the backend address.",
	"llmgate_upstream_duration_seconds":                   "Time from sending a request to a backend to its response headers.",
	"llmgate_gateway_overhead_seconds":                    "Time the gateway itself spent on a request, outside the backend.",
	"llmgate_tokens_total":                                "Tokens processed, by type (input or output), as reported by the backend or, where it reported none (a stream cut before its usage chunk), counted by the gateway off the request path.",
	"llmgate_log_lines_dropped_total":                     "Log lines dropped because the log writer could not keep up.",
	"llmgate_guard_pii_total":                             "PII values found, by model, version, direction, entity type and the action taken on them (redact, mask, hash, block, detect).",
	"llmgate_guard_safety_total":                          "Safety rule matches, by model, version, direction and category.",
	"llmgate_guard_blocks_total":                          "Prompts refused and completions stopped by the guard, by model, version and direction.",
	"llmgate_guard_duration_seconds":                      "Time spent in the guard per prompt and per completion (a stream's whole completion is one observation), by model, version and direction.",
	"llmgate_guard_memo_hits_total":                       "Texts the guard skipped because it had found them clean before, by model, version and direction.",
	"llmgate_guard_classifier_total":                      "External safety classifier verdicts, by model, version, direction and result (safe, unsafe, error, dropped).",
	"llmgate_guard_classifier_duration_seconds":           "Time an external safety classifier took per call, by model and version.",
	"llmgate_drift_score":                                 "Drift statistic of a feature of a model version against its reference, by method (ks, chisquare, z, wasserstein, jensenshannon, psi).",
	"llmgate_drift_detected":                              "1 when the feature of the model version has drifted from its reference, else 0.",
	"llmgate_drift_samples_dropped_total":                 "Drift samples recorded without the token counts their backend did not report, because the token counter's queue was full.",
	"llmgate_drift_memory_bytes":                          "Memory held by the drift windows of every model version.",
	"llmgate_cache_requests_total":                        "Requests by cache result: hit, miss, bypass, refresh (x-llmgate-cache: refresh: not looked up, stored), coalesced (answered by another request's backend call).",
	"llmgate_cache_evictions_total":                       "Cached answers removed for room or on expiry.",
	"llmgate_cache_stores_total":                          "Answers stored in the response cache.",
	"llmgate_cache_not_admitted_total":                    "Answers not stored because the cache was nearly full and their request had not been seen before (it is stored when asked again).",
	"llmgate_cache_bytes":                                 "Bytes of answers held in the response cache.",
	"llmgate_cache_entries":                               "Answers held in the response cache.",
	"llmgate_cache_max_bytes":                             "The response cache's bound (cache.max_bytes).",
	"llmgate_cache_flights_in_flight":                     "Cacheable requests being answered by a backend now, which identical requests wait for.",
	"llmgate_shadow_requests_total":                       "Requests mirrored to a shadow version (their answers are discarded).",
	"llmgate_shadow_skipped_total":                        "Shadow mirrors not sent, by reason: too many in flight, no backend of the shadow version in service (also an error in its statistics), or a request its backends cannot answer (n above 1 to Ollama).",
	"llmgate_panics_total":                                "Requests that hit a bug (a recovered panic); each is logged with its stack.",
	"llmgate_request_errors_total":                        "Requests of a model version that ended in an error, by code: upstream_error (a stream that failed after its 200 included), server_is_overloaded (no backend in service), upstream_timeout, client_disconnected (the client went away), content_filter, ...; a backend's 4xx without a code by its type (invalid_request_error, permission_error).",
	"llmgate_build_info":                                  "Always 1; its labels are the gateway's version and the Go version it was built with.",
	"llmgate_canary_fallbacks_total":                      "Requests of a canary's share served by the stable version because no canary backend was in service or could answer.",
	"gen_ai_server_request_duration_seconds":              "Time from request arrival to the last byte of the response.",
	"gen_ai_server_time_to_first_token_seconds":           "Time from request arrival to the first streamed chunk with generated content that the gateway sent to the client (after the completion guard's hold-back).",
	"gen_ai_client_operation_time_to_first_chunk_seconds": "Time from request arrival to the backend stream's first event (the gateway as the backend's client; the chunk that opens the answer counts): the model's time to first token, before the completion guard's hold-back.",
	"gen_ai_server_time_per_output_token_seconds":         "Mean gap between streamed chunks that carry generated tokens (text, reasoning, tool calls; not the chunks that only open or finish the answer).",
	"gen_ai_client_token_usage":                           "Tokens per request, by gen_ai_token_type (input or output), counted as llmgate_tokens_total is.",
}

// buildInfo adds llmgate_build_info{version,goversion} 1, the Prometheus convention for what
// a process is built from (prometheus_build_info, go_info): joined on, it labels any series
// with the version that made it.
func (m *gatewayMetrics) buildInfo(version string) {
	if version == "" {
		version = "dev"
	}
	m.set.NewGauge(`llmgate_build_info{version=`+promLabel(version)+`,goversion=`+promLabel(runtime.Version())+`}`,
		func() float64 { return 1 })
}

// appendWithHelp copies Prometheus text from src to dst, filling empty HELP lines.
func appendWithHelp(dst, src []byte) []byte {
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			src = nil
		}
		if name, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok && bytes.IndexByte(name, ' ') < 0 {
			dst = append(dst, line...)
			help := metricHelp[string(name)]
			if help == "" {
				help = "See the llmgate README."
			}
			dst = append(dst, ' ')
			dst = append(dst, help...)
			dst = append(dst, '\n')
			continue
		}
		dst = append(dst, line...)
		dst = append(dst, '\n')
	}
	return dst
}
