package drift

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func filledSnapshot(t testing.TB) *Snapshot {
	clk := newFakeClock()
	r := NewRecorder(Options{Now: clk.Now})
	for _, s := range benchSamples(500) {
		r.Observe(&s)
	}
	s := new(Snapshot)
	r.Live(s)
	return s
}

func TestSnapshotRoundTrip(t *testing.T) {
	want := filledSnapshot(t)
	bin, _ := want.MarshalBinary()
	js, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	for name, dec := range map[string]func(*Snapshot) error{
		"binary": func(s *Snapshot) error { return s.UnmarshalBinary(bin) },
		"json":   func(s *Snapshot) error { return json.Unmarshal(js, s) },
	} {
		var got Snapshot
		if err := dec(&got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Num != want.Num || got.Cat != want.Cat || !got.Start.Equal(want.Start) || !got.End.Equal(want.End) {
			t.Errorf("%s round trip differs", name)
		}
	}
	t.Logf("encoded 500 requests: %d bytes binary, %d bytes JSON", len(bin), len(js))
	var empty Snapshot
	b, _ := empty.MarshalBinary()
	var back Snapshot
	if err := back.UnmarshalBinary(b); err != nil || !back.Start.IsZero() || back.Count() != 0 {
		t.Errorf("empty round trip: %v", err)
	}
}

func TestSnapshotDecodeErrors(t *testing.T) {
	good, _ := filledSnapshot(t).MarshalBinary()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic", []byte("XXXX\x01\x05")},
		{"layout", append([]byte("LGDS\x01\x06"), good[6:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(bytes.Clone(good), 0)},
	} {
		var s Snapshot
		if err := s.UnmarshalBinary(tc.data); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
	for _, js := range []string{
		`{"v":1,"layout":"loglinear-5-896","numeric":{"nope":{"offset":0,"counts":[1]}}}`,
		`{"v":1,"layout":"loglinear-5-896","numeric":{"prompt_tokens":{"offset":895,"counts":[1,2]}}}`,
		`{"v":1,"layout":"loglinear-5-896","categorical":{"script":{"klingon":1}}}`,
		`{"v":1,"layout":"loglinear-4-100"}`,
		`{"v":1,"layout":"loglinear-5-896","extra":1}`,
	} {
		var s Snapshot
		if err := json.Unmarshal([]byte(js), &s); err == nil {
			t.Errorf("accepted %s", js)
		}
	}
}

func FuzzSnapshotBinary(f *testing.F) {
	good, _ := filledSnapshot(f).MarshalBinary()
	f.Add(good)
	f.Add([]byte("LGDS\x01\x05"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Snapshot
		if s.UnmarshalBinary(data) != nil {
			return
		}
		again, _ := s.MarshalBinary()
		var s2 Snapshot
		if err := s2.UnmarshalBinary(again); err != nil || s2.Num != s.Num || s2.Cat != s.Cat {
			t.Fatalf("re-decode: %v", err)
		}
		_ = Evaluate(&s, &s2, nil) // decoded snapshots must evaluate without panics
	})
}

func FuzzSnapshotJSON(f *testing.F) {
	good, _ := json.Marshal(filledSnapshot(f))
	f.Add(good)
	f.Add([]byte(`{"v":1,"layout":"loglinear-5-896","start":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Snapshot
		if json.Unmarshal(data, &s) != nil {
			return
		}
		again, err := json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		var s2 Snapshot
		if err := json.Unmarshal(again, &s2); err != nil || s2.Num != s.Num || s2.Cat != s.Cat {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func TestMergeWidensBounds(t *testing.T) {
	a := Snapshot{Start: time.Unix(100, 0), End: time.Unix(200, 0)}
	b := Snapshot{Start: time.Unix(50, 0), End: time.Unix(150, 0)}
	a.Merge(&b)
	if !a.Start.Equal(time.Unix(50, 0)) || !a.End.Equal(time.Unix(200, 0)) {
		t.Errorf("bounds %v..%v", a.Start, a.End)
	}
}
