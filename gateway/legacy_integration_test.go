//go:build integration

package gateway_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// runTSLegacyClient runs testdata/ts_legacy_client.mjs (the TypeScript
// SDK's SSEClientTransport) against sseURL and returns its stdout lines;
// it fails the test if the client failed.
func runTSLegacyClient(t *testing.T, sseURL string) []string {
	t.Helper()
	node := testenv.Env(t, "MCPGATE_NODE")
	sdkDir := testenv.Env(t, "MCPGATE_TS_SDK_DIR")
	// ESM resolves packages from the script's folder: run a copy inside the
	// SDK's install folder, under a name of its own.
	src, err := os.ReadFile("testdata/ts_legacy_client.mjs")
	require.NoError(t, err)
	f, err := os.CreateTemp(sdkDir, "ts_legacy_client-*.mjs")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.Remove(f.Name()) })
	_, err = f.Write(src)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr testenv.Buffer
	cmd := exec.CommandContext(ctx, node, f.Name(), sseURL)
	cmd.Dir = sdkDir
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, err, "node client: stdout:\n%s\nstderr:\n%s", out, stderr.String())
	return lines
}

// TestLegacyClientTypeScriptSDK: the TypeScript SDK's SSEClientTransport,
// through the gateway's legacy endpoints, in front of the reference server
// run over Streamable HTTP and as a stdio process: it lists tools, calls
// one with progress (every value once, in order), receives
// notifications/tools/list_changed, answers a sampling request, and closes.
// Closing its stream ends the session (and the stdio process) at the
// gateway.
func TestLegacyClientTypeScriptSDK(t *testing.T) {
	everything := testenv.Env(t, "MCPGATE_EVERYTHING_SERVER")
	for _, kind := range []string{"http", "stdio"} {
		t.Run("upstream="+kind, func(t *testing.T) {
			upstreamURL := "stdio:" + everything
			if kind == "http" {
				upstreamURL = testenv.StartEverything(t, everything, true).URL
			}
			// Short heartbeats: the gateway learns of the closed stream at
			// its next write.
			gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), upstreamURL, "-heartbeat", "200ms")
			lines := runTSLegacyClient(t, strings.TrimSuffix(gw.URL, "/mcp")+"/sse")
			assert.Equal(t, []string{
				"session 2025-11-25",
				lines[1], // tools <n>
				"progress 0", "progress 50", "progress 100",
				"result 2",
				"list_changed",
				"sampling LLM response: answer to hello (asked 1)",
				"done",
			}, lines)
			require.Regexp(t, `^tools \d\d+$`, lines[1])

			// One scrape reads the live sessions before the closed counts:
			// a session ending in between shows as both live and closed, so
			// wait for both.
			m := waitMetric(t, gw, 10*time.Second, "the legacy session ended with its stream", func(m map[string]float64) bool {
				return m[`mcpgate_sessions_closed_total{reason="client_gone"}`] >= 1 && m["mcpgate_sessions"] == 0
			})
			assert.Equal(t, 1.0, m["mcpgate_sessions_created_total"])
			if kind == "stdio" {
				// The transport's own counts, published as metrics: the
				// session's process was started and reaped.
				m = waitMetric(t, gw, 10*time.Second, "the process reaped", func(m map[string]float64) bool {
					return m["mcpgate_upstream_processes_reaped_total"] >= 1 && m["mcpgate_upstream_processes"] == 0
				})
				assert.Equal(t, 1.0, m["mcpgate_upstream_processes_started_total"])
			}
		})
	}
}

// TestLegacyClientGoSDK: the Go SDK's SSEClientTransport, a second legacy
// client implementation, through the gateway's legacy endpoints to the
// reference server as a stdio process: a call with progress and a
// sampling request.
func TestLegacyClientGoSDK(t *testing.T) {
	gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), "stdio:"+testenv.Env(t, "MCPGATE_EVERYTHING_SERVER"))
	progress := newEventLog()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-legacy-go", Version: "1.0.0"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			progress.add(int(r.Params.Progress))
		},
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "from the legacy client"}}, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.SSEClientTransport{Endpoint: strings.TrimSuffix(gw.URL, "/mcp") + "/sse"}, nil)
	require.NoError(t, err)
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
	params.SetProgressToken("legacy-go")
	res, err := cs.CallTool(ctx, params)
	require.NoError(t, err)
	assert.Equal(t, "legacy-go", textOf(t, res))
	require.True(t, progress.waitLen(3, 10*time.Second))
	assert.Equal(t, []int{0, 50, 100}, progress.snapshot())
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_sampling", Arguments: map[string]any{"prompt": "hi"}})
	require.NoError(t, err)
	assert.Contains(t, textOf(t, res), "from the legacy client")
}
