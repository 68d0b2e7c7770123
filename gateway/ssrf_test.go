package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router"
)

func TestBackendPolicy(t *testing.T) {
	dns := map[string][]string{
		"gpu-1.internal":    {"10.0.0.5"},
		"evil.example":      {"169.254.169.254"},
		"public.example":    {"203.0.113.7"},
		"gpu-2.internal":    {"203.0.113.8"},
		"sneaky.internal":   {"10.0.0.9", "203.0.113.9"},
		"v6meta.example":    {"fd00:ec2::254"},
		"localhost.example": {"127.0.0.1"},
		"gpu-1.x.internal":  {"10.0.0.6"},
	}
	resolve := func(_ context.Context, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, s := range dns[host] {
			out = append(out, netip.MustParseAddr(s))
		}
		if out == nil {
			return nil, errors.New("no such host")
		}
		return out, nil
	}
	tests := []struct {
		name, url string
		allow     []string
		wantErr   string // substring; "" accepts
	}{
		{"any host when no allow-list", "http://public.example:8000", nil, ""},
		{"metadata IP", "http://169.254.169.254/latest", nil, "link-local or metadata"},
		{"name resolving to metadata", "http://evil.example:80", nil, "link-local or metadata"},
		{"IPv6 metadata", "http://v6meta.example", nil, "link-local or metadata"},
		{"metadata name", "http://metadata.google.internal/computeMetadata", nil, "metadata service"},
		{"scheme", "file:///etc/passwd", nil, "want http(s)"},
		{"gopher", "gopher://10.0.0.5:70", nil, "want http(s)"},
		{"credentials", "http://u:p@gpu-1.internal", nil, "user:password"},
		{"unresolvable", "http://nowhere.example", nil, "does not resolve"},
		{"in CIDR", "http://gpu-1.internal:8000", []string{"10.0.0.0/8"}, ""},
		{"IP in CIDR", "http://10.1.2.3:8000", []string{"10.0.0.0/8"}, ""},
		{"outside CIDR", "http://public.example", []string{"10.0.0.0/8"}, "outside admin.allow_backends"},
		{"one address outside", "http://sneaky.internal", []string{"10.0.0.0/8"}, "outside"},
		{"host pattern", "http://gpu-2.internal", []string{"gpu-*.internal"}, ""},
		{"pattern does not cross dots", "http://gpu-1.x.internal", []string{"gpu-*.internal"}, "matches no"},
		{"loopback allowed by CIDR", "http://localhost.example", []string{"127.0.0.1/32"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newBackendPolicy(tt.allow)
			p.resolve = resolve
			err := p.check(tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The admin API checks a backend's name when it is deployed; the name may resolve to the
// metadata service later (a short TTL, DNS rebinding). The connection itself is refused then:
// whatever the name, no request is sent to a link-local or metadata address.
func TestDialRefusesMetadataAddress(t *testing.T) {
	u := &upstreams{byAddr: map[string]*upstream{}, to: config.Timeouts{Connect: 2 * time.Second}}
	for _, addr := range []string{"169.254.169.254:80", "[::ffff:169.254.169.254]:80", "[fd00:ec2::254]:80"} {
		t.Run(addr, func(t *testing.T) {
			hc := u.newClient(&router.Backend{URL: "http://" + addr, Addr: addr}, false)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/v1/chat/completions")
			req.Header.SetMethod(fasthttp.MethodPost)
			err := hc.DoTimeout(req, resp, 5*time.Second)
			if !errors.Is(err, errNeverBackend) {
				t.Fatalf("err = %v, want the dial refused as a metadata address", err)
			}
		})
	}
}

// Each connection to a backend an admin deploy named is held to admin.allow_backends as the
// deploy's check is, address by address: a name that matches an allowed pattern may have any
// address but a link-local or metadata one; any other must be inside an allowed CIDR.
func TestDialErr(t *testing.T) {
	tests := []struct {
		name, host, addr string
		allow            []string
		want             error
	}{
		{"no list", "public.example", "203.0.113.7", nil, nil},
		{"no list, metadata", "evil.example", "169.254.169.254", nil, errNeverBackend},
		{"in CIDR", "gpu.example", "10.0.0.5", []string{"10.0.0.0/8"}, nil},
		{"mapped in CIDR", "gpu.example", "::ffff:10.0.0.5", []string{"10.0.0.0/8"}, nil},
		{"rebound outside CIDR", "gpu.example", "203.0.113.7", []string{"10.0.0.0/8"}, errOutsideAllowList},
		{"IP outside CIDR", "203.0.113.7", "203.0.113.7", []string{"10.0.0.0/8"}, errOutsideAllowList},
		{"pattern, any address", "gpu-2.internal", "203.0.113.8", []string{"10.0.0.0/8", "gpu-*.internal"}, nil},
		{"pattern, metadata", "gpu-2.internal", "169.254.169.254", []string{"gpu-*.internal"}, errNeverBackend},
		{"pattern does not cross dots", "gpu-1.x.internal", "203.0.113.8", []string{"gpu-*.internal"}, errOutsideAllowList},
		{"CIDR, metadata", "gpu.example", "169.254.169.254", []string{"169.254.0.0/16"}, errNeverBackend},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newBackendPolicy(tt.allow).dialErr(tt.host, netip.MustParseAddr(tt.addr))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// The health prober's connections to a backend an admin deploy named are held to
// admin.allow_backends as its requests are: a name that resolves outside the list by the time
// it is probed gets no probe, and no API key. A backend the config file names is not bound.
func TestProbeHeldToAllowList(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	var reached atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) })}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	p := newBackendPolicy([]string{"127.0.0.1/32"})
	p.resolve = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil // rebound since the deploy
	}
	u := &upstreams{byAddr: map[string]*upstream{}, to: config.Timeouts{Connect: 2 * time.Second}, policy: p,
		trusted: map[string]bool{"http://config.test:" + port: true}}
	g := &Gateway{upstreams: u}
	clients := g.ProbeClients(5 * time.Second)
	b := &router.Backend{URL: "http://gpu.test:" + port, Addr: "gpu.test:" + port, Kind: config.KindVLLM, APIKey: "secret"}
	err = router.Probe(context.Background(), clients(b), b)
	if !errors.Is(err, errOutsideAllowList) {
		t.Errorf("probe err = %v, want the connection refused as outside admin.allow_backends", err)
	}
	if n := reached.Load(); n > 0 {
		t.Errorf("%d probes reached the rebound address", n)
	}
	if fromConfig := (&router.Backend{URL: "http://config.test:" + port, Addr: "config.test:" + port}); u.restricted(fromConfig) {
		t.Errorf("a backend the config file names is bound by admin.allow_backends")
	}
}
