package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
)

// Admin roles: read may look, admin may also change and profile.
const (
	roleRead  = "read"
	roleAdmin = "admin"
)

// adminToken is one accepted bearer token; the secret comes from the environment at start.
type adminToken struct {
	name, role string
	digest     [sha256.Size]byte // the secret's SHA-256: compared in constant time whatever the lengths
}

// envAdminToken names the variable whose value is the one admin-role token when the config
// has no admin.tokens section: enough for a single operator or a demo.
const envAdminToken = "LLMGATE_ADMIN_TOKEN"

func loadAdminTokens(tokens []config.AdminToken) ([]adminToken, error) {
	if len(tokens) == 0 {
		if secret := os.Getenv(envAdminToken); secret != "" {
			return []adminToken{{name: "admin", role: roleAdmin, digest: sha256.Sum256([]byte(secret))}}, nil
		}
		return nil, nil
	}
	out := make([]adminToken, 0, len(tokens))
	for _, t := range tokens {
		secret := os.Getenv(t.TokenEnv)
		if secret == "" {
			return nil, fmt.Errorf("admin token %q: environment variable %s is empty", t.Name, t.TokenEnv)
		}
		for _, o := range out {
			// The last token a secret matches would decide its role and name: a read-only
			// dashboard's token that is also an admin's would be either, by the file's order.
			if o.digest == sha256.Sum256([]byte(secret)) {
				return nil, fmt.Errorf("admin token %q: its variable %s holds the same token as admin token %q's; each token needs its own secret", t.Name, t.TokenEnv, o.name)
			}
		}
		out = append(out, adminToken{name: t.Name, role: t.Role, digest: sha256.Sum256([]byte(secret))})
	}
	return out, nil
}

var (
	errAdminUnauthorized = &apiError{status: fasthttp.StatusUnauthorized, typ: typeInvalidRequest, code: "invalid_api_key", message: "A valid admin bearer token is required (Authorization: Bearer <token>)."}
	errAdminForbidden    = &apiError{status: fasthttp.StatusForbidden, typ: typePermission, code: "insufficient_role", message: "This admin token's role does not allow this request."}
	errAdminNoTokens     = &apiError{status: fasthttp.StatusForbidden, typ: typePermission, code: "admin_disabled", message: "No admin token is configured; set LLMGATE_ADMIN_TOKEN or admin.tokens to use this endpoint."}
)

// authorize checks the request's bearer token against every configured token in constant time
// and returns the token's name, or the error to answer with.
func (g *Gateway) authorize(ctx *fasthttp.RequestCtx, role string) (string, *apiError) {
	if len(g.adminTokens) == 0 {
		return "", errAdminNoTokens
	}
	token, ok := bearerToken(ctx.Request.Header.Peek("Authorization"))
	if !ok || len(token) == 0 {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="llmgate admin"`)
		return "", errAdminUnauthorized
	}
	// Digests, not the tokens: ConstantTimeCompare returns at once for slices of different
	// lengths, which would tell a client each token's length.
	presented := sha256.Sum256(token)
	var match *adminToken
	for i := range g.adminTokens {
		// Compare with every token, without stopping early, so timing says nothing about which
		// token (if any) is close.
		if subtle.ConstantTimeCompare(presented[:], g.adminTokens[i].digest[:]) == 1 {
			match = &g.adminTokens[i]
		}
	}
	if match == nil {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="llmgate admin", error="invalid_token"`)
		return "", errAdminUnauthorized
	}
	if role == roleAdmin && match.role != roleAdmin {
		return "", errAdminForbidden
	}
	return match.name, nil
}

// bearerToken returns the token of an Authorization header of the Bearer scheme, and whether it
// is of that scheme: "Bearer", in any case (RFC 9110 11.1), then one or more spaces (RFC 6750
// 2.1: "Bearer" 1*SP b64token; a tab too, as whitespace is read leniently), then the token,
// which may be empty. The admin API and the data plane's sticky api_key read the header alike.
func bearerToken(a []byte) ([]byte, bool) {
	const scheme = "Bearer"
	if len(a) < len(scheme) || !bytes.EqualFold(a[:len(scheme)], []byte(scheme)) {
		return nil, false
	}
	rest := a[len(scheme):]
	if len(rest) == 0 {
		return rest, true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return nil, false // another scheme whose name begins with Bearer
	}
	return bytes.TrimLeft(rest, " \t"), true
}
