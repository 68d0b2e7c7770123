package guard

import (
	"syscall"
	"unsafe"
)

// threadCPU returns the CPU time the calling thread has used, in nanoseconds: on a shared
// machine, what a benchmark's own work took, without the time other processes ran.
func threadCPU() int64 {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return ts.Nano()
}
