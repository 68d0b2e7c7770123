package gateway

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router/store"
)

func TestAdminAuth(t *testing.T) {
	t.Setenv("TEST_OPS_TOKEN", "s3cret-ops")
	t.Setenv("TEST_VIEW_TOKEN", "s3cret-view")
	withTokens := []config.AdminToken{
		{Name: "ops", TokenEnv: "TEST_OPS_TOKEN", Role: "admin"},
		{Name: "viewer", TokenEnv: "TEST_VIEW_TOKEN", Role: "read"},
	}
	tests := []struct {
		name   string
		tokens []config.AdminToken
		path   string
		auth   string
		want   int
		env    string // LLMGATE_ADMIN_TOKEN
	}{
		{"metrics are open", withTokens, "/metrics", "", 200, ""},
		{"profile without token", withTokens, "/debug/pprof/cmdline", "", 401, ""},
		{"profile with a wrong token", withTokens, "/debug/pprof/cmdline", "Bearer nope", 401, ""},
		{"profile with a token prefix", withTokens, "/debug/pprof/cmdline", "Bearer s3cret", 401, ""},
		{"profile without Bearer", withTokens, "/debug/pprof/cmdline", "s3cret-ops", 401, ""},
		{"profile with a read token", withTokens, "/debug/pprof/cmdline", "Bearer s3cret-view", 403, ""},
		{"profile with an admin token", withTokens, "/debug/pprof/cmdline", "Bearer s3cret-ops", 200, ""},
		{"scheme in lower case", withTokens, "/debug/pprof/cmdline", "bearer s3cret-ops", 200, ""},
		{"two spaces after the scheme", withTokens, "/debug/pprof/cmdline", "Bearer  s3cret-ops", 200, ""},
		{"a tab after the scheme", withTokens, "/debug/pprof/cmdline", "Bearer\ts3cret-ops", 200, ""},
		{"another scheme beginning with Bearer", withTokens, "/debug/pprof/cmdline", "Bearerx s3cret-ops", 401, ""},
		{"Bearer and spaces only", withTokens, "/debug/pprof/cmdline", "Bearer   ", 401, ""},
		{"profile with no token configured", nil, "/debug/pprof/cmdline", "Bearer s3cret-ops", 403, ""},
		{"unknown admin path", withTokens, "/v1/chat/completions", "", 404, ""},
		{"token from LLMGATE_ADMIN_TOKEN", nil, "/debug/pprof/cmdline", "Bearer env-s3cret", 200, "env-s3cret"},
		{"wrong token with LLMGATE_ADMIN_TOKEN", nil, "/debug/pprof/cmdline", "Bearer env-s3cre", 401, "env-s3cret"},
		{"admin.tokens win over LLMGATE_ADMIN_TOKEN", withTokens, "/debug/pprof/cmdline", "Bearer env-s3cret", 401, "env-s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("LLMGATE_ADMIN_TOKEN", tt.env)
			cfg := &config.Config{Admin: config.Admin{Tokens: tt.tokens}, Models: []config.Model{{Alias: "chat", Versions: []config.Version{{
				Version: "v1", Backends: []config.Backend{{URL: "http://127.0.0.1:1", Kind: "vllm", Model: "m"}},
			}}}}}
			cfg.ApplyDefaults()
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			g, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			req := &fasthttp.Request{}
			req.SetRequestURI(tt.path)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			ctx := &fasthttp.RequestCtx{}
			ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			g.handleAdmin(ctx)
			if got := ctx.Response.StatusCode(); got != tt.want {
				t.Fatalf("status %d, want %d: %s", got, tt.want, ctx.Response.Body())
			}
			// A 401 says how to authenticate (RFC 9110), as clients and proxies expect.
			if ch := string(ctx.Response.Header.Peek("WWW-Authenticate")); (tt.want == 401) != strings.HasPrefix(ch, "Bearer ") {
				t.Fatalf("status %d with WWW-Authenticate %q", tt.want, ch)
			}
		})
	}
}

func TestAdminTokenEnvMissing(t *testing.T) {
	cfg := &config.Config{Admin: config.Admin{Tokens: []config.AdminToken{{Name: "ops", TokenEnv: "TEST_UNSET_TOKEN_VAR", Role: "admin"}}},
		Models: []config.Model{{Alias: "chat", Versions: []config.Version{{Version: "v1", Backends: []config.Backend{{URL: "http://127.0.0.1:1", Model: "m"}}}}}}}
	cfg.ApplyDefaults()
	if _, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()}); err == nil {
		t.Fatal("New accepted an admin token whose environment variable is empty")
	}
}

// Two tokens with the same secret are refused at start: the one compared last would decide the
// role, so a read-only token could also be an admin's.
func TestAdminTokensShareASecret(t *testing.T) {
	t.Setenv("TEST_VIEW_TOKEN", "same")
	t.Setenv("TEST_OPS_TOKEN", "same")
	cfg := &config.Config{Admin: config.Admin{Tokens: []config.AdminToken{
		{Name: "dash", TokenEnv: "TEST_VIEW_TOKEN", Role: "read"}, {Name: "ops", TokenEnv: "TEST_OPS_TOKEN", Role: "admin"}}},
		Models: []config.Model{{Alias: "chat", Versions: []config.Version{{Version: "v1", Backends: []config.Backend{{URL: "http://127.0.0.1:1", Model: "m"}}}}}}}
	cfg.ApplyDefaults()
	_, err := New(cfg, Options{LogOutput: io.Discard, Store: store.NewMemory()})
	if want := `admin token "ops": its variable TEST_OPS_TOKEN holds the same token as admin token "dash"'s`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("New: %v; want an error saying %q", err, want)
	}
}

// The admin API and the data plane's sticky api_key read a bearer token alike.
func TestBearerToken(t *testing.T) {
	for _, tt := range []struct {
		in, token string
		ok        bool
	}{
		{"Bearer k", "k", true},
		{"bearer k", "k", true},
		{"Bearer  k", "k", true},
		{"Bearer\tk", "k", true},
		{"Bearer", "", true},
		{"Bearerk", "", false},
		{"Basic k", "", false},
		{"k", "", false},
	} {
		token, ok := bearerToken([]byte(tt.in))
		if string(token) != tt.token || ok != tt.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.in, token, ok, tt.token, tt.ok)
		}
	}
}
