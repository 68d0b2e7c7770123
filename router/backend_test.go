package router

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

// TestEjection plays a script of events against a single-backend version (failure threshold 3,
// eject_for 10s) and checks whether the next request can be sent to the backend.
//
// Events: "fail" and "ok" report the verdict of a request that starts and ends at once;
// "pick" picks the backend and acquires it, as the gateway starts a request (the script stops
// if Pick refuses); "acquire" acquires it without a pick (a request that was running already);
// "ok@N", "fail@N" and "release@N" report on and end the Nth request started; "+D" advances the
// clock by the duration D.
func TestEjection(t *testing.T) {
	tests := []struct {
		name string
		// want: Pick returns the backend. busy: Pick refuses only because the half-open trial
		// is in flight; the backend is in service (Healthy reports want || busy).
		events string
		want   bool
		busy   bool
	}{
		{name: "new backend", events: "", want: true},
		{name: "failures below threshold", events: "fail fail", want: true},
		{name: "threshold failures eject", events: "fail fail fail", want: false},
		{name: "success in between resets the count", events: "fail fail ok fail fail", want: true},
		{name: "count resets each time", events: "fail fail ok fail fail ok fail fail", want: true},
		{name: "ejected until eject_for has passed", events: "fail fail fail +9.999s", want: false},
		{name: "ejection ends after eject_for", events: "fail fail fail +10s", want: true},
		{name: "failures while ejected do not extend it", events: "fail fail fail +1s fail fail fail fail fail +9s", want: true},
		{name: "half-open failure re-ejects at once", events: "fail fail fail +10s fail", want: false},
		{name: "second ejection lasts twice as long", events: "fail fail fail +10s fail +19.999s", want: false},
		{name: "second ejection ends", events: "fail fail fail +10s fail +20s", want: true},
		{name: "third ejection lasts four times as long", events: "fail fail fail +10s fail +20s fail +39.999s", want: false},
		{name: "third ejection ends", events: "fail fail fail +10s fail +20s fail +40s", want: true},
		{name: "half-open admits a single trial", events: "fail fail fail +10s pick", busy: true},
		{name: "trial without a verdict frees the slot", events: "fail fail fail +10s pick release@1", want: true},
		{name: "trial success restores full service", events: "fail fail fail +10s pick ok@1", want: true},
		{name: "trial failure re-ejects", events: "fail fail fail +10s pick fail@1", want: false},
		{name: "trial failure doubles the ejection", events: "fail fail fail +10s pick fail@1 +19.999s", want: false},
		{name: "a failed trial's release frees no later trial", events: "fail fail fail +10s pick fail@1 +20s pick release@1", busy: true},
		{name: "after recovery a failure needs the full threshold", events: "fail fail fail +10s ok fail fail", want: true},
		{name: "after recovery the threshold ejects again", events: "fail fail fail +10s ok fail fail fail", want: false},
		{name: "success resets the backoff", events: "fail fail fail +10s fail +20s ok fail fail fail +10s", want: true},
		// Requests that were running when the backend was ejected say nothing of it now.
		{name: "success of a request started before the ejection does not end it", events: "acquire fail fail fail +1s ok@1", want: false},
		{name: "nor does it restore a half-open backend", events: "acquire fail fail fail +10s ok@1 fail", want: false},
		{name: "failure of a request started before the ejection does not re-eject", events: "acquire fail fail fail +10s fail@1", want: true},
		{name: "a request running since before the ejection does not hold off the trial", events: "acquire fail fail fail +10s", want: true},
		{name: "load alone never ejects", events: "acquire acquire acquire acquire", want: true},
		{name: "Healthy changes nothing", events: "fail fail fail +10s healthy healthy pick", busy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			v := testPoolVersion(t, newTestPool(clock), testHealth, 1)
			b := v.Backends[0]
			var holds []Hold
			for _, ev := range strings.Fields(tt.events) {
				verb, n, _ := strings.Cut(ev, "@")
				var hold Hold
				if n != "" {
					i, err := strconv.Atoi(n)
					if err != nil || i < 1 || i > len(holds) {
						t.Fatalf("bad event %q", ev)
					}
					hold = holds[i-1]
				}
				switch verb {
				case "fail":
					if n == "" {
						b.ReportFailure()
					} else {
						hold.ReportFailure()
					}
				case "ok":
					if n == "" {
						b.ReportSuccess()
					} else {
						hold.ReportSuccess()
					}
				case "release":
					hold.Release()
				case "pick":
					if got, err := v.Pick(nil); err != nil || got != b {
						t.Fatalf("%s: Pick = %v, %v; want the backend", ev, got, err)
					}
					holds = append(holds, b.Acquire())
				case "acquire":
					holds = append(holds, b.Acquire())
				case "healthy":
					_ = b.Healthy()
				default:
					d, err := time.ParseDuration(strings.TrimPrefix(ev, "+"))
					if err != nil || !strings.HasPrefix(ev, "+") {
						t.Fatalf("bad event %q", ev)
					}
					clock.Advance(d)
				}
			}
			if h := b.Healthy(); h != (tt.want || tt.busy) {
				t.Errorf("Healthy() = %v, want %v", h, tt.want || tt.busy)
			}
			got, err := v.Pick(nil)
			if tt.want && (err != nil || got != b) {
				t.Errorf("Pick = %v, %v; want the backend", got, err)
			}
			if !tt.want && !errors.Is(err, ErrNoBackend) {
				t.Errorf("Pick = %v, %v; want ErrNoBackend", got, err)
			}
		})
	}
}

