package router

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/config"
)

// TestEjection plays a script of events against a single-backend version (failure threshold 3,
// eject_for 10s) and checks whether the next request can be sent to the backend.
//
// Events: "fail" and "ok" report a response, "acquire"/"release" open and finish a request,
// "+D" advances the clock by the duration D.
func TestEjection(t *testing.T) {
	tests := []struct {
		name   string
		events string
		want   bool // Pick returns the backend and Healthy reports true
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
		{name: "half-open admits a single trial", events: "fail fail fail +10s acquire", want: false},
		{name: "trial without a verdict frees the slot", events: "fail fail fail +10s acquire release", want: true},
		{name: "trial success restores full service", events: "fail fail fail +10s acquire ok", want: true},
		{name: "after recovery a failure needs the full threshold", events: "fail fail fail +10s ok fail fail", want: true},
		{name: "after recovery the threshold ejects again", events: "fail fail fail +10s ok fail fail fail", want: false},
		{name: "success resets the backoff", events: "fail fail fail +10s fail +20s ok fail fail fail +10s", want: true},
		{name: "success during ejection ends it", events: "fail fail fail +1s ok", want: true},
		{name: "load alone never ejects", events: "acquire acquire acquire acquire", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			v := testPoolVersion(t, newTestPool(clock), testHealth, 1)
			b := v.Backends[0]
			for _, ev := range strings.Fields(tt.events) {
				switch ev {
				case "fail":
					b.ReportFailure()
				case "ok":
					b.ReportSuccess()
				case "acquire":
					b.Acquire()
				case "release":
					b.Release()
				default:
					d, err := time.ParseDuration(strings.TrimPrefix(ev, "+"))
					if err != nil || !strings.HasPrefix(ev, "+") {
						t.Fatalf("bad event %q", ev)
					}
					clock.Advance(d)
				}
			}
			got, err := v.Pick(nil)
			if tt.want && (err != nil || got != b) {
				t.Errorf("Pick = %v, %v; want the backend", got, err)
			}
			if !tt.want && !errors.Is(err, ErrNoBackend) {
				t.Errorf("Pick = %v, %v; want ErrNoBackend", got, err)
			}
			if h := b.Healthy(); h != tt.want {
				t.Errorf("Healthy() = %v, want %v", h, tt.want)
			}
		})
	}
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
	steps := []struct {
		name string
		do   func()
		want int64
	}{
		{name: "new", do: func() {}, want: 0},
		{name: "acquire", do: b.Acquire, want: 1},
		{name: "acquire again", do: b.Acquire, want: 2},
		{name: "release", do: b.Release, want: 1},
		{name: "release again", do: b.Release, want: 0},
	}
	for _, st := range steps {
		st.do()
		if got := b.InFlight(); got != st.want {
			t.Errorf("%s: InFlight() = %d, want %d", st.name, got, st.want)
		}
	}
}

func TestHealthChangeHook(t *testing.T) {
	pool := NewPool()
	var events []string
	pool.OnHealthChange(func(url string, d time.Duration) { events = append(events, url+" "+d.String()) })
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
	want := []string{"http://h:1 10s", "http://h:1 0s"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", events, want)
	}
}
