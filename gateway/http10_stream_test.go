package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestHTTP10GetStreamNotChunked: the gateway admits HTTP/1.0 requests,
// but a server must not send Transfer-Encoding in answer to one (RFC 9112
// section 6.1): an HTTP/1.0 client (or a proxy speaking HTTP/1.0 to its
// upstream, nginx's default) cannot decode chunks and sees the chunk
// sizes as part of the SSE data. The standalone GET stream, written on the
// hijacked connection, must delimit its body by closing the connection.
func TestHTTP10GetStreamNotChunked(t *testing.T) {
	tr := &scriptTransport{version: "2025-06-18"}
	tr.send = func([]byte) (*upstream.Reply, error) { return &upstream.Reply{Accepted: true}, nil }
	host, sid := http10Server(t, tr, Config{})
	br := http10Do(t, host, "GET /mcp HTTP/1.0\r\nHost: "+host+"\r\nAccept: text/event-stream\r\nMcp-Session-Id: "+sid+"\r\n\r\n")
	first, _ := br.ReadString('\n')
	assert.True(t, strings.HasPrefix(first, ":"), "the body must start with the SSE comment, got %q", first)
}

// TestHTTP10PostStreamNotChunked: the same for a POST whose answer streams
// (fasthttp would frame a body of unknown length in chunks).
func TestHTTP10PostStreamNotChunked(t *testing.T) {
	tr := &scriptTransport{version: "2025-06-18"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		if !strings.Contains(string(body), `"tools/call"`) {
			return &upstream.Reply{Accepted: true}, nil
		}
		return &upstream.Reply{Stream: &scriptedStream{msgs: []string{
			`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`}, wait: 9}}, nil
	}
	host, sid := http10Server(t, tr, Config{WholeAnswerWindow: -1})
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`
	br := http10Do(t, host, "POST /mcp HTTP/1.0\r\nHost: "+host+"\r\nAccept: application/json, text/event-stream\r\n"+
		"Content-Type: application/json\r\nMcp-Session-Id: "+sid+"\r\nMCP-Protocol-Version: 2025-06-18\r\n"+
		"Content-Length: "+strconv.Itoa(len(call))+"\r\n\r\n"+call)
	rest, err := io.ReadAll(br)
	require.NoError(t, err, "the body ends with the connection")
	assert.True(t, strings.HasPrefix(string(rest), "id: "), "the body must start with an event, got %q", rest)
	assert.Contains(t, string(rest), `"id":7,"result"`)
}

// http10Server serves a gateway in front of tr on a loopback listener and
// opens a session; it returns the listener's address and the session id.
func http10Server(t *testing.T, tr *scriptTransport, cfg Config) (host, sid string) {
	t.Helper()
	cfg.Upstream = tr
	_, url := liveServer(t, cfg)
	host = strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/mcp")
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	req, _ := http.NewRequest("POST", "http://"+host+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := liveClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	sid = resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(t, sid)
	return host, sid
}

// http10Do sends the raw request and checks the answer's head: 200 and no
// chunked coding. It returns the reader positioned at the body.
func http10Do(t *testing.T, host, raw string) *bufio.Reader {
	t.Helper()
	c, err := net.Dial("tcp", host)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	br := bufio.NewReader(c)
	var head []string
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		head = append(head, line)
	}
	require.NotEmpty(t, head)
	assert.True(t, strings.Contains(head[0], " 200 "), head[0])
	for _, h := range head[1:] {
		assert.NotEqual(t, "transfer-encoding: chunked", strings.ToLower(h), "chunked answer to an HTTP/1.0 request")
	}
	return br
}
