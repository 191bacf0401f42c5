//go:build !race

package gateway

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/auth"
)

// requestCtx parses a raw request into a RequestCtx, as the server would.
func requestCtx(t *testing.T, raw string) *fasthttp.RequestCtx {
	t.Helper()
	var req fasthttp.Request
	require.NoError(t, req.Read(bufio.NewReader(strings.NewReader(raw))))
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	return &ctx
}

// TestRequestChecksAllocs: what every request passes before it reaches a
// session (admit, authenticate with a static token or a cached JWT, the
// failed-authentication limit, the rate limit) allocates nothing.
func TestRequestChecksAllocs(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	tokFile := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(tokFile, []byte("static-token-0123456789 alice\n"), 0o600))
	v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: tokFile,
		JWT: &auth.JWTConfig{KeyFile: keyFile, Issuer: "https://i", Audience: []string{"https://a"}}})
	require.NoError(t, err)
	defer v.Close()
	jwtTok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": "https://i", "aud": "https://a", "sub": "bob", "scope": "mcp", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(key)
	require.NoError(t, err)

	s := newTestServer(t, Config{Authenticator: v, RequiredScopes: []string{"mcp"}, RateLimit: 1e9, RateBurst: 1 << 30})
	// Another address has failed lately: the failure limit looks this
	// request's address up (limits.go).
	s.authFailed("", netip.MustParseAddr("192.0.2.1"), true)
	for name, token := range map[string]string{"static": "static-token-0123456789", "cached JWT": jwtTok} {
		ctx := requestCtx(t, "POST /mcp HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://localhost:5173\r\n"+
			"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
			"Authorization: Bearer "+token+"\r\nMcp-Session-Id: 0123456789abcdef0123456789abcdef\r\n"+
			"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: 2\r\n\r\n{}")
		step := func() {
			if !s.admit(ctx) {
				t.Fatalf("%s: refused by admit: %s", name, ctx.Response.Body())
			}
			if _, ok := s.authenticate(ctx); !ok {
				t.Fatalf("%s: refused by authenticate: %s", name, ctx.Response.Body())
			}
		}
		for i := 0; i < 10; i++ {
			step() // the JWT's first check fills the cache; limiters are made
		}
		allocs := testing.AllocsPerRun(1000, step)
		require.Zero(t, allocs, "%s: allocations per request in admit and authenticate", name)
	}
}
