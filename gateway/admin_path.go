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

// unknownFieldPath returns where in an admin body the first key sits that no field of typ
// takes at its place ("steps[0].canary_pct"), as encoding/json, which names the key alone,
// refused it; name when it is not found. Keys match fields as encoding/json matches them: by
// their json name, without regard to case.
func unknownFieldPath(body []byte, typ reflect.Type, name string) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if at, ok := unknownAt(dec, "", typ, name, 0); ok {
		return at
	}
	return name
}

// unknownAt reads one value from dec, at path, whose Go type is typ, and returns the path of
// the first key named name that typ's struct at its place lacks.
func unknownAt(dec *json.Decoder, path string, typ reflect.Type, name string, depth int) (string, bool) {
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
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
			at := k
			if path != "" {
				at = path + "." + k
			}
			var ft reflect.Type // the value's type; nil when unknown (read and skipped)
			switch {
			case typ == nil:
			case typ.Kind() == reflect.Map:
				ft = typ.Elem()
			case typ.Kind() == reflect.Struct:
				f, ok := jsonField(typ, k)
				if !ok && strings.EqualFold(k, name) {
					return at, true
				}
				ft = f
			}
			if at, ok := unknownAt(dec, at, ft, name, depth+1); ok {
				return at, true
			}
		}
		dec.Token() // '}'
	case json.Delim('['):
		var et reflect.Type
		if typ != nil && (typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array) {
			et = typ.Elem()
		}
		for i := 0; dec.More(); i++ {
			if at, ok := unknownAt(dec, path+"["+strconv.Itoa(i)+"]", et, name, depth+1); ok {
				return at, true
			}
		}
		dec.Token() // ']'
	}
	return "", false
}

// jsonField returns the type of struct typ's field that encoding/json decodes key into.
func jsonField(typ reflect.Type, key string) (reflect.Type, bool) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case tag == "-":
			continue
		case tag == "":
			tag = f.Name
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("json") == "" {
			if ft, ok := jsonField(f.Type, key); ok {
				return ft, true
			}
			continue
		}
		if strings.EqualFold(tag, key) {
			return f.Type, true
		}
	}
	return nil, false
}
