package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// dialSmallWindow dials addr with a small receive buffer, so a client
// that stops reading stops the gateway's writes soon.
func dialSmallWindow(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSlowReaderOfJSONAnswerIsCut: a client that stops reading a large
// JSON answer (not a stream) is cut after -write-stall-timeout like a
// stream's reader; before, the gateway's write waited forever, holding
// the connection, its goroutine and the answer.
func TestSlowReaderOfJSONAnswerIsCut(t *testing.T) {
	const size = 32 << 20 // past every kernel buffer on the way
	up := testenv.NewFakeUpstream(t).On("x/big", testenv.Result(`{"blob":"`+strings.Repeat("b", size)+`"}`))
	_, url := liveServer(t, Config{Upstream: up, WriteStallTimeout: 200 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	sid := liveSession(t, url)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/mcp")

	c := dialSmallWindow(t, addr)
	body := `{"jsonrpc":"2.0","id":2,"method":"x/big"}`
	_, err := io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
		"Accept: application/json, text/event-stream\r\nMcp-Session-Id: "+sid+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	require.NoError(t, err)
	time.Sleep(2 * time.Second) // not reading, ten times the stall timeout

	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	n, err := io.Copy(io.Discard, resp.Body)
	assert.Less(t, n, int64(size), "the stalled answer was written on after the stall timeout")
	assert.Error(t, err, "the connection was cut mid-answer")
}

// statelessListen POSTs a subscriptions/listen of the stateless revision
// naming uris, and returns the status, the content type and (for a JSON
// answer) the body; a stream's body is left unread.
func statelessListen(t *testing.T, url string, uris []string) (int, string, string) {
	t.Helper()
	list, err := json.Marshal(uris)
	require.NoError(t, err)
	body := `{"jsonrpc":"2.0","id":5,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":` + string(list) +
		`},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "subscriptions/listen")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "text/event-stream") {
		return resp.StatusCode, ct, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, ct, string(b)
}

// upstreamSubscribes counts the resources/subscribe the gateway sent the
// upstream.
func upstreamSubscribes(up *testenv.FakeUpstream) int {
	n := 0
	for _, b := range up.Sent() {
		if strings.Contains(b, `"method":"resources/subscribe"`) {
			n++
		}
	}
	return n
}

// TestStatelessListenSubscriptionsBounded: a stateless client's
// subscriptions/listen over a session-era upstream makes the pooled
// session subscribe each resource it names. One request naming thousands
// of resources made the gateway send as many resources/subscribe upstream
// (one after the other, while the client waited), and the pooled session
// kept every URI subscribed for its life, without bound. Beyond
// maxSubscribedURIs the request is refused (400, -32602, its id) and
// nothing is sent; a request within it is served.
func TestStatelessListenSubscriptionsBounded(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	up.OnConnect(testenv.Result(`{"protocolVersion":"2025-11-25","capabilities":{"resources":{"subscribe":true}},"serverInfo":{"name":"fake","version":"1"}}`))
	_, url := liveServer(t, Config{Upstream: up, Heartbeat: 50 * time.Millisecond}) // a closed listen is noticed at its next write

	many := make([]string, 5000)
	for i := range many {
		many[i] = "file:///r" + strconv.Itoa(i)
	}
	status, ct, body := statelessListen(t, url, many)
	assert.Equal(t, http.StatusBadRequest, status, body)
	assert.Equal(t, "application/json", ct)
	assert.Contains(t, body, `"id":5`)
	assert.Contains(t, body, `"code":-32602`)
	assert.Zero(t, upstreamSubscribes(up), "resources/subscribe sent upstream for a refused listen")

	status, ct, body = statelessListen(t, url, []string{"file:///a", "file:///b", "file:///a"})
	assert.Equal(t, http.StatusOK, status, body)
	assert.True(t, strings.HasPrefix(ct, "text/event-stream"), ct)
	assert.Equal(t, 2, upstreamSubscribes(up))

	// The resources of listens that ended make room for the next ones
	// (unsubscribed upstream), so one client's listens cannot hold the
	// pooled session's subscriptions for good.
	status, _, body = statelessListen(t, url, many[:1000])
	require.Equal(t, http.StatusOK, status, body)
	require.Eventually(t, func() bool {
		status, _, _ := statelessListen(t, url, many[1000:2000])
		return status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "1,000 other resources once the listen naming 1,000 ended")
	unsubscribes := 0
	for _, b := range up.Sent() {
		if strings.Contains(b, `"method":"resources/unsubscribe"`) {
			unsubscribes++
		}
	}
	assert.Equal(t, 2+1000+1000-maxListenURIs, unsubscribes, "as many unsubscribed as needed for room")
	assert.Equal(t, 2002, upstreamSubscribes(up))
}

// maxListenURIs is the pooled session's limit of subscribed resources
// (upstream.maxSubscribedURIs).
const maxListenURIs = 1024
