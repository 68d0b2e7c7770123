package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/valyala/fasthttp"
)

// A backend URL may lead back to the gateway: its own listener given as a backend (deployed
// without allow_backends, or in the file), or a load balancer in front of it. Each request it
// forwards would come back as a new request, forwarded again, until timeouts and connection
// caps end the chain, every level holding a connection. Every request the gateway sends names
// the gateway in viaHeader (after the gateways it came through, when it came from one), and a
// request that names this gateway already is refused at once with 508 Loop Detected: the
// backend that sent it back fails as a 5xx does, and the deploy probe, which names the gateway
// too, refuses such a backend before it serves.

// viaHeader lists the gateways a request passed, by their ids, comma separated.
const viaHeader = "X-Llmgate-Via"

// newGatewayID returns a random id for one gateway process.
func newGatewayID() []byte {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return []byte("llmgate-" + hex.EncodeToString(b[:]))
}

var errLoop = &apiError{status: fasthttp.StatusLoopDetected, typ: typeServer, code: "loop_detected",
	message: "This request has passed through this gateway before: a backend URL of the model leads back to the gateway (a request loop)."}

// looped reports whether the request came through this gateway already.
func (g *Gateway) looped(h *fasthttp.RequestHeader) bool {
	v := h.Peek(viaHeader)
	for len(v) > 0 {
		var id []byte
		id, v, _ = bytes.Cut(v, []byte(","))
		if bytes.Equal(bytes.TrimSpace(id), g.id) {
			return true
		}
	}
	return false
}

// setVia names this gateway in out after the gateways in's request came through.
func (g *Gateway) setVia(out, in *fasthttp.RequestHeader) {
	prev := in.Peek(viaHeader)
	if len(prev) == 0 {
		out.SetBytesV(viaHeader, g.id)
		return
	}
	out.SetBytesV(viaHeader, append(append(append([]byte(nil), prev...), ", "...), g.id...))
}

// viaTransport names the gateway in the requests of a client (the deploy probes), so a backend
// URL that leads back to the gateway fails its probe with 508.
type viaTransport struct {
	id   string
	next http.RoundTripper
}

func (t viaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(viaHeader, t.id)
	return t.next.RoundTrip(req)
}
