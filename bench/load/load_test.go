package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/bareproxy"
	"github.com/valyala/fasthttp"
)

// testOptions returns the flag defaults, quiet and short.
func testOptions() *Options {
	o := DefaultOptions()
	o.Warmup = 0
	o.Quiet = true
	return o
}

const streamEvents = 5

// fakeLLM serves OpenAI-shaped answers on loopback and counts the requests it got.
func fakeLLM(t testing.TB) (url string, count *atomic.Int64) {
	t.Helper()
	count = new(atomic.Int64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		count.Add(1)
		switch {
		case string(ctx.Path()) == "/v1/embeddings":
			ctx.SetContentType("application/json")
			ctx.WriteString(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}]}`)
		case string(ctx.Path()) != "/v1/chat/completions":
			ctx.Error(`{"error":{"message":"not found"}}`, fasthttp.StatusNotFound)
		case bytes.Contains(ctx.PostBody(), []byte(`"stream":true`)):
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for range streamEvents {
					w.WriteString(`data: {"choices":[{"delta":{"content":"hi"}}]}` + "\n\n")
					w.Flush()
				}
				w.WriteString("data: [DONE]\n\n")
			})
		default:
			ctx.SetContentType("application/json")
			ctx.WriteString(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`)
		}
	}}
	go s.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	return "http://" + ln.Addr().String(), count
}

func run(t *testing.T, o *Options, url string) *Result {
	t.Helper()
	if o.URL == "" {
		o.URL = url
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), o, w, Target{Name: "t", URL: url}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestOpenLoopRate(t *testing.T) {
	url, count := fakeLLM(t)
	o := testOptions()
	o.URL = url
	o.Rate = 400
	o.Warmup = 100 * time.Millisecond
	o.Duration = 500 * time.Millisecond
	start := time.Now()
	res := run(t, o, url)
	took := time.Since(start)

	// The schedule fixes the count (rate*duration measured, rate*warmup before); the clock
	// only shows in how long it took, in the achieved rate and, on a machine too loaded to
	// keep up, in arrivals left unsent when the time is up.
	// How many go unsent is the machine's load, not the tool's doing (a CI run with -race on a
	// busy machine left 47 of 200): most must be sent.
	if arrivals := res.Requests + res.Unsent; arrivals < 180 || arrivals > 220 || res.OK != res.Requests || res.Unsent > res.Requests {
		t.Errorf("measured %d requests (%d ok, %d unsent), want ~200: %+v", res.Requests, res.OK, res.Unsent, res)
	}
	if n := count.Load(); n < res.Requests || n > 264 {
		t.Errorf("server saw %d requests, want %d measured plus ~40 of warm-up", n, res.Requests)
	}
	// Never faster than the schedule; slower only as far as a loaded test machine stalls.
	if took < 590*time.Millisecond || took > 10*time.Second {
		t.Errorf("run took %v, want ~600ms", took)
	}
	if res.Throughput < 0.25*o.Rate || res.Throughput > 1.2*o.Rate {
		t.Errorf("throughput %.1f req/s, want ~%g", res.Throughput, o.Rate)
	}
	if res.Latency.N != int(res.OK) || res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.Max || res.TTFB.P50 > res.Latency.P50 {
		t.Errorf("latency %+v, ttfb %+v", res.Latency, res.TTFB)
	}
	if res.Mode != "open" || res.BytesSent < res.Requests*1024 || res.BytesRecv == 0 {
		t.Errorf("mode %s, sent %d, received %d", res.Mode, res.BytesSent, res.BytesRecv)
	}
}

// TestOpenLoopNoCoordinatedOmission runs against a server that stalls one request: with one
// worker allowed, the requests queued behind the stall must carry the wait in their latency
// (measured from their schedule) and be counted late.
func TestOpenLoopNoCoordinatedOmission(t *testing.T) {
	var n atomic.Int64
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if n.Add(1) == 5 {
			select {
			case <-release:
			case <-time.After(200 * time.Millisecond):
			}
		}
		ctx.WriteString("{}")
	}}
	go s.Serve(ln) //nolint:errcheck
	defer s.Shutdown()
	o := testOptions()
	o.Workload = Embeddings
	o.Rate, o.MaxWorkers, o.Requests = 100, 1, 20
	res := run(t, o, "http://"+ln.Addr().String())
	close(release)
	if res.OK != 20 || res.Late == 0 {
		t.Fatalf("ok %d, late %d", res.OK, res.Late)
	}
	// The stall covers ~20 scheduled slots of 10ms; a closed-loop view would show one slow
	// request, the open-loop one shows the backlog.
	if res.Latency.P90 < 100*time.Millisecond || res.Latency.Max < 190*time.Millisecond {
		t.Errorf("latency %+v: the stall is missing from the queued requests", res.Latency)
	}
	// From the actual send, queued requests did not wait: only the stalled one is slow.
	if res.Service.N != 20 || res.Service.P90 >= 100*time.Millisecond || res.Service.Max < 190*time.Millisecond {
		t.Errorf("service time %+v: want the backlog excluded and the stall itself kept", res.Service)
	}
}

