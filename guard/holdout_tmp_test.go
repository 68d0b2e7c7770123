package guard

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestHoldoutTmp(t *testing.T) {
	s := testSafety(t)
	f, _ := os.Open("/tmp/holdout/pos.txt")
	sc := bufio.NewScanner(f)
	n, hit, right := 0, 0, 0
	for sc.Scan() {
		cat, text, _ := strings.Cut(sc.Text(), "\t")
		ms := s.Check(nil, []byte(text))
		n++
		if len(ms) > 0 {
			hit++
		}
		ok := false
		for _, m := range ms {
			ok = ok || m.Category == cat
		}
		if ok {
			right++
		} else {
			fmt.Printf("MISS %s %q -> %v\n", cat, text, ms)
		}
	}
	fmt.Println("positives", n, "detected", hit, "right", right)
	f2, _ := os.Open("/tmp/holdout/neg.txt")
	sc = bufio.NewScanner(f2)
	n, fp := 0, 0
	for sc.Scan() {
		ms := s.Check(nil, sc.Bytes())
		n++
		if len(ms) > 0 {
			fp++
			fmt.Printf("FP %q -> %v\n", sc.Text(), ms)
		}
	}
	fmt.Println("benign", n, "flagged", fp)
}
