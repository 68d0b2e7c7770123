package load

import (
	"context"
	"time"
)

// sleepUntil sleeps until t0+due and reports whether ctx is still live. Long waits use a
// runtime timer (cheap, ~1ms late); the last stretch uses preciseSleep.
func sleepUntil(ctx context.Context, t0 time.Time, due time.Duration) bool {
	for {
		wait := due - time.Since(t0)
		switch {
		case wait <= 0:
			select {
			case <-ctx.Done():
				return false
			default:
				return true
			}
		case wait > 3*time.Millisecond:
			t := time.NewTimer(wait - 2*time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		default:
			preciseSleep(wait)
		}
	}
}
