package gateway

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// legacyInit opens a legacy HTTP+SSE session on base (openLegacyStream)
// and initializes it at version; it returns the stream's connection and
// reader, the message URL and the session.
func legacyInit(t *testing.T, s *Server, base, version string) (net.Conn, *bufio.Reader, string, *session) {
	t.Helper()
	conn, br, msgURL := openLegacyStream(t, base)
	code, _, body := mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	require.Equal(t, 202, code, body)
	legacyAwait(t, br, `"id":0`)
	code, _, body = mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	require.Equal(t, 202, code, body)
	_, sid, ok := strings.Cut(msgURL, "sessionId=")
	require.True(t, ok, msgURL)
	sess, ok := s.store.Get(sid)
	require.True(t, ok)
	return conn, br, msgURL, sess
}

// legacyAwait reads a legacy stream until a line containing want.
func legacyAwait(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.Contains(line, want) {
			return
		}
	}
}

// TestCancelledLegacyBatchCallIsReleased: TestCancelledBatchCallIsReleased
// for a legacy HTTP+SSE client (2025-03-26 over /sse, which may batch): a
// batch of two calls answered by one upstream stream; the upstream answers
// the first, the client then cancels the second, which the upstream never
// answers. The call's pump must stop waiting: the upstream stream is
// closed, the answer's place under -max-streams-per-session is given back
// (the next call is not refused with 429 for ever) and the session's busy
// count is what its attached stream alone makes it.
func TestCancelledLegacyBatchCallIsReleased(t *testing.T) {
	var mu sync.Mutex
	var batches []*gatedFirst
	var held heldStreams
	open := make(chan struct{})
	tr := &scriptTransport{version: "2025-03-26"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		ids := requestIDs(t, body)
		mu.Lock()
		defer mu.Unlock()
		switch len(ids) {
		case 0:
			return &upstream.Reply{Accepted: true}, nil
		case 1:
			return &upstream.Reply{Stream: held.add()}, nil
		}
		g := &gatedFirst{heldStream: newHeldStream(), open: open, first: []byte(`{"jsonrpc":"2.0","id":` + ids[0] + `,"result":{}}`)}
		batches = append(batches, g)
		return &upstream.Reply{Stream: g}, nil
	}
	// Two streams: the legacy stream itself and one call's answer.
	s, url := liveServer(t, Config{Upstream: tr, MaxStreamsPerSession: 2, WholeAnswerWindow: -1})
	t.Cleanup(func() { // before the shutdown: a pump left waiting would hold it
		mu.Lock()
		defer mu.Unlock()
		for _, g := range batches {
			_ = g.Close()
		}
		held.closeAll()
	})
	_, br, msgURL, sess := legacyInit(t, s, strings.TrimSuffix(url, "/mcp"), "2025-03-26")
	idle := sess.busy.Load() // the attached stream's

	code, _, body := mcpPost(t, msgURL, "", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fast"}},`+
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}]`)
	require.Equal(t, 202, code, body)
	close(open)
	legacyAwait(t, br, `"id":1`)
	code, _, body = mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"timeout"}}`)
	require.Equal(t, 202, code, body)

	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && (!batches[0].closed.Load() || sess.busy.Load() != idle || sess.livePost.Load() != 0) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.True(t, batches[0].closed.Load(), "the batch's upstream stream is held open for a cancelled call")
	assert.Equal(t, idle, sess.busy.Load(), "the cancelled call keeps the session busy")
	code, _, body = mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow"}}`)
	assert.Equal(t, 202, code, "the cancelled call still holds its place under the stream cap: %s", body)
}

// TestLegacySessionEndStopsCallPumps: a legacy HTTP+SSE client goes away
// (its stream's connection closes) while a call of it waits for an
// upstream answer stream that sends nothing (a long tool; an upstream that
// keeps its streams open after the session's DELETE). The session's end
// must stop the call's pump, as it does an answer stream's: the upstream
// stream is closed, so neither its goroutine nor its upstream connection
// outlives the session (nor holds up a shutdown until its deadline).
func TestLegacySessionEndStopsCallPumps(t *testing.T) {
	var held heldStreams
	tr := &scriptTransport{version: "2024-11-05"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		if len(requestIDs(t, body)) == 0 {
			return &upstream.Reply{Accepted: true}, nil
		}
		return &upstream.Reply{Stream: held.add()}, nil
	}
	s, url := liveServer(t, Config{Upstream: tr, WholeAnswerWindow: -1, SweepInterval: 50 * time.Millisecond})
	t.Cleanup(held.closeAll) // before the shutdown, which the pump would hold
	conn, _, msgURL, sess := legacyInit(t, s, strings.TrimSuffix(url, "/mcp"), "2024-11-05")
	idle := sess.busy.Load()

	code, _, body := mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`)
	require.Equal(t, 202, code, body)
	require.Eventually(t, func() bool { return sess.busy.Load() == idle+1 }, 2*time.Second, 5*time.Millisecond, "the call's pump runs")

	require.NoError(t, conn.Close()) // the client goes away
	require.Eventually(t, func() bool { return sess.context().Err() != nil }, 3*time.Second, 10*time.Millisecond, "the session ends with its stream")

	assert.Eventually(t, held.at(0).closed.Load, 2*time.Second, 10*time.Millisecond,
		"the ended session's call pump still waits on its upstream stream")
}
