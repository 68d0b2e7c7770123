package gateway

import "github.com/valyala/fastjson"

// What the stream guard reads of a chunk's shape: a choice's index, the roles it opens, and
// whether what is left of a chunk carries any text at all. Split from guard_stream.go.

// choiceIndex returns the index a stream chunk's choice gives itself, else its position.
func choiceIndex(ch *fastjson.Value, pos int) int {
	if iv := ch.Get("index"); iv != nil && iv.Type() == fastjson.TypeNumber {
		return iv.GetInt()
	}
	return pos
}

// noteRoles records the choices whose delta role goes out with a chunk being sent.
func noteRoles(r *request, choices []*fastjson.Value) {
	for pos, ch := range choices {
		if ch.Get("delta", "role") == nil {
			continue
		}
		if c := r.choice(choiceIndex(ch, pos)); c != nil {
			c.roleSent = true
		}
	}
}

// onlyEmptyText reports whether a guarded chunk carries nothing for a client: no usage, and
// choices whose members other than their index are an empty content or text, a role the client
// already has, or null.
func onlyEmptyText(r *request, root *fastjson.Value) bool {
	if u := root.Get("usage"); u != nil && u.Type() != fastjson.TypeNull {
		return false
	}
	empty := true
	for pos, ch := range root.GetArray("choices") {
		obj, err := ch.Object()
		if err != nil {
			return false
		}
		c := r.choice(choiceIndex(ch, pos))
		roleSent := c != nil && c.roleSent
		obj.Visit(func(key []byte, v *fastjson.Value) {
			switch string(key) {
			case "index":
			case "text":
				empty = empty && isEmptyString(v)
			case "delta":
				d, err := v.Object()
				if err != nil {
					empty = false
					return
				}
				d.Visit(func(key []byte, v *fastjson.Value) {
					switch {
					case v.Type() == fastjson.TypeNull:
					case string(key) == "content" || string(key) == "refusal" || isReasoningKey(key):
						empty = empty && isEmptyString(v)
					case string(key) == "role":
						empty = empty && roleSent
					case string(key) == "tool_calls":
						empty = empty && onlyEmptyArguments(v)
					case string(key) == "function_call":
						empty = empty && emptyFunction(v)
					default:
						empty = false
					}
				})
			default: // finish_reason, logprobs, stop_reason, ...: only when null
				empty = empty && v.Type() == fastjson.TypeNull
			}
		})
	}
	return empty
}

// isReasoningKey reports whether key is one of reasoningKeys.
func isReasoningKey(key []byte) bool {
	for _, k := range reasoningKeys {
		if string(key) == k {
			return true
		}
	}
	return false
}

// onlyEmptyArguments reports whether the tool calls of a delta carry nothing but their index
// and empty arguments: a call's id, type or name is news to the client, held-back arguments
// are not, and neither are members that are null (some servers send "id":null, "name":null in
// every delta after the first).
func onlyEmptyArguments(calls *fastjson.Value) bool {
	arr, err := calls.Array()
	if err != nil || len(arr) == 0 {
		return false
	}
	for _, tc := range arr {
		obj, err := tc.Object()
		if err != nil {
			return false
		}
		empty := true
		obj.Visit(func(key []byte, v *fastjson.Value) {
			switch string(key) {
			case "index":
			case "function":
				empty = empty && emptyFunction(v)
			default:
				empty = empty && v.Type() == fastjson.TypeNull
			}
		})
		if !empty {
			return false
		}
	}
	return true
}

// emptyFunction reports whether a delta's function object (a tool call's, or a legacy
// function_call) carries nothing but empty arguments and null members.
func emptyFunction(v *fastjson.Value) bool {
	fn, err := v.Object()
	if err != nil {
		return false
	}
	empty := true
	fn.Visit(func(key []byte, v *fastjson.Value) {
		empty = empty && (v.Type() == fastjson.TypeNull || string(key) == "arguments" && isEmptyString(v))
	})
	return empty
}

func isEmptyString(v *fastjson.Value) bool {
	return v.Type() == fastjson.TypeString && len(v.GetStringBytes()) == 0
}
