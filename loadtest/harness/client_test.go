package harness

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/loadtest/mockup"
)

// TestSourceAddrs checks that connections are spread over the given local addresses.
func TestSourceAddrs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	seen := make(chan string, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
			seen <- host
			conn.Close()
		}
	}()
	c, err := NewClient(ClientConfig{
		Target:      "http://" + ln.Addr().String() + "/mcp",
		Version:     DefaultVersion,
		SourceAddrs: []string{"127.0.0.2", "127.0.0.3"},
		Conns:       1,
		StreamConns: 1,
		Timeout:     DefaultTimeout,
	})
	require.NoError(t, err)
	defer c.Close()
	hosts := map[string]bool{}
	for range 2 {
		_, _ = c.Initialize() // the server hangs up; only the dial matters
		hosts[<-seen] = true
	}
	assert.Equal(t, map[string]bool{"127.0.0.2": true, "127.0.0.3": true}, hosts)
}

func TestClientAgainstMock(t *testing.T) {
	srv, url := upstream(t, mockup.Config{})
	c, err := NewClient(ClientConfig{Target: url, Version: "2025-06-18", Conns: 2, StreamConns: 2, Timeout: DefaultTimeout})
	require.NoError(t, err)
	defer c.Close()
	sess, err := c.Initialize()
	require.NoError(t, err)
	assert.Equal(t, "2025-06-18", sess.Version)

	res, err := c.Call(sess, &Request{Method: "tools/call", Name: "echo", Params: map[string]any{"name": "echo", "arguments": map[string]any{"size": 5}}}, nil)
	require.NoError(t, err)
	assert.Contains(t, string(res), `"xxxxx"`)

	_, err = c.Call(sess, &Request{Method: "nope"}, nil)
	var rpcErr *RPCError
	require.ErrorAs(t, err, &rpcErr)
	assert.Equal(t, int64(mockup.CodeMethodNotFound), rpcErr.Code)

	// A stream tool call cut after 3 notifications, then resumed.
	var seqs []uint64
	onEvent := func(m *Message) bool {
		seqs = append(seqs, m.Seq)
		return len(seqs) != 3
	}
	_, err = c.Call(sess, &Request{Method: "tools/call", Name: "stream", Stream: true, Params: map[string]any{
		"name": "stream", "arguments": map[string]any{"count": 8, "rate": 200}, "_meta": map[string]any{"progressToken": 1},
	}}, onEvent)
	var cut *CutError
	require.ErrorAs(t, err, &cut)
	assert.Equal(t, "1_3", string(cut.LastID))
	es, err := c.Get(sess, cut.LastID)
	require.NoError(t, err)
	res, err = ReadAnswer(es, cut.ID, onEvent)
	require.NoError(t, err)
	assert.Equal(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8}, seqs)
	n, ok := lookupUint(res, "structuredContent", "count")
	assert.True(t, ok)
	assert.Equal(t, uint64(8), n)

	require.NoError(t, c.Delete(sess))
	err = c.Delete(sess)
	var httpErr *HTTPError
	require.ErrorAs(t, err, &httpErr)
	assert.Equal(t, 404, httpErr.Status)
	assert.Equal(t, int64(1), srv.Snapshot().SessionsDeleted)
}
