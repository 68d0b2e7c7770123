package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
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

// decodeAdmin decodes a JSON body strictly into v, answering a 400 naming the field on error.
// An empty body is an empty object.
func decodeAdmin(ctx *fasthttp.RequestCtx, v any) bool {
	body := bytes.TrimSpace(ctx.PostBody())
	if len(body) == 0 {
		body = []byte("{}")
	}
	// encoding/json keeps the last of a repeated key (matched without regard to case), so
	// {"stable":"v1","stable":"v2"} would set v2 while a reader of the body sees v1 first.
	if key := repeatedJSONKey(body); key != "" {
		writeError(ctx, badRequest(key, "Invalid JSON body: the key '"+key+"' appears more than once; each key may appear once."))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.InputOffset() != int64(len(body)) {
		err = errors.New("unexpected data after the JSON object")
	}
	if err != nil {
		param := ""
		var te *json.UnmarshalTypeError
		msg := "Invalid JSON body: " + err.Error()
		if errors.As(err, &te) {
			param = typeErrorPath(body, te)
			if te.Type == reflect.TypeFor[duration]() {
				msg = "Invalid JSON body: " + param + ` must be a duration such as "5m", not ` + te.Value + "."
			} else {
				msg = typeErrorMessage(param, te)
			}
		} else if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
			param = unknownFieldPath(body, reflect.TypeOf(v), strings.Trim(strings.TrimPrefix(s, "json: unknown field "), `"`))
			msg = "Invalid JSON body: unknown field '" + param + "'."
		}
		writeError(ctx, badRequest(param, msg))
		return false
	}
	return true
}

// typeErrorMessage says that the field at param (the whole body when "") wants another kind of
// value than the body gave it, in JSON's words: encoding/json's own message names Go types and
// struct fields ("cannot unmarshal object into Go struct field versionBody.backends of type
// []struct { URL string ..."), which mean nothing to whoever wrote the body.
func typeErrorMessage(param string, te *json.UnmarshalTypeError) string {
	got := te.Value
	switch {
	case strings.HasPrefix(got, "number "):
		got = strings.TrimPrefix(got, "number ") // the number itself: 1.5, -1, 1e400
	case got == "bool":
		got = "a boolean"
	case got == "array" || got == "object":
		got = "an " + got
	default:
		got = "a " + got // string, number
	}
	want := jsonKind(te.Type)
	if want == "a number" && !strings.HasPrefix(got, "a") {
		want = "a number in range" // 1e400
	}
	if param == "" {
		return "Invalid JSON body: the body must be " + want + ", not " + got + "."
	}
	return "Invalid JSON body: " + param + " must be " + want + ", not " + got + "."
}

// jsonKind names the JSON value that decodes into t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// repeatedJSONKey returns the path (such as "backends[0].url") of a key that appears twice in
// one object of body, at any depth, and "" when there is none or body is not valid JSON (the
// decoder then says what is wrong). Keys are compared unescaped and without regard to case, as
// encoding/json matches them to struct fields.
func repeatedJSONKey(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	key, _ := repeatedKeyAt(dec, "", 0)
	return key
}

// maxAdminDepth bounds the recursion of repeatedKeyAt. Admin bodies nest three deep; a deeper
// one is left to the decoder, which refuses it as the wrong type.
const maxAdminDepth = 32

// repeatedKeyAt reads one value from dec, at path, and returns the path of a repeated key in it.
func repeatedKeyAt(dec *json.Decoder, path string, depth int) (string, error) {
	if depth > maxAdminDepth {
		return "", errors.New("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	switch tok {
	case json.Delim('{'):
		var seen []string // admin objects have a handful of keys
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return "", err
			}
			k, _ := tok.(string)
			at := k
			if path != "" {
				at = path + "." + k
			}
			for _, s := range seen {
				if strings.EqualFold(s, k) {
					return at, nil
				}
			}
			seen = append(seen, k)
			if key, err := repeatedKeyAt(dec, at, depth+1); key != "" || err != nil {
				return key, err
			}
		}
		_, err = dec.Token() // '}'
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if key, err := repeatedKeyAt(dec, path+"["+strconv.Itoa(i)+"]", depth+1); key != "" || err != nil {
				return key, err
			}
		}
		_, err = dec.Token() // ']'
	}
	return "", err
}
