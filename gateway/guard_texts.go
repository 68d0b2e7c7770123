package gateway

// The texts the guard reads: every text a prompt carries, and the texts of an answer.

import "github.com/valyala/fastjson"

// onlyText reports whether v, a completions prompt or an embeddings input, is absent, a
// string or an array of strings: all text that forEachPromptText gives the guard.
func onlyText(v *fastjson.Value) bool {
	if v == nil || v.Type() == fastjson.TypeString {
		return true
	}
	arr, err := v.Array()
	if err != nil {
		return false
	}
	for _, it := range arr {
		if it.Type() != fastjson.TypeString {
			return false
		}
	}
	return true
}

// promptTextKind says where a text of a prompt comes from.
type promptTextKind uint8

const (
	textInput         promptTextKind = iota // user, assistant and tool messages; prompts; inputs
	textInstructions                        // system and developer messages: the app's own
	textToolArguments                       // the arguments of an earlier assistant tool call
)

// partTextKeys are the members of a content part whose string vLLM puts in the prompt as text:
// a text part's (input_text and output_text ones too), a refusal part's and a thinking part's.
// Each is read whatever the part's type says, so that no part carries one past the guard.
var partTextKeys = [...]string{"text", "refusal", "thinking"}

// forEachPromptText calls fn with every text of the prompt, the value holding it and its kind:
// chat message contents (strings, or the texts of an array's parts: see partTextKeys), the
// reasoning and the arguments of the tool calls in assistant messages, the string members of
// vLLM's documents and chat_template_kwargs, completion prompts (and their suffix) and embedding inputs (a string or an
// array of strings).
func forEachPromptText(op operation, root *fastjson.Value, fn func(v *fastjson.Value, text []byte, kind promptTextKind)) {
	strings := func(v *fastjson.Value) {
		if v == nil {
			return
		}
		switch v.Type() {
		case fastjson.TypeString:
			fn(v, v.GetStringBytes(), textInput)
		case fastjson.TypeArray:
			arr, _ := v.Array()
			for _, it := range arr {
				if it.Type() == fastjson.TypeString {
					fn(it, it.GetStringBytes(), textInput)
				}
			}
		}
	}
	switch op {
	case opChat:
		// vLLM hands the documents of a request (RAG) to the chat template, which writes them
		// into the prompt: retrieved text, where an injection hides as well as in a message.
		for _, d := range root.GetArray("documents") {
			if o, err := d.Object(); err == nil {
				o.Visit(func(_ []byte, v *fastjson.Value) {
					if v.Type() == fastjson.TypeString {
						fn(v, v.GetStringBytes(), textInput)
					}
				})
			}
		}
		// vLLM hands chat_template_kwargs to the chat template as variables, which it may write
		// into the prompt as it does the documents.
		if o := root.GetObject("chat_template_kwargs"); o != nil {
			o.Visit(func(_ []byte, v *fastjson.Value) {
				if v.Type() == fastjson.TypeString {
					fn(v, v.GetStringBytes(), textInput)
				}
			})
		}
		msgs := root.GetArray("messages") // nil when absent or not an array
		for _, m := range msgs {
			kind := textInput
			if role := m.GetStringBytes("role"); string(role) == "system" || string(role) == "developer" {
				kind = textInstructions
			}
			for _, tc := range m.GetArray("tool_calls") {
				if a := tc.Get("function", "arguments"); a != nil && a.Type() == fastjson.TypeString {
					fn(a, a.GetStringBytes(), textToolArguments)
				}
			}
			// vLLM gives an assistant's reasoning to the chat template (interleaved thinking).
			for _, key := range reasoningKeys {
				if t := m.Get(key); t != nil && t.Type() == fastjson.TypeString {
					fn(t, t.GetStringBytes(), kind)
				}
			}
			c := m.Get("content")
			if c == nil {
				continue
			}
			if c.Type() == fastjson.TypeString {
				fn(c, c.GetStringBytes(), kind)
				continue
			}
			parts, _ := c.Array()
			for _, p := range parts {
				for _, key := range partTextKeys {
					if t := p.Get(key); t != nil && t.Type() == fastjson.TypeString {
						fn(t, t.GetStringBytes(), kind)
					}
				}
			}
		}
	case opCompletion:
		strings(root.Get("prompt"))
		strings(root.Get("suffix")) // the model reads it too: it writes what goes before it
	case opEmbeddings:
		strings(root.Get("input"))
	}
}

// answerTexts appends the string values of an answer's choice c that the completion guard
// covers: the content of its message msg (or the text of a completion) first, then the
// reasoning vLLM's parsers add, then its refusal, then the arguments of its tool calls, which start at dst
// index args.
func answerTexts(dst []*fastjson.Value, msg, c *fastjson.Value) (_ []*fastjson.Value, args int) {
	add := func(v *fastjson.Value) {
		if v != nil && v.Type() == fastjson.TypeString {
			dst = append(dst, v)
		}
	}
	if msg == nil {
		add(c.Get("text"))
		return dst, len(dst)
	}
	add(msg.Get("content"))
	// A content of parts (Mistral's API answers so, a thinking part's own text parts nested
	// in it): each text is guarded.
	var addParts func(parts []*fastjson.Value)
	addParts = func(parts []*fastjson.Value) {
		for _, p := range parts {
			for _, key := range partTextKeys {
				add(p.Get(key))
				addParts(p.GetArray(key))
			}
		}
	}
	addParts(msg.GetArray("content"))
	for _, key := range reasoningKeys {
		add(msg.Get(key))
	}
	// A refusal is the model's text as content is: it can leak what content can.
	add(msg.Get("refusal"))
	args = len(dst)
	for _, tc := range msg.GetArray("tool_calls") {
		add(tc.Get("function", "arguments"))
	}
	add(msg.Get("function_call", "arguments"))
	return dst, args
}

// otherAnswerTexts are the members of an answer's message besides content that answerTexts
// guards.
var otherAnswerTexts = [...]string{"reasoning_content", "reasoning", "refusal", "tool_calls", "function_call"}
