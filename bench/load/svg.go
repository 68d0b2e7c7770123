package load

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Chart geometry, in SVG user units.
const (
	svgW, svgH       = 960, 400
	plotTop, plotBot = 70, 350
	latLeft, latW    = 70, 560
	tputLeft, tputW  = 720, 200
)

var latSeries = []struct {
	name, color string
	get         func(Dist) time.Duration
}{
	{"p50", "#4e79a7", func(d Dist) time.Duration { return d.P50 }},
	{"p90", "#f28e2b", func(d Dist) time.Duration { return d.P90 }},
	{"p99", "#e15759", func(d Dist) time.Duration { return d.P99 }},
}

// SVG renders rep's summaries as a self-contained SVG chart: grouped bars of p50/p90/p99
// latency per target, and a throughput bar per target.
func SVG(rep *Report) []byte {
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	// Target names that do not fit under their bars are slanted; the footer moves down by
	// as much as the longest one then drops.
	drop := 0.0
	for _, s := range rep.Summaries {
		drop = max(drop, slantDrop(s.Target))
	}
	h := svgH + 16*max(0, len(rep.Summaries)-2) + int(math.Ceil(drop)) // room for the footer lines
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgW, h, svgW, h)
	p(`<rect width="%d" height="%d" fill="#fff"/>`+"\n", svgW, h)
	o := rep.Options
	mode := fmt.Sprintf("closed loop, %d connections", o.Connections)
	if o.Rate > 0 {
		mode = fmt.Sprintf("open loop %g req/s", o.Rate)
	}
	title := fmt.Sprintf("llmgate bench: %s, %s, median of %d round(s)", o.Workload, mode, o.Rounds)
	if rep.Interrupted { // as the table says: a chart is passed around without it
		title += "; INTERRUPTED: partial results"
	}
	text(&b, svgW/2, 24, "middle", 16, title)

	n := len(rep.Summaries)
	var latMax time.Duration
	var tputMax float64
	for _, s := range rep.Summaries {
		latMax = max(latMax, s.Latency.P99, s.Latency.P90)
		tputMax = max(tputMax, s.Throughput)
	}

	// Latency panel.
	text(&b, latLeft+latW/2, 48, "middle", 13, "latency (successful requests)")
	if latMax == 0 {
		latMax = time.Millisecond // no successful request: an empty axis in ms, not in fractions of a µs
	}
	top, step := niceScale(float64(latMax))
	unit, suffix := 1e3, "µs"
	switch {
	case top >= 1e9:
		unit, suffix = 1e9, "s"
	case top >= 1e6:
		unit, suffix = 1e6, "ms"
	}
	axis(&b, latLeft, latW, top, step, func(v float64) string { return tick(v/unit) + suffix })
	if n > 0 {
		group := float64(latW) / float64(n)
		bar := group * 0.8 / float64(len(latSeries))
		for i, s := range rep.Summaries {
			x0 := latLeft + float64(i)*group + group*0.1
			for k, ser := range latSeries {
				v := ser.get(s.Latency)
				rect(&b, x0+float64(k)*bar, float64(v)/top, bar*0.92, ser.color, ser.name+" "+fmtDur(v))
				if bar >= 30 {
					text(&b, x0+float64(k)*bar+bar*0.46, barTop(float64(v)/top)-4, "middle", 10, fmtDur(v))
				}
			}
			xlabel(&b, x0+group*0.4, group, s.Target)
		}
	}
	for k, ser := range latSeries {
		x := latLeft + latW - 150 + k*50
		p(`<rect x="%d" y="40" width="12" height="12" fill="%s"/>`+"\n", x, ser.color)
		text(&b, float64(x+16), 50, "start", 12, ser.name)
	}

	// Throughput panel.
	text(&b, tputLeft+tputW/2, 48, "middle", 13, "throughput (req/s)")
	top, step = niceScale(tputMax)
	axis(&b, tputLeft, tputW, top, step, tick)
	if n > 0 {
		group := float64(tputW) / float64(n)
		for i, s := range rep.Summaries {
			x0 := tputLeft + float64(i)*group + group*0.15
			label := fmt.Sprintf("%.1f", s.Throughput)
			rect(&b, x0, s.Throughput/top, group*0.7, "#59a14f", s.Target+" "+label+" req/s")
			if group >= 40 {
				text(&b, x0+group*0.35, barTop(s.Throughput/top)-4, "middle", 10, label)
			}
			xlabel(&b, x0+group*0.35, group, s.Target)
		}
	}
	// Footer: what the comparison is about, the added latency over the baseline.
	for i, s := range rep.Summaries[min(1, n):] {
		text(&b, latLeft, plotBot+44+drop+float64(i)*16, "start", 12, fmt.Sprintf("%s vs %s: p50 %s, p99 %s, throughput x%.3f",
			s.Target, rep.Summaries[0].Target, fmtAddedOf(s.Latency, rep.Summaries[0].Latency, s.AddedP50),
			fmtAddedOf(s.Latency, rep.Summaries[0].Latency, s.AddedP99), s.ThroughputRatio))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// niceScale returns an axis top at or above v and a tick step of 1, 2 or 5 times a power of ten.
func niceScale(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.2
	}
	raw := v / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	return math.Ceil(v/step) * step, step
}

// axis draws the baseline, gridlines and tick labels of a panel.
func axis(b *bytes.Buffer, left, width int, top, step float64, label func(float64) string) {
	// Ticks are k*step, not a running sum, whose float error would show in the labels.
	for k := 0.0; k*step <= top*(1+1e-9); k++ {
		v := k * step
		y := barTop(v / top)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+width, y)
		text(b, float64(left-6), y+4, "end", 10, label(v))
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", left, plotBot, left+width, plotBot)
}

// Target labels: 12-unit text, about 7 units a character; one wider than its bar group is
// slanted so that neighbours do not overwrite each other.
const (
	labelCharW = 7.0
	slantDeg   = 40.0
)

func labelWidth(name string) float64 { return labelCharW * float64(utf8.RuneCountInString(name)) }

// slantDrop is how far below the axis labels a slanted name reaches beyond an upright one.
func slantDrop(name string) float64 {
	return labelWidth(name) * math.Sin(slantDeg*math.Pi/180)
}

// xlabel writes a target's name under the middle of its bar group, x, which is group wide.
func xlabel(b *bytes.Buffer, x, group float64, name string) {
	if labelWidth(name) <= group*0.95 {
		text(b, x, plotBot+18, "middle", 12, name)
		return
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" font-size="12" transform="rotate(-%g %.1f %.1f)">`,
		x, float64(plotBot+18), slantDeg, x, float64(plotBot+18))
	xml.EscapeText(b, []byte(name)) //nolint:errcheck
	b.WriteString("</text>\n")
}

// tick formats an axis value without float noise: 0.6, not 0.6000000000000001.
func tick(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// barTop is the y of a bar whose height is frac of the plot.
func barTop(frac float64) float64 { return plotBot - frac*(plotBot-plotTop) }

func rect(b *bytes.Buffer, x, frac, w float64, color, title string) {
	y := barTop(frac)
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>`, x, y, w, plotBot-y, color)
	xml.EscapeText(b, []byte(title)) //nolint:errcheck // bytes.Buffer does not fail
	b.WriteString("</title></rect>\n")
}

func text(b *bytes.Buffer, x, y float64, anchor string, size int, s string) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d">`, x, y, anchor, size)
	xml.EscapeText(b, []byte(s)) //nolint:errcheck
	b.WriteString("</text>\n")
}