// Picks that race for a half-open backend admit one trial: two picks before either request
// acquires the backend (the interleaving of two concurrent requests) get it once.
func TestHalfOpenSingleTrial(t *testing.T) {
	t.Run("interleaved", func(t *testing.T) {
		clock := newFakeClock()
		v := testPoolVersion(t, newTestPool(clock), testHealth, 1)
		b := v.Backends[0]
		for range 3 {
			b.ReportFailure()
		}
		clock.Advance(10 * time.Second)
		first, err1 := v.Pick(nil)
		second, err2 := v.Pick(nil)
		if err1 != nil || first != b {
			t.Fatalf("first Pick = %v, %v; want the trial", first, err1)
		}
		if !errors.Is(err2, ErrNoBackend) {
			t.Fatalf("second Pick = %v, %v; want ErrNoBackend while the trial is out", second, err2)
		}
		b.Acquire().Release() // the trial ends without a verdict
		if got, err := v.Pick(nil); err != nil || got != b {
			t.Errorf("Pick after the trial ended = %v, %v; want the next trial", got, err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		clock := newFakeClock()
		v := testPoolVersion(t, newTestPool(clock), testHealth, 2)
		bad := v.Backends[0]
		for range 3 {
			bad.ReportFailure()
		}
		clock.Advance(10 * time.Second)
		var wg sync.WaitGroup
		var trials atomic.Int32
		start := make(chan struct{})
		for range 16 {
			wg.Go(func() {
				<-start
				if b, err := v.Pick(nil); err == nil && b == bad {
					trials.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := trials.Load(); n > 1 {
			t.Errorf("%d concurrent picks got the half-open backend, want at most 1", n)
		}
	})
}

// Each ejection that follows a failed trial lasts twice as long as the one before, up to five
// minutes, however many times the backend fails.
func TestEjectionBackoff(t *testing.T) {
	tests := []struct {
		name     string
		ejectFor time.Duration
		want     []time.Duration // the first ejections; every later one lasts as long as the last
	}{
		{name: "doubles to the cap", ejectFor: 10 * time.Second, want: []time.Duration{
			10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, maxEject,
		}},
		{name: "one second", ejectFor: time.Second, want: []time.Duration{
			1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
			32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, maxEject,
		}},
		{name: "base near the cap", ejectFor: 4 * time.Minute, want: []time.Duration{4 * time.Minute, maxEject}},
		{name: "base above the cap", ejectFor: time.Hour, want: []time.Duration{maxEject}},
		{name: "base below one second counts as one second", ejectFor: time.Millisecond, want: []time.Duration{
			1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
			32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, maxEject,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := testHealth
			hc.FailureThreshold = 1
			hc.EjectFor = tt.ejectFor
			clock := newFakeClock()
			v := testPoolVersion(t, newTestPool(clock), hc, 1)
			b := v.Backends[0]
			b.ReportFailure()
			for i := range 100 { // far past the point where base<<i overflows
				want := tt.want[min(i, len(tt.want)-1)]
				clock.Advance(want - time.Nanosecond)
				if b.Healthy() {
					t.Fatalf("ejection %d ended before %v", i+1, want)
				}
				clock.Advance(time.Nanosecond)
				if !b.Healthy() {
					t.Fatalf("ejection %d lasted longer than %v", i+1, want)
				}
				b.ReportFailure() // the trial fails
			}
		})
	}
}

func TestInFlight(t *testing.T) {
	v := testPoolVersion(t, newTestPool(newFakeClock()), testHealth, 1)
	b := v.Backends[0]
	var holds []Hold
	steps := []struct {
		name string
		do   func()
		want int64
	}{
		{name: "new", do: func() {}, want: 0},
		{name: "acquire", do: func() { holds = append(holds, b.Acquire()) }, want: 1},
		{name: "acquire again", do: func() { holds = append(holds, b.Acquire()) }, want: 2},
		{name: "release", do: holds0(&holds, 0), want: 1},
		{name: "release again", do: holds0(&holds, 1), want: 0},
	}
	for _, st := range steps {
		st.do()
		if got := b.InFlight(); got != st.want {
			t.Errorf("%s: InFlight() = %d, want %d", st.name, got, st.want)
		}
	}
}

// holds0 returns a step that releases (*holds)[i].
func holds0(holds *[]Hold, i int) func() { return func() { (*holds)[i].Release() } }

func TestHealthChangeHook(t *testing.T) {
	pool := NewPool()
	var events []string
	pool.OnHealthChange(func(url string, d time.Duration, why string) {
		events = append(events, strings.TrimSpace(url+" "+d.String()+" "+why))
	})
	cfg := &config.Config{Health: config.HealthCheck{FailureThreshold: 2, EjectFor: 10 * time.Second},
		Models: []config.Model{{Alias: "a", Versions: []config.Version{{Version: "v", Backends: []config.Backend{{URL: "http://h:1", Model: "m", Weight: 1}}}}}}}
	tab, err := NewTable(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	b := tab.Backends()[0]
	b.ReportFailure()
	b.ReportFailure() // ejects
	b.ReportFailure() // already out: no second event
	b.health.ejectedUntil.Store(1)
	b.ReportSuccess() // back
	b.ReportSuccess() // nothing to report
	// The hook says why: failed probes, and a failed trial, are other causes than requests.
	for range 2 {
		b.ReportProbeFailure()
	}
	b.health.ejectedUntil.Store(1) // ran out: half-open
	b.ReportFailure()              // the trial fails
	want := []string{"http://h:1 10s 2 failed requests in a row", "http://h:1 0s",
		"http://h:1 10s 2 failed health probes in a row", "http://h:1 20s its trial request failed"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// ReportDown ejects at once, as failed probes do: the hook says why, and the first passing
// probe puts the backend back.
func TestReportDown(t *testing.T) {
	pool := NewPool()
	var events []string
	pool.OnHealthChange(func(url string, d time.Duration, why string) {
		events = append(events, strings.TrimSpace(url+" "+d.String()+" "+why))
	})
	cfg := &config.Config{Health: config.HealthCheck{FailureThreshold: 3, EjectFor: 10 * time.Second},
		Models: []config.Model{{Alias: "a", Versions: []config.Version{{Version: "v", Backends: []config.Backend{{URL: "http://h:1", Model: "m", Weight: 1}}}}}}}
	tab, err := NewTable(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	b := tab.Backends()[0]
	b.ReportDown("down at start")
	if b.Healthy() {
		t.Fatal("in service after ReportDown")
	}
	b.ReportDown("again") // out already: nothing
	b.health.probeSuccess()
	if !b.Healthy() {
		t.Fatal("still out after a passing probe")
	}
	want := []string{"http://h:1 10s down at start", "http://h:1 0s"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// Streams the backend breaks after their 200 eject it by share, not in a row: one in twenty
// broken, however they bunch, leaves it in service; all of them broken ejects it once the
// window has streamWindowMin outcomes; a broken half-open trial ejects it again at once.
func TestStreamFailuresEjectByShare(t *testing.T) {
	stream := func(b *Backend, failed bool) {
		h := b.Acquire()
		if failed {
			h.ReportStreamFailure()
		} else {
			h.ReportStreamSuccess()
		}
		h.Release()
	}
	t.Run("one in twenty, three in a row", func(t *testing.T) {
		v := testPoolVersion(t, newTestPool(newFakeClock()), testHealth, 1)
		b := v.Backends[0]
		for i := range 2000 {
			// Three broken in a row every 60 streams: 5 %, in runs longer than the threshold.
			stream(b, i%60 < 3)
			if !b.Healthy() {
				t.Fatalf("ejected after stream %d with one stream in twenty broken", i+1)
			}
		}
	})
	t.Run("all broken", func(t *testing.T) {
		v := testPoolVersion(t, newTestPool(newFakeClock()), testHealth, 1)
		b := v.Backends[0]
		for i := range streamWindowMin - 1 {
			stream(b, true)
			if !b.Healthy() {
				t.Fatalf("ejected after %d broken streams, before the window has %d", i+1, streamWindowMin)
			}
		}
		stream(b, true)
		if b.Healthy() {
			t.Fatalf("still in service after %d broken streams of %d", streamWindowMin, streamWindowMin)
		}
	})
	t.Run("broken trial", func(t *testing.T) {
		clock := newFakeClock()
		v := testPoolVersion(t, newTestPool(clock), testHealth, 1)
		b := v.Backends[0]
		for range streamWindowMin {
			stream(b, true)
		}
		clock.Advance(testHealth.EjectFor)
		got, err := v.Pick(nil)
		if err != nil || got != b {
			t.Fatalf("Pick after the ejection ran out = %v, %v; want the trial", got, err)
		}
		stream(b, true)
		if b.Healthy() {
			t.Fatal("a broken trial stream left the backend in service")
		}
		clock.Advance(2 * testHealth.EjectFor) // the second ejection lasts twice as long
		if got, err := v.Pick(nil); err != nil || got != b {
			t.Fatalf("Pick after the second ejection = %v, %v; want the trial", got, err)
		}
		stream(b, false)
		if !b.Healthy() {
			t.Fatal("a whole trial stream did not put the backend back")
		}
	})
}

// A request picked just before an ejection and held just after it carries the new epoch; its
// success must not end the ejection, which only the trial, admitted once it has run out, may.
func TestSuccessDuringEjectionIgnored(t *testing.T) {
	clock := newFakeClock()
	v := testPoolVersion(t, newTestPool(clock), testHealth, 1)
	b := v.Backends[0]
	for range testHealth.FailureThreshold {
		b.ReportFailure()
	}
	h := b.Acquire() // the late hold
	h.ReportSuccess()
	h.Release()
	if b.Healthy() {
		t.Fatal("a success held during the ejection put the backend back before it ran out")
	}
	clock.Advance(testHealth.EjectFor)
	if got, err := v.Pick(nil); err != nil || got != b {
		t.Fatalf("Pick after the ejection ran out = %v, %v; want the trial", got, err)
	}
	h = b.Acquire()
	h.ReportSuccess()
	h.Release()
	if !b.Healthy() {
		t.Error("the trial's success left the backend out")
	}
}

// A mirror must not take the half-open trial of a server the primary version also uses: the
// primary's request, picked after its mirror, would find no backend. A server only the shadow
// version has gets its trial from a mirror, or it would never come back.
func TestPickShadowLeavesPrimaryTrial(t *testing.T) {
	hc := testHealth
	hc.FailureThreshold = 1
	clock := newFakeClock()
	cfg := &config.Config{Health: hc, Models: []config.Model{testModel("chat", "v1",
		testVersion("v1", testBackend("http://shared:8000", 1)),
		testVersion("v2", testBackend("http://shared:8000", 1), testBackend("http://own:8000", 1)))}}
	m := mustTable(t, cfg, newTestPool(clock)).Model("chat")
	v1, v2 := m.Versions[0], m.Versions[1]
	shared, own := v2.Backends[0], v2.Backends[1]
	shared.ReportFailure()
	own.ReportFailure()
	clock.Advance(hc.EjectFor)
	b, err := v2.PickShadow(v1, nil)
	if err != nil || b != own {
		t.Fatalf("PickShadow = %v, %v; want the shadow's own server, on trial", b, err)
	}
	hold := b.Acquire()
	defer hold.Release()
	if b, err := v2.PickShadow(v1, nil); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("second PickShadow = %v, %v; want ErrNoBackend (own on trial, shared left to v1)", b, err)
	}
	if b, err := v1.Pick(nil); err != nil || b != v1.Backends[0] {
		t.Fatalf("the primary's Pick after its mirror = %v, %v; want the shared server's trial", b, err)
	}
}

// A stream that is its backend's half-open trial puts the backend back in service at its first
// event: an LLM stream may run for minutes, and every other request to the backend would be
// refused until it ended. Its end is still the trial's verdict for the backoff: a break ejects
// the backend again at once, for twice as long; a stream that ends otherwise resets it.
func TestStreamTrialPassesAtFirstEvent(t *testing.T) {
	hc := testHealth
	hc.FailureThreshold = 1
	for _, tc := range []struct {
		name      string
		end       func(Hold)
		wantEject time.Duration // the next ejection: at once after a break, after a failure otherwise
	}{
		{"stream breaks", func(h Hold) { h.ReportStreamFailure() }, 2 * hc.EjectFor},
		{"stream completes", func(h Hold) { h.ReportStreamSuccess() }, hc.EjectFor},
		{"client leaves", func(Hold) {}, hc.EjectFor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			v := testPoolVersion(t, newTestPool(clock), hc, 1)
			b := v.Backends[0]
			b.ReportFailure()
			clock.Advance(hc.EjectFor)
			if got, err := v.Pick(nil); err != nil || got != b {
				t.Fatalf("Pick once the ejection ran out = %v, %v; want the trial", got, err)
			}
			trial := b.Acquire()
			if _, err := v.Pick(nil); !errors.Is(err, ErrNoBackend) {
				t.Fatalf("Pick while the trial waits for its first event = %v, want ErrNoBackend", err)
			}
			trial.StreamStarted()
			other, err := v.Pick(nil)
			if err != nil || other != b {
				t.Fatalf("Pick once the trial stream's first event came = %v, %v; want the backend", other, err)
			}
			oh := other.Acquire()
			oh.ReportSuccess()
			oh.Release()
			tc.end(trial)
			trial.Release()
			if tc.wantEject == 2*hc.EjectFor {
				if b.Healthy() {
					t.Fatal("the trial stream broke, and the backend is in service")
				}
			} else {
				if !b.Healthy() {
					t.Fatal("the trial stream is over, and the backend is out")
				}
				b.ReportFailure()
			}
			clock.Advance(tc.wantEject - time.Nanosecond)
			if b.Healthy() {
				t.Fatalf("the next ejection ended before %v", tc.wantEject)
			}
			clock.Advance(time.Nanosecond)
			if !b.Healthy() {
				t.Fatalf("the next ejection lasted longer than %v", tc.wantEject)
			}
		})
	}
}
