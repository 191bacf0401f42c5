package gateway_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

const (
	issuer   = "https://issuer.example"
	audience = "https://gateway.example/mcp"
)

// issuerKeys signs access tokens with an RSA key published in a JWKS.
type issuerKeys struct {
	key  *rsa.PrivateKey
	jwks *httptest.Server
}

func newIssuer(t *testing.T) *issuerKeys {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	store := jwkset.NewMemoryStorage()
	jwk, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: jwkset.AlgRS256, USE: jwkset.UseSig}})
	require.NoError(t, err)
	require.NoError(t, store.KeyWrite(context.Background(), jwk))
	body, err := store.JSONPublic(context.Background())
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return &issuerKeys{key: k, jwks: srv}
}

// token signs a token for sub with the claims of a valid one, changed by
// edit.
func (is *issuerKeys) token(t *testing.T, sub string, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "mcp"}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(is.key)
	require.NoError(t, err)
	return s
}

func (is *issuerKeys) verifier(t *testing.T) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.VerifierConfig{JWT: &auth.JWTConfig{JWKSURL: is.jwks.URL, Issuer: issuer, Audience: []string{audience}}})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

// authServer serves the gateway with cfg on loopback and returns its base
// URL (http://127.0.0.1:port).
func authServer(t *testing.T, cfg gateway.Config) (*gateway.Server, string) {
	t.Helper()
	if cfg.Upstream == nil {
		up := testenv.NewFakeUpstream(t)
		up.On("tools/list", testenv.Result(`{"tools":[]}`))
		cfg.Upstream = up
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DrainWindow = -1
	srv, err := gateway.New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.NoError(t, <-served)
	})
	return srv, "http://" + ln.Addr().String()
}

var noKeepAlive = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// call sends one request to the endpoint with the bearer token (none if
// "") and returns the response with its body read.
func call(t *testing.T, base, method, token, sid, body string, extra ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+"/mcp", rd)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/json, text/event-stream")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := noKeepAlive.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		return resp, line
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const initJSON = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// TestAuthRefusals: a request without a valid token gets 401 with the
// challenge naming the protected resource metadata (and, for a presented
// token, invalid_token with a reason); one with a valid token goes through.
func TestAuthRefusals(t *testing.T) {
	is := newIssuer(t)
	_, base := authServer(t, gateway.Config{Authenticator: is.verifier(t)})
	metadata := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp"`

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	forged := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	forged.Header["kid"] = "k1"
	forgedTok, err := forged.SignedString(other)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: func() []byte {
		b, err := x509.MarshalPKIXPublicKey(&is.key.PublicKey)
		require.NoError(t, err)
		return b
	}()})
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	hs.Header["kid"] = "k1"
	hsTok, err := hs.SignedString(pubPEM)
	require.NoError(t, err)
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	for _, c := range []struct {
		name, header, reason string
	}{
		{"missing", "", ""},
		{"not bearer", "Basic YWxpY2U6eA==", ""},
		{"malformed", "Bearer not-a-jwt", "malformed token"},
		{"expired", "Bearer " + is.token(t, "alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), "token expired"},
		{"not yet valid", "Bearer " + is.token(t, "alice", func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), "token not valid yet"},
		{"wrong issuer", "Bearer " + is.token(t, "alice", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), "wrong issuer"},
		{"wrong audience", "Bearer " + is.token(t, "alice", func(c jwt.MapClaims) { c["aud"] = "https://elsewhere.example/mcp" }), "wrong audience"},
		{"alg none", "Bearer " + noneTok, "algorithm not accepted"},
		{"HS256 with the public key", "Bearer " + hsTok, "algorithm not accepted"},
		{"wrong signature", "Bearer " + forgedTok, "bad signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(initJSON))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			resp, err := noKeepAlive.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			ch := resp.Header.Get("WWW-Authenticate")
			assert.True(t, strings.HasPrefix(ch, metadata), "challenge %q", ch)
			if c.reason == "" {
				assert.NotContains(t, ch, "error=", "no error code without a token (RFC 6750 section 3.1)")
			} else {
				assert.Contains(t, ch, `error="invalid_token", error_description="`+c.reason+`"`)
			}
			assert.Contains(t, string(body), `"code":-32000`)
		})
	}
	resp, body := call(t, base, http.MethodPost, is.token(t, "alice", nil), "", initJSON)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)

	// The metadata the challenge names.
	mr, err := noKeepAlive.Get(base + "/.well-known/oauth-protected-resource/mcp")
	require.NoError(t, err)
	mb, _ := io.ReadAll(mr.Body)
	_ = mr.Body.Close()
	assert.Equal(t, http.StatusOK, mr.StatusCode)
	assert.JSONEq(t, `{"resource":"`+base+`/mcp","authorization_servers":[],"bearer_methods_supported":["header"]}`, string(mb))
}

