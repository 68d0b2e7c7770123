package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func TestRewriteBody(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"model only", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"top_k":5}`,
			`{"model":"served","messages":[{"role":"user","content":"hi"}],"top_k":5}`},
		{"stream asks for usage", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"served","stream":true,"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`},
		{"stream keeps vendor stream options", `{"stream_options":{"continuous_usage_stats":true},"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`,
			`{"stream_options":{"include_usage":true,"continuous_usage_stats":true},"model":"served","stream":true,"messages":[{"role":"user","content":"x"}]}`},
		{"stream usage false is turned on", `{"model":"chat","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"served","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{"client asked for usage: untouched", `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"served","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{"stream options null", `{"model":"chat","stream":true,"stream_options":null,"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"served","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{"whitespace kept", "{ \"model\" : \"chat\" ,\n \"messages\":[{\"role\":\"user\",\"content\":\"\\u00e9\"}] }",
			"{ \"model\" : \"served\" ,\n \"messages\":[{\"role\":\"user\",\"content\":\"\\u00e9\"}] }"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &request{op: opChat}
			if err := r.decode([]byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			r.rewriteBody("served")
			if string(r.body) != tt.want {
				t.Fatalf("got  %s\nwant %s", r.body, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		op        operation
		body      string
		wantParam string
	}{
		{"empty", opChat, ``, ""},
		{"not json", opChat, `{bad`, ""},
		{"array", opChat, `[1]`, ""},
		{"no model", opChat, `{"messages":[{"role":"user","content":"x"}]}`, "model"},
		{"model not string", opChat, `{"model":3,"messages":[{"role":"user","content":"x"}]}`, "model"},
		{"no messages", opChat, `{"model":"m"}`, "messages"},
		{"messages not array", opChat, `{"model":"m","messages":"hi"}`, "messages"},
		{"message without role", opChat, `{"model":"m","messages":[{"content":"x"}]}`, "messages"},
		{"stream not bool", opChat, `{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}`, "stream"},
		{"stream options without stream", opChat, `{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`, "stream_options"},
		{"no prompt", opCompletion, `{"model":"m"}`, "prompt"},
		{"no input", opEmbeddings, `{"model":"m"}`, "input"},
		{"streamed embeddings", opEmbeddings, `{"model":"m","input":"x","stream":true}`, "stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &request{op: tt.op}
			err := r.decode([]byte(tt.body))
			ae, ok := err.(*apiError)
			if !ok || ae.status != 400 || ae.typ != typeInvalidRequest {
				t.Fatalf("decode(%s) = %v, want a 400 invalid_request_error", tt.body, err)
			}
			if ae.param != tt.wantParam {
				t.Fatalf("param = %q, want %q", ae.param, tt.wantParam)
			}
		})
	}
}

// FuzzDecodeRewrite checks that any body either gets a 400 or is rewritten into valid JSON in
// which only model (and, for streams, stream_options.include_usage) changed.
func FuzzDecodeRewrite(f *testing.F) {
	for _, s := range []string{
		`{"model":"chat","messages":[{"role":"user","content":"hi"}],"top_k":5,"options":{"num_ctx":4096}}`,
		`{"model":"chat","stream":true,"stream_options":{"continuous_usage_stats":true},"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"a\"b","stream":true,"messages":[{"role":"user","content":"x"}],"stream_options":null}`,
		`{"model":"m","model":"n","messages":[{"role":"u"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := &request{op: opChat}
		if err := r.decode(body); err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("decode returned a non-API error %T", err)
			}
			return
		}
		var before map[string]any
		if json.Unmarshal(body, &before) != nil {
			return // fastjson accepts a few things encoding/json does not; nothing to compare
		}
		r.rewriteBody("served/model")
		var after map[string]any
		if err := json.Unmarshal(r.body, &after); err != nil {
			t.Fatalf("rewritten body is not JSON: %v\nin:  %s\nout: %s", err, body, r.body)
		}
		if after["model"] != "served/model" {
			t.Fatalf("model = %v in %s", after["model"], r.body)
		}
		if r.stream && !r.clientUsage {
			so, _ := after["stream_options"].(map[string]any)
			if so["include_usage"] != true {
				t.Fatalf("stream without include_usage upstream: %s", r.body)
			}
			delete(after, "stream_options")
			delete(before, "stream_options")
		}
		delete(after, "model")
		delete(before, "model")
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("fields other than model changed:\nin:  %s\nout: %s", body, r.body)
		}
	})
}

// A pooled request does not keep the buffers of a huge prompt (or of a compressed body that
// expanded), or of a long answer replayed from the cache, for every request after it;
// ordinary ones it keeps.
func TestReleaseRequestDropsHugeBuffers(t *testing.T) {
	// upstreamBody: the copy prepareUpstream makes of the prompt for an Ollama backend;
	// cache.buf: a cached answer as replayed (a stream's events are several times its text).
	r := &request{body: make([]byte, 0, 4<<10), scratch: make([]byte, 0, 4<<10), upstreamBody: make([]byte, 0, 4<<10)}
	r.cache.buf = make([]byte, 0, 4<<10)
	releaseRequest(r)
	if cap(r.body) != 4<<10 || cap(r.scratch) != 4<<10 || cap(r.upstreamBody) != 4<<10 || cap(r.cache.buf) != 4<<10 {
		t.Errorf("a 4 KiB request's buffers were dropped: %d, %d, %d, %d", cap(r.body), cap(r.scratch), cap(r.upstreamBody), cap(r.cache.buf))
	}
	r = &request{body: make([]byte, 0, 8<<20), scratch: make([]byte, 0, 8<<20), upstreamBody: make([]byte, 0, 8<<20)}
	r.cache.buf = make([]byte, 0, 8<<20)
	releaseRequest(r)
	if r.body != nil || r.scratch != nil || r.upstreamBody != nil || r.cache.buf != nil {
		t.Errorf("an 8 MiB request's buffers were kept: %d, %d, %d, %d", cap(r.body), cap(r.scratch), cap(r.upstreamBody), cap(r.cache.buf))
	}
}

// FuzzAppendJSONString checks appendJSONString against its byte-at-a-time definition: quote
// and backslash escaped, control characters as \u00XX, every other byte as it is.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b\c`, "tab\there\nnew\x00\x1f\x7f", "é 漢字 \xff\xfe", `""\\`, "\x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := []byte{'x', '"'}
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"' || c == '\\':
				want = append(want, '\\', c)
			case c < 0x20:
				want = append(want, fmt.Sprintf(`\u%04x`, c)...)
			default:
				want = append(want, c)
			}
		}
		want = append(want, '"')
		if got := appendJSONString([]byte("x"), s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %q, want %q", s, got, want)
		}
	})
}
