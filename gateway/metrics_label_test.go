package gateway

import (
	"strconv"
	"strings"
	"testing"
)

// Label values are quoted as the Prometheus text format has it: only backslash, double quote
// and newline are escaped; other bytes, UTF-8 included, go as they are (strconv.Quote wrote
// \u00e9, which the format does not know).
func TestPromLabel(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"chat", `"chat"`},
		{"http://gpu1:8000/café", `"http://gpu1:8000/café"`},
		{"a\u00a0b", "\"a\u00a0b\""},
		{`a"b\c` + "\n" + "d\te", `"a\"b\\c\nd` + "\t" + `e"`},
		{"", `""`},
	} {
		if got := promLabel(tt.in); got != tt.want {
			t.Errorf("promLabel(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// The code label of llmgate_request_errors_total is bounded: a backend that puts an id in its
// error codes adds no series past maxErrorCodes; the codes seen first keep their own.
func TestErrorCodeLabelBounded(t *testing.T) {
	m := newGatewayMetrics()
	if got := m.errorCodeLabel("upstream_error"); got != "upstream_error" {
		t.Fatalf("first code: %q", got)
	}
	labels := map[string]bool{}
	for i := range 1000 {
		labels[m.errorCodeLabel("code-"+strconv.Itoa(i))] = true
	}
	if len(labels) != maxErrorCodes || !labels["other"] {
		t.Fatalf("%d distinct labels from 1,000 codes, want %d with other", len(labels), maxErrorCodes)
	}
	if got := m.errorCodeLabel("upstream_error"); got != "upstream_error" {
		t.Fatalf("a code seen before the bound: %q", got)
	}
}

// Every HELP text is a sentence, and the guard's families, whose series carry the version label
// beside the model (newGuardMetrics, newClassifierMetrics), say so: "by model" alone read as if
// a version's guard hits could not be told from another's.
func TestMetricHelp(t *testing.T) {
	for name, help := range metricHelp {
		if !strings.HasSuffix(help, ".") {
			t.Errorf("%s: help does not end with a period: %q", name, help)
		}
		if strings.HasPrefix(name, "llmgate_guard_") && !strings.Contains(help, "by model, version") && !strings.Contains(help, "by model and version") {
			t.Errorf("%s: help does not name the version label: %q", name, help)
		}
	}
}
