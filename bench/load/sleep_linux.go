package load

import (
	"syscall"
	"time"
)

// preciseSleepInit sets the calling thread's timer slack to 1ns (PR_SET_TIMERSLACK) so that
// nanosleep wakes within microseconds instead of the default 50µs. The caller has locked its
// goroutine to the thread.
func preciseSleepInit() {
	const prSetTimerslack = 29
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0) //nolint:errcheck // best effort
}

// preciseSleep blocks the thread in nanosleep: the Go runtime's timers round sub-millisecond
// waits up to about a millisecond (epoll_wait takes milliseconds).
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Nanosleep(&ts, nil) //nolint:errcheck // EINTR: the caller re-checks the time
}
