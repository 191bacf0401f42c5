package gateway

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/ringbuf"
)

// storedSession puts a session with one POST answer stream (id 1) into s.
func storedSession(t *testing.T, s *Server, ringCfg ringbuf.Config) (*session, *stream) {
	t.Helper()
	ring, err := ringbuf.New(ringCfg)
	require.NoError(t, err)
	id := newSessionID()
	sess := &session{id: id, version: "2025-06-18", withStreams: s.streamSet(id)}
	t.Cleanup(sess.cancel)
	sess.created = s.clock.Now()
	sess.lastActive.Store(s.clock.Now())
	st := newStream(1, sess, ring)
	sess.addStreamLocked(st)
	sess.nextStream = 1
	require.NoError(t, s.storeSession(sess))
	t.Cleanup(func() { s.store.Delete(sess.id) })
	return sess, st
}

func getWithLastEventID(s *Server, sid, last string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI("http://127.0.0.1/mcp")
	req.Header.SetHost("127.0.0.1:8080")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Last-Event-ID", last)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	s.Handler(ctx)
	return ctx
}

func TestResumeRefusals(t *testing.T) {
	s := newTestServer(t, Config{})
	sess, st := storedSession(t, s, ringbuf.Config{Capacity: 4})
	other, _ := storedSession(t, s, ringbuf.Config{})
	_ = other

	// Eight responses through a 4-slot ring, all delivered: the oldest
	// must-deliver events are evicted as new ones arrive.
	for i := 0; i < 8; i++ {
		_, _, err := st.ring.Push(ringbuf.MustDeliver, 0, []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
		require.NoError(t, err)
		_, _, _ = st.ring.Next(uint64(i), func(uint64, []byte) bool { return true })
	}

	for _, c := range []struct {
		name, sid, last string
		status          int
		body            string
	}{
		{"evicted must-deliver events", sess.id, "1_1", 400, "3 events after Last-Event-ID are no longer buffered"},
		{"malformed", sess.id, "1-1", 400, "malformed Last-Event-ID"},
		{"stream of no such number", sess.id, "7_1", 400, "names no stream"},
		{"another session's stream", other.id, "2_1", 400, "names no stream"},
		{"ahead of the stream", sess.id, "1_99", 400, "ahead of the stream"},
		{"unknown session", "0123456789abcdef0123456789abcdef", "1_5", 404, "Session not found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := getWithLastEventID(s, c.sid, c.last)
			assert.Equal(t, c.status, ctx.Response.StatusCode())
			assert.Contains(t, string(ctx.Response.Body()), c.body)
			assert.Contains(t, string(ctx.Response.Body()), `"jsonrpc":"2.0"`)
		})
	}
	assert.False(t, st.attached(), "a refused resume leaves the stream free")

	// A position still buffered is served: the GET takes the connection
	// over (the status and headers are written by the stream itself).
	ctx := getWithLastEventID(s, sess.id, "1_5")
	assert.True(t, ctx.Hijacked(), "GET streams run on the hijacked connection")
	assert.True(t, st.attached())
	m := s.Metrics()
	assert.Equal(t, uint64(1), m.ResumeHits)
	assert.Equal(t, uint64(5), m.ResumeMisses)
}
