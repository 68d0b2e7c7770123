package gateway

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/drift"
	"github.com/llmgate/llmgate/gateway/cache"
)

// A cache hit takes its drift sample from the entry; it must be the sample that reading the
// replayed body gives, so hits and misses of one answer count alike.
func TestNoteCachedMatchesBody(t *testing.T) {
	long := strings.Repeat("I can't help with that, but here is why: \\\"quoted\\\" and \\u00e9. ", 4)
	cases := []struct {
		name string
		kind cache.Kind
		n    int
		body []byte
	}{
		{"long escaped chat", cache.KindChat, 1, []byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + long + `"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)},
		{"null content", cache.KindChat, 1, []byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)},
		{"odd finish", cache.KindCompletion, 1, []byte(`{"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"Sure.","finish_reason":"repetition"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)},
	}
	files := map[string]cache.Kind{"vllm_chat.json": cache.KindChat, "ollama_chat.json": cache.KindChat,
		"openai_chat_tools.json": cache.KindChat, "openai_chat_n2_logprobs.json": cache.KindChat, "vllm_completion.json": cache.KindCompletion}
	for name, kind := range files {
		b, err := os.ReadFile(filepath.Join("cache", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		n := 1
		if strings.Contains(name, "n2") {
			n = 2
		}
		cases = append(cases, struct {
			name string
			kind cache.Kind
			n    int
			body []byte
		}{name, kind, n, b})
	}
	for _, c := range cases {
		e, err := cache.NewEntry(c.kind, c.body, c.n)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body := e.AppendJSON(nil, []byte("chatcmpl-1"), 2)
		var fromBody, fromEntry requestStats
		fromBody.reset()
		fromEntry.reset()
		fromBody.noteCompletion(body)
		fromEntry.noteCached(e.First())
		if c.name == "openai_chat_n2_logprobs.json" {
			// This fixture lists choice 1 first, which no backend does: the body scan takes the
			// first element, the entry the choice whose index is 0.
			if !bytes.HasPrefix(fromEntry.completionHead, []byte("日本語")) || fromEntry.finish != drift.FinishLength {
				t.Errorf("%s: finish %v head %q, want choice 0's", c.name, fromEntry.finish, fromEntry.completionHead)
			}
			continue
		}
		if fromBody.finish != fromEntry.finish || !bytes.Equal(fromBody.completionHead, fromEntry.completionHead) {
			t.Errorf("%s: from the entry finish %v head %q; from the body finish %v head %q", c.name,
				fromEntry.finish, fromEntry.completionHead, fromBody.finish, fromBody.completionHead)
		}
		if len(fromBody.completionHead) == 0 && c.name != "null content" && c.name != "openai_chat_tools.json" {
			t.Errorf("%s: no text read at all", c.name)
		}
	}
}

// TestDriftWebhookUndefinedStatistic: a verdict that changes because a window emptied has no
// statistic; the webhook says null, not 0, which a receiver would read as "no drift at all".
func TestDriftWebhookUndefinedStatistic(t *testing.T) {
	body, err := json.Marshal(driftEvent{Event: "drift_verdict_changed", Changes: []verdictChange{
		{Feature: "prompt_length", From: "drift", To: "insufficient", Statistic: definedOrNil(math.NaN())},
		{Feature: "ttft", From: "ok", To: "drift", Statistic: definedOrNil(0.42)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Changes []struct {
			Statistic *float64 `json:"statistic"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Changes[0].Statistic != nil || !strings.Contains(string(body), `"statistic":null`) {
		t.Errorf("undefined statistic sent as %s", body)
	}
	if ev.Changes[1].Statistic == nil || *ev.Changes[1].Statistic != 0.42 {
		t.Errorf("defined statistic lost: %s", body)
	}
}

// A stream's finish_reason is read however its backend spaces its JSON: Python servers
// (json.dumps) write "finish_reason": "length". Once the kept start of the answer was full,
// only a chunk with the compact "finish_reason":" was read, so every long answer from such a
// backend counted as finish_reason unknown.
func TestStreamFinishReasonSpacedJSON(t *testing.T) {
	for _, tt := range []struct{ name, text, last string }{
		{"compact", `[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]`, `[{"index":0,"delta":{},"finish_reason":"length"}]`},
		{"spaced", `[{"index": 0, "delta": {"content": "%s"}, "finish_reason": null}]`, `[{"index": 0, "delta": {}, "finish_reason": "length"}]`},
		{"spaced before colon", `[{"index" : 0, "delta" : {"content" : "%s"}, "finish_reason" : null}]`, `[{"index" : 0, "delta" : {}, "finish_reason" : "length"}]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s requestStats
			s.reset()
			for range 4 { // past headBytes of text
				s.noteChoices([]byte(strings.Replace(tt.text, "%s", strings.Repeat("word ", 8), 1)), true)
			}
			s.noteChoices([]byte(tt.last), true)
			if s.finish != drift.FinishLength {
				t.Fatalf("finish reason %v after a last chunk %s, want length (%v)", s.finish, tt.last, drift.FinishLength)
			}
		})
	}
}

// A stream the gateway's own shutdown cut (server_shutting_down, once its grace ran out) is no
// failure of the version, as a stream its client left is not: counted as an upstream error, a
// deploy's rolling restart raised every version's error rate and could roll a canary back.
func TestDriftStatusShutdownCutIsNoFailure(t *testing.T) {
	r := &request{status: 200, errCode: errShutdownCut.code}
	if st := driftStatus(r); st.Failure() {
		t.Fatalf("a stream cut by the gateway's shutdown classed %s, a failure of the version", drift.FeatureStatus.Categories()[st])
	}
}
