package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// liveServer serves cfg (in front of a fake upstream unless cfg.Upstream
// is set) on a loopback listener and returns it with its base URL.
func liveServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Upstream == nil {
		cfg.Upstream = testenv.NewFakeUpstream(t)
	}
	if cfg.DrainWindow == 0 {
		cfg.DrainWindow = -1
	}
	s, err := New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
		assert.NoError(t, <-served)
	})
	return s, "http://" + ln.Addr().String() + "/mcp"
}

var liveClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// mcpPost POSTs body on session sid ("" for none) and returns the status,
// the session id answered and the body.
func mcpPost(t *testing.T, url, sid, body string) (int, string, string) {
	t.Helper()
	code, id, b, err := livePost(liveClient, url, sid, body)
	require.NoError(t, err)
	return code, id, b
}

// mcpPostNoFail is mcpPost for a goroutine other than the test's (with a
// longer timeout): an error comes back as the body, with status 0.
func mcpPostNoFail(url, sid, body string) (int, string, string) {
	code, id, b, err := livePost(slowLiveClient, url, sid, body)
	if err != nil {
		return 0, "", err.Error()
	}
	return code, id, b
}

var slowLiveClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func livePost(c *http.Client, url, sid, body string) (int, string, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(b), nil
}

// liveDelete DELETEs session sid and returns the response (its body closed).
func liveDelete(t *testing.T, url, sid string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, url, nil)
	require.NoError(t, err)
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := liveClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp
}

const liveInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func liveSession(t *testing.T, url string) string {
	t.Helper()
	code, sid, body := mcpPost(t, url, "", liveInit)
	require.Equal(t, http.StatusOK, code, body)
	return sid
}

// liveStream opens sid's standalone stream and waits for its first bytes;
// the stream stays connected until the test ends.
func liveStream(t *testing.T, url, sid string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, ": ok\n", line)
}

// TestEvictIdle: at the session cap, the least recently active session
// without a call in flight or a connected stream makes room and is then
// unknown (404); a session with a connected stream is never evicted, and
// when every session is busy the newcomer gets 503.
func TestEvictIdle(t *testing.T) {
	s, url := liveServer(t, Config{MaxSessions: 3, EvictIdle: true})
	s1, s2, s3 := liveSession(t, url), liveSession(t, url), liveSession(t, url)
	now := s.clock.Now()
	for i, sid := range []string{s1, s2, s3} {
		sess, ok := s.store.Get(sid)
		require.True(t, ok)
		sess.lastActive.Store(now - int64(3-i)*int64(time.Hour)) // s1 oldest
	}
	liveStream(t, url, s1) // the oldest, but busy
	s4 := liveSession(t, url)
	code, _, _ := mcpPost(t, url, s2, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	assert.Equal(t, http.StatusNotFound, code, "the least recently active idle session was evicted")
	for _, sid := range []string{s1, s3, s4} {
		code, _, _ := mcpPost(t, url, sid, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
		assert.Equal(t, http.StatusOK, code)
	}
	m := s.Metrics()
	assert.Equal(t, uint64(1), m.Evictions)
	assert.Equal(t, uint64(1), m.SessionsClosed["evicted"])

	liveStream(t, url, s3)
	liveStream(t, url, s4)
	code, _, body := mcpPost(t, url, "", liveInit)
	assert.Equal(t, http.StatusServiceUnavailable, code, "every session is busy: %s", body)
}

// TestSessionCapWithoutEviction: without EvictIdle the cap refuses.
func TestSessionCapWithoutEviction(t *testing.T) {
	_, url := liveServer(t, Config{MaxSessions: 1})
	liveSession(t, url)
	code, _, _ := mcpPost(t, url, "", liveInit)
	assert.Equal(t, http.StatusServiceUnavailable, code)
}

// TestAnonymousRateLimit: without authentication the rate limit is kept
// per client address.
func TestAnonymousRateLimit(t *testing.T) {
	s, url := liveServer(t, Config{RateLimit: 0.5, RateBurst: 2})
	sid := liveSession(t, url) // one request of the burst
	code, _, _ := mcpPost(t, url, sid, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	assert.Equal(t, http.StatusOK, code)
	resp := liveDelete(t, url, sid)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "2", resp.Header.Get("Retry-After"), "one request every 2 s")
	assert.Equal(t, uint64(1), s.Metrics().RateLimited)
}

// TestRateLimitersAreSwept: limiters idle long enough to be full again are
// dropped, and beyond maxLimiters callers share one.
func TestRateLimitersAreSwept(t *testing.T) {
	r := newRateLimits(10, 5)
	now := time.Now()
	for i := 0; i < 100; i++ {
		ok, _ := r.allow(limitKey{principal: "p" + itoa(i)}, now.UnixNano(), now)
		require.True(t, ok)
	}
	assert.Equal(t, int64(100), r.n.Load())
	r.sweep(now.UnixNano() + int64(time.Second) - 1)
	assert.Equal(t, int64(100), r.n.Load(), "not idle long enough yet")
	r.sweep(now.UnixNano() + int64(time.Second) + 1)
	assert.Zero(t, r.n.Load())

	r.n.Store(maxLimiters)
	for i := 0; i < 5; i++ {
		ok, _ := r.allow(limitKey{principal: "new" + itoa(i)}, now.UnixNano(), now)
		assert.True(t, ok, "the overflow limiter's burst")
	}
	ok, wait := r.allow(limitKey{principal: "another"}, now.UnixNano(), now)
	assert.False(t, ok, "past maxLimiters every caller shares one limiter")
	assert.InDelta(t, 100*time.Millisecond, wait, float64(time.Millisecond))
}

// TestConnsPerIP: connections beyond the per-address cap get 429 and are
// closed; a closed connection makes room again.
func TestConnsPerIP(t *testing.T) {
	s, url := liveServer(t, Config{MaxConnsPerIP: 2})
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/mcp")
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		held = append(held, c)
	}
	// The listener counts a connection once it accepts it: wait for both.
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "1" &&
			strings.Contains(string(b), `"code":-32000`)
	}, 10*time.Second, 10*time.Millisecond)
	assert.Positive(t, s.Metrics().ConnsRefused)

	_ = held[0].Close()
	// Until the gateway has seen the close, a new connection is still
	// refused at accept: its 429 comes before the request is written, which
	// Go's client reports as an error. Those attempts are retried.
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(liveInit))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := liveClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "a closed connection makes room")
	_ = held[1].Close()
}

