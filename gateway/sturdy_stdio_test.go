//go:build integration && linux

package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestCutsGoSDKStdioUpstream: the zero-loss test of TestCutsGoSDK with a
// stdio upstream. The Go SDK client in its default configuration calls
// the test stdio server's stream tool (10,000 progress notifications at
// 1,000/s from the child's stdout, then the result) while the relay cuts
// its POST answer stream, its standalone stream, or both, 100 times; a
// notifications/tools/list_changed the child sends after every 4th cut
// (and after the call) must reach the client's standalone stream. Every
// progress value arrives exactly once, in order, and the result once:
// the gateway's rings resume what the child, which has no resumption of
// its own, sent while the client was away.
func TestCutsGoSDKStdioUpstream(t *testing.T) {
	server := buildStdioServer(t)
	for i, kc := range cutKinds {
		t.Run("cut="+kc.name, func(t *testing.T) {
			start := time.Now()
			gw := startStdioGateway(t, server, gatewayFlags...)
			relay := testenv.StartRelay(t, hostPort(t, gw.URL))
			progress, changed := newEventLog(), newEventLog()
			cs := connectDefault(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
					progress.add(int(r.Params.Progress))
				},
				ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed.add(1) },
			})
			defer cs.Close()
			n := &notifier{gwURL: gw.URL, sid: cs.ID(), version: cs.InitializeResult().ProtocolVersion,
				method: "tools/call", params: map[string]any{"name": "notify"}, got: changed, relay: relay}

			params := &mcp.CallToolParams{Name: "stream", Arguments: map[string]any{"count": streamCount, "rate": 1000}}
			params.SetProgressToken("sturdy-stdio")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cuts := startCutter(relay, mockCuts(kc.kind, n), uint64(50+i), progress.firstAdded())
			res, err := cs.CallTool(ctx, params)
			cut, cutErr := cuts.finish()
			t.Logf("cuts=%d by kind=%v relay accepted=%d", cut, cuts.byKind, relay.Accepted())
			require.NoError(t, err, "the call (after %d cuts)", cut)
			require.NoError(t, cutErr)
			require.False(t, res.IsError, "%v", res.Content)
			sc, _ := res.StructuredContent.(map[string]any)
			assert.Equal(t, float64(streamCount), sc["emitted"])
			assert.Equal(t, 100, cut, "the relay cut 100 times during the call")
			require.NoError(t, n.notify("after the call"))
			m := scrape(t, gw)
			t.Logf("drops: transport stream_full=%v standalone_full=%v unroutable=%v; rings: %v",
				m[`mcpgate_upstream_messages_dropped_total{reason="stream_full"}`], m[`mcpgate_upstream_messages_dropped_total{reason="standalone_full"}`],
				m[`mcpgate_upstream_messages_dropped_total{reason="unroutable"}`], lostByCounters(m))
			assertExactlyOnceInOrder(t, progress, streamCount)

			if kc.kind&testenv.ConnAnswer != 0 {
				assert.GreaterOrEqual(t, m["mcpgate_resume_hits_total"], 50.0, "the client resumed its answer by Last-Event-ID")
			}
			assert.Zero(t, lostByCounters(m), "nothing dropped with a ring large enough")
			assert.Zero(t, m[`mcpgate_upstream_messages_dropped_total{reason="stream_full"}`]+m[`mcpgate_upstream_messages_dropped_total{reason="standalone_full"}`],
				"nothing dropped between the child and the rings")
			assert.Equal(t, 1.0, m["mcpgate_upstream_processes"], "one process for the session")
			t.Logf("resumes=%v notifications=%d took %v", m["mcpgate_resume_hits_total"], changed.len(), time.Since(start).Round(time.Millisecond))
		})
	}
}
