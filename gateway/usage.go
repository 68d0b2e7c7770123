package gateway

import (
	"bytes"

	"github.com/llmgate/llmgate/gateway/jsonscan"
)

// usageFrom reads the token counts of a usage object (the value span jsonscan found). It
// scans rather than parses: this runs on every answer (and on every chunk of an Ollama stream),
// and a parse of even this small object cost more than the scan of the whole answer that found
// it.
func usageFrom(usage []byte) (in, out int) {
	if p, c, ok := plainUsage(usage); ok {
		return tokenCount(p), tokenCount(c)
	}
	return scanUsage(usage)
}

// scanUsage is usageFrom for any usage object.
func scanUsage(usage []byte) (in, out int) {
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

// plainUsage returns the prompt_tokens and completion_tokens values (nil when absent) of a usage
// object written as vLLM and Ollama write it: compact, each member a count of the three or a
// null *_tokens_details, in any order. ok false for anything else, which scanUsage reads: one
// look at the bytes instead of a scan that matches every key against the keys it wants.
func plainUsage(u []byte) (prompt, completion []byte, ok bool) {
	if len(u) < 2 || u[0] != '{' {
		return nil, nil, false
	}
	for i := 1; ; {
		if i >= len(u) || u[i] != '"' {
			return nil, nil, false
		}
		k := bytes.IndexByte(u[i+1:], '"')
		if k < 0 {
			return nil, nil, false
		}
		key := u[i+1 : i+1+k]
		i += k + 2
		if i >= len(u) || u[i] != ':' {
			return nil, nil, false
		}
		i++
		j := i
		for j < len(u) && u[j] >= '0' && u[j] <= '9' {
			j++
		}
		null := j == i // the only other value a member may have
		if null {
			if !bytes.HasPrefix(u[i:], []byte("null")) {
				return nil, nil, false
			}
			j += len("null")
		}
		switch string(key) {
		case "prompt_tokens", "completion_tokens", "total_tokens":
			if null { // scanUsage reads it as 0; it is no plain count
				return nil, nil, false
			}
			if key[0] == 'p' {
				prompt = u[i:j]
			} else if key[0] == 'c' {
				completion = u[i:j]
			}
		case "prompt_tokens_details", "completion_tokens_details":
			if !null {
				return nil, nil, false
			}
		default:
			return nil, nil, false
		}
		if j == len(u)-1 && u[j] == '}' {
			return prompt, completion, true
		}
		if j >= len(u) || u[j] != ',' {
			return nil, nil, false
		}
		i = j + 1
	}
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
