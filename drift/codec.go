package drift

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Snapshots travel between replicas and to the deploy store. Both encodings
// are strict: a snapshot from another bucket layout or feature set is an
// error, never silently mis-merged.

// ErrFormat reports a malformed or incompatible encoded Snapshot.
var ErrFormat = errors.New("drift: bad snapshot encoding")

const (
	binMagic   = "LGDS"
	binVersion = 1
	noTime     = math.MinInt64
)

// MarshalBinary encodes s compactly: varints, histograms trimmed to their
// non-empty range.
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, binMagic...)
	b = append(b, binVersion, subBits)
	b = binary.AppendUvarint(b, NumBuckets)
	b = binary.AppendUvarint(b, uint64(NumNumeric))
	b = binary.AppendUvarint(b, uint64(numCatCounters))
	b = binary.AppendVarint(b, unixOrNone(s.Start))
	b = binary.AppendVarint(b, unixOrNone(s.End))
	for f := range s.Num {
		lo, hi := trim(&s.Num[f])
		b = binary.AppendUvarint(b, uint64(lo))
		b = binary.AppendUvarint(b, uint64(hi-lo))
		for _, c := range s.Num[f][lo:hi] {
			b = binary.AppendUvarint(b, c)
		}
	}
	for _, c := range s.Cat {
		b = binary.AppendUvarint(b, c)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote, replacing s.
func (s *Snapshot) UnmarshalBinary(data []byte) error {
	s.Reset()
	if len(data) < len(binMagic)+2 || string(data[:len(binMagic)]) != binMagic {
		return fmt.Errorf("%w: magic", ErrFormat)
	}
	if data[4] != binVersion || data[5] != subBits {
		return fmt.Errorf("%w: version %d layout %d", ErrFormat, data[4], data[5])
	}
	d := decoder{b: data[6:]}
	if d.uvarint() != NumBuckets || d.uvarint() != uint64(NumNumeric) || d.uvarint() != uint64(numCatCounters) {
		return fmt.Errorf("%w: layout", ErrFormat)
	}
	s.Start, s.End = timeOrZero(d.varint()), timeOrZero(d.varint())
	for f := range s.Num {
		lo, n := d.uvarint(), d.uvarint()
		if d.err != nil || lo > NumBuckets || n > NumBuckets-lo {
			return fmt.Errorf("%w: histogram range", ErrFormat)
		}
		for i := lo; i < lo+n; i++ {
			s.Num[f][i] = d.uvarint()
		}
	}
	for i := range s.Cat {
		s.Cat[i] = d.uvarint()
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrFormat, len(d.b))
	}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: truncated", ErrFormat)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: truncated", ErrFormat)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func unixOrNone(t time.Time) int64 {
	if t.IsZero() {
		return noTime
	}
	return t.UnixNano()
}

func timeOrZero(ns int64) time.Time {
	if ns == noTime {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// trim returns the non-empty bucket range of h ([0,0) when empty).
func trim(h *Histogram) (lo, hi int) {
	lo, hi = span(h, h)
	if lo >= hi {
		return 0, 0
	}
	return lo, hi
}

// snapshotJSON is the JSON shape: readable names, histograms trimmed.
type snapshotJSON struct {
	V           int                          `json:"v"`
	Layout      string                       `json:"layout"`
	Start       *time.Time                   `json:"start,omitempty"`
	End         *time.Time                   `json:"end,omitempty"`
	Numeric     map[string]histJSON          `json:"numeric"`
	Categorical map[string]map[string]uint64 `json:"categorical"`
	// NotForwarded is Snapshot.NotForwarded, which belongs to no feature.
	NotForwarded uint64 `json:"not_forwarded,omitempty"`
}

type histJSON struct {
	Offset int      `json:"offset"`
	Counts []uint64 `json:"counts"`
}

var layoutName = fmt.Sprintf("loglinear-%d-%d", subBits, NumBuckets)

// MarshalJSON encodes s with feature and category names; empty features and
// categories are omitted.
func (s *Snapshot) MarshalJSON() ([]byte, error) {
	j := snapshotJSON{V: binVersion, Layout: layoutName,
		Numeric: map[string]histJSON{}, Categorical: map[string]map[string]uint64{}}
	if !s.Start.IsZero() {
		j.Start = &s.Start
	}
	if !s.End.IsZero() {
		j.End = &s.End
	}
	for f := range s.Num {
		if lo, hi := trim(&s.Num[f]); hi > lo {
			j.Numeric[Feature(f).String()] = histJSON{lo, s.Num[f][lo:hi]}
		}
	}
	for f := Feature(NumNumeric); int(f) < NumFeatures; f++ {
		m := map[string]uint64{}
		labels := f.Categories()
		for i, c := range s.Categorical(f) {
			if c != 0 {
				m[labels[i]] = c
			}
		}
		if len(m) > 0 {
			j.Categorical[f.String()] = m
		}
	}
	j.NotForwarded = s.NotForwarded()
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON wrote, replacing s. Unknown fields,
// features or categories are errors.
func (s *Snapshot) UnmarshalJSON(data []byte) error {
	s.Reset()
	var j snapshotJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if j.V != binVersion || j.Layout != layoutName {
		return fmt.Errorf("%w: version %d layout %q", ErrFormat, j.V, j.Layout)
	}
	if j.Start != nil {
		s.Start = j.Start.UTC()
	}
	if j.End != nil {
		s.End = j.End.UTC()
	}
	for name, h := range j.Numeric {
		f, ok := FeatureByName(name)
		if !ok || !f.Numeric() {
			return fmt.Errorf("%w: unknown numeric feature %q", ErrFormat, name)
		}
		if h.Offset < 0 || h.Offset > NumBuckets || len(h.Counts) > NumBuckets-h.Offset {
			return fmt.Errorf("%w: %s: histogram range", ErrFormat, name)
		}
		copy(s.Num[f][h.Offset:], h.Counts)
	}
	for name, m := range j.Categorical {
		f, ok := FeatureByName(name)
		if !ok || f.Numeric() {
			return fmt.Errorf("%w: unknown categorical feature %q", ErrFormat, name)
		}
		counts, labels := s.Categorical(f), f.Categories()
		for label, c := range m {
			i := indexOf(labels, label)
			if i < 0 {
				return fmt.Errorf("%w: %s: unknown category %q", ErrFormat, name, label)
			}
			counts[i] = c
		}
	}
	s.Cat[catNotForwarded] = j.NotForwarded
	return nil
}

func indexOf(l []string, s string) int {
	for i, v := range l {
		if v == s {
			return i
		}
	}
	return -1
}
