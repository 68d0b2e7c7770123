package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
)

// ErrBadVerdict is returned when a classifier's answer cannot be read.
var ErrBadVerdict = errors.New("guard: unreadable classifier verdict")

// Verdict is an external classifier's judgement of one text, in this package's category codes
// ("S1".."S14" and the injection categories), so classifier hits and rule hits count together.
type Verdict struct {
	Unsafe     bool
	Categories []string // sorted, without duplicates; may be empty when unsafe
}

// moderationCategories maps OpenAI moderation categories onto Llama Guard 3 hazard codes where
// one fits; the others keep a fixed name of their own. Unknown names become "other" so a
// classifier cannot grow the set of metric labels.
var moderationCategories = map[string]string{
	"violence":               "S1",
	"violence/graphic":       "S1",
	"illicit":                "S2",
	"illicit/violent":        "S1",
	"sexual/minors":          "S4",
	"hate":                   "S10",
	"hate/threatening":       "S10",
	"self-harm":              "S11",
	"self-harm/intent":       "S11",
	"self-harm/instructions": "S11",
	"sexual":                 "S12",
	"harassment":             "harassment",
	"harassment/threatening": "harassment",
}

// ParseModeration reads an OpenAI /v1/moderations response: unsafe when any result is flagged,
// with the categories set to true in flagged results.
func ParseModeration(body []byte) (Verdict, error) {
	var resp struct {
		Results []struct {
			Flagged    *bool           `json:"flagged"`
			Categories map[string]bool `json:"categories"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Results) == 0 {
		return Verdict{}, ErrBadVerdict
	}
	var v Verdict
	for _, r := range resp.Results {
		if r.Flagged == nil {
			return Verdict{}, ErrBadVerdict
		}
		if !*r.Flagged {
			continue
		}
		v.Unsafe = true
		for name, set := range r.Categories {
			if !set {
				continue
			}
			code, ok := moderationCategories[name]
			if !ok {
				code = "other"
			}
			v.Categories = append(v.Categories, code)
		}
	}
	v.Categories = sortUnique(v.Categories)
	return v, nil
}

// ParseLlamaGuard reads a Llama Guard completion: "safe", or "unsafe" followed by a line of
// comma-separated hazard codes such as "S1,S10". Codes outside S1..S14 become "other".
func ParseLlamaGuard(text []byte) (Verdict, error) {
	text = bytes.TrimSpace(text)
	first, rest, _ := bytes.Cut(text, []byte("\n"))
	switch string(bytes.ToLower(bytes.TrimSpace(first))) {
	case "safe":
		return Verdict{}, nil
	case "unsafe":
	default:
		return Verdict{}, ErrBadVerdict
	}
	v := Verdict{Unsafe: true}
	for code := range bytes.SplitSeq(bytes.TrimSpace(rest), []byte(",")) {
		code = bytes.ToUpper(bytes.TrimSpace(code))
		if len(code) == 0 {
			continue
		}
		name := "other"
		for _, c := range hazardCodes {
			if string(code) == c {
				name = c
				break
			}
		}
		v.Categories = append(v.Categories, name)
	}
	v.Categories = sortUnique(v.Categories)
	return v, nil
}

func sortUnique(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}
