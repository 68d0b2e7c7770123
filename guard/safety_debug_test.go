package guard

import (
	"bufio"
	"fmt"
	"os"
	"testing"
)

// TestSafetyDebug prints Normalize and Check for each line of $SAFETY_DEBUG (temporary).
func TestSafetyDebug(t *testing.T) {
	path := os.Getenv("SAFETY_DEBUG")
	if path == "" {
		t.Skip()
	}
	s, err := NewSafety(SafetyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		fmt.Printf("%q\n  norm: %q\n  hits: %v\n", line, Normalize(nil, line), s.Check(nil, line))
	}
}
