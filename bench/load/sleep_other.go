//go:build !linux

package load

import "time"

func preciseSleepInit() {}

func preciseSleep(d time.Duration) { time.Sleep(d) }
