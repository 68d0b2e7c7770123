package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

// The gateway's overhead is its own time, also for a request whose backend failed: the last
// attempt's time was subtracted from the time before that attempt, which made the overhead
// negative (minus the backend's time), and a negative value is no observation at all, so
// llmgate_gateway_overhead_seconds (and the drift overhead feature) left out every request
// whose last backend failed.
func TestOverheadExcludesFailedAttempt(t *testing.T) {
	const slow = 200 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(slow) // the backend's own time, which the overhead must not count either way
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		_, _ = io.WriteString(w, `{"error":{"message":"boom","type":"server_error","code":null}}`)
	}))
	t.Cleanup(srv.Close)
	g := startGateway(t, newConfig(t, nil, model("chat", "v1", version("v1",
		config.Backend{URL: srv.URL, Kind: config.KindVLLM, Model: "m"}))))
	for _, extra := range []string{"", `,"stream":true`} {
		if res := g.do(t, "POST", "/v1/chat/completions", chatBody("hello", extra)); res.status != 502 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
	}
	// finish runs before the handler returns: the answers are counted once they are in.
	labels := map[string]string{"model": "chat", "version": "v1"}
	samples := parseMetrics(t, g.metrics(t))
	count, _ := metricValue(samples, "llmgate_gateway_overhead_seconds_count", labels)
	sum, _ := metricValue(samples, "llmgate_gateway_overhead_seconds_sum", labels)
	if count != 2 || sum < 0 || sum > slow.Seconds() {
		t.Fatalf("llmgate_gateway_overhead_seconds count %v sum %v after two requests whose backend took %v to fail; want 2 observations of the gateway's own time", count, sum, slow)
	}
}
