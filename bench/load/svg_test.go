package load

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
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
			ticks := 0
			for _, tx := range svgTexts(t, SVG(rep)) {
				if !hasAttr(tx.el, "text-anchor", "end") || !hasAttr(tx.el, "font-size", "10") {
					continue
				}
				if !label.MatchString(tx.text) {
					t.Errorf("axis label %q", tx.text)
				}
				ticks++
			}
			if ticks < 6 {
				t.Errorf("%d axis labels", ticks)
			}
		})
	}
}

// Target names under the bars do not overwrite each other: bench/run.sh compares seven
// targets, whose names under the narrow throughput bars used to run into one another.
func TestSVGTargetLabels(t *testing.T) {
	names := []string{"direct", "bareproxy", "nginx", "haproxy", "llmgate", "llmgate-nodrift", "llmgate-full"}
	rep := &Report{Options: testOptions()}
	for _, n := range names {
		rep.Summaries = append(rep.Summaries, Summary{Target: n, Throughput: 100, Latency: Dist{N: 1, P50: time.Millisecond}})
	}
	var upright [][2]float64 // x extents of names written level
	slanted := 0
	for _, tx := range svgTexts(t, SVG(rep)) {
		if !hasAttr(tx.el, "y", fmt.Sprintf("%.1f", float64(plotBot+18))) {
			continue
		}
		if attr(tx.el, "transform") != "" {
			slanted++
			continue
		}
		x, _ := strconv.ParseFloat(attr(tx.el, "x"), 64)
		w := labelWidth(tx.text)
		upright = append(upright, [2]float64{x - w/2, x + w/2})
	}
	if len(upright)+slanted != 2*len(names) {
		t.Fatalf("%d upright and %d slanted names, want %d", len(upright), slanted, 2*len(names))
	}
	for i := 1; i < len(upright); i++ {
		if a, b := upright[i-1], upright[i]; b[0] < a[1] && a[0] < b[1] {
			t.Errorf("target names overlap: x %v and %v", a, b)
		}
	}
}

// svgText is a <text> element of an SVG and the text in it.
type svgText struct {
	el   xml.StartElement
	text string
}

// svgTexts returns the <text> elements of svg, failing the test when it is not well-formed.
func svgTexts(t *testing.T, svg []byte) []svgText {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var out []svgText
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "text" {
			continue
		}
		se = se.Copy() // the decoder reuses its attributes' memory
		next, _ := dec.Token()
		cd, _ := next.(xml.CharData)
		out = append(out, svgText{se, string(cd)})
	}
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func hasAttr(se xml.StartElement, name, value string) bool { return attr(se, name) == value }

// A chart of an interrupted run says so in its title, as the table does: it looked like the
// chart of a complete run.
func TestSVGInterrupted(t *testing.T) {
	for _, interrupted := range []bool{false, true} {
		rep := &Report{Options: testOptions(), Interrupted: interrupted,
			Summaries: []Summary{{Target: "a", Throughput: 10, Latency: Dist{N: 1, P50: time.Millisecond}}}}
		title := svgTexts(t, SVG(rep))[0].text
		if got := strings.Contains(title, "INTERRUPTED"); got != interrupted {
			t.Errorf("interrupted %v: title %q", interrupted, title)
		}
	}
}
