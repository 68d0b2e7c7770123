package gateway

import (
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/gateway/jsonscan"
)

// usageTokens reads usage.prompt_tokens and usage.completion_tokens from a response body or a
// stream chunk, parsing only the usage object.
func usageTokens(p *fastjson.Parser, body []byte) (in, out int) {
	s, e := jsonscan.Find(body, "usage")
	if s < 0 {
		return 0, 0
	}
	return usageFrom(p, body[s:e])
}

// usageFrom reads the token counts of a usage object (the value span jsonscan found).
func usageFrom(p *fastjson.Parser, usage []byte) (in, out int) {
	if len(usage) == 0 || usage[0] != '{' {
		return 0, 0
	}
	v, err := p.ParseBytes(usage)
	if err != nil {
		return 0, 0
	}
	return v.GetInt("prompt_tokens"), v.GetInt("completion_tokens")
}
