package gateway

import (
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/gateway/jsonscan"
)

// usageTokens reads usage.prompt_tokens and usage.completion_tokens from a response body or a
// stream chunk, parsing only the usage object.
func usageTokens(p *fastjson.Parser, body []byte) (in, out int) {
	s, e := jsonscan.Find(body, "usage")
	if s < 0 || body[s] != '{' {
		return 0, 0
	}
	v, err := p.ParseBytes(body[s:e])
	if err != nil {
		return 0, 0
	}
	return v.GetInt("prompt_tokens"), v.GetInt("completion_tokens")
}
