package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// sseConn is a raw client connection reading an SSE response.
type sseConn struct {
	c  net.Conn
	br *bufio.Reader
}

// dialStream sends a GET for the session's stream (with Last-Event-ID if
// last is set) and reads the head, which must be 200.
func dialStream(t *testing.T, url, sid, last string) *sseConn {
	t.Helper()
	hostport := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/mcp")
	c, err := net.Dial("tcp", hostport)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	req := fmt.Sprintf("GET /mcp HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-11-25\r\n", hostport, sid)
	if last != "" {
		req += "Last-Event-ID: " + last + "\r\n"
	}
	_, err = io.WriteString(c, req+"\r\n")
	require.NoError(t, err)
	s := &sseConn{c: c, br: bufio.NewReader(c)}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := s.br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 200 OK\r\n", status, "the new connection is served at once")
	for {
		l, err := s.br.ReadString('\n')
		require.NoError(t, err)
		if l == "\r\n" {
			return s
		}
	}
}

// until reads the chunked SSE body until it contains want, and returns
// what it read.
func (s *sseConn) until(t *testing.T, want string) string {
	t.Helper()
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		l, err := s.br.ReadString('\n')
		require.NoError(t, err, "waiting for %q, got %.300q", want, got.String())
		got.WriteString(l)
	}
	return got.String()
}

// ended reports whether the gateway closed the connection (after any bytes
// still buffered).
func (s *sseConn) ended(t *testing.T) {
	t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, s.br)
	assert.NoError(t, err, "the replaced connection ends (EOF), not a timeout")
}

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
				a := dialStream(t, url, sid, "")
				up.WaitFor(t, "the upstream standalone stream", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })
				up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
				a.until(t, "id: 0_1")
				switch old {
				case "half-open":
					// The client stops reading; the gateway's writes still
					// succeed into the socket buffers.
					for i := 0; i < 50; i++ {
						up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"` + strings.Repeat("x", 1000) + `"}}`)
					}
				case "closed":
					require.NoError(t, a.c.Close())
				}
				last := ""
				if resume {
					last = "0_1"
				}
				start := time.Now()
				b := dialStream(t, url, sid, last)
				assert.Less(t, time.Since(start), 2*time.Second, "no waiting for the old connection to let go")
				up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`)
				got := b.until(t, "prompts/list_changed")
				if resume {
					assert.False(t, strings.Contains(got, "tools/list_changed"), "resumed after 0_1: it is not replayed")
				} else {
					// No Last-Event-ID: the client got no event id, so what the
					// older connection was given is replayed, not lost.
					assert.True(t, strings.Contains(got, "id: 0_1\n"), "the plain GET replays from where the older connection started")
				}
				if old != "closed" {
					a.ended(t)
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
