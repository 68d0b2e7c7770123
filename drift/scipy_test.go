package drift

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// reference holds scipy's answers, made by testdata/gen_reference.py.
type reference struct {
	Scipy string `json:"scipy"`
	KS    []struct {
		A, B []float64
		Mode string
		Ints bool
		D, P float64
	} `json:"ks"`
	KSTwo []struct {
		N  int64
		X  float64
		SF float64
	} `json:"kstwo"`
	Chi2 []struct {
		Ref, Cur []uint64
		Yates    bool
		Stat, P  float64
		Dof      int
	} `json:"chi2"`
	MannWhitney []struct {
		A, B []int64
		U, P float64
	} `json:"mannwhitney"`
	JensenShannon []struct {
		Ref, Cur []uint64
		D        float64
	} `json:"jensenshannon"`
	Wasserstein []struct {
		A, B []int64
		W    float64
	} `json:"wasserstein"`
}

func loadReference(t *testing.T) *reference {
	t.Helper()
	b, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

const tol = 1e-6

func near(got, want float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= tol
}

func histOf(v []int64) *Histogram {
	h := new(Histogram)
	for _, x := range v {
		h.Add(x, 1)
	}
	return h
}

func TestKSMatchesScipy(t *testing.T) {
	ref := loadReference(t)
	for i, c := range ref.KS {
		mode := KSExact
		if c.Mode == "asymp" {
			mode = KSAsymp
		}
		d, p := KSSamples(c.A, c.B, mode)
		if !near(d, c.D) || !near(p, c.P) {
			t.Errorf("case %d (n=%d,%d %s): got D=%.9g p=%.9g, scipy D=%.9g p=%.9g",
				i, len(c.A), len(c.B), c.Mode, d, p, c.D, c.P)
		}
		if !c.Ints {
			continue
		}
		// Small integers are exact in the histogram: the sketch must agree too.
		a, b := make([]int64, len(c.A)), make([]int64, len(c.B))
		for j, v := range c.A {
			a[j] = int64(v)
		}
		for j, v := range c.B {
			b[j] = int64(v)
		}
		d, p = KS(histOf(a), histOf(b), mode)
		if !near(d, c.D) || !near(p, c.P) {
			t.Errorf("case %d histogram: got D=%.9g p=%.9g, scipy D=%.9g p=%.9g", i, d, p, c.D, c.P)
		}
	}
}

func TestKSTwoSFMatchesScipy(t *testing.T) {
	for _, c := range loadReference(t).KSTwo {
		if got := kolmogornSF(c.N, c.X); !near(got, c.SF) {
			t.Errorf("kstwo.sf(%g, %d): got %.12g, scipy %.12g", c.X, c.N, got, c.SF)
		}
	}
}

func TestChiSquareMatchesScipy(t *testing.T) {
	for i, c := range loadReference(t).Chi2 {
		stat, p, dof := ChiSquare(c.Ref, c.Cur, c.Yates)
		if !near(stat, c.Stat) || !near(p, c.P) || dof != c.Dof {
			t.Errorf("case %d yates=%v: got %.9g p=%.9g dof=%d, scipy %.9g p=%.9g dof=%d",
				i, c.Yates, stat, p, dof, c.Stat, c.P, c.Dof)
		}
	}
}

func TestMannWhitneyMatchesScipy(t *testing.T) {
	for i, c := range loadReference(t).MannWhitney {
		r := MannWhitney(histOf(c.A), histOf(c.B), 0.05, 1)
		if !near(r.Statistic, c.U) || !near(r.PValue, c.P) {
			t.Errorf("case %d: got U=%.9g p=%.9g, scipy U=%.9g p=%.9g", i, r.Statistic, r.PValue, c.U, c.P)
		}
	}
}

func TestDistancesMatchScipy(t *testing.T) {
	ref := loadReference(t)
	for i, c := range ref.JensenShannon {
		if got := JensenShannon(c.Ref, c.Cur); !near(got, c.D) {
			t.Errorf("js case %d: got %.9g, scipy %.9g", i, got, c.D)
		}
	}
	for i, c := range ref.Wasserstein {
		if got := Wasserstein(histOf(c.A), histOf(c.B)); !near(got, c.W) {
			t.Errorf("wasserstein case %d: got %.9g, scipy %.9g", i, got, c.W)
		}
	}
}
