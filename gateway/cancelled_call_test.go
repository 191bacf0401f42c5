package gateway

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// heldStream is an upstream answer stream that sends nothing until it is
// closed: a Streamable HTTP server whose request was cancelled (MCP:
// "receivers ... SHOULD NOT send a response for the cancelled request";
// the TypeScript SDK then leaves the request's SSE stream open).
type heldStream struct {
	once   sync.Once
	done   chan struct{}
	closed atomic.Bool
}

func newHeldStream() *heldStream { return &heldStream{done: make(chan struct{})} }

func (h *heldStream) Next() ([]byte, error) {
	<-h.done
	return nil, io.EOF
}

func (h *heldStream) Close() error {
	h.closed.Store(true)
	h.once.Do(func() { close(h.done) })
	return nil
}

// heldStreams hands out heldStreams and keeps them, for a test's upstream
// to answer with and its cleanup to close. Safe for concurrent use.
type heldStreams struct {
	mu sync.Mutex
	s  []*heldStream
}

// add makes, keeps and returns a new heldStream.
func (hs *heldStreams) add() *heldStream {
	h := newHeldStream()
	hs.mu.Lock()
	hs.s = append(hs.s, h)
	hs.mu.Unlock()
	return h
}

// at returns the i-th stream handed out.
func (hs *heldStreams) at(i int) *heldStream {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.s[i]
}

// closeAll closes every stream handed out.
func (hs *heldStreams) closeAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, h := range hs.s {
		_ = h.Close()
	}
}

