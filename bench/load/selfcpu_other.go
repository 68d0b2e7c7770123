//go:build !unix

package load

import "time"

// selfCPU is not available here: reports leave the load generator's CPU out.
func selfCPU() (time.Duration, bool) { return 0, false }
