package gateway_test

import (
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
)

// Sticky by api_key keeps a client on one side of the split whichever way its SDK sends the key:
// the OpenAI SDK as "Authorization: Bearer", the Azure SDK as api-key, the Anthropic SDK as
// x-api-key, and any client may spell the scheme "bearer". Split at random instead, those
// clients moved between versions from one request to the next.
func TestStickyAPIKeyHeaders(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	v2 := startFake(t, fakellm.Options{Model: "m2"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", v2.backend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":50,"sticky":"api_key"}`)
	body := chatAs("", false)
	for _, h := range [][2]string{
		{"Authorization", "Bearer sk-one"},
		{"Authorization", "bearer sk-two"},
		{"Api-Key", "sk-three"},
		{"X-Api-Key", "sk-four"},
	} {
		seen := map[string]int{}
		for range 16 {
			res := g.do(t, "POST", "/v1/chat/completions", body, h[0], h[1])
			if res.status != 200 {
				t.Fatalf("%s: status %d: %s", h[0], res.status, res.body)
			}
			seen[res.header.Get("X-Llmgate-Version")]++
		}
		if len(seen) != 1 {
			t.Errorf("key in %s %q: served by %v, want one version", h[0], h[1], seen)
		}
	}
}

// Clients that send no key ("Bearer " alone, as an SDK configured with an empty key does) have
// no sticky key: they are split at random, not sent together to one side as one cohort.
func TestStickyAPIKeyEmptyBearer(t *testing.T) {
	tokens := withAdminTokens(t)
	v1 := startFake(t, fakellm.Options{Model: "m1"})
	v2 := startFake(t, fakellm.Options{Model: "m2"})
	g := startGateway(t, newConfig(t, tokens, model("chat", "v1", version("v1", v1.backend()), version("v2", v2.backend()))))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v1","canary":"v2","canary_percent":50,"sticky":"api_key"}`)
	seen := map[string]int{}
	for range 40 {
		res := g.do(t, "POST", "/v1/chat/completions", chatAs("", false), "Authorization", "Bearer ")
		if res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		seen[res.header.Get("X-Llmgate-Version")]++
	}
	if len(seen) != 2 {
		t.Errorf("40 requests without a key at 50%%: served by %v, want both versions", seen)
	}
}
