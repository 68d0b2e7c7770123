package gateway_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/router/store"
)

// rebinder is DNS for one name the test controls: each lookup of it answers the address the
// next lookup's turn says, as a rebinding DNS server would.
type rebinder struct {
	name    string
	mu      sync.Mutex
	answers []string // one per lookup; the last one stays
}

func (r *rebinder) set(answers ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers = answers
}

func (r *rebinder) resolve(_ context.Context, host string) ([]netip.Addr, error) {
	if host != r.name {
		return nil, errors.New("no such host")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.answers[0]
	if len(r.answers) > 1 {
		r.answers = r.answers[1:]
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

// snoop is a server outside admin.allow_backends that counts what reaches it and the API
// keys it is sent.
type snoop struct {
	requests atomic.Int64
	mu       sync.Mutex
	auth     []string
}

// startSnoop listens on 127.0.0.2 at port, where a name that rebinds from 127.0.0.1 would take
// the gateway; it skips the test where that address cannot be had.
func startSnoop(t *testing.T, port string) *snoop {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	s := &snoop{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"fake-model"}]}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// A backend an admin deploy names passes admin.allow_backends by the address its name resolves
// to then; the name may resolve elsewhere later (a short TTL, DNS rebinding). Every connection
// the gateway opens to it is held to the list, not only the deploy's check: the deploy's own
// probe, requests, and streams never reach an address outside it, nor does the backend's API
// key.
func TestAllowBackendsHoldsAtEveryConnection(t *testing.T) {
	tokens := withAdminTokens(t)
	t.Setenv("LLMGATE_E2E_CANARY_KEY", "canary-secret")
	stable, good := startFake(t, fakellm.Options{}), startFake(t, fakellm.Options{})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(good.URL, "http://"))
	evil := startSnoop(t, port)
	dns := &rebinder{name: "gpu.test"}
	g := startGatewayOpts(t, newConfig(t, func(c *config.Config) {
		tokens(c)
		c.Admin.AllowBackends = []string{"127.0.0.1/32"}
		c.Admin.APIKeyEnvs = []string{"LLMGATE_E2E_CANARY_KEY"}
	}, model("chat", "v1", version("v1", stable.backend()))), gateway.Options{Resolve: dns.resolve, Store: store.NewMemory()})
	deploy := func(name string) string {
		return `{"version":"` + name + `","backends":[{"url":"http://gpu.test:` + port + `","kind":"` + good.Kind +
			`","model":"` + good.Model + `","api_key_env":"LLMGATE_E2E_CANARY_KEY"}]}`
	}

	// The check resolves inside the list, the probe's connection outside it.
	dns.set("127.0.0.1", "127.0.0.2")
	res := g.refused(t, http.StatusBadRequest, "backends", "POST", "/admin/models/chat/versions", opsToken, deploy("v2"))
	if !strings.Contains(string(res.body), "outside admin.allow_backends") {
		t.Errorf("the refusal does not say why: %s", res.body)
	}

	// Deployed unprobed inside the list; by a new connection the name leads outside it.
	dns.set("127.0.0.1")
	g.write(t, "POST", "/admin/models/chat/versions?probe=false", deploy("v2"))
	g.write(t, "PUT", "/admin/models/chat/traffic", `{"stable":"v2"}`)
	if v, err := g.chat("u", false); err != nil || v != "v2" {
		t.Fatalf("inside admin.allow_backends: %s, %v; want v2", v, err)
	}
	dns.set("127.0.0.2")
	// The buffered request's connection is kept for the next; a stream's pool has none yet.
	if v, err := g.chat("u", true); err == nil {
		t.Errorf("%s streamed from an address outside admin.allow_backends", v)
	}
	if n := evil.requests.Load(); n > 0 {
		evil.mu.Lock()
		t.Errorf("%d requests reached the rebound address, with Authorization %q", n, evil.auth)
		evil.mu.Unlock()
	}
}
