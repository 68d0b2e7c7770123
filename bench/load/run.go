package load

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Result is what one run against one target measured, warmup excluded. Latency, TTFB, TTFT
// and gaps count successful requests only; latency, TTFB and TTFT run from the time a request
// was scheduled (open loop) or started (closed loop). TTFB ends at the response headers, TTFT
// at the first event that carries output (text, reasoning, a tool call or a refusal: not a
// role-only chunk, which a gateway may send before the model has produced anything).
type Result struct {
	Target   string        `json:"target"`
	Round    int           `json:"round"`
	Mode     string        `json:"mode"` // "open" or "closed"
	Rate     float64       `json:"rate,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"` // first measured start to last completion
	Requests int64         `json:"requests"`   // measured requests completed, errors included
	OK       int64         `json:"ok"`
	// Throughput is successful completions per second while the load ran (see collect): not
	// OK / Elapsed, which counts the last requests' latency as time and so shows a target
	// that adds latency, but keeps up, as one with less throughput.
	Throughput float64          `json:"throughput_rps"`
	Errors     map[string]int64 `json:"errors"`
	// Late counts open-loop requests that found every worker busy and so started behind
	// schedule; their wait is in their latency.
	Late int64 `json:"late"`
	// Unsent counts the open loop's arrivals not sent because the run's time was up: the
	// target fell so far behind the rate that they could not start in time.
	Unsent   int64 `json:"unsent,omitempty"`
	Latency  Dist  `json:"latency"`
	TTFB     Dist  `json:"ttfb"`
	TTFT     Dist  `json:"ttft"`
	Gap      Dist  `json:"inter_event_gap"`
	StartLag Dist  `json:"start_lag"` // actual start minus scheduled start
	// Service is latency from the actual send: without the generator's own lateness, which
	// at low rates is as large as what a proxy adds and differs from round to round.
	Service   Dist        `json:"service"`
	BytesSent int64       `json:"bytes_sent"`
	BytesRecv int64       `json:"bytes_received"`
	Procs     []ProcStats `json:"procs,omitempty"`
	// Generator is the load generator's own CPU over the measured window.
	Generator *ProcStats `json:"load_generator,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// Run drives t with the load o describes and returns what it measured. pids are sampled for
// CPU and peak RSS over the measured window. progress, when not nil, gets a line a second,
// prefixed with label. Run returns early, with what it has, when ctx is done.
func Run(ctx context.Context, o *Options, w *Workload, t Target, pids []int, progress io.Writer, label string) (*Result, error) {
	e, err := parseTarget(t.URL)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, w: w, uri: e.base + w.Path + e.query, headers: o.headerPairs(), run: rand.Uint64()}
	conns := o.Connections
	if o.Rate > 0 {
		conns = o.MaxWorkers
	}
	// An interrupt cuts the requests in flight rather than wait up to --timeout for them.
	var cut connSet
	r.hc = newClient(e, conns, o.Timeout, &cut)
	defer r.hc.CloseIdleConnections()
	defer context.AfterFunc(ctx, cut.closeAll)()

	res := &Result{Target: t.Name, Mode: "closed", Errors: map[string]int64{}}
	if o.Rate > 0 {
		res.Mode, res.Rate = "open", o.Rate
	}

	// Process stats cover the measured window only: sampled when warmup ends.
	pw := startProcWindow(pids, o.Warmup)
	r.t0 = time.Now()
	stopProgress := r.startProgress(progress, label)
	if o.Rate > 0 {
		r.open(ctx)
	} else {
		r.closed(ctx)
	}
	stopProgress()
	res.Procs, res.Generator = pw.finish()
	r.collect(res)
	if res.Requests > 0 {
		for i := range res.Procs {
			res.Procs[i].CPUPerRequest = float64(res.Procs[i].CPU.Microseconds()) / float64(res.Requests)
		}
		if g := res.Generator; g != nil {
			g.CPUPerRequest = float64(g.CPU.Microseconds()) / float64(res.Requests)
		}
	}
	return res, nil
}

// runner is the state of one Run.
type runner struct {
	o       *Options
	w       *Workload
	hc      *fasthttp.HostClient
	uri     string
	headers [][2]string
	t0      time.Time
	run     uint64 // random per run: see Workload.Body

	// live counters for the progress line, warmup included
	sent, done, failed, late atomic.Int64
	unsent                   atomic.Int64

	mu   sync.Mutex
	recs []*recorder
}

func (r *runner) now() time.Duration { return time.Since(r.t0) }

// recorder is one worker's measurements; merged after the run, so the hot path takes no lock.
type recorder struct {
	lat, ttfb, ttft, gap, lag, svc []time.Duration
	classes                        [numClasses]int64
	sent, recv                     int64
	first, last                    time.Duration // earliest measured start, latest completion
	firstOK, lastOK                time.Duration // earliest and latest measured successful completion
	lastErr                        error
}

func (r *runner) newRecorder() *recorder {
	rec := &recorder{first: math.MaxInt64, firstOK: math.MaxInt64}
	// Start with room for a few seconds of a busy worker; appends double from there, rarely,
	// and a thousand idle-ish open-loop workers still cost only a few MiB.
	const hint = 512
	rec.lat = make([]time.Duration, 0, hint)
	rec.ttfb = make([]time.Duration, 0, hint)
	if r.w.Kind == ChatStream {
		rec.ttft = make([]time.Duration, 0, hint)
		rec.gap = make([]time.Duration, 0, 8*hint)
	}
	rec.lag = make([]time.Duration, 0, hint)
	rec.svc = make([]time.Duration, 0, hint)
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return rec
}

// one sends request i, scheduled at sched and started now, and records it when measured and
// not cut short by the end of ctx (an interrupt: the request did not fail, the run stopped).
// It returns the request's class.
func (r *runner) one(ctx context.Context, c *conn, rec *recorder, i uint64, sched time.Duration, measured bool) Class {
	c.body = r.w.Body(c.body[:0], r.w.Key(i), r.run)
	start := r.now()
	r.sent.Add(1)
	var gaps *[]time.Duration
	if measured && rec.gap != nil {
		gaps = &rec.gap
	}
	ngaps := len(rec.gap)
	x := c.do(c.body, r.now, gaps)
	r.done.Add(1)
	if x.class != OK {
		r.failed.Add(1)
	}
	if !measured || x.class != OK && ctx.Err() != nil {
		rec.gap = rec.gap[:ngaps]
		return x.class
	}
	rec.classes[x.class]++
	rec.sent += int64(len(c.body))
	rec.recv += x.recv
	rec.first = min(rec.first, sched)
	rec.last = max(rec.last, x.done)
	rec.lag = append(rec.lag, start-sched)
	if x.class != OK {
		rec.lastErr = x.err
		// Like latency and TTFT, gaps are of successful requests only: a stream cut short
		// or ending in an error event is counted by its class, not timed.
		rec.gap = rec.gap[:ngaps]
		return x.class
	}
	rec.firstOK, rec.lastOK = min(rec.firstOK, x.done), max(rec.lastOK, x.done)
	rec.lat = append(rec.lat, x.done-sched)
	rec.svc = append(rec.svc, x.done-start)
	rec.ttfb = append(rec.ttfb, x.ttfb-sched)
	if x.sse.output {
		rec.ttft = append(rec.ttft, x.sse.first-sched)
	}
	return x.class
}

// plan returns how many requests the warmup and the whole run take in open loop.
func (r *runner) plan() (warm, total uint64) {
	warm = uint64(math.Ceil(r.o.Warmup.Seconds() * r.o.Rate))
	if r.o.Requests > 0 {
		return warm, warm + uint64(r.o.Requests)
	}
	return warm, warm + uint64(math.Round(r.o.Duration.Seconds()*r.o.Rate))
}

type job struct {
	i     uint64
	sched time.Duration
}

// open runs the open loop: request i is due at i/rate and is handed to an idle worker, a new
// one while under MaxWorkers, or else the next worker to free up (counted late). Latency runs
// from the due time, so a slow server cannot slow the arrivals it is measured by.
func (r *runner) open(ctx context.Context) {
	warm, total := r.plan()
	interval := float64(time.Second) / r.o.Rate
	jobs := make(chan job)
	var wg sync.WaitGroup
	worker := func(first job) {
		defer wg.Done()
		c := newConn(r.hc, r.uri, r.headers, r.w, r.o.Timeout)
		defer c.release()
		rec := r.newRecorder()
		r.one(ctx, c, rec, first.i, first.sched, first.i >= warm)
		for j := range jobs {
			r.one(ctx, c, rec, j.i, j.sched, j.i >= warm)
		}
	}
	// A run of a duration ends on time even when the target cannot keep up with the rate:
	// arrivals that could not start before then are counted, not sent late for ever.
	timeUp := make(<-chan time.Time)
	if r.o.Requests <= 0 {
		t := time.NewTimer(time.Until(r.t0.Add(r.o.Warmup + r.o.Duration)))
		defer t.Stop()
		timeUp = t.C
	}
	// The dispatcher gets a thread of its own with fine timer slack (see sleep_linux.go):
	// the runtime's timers wake about a millisecond late, which would all count as latency.
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread's timer slack dies with it
		preciseSleepInit()
		workers := 0
	loop:
		for i := uint64(0); i < total; i++ {
			due := time.Duration(float64(i) * interval)
			if !sleepUntil(ctx, r.t0, due) {
				break
			}
			if r.o.Requests <= 0 && time.Since(r.t0) > r.o.Warmup+r.o.Duration {
				r.unsent.Add(int64(total - max(i, warm))) // measured arrivals only
				break
			}
			j := job{i, due}
			select {
			case jobs <- j:
				continue
			default:
			}
			if workers < r.o.MaxWorkers {
				workers++
				wg.Add(1)
				go worker(j)
				continue
			}
			select {
			case jobs <- j:
				if i >= warm {
					r.late.Add(1) // sent, behind schedule; one never sent is unsent, not late
				}
			case <-ctx.Done():
				break loop
			case <-timeUp:
				r.unsent.Add(int64(total - max(i, warm)))
				break loop
			}
		}
	}()
	<-done
	close(jobs)
	wg.Wait()
}

// Pauses of a closed-loop worker after a refused connection: doubling from the first to the
// most, back to none after any other outcome.
const (
	firstConnectBackoff = time.Millisecond
	maxConnectBackoff   = 100 * time.Millisecond
)

// closed runs the closed loop: Connections workers, each sending its next request as soon as
// the previous one ends, or after a pause when the target refused the connection. Requests
// started during warmup are not measured.
func (r *runner) closed(ctx context.Context) {
	var next, measured atomic.Uint64
	end := time.Duration(math.MaxInt64)
	if r.o.Requests <= 0 {
		end = r.o.Warmup + r.o.Duration
	}
	var wg sync.WaitGroup
	for range r.o.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newConn(r.hc, r.uri, r.headers, r.w, r.o.Timeout)
			defer c.release()
			rec := r.newRecorder()
			var backoff time.Duration
			for ctx.Err() == nil {
				start := r.now()
				if start >= end {
					return
				}
				m := start >= r.o.Warmup
				if m && r.o.Requests > 0 && measured.Add(1) > uint64(r.o.Requests) {
					return
				}
				if r.one(ctx, c, rec, next.Add(1)-1, start, m) != ErrConnect {
					backoff = 0
					continue
				}
				// A target that went away refuses connections at once: without a pause each
				// worker spins through tens of thousands of errors a second, taking the CPU
				// that the target's restart may need. The pause is short, so that the load
				// resumes soon after the target is back.
				backoff = min(max(2*backoff, firstConnectBackoff), maxConnectBackoff)
				pause := time.NewTimer(min(backoff, end-r.now()))
				select {
				case <-ctx.Done():
				case <-pause.C:
				}
				pause.Stop()
			}
		}()
	}
	wg.Wait()
}

// collect merges the workers' recorders into res.
func (r *runner) collect(res *Result) {
	cat := func(get func(*recorder) []time.Duration) []time.Duration {
		n := 0
		for _, rec := range r.recs {
			n += len(get(rec))
		}
		out := make([]time.Duration, 0, n)
		for _, rec := range r.recs {
			out = append(out, get(rec)...)
		}
		return out
	}
	res.Latency = Summarize(cat(func(rec *recorder) []time.Duration { return rec.lat }))
	res.TTFB = Summarize(cat(func(rec *recorder) []time.Duration { return rec.ttfb }))
	res.TTFT = Summarize(cat(func(rec *recorder) []time.Duration { return rec.ttft }))
	res.Gap = Summarize(cat(func(rec *recorder) []time.Duration { return rec.gap }))
	res.StartLag = Summarize(cat(func(rec *recorder) []time.Duration { return rec.lag }))
	res.Service = Summarize(cat(func(rec *recorder) []time.Duration { return rec.svc }))

	first, last := time.Duration(math.MaxInt64), time.Duration(0)
	firstOK, lastOK := time.Duration(math.MaxInt64), time.Duration(0)
	var perConn float64 // closed loop: the sum of each connection's rate
	for _, rec := range r.recs {
		for c, k := range rec.classes {
			res.Requests += k
			if Class(c) != OK && k > 0 {
				res.Errors[Class(c).String()] += k
			}
		}
		res.OK += rec.classes[OK]
		res.BytesSent += rec.sent
		res.BytesRecv += rec.recv
		first, last = min(first, rec.first), max(last, rec.last)
		firstOK, lastOK = min(firstOK, rec.firstOK), max(lastOK, rec.lastOK)
		if rec.last > rec.first {
			perConn += float64(rec.classes[OK]) / (rec.last - rec.first).Seconds()
		}
		if rec.lastErr != nil {
			res.LastError = rec.lastErr.Error()
		}
	}
	res.Late = r.late.Load()
	res.Unsent = r.unsent.Load()
	if res.Requests == 0 {
		return
	}
	if r.o.Rate <= 0 {
		// Closed loop: each connection sends back to back from its first measured start to
		// its last completion, so its rate over that span is exact; the target's is the sum.
		res.Throughput = perConn
		if last > first {
			res.Elapsed = last - first
		}
		return
	}
	// Open loop: successful completions over the time they took to come in, from the first
	// to the last plus one interval (a loop that keeps up ends one interval after its last
	// arrival), and never over less than the schedule's length. A target that keeps up shows
	// the offered rate however long each request takes; one that falls behind spreads its
	// completions out and shows less. Failures before or after the answers (errors at once,
	// timeouts) do not stretch the span: a target that answers every other request served
	// half the rate, not less for as long as the rest took to fail.
	interval := time.Duration(float64(time.Second) / r.o.Rate)
	schedule := time.Duration(float64(res.Requests) / r.o.Rate * float64(time.Second))
	res.Throughput = float64(res.OK) / max(lastOK-firstOK+interval, schedule).Seconds()
	res.Elapsed = max(last, first+schedule) - first
}

// startProgress prints a line to w every second until the returned func is called.
func (r *runner) startProgress(w io.Writer, label string) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var prev int64
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			done, sent := r.done.Load(), r.sent.Load()
			phase := ""
			if r.now() < r.o.Warmup {
				phase = " (warmup)"
			}
			fmt.Fprintf(w, "%s %3.0fs%s  sent %d  done %d  errors %d  in flight %d  late %d  %d req/s\n",
				label, r.now().Seconds(), phase, sent, done, r.failed.Load(), sent-done, r.late.Load(), done-prev)
			prev = done
		}
	}()
	return func() { close(quit); <-exited }
}

// checkTimeoutFloor is the least time Check waits for an answer.
var checkTimeoutFloor = 10 * time.Second

// checkSlowAfter is how long a check may go unanswered before checkSaying says so.
var checkSlowAfter = time.Second

// checkTimeout is how long Check waits for an answer. The check asks whether the target
// answers at all; a run's --timeout may be meant to cut requests short (abandoned streams),
// so it does not bound the check.
func checkTimeout(o *Options) time.Duration { return max(o.Timeout, checkTimeoutFloor) }

// checkSaying runs Check and, when t has not answered after checkSlowAfter, says on out what
// it waits for: a target that hangs would otherwise keep the command silent for the whole
// check timeout (30 s with the defaults). out may be nil.
func checkSaying(o *Options, w *Workload, t Target, out io.Writer) error {
	if out == nil {
		return Check(o, w, t)
	}
	done, said := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(said)
		timer := time.NewTimer(checkSlowAfter)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			fmt.Fprintf(out, "llmgate bench: target %s (%s): no answer yet to the check request; waiting up to %v\n", t.Name, t.URL, checkTimeout(o))
		}
	}()
	defer func() { close(done); <-said }() // nothing is written to out after the return
	return Check(o, w, t)
}

// Check sends one request to t (with a body no run uses, so it warms no cache) and returns a
// one-line error when t is unreachable or does not answer 2xx.
func Check(o *Options, w *Workload, t Target) error {
	e, err := parseTarget(t.URL)
	if err != nil {
		return fmt.Errorf("target %s: %w", t.Name, err)
	}
	timeout := checkTimeout(o)
	hc := newClient(e, 1, timeout, nil)
	defer hc.CloseIdleConnections()
	c := newConn(hc, e.base+w.Path+e.query, o.headerPairs(), w, timeout)
	defer c.release()
	t0 := time.Now()
	var x exchange
	// A target that fails now and then (a backend's injected errors, a restart) gets three
	// tries; an unreachable one, a refusal (4xx: a wrong model or path; 429: it sheds load,
	// which three tries at once do not change) or one that does not answer in time (waiting
	// three timeouts in silence is no better) fails at once.
	for try := 0; try < 3; try++ {
		x = c.do(w.Body(nil, math.MaxUint64, rand.Uint64()), func() time.Duration { return time.Since(t0) }, nil)
		if x.class == OK || x.class == ErrConnect || x.class == Err4xx || x.class == Err429 || x.class == ErrTimeout {
			break
		}
	}
	switch x.class {
	case OK:
		return nil
	case ErrConnect:
		return fmt.Errorf("target %s (%s): cannot connect: %v", t.Name, t.URL, x.err)
	case Err429, Err4xx, Err5xx:
		return fmt.Errorf("target %s (%s): POST %s: %v", t.Name, t.URL, e.path+w.Path, x.err)
	case ErrTimeout:
		return fmt.Errorf("target %s (%s): no answer within %v: %v", t.Name, t.URL, timeout, x.err)
	case ErrClosed:
		return fmt.Errorf("target %s (%s): POST %s: the target closed the connection before its answer was complete: %v", t.Name, t.URL, e.path+w.Path, x.err)
	}
	return fmt.Errorf("target %s (%s): %s: %v", t.Name, t.URL, x.class, x.err)
}