// An open loop of a given duration ends on time when the target cannot keep up with the rate:
// what could not start in time is counted as unsent, not sent late for as long as it takes.
func TestOpenLoopEndsOnTime(t *testing.T) {
	var served atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // a backend far slower than the rate asked of it
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`) //nolint:errcheck
	}))
	defer slow.Close()
	o := testOptions()
	o.Rate, o.MaxWorkers, o.Duration = 200, 1, 300*time.Millisecond // 60 arrivals; about 6 can be served
	res := run(t, o, slow.URL+"/v1")
	if res.Unsent == 0 || res.Requests+res.Unsent != 60 || served.Load() != res.Requests {
		t.Fatalf("requests %d, unsent %d, served %d: want every one of the 60 arrivals sent or counted unsent", res.Requests, res.Unsent, served.Load())
	}
	rep := &Report{Options: o, Runs: []*Result{res}, Summaries: summarize([]Target{{Name: "t", URL: slow.URL}}, []*Result{res})}
	var table bytes.Buffer
	WriteTable(&table, rep)
	if !strings.Contains(table.String(), "arrivals not sent") {
		t.Errorf("the table does not say arrivals were not sent:\n%s", table.String())
	}
}

// Two runs (rounds, targets, invocations) never send the same body, so a cache in the target
// cannot answer one run with another's answers; within a run, repeats are exact.
func TestRunsDoNotRepeatEachOther(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{} // body -> run that sent it
	current := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if prev, ok := seen[string(b)]; ok && prev != current {
			t.Errorf("run %d sent a body of run %d", current, prev)
		}
		seen[string(b)] = current
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`) //nolint:errcheck
	}))
	defer srv.Close()
	for current = range 2 {
		o := testOptions()
		o.Rate, o.Connections, o.Requests, o.RepeatShare = 0, 2, 40, 0.5
		if res := run(t, o, srv.URL+"/v1"); res.OK != 40 {
			t.Fatalf("run %d: %d ok", current, res.OK)
		}
	}
	if len(seen) >= 80 {
		t.Errorf("%d distinct bodies in 2 runs of 40 with half of them repeats", len(seen))
	}
}

