package gateway

import (
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// request runs one request through s.Handler without a network.
func request(s *Server, method, host string, hdr map[string]string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + host + "/mcp")
	req.Header.SetHost(host)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	s.Handler(ctx)
	return ctx
}

// TestErrorAnswersKeepTheirHeaders: an error answer keeps the headers set
// before it: Allow on 405 (RFC 9110 requires it), Retry-After on the 503s
// of a shutting-down gateway and of the session cap.
func TestErrorAnswersKeepTheirHeaders(t *testing.T) {
	s := newTestServer(t, Config{})
	ctx := request(s, fasthttp.MethodPut, "127.0.0.1:8080", nil)
	assert.Equal(t, fasthttp.StatusMethodNotAllowed, ctx.Response.StatusCode())
	assert.Equal(t, "GET, POST, DELETE", string(ctx.Response.Header.Peek("Allow")))
	assert.Contains(t, string(ctx.Response.Body()), `"code":-32000`)

	s.shutting.Store(true)
	ctx = request(s, fasthttp.MethodPost, "127.0.0.1:8080", nil)
	assert.Equal(t, fasthttp.StatusServiceUnavailable, ctx.Response.StatusCode())
	assert.Equal(t, "1", string(ctx.Response.Header.Peek("Retry-After")))
	s.shutting.Store(false)

	var c fasthttp.RequestCtx
	s.rejectFull(&c, []byte("7"))
	assert.Equal(t, fasthttp.StatusServiceUnavailable, c.Response.StatusCode())
	assert.Equal(t, "5", string(c.Response.Header.Peek("Retry-After")))
	assert.Contains(t, string(c.Response.Body()), `"id":7`)
}

// TestHandlerMountedWithoutServe: a Handler mounted in another server (no
// Serve) answers requests for loopback hosts and refuses others, instead
// of refusing every Host.
func TestHandlerMountedWithoutServe(t *testing.T) {
	s := newTestServer(t, Config{})
	ctx := request(s, fasthttp.MethodGet, "localhost:9999", map[string]string{"Accept": "text/event-stream"})
	assert.Equal(t, fasthttp.StatusBadRequest, ctx.Response.StatusCode(), "past the Host check: no session id")
	ctx = request(s, fasthttp.MethodGet, "evil.example:80", map[string]string{"Accept": "text/event-stream"})
	assert.Equal(t, fasthttp.StatusForbidden, ctx.Response.StatusCode())

	open := newTestServer(t, Config{AllowedHosts: []string{"mcp.example.com"}})
	ctx = request(open, fasthttp.MethodGet, "mcp.example.com", map[string]string{"Accept": "text/event-stream"})
	assert.Equal(t, fasthttp.StatusBadRequest, ctx.Response.StatusCode(), "a configured host is allowed when mounted")
}

// slowClose is an upstream session whose Close blocks until released.
type slowClose struct {
	upstream.Session
	closing *atomic.Int32
	release chan struct{}
}

func (s slowClose) Close(ctx context.Context) error {
	s.closing.Add(1)
	defer s.closing.Add(-1)
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return nil
}

// TestExpiryEndsUpstreamSessionsBounded: a mass expiry against an upstream
// whose session close hangs starts at most reapWorkers closers; the rest
// wait in the queue, and the sweeper itself never waits for upstream I/O.
func TestExpiryEndsUpstreamSessionsBounded(t *testing.T) {
	s := newTestServer(t, Config{SweepInterval: 5 * time.Millisecond, SessionIdleTimeout: time.Second})
	var closing atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	const n = 200
	for range n {
		id := newSessionID()
		sess := &session{id: id, withStreams: s.streamSet(id),
			up: slowClose{closing: &closing, release: release}}
		sess.created = s.clock.Now()
		sess.lastActive.Store(s.clock.Now() - int64(time.Hour))
		require.NoError(t, s.storeSession(sess))
	}
	before := runtime.NumGoroutine()
	require.Eventually(t, func() bool { return s.store.Len() == 0 }, 10*time.Second, 5*time.Millisecond, "every session expired")
	require.Eventually(t, func() bool { return closing.Load() == reapWorkers }, 10*time.Second, time.Millisecond)
	assert.LessOrEqual(t, runtime.NumGoroutine()-before, reapWorkers+2, "closers are bounded")
	assert.Equal(t, n-reapWorkers, len(s.reapq), "the rest wait their turn")
	once.Do(func() { close(release) })
	require.Eventually(t, func() bool { return len(s.reapq) == 0 && s.reapers.Load() == 0 }, 10*time.Second, time.Millisecond,
		"the reapers end every queued session, then exit")
	assert.Equal(t, uint64(n), s.Metrics().SessionsClosed["idle"])
}
