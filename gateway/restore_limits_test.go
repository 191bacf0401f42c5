package gateway_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
}

func initializeFrom(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp.Header.Get("Mcp-Session-Id")
}

// TestRestoreKeepsAnonymousSessionsOfDistinctAddresses: with
// MaxSessionsPerPrincipal, anonymous sessions are counted per client
// address. Sessions of different addresses, each within its cap, must all
// survive a restart; they must not be counted as one owner on restore.
func TestRestoreKeepsAnonymousSessionsOfDistinctAddresses(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	cfg := gateway.Config{Upstream: fake.Resumable(), StateFile: filepath.Join(t.TempDir(), "state"),
		DrainWindow: -1, MaxSessionsPerPrincipal: 1}
	g1 := startLive(t, cfg)
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		initializeFrom(t, clientFrom(ip), g1.url)
	}
	require.Equal(t, 3, g1.srv.Metrics().Sessions)
	g1.stop()

	g2 := startLive(t, cfg)
	assert.Equal(t, 3, g2.srv.Metrics().Sessions, "every saved session restored")
}
