package load

import (
	"bytes"
	"encoding/xml"
	"io"
	"regexp"
	"testing"
	"time"
)

// The axis labels are round numbers, whatever the scale: a running sum of float steps showed
// 0.30000000000000004 on a 0.5 req/s axis, and a chart of targets with no successful request
// had a latency axis in ten-thousandths of a µs.
func TestSVGAxisLabels(t *testing.T) {
	label := regexp.MustCompile(`^\d+(\.\d{1,3})?(µs|ms|s)?$`)
	tests := []struct {
		name string
		tput float64
		lat  time.Duration
	}{
		{"every request failed", 0, 0},
		{"half a request a second", 0.5, 70 * time.Millisecond},
		{"slow", 0.7, 2700 * time.Millisecond},
		{"fast", 1234.5, 700 * time.Nanosecond},
		{"µs", 47, 13 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Dist{N: 1, P50: tt.lat, P90: tt.lat, P99: tt.lat}
			rep := &Report{Options: testOptions(), Summaries: []Summary{{Target: "a", Throughput: tt.tput, Latency: d}}}
			dec := xml.NewDecoder(bytes.NewReader(SVG(rep)))
			ticks := 0
			for {
				tok, err := dec.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("SVG is not well-formed XML: %v", err)
				}
				se, ok := tok.(xml.StartElement)
				if !ok || se.Name.Local != "text" || !hasAttr(se, "text-anchor", "end") {
					continue
				}
				s, _ := dec.Token()
				if cd, _ := s.(xml.CharData); !label.Match(cd) {
					t.Errorf("axis label %q", cd)
				}
				ticks++
			}
			if ticks < 6 {
				t.Errorf("%d axis labels", ticks)
			}
		})
	}
}

func hasAttr(se xml.StartElement, name, value string) bool {
	for _, a := range se.Attr {
		if a.Name.Local == name && a.Value == value {
			return true
		}
	}
	return false
}
