package gateway_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
)

// TestEvictIdleSparesOthersWhenPrincipalAtCap: an initialize that its
// principal's own cap (MaxSessionsPerPrincipal) refuses must not first end
// another principal's idle session to make room at MaxSessions: otherwise
// a client at its cap evicts everyone else's sessions, one refused
// initialize at a time.
func TestEvictIdleSparesOthersWhenPrincipalAtCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	const alice, bob = "alice-secret-token-0123", "bob-secret-token-456789"
	require.NoError(t, os.WriteFile(path, []byte(alice+" alice\n"+bob+" bob\n"), 0o600))
	v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: path})
	require.NoError(t, err)
	srv, base := authServer(t, gateway.Config{Authenticator: v, MaxSessions: 2, EvictIdle: true,
		MaxSessionsPerPrincipal: 1, UpstreamEra: gateway.UpstreamEraSession})

	resp, _ := call(t, base, http.MethodPost, alice, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	aliceSID := resp.Header.Get("Mcp-Session-Id")
	time.Sleep(150 * time.Millisecond) // alice's session is the least recently active
	resp, _ = call(t, base, http.MethodPost, bob, "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, body := call(t, base, http.MethodPost, bob, "", initJSON)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, body)

	resp, body = call(t, base, http.MethodPost, alice, aliceSID, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "alice's session was evicted by bob's refused initialize: %s", body)
	assert.Zero(t, srv.Metrics().Evictions)
}

// TestEvictIdleSparesOthersOnRefusedInitialize: an initialize refused as
// malformed (a notification, without an id) must not evict a session
// either.
func TestEvictIdleSparesOthersOnRefusedInitialize(t *testing.T) {
	_, base := authServer(t, gateway.Config{MaxSessions: 1, EvictIdle: true, UpstreamEra: gateway.UpstreamEraSession})
	resp, _ := call(t, base, http.MethodPost, "", "", initJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sid := resp.Header.Get("Mcp-Session-Id")
	resp, body := call(t, base, http.MethodPost, "", "", `{"jsonrpc":"2.0","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	resp, body = call(t, base, http.MethodPost, "", sid, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the session was evicted for an initialize that was refused: %s", body)
}