// TestCancelledCallIsReleased: a client cancels a call whose answer
// streams (notifications/cancelled). The upstream, as the spec allows,
// never answers it. The gateway must stop waiting for that answer: the
// call's upstream stream is closed, its place under the session's stream
// cap is given back, so the session can go on making calls (instead of
// 429 for ever once -max-streams-per-session calls were cancelled), and
// the session is not kept busy (never idle, never expired) by it.
func TestCancelledCallIsReleased(t *testing.T) {
	var held heldStreams
	tr := &scriptTransport{version: "2025-06-18"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		if len(requestIDs(t, body)) == 0 {
			return &upstream.Reply{Accepted: true}, nil
		}
		return &upstream.Reply{Stream: held.add()}, nil
	}
	s := newScriptServer(t, tr, Config{MaxStreamsPerSession: 1, WholeAnswerWindow: -1})
	sid := scriptInit(t, s, "2025-06-18")

	ctx := scriptDo(s, fasthttp.MethodPost, sid, "2025-06-18", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`)
	require.Equal(t, 200, ctx.Response.StatusCode())
	// The client gives up on the call: it cancels it and drops the stream.
	c := scriptDo(s, fasthttp.MethodPost, sid, "2025-06-18", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"timeout"}}`)
	require.Equal(t, 202, c.Response.StatusCode(), "%s", c.Response.Body())
	_ = ctx.Response.CloseBodyStream()

	sess, ok := s.store.Get(sid)
	require.True(t, ok)
	assertCallReleased(t, s, sess, &held.at(0).closed, "2025-06-18", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}`)
}

// assertCallReleased checks, within 2 s, that a cancelled call's upstream
// stream was closed (closed) and that it left sess idle, and then that the
// session's next call (body) gets its answer stream: the cancelled call
// gave back its place under the stream cap.
func assertCallReleased(t *testing.T, s *Server, sess *session, closed *atomic.Bool, version, body string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && (!closed.Load() || sess.busy.Load() != 0) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.True(t, closed.Load(), "the cancelled call's upstream stream is still held open")
	assert.Zero(t, sess.busy.Load(), "the cancelled call keeps the session busy (it never expires)")
	next := scriptDo(s, fasthttp.MethodPost, sess.id, version, body)
	code := next.Response.StatusCode()
	if code == 200 {
		_ = next.Response.CloseBodyStream()
	}
	assert.Equal(t, 200, code, "%s", next.Response.Body())
}

// TestRelayedByClosedSession: a session that ends between a POST stream's
// creation and the setting of its upstream stream (a DELETE or expiry in
// that window) did not see that upstream stream, so relayedBy tells the
// handler to close it; otherwise its pump waits for an upstream answer
// nobody will read.
func TestRelayedByClosedSession(t *testing.T) {
	tr := &scriptTransport{version: "2025-06-18"}
	tr.send = func([]byte) (*upstream.Reply, error) { return &upstream.Reply{Accepted: true}, nil }
	s := newScriptServer(t, tr, Config{})
	sess, ok := s.store.Get(scriptInit(t, s, "2025-06-18"))
	require.True(t, ok)
	c := &call{clientID: []byte("1"), upID: 1}

	st, status := s.newStream(sess, false, false)
	require.NotNil(t, st, "status %d", status)
	require.False(t, sess.relayedBy(st, nil, []*call{c}), "an open session's live call keeps its stream")

	st, status = s.newStream(sess, false, false)
	require.NotNil(t, st, "status %d", status)
	s.endSession(context.Background(), sess, CloseClientDelete, upstreamNow)
	h := newHeldStream()
	st.setUpstream(h)
	assert.True(t, sess.relayedBy(st, nil, []*call{c}), "the session closed before the upstream stream was set")
}

// gatedFirst is a batch's upstream answer stream: it yields first once
// open is closed, then sends nothing more until it is closed (heldStream).
type gatedFirst struct {
	*heldStream
	open  chan struct{}
	first []byte
}

func (g *gatedFirst) Next() ([]byte, error) {
	if m := g.first; m != nil {
		select {
		case <-g.open:
		case <-g.done:
			return nil, io.EOF
		}
		g.first = nil
		return m, nil
	}
	return g.heldStream.Next()
}

// TestCancelledBatchCallIsReleased: a batch (2025-03-26) of two calls
// answered by one stream; the upstream answers the first, the client
// cancels the second (after that answer, or before it), which the
// upstream then never answers (as the spec allows). Nothing more is owed
// on the stream: the gateway must stop waiting, so the stream's place
// under the stream cap is given back and the session's idle clock runs
// again, as for a cancelled single call.
func TestCancelledBatchCallIsReleased(t *testing.T) {
	for _, cancelFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "cancelled after the other's answer", true: "cancelled before the other's answer"}[cancelFirst], func(t *testing.T) {
			var mu sync.Mutex
			var streams []*gatedFirst
			open := make(chan struct{})
			tr := &scriptTransport{version: "2025-03-26"}
			tr.send = func(body []byte) (*upstream.Reply, error) {
				ids := requestIDs(t, body)
				if len(ids) == 0 {
					return &upstream.Reply{Accepted: true}, nil
				}
				if len(ids) == 1 {
					return &upstream.Reply{Stream: newHeldStream()}, nil
				}
				g := &gatedFirst{heldStream: newHeldStream(), open: open, first: []byte(`{"jsonrpc":"2.0","id":` + ids[0] + `,"result":{}}`)}
				mu.Lock()
				streams = append(streams, g)
				mu.Unlock()
				return &upstream.Reply{Stream: g}, nil
			}
			s := newScriptServer(t, tr, Config{MaxStreamsPerSession: 1, WholeAnswerWindow: -1})
			t.Cleanup(func() { // before the shutdown: a pump left waiting would hold it
				mu.Lock()
				defer mu.Unlock()
				for _, g := range streams {
					_ = g.Close()
				}
			})
			sid := scriptInit(t, s, "2025-03-26")
			sess, ok := s.store.Get(sid)
			require.True(t, ok)

			ctx := scriptDo(s, fasthttp.MethodPost, sid, "", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fast"}},`+
				`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}]`)
			require.Equal(t, 200, ctx.Response.StatusCode()) // (Body would read the stream to its end)
			cancel := func() {
				c := scriptDo(s, fasthttp.MethodPost, sid, "", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"timeout"}}`)
				require.Equal(t, 202, c.Response.StatusCode(), "%s", c.Response.Body())
			}
			if cancelFirst {
				cancel()
			}
			close(open)
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				if _, in := sess.upIDOf([]byte("1")); !in {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if !cancelFirst {
				cancel()
			}
			_ = ctx.Response.CloseBodyStream()

			mu.Lock()
			g := streams[0]
			mu.Unlock()
			assertCallReleased(t, s, sess, &g.closed, "", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow"}}`)
		})
	}
}