// --target-model sends one target another model name: a backend and the gateway in front of it
// seldom call the model the same.
func TestTargetModel(t *testing.T) {
	var mu sync.Mutex
	models := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Model string }
		json.NewDecoder(r.Body).Decode(&body) //nolint:errcheck
		mu.Lock()
		models[body.Model]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`) //nolint:errcheck
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--compare", "gw=" + srv.URL, "--compare", "backend=" + srv.URL, "--model", "chat",
		"--target-model", "backend=meta-llama/Llama-3.1-8B-Instruct", "--rounds", "1", "--rate", "0", "--connections", "1",
		"--requests", "5", "--warmup", "0", "--quiet"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	// Five measured requests and the check request per target.
	if models["chat"] != 6 || models["meta-llama/Llama-3.1-8B-Instruct"] != 6 || len(models) != 2 {
		t.Errorf("models seen: %v", models)
	}
	if code := Main([]string{"--compare", "a=" + srv.URL, "--target-model", "b=x"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `no --compare target is named "b"`) {
		t.Errorf("a model for no target: exit %d: %s", code, stderr.String())
	}
}

// Throughput is the rate completions came in while the load ran: a target that keeps up with
// an open loop shows the offered rate however slow each request is, and a closed loop's is
// its connections' rates, not the count over a window that ends with one latency of tail.
func TestThroughput(t *testing.T) {
	const ms = time.Millisecond
	// rec is a worker that ran n requests, the first started at first, completions step apart
	// from firstOK on.
	rec := func(n int64, first, firstOK, step time.Duration) *recorder {
		last := firstOK + time.Duration(n-1)*step
		r := &recorder{first: first, firstOK: firstOK, last: last, lastOK: last}
		r.classes[OK] = n
		return r
	}
	// failFast adds n requests to r that failed at once, before the successful ones.
	failFast := func(r *recorder, n int64) *recorder {
		r.classes[Err5xx] += n
		return r
	}
	// timeouts adds n requests to r that failed at last, after the successful ones.
	timeouts := func(r *recorder, n int64, last time.Duration) *recorder {
		r.classes[ErrTimeout] += n
		r.last = last
		return r
	}
	tests := []struct {
		name string
		rate float64
		recs []*recorder
		want float64
	}{
		// 10 req/s for 1 s, each taking 1 s: done from 1 s to 1.9 s (OK/elapsed said 5.3).
		{"open, keeps up, slow requests", 10, []*recorder{rec(10, 0, 1000*ms, 100*ms)}, 10},
		{"open, keeps up, fast requests", 10, []*recorder{rec(10, 0, 1*ms, 100*ms)}, 10},
		// Served at 5 req/s: the completions spread over 1.8 s, plus the interval.
		{"open, falls behind", 10, []*recorder{rec(10, 0, 100*ms, 200*ms)}, 10 / 1.9},
		// Every other request of 1 s at 10 req/s times out 2 s after its send: 5 answers came
		// in over the second of load, not over the 3 s to the last timeout (5/3 before).
		{"open, half time out", 10, []*recorder{timeouts(rec(5, 0, 1*ms, 200*ms), 5, 2900*ms)}, 5},
		// The other way round: every other request fails at once, the rest take 1 s. The 5
		// answers came in from 1 s to 1.8 s, not from the first failure on (5/1.9 before).
		{"open, half fail at once", 10, []*recorder{failFast(rec(5, 0, 1000*ms, 200*ms), 5)}, 5},
		// Two connections, each 5 requests of 1 s back to back, half a second apart (10/5.5 before).
		{"closed", 0, []*recorder{rec(5, 0, 1000*ms, 1000*ms), rec(5, 500*ms, 1500*ms, 1000*ms)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			o.Rate = tt.rate
			r := &runner{o: o, recs: tt.recs}
			res := &Result{Errors: map[string]int64{}}
			r.collect(res)
			if math.Abs(res.Throughput-tt.want) > 1e-9 {
				t.Errorf("throughput %v, want %v", res.Throughput, tt.want)
			}
		})
	}
}

func TestClosedLoopRequests(t *testing.T) {
	url, count := fakeLLM(t)
	o := testOptions()
	o.Workload = Embeddings
	o.Rate, o.Connections, o.Requests = 0, 4, 50
	res := run(t, o, url)
	if res.Requests != 50 || res.OK != 50 || count.Load() != 50 || res.Mode != "closed" {
		t.Errorf("requests %d ok %d server %d mode %s", res.Requests, res.OK, count.Load(), res.Mode)
	}
	// The generator's own CPU is measured, so that a report can tell when it was the limit.
	g := res.Generator
	if g == nil || g.PID != os.Getpid() || g.CPU <= 0 || g.CPUPerRequest != float64(g.CPU.Microseconds())/50 ||
		g.CoreShare <= 0 || g.CoreShare > float64(runtime.NumCPU()) {
		t.Fatalf("load generator stats %+v", g)
	}
	rep := &Report{Options: o, Runs: []*Result{res}, Summaries: summarize([]Target{{Name: "t", URL: url}}, []*Result{res})}
	var table bytes.Buffer
	WriteTable(&table, rep)
	if !strings.Contains(table.String(), "t: load generator (this process): ") || !strings.Contains(table.String(), " of a core") {
		t.Errorf("table does not show the load generator's CPU:\n%s", table.String())
	}
}

func TestStreamWorkload(t *testing.T) {
	url, _ := fakeLLM(t)
	o := testOptions()
	o.Workload = ChatStream
	o.Rate, o.Requests = 200, 40
	res := run(t, o, url)
	if res.OK != 40 || res.TTFT.N != 40 || res.Gap.N != 40*(streamEvents-1) {
		t.Fatalf("ok %d, ttft n %d, gaps n %d, errors %v %s", res.OK, res.TTFT.N, res.Gap.N, res.Errors, res.LastError)
	}
	if res.TTFT.P50 < res.TTFB.P50 || res.TTFT.P50 > res.Latency.P50 {
		t.Errorf("ttfb %v <= ttft %v <= latency %v does not hold", res.TTFB.P50, res.TTFT.P50, res.Latency.P50)
	}
}

// Gaps, like latency and TTFT, are of successful requests only: a stream that ends without
// [DONE] is a stream error and its gaps are not counted.
func TestStreamGapsOfSuccessesOnly(t *testing.T) {
	var n atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		cut := n.Add(1)%2 == 0 // every other stream ends without [DONE]
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for range streamEvents {
				w.WriteString(`data: {"choices":[{"delta":{"content":"hi"}}]}` + "\n\n")
				w.Flush()
			}
			if !cut {
				w.WriteString("data: [DONE]\n\n")
			}
		})
	}}
	go s.Serve(ln) //nolint:errcheck
	defer s.Shutdown()
	o := testOptions()
	o.Workload = ChatStream
	o.Rate, o.Requests = 200, 20
	res := run(t, o, "http://"+ln.Addr().String())
	if res.OK == 0 || res.Errors["stream-error"] == 0 || res.OK+res.Errors["stream-error"] != 20 {
		t.Fatalf("ok %d, errors %v", res.OK, res.Errors)
	}
	if res.TTFT.N != int(res.OK) || res.Gap.N != int(res.OK)*(streamEvents-1) {
		t.Errorf("%d ok: ttft n %d, gaps n %d, want %d", res.OK, res.TTFT.N, res.Gap.N, int(res.OK)*(streamEvents-1))
	}
}

// A closed loop against a target that went away pauses between refused connections: it
// retried at once, about 30,000 connection errors a second per connection, all CPU.
func TestClosedLoopBacksOffWhenRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	o := testOptions()
	o.Rate, o.Connections, o.Duration = 0, 1, 300*time.Millisecond
	res := run(t, o, dead)
	// The pauses alone (1, 2, 4 ... 64, then 100 ms) leave room for at most 9 tries in 300 ms,
	// however fast the machine.
	if n := res.Errors["connect"]; n == 0 || n > 9 || res.Requests != n {
		t.Errorf("%d requests, errors %v in %v", res.Requests, res.Errors, o.Duration)
	}
}

func TestErrorClasses(t *testing.T) {
	url, _ := fakeLLM(t)
	o := testOptions()
	o.Rate, o.Requests = 200, 10
	res := run(t, o, url+"/nowhere") // the fake answers 404 below /nowhere
	if res.Errors["4xx"] != 10 || res.OK != 0 || !strings.Contains(res.LastError, "404") {
		t.Errorf("errors %v, last %q", res.Errors, res.LastError)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	res = run(t, o, dead)
	if res.Errors["connect"] != 10 {
		t.Errorf("errors %v, last %q", res.Errors, res.LastError)
	}
	// A target that sheds load is told apart from one refusing what it was sent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Error(`{"error":{"message":"slow down","type":"rate_limit_error"}}`, fasthttp.StatusTooManyRequests)
	}}
	go s.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	res = run(t, o, "http://"+ln.Addr().String())
	if res.Errors["429"] != 10 || len(res.Errors) != 1 || !strings.Contains(res.LastError, "HTTP 429: {") {
		t.Errorf("errors %v, last %q", res.Errors, res.LastError)
	}
}

// A target that closes the connection before its answer is complete is counted as closed,
// and its check says so: it was 'other', with fasthttp's advice to server authors, before the
// first byte, and 'stream-error' for a chat body cut short.
func TestErrorClassClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		cut := strings.HasPrefix(string(ctx.Path()), "/cut/")
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) { // the server closes c when this returns
			if cut {
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"choices\""))
			}
		})
	}}
	go s.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	for _, name := range []string{"before-answer", "cut"} {
		t.Run(name, func(t *testing.T) {
			url := "http://" + ln.Addr().String() + "/" + name
			o := testOptions()
			o.Rate, o.Requests = 200, 5
			if res := run(t, o, url); res.Errors["closed"] != 5 {
				t.Errorf("errors %v, last %q", res.Errors, res.LastError)
			}
			w, err := NewWorkload(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(o, w, Target{Name: "t", URL: url}); err == nil || !strings.Contains(err.Error(), "closed the connection") {
				t.Errorf("check: %v", err)
			}
		})
	}
}

// A connection left idle is closed before the target's keep-alive timeout closes it: after a
// burst of slow answers had opened a connection per request, the client took its idle ones in
// turn, each idle longer than the target keeps one, and a quarter of the requests failed as
// closed (uvicorn, which serves vLLM, closes idle connections after 5 s; the client kept
// them a minute).
func TestIdleConnectionsClosedBeforeTheTargetCloses(t *testing.T) {
	idle := maxIdleConn
	maxIdleConn = 50 * time.Millisecond
	t.Cleanup(func() { maxIdleConn = idle })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	s := &fasthttp.Server{IdleTimeout: 300 * time.Millisecond, Handler: func(ctx *fasthttp.RequestCtx) {
		if n.Add(1) <= 25 { // the burst: every request of its half second needs a connection
			time.Sleep(500 * time.Millisecond)
		}
		ctx.SetContentType("application/json")
		ctx.WriteString(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`)
	}}
	go s.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	o := testOptions()
	o.Rate, o.Requests = 50, 80
	if res := run(t, o, "http://"+ln.Addr().String()); res.OK != 80 {
		t.Errorf("%d ok, errors %v, last %q", res.OK, res.Errors, res.LastError)
	}
}

