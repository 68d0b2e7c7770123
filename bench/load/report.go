package load

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything a bench invocation measured.
type Report struct {
	Started   time.Time `json:"started"`
	Options   *Options  `json:"options"`
	Runs      []*Result `json:"runs"`
	Summaries []Summary `json:"summaries"` // one per target, in target order
	// Interrupted is set when a signal ended the run early: the last round is partial.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Summary is one target across its rounds: the median of each figure, or the sum of counts.
type Summary struct {
	Target     string           `json:"target"`
	URL        string           `json:"url"`
	Rounds     int              `json:"rounds"`
	Requests   int64            `json:"requests"`
	OK         int64            `json:"ok"`
	Throughput float64          `json:"throughput_rps"`
	Latency    Dist             `json:"latency"`
	TTFB       Dist             `json:"ttfb"`
	TTFT       Dist             `json:"ttft"`
	Gap        Dist             `json:"inter_event_gap"`
	StartLag   Dist             `json:"start_lag"`
	Service    Dist             `json:"service"`
	Errors     map[string]int64 `json:"errors"`
	Late       int64            `json:"late"`
	Unsent     int64            `json:"unsent,omitempty"`
	// Added latency and throughput ratio against the first target (the baseline).
	AddedP50 time.Duration `json:"added_p50_ns"`
	AddedP99 time.Duration `json:"added_p99_ns"`
	// Added service time at p50: the same from each request's actual send (open loop).
	AddedServiceP50 time.Duration `json:"added_service_p50_ns"`
	ThroughputRatio float64       `json:"throughput_ratio"`
	Procs           []ProcStats   `json:"procs,omitempty"` // median CPU (of a round), highest peak RSS
	// Generator is the load generator's own CPU, the median across rounds.
	Generator *ProcStats `json:"load_generator,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// Compare runs o's load against every target in interleaved rounds (A B C A B C ...), so
// that drift in the machine's state spreads over all targets alike, and summarises them.
// With one target it is a plain run repeated Rounds times.
func Compare(ctx context.Context, o *Options, w *Workload, pids []int, progress io.Writer) (*Report, error) {
	targets := o.Targets()
	rep := &Report{Started: time.Now(), Options: o}
	workloads := make([]*Workload, len(targets))
	for i, t := range targets {
		var err error
		if workloads[i], err = o.workloadFor(t, w); err != nil {
			return nil, err
		}
	}
	for round := 1; round <= o.Rounds && ctx.Err() == nil; round++ {
		for i, t := range targets {
			if ctx.Err() != nil {
				break
			}
			label := t.Name
			if o.Rounds > 1 {
				label = fmt.Sprintf("%s round %d/%d", t.Name, round, o.Rounds)
			}
			res, err := Run(ctx, o, workloads[i], t, append(pids[:len(pids):len(pids)], o.TargetPIDs[t.Name]...), progress, label)
			if err != nil {
				return nil, err
			}
			res.Round = round
			rep.Runs = append(rep.Runs, res)
			if progress != nil {
				fmt.Fprintf(progress, "%s: %d ok, %d errors, p50 %s, p99 %s, %.1f req/s\n", label,
					res.OK, res.Requests-res.OK, fmtOf(res.Latency, res.Latency.P50), fmtOf(res.Latency, res.Latency.P99), res.Throughput)
			}
		}
	}
	rep.Summaries = summarize(targets, rep.Runs)
	return rep, nil
}

func summarize(targets []Target, runs []*Result) []Summary {
	out := make([]Summary, len(targets))
	for i, t := range targets {
		s := Summary{Target: t.Name, URL: t.URL, Errors: map[string]int64{}}
		var lat, ttfb, ttft, gap, lag, svc []Dist
		var tput []float64
		cpu, share := map[int][]float64{}, map[int][]float64{}
		cpuTotal := map[int][]time.Duration{}
		var procs []ProcStats
		var genCPU, genShare []float64
		var genTotal []time.Duration
		for _, r := range runs {
			if r.Target != t.Name {
				continue
			}
			s.Rounds++
			s.Requests += r.Requests
			s.OK += r.OK
			s.Late += r.Late
			s.Unsent += r.Unsent
			for k, v := range r.Errors {
				s.Errors[k] += v
			}
			if r.LastError != "" {
				s.LastError = r.LastError
			}
			tput = append(tput, r.Throughput)
			lat, ttfb, ttft, gap = append(lat, r.Latency), append(ttfb, r.TTFB), append(ttft, r.TTFT), append(gap, r.Gap)
			lag, svc = append(lag, r.StartLag), append(svc, r.Service)
			for _, p := range r.Procs {
				j := slices.IndexFunc(procs, func(q ProcStats) bool { return q.PID == p.PID })
				if j < 0 {
					procs = append(procs, ProcStats{PID: p.PID, Name: p.Name})
					j = len(procs) - 1
				}
				if p.Err != "" {
					// No reading (the process exited): left out, as 0 CPU would pull the
					// median down and hide that it is gone.
					procs[j].Missed++
					procs[j].Err = p.Err
					continue
				}
				procs[j].Name = p.Name
				procs[j].PeakRSS = max(procs[j].PeakRSS, p.PeakRSS)
				procs[j].PeakSinceStart = procs[j].PeakSinceStart || p.PeakSinceStart
				cpu[p.PID] = append(cpu[p.PID], p.CPUPerRequest)
				share[p.PID] = append(share[p.PID], p.CoreShare)
				cpuTotal[p.PID] = append(cpuTotal[p.PID], p.CPU)
			}
			if g := r.Generator; g != nil {
				genCPU, genShare = append(genCPU, g.CPUPerRequest), append(genShare, g.CoreShare)
				genTotal = append(genTotal, g.CPU)
				if s.Generator == nil {
					s.Generator = &ProcStats{PID: g.PID, Name: g.Name}
				}
			}
		}
		s.Throughput = medianOf(sortedCopy(tput))
		s.Latency, s.TTFB, s.TTFT, s.Gap = medianDist(lat), medianDist(ttfb), medianDist(ttft), medianDist(gap)
		s.StartLag, s.Service = medianDist(lag), medianDist(svc)
		for j := range procs {
			procs[j].CPUPerRequest = medianOf(sortedCopy(cpu[procs[j].PID]))
			procs[j].CoreShare = medianOf(sortedCopy(share[procs[j].PID]))
			procs[j].CPU = medianOf(sortedCopy(cpuTotal[procs[j].PID])) // rounds are of one length
		}
		if s.Generator != nil {
			s.Generator.CPUPerRequest, s.Generator.CoreShare = medianOf(sortedCopy(genCPU)), medianOf(sortedCopy(genShare))
			s.Generator.CPU = medianOf(sortedCopy(genTotal))
		}
		s.Procs = procs
		out[i] = s
	}
	for i := range out {
		// A target without a successful request has no latency to compare, not one of 0: the
		// added figures stay 0 (the table shows "-").
		if out[i].Latency.N > 0 && out[0].Latency.N > 0 {
			out[i].AddedP50 = out[i].Latency.P50 - out[0].Latency.P50
			out[i].AddedP99 = out[i].Latency.P99 - out[0].Latency.P99
			out[i].AddedServiceP50 = out[i].Service.P50 - out[0].Service.P50
		}
		if out[0].Throughput > 0 {
			out[i].ThroughputRatio = out[i].Throughput / out[0].Throughput
		}
	}
	return out
}

// WriteTable prints rep's summaries as an aligned table, then errors and process figures.
func WriteTable(w io.Writer, rep *Report) {
	o := rep.Options
	stream := o.Workload == ChatStream
	cmp := len(rep.Summaries) > 1
	mode, from := fmt.Sprintf("closed loop, %d connections", o.Connections), "send"
	if o.Rate > 0 {
		mode, from = fmt.Sprintf("open loop, %g req/s", o.Rate), "scheduled send"
	}
	rounds := fmt.Sprintf("median of %d round(s)", o.Rounds)
	if o.Rounds > 1 {
		rounds = fmt.Sprintf("median of %d rounds (ok, errors and late: totals over all rounds)", o.Rounds)
	}
	fmt.Fprintf(w, "%s, model %s, %s, %s; latency from %s, successful requests only\n",
		o.Workload, o.Model, mode, rounds, from)
	if rep.Interrupted {
		done := make([]string, len(rep.Summaries))
		for i, s := range rep.Summaries {
			done[i] = fmt.Sprintf("%s %d", s.Target, s.Rounds)
		}
		fmt.Fprintf(w, "INTERRUPTED: partial results; rounds run (the last one cut short): %s\n", strings.Join(done, ", "))
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := []string{"target", "req/s", "p50", "p90", "p99", "p99.9", "max"}
	if stream {
		cols = append(cols, "ttft p50", "ttft p99", "gap p50", "gap p99")
	}
	cols = append(cols, "ok", "errors", "late")
	if cmp {
		cols = append(cols, "+p50", "+p99", "req/s ratio")
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	for i, s := range rep.Summaries {
		l := s.Latency
		row := []string{s.Target, fmt.Sprintf("%.1f", s.Throughput),
			fmtOf(l, l.P50), fmtOf(l, l.P90), fmtOf(l, l.P99), fmtOf(l, l.P999), fmtOf(l, l.Max)}
		if stream {
			row = append(row, fmtOf(s.TTFT, s.TTFT.P50), fmtOf(s.TTFT, s.TTFT.P99), fmtOf(s.Gap, s.Gap.P50), fmtOf(s.Gap, s.Gap.P99))
		}
		row = append(row, fmt.Sprint(s.OK), fmt.Sprint(s.Requests-s.OK), fmt.Sprint(s.Late))
		if cmp && i == 0 {
			row = append(row, "-", "-", "-")
		} else if cmp {
			base := rep.Summaries[0].Latency
			row = append(row, fmtAddedOf(l, base, s.AddedP50), fmtAddedOf(l, base, s.AddedP99), fmt.Sprintf("%.3f", s.ThroughputRatio))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()

	for _, s := range rep.Summaries {
		if o.Rate > 0 {
			// The generator's own lateness is part of every latency above; show how much.
			fmt.Fprintf(w, "%s: send lag behind schedule p50 %s, p99 %s, max %s; from the actual send p50 %s, p99 %s",
				s.Target, fmtDur(s.StartLag.P50), fmtDur(s.StartLag.P99), fmtDur(s.StartLag.Max), fmtOf(s.Service, s.Service.P50), fmtOf(s.Service, s.Service.P99))
			if cmp && s.Target != rep.Summaries[0].Target {
				fmt.Fprintf(w, " (%s p50)", fmtAddedOf(s.Service, rep.Summaries[0].Service, s.AddedServiceP50))
			}
			fmt.Fprintln(w)
		}
		if len(s.Errors) > 0 {
			keys := make([]string, 0, len(s.Errors))
			for k := range s.Errors {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = fmt.Sprintf("%s %d", k, s.Errors[k])
			}
			fmt.Fprintf(w, "%s errors: %s; last: %s\n", s.Target, strings.Join(parts, ", "), s.LastError)
		}
		if s.Unsent > 0 {
			fmt.Fprintf(w, "%s: %d arrivals not sent: the target fell behind the rate and the run's time was up\n", s.Target, s.Unsent)
		}
		for _, p := range s.Procs {
			if p.Err != "" && p.Missed >= s.Rounds {
				fmt.Fprintf(w, "%s: process %s[%d]: %s\n", s.Target, p.Name, p.PID, p.Err)
				continue
			}
			note := ""
			if p.PeakSinceStart {
				note = " (since process start)"
			}
			if p.Missed > 0 {
				note += fmt.Sprintf("; no reading in %d of %d rounds: %s", p.Missed, s.Rounds, p.Err)
			}
			fmt.Fprintf(w, "%s: process %s[%d]: %.1f CPU µs/request, %.2f of a core, peak RSS %.1f MiB%s\n",
				s.Target, p.Name, p.PID, p.CPUPerRequest, p.CoreShare, float64(p.PeakRSS)/(1<<20), note)
		}
		if g := s.Generator; g != nil && o.Rate <= 0 {
			// Closed loop: the generator and the target share the machine, and whichever is
			// out of CPU first sets the throughput.
			note := ""
			if g.CoreShare >= 0.9*float64(runtime.GOMAXPROCS(0)) {
				note = "; near all the CPU it may use (GOMAXPROCS " + strconv.Itoa(runtime.GOMAXPROCS(0)) + "): this throughput may be the generator's limit, not the target's"
			}
			fmt.Fprintf(w, "%s: load generator (this process): %.1f CPU µs/request, %.2f of a core%s\n",
				s.Target, g.CPUPerRequest, g.CoreShare, note)
		}
	}
}

// fmtDur formats d with three significant digits or so, in µs, ms or s.
func fmtDur(d time.Duration) string {
	switch a := max(d, -d); {
	case a == 0:
		return "0"
	case a < 10*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case a < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case a < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// fmtOf formats v, a figure of d, or "-" when d has no samples: a target without a successful
// request has no latency, and "0" read as none at all.
func fmtOf(d Dist, v time.Duration) string {
	if d.N == 0 {
		return "-"
	}
	return fmtDur(v)
}

// fmtAddedOf formats added, of d over base, or "-" when either has no samples to compare.
func fmtAddedOf(d, base Dist, added time.Duration) string {
	if d.N == 0 || base.N == 0 {
		return "-"
	}
	return fmtAdded(added)
}

func fmtAdded(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return fmtDur(d)
}
