//go:build integration

package gateway_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// bearerTransport adds a bearer token to every request.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func writeTokens(t *testing.T, path string, lines ...string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
}

// TestAuthWithTheGoSDK: the gateway with static tokens in front of the
// reference server, driven by the official Go SDK client with a bearer
// token; without one the client cannot connect; another principal cannot
// use the session; SIGHUP reloads the tokens.
func TestAuthWithTheGoSDK(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, tokens, "alice-token-0123456789abcdef alice", "bob-token-0123456789abcdef bob")
	s := startStack(t, "-auth-tokens-file", tokens, "-rate-limit", "1000", "-max-sessions-per-principal", "10")
	require.True(t, s.gw.WaitStderr("authentication on", 5*time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-test", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.gw.URL,
		HTTPClient: &http.Client{Transport: bearerTransport{"alice-token-0123456789abcdef"}}}, nil)
	require.NoError(t, err)
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	require.NoError(t, err)
	assert.NotEmpty(t, textOf(t, res))

	_, err = mcp.NewClient(&mcp.Implementation{Name: "anonymous", Version: "1.0.0"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.gw.URL}, nil)
	assert.Error(t, err, "no token, no session")

	code, body := rawPost(t, s.gw.URL, cs.ID(), `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`,
		map[string]string{"Authorization": "Bearer bob-token-0123456789abcdef", "MCP-Protocol-Version": "2025-11-25"})
	assert.Equal(t, http.StatusNotFound, code, "%s", body)
	assert.True(t, s.gw.WaitStderr("session used by another principal", 5*time.Second))
	assert.NotContains(t, s.gw.Stderr(), cs.ID(), "the session id is logged shortened")

	// SIGHUP: bob's token is revoked, carol's added.
	writeTokens(t, tokens, "alice-token-0123456789abcdef alice", "carol-token-0123456789abcdef carol")
	require.NoError(t, s.gw.Signal(syscall.SIGHUP))
	require.True(t, s.gw.WaitStderr("reloaded on SIGHUP", 10*time.Second))
	code, _ = rawPost(t, s.gw.URL, "", initBodyFor("2025-06-18"), map[string]string{"Authorization": "Bearer bob-token-0123456789abcdef"})
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = rawPost(t, s.gw.URL, "", initBodyFor("2025-06-18"), map[string]string{"Authorization": "Bearer carol-token-0123456789abcdef"})
	assert.Equal(t, http.StatusOK, code)
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	require.NoError(t, err, "alice's session lives on")
	assert.NotEmpty(t, textOf(t, res))

	// A tokens file that no longer parses keeps the tokens loaded.
	require.NoError(t, os.WriteFile(tokens, []byte("short carol\n"), 0o600))
	require.NoError(t, s.gw.Signal(syscall.SIGHUP))
	require.True(t, s.gw.WaitStderr("reload on SIGHUP failed", 10*time.Second))
	code, _ = rawPost(t, s.gw.URL, "", initBodyFor("2025-06-18"), map[string]string{"Authorization": "Bearer carol-token-0123456789abcdef"})
	assert.Equal(t, http.StatusOK, code)
}

func initBodyFor(version string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + version +
		`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
}

// TestWarnsWhenExposedWithoutAuth: a gateway listening beyond loopback
// without authentication says so at start; on loopback it does not.
func TestWarnsWhenExposedWithoutAuth(t *testing.T) {
	up := testenv.StartEverything(t, testenv.Env(t, "MCPGATE_EVERYTHING_SERVER"), true)
	bin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	exposed := testenv.StartGateway(t, bin, up.URL, "-listen", "0.0.0.0:0")
	assert.True(t, exposed.WaitStderr("without authentication", 5*time.Second), exposed.Stderr())
	local := testenv.StartGateway(t, bin, up.URL)
	require.True(t, local.WaitStderr("gateway started", 5*time.Second))
	assert.NotContains(t, local.Stderr(), "without authentication")
}