// A stream that ends in an error event is reported with that event's message: the check and
// the last error said only "error event in stream", not what the target said went wrong.
func TestStreamErrorEventSaysWhy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			w.WriteString(`data: {"choices":[{"delta":{"content":"hi"}}]}` + "\n\n")
			w.WriteString(`data: {"error":{"message":"backend went away","type":"server_error"}}` + "\n\n")
			w.WriteString("data: [DONE]\n\n")
		})
	}}
	go s.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	url := "http://" + ln.Addr().String()
	o := testOptions()
	o.Workload = ChatStream
	o.Rate, o.Requests = 200, 5
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(o, w, Target{Name: "t", URL: url}); err == nil || !strings.Contains(err.Error(), `error event in stream: {"error":{"message":"backend went away"`) {
		t.Errorf("check: %v", err)
	}
	if res := run(t, o, url); res.Errors["stream-error"] != 5 || !strings.Contains(res.LastError, "backend went away") {
		t.Errorf("errors %v, last %q", res.Errors, res.LastError)
	}
}

// A 200 answer to a stream request that is not an event stream says so: it was reported as
// "stream ended without [DONE]", which sent a user looking for a cut connection.
func TestStreamAnsweredWithoutStreaming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.WriteString(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`)
	}}
	go s.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	url := "http://" + ln.Addr().String()
	o := testOptions()
	o.Workload = ChatStream
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(o, w, Target{Name: "t", URL: url}); err == nil || !strings.Contains(err.Error(), `answered Content-Type "application/json" to a stream request`) {
		t.Errorf("check: %v", err)
	}
}

func TestCompare(t *testing.T) {
	url, count := fakeLLM(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := bareproxy.New(url)
	go p.Serve(ln) //nolint:errcheck
	defer p.Close()

	o := testOptions()
	o.Compare = []Target{{Name: "direct", URL: url}, {Name: "proxy", URL: "http://" + ln.Addr().String() + "/v1"}}
	// A request count, not a duration: an open-loop run ends on time and leaves arrivals
	// unsent when the machine falls behind (a loaded CI runner did), and this test counts.
	o.Rate, o.Requests, o.Rounds = 200, 30, 2
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, err := Compare(context.Background(), o, w, []int{os.Getpid()}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 4 || rep.Runs[0].Target != "direct" || rep.Runs[1].Target != "proxy" || rep.Runs[2].Round != 2 {
		t.Fatalf("runs not interleaved: %d runs", len(rep.Runs))
	}
	if len(rep.Summaries) != 2 || rep.Summaries[1].Rounds != 2 || rep.Summaries[1].OK != 60 || count.Load() != 120 {
		t.Fatalf("summaries %+v, server saw %d", rep.Summaries, count.Load())
	}
	if s := rep.Summaries[1]; s.ThroughputRatio <= 0 || s.AddedP50 != s.Latency.P50-rep.Summaries[0].Latency.P50 {
		t.Errorf("added p50 %v, ratio %v", s.AddedP50, s.ThroughputRatio)
	}
	if ps := rep.Summaries[0].Procs; len(ps) != 1 || ps[0].PID != os.Getpid() || ps[0].PeakRSS <= 0 {
		t.Errorf("procs %+v", ps)
	}
	if strings.Count(progress.String(), " ok, ") != 4 {
		t.Errorf("progress: %q", progress.String())
	}

	var table bytes.Buffer
	WriteTable(&table, rep)
	if strings.Contains(table.String(), "INTERRUPTED") {
		t.Errorf("a complete run is marked interrupted:\n%s", table.String())
	}
	// A run ended by a signal says so, with the rounds each target got.
	rep.Interrupted = true
	var cut bytes.Buffer
	WriteTable(&cut, rep)
	if !strings.Contains(cut.String(), "INTERRUPTED: partial results; rounds run (the last one cut short): direct 2, proxy 2") {
		t.Errorf("interrupted table:\n%s", cut.String())
	}
	rep.Interrupted = false
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	// The counts are totals over the rounds, not medians like the rest: the header says so.
	if !strings.Contains(lines[0], "median of 2 rounds (ok, errors and late: totals over all rounds)") {
		t.Errorf("header does not say which columns are totals:\n%s", table.String())
	}
	if len(lines) < 4 || !strings.Contains(lines[1], "+p99") ||
		!strings.HasPrefix(strings.TrimSpace(lines[2]), "direct") || !strings.HasPrefix(strings.TrimSpace(lines[3]), "proxy") {
		t.Errorf("table:\n%s", table.String())
	}

	svg := SVG(rep)
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var root string
	rects, texts := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Space + " " + se.Name.Local
			}
			switch se.Name.Local {
			case "rect":
				rects++
			case "text":
				texts++
			}
		}
	}
	// background + 2 targets x 3 percentiles + 3 legend swatches + 2 throughput bars
	if root != "http://www.w3.org/2000/svg svg" || rects != 1+6+3+2 || texts < 10 {
		t.Errorf("root %q, %d rects, %d texts", root, rects, texts)
	}
	if bytes.Contains(svg, []byte("href")) {
		t.Error("SVG refers to an external asset")
	}
	b, err := json.Marshal(rep)
	if err != nil || !bytes.Contains(b, []byte(`"added_p99_ns"`)) {
		t.Errorf("json: %v", err)
	}
}

func TestMainCommand(t *testing.T) {
	url, _ := fakeLLM(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/bad.jsonl", []byte(`{"prompt": "fine"}`+"\n{\"prompt\": \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		stderr  string // substring
		stdout  string // substring
		outputs []string
	}{
		{name: "no target", args: nil, code: 2, stderr: "need --url or --compare"},
		{name: "help", args: []string{"-h"}, code: 0, stdout: "-prompt-mix"},
		{name: "bad flag", args: []string{"--rate", "x"}, code: 2, stderr: "llmgate bench: invalid value \"x\" for flag -rate: parse error (llmgate bench -h lists the flags)"},
		{name: "duration without unit", args: []string{"--duration", "5"}, code: 2, stderr: `invalid value "5" for flag -duration: want a duration with a unit, such as "500ms", "10s" or "1m"`},
		{name: "bad workload", args: []string{"--url", url, "--workload", "img"}, code: 2, stderr: `--workload "img"`},
		{name: "bad compare", args: []string{"--compare", "nameonly"}, code: 2, stderr: "want name=URL"},
		{name: "bad url", args: []string{"--url", "localhost:80"}, code: 2, stderr: "not an http(s)://host:port URL"},
		{name: "url without scheme", args: []string{"--url", "127.0.0.1:80"}, code: 2, stderr: "not an http(s)://host:port URL"},
		{name: "rate NaN", args: []string{"--url", url, "--rate", "NaN"}, code: 2, stderr: "--rate NaN"},
		{name: "share NaN", args: []string{"--url", url, "--repeat-share", "NaN"}, code: 2, stderr: "--repeat-share must be within"},
		{name: "negative rate", args: []string{"--url", url, "--rate", "-5"}, code: 2, stderr: "--rate -5"},
		{name: "rate too low for the duration", args: []string{"--url", url, "--rate", "0.4", "--duration", "1s"}, code: 2, stderr: "schedules no request"},
		{name: "connections with a rate", args: []string{"--url", url, "--rate", "50", "--connections", "4", "--requests", "1", "--quiet"}, code: 2, stderr: "--connections is the closed loop's (--rate 0)"},
		{name: "max workers closed loop", args: []string{"--url", url, "--connections", "4", "--max-workers", "4", "--requests", "1", "--quiet"}, code: 2, stderr: "--max-workers is the open loop's"},
		{name: "duration and requests", args: []string{"--url", url, "--duration", "-1s", "--requests", "1", "--quiet"}, code: 2, stderr: "use --duration or --requests, not both"},
		{name: "prompt bytes and mix", args: []string{"--url", url, "--prompt-bytes", "512", "--prompt-mix", "200,1024", "--requests", "1", "--quiet"}, code: 2, stderr: "use one of --prompt-bytes, --prompt-mix and --prompts"},
		{name: "prompt mix and file", args: []string{"--url", url, "--prompt-mix", "200", "--prompts", dir + "/bad.jsonl", "--requests", "1", "--quiet"}, code: 2, stderr: "use one of --prompt-bytes, --prompt-mix and --prompts"},
		// Every prompt carries its nonce, and with --pii-share its PII: smaller sizes came out larger.
		{name: "prompt smaller than its nonce", args: []string{"--url", dead, "--prompt-bytes", "10"}, code: 2, stderr: "--prompt-bytes 10: a prompt holds a 26-byte nonce; want at least 26"},
		{name: "prompt mix smaller than its nonce", args: []string{"--url", dead, "--prompt-mix", "200,25"}, code: 2, stderr: "--prompt-mix 25: a prompt holds a 26-byte nonce; want at least 26"},
		{name: "prompt smaller than its PII", args: []string{"--url", dead, "--prompt-bytes", "60", "--pii-share", "0.1"}, code: 2, stderr: "--prompt-bytes 60: a prompt holds a 26-byte nonce and, with --pii-share, up to 56 bytes of PII; want at least 82"},
		{name: "negative max tokens", args: []string{"--url", url, "--max-tokens", "-1"}, code: 2, stderr: "--max-tokens must not be negative"},
		{name: "no prompts file", args: []string{"--url", url, "--prompts", dir + "/none.jsonl"}, code: 2, stderr: "--prompts: open " + dir + "/none.jsonl"},
		{name: "bad prompts line", args: []string{"--url", url, "--prompts", dir + "/bad.jsonl"}, code: 2, stderr: "--prompts: " + dir + "/bad.jsonl:2: "},
		{name: "no such pid", args: []string{"--url", url, "--pid", "999999999"}, code: 1, stderr: "--pid 999999999"},
		{name: "unreachable", args: []string{"--url", dead}, code: 1, stderr: "cannot connect"},
		{name: "unknown host", args: []string{"--url", "http://no-such-host.invalid:8080"}, code: 1, stderr: "cannot connect: lookup no-such-host.invalid"},
		{name: "wrong path", args: []string{"--url", url + "/x"}, code: 1, stderr: "POST /x/v1/chat/completions: HTTP 404"},
		{name: "target model without compare", args: []string{"--url", dead, "--target-model", "target=x"}, code: 2, stderr: "--target-model needs --compare"},
		{name: "pid of no target", args: []string{"--compare", "a=" + url, "--pid", "b=1"}, code: 2, stderr: `no target is named "b"`},
		{
			name:   "pid scoped to a target",
			args:   []string{"--compare", "a=" + url, "--compare", "b=" + url, "--pid", "b=" + strconv.Itoa(os.Getpid()), "--rounds", "1", "--connections", "1", "--requests", "5", "--warmup", "0", "--quiet"},
			code:   0,
			stdout: "b: process",
		},
		{name: "no such process", args: []string{"--url", url, "--proc-name", "no-such-proc-xyz"}, code: 1, stderr: "no process named"},
		// Output files that cannot be written fail before the run, not after it.
		{name: "json in no directory", args: []string{"--url", dead, "--json", dir + "/none/r.json"}, code: 2, stderr: "--json: open " + dir + "/none/r.json"},
		{name: "svg is a directory", args: []string{"--url", dead, "--svg", dir}, code: 2, stderr: "--svg: open " + dir},
		{
			name:    "ok",
			args:    []string{"--url", url, "--connections", "2", "--requests", "20", "--warmup", "0", "--quiet", "--json", dir + "/r.json", "--svg", dir + "/r.svg"},
			code:    0,
			stdout:  "closed loop, 2 connections",
			outputs: []string{dir + "/r.json", dir + "/r.svg"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderr) || !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if tt.code != 0 && strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("want a one-line error, got %q", stderr.String())
			}
			for _, f := range tt.outputs {
				if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %v", f, err)
				}
			}
		})
	}
	var rep struct{ Runs []Result }
	b, _ := os.ReadFile(dir + "/r.json")
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Runs) != 1 || rep.Runs[0].OK != 20 {
		t.Errorf("json report: %v %s", err, b)
	}
}

// BenchmarkClosedLoop measures the generator's cost per request against the in-process fake
// (which is part of what is counted, as is fasthttp's client).
func BenchmarkClosedLoop(b *testing.B) {
	for _, kind := range []string{Chat, ChatStream} {
		b.Run(kind, func(b *testing.B) {
			url, _ := fakeLLM(b)
			o := testOptions()
			o.URL, o.Workload = url, kind
			o.Rate, o.Connections, o.Requests = 0, 4, b.N
			w, err := NewWorkload(o)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			res, err := Run(context.Background(), o, w, Target{Name: "t", URL: url}, nil, nil, "")
			if err != nil || res.OK != int64(b.N) {
				b.Fatalf("%v, %d ok of %d", err, res.OK, b.N)
			}
		})
	}
}

// hangingServer accepts connections and reads requests but never answers; started is closed
// once the first request bytes arrive. Its connections are closed at the test's end.
func hangingServer(t *testing.T) (url string, started <-chan struct{}) {
	url, started, _ = countingHangingServer(t)
	return url, started
}

// countingHangingServer is hangingServer that also counts the connections it accepted.
func countingHangingServer(t *testing.T) (url string, started <-chan struct{}, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var conns []net.Conn
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					once.Do(func() { close(ch) })
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String(), ch, accepted
}

// Ctrl-C or SIGTERM ends a run at once even when the target hangs: the requests in flight are
// cut, not waited for until --timeout, and they are not counted as timeouts (nor as anything:
// the run was stopped, they did not fail).
func TestInterruptCutsRequestsInFlight(t *testing.T) {
	for _, rate := range []float64{200, 0} {
		t.Run("rate "+strconv.FormatFloat(rate, 'g', -1, 64), func(t *testing.T) {
			url, started := hangingServer(t)
			o := testOptions()
			o.URL = url
			o.Rate, o.Connections, o.Duration = rate, 4, time.Minute
			o.Timeout = 20 * time.Second // without the cut, Run returns after it with 'timeout' errors
			w, err := NewWorkload(o)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-started; cancel() }()
			res, err := Run(ctx, o, w, Target{Name: "t", URL: url}, nil, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 0 || len(res.Errors) != 0 {
				t.Errorf("requests cut by the interrupt were counted: %d requests, errors %v (last %q)", res.Requests, res.Errors, res.LastError)
			}
		})
	}
}

// A target that does not answer the check in time fails it at once: trying three times made
// a hanging target a silent wait of three timeouts (90 s with the defaults) before the error.
func TestCheckTimeoutIsNotRetried(t *testing.T) {
	floor := checkTimeoutFloor
	checkTimeoutFloor = 50 * time.Millisecond
	t.Cleanup(func() { checkTimeoutFloor = floor })
	url, _, accepted := countingHangingServer(t)
	o := testOptions()
	o.URL, o.Timeout = url, 50*time.Millisecond
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(o, w, Target{Name: "t", URL: url})
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("check of a target that never answers: %v", err)
	}
	if n := accepted.Load(); n > 1 {
		t.Errorf("the check tried %d times", n)
	}
}

// A check that waits says so: a target that hangs kept the command silent for the check's
// whole timeout (30 s with the defaults) before its error.
func TestCheckSaysWhatItWaitsFor(t *testing.T) {
	floor, slow := checkTimeoutFloor, checkSlowAfter
	checkTimeoutFloor, checkSlowAfter = 50*time.Millisecond, 0
	t.Cleanup(func() { checkTimeoutFloor, checkSlowAfter = floor, slow })
	url, _ := hangingServer(t)
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--url", url, "--timeout", "50ms", "--requests", "1"}, &stdout, &stderr)
	want := "llmgate bench: target target (" + url + "): no answer yet to the check request; waiting up to 50ms\n"
	if code != 1 || !strings.HasPrefix(stderr.String(), want) || !strings.Contains(stderr.String(), "no answer within 50ms") {
		t.Errorf("exit %d, stderr:\n%s\nwant it to start with %q", code, stderr.String(), want)
	}
	// --quiet is quiet: only the error.
	stderr.Reset()
	if code := Main([]string{"--url", url, "--timeout", "50ms", "--requests", "1", "--quiet"}, &stdout, &stderr); code != 1 || strings.Contains(stderr.String(), "waiting") {
		t.Errorf("--quiet: exit %d, stderr:\n%s", code, stderr.String())
	}
}

// A query string in the URL goes with every request (an api-version a proxy requires); it
// was dropped. Credentials in the URL are refused, with the flag that sends them: they were
// dropped too, and the URL is written to the report.
func TestTargetURLQueryAndCredentials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.RequestURI()) != "/v1/chat/completions?api-version=2024-10-21" {
			ctx.Error(`{"error":{"message":"wrong URI `+string(ctx.RequestURI())+`"}}`, fasthttp.StatusNotFound)
			return
		}
		ctx.SetContentType("application/json")
		ctx.WriteString(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`)
	}}
	go s.Serve(ln) //nolint:errcheck
	defer s.Shutdown()
	url := "http://" + ln.Addr().String() + "/v1?api-version=2024-10-21"
	o := testOptions()
	o.URL = url
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(o, w, Target{Name: "t", URL: url}); err != nil {
		t.Fatal(err)
	}
	o.Rate, o.Requests = 200, 5
	if res := run(t, o, url); res.OK != 5 {
		t.Errorf("%d ok, errors %v, last %q", res.OK, res.Errors, res.LastError)
	}

	o = testOptions()
	o.URL = "http://user:secret@" + ln.Addr().String()
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), `--header "Authorization: ..."`) || strings.Contains(err.Error(), "secret") {
		t.Errorf("URL with credentials: %v", err)
	}
}

