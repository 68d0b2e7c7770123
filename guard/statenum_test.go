package guard

import (
	"math/rand/v2"
	"testing"
)

// TestStateNumEveryStride checks stateNum's multiplication against a division for every
// stride a rule set can make (2 to 258: every byte class and class 0, rounded up to even),
// not only the default rules', at the ends of the dense ids' range and at random ids, with
// and without the output flag.
func TestStateNumEveryStride(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for stride := uint32(2); stride <= 258; stride += 2 {
		s := &Safety{stride: stride, strideInv: strideInverse(stride), denseEnd: ^uint32(0)}
		top := (^uint32(0) - 2) / stride // the largest number whose id and flag are below denseEnd
		qs := []uint32{0, 1, 2, 3, 1<<31/stride - 1, 1 << 31 / stride, top - 1, top}
		for range 2000 {
			qs = append(qs, r.Uint32N(top+1))
		}
		for _, q := range qs {
			st := q * stride
			if got := s.stateNum(st); got != q {
				t.Fatalf("stride %d: stateNum(%d) = %d, want %d", stride, st, got, q)
			}
			if got := s.stateNum(st | 1); got != q {
				t.Fatalf("stride %d: stateNum(%d) = %d, want %d", stride, st|1, got, q)
			}
		}
	}
}