// TestAuthScope: a valid token without a required scope gets 403
// insufficient_scope naming the scopes.
func TestAuthScope(t *testing.T) {
	is := newIssuer(t)
	_, base := authServer(t, gateway.Config{
		Authenticator: is.verifier(t), RequiredScopes: []string{"mcp", "tools"},
		ResourceURL: "https://gateway.example/mcp", AuthorizationServers: []string{issuer},
	})
	resp, _ := call(t, base, http.MethodPost, is.token(t, "alice", nil), "", initJSON)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `Bearer error="insufficient_scope", scope="mcp tools", resource_metadata="https://gateway.example/.well-known/oauth-protected-resource/mcp"`,
		resp.Header.Get("WWW-Authenticate"))
	resp, body := call(t, base, http.MethodPost, is.token(t, "alice", func(c jwt.MapClaims) { c["scope"] = "tools mcp extra" }), "", initJSON)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)

	mr, err := noKeepAlive.Get(base + "/.well-known/oauth-protected-resource")
	require.NoError(t, err)
	mb, _ := io.ReadAll(mr.Body)
	_ = mr.Body.Close()
	assert.JSONEq(t, `{"resource":"https://gateway.example/mcp","authorization_servers":["`+issuer+`"],"scopes_supported":["mcp","tools"],"bearer_methods_supported":["header"]}`, string(mb))
}

// TestSessionBoundToPrincipal: a session answers only the principal that
// created it; another principal's token gets 404 on every method, as if
// the session did not exist, and the attempts are counted; the owner is
// not disturbed.
func TestSessionBoundToPrincipal(t *testing.T) {
	is := newIssuer(t)
	srv, base := authServer(t, gateway.Config{Authenticator: is.verifier(t)})
	alice, bob := is.token(t, "alice", nil), is.token(t, "bob", nil)
	resp, body := call(t, base, http.MethodPost, alice, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	sid := resp.Header.Get("Mcp-Session-Id")
	resp, line := call(t, base, http.MethodGet, alice, sid, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, ": ok\n", line)

	for _, c := range []struct {
		method, body string
		extra        []string
	}{
		{http.MethodPost, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, nil},
		{http.MethodPost, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil},
		{http.MethodGet, "", nil},
		{http.MethodGet, "", []string{"Last-Event-ID", "0_0"}},
		{http.MethodDelete, "", nil},
	} {
		resp, body := call(t, base, c.method, bob, sid, c.body, c.extra...)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s %v", c.method, c.extra)
		assert.Contains(t, body, `"code":-32001`)
	}
	assert.Equal(t, uint64(5), srv.Metrics().PrincipalMismatches)
	resp, body = call(t, base, http.MethodPost, alice, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	resp, _ = call(t, base, http.MethodDelete, alice, sid, "")
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
}

// recordingUpstream is a Streamable HTTP upstream that records the
// Authorization header of every request it gets.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD Authorization"
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	ru := &recordingUpstream{}
	ru.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b []byte
		if r.Method == http.MethodPost {
			b, _ = io.ReadAll(r.Body)
		}
		// The gateway's own era probe at start (server/discover) is made
		// for no client and carries no client credential: not recorded.
		if !strings.Contains(string(b), `"server/discover"`) {
			ru.mu.Lock()
			ru.seen = append(ru.seen, r.Method+" "+r.Header.Get("Authorization"))
			ru.mu.Unlock()
		}
		w.Header().Set("Mcp-Session-Id", "up-1")
		switch r.Method {
		case http.MethodPost:
			switch {
			case strings.Contains(string(b), `"initialize"`):
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"up","version":"1"}}}`)
			case strings.Contains(string(b), `"id"`):
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`)
			default:
				w.WriteHeader(http.StatusAccepted)
			}
		case http.MethodGet:
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(ru.Close)
	return ru
}

