package gateway

import "testing"

func TestUsageFrom(t *testing.T) {
	for _, c := range []struct {
		usage   string
		in, out int
	}{
		{`{"prompt_tokens":250,"completion_tokens":2,"total_tokens":252}`, 250, 2},
		{`{ "completion_tokens" : 16 , "prompt_tokens" : 9 }`, 9, 16},
		// Nested objects with the same names are not the top-level counts.
		{`{"prompt_tokens_details":{"prompt_tokens":1,"cached_tokens":3},"completion_tokens_details":{"completion_tokens":5},"prompt_tokens":12,"completion_tokens":7}`, 12, 7},
		{`{"prompt_tokens":null,"completion_tokens":"3"}`, 0, 0},
		{`{"prompt_tokens":-4,"completion_tokens":2.5}`, 0, 0},
		{`{"prompt_tokens":99999999999999999999}`, 0, 0},
		{`{}`, 0, 0},
		{`null`, 0, 0},
		{``, 0, 0},
	} {
		in, out := usageFrom([]byte(c.usage))
		if in != c.in || out != c.out {
			t.Errorf("%s: got %d, %d; want %d, %d", c.usage, in, out, c.in, c.out)
		}
	}
}
