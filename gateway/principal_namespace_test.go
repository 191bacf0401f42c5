package gateway_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// staticAndJWT is a verifier taking both the static token staticAlice,
// which the tokens file names "alice", and the issuer's JWTs.
func staticAndJWT(t *testing.T, is *issuerKeys) *auth.Verifier {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte(staticAlice+" alice\n"), 0o600))
	v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: path,
		JWT: &auth.JWTConfig{JWKSURL: is.jwks.URL, Issuer: issuer, Audience: []string{audience}}})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

const staticAlice = "alice-static-token-0123456789"

// TestStaticAndJWTPrincipalsApart: the operator's static token names and
// an issuer's JWT subjects are different namespaces, even when they are
// spelt the same: a JWT with sub "alice" gets 404 for the session of the
// static token naming "alice", and the other way round.
func TestStaticAndJWTPrincipalsApart(t *testing.T) {
	is := newIssuer(t)
	srv, base := authServer(t, gateway.Config{Authenticator: staticAndJWT(t, is)})
	jwtAlice := is.token(t, "alice", nil)

	resp, body := call(t, base, http.MethodPost, staticAlice, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	staticSID := resp.Header.Get("Mcp-Session-Id")
	resp, body = call(t, base, http.MethodPost, jwtAlice, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	jwtSID := resp.Header.Get("Mcp-Session-Id")

	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	for _, c := range []struct{ name, token, sid string }{
		{"JWT alice on static alice's session", jwtAlice, staticSID},
		{"static alice on JWT alice's session", staticAlice, jwtSID},
	} {
		resp, body := call(t, base, http.MethodPost, c.token, c.sid, list)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", c.name, body)
		resp, _ = call(t, base, http.MethodDelete, c.token, c.sid, "")
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: DELETE", c.name)
	}
	assert.Equal(t, uint64(4), srv.Metrics().PrincipalMismatches)
	for _, c := range []struct{ token, sid string }{{staticAlice, staticSID}, {jwtAlice, jwtSID}} {
		resp, body := call(t, base, http.MethodPost, c.token, c.sid, list)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "the owner is served: %s", body)
	}
}

// TestStaticAndJWTPrincipalsCapApart: a JWT subject and a static token's
// principal of the same name have a session cap each.
func TestStaticAndJWTPrincipalsCapApart(t *testing.T) {
	is := newIssuer(t)
	_, base := authServer(t, gateway.Config{Authenticator: staticAndJWT(t, is), MaxSessionsPerPrincipal: 1})
	jwtAlice := is.token(t, "alice", nil)
	resp, body := call(t, base, http.MethodPost, staticAlice, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	resp, body = call(t, base, http.MethodPost, jwtAlice, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the JWT subject alice is held to the static principal alice's cap: %s", body)
	for _, tok := range []string{staticAlice, jwtAlice} {
		resp, body = call(t, base, http.MethodPost, tok, "", initJSON)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "each is at its own cap: %s", body)
	}
}

// TestStaticAndJWTPrincipalsRateApart: a JWT subject and a static token's
// principal of the same name have a rate limit each.
func TestStaticAndJWTPrincipalsRateApart(t *testing.T) {
	is := newIssuer(t)
	_, base := authServer(t, gateway.Config{Authenticator: staticAndJWT(t, is), RateLimit: 0.001, RateBurst: 1})
	resp, body := call(t, base, http.MethodPost, staticAlice, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	resp, _ = call(t, base, http.MethodPost, staticAlice, "", initJSON)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "static alice's burst is spent")
	resp, body = call(t, base, http.MethodPost, is.token(t, "alice", nil), "", initJSON)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the JWT subject alice has a bucket of its own: %s", body)
}

// TestRestoreMapsPrincipalsOfOldRecords: a state file of the previous
// version holds bare names, a static token's principal or a JWT's sub
// alike. A name the tokens file names is the static token's (a JWT with
// that sub starts over: the record cannot say it opened the session); any
// other is the JWT subject's. Records written now keep their namespace.
func TestRestoreMapsPrincipalsOfOldRecords(t *testing.T) {
	is := newIssuer(t)
	fake := testenv.NewFakeUpstream(t)
	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	cfg := gateway.Config{Authenticator: staticAndJWT(t, is), Upstream: fake.Resumable(),
		StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1, MaxSessionsPerPrincipal: 2}
	jwtAlice, jwtBob := is.token(t, "alice", nil), is.token(t, "bob", nil)
	g1 := startLive(t, cfg)
	base := strings.TrimSuffix(g1.url, "/mcp")
	sids := map[string]string{}
	for name, tok := range map[string]string{"static alice": staticAlice, "JWT alice": jwtAlice, "JWT bob": jwtBob, "JWT bob 2": jwtBob} {
		resp, body := call(t, base, http.MethodPost, tok, "", initJSON)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		sids[name] = resp.Header.Get("Mcp-Session-Id")
	}
	g1.stop()

	// Rewrite the file as the previous version wrote it: bare names, no
	// namespace marker.
	n := rewriteState(t, cfg.StateFile, func(rec *sessionrec.Record) {
		assert.True(t, rec.Namespaced)
		rec.Namespaced, rec.Principal = false, strings.TrimPrefix(rec.Principal, auth.JWTPrincipalPrefix)
	})
	require.Equal(t, 4, n)

	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	check := func(base string, cases []struct {
		sid, token string
		want       int
	}) {
		t.Helper()
		for _, c := range cases {
			resp, body := call(t, base, http.MethodPost, c.token, c.sid, list)
			assert.Equal(t, c.want, resp.StatusCode, body)
		}
	}
	old := []struct {
		sid, token string
		want       int
	}{
		{sids["static alice"], staticAlice, http.StatusOK},
		{sids["static alice"], jwtAlice, http.StatusNotFound},
		{sids["JWT bob"], jwtBob, http.StatusOK},
		// "alice" is a static token's name: the record of the JWT's
		// session is given to the static token.
		{sids["JWT alice"], jwtAlice, http.StatusNotFound},
		{sids["JWT alice"], staticAlice, http.StatusOK},
	}
	g2 := startLive(t, cfg)
	check(strings.TrimSuffix(g2.url, "/mcp"), old)
	// The restored sessions count under the mapped principal: bob's two
	// hold jwt:bob's cap.
	resp, body := call(t, strings.TrimSuffix(g2.url, "/mcp"), http.MethodPost, jwtBob, "", initJSON)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the JWT subject bob is at its cap: %s", body)
	g2.stop()

	// Saved again by this version, the principals keep their namespace:
	// with the static token alice gone from the tokens file, its sessions
	// still do not pass to the JWT subject alice.
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte("carol-static-token-0123456789 carol\n"), 0o600))
	v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: path,
		JWT: &auth.JWTConfig{JWKSURL: is.jwks.URL, Issuer: issuer, Audience: []string{audience}}})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	cfg.Authenticator = v
	g3 := startLive(t, cfg)
	check(strings.TrimSuffix(g3.url, "/mcp"), []struct {
		sid, token string
		want       int
	}{
		{sids["static alice"], jwtAlice, http.StatusNotFound},
		{sids["JWT alice"], jwtAlice, http.StatusNotFound},
		{sids["JWT bob"], jwtBob, http.StatusOK},
	})
}
