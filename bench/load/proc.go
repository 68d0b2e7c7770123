package load

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ProcStats is one process's resource use over a run's measured window.
type ProcStats struct {
	PID           int           `json:"pid"`
	Name          string        `json:"name"`
	CPU           time.Duration `json:"cpu_ns"` // user + system
	CPUPerRequest float64       `json:"cpu_us_per_request"`
	// CoreShare is CPU over the window's wall time: 1 is one core busy throughout.
	CoreShare float64 `json:"core_share"`
	// PeakRSS is VmHWM; 0, and left out of JSON, when not measured: the load generator's,
	// or a process that could not be read (Err).
	PeakRSS int64 `json:"peak_rss_bytes,omitempty"`
	// PeakSinceStart is set when VmHWM could not be reset at the window start (another
	// user's process), so PeakRSS is the peak over the process's whole life.
	PeakSinceStart bool   `json:"peak_rss_since_start,omitempty"`
	Err            string `json:"error,omitempty"`
	// Missed, in a Summary, counts the rounds that could not read the process (Err says why;
	// it exited or was restarted): the figures are of the other rounds.
	Missed int `json:"rounds_missed,omitempty"`
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// configuration Go supports.
const clockTick = 10 * time.Millisecond

// ReadProc returns the name, CPU time (utime+stime) and peak RSS (VmHWM) of process pid.
func ReadProc(pid int) (name string, cpu time.Duration, peakRSS int64, err error) {
	s := readProc(pid)
	return s.name, s.cpu, s.rss, s.err
}

// readProc reads process pid, its start time included.
func readProc(pid int) procSample {
	name, cpu, start, rss, err := readProcFields(pid)
	return procSample{pid: pid, name: name, cpu: cpu, start: start, rss: rss, err: err}
}

func readProcFields(pid int) (name string, cpu time.Duration, start uint64, peakRSS int64, err error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, 0, 0, err
	}
	// The name is in parentheses and may itself hold spaces and parentheses.
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "", 0, 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	name = string(stat[open+1 : end])
	f := bytes.Fields(stat[end+1:]) // f[0] is field 3 (state); utime is 14, stime 15, starttime 22
	if len(f) < 20 {
		return "", 0, 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	start, err3 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", 0, 0, 0, fmt.Errorf("/proc/%d/stat: bad utime/stime/starttime", pid)
	}
	cpu = time.Duration(utime+stime) * clockTick

	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", 0, 0, 0, err
	}
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			v = bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return "", 0, 0, 0, fmt.Errorf("/proc/%d/status: bad VmHWM", pid)
			}
			peakRSS = kb << 10
		}
	}
	return name, cpu, start, peakRSS, nil
}

// resetPeakRSS resets pid's VmHWM to its current RSS (clear_refs 5) and reports success.
func resetPeakRSS(pid int) bool {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0) == nil
}

// FindProcs returns the pids of processes whose name (comm, which the kernel truncates to 15
// bytes) is name, this process excluded.
func FindProcs(name string) ([]int, error) {
	if len(name) > 15 {
		name = name[:15]
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && string(bytes.TrimSpace(comm)) == name {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process named %q", name)
	}
	slices.Sort(pids)
	return pids, nil
}

// procSample is one reading of one process.
type procSample struct {
	pid   int
	name  string
	cpu   time.Duration
	start uint64 // clock ticks after boot: another process with the pid has another
	rss   int64
	reset bool
	err   error
}

// sampleProcs reads every pid; with reset it first resets their peak RSS.
func sampleProcs(pids []int, reset bool) []procSample {
	out := make([]procSample, len(pids))
	for i, pid := range pids {
		reset := reset && resetPeakRSS(pid)
		out[i] = readProc(pid)
		out[i].reset = reset
	}
	return out
}

// procDelta turns readings at the window's start and end into ProcStats.
func procDelta(before, after []procSample) []ProcStats {
	out := make([]ProcStats, len(before))
	for i, b := range before {
		a := after[i]
		p := ProcStats{PID: b.pid, Name: a.name, CPU: a.cpu - b.cpu, PeakRSS: a.rss, PeakSinceStart: !b.reset}
		err := cmpErr(b.err, a.err)
		if err == nil && a.start != b.start {
			err = fmt.Errorf("process %d exited during the run; the pid is now %s's", b.pid, a.name)
		}
		if err != nil {
			p = ProcStats{PID: b.pid, Name: b.name, Err: err.Error()}
		}
		out[i] = p
	}
	return out
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// procWindow samples processes at the start and end of a run's measured window.
// It also reads the load generator's own CPU time, so that a report can say when the generator,
// not the target, was the limit of a closed-loop run.
type procWindow struct {
	pids    []int
	timer   *time.Timer
	mu      sync.Mutex
	started bool
	at      time.Time     // when the first sample was taken
	self    time.Duration // this process's CPU time then
	before  []procSample
}

// startProcWindow takes the first sample after delay, from a timer, or at once when delay is 0.
func startProcWindow(pids []int, delay time.Duration) *procWindow {
	w := &procWindow{pids: pids}
	if delay == 0 {
		w.start()
	} else {
		w.timer = time.AfterFunc(delay, w.start)
	}
	return w
}

func (w *procWindow) start() {
	s := sampleProcs(w.pids, true)
	self, _ := selfCPU()
	w.mu.Lock()
	w.started, w.at, w.self, w.before = true, time.Now(), self, s
	w.mu.Unlock()
}

// finish takes the second sample. It returns the processes' stats and the generator's (PID
// this process; nil when its CPU time cannot be read), or nothing when the window never
// started.
func (w *procWindow) finish() (procs []ProcStats, generator *ProcStats) {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.started {
		return nil, nil
	}
	wall := time.Since(w.at)
	procs = procDelta(w.before, sampleProcs(w.pids, false))
	for i := range procs {
		procs[i].CoreShare = procs[i].CPU.Seconds() / wall.Seconds()
	}
	if self, ok := selfCPU(); ok {
		cpu := self - w.self
		generator = &ProcStats{PID: os.Getpid(), Name: "load generator", CPU: cpu, CoreShare: cpu.Seconds() / wall.Seconds()}
	}
	return procs, generator
}
