package cache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/llmgate/llmgate/gateway/cache"
)

// Example shows the calls the gateway's pipeline makes: stage 5 (decide, look up, coalesce)
// and stage 8 (store) for a buffered request; the comments give the streaming variant.
func Example() {
	st, _ := cache.New(cache.Config{MaxBytes: 64 << 20})
	defer st.Close()
	var group cache.Group
	policy := cache.Policy{Enabled: true, TTL: time.Hour} // from the alias's config snapshot
	scope := st.Scope("chat", "v1")                       // resolved with the version
	body := []byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":0}`)
	backend := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}]}`)

	serve := func() string {
		// Stage 5. req lives in the pooled per-request struct until stage 8.
		var req cache.Request
		_ = cache.Prepare(&req, cache.KindChat, "chat", "v1", body) // error: Decide bypasses
		d, _ := cache.Decide(policy, &req, nil /* x-llmgate-cache */, nil /* Cache-Control */)
		if d&cache.Lookup != 0 {
			if e, ok := st.Get(scope, &req); ok {
				// Hit: a stream request uses e.AppendSSE(dst, id, created, includeUsage).
				out := e.AppendJSON(nil, cache.AppendID(nil, cache.KindChat), time.Now().Unix())
				return fmt.Sprintf("hit from %s, %d bytes", e.Model(), len(out))
			}
		}
		if d&cache.OnlyCached != 0 {
			return "504"
		}
		var flight *cache.Flight
		if d&cache.Lookup != 0 {
			f, leader := group.Join(&req)
			if !leader {
				// Buffered follower. A stream follower reads f.Follow(id, created).Next
				// events instead (io.EOF first: replay Entry() with AppendSSE).
				e, err := f.Wait(context.Background())
				if errors.Is(err, cache.ErrLeaderFailed) {
					return "go to the backend yourself"
				}
				_ = e.AppendJSON(nil, cache.AppendID(nil, cache.KindChat), time.Now().Unix())
				return "coalesced"
			}
			flight = f
			defer flight.Fail() // released if anything below fails; no-op after Finish
		}
		// Stage 6-7: forward and guard. A stream leader calls flight.Publish(data) and
		// recorder.Add(data) for every event, then recorder.Entry().
		// Stage 8.
		e, err := cache.NewEntry(cache.KindChat, backend, req.N)
		if err != nil {
			return "miss, not cacheable"
		}
		if d&cache.Save != 0 {
			st.Set(scope, &req, e, policy.TTL)
		}
		if flight != nil {
			flight.Finish(e)
		}
		return "miss"
	}
	fmt.Println(serve())
	st.Wait() // sets are asynchronous
	fmt.Println(serve())
	// Output:
	// miss
	// hit from llama, 207 bytes
}
