package gateway

import "github.com/llmgate/llmgate/gateway/jsonscan"

// usageFrom reads the token counts of a usage object (the value span jsonscan found). It
// scans rather than parses: this runs on every answer, and a parse of even this small object
// cost more than the scan of the whole answer that found it.
func usageFrom(usage []byte) (in, out int) {
	if len(usage) == 0 || usage[0] != '{' {
		return 0, 0
	}
	ps, pe, cs, ce := jsonscan.FindPair(usage, "prompt_tokens", "completion_tokens")
	if ps >= 0 {
		in = tokenCount(usage[ps:pe])
	}
	if cs >= 0 {
		out = tokenCount(usage[cs:ce])
	}
	return in, out
}

// tokenCount reads a JSON number that is a whole count; anything else (a string, a fraction,
// a negative or an absurd value) counts as 0, as fastjson's GetInt did for non-integers.
func tokenCount(v []byte) int {
	if len(v) == 0 || len(v) > 12 {
		return 0
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