// A target on an IPv6 address can be measured: the dialer was IPv4-only and failed the check
// of http://[::1]:PORT with "couldn't find dns entries".
func TestIPv6Target(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.WriteString(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`)
	}}
	go s.Serve(ln) //nolint:errcheck
	defer s.Shutdown()
	url := "http://" + ln.Addr().String()
	o := testOptions()
	o.URL = url
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(o, w, Target{Name: "t", URL: url}); err != nil {
		t.Fatal(err)
	}
	o.Rate, o.Requests = 200, 5
	if res := run(t, o, url); res.OK != 5 {
		t.Errorf("%d ok, errors %v, last %q", res.OK, res.Errors, res.LastError)
	}
}

// When the target falls behind, unsent counts the measured arrivals not sent (never warmup
// ones), and late counts only requests that were sent, behind schedule.
func TestOpenLoopUnsentAndLate(t *testing.T) {
	tests := []struct {
		name             string
		warmup           time.Duration
		requests, unsent int64 // the first arrival hangs its only worker; every other is unsent
	}{
		{"no warmup", 0, 1, 19},
		{"warmup", 100 * time.Millisecond, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := hangingServer(t)
			o := testOptions()
			o.Rate, o.MaxWorkers, o.Warmup, o.Duration = 100, 1, tt.warmup, 200*time.Millisecond-tt.warmup
			o.Timeout = time.Second // longer than the run: the one worker never frees
			res := run(t, o, url)
			if res.Requests != tt.requests || res.Unsent != tt.unsent || res.Late != 0 {
				t.Errorf("requests %d, unsent %d, late %d; want %d, %d, 0", res.Requests, res.Unsent, res.Late, tt.requests, tt.unsent)
			}
		})
	}
}

// A run in which no measured request completed says why rather than "(last error: )".
func TestMainNoRequestCompleted(t *testing.T) {
	var n atomic.Int64
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if n.Add(1) > 1 { // the check passes, then the target stalls
			<-release
		}
		ctx.SetContentType("application/json")
		ctx.WriteString(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`)
	}}
	go s.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck
	t.Cleanup(func() { close(release) })
	var stdout, stderr bytes.Buffer
	// The warmup's first request holds the only worker past the end of the run.
	code := Main([]string{"--url", "http://" + ln.Addr().String(), "--rate", "100", "--warmup", "100ms", "--duration", "100ms",
		"--max-workers", "1", "--timeout", "1s", "--quiet"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no measured request completed; 10 arrivals not sent") ||
		strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
}