// scriptConn is a net.Conn whose reads return the given chunks in turn.
type scriptConn struct {
	net.Conn
	chunks []string
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if n < len(c.chunks[0]) {
		c.chunks[0] = c.chunks[0][n:]
	} else {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) { return len(p), nil }

// TestGuardConnLineEnds: bare LF and bare CR in a request head are refused
// wherever the read boundaries fall; bodies, and heads after a pipelined
// body, are not looked at.
func TestGuardConnLineEnds(t *testing.T) {
	for _, c := range []struct {
		name   string
		chunks []string
		writes []int // write a response before these chunk indexes
		bad    bool
	}{
		{"CRLF", []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n"}, nil, false},
		{"bare LF", []string{"GET / HTTP/1.1\nHost: a\n\n"}, nil, true},
		{"bare CR", []string{"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"}, nil, true},
		{"CRLF split between reads", []string{"GET / HTTP/1.1\r", "\nHost: a\r", "\n\r", "\n"}, nil, false},
		{"LF after a CR of the previous read is fine", []string{"GET / HTTP/1.1\r", "\n\r\n"}, nil, false},
		{"bare LF at the start of a read", []string{"GET / HTTP/1.1\r\nHost: a", "\nX: b\r\n\r\n"}, nil, true},
		{"preamble CRLF", []string{"\r\n\r\nGET / HTTP/1.1\r\n\r\n"}, nil, false},
		{"body with bare LFs", []string{"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\n\n}\n"}, nil, false},
		{"body after 100-continue", []string{"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", "{\n\n}\n"}, []int{1}, false},
		{"next request after a response", []string{"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\nX: a\n\n"}, []int{1}, true},
		{"pipelined body remainder after a response", []string{"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\n", "ABC \n\n}\n"}, []int{1}, false},
		{"not a request", []string{"\x16\x03\x01\x02\n\n"}, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &guardConn{Conn: &scriptConn{chunks: append([]string(nil), c.chunks...)}, state: headMethod}
			buf := make([]byte, 64)
			var err error
			for i := 0; err == nil; i++ {
				for _, w := range c.writes {
					if w == i {
						_, _ = g.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
					}
				}
				_, err = g.Read(buf)
			}
			if c.bad {
				assert.ErrorIs(t, err, errBareLineEnd)
			} else {
				assert.ErrorIs(t, err, io.EOF)
			}
		})
	}
}

// TestValidAuthority: Host and Origin authorities.
func TestValidAuthority(t *testing.T) {
	for a, want := range map[string]bool{
		"localhost": true, "localhost:8080": true, "127.0.0.1": true, "[::1]": true, "[::1]:80": true,
		"a-b.c_d.example": true, "LOCALHOST": true,
		"": false, "localhost:": false, "127.0.0.1:8411@evil.com": false, "a@b": false, "[::1": false,
		"[::1]x": false, "[fe80::1%eth0]": false, "[127.0.0.1]": false, "host:99999": false, "host:-1": false,
		"host:123456": false, "ho st": false, "host/": false, "host:80:80": false, "é.example": false,
	} {
		assert.Equal(t, want, validAuthority([]byte(a)), "%q", a)
	}
}
