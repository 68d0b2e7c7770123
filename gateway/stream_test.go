package gateway

import (
	"testing"

	"github.com/llmgate/llmgate/gateway/jsonscan"
)

func TestAppendWithoutMember(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"last", `{"a":1,"usage":{"prompt_tokens":0}}`, `{"a":1}`},
		{"middle", `{"a":1, "usage" : {"x":[1,"}"]} ,"b":2}`, `{"a":1 ,"b":2}`},
		{"first", `{"usage":null,"b":"usage"}`, `{"b":"usage"}`},
		{"only", `{ "usage":{} }`, `{ }`},
		{"nested usage kept", `{"c":{"usage":1},"usage":{}}`, `{"c":{"usage":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, e := jsonscan.Find([]byte(tt.in), "usage")
			if s < 0 {
				t.Fatalf("no usage in %s", tt.in)
			}
			if got := string(appendWithoutMember(nil, []byte(tt.in), "usage", s, e)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
