package guard

import (
	"fmt"
	"testing"
	"time"
)

func TestSafetyDebugStats(t *testing.T) {
	t0 := time.Now()
	s, _ := NewSafety(SafetyOptions{})
	fmt.Println("build", time.Since(t0), "pats", len(s.pats), "states", len(s.depth), "stride", s.stride, "trans MB", len(s.trans)*4>>20, "phrases", len(s.phrases))
	text := safetyBenchText(32<<10, false)
	norm := append([]byte{' '}, Normalize(nil, text)...)
	state, total := uint32(0), 0
	for _, c := range append(norm, ' ') {
		v := s.trans[state+uint32(s.cls[c])]
		state = v &^ 1
		if v&1 != 0 {
			si := state / s.stride
			total += int(s.outStart[si+1] - s.outStart[si])
		}
	}
	fmt.Println("outputs", total, "per KiB", total/32)
}
