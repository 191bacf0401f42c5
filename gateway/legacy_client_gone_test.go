package gateway

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// openLegacyStream GETs base's /sse on a raw connection and returns it
// with the message URL its endpoint event names.
func openLegacyStream(t *testing.T, base string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.Write([]byte("GET /sse HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"))
	require.NoError(t, err)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if ep, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
			return conn, br, base + ep
		}
	}
}

// TestLegacyStreamCloseSeenWithoutWrites: a legacy client that closes its
// stream while nothing is written to it (no answer due, the next heartbeat
// far) ends its session within a sweep, upstream side included (PROTOCOL.md
// rule 49), instead of when a later write to the closed connection fails:
// two heartbeats later, or never with heartbeats off. Messages POSTed
// after that get 404.
func TestLegacyStreamCloseSeenWithoutWrites(t *testing.T) {
	for _, hb := range []time.Duration{time.Minute, -1} {
		t.Run("heartbeat "+hb.String(), func(t *testing.T) {
			fake := testenv.NewFakeUpstream(t)
			_, url := liveServer(t, Config{Upstream: fake, Heartbeat: hb, SweepInterval: 50 * time.Millisecond})
			conn, br, msgURL := openLegacyStream(t, strings.TrimSuffix(url, "/mcp"))
			code, _, body := mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
			require.Equal(t, 202, code, body)
			for { // the answer arrives on the stream
				line, err := br.ReadString('\n')
				require.NoError(t, err)
				if strings.Contains(line, `"id":0`) {
					break
				}
			}
			code, _, body = mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
			require.Equal(t, 202, code, body)

			require.NoError(t, conn.Close())
			assert.Eventually(t, fake.Session(1).Closed, 3*time.Second, 10*time.Millisecond,
				"the stream's close ends the upstream session")
			code, _, body = mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
			assert.Equal(t, 404, code, "the session ended with its stream: %s", body)
		})
	}
}
