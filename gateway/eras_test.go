//go:build integration

package gateway_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestGoSDKNegotiatesEachEra: the Go SDK client in its default
// configuration (it asks server/discover first, then falls back to
// initialize) through the gateway in front of each upstream kind: it
// negotiates the stateless revision where the upstream's era allows it (a
// stateless upstream; a session-era one with -advertise-stateless), a
// resumable session otherwise, and completes a tool call with progress.
func TestGoSDKNegotiatesEachEra(t *testing.T) {
	everything := testenv.Env(t, "MCPGATE_EVERYTHING_SERVER")
	gwBin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	for _, c := range []struct {
		name     string
		upstream func(t *testing.T) string
		flags    []string
		want     string
	}{
		{"stateless upstream", func(t *testing.T) string { return testenv.StartEverything(t, everything, false).URL }, nil, "2026-07-28"},
		{"session-era upstream", func(t *testing.T) string { return testenv.StartEverything(t, everything, true).URL }, nil, "2025-11-25"},
		{"session-era upstream, stateless advertised", func(t *testing.T) string { return testenv.StartEverything(t, everything, true).URL },
			[]string{"-advertise-stateless"}, "2026-07-28"},
		{"stdio upstream", func(*testing.T) string { return "stdio:" + everything }, nil, "2025-11-25"},
		{"stdio upstream, stateless advertised", func(*testing.T) string { return "stdio:" + everything }, []string{"-advertise-stateless"}, "2026-07-28"},
	} {
		t.Run(c.name, func(t *testing.T) {
			gw := testenv.StartGateway(t, gwBin, c.upstream(t), c.flags...)
			var mu sync.Mutex
			var progress []float64
			cs := connectDefault(t, gw.URL, &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
					mu.Lock()
					progress = append(progress, r.Params.Progress)
					mu.Unlock()
				},
			})
			defer cs.Close()
			assert.Equal(t, c.want, cs.InitializeResult().ProtocolVersion)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
			params.SetProgressToken("era")
			res, err := cs.CallTool(ctx, params)
			require.NoError(t, err)
			require.False(t, res.IsError, "%v", res.Content)
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(progress) == 3 }, 10*time.Second, 10*time.Millisecond,
				"the three progress notifications")
			mu.Lock()
			assert.Equal(t, []float64{0, 50, 100}, progress)
			mu.Unlock()
		})
	}
}