func (ru *recordingUpstream) all() []string {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return append([]string(nil), ru.seen...)
}

// TestNoTokenPassthrough: the client's bearer token never reaches the
// upstream by default, on any request the gateway makes for it (initialize,
// messages, the standalone stream, the DELETE); a static upstream
// credential replaces it; forwarding sends the client's own, knowingly.
func TestNoTokenPassthrough(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte("client-secret-token-0123 alice\n"), 0o600))
	for _, c := range []struct {
		name    string
		auth    upstream.AuthHeader
		forward bool
		want    string
	}{
		{"default", upstream.AuthHeader{}, false, ""},
		{"static", upstream.AuthHeader{Name: "Authorization", Value: "Bearer upstream-credential"}, false, "Bearer upstream-credential"},
		{"forward", upstream.AuthHeader{Name: "Authorization", Forward: true}, true, "Bearer client-secret-token-0123"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ru := newRecordingUpstream(t)
			tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: ru.URL + "/mcp", Timeout: 5 * time.Second, Auth: c.auth})
			require.NoError(t, err)
			v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: path})
			require.NoError(t, err)
			t.Cleanup(v.Close)
			_, base := authServer(t, gateway.Config{Upstream: tr, Authenticator: v, ForwardAuthorization: c.forward})
			tok := "client-secret-token-0123"
			resp, body := call(t, base, http.MethodPost, tok, "", initJSON)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			sid := resp.Header.Get("Mcp-Session-Id")
			resp, body = call(t, base, http.MethodPost, tok, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
			require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
			resp, body = call(t, base, http.MethodPost, tok, sid, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			resp, _ = call(t, base, http.MethodGet, tok, sid, "")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Eventually(t, func() bool {
				for _, s := range ru.all() {
					if strings.HasPrefix(s, "GET") {
						return true
					}
				}
				return false
			}, 10*time.Second, 5*time.Millisecond, "the standalone stream is opened upstream")
			resp, _ = call(t, base, http.MethodDelete, tok, sid, "")
			require.Equal(t, http.StatusNoContent, resp.StatusCode)
			seen := ru.all()
			methods := map[string]bool{}
			for _, s := range seen {
				m, v, _ := strings.Cut(s, " ")
				methods[m] = true
				assert.Equal(t, c.want, v, "%s carried %q", m, v)
				if !c.forward {
					assert.NotContains(t, v, "client-secret", "the client's token reached the upstream")
				}
			}
			assert.Equal(t, map[string]bool{"POST": true, "GET": true, "DELETE": true}, methods)
		})
	}
}

// panicky is an Authenticator with a bug: it panics on one token.
type panicky struct{}

func (panicky) Authenticate(token []byte) (auth.Identity, error) {
	if string(token) == "boom" {
		panic("authenticator bug")
	}
	return auth.Identity{Principal: "alice", AllScopes: true}, nil
}

// TestPanicIsContained: a panic while serving a request (here in a buggy
// Authenticator) is answered 500 and logged; the gateway keeps serving.
func TestPanicIsContained(t *testing.T) {
	_, base := authServer(t, gateway.Config{Authenticator: panicky{}})
	resp, body := call(t, base, http.MethodPost, "boom", "", initJSON)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Contains(t, body, `"code":-32603`)
	resp, body = call(t, base, http.MethodPost, "fine", "", initJSON)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
}
