package fakellm

import "strconv"

// Logprobs in vLLM's shapes: ChatCompletionLogProbs (chat_completion/protocol.py) and
// CompletionLogProbs (completion/protocol.py), in a buffered choice and in each chunk of a
// stream (the token of the chunk). fakellm's text is drawn, not sampled, so the numbers are
// made up: deterministic per word, with the drawn word the most likely and alternatives
// after it. The EOS token of a natural stop, which vLLM also scores, gets no entry, so a
// stream's finish chunk carries empty lists.

// tokenLogprob is the logprob of the alternative at rank (0: the drawn word k itself).
func tokenLogprob(k, rank int) float64 { return -float64(k%8+1)/16 - 0.75*float64(rank) }

// alternative returns the word at rank among the alternatives to the drawn word k.
func alternative(k, rank int) int { return (k + rank) % len(vocab) }

// appendToken appends word k, with its leading space, as a JSON string.
func appendToken(dst []byte, k int, space bool) []byte {
	dst = append(dst, '"')
	if space {
		dst = append(dst, ' ')
	}
	dst = append(dst, vocab[k]...)
	return append(dst, '"')
}

// appendChatLogprob appends a ChatCompletionLogProb: token, logprob and the token's UTF-8 bytes.
func appendChatLogprob(dst []byte, k int, space bool, logprob float64) []byte {
	dst = append(dst, `{"token":`...)
	dst = appendToken(dst, k, space)
	dst = append(dst, `,"logprob":`...)
	dst = strconv.AppendFloat(dst, logprob, 'f', -1, 64)
	dst = append(dst, `,"bytes":[`...)
	if space {
		dst = append(dst, "32,"...)
	}
	for i := 0; i < len(vocab[k]); i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(vocab[k][i]), 10)
	}
	return append(dst, ']')
}

// appendChatLogprobs appends a chat choice's logprobs for the next n tokens of w: null
// unless the request asked for logprobs, each token with top_logprobs alternatives.
func (p *reply) appendChatLogprobs(dst []byte, w words, n int) []byte {
	if p.logprobs < 0 {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"content":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		k, space := w.nextToken()
		dst = appendChatLogprob(dst, k, space, tokenLogprob(k, 0))
		dst = append(dst, `,"top_logprobs":[`...)
		for r := 0; r < p.logprobs; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = appendChatLogprob(dst, alternative(k, r), space, tokenLogprob(k, r))
			dst = append(dst, '}')
		}
		dst = append(dst, "]}"...)
	}
	return append(dst, "]}"...)
}

// appendCompletionLogprobs appends a completion choice's logprobs for the next n tokens of
// w, the first at offset in the choice's text: null unless the request asked for logprobs.
// Each token's top_logprobs holds logprobs alternatives, at least the drawn word, as vLLM
// always scores the sampled token.
func (p *reply) appendCompletionLogprobs(dst []byte, w words, n, offset int) []byte {
	if p.logprobs < 0 {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"text_offset":[`...)
	ws := w
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(offset), 10)
		k, space := ws.nextToken()
		offset += tokenLen(k, space)
	}
	dst = append(dst, `],"token_logprobs":[`...)
	ws = w
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		k, _ := ws.nextToken()
		dst = strconv.AppendFloat(dst, tokenLogprob(k, 0), 'f', -1, 64)
	}
	dst = append(dst, `],"tokens":[`...)
	ws = w
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		k, space := ws.nextToken()
		dst = appendToken(dst, k, space)
	}
	dst = append(dst, `],"top_logprobs":[`...)
	ws = w
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		k, space := ws.nextToken()
		dst = append(dst, '{')
		for r := 0; r < max(p.logprobs, 1); r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = appendToken(dst, alternative(k, r), space)
			dst = append(dst, ':')
			dst = strconv.AppendFloat(dst, tokenLogprob(k, r), 'f', -1, 64)
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// tokenLen is the length of word k in the text, with its leading space.
func tokenLen(k int, space bool) int {
	if space {
		return len(vocab[k]) + 1
	}
	return len(vocab[k])
}

// echoed is the length of the prompt that choice c's text starts with (echo): vLLM's
// text_offset counts from the start of the text.
func (p *reply) echoed(c int) int {
	if !p.echo {
		return 0
	}
	return len(p.prompts[c/p.perN].text)
}

// streamOffset is the offset, in the text of choice p.idx, of the token that tok, the
// choice's generator, draws next: what the stream sent of that choice before it.
func (p *reply) streamOffset(tok words) int {
	if p.logprobs < 0 {
		return 0
	}
	off, w := p.echoed(p.idx), p.words(p.idx)
	for w.i < tok.i {
		off += tokenLen(w.nextToken())
	}
	return off
}
