package httpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

// fasthttp's own background goroutines (the server date clock, a worker
// pool's idle reaper, a client's idle-connection cleaner) end on their own
// timers, after the test binary.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

// serve runs a fasthttp server with handler h on a loopback port until the
// test ends and returns its host:port.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &fasthttp.Server{Handler: h, CloseOnShutdown: true}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return ln.Addr().String()
}

// streaming runs an upstream whose every answer is an SSE stream: first,
// flushed, then whatever rest writes (flushed after it).
func streaming(t *testing.T, first string, rest func(w *bufio.Writer)) string {
	t.Helper()
	return serve(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			_, _ = w.WriteString(first)
			_ = w.Flush()
			rest(w)
			_ = w.Flush()
		})
	})
}

// startProxy runs a Proxy to `to` on a loopback port; the test's cleanup
// closes it and checks that Serve returned ErrClosed.
func startProxy(t *testing.T, to string) (*Proxy, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := New(to)
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		assert.ErrorIs(t, <-served, ErrClosed)
	})
	return p, ln.Addr().String()
}

// client is a plain HTTP client that keeps no connection after a test.
func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestForwardsAWholeAnswer(t *testing.T) {
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		assert.Equal(t, "POST", string(ctx.Method()))
		assert.Equal(t, "/mcp?x=1", string(ctx.RequestURI()))
		assert.Equal(t, "s-1", string(ctx.Request.Header.Peek("Mcp-Session-Id")))
		ctx.Response.Header.Set("Mcp-Session-Id", "s-2")
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		ctx.SetBody(append([]byte("echo:"), ctx.PostBody()...))
	})
	_, addr := startProxy(t, up)
	req, err := http.NewRequest("POST", "http://"+addr+"/mcp?x=1", strings.NewReader(`{"jsonrpc":"2.0","id":1}`))
	require.NoError(t, err)
	req.Header.Set("Mcp-Session-Id", "s-1")
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "s-2", resp.Header.Get("Mcp-Session-Id"))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, `echo:{"jsonrpc":"2.0","id":1}`, string(body))
}

// A streamed answer reaches the client chunk by chunk: the first event is
// read through the proxy while the upstream still holds back the second.
func TestRelaysAStreamAsItArrives(t *testing.T) {
	release := make(chan struct{})
	up := streaming(t, "id: 1\ndata: one\n\n", func(w *bufio.Writer) {
		<-release
		_, _ = w.WriteString("id: 2\ndata: two\n\n")
	})
	_, addr := startProxy(t, up)
	resp, err := client(t).Get("http://" + addr + "/mcp")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)
	line := func() string {
		s, err := r.ReadString('\n')
		require.NoError(t, err)
		return s
	}
	assert.Equal(t, "id: 1\n", line())
	assert.Equal(t, "data: one\n", line())
	close(release)
	assert.Equal(t, "\n", line())
	assert.Equal(t, "id: 2\n", line())
	assert.Equal(t, "data: two\n", line())
	assert.Equal(t, "\n", line())
	_, err = r.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the stream ends when the upstream ends it")
}

func TestUpstreamDownIsBadGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, addr := startProxy(t, dead)
	resp, err := client(t).Post("http://"+addr+"/mcp", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
}

// Close ends a stream that is still open (its upstream connection is cut)
// and returns once every connection is gone.
func TestCloseEndsOpenStreams(t *testing.T) {
	stop := make(chan struct{})
	up := streaming(t, ": ok\n\n", func(*bufio.Writer) {
		select {
		case <-stop:
		case <-time.After(10 * time.Second):
		}
	})
	t.Cleanup(func() { close(stop) }) // before the upstream's shutdown, which waits for it
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := New(up)
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	resp, err := client(t).Get("http://" + ln.Addr().String() + "/mcp")
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	s, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, ": ok\n", s)
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a stream open")
	}
	assert.ErrorIs(t, <-served, ErrClosed)
	_, err = io.ReadAll(r)
	assert.True(t, err == nil || errors.Is(err, io.ErrUnexpectedEOF), "the client's stream ends: %v", err)
}
