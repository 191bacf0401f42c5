package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestStandaloneTakeover: a GET for the standalone stream, plain or with
// Last-Event-ID, takes the stream over at once from an older connection of
// the session, whether that one is still open and reading, open but no
// longer read (as a half-open connection looks to the gateway until TCP
// gives up), or already closed by the client unnoticed: the new connection
// gets 200 and the stream's events (after Last-Event-ID; without it, from
// where the older connection started, since the client saw no event id),
// the old one is ended, and the replacement is counted.
func TestStandaloneTakeover(t *testing.T) {
	for _, old := range []string{"open", "half-open", "closed"} {
		for _, resume := range []bool{false, true} {
			name := old + "/plain"
			if resume {
				name = old + "/Last-Event-ID"
			}
			t.Run(name, func(t *testing.T) {
				up := testenv.NewFakeUpstream(t)
				srv, url := inProcessServer(t, up, gateway.Config{StreamSendBuffer: 4096})
				sid := initSession(t, url)
				a := testenv.DialStream(t, url, sid, "")
				up.WaitFor(t, "the upstream standalone stream", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })
				up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
				a.Until(t, "id: 0_1")
				switch old {
				case "half-open":
					// The client stops reading; the gateway's writes still
					// succeed into the socket buffers.
					for i := 0; i < 50; i++ {
						up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"` + strings.Repeat("x", 1000) + `"}}`)
					}
				case "closed":
					require.NoError(t, a.Conn.Close())
				}
				last := ""
				if resume {
					last = "0_1"
				}
				start := time.Now()
				b := testenv.DialStream(t, url, sid, last)
				assert.Less(t, time.Since(start), 2*time.Second, "no waiting for the old connection to let go")
				up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`)
				got := b.Until(t, "prompts/list_changed")
				if resume {
					assert.False(t, strings.Contains(got, "tools/list_changed"), "resumed after 0_1: it is not replayed")
				} else {
					// No Last-Event-ID: the client got no event id, so what the
					// older connection was given is replayed, not lost.
					assert.True(t, strings.Contains(got, "id: 0_1\n"), "the plain GET replays from where the older connection started")
				}
				if old != "closed" {
					a.Ended(t)
				}
				assert.Equal(t, uint64(1), srv.Metrics().Replacements)
				require.Eventually(t, func() bool { return srv.Metrics().StreamsClosed["replaced"] == 1 }, 5*time.Second, 5*time.Millisecond)
			})
		}
	}
}

// initSession opens a 2025-11-25 session through the gateway.
func initSession(t *testing.T, url string) string {
	t.Helper()
	return initSessionAt(t, url, "2025-11-25")
}

// initSessionAt is initSession asking for protocol version.
func initSessionAt(t *testing.T, url, version string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp.Header.Get("Mcp-Session-Id")
}
