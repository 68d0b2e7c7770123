package guard

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseModeration(t *testing.T) {
	tests := []struct {
		name, body string
		want       Verdict
		wantErr    bool
	}{
		{"safe", `{"id":"m","model":"omni-moderation-latest","results":[{"flagged":false,"categories":{"violence":false}}]}`, Verdict{}, false},
		{"flagged mapped", `{"results":[{"flagged":true,"categories":{"violence":true,"hate":true,"sexual/minors":true,"sexual":false}}]}`,
			Verdict{Unsafe: true, Categories: []string{"S1", "S10", "S4"}}, false},
		{"duplicates merged", `{"results":[{"flagged":true,"categories":{"self-harm":true,"self-harm/intent":true}},{"flagged":true,"categories":{"self-harm/instructions":true}}]}`,
			Verdict{Unsafe: true, Categories: []string{"S11"}}, false},
		{"unknown category bounded", `{"results":[{"flagged":true,"categories":{"weird/new":true,"harassment":true}}]}`,
			Verdict{Unsafe: true, Categories: []string{"harassment", "other"}}, false},
		{"categories of unflagged results ignored", `{"results":[{"flagged":false,"categories":{"violence":true}}]}`, Verdict{}, false},
		{"no results", `{"results":[]}`, Verdict{}, true},
		{"no flagged field", `{"results":[{"categories":{}}]}`, Verdict{}, true},
		{"an error envelope", `{"error":{"message":"rate limited"}}`, Verdict{}, true},
		{"not json", `<html>`, Verdict{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseModeration([]byte(tt.body))
			if tt.wantErr != (err != nil) || (err != nil && !errors.Is(err, ErrBadVerdict)) {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !verdictEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseLlamaGuard(t *testing.T) {
	tests := []struct {
		name, text string
		want       Verdict
		wantErr    bool
	}{
		{"safe", "safe", Verdict{}, false},
		{"safe with spaces", "\n\nsafe\n", Verdict{}, false},
		{"unsafe one code", "unsafe\nS9", Verdict{Unsafe: true, Categories: []string{"S9"}}, false},
		{"unsafe several codes", "unsafe\nS10, s1,S10", Verdict{Unsafe: true, Categories: []string{"S1", "S10"}}, false},
		{"unsafe without codes", "unsafe", Verdict{Unsafe: true}, false},
		{"unknown code bounded", "unsafe\nS99", Verdict{Unsafe: true, Categories: []string{"other"}}, false},
		{"chatter", "I think this is fine", Verdict{}, true},
		{"empty", "", Verdict{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLlamaGuard([]byte(tt.text))
			if tt.wantErr != (err != nil) {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !verdictEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func verdictEqual(a, b Verdict) bool {
	return a.Unsafe == b.Unsafe && (len(a.Categories) == 0 && len(b.Categories) == 0 || reflect.DeepEqual(a.Categories, b.Categories))
}

// Classifier answers come from another service: whatever they hold, parsing never panics and
// categories stay within the bounded label set.
func FuzzParseVerdict(f *testing.F) {
	f.Add([]byte(`{"results":[{"flagged":true,"categories":{"violence":true}}]}`))
	f.Add([]byte("unsafe\nS1,S2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		known := map[string]bool{"other": true, "harassment": true}
		for _, c := range hazardCodes {
			known[c] = true
		}
		for _, parse := range []func([]byte) (Verdict, error){ParseModeration, ParseLlamaGuard} {
			v, err := parse(b)
			if err != nil && (v.Unsafe || len(v.Categories) > 0) {
				t.Fatalf("error with a verdict: %+v", v)
			}
			for _, c := range v.Categories {
				if !known[c] {
					t.Fatalf("category %q outside the label set", c)
				}
			}
		}
	})
}
