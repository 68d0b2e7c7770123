package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Admin deploys point the gateway at new hosts, so a stolen or careless admin token must not
// turn it into a proxy to cloud metadata or to hosts outside the GPU fleet (SSRF). A backend
// URL from the admin API must be http(s), must not resolve to a link-local or metadata address,
// and, when admin.allow_backends is set, must match it by CIDR or host name pattern: when it is
// deployed (check) and at every connection after (dial), since its name may resolve elsewhere
// by then. The config file's backends are the operator's own: only neverBackend binds them.

// metadataHosts are cloud metadata names refused whatever they resolve to.
var metadataHosts = []string{"metadata.google.internal", "metadata", "metadata.azure.internal", "instance-data"}

// backendPolicy decides which backend URLs the admin API accepts.
type backendPolicy struct {
	nets     []netip.Prefix
	patterns []string // host name patterns, lower case
	resolve  func(ctx context.Context, host string) ([]netip.Addr, error)
}

func newBackendPolicy(allow []string) *backendPolicy {
	p := &backendPolicy{resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}}
	for _, a := range allow {
		if pfx, err := netip.ParsePrefix(a); err == nil {
			p.nets = append(p.nets, pfx.Masked())
			continue
		}
		p.patterns = append(p.patterns, strings.ToLower(a))
	}
	return p
}

// check returns why raw may not be a backend, or nil.
func (p *backendPolicy) check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("url %q: want http(s)://host[:port][/path]", raw)
	}
	if u.User != nil {
		return fmt.Errorf("url: must not contain user:password; use api_key_env")
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for _, m := range metadataHosts {
		if host == m {
			return fmt.Errorf("url: %s is a cloud metadata service, never a backend", host)
		}
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if addrs, err = p.resolve(ctx, host); err != nil || len(addrs) == 0 {
			return fmt.Errorf("url: host %s does not resolve", host)
		}
	}
	for _, a := range addrs {
		if neverBackend(a) {
			return fmt.Errorf("url: %s resolves to %s, a link-local or metadata address", host, a.Unmap())
		}
	}
	if len(p.nets) == 0 && len(p.patterns) == 0 {
		return nil
	}
	for _, pat := range p.patterns {
		if hostMatch(pat, host) {
			return nil
		}
	}
	if len(p.nets) == 0 {
		return fmt.Errorf("url: %s matches no admin.allow_backends pattern", host)
	}
	for _, a := range addrs {
		in := false
		for _, n := range p.nets {
			if n.Contains(a.Unmap()) {
				in = true
				break
			}
		}
		if !in {
			return fmt.Errorf("url: %s (%s) is outside admin.allow_backends", host, a)
		}
	}
	return nil
}

// neverBackend reports whether a is an address no backend may have: link-local (cloud metadata
// at 169.254.169.254 among them), AWS's IPv6 metadata, unspecified or multicast.
func neverBackend(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() || a.IsMulticast() ||
		a == awsMetadataV6
}

var awsMetadataV6 = netip.MustParseAddr("fd00:ec2::254")

// restricts reports whether p limits admin-deployed backends to admin.allow_backends.
func (p *backendPolicy) restricts() bool { return len(p.nets) > 0 || len(p.patterns) > 0 }

// errOutsideAllowList is a connection to an admin-deployed backend refused at dial time: its
// name resolved to an address admin.allow_backends does not allow.
var errOutsideAllowList = errors.New("backend address is outside admin.allow_backends")

// dialErr returns why a connection to a, an address host resolved to, is refused for a backend
// the admin API deployed, or nil. It is check's rule for one address: a host that matches an
// allowed name pattern may have any address but a link-local or metadata one; any other host
// must be inside an allowed CIDR.
func (p *backendPolicy) dialErr(host string, a netip.Addr) error {
	a = a.Unmap()
	if neverBackend(a) {
		return fmt.Errorf("%w: %s", errNeverBackend, a)
	}
	if !p.restricts() {
		return nil
	}
	for _, pat := range p.patterns {
		if hostMatch(pat, host) {
			return nil
		}
	}
	for _, n := range p.nets {
		if n.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s resolved to %s", errOutsideAllowList, host, a)
}

// dial connects to addr (host:port) for a backend the admin API deployed. check vetted the
// host's addresses when it was deployed, but a name may resolve elsewhere later (a short TTL,
// DNS rebinding), and the gateway sends it prompts and the backend's API key: so dial resolves
// the name itself, with check's resolver, and connects only to an address check would allow
// now, trying them in order. timeout, when above 0, bounds the lookup and the connects.
func (p *backendPolicy) dial(ctx context.Context, timeout time.Duration, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = p.resolve(ctx, host); err != nil {
		return nil, err
	} else if len(addrs) == 0 {
		return nil, fmt.Errorf("host %s does not resolve", host)
	}
	d := net.Dialer{Control: refuseNeverBackend}
	var first error
	for _, a := range addrs {
		err := p.dialErr(host, a)
		if err == nil {
			var c net.Conn
			if c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(a.Unmap().String(), port)); err == nil {
				return c, nil
			}
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// errNeverBackend is a backend connection refused at dial time: its name resolved to an
// address neverBackend refuses.
var errNeverBackend = errors.New("backend address is link-local or a metadata service")

// refuseNeverBackend is a net.Dialer Control: it runs on the address the name resolved to, just
// before connecting. The admin API checks a backend's name when it is deployed, but a name may
// resolve elsewhere later (a short TTL, DNS rebinding): checked only then, a name that first
// resolved to a GPU server could send the gateway's requests, with the client's headers, to the
// cloud metadata service.
func refuseNeverBackend(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil // not an IP address: nothing to connect to that the check knows of
	}
	if neverBackend(ap.Addr()) {
		return fmt.Errorf("%w: %s", errNeverBackend, ap.Addr().Unmap())
	}
	return nil
}

// hostMatch matches host against pattern label by label; "*" in a label stands for any run of
// characters within that label.
func hostMatch(pattern, host string) bool {
	pl, hl := strings.Split(pattern, "."), strings.Split(host, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if !labelMatch(pl[i], hl[i]) {
			return false
		}
	}
	return true
}

func labelMatch(p, s string) bool {
	star := strings.IndexByte(p, '*')
	if star < 0 {
		return p == s
	}
	prefix, rest := p[:star], p[star+1:]
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	s = s[len(prefix):]
	for i := 0; i <= len(s); i++ {
		if labelMatch(rest, s[i:]) {
			return true
		}
	}
	return false
}
