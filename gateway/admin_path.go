package gateway

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// typeErrorPath returns where in an admin body the value te refused sits, array indices
// included ("steps[1].min_duration"), as the admin API's other errors name fields:
// encoding/json names the field without them ("steps.min_duration"). It is the first value at
// that field which does not decode into te.Type; te.Field when there is none. Admin bodies are
// small, so the second reading costs nothing that matters.
func typeErrorPath(body []byte, te *json.UnmarshalTypeError) string {
	if te.Field == "" || te.Type == nil {
		return te.Field
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if at, ok := refusedAt(dec, "", strings.Split(te.Field, "."), te.Type, 0); ok {
		return at
	}
	return te.Field
}

// refusedAt reads one value from dec, at path, and returns the path of the first value in it at
// the field want (object keys, matched as encoding/json matches them: without regard to case;
// arrays in between take no part of want) which does not decode into typ.
func refusedAt(dec *json.Decoder, path string, want []string, typ reflect.Type, depth int) (string, bool) {
	if len(want) == 0 {
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return "", false
		}
		return path, json.Unmarshal(raw, reflect.New(typ).Interface()) != nil
	}
	if depth > maxAdminDepth {
		return "", false
	}
	tok, err := dec.Token()
	if err != nil {
		return "", false
	}
	switch tok {
	case json.Delim('{'):
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return "", false
			}
			k, _ := tok.(string)
			if !strings.EqualFold(k, want[0]) {
				if dec.Decode(&json.RawMessage{}) != nil {
					return "", false
				}
				continue
			}
			at := k
			if path != "" {
				at = path + "." + k
			}
			if at, ok := refusedAt(dec, at, want[1:], typ, depth+1); ok {
				return at, true
			}
		}
		dec.Token() // '}'
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if at, ok := refusedAt(dec, path+"["+strconv.Itoa(i)+"]", want, typ, depth+1); ok {
				return at, true
			}
		}
		dec.Token() // ']'
	}
	return "", false
}
