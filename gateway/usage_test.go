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

// usageSeeds are usage objects: those plainUsage reads and near misses that scanUsage reads.
var usageSeeds = []string{
	`{"prompt_tokens":250,"completion_tokens":16,"total_tokens":266}`, // Ollama, OpenAI
	`{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`,
	`{"prompt_tokens":250,"total_tokens":266,"completion_tokens":16,"prompt_tokens_details":null}`, // vLLM
	`{"prompt_tokens":2,"total_tokens":3,"completion_tokens":1,"prompt_tokens_details":null,"completion_tokens_details":null}`,
	`{"prompt_tokens":2,"total_tokens":2}`,
	`{"prompt_tokens":2,"completion_tokens":1,"prompt_tokens":7}`,
	`{"prompt_tokens":1234567890123,"completion_tokens":1}`, // too many: 0, as scanUsage reads it
	`{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}`,
	`{"prompt_tokens":2,"completion_tokens":null}`,
	`{"prompt_tokens":2,"completion_tokens":1.5}`,
	`{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3} `,
	`{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3`,
	`{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3,}`,
	`{"prompt_tokens":2,"n":1}`,
	`{"prompt_tokens":2,"prompt_tokens_details":nul}`,
	`{"prompt\u005ftokens":2}`,
	`{"prompt_tokens" :2}`,
	`{}`,
	`{"`,
	`{`,
}

// What plainUsage reads, when it reads a usage object, is what scanUsage reads of it.
func FuzzUsageFrom(f *testing.F) {
	for _, u := range usageSeeds {
		f.Add([]byte(u))
	}
	f.Fuzz(func(t *testing.T, u []byte) {
		in, out := usageFrom(u)
		if win, wout := scanUsage(u); in != win || out != wout {
			t.Errorf("%s: usageFrom %d, %d; scanUsage %d, %d", u, in, out, win, wout)
		}
	})
}

// plainUsage reads the usage objects vLLM and Ollama write and leaves the others to scanUsage.
func TestPlainUsage(t *testing.T) {
	for i, u := range usageSeeds {
		_, _, ok := plainUsage([]byte(u))
		if want := i < 7; ok != want {
			t.Errorf("plainUsage(%s) ok = %v, want %v", u, ok, want)
		}
	}
}
