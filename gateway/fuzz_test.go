package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// memListener is an in-memory net.Listener: each memConn handed to it is
// accepted as a client connection.
type memListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *memListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }

// memConn is a client connection whose bytes are given up front: reads
// return them chunk by chunk, then io.EOF (the client sent everything and
// waits); writes are collected.
type memConn struct {
	mu     sync.Mutex
	chunks [][]byte
	out    bytes.Buffer
	done   chan struct{}
	once   sync.Once
}

func newMemConn(chunks ...[]byte) *memConn {
	return &memConn{chunks: chunks, done: make(chan struct{})}
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *memConn) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// fuzzGateway is the gateway the fuzz target drives: authentication on,
// a session of alice's made first.
type fuzzGateway struct {
	ln    *memListener
	alice string
}

// roundTrip hands one connection with the given chunks to the gateway and
// returns what it answered, once the gateway closed the connection (or a
// second passed: a stream the input opened stays open until then).
func (g *fuzzGateway) roundTrip(chunks ...[]byte) []byte {
	c := newMemConn(chunks...)
	g.ln.conns <- c
	select {
	case <-c.done:
	case <-time.After(time.Second):
		_ = c.Close()
	}
	return c.output()
}

func newFuzzGateway(tb testing.TB) *fuzzGateway {
	up := testenv.NewFakeUpstream(tb)
	up.On("tools/list", testenv.Result(`{"tools":[]}`))
	path := filepath.Join(tb.TempDir(), "tokens")
	require.NoError(tb, os.WriteFile(path, []byte("tok-alice-0123456789abcdef alice\ntok-bob-0123456789abcdef bob\n"), 0o600))
	v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: path})
	require.NoError(tb, err)
	tb.Cleanup(v.Close)
	srv, err := gateway.New(gateway.Config{
		Upstream:          up,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxBodyBytes:      64 << 10,
		Authenticator:     v,
		ReadHeaderTimeout: 200 * time.Millisecond,
		ReadBodyTimeout:   200 * time.Millisecond,
		DrainWindow:       -1,
	})
	require.NoError(tb, err)
	g := &fuzzGateway{ln: newMemListener()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(g.ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		<-served
	})
	g.alice = g.initialize(tb)
	return g
}

// initialize opens a session for alice.
func (g *fuzzGateway) initialize(tb testing.TB) string {
	out := g.roundTrip([]byte(fuzzPost("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`)))
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	require.NoError(tb, err)
	require.Equal(tb, http.StatusOK, resp.StatusCode)
	sid := resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(tb, sid)
	return sid
}

func fuzzPost(sid, body string) string {
	h := "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
		"Authorization: Bearer tok-alice-0123456789abcdef\r\nConnection: close\r\n"
	if sid != "" {
		h += "Mcp-Session-Id: " + sid + "\r\n"
	}
	return h + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// checkAnswers parses every response the gateway wrote: none may be a 500,
// and the first must be a well-formed HTTP/1.1 response.
func checkAnswers(t *testing.T, out []byte) {
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if !errors.Is(err, io.EOF) && len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) {
				t.Fatalf("not an HTTP response: %q", out[:min(len(out), 200)])
			}
			return
		}
		if resp.StatusCode == http.StatusInternalServerError {
			t.Fatalf("the gateway answered 500: %q", out[:min(len(out), 500)])
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			return // a stream: what follows is its body
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return
		}
	}
}

// FuzzHandler drives the whole gateway (Serve, the listener's guard, admit,
// authentication, the endpoint) with arbitrary bytes as one client
// connection, split in two reads at split. Nothing may make it answer 500
// or panic, and alice's session keeps working.
func FuzzHandler(f *testing.F) {
	g := newFuzzGateway(f)
	for _, seed := range []string{
		fuzzPost(g.alice, `{"jsonrpc":"2.0","id":2,"method":"ping"}`),
		fuzzPost(g.alice, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`),
		fuzzPost(g.alice, `[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`),
		fuzzPost(g.alice, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2}}`),
		fuzzPost("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`),
		strings.ReplaceAll(fuzzPost(g.alice, `{"jsonrpc":"2.0","id":2,"method":"ping"}`), "\r\n", "\n"),
		"GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nAuthorization: Bearer tok-alice-0123456789abcdef\r\nMcp-Session-Id: " + g.alice + "\r\nLast-Event-ID: 0_0\r\n\r\n",
		"GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nAuthorization: Bearer tok-bob-0123456789abcdef\r\nMcp-Session-Id: " + g.alice + "\r\n\r\n",
		"DELETE /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tok-bob-0123456789abcdef\r\nMcp-Session-Id: " + g.alice + "\r\nMcp-Session-Id: x\r\n\r\n",
		"POST http://evil.com/mcp HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"POST /mcp HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.com@localhost\r\n\r\n",
		"GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost\r\n\r\n",
	} {
		f.Add([]byte(seed), uint16(len(seed)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		cut := 0
		if len(data) > 0 {
			cut = int(split) % (len(data) + 1)
		}
		checkAnswers(t, g.roundTrip(bytes.Clone(data[:cut]), bytes.Clone(data[cut:])))
		out := g.roundTrip([]byte(fuzzPost(g.alice, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)))
		if bytes.HasPrefix(out, []byte("HTTP/1.1 404 ")) {
			g.alice = g.initialize(t) // the input ended it (a DELETE with alice's token)
			return
		}
		if !bytes.HasPrefix(out, []byte("HTTP/1.1 200 ")) {
			t.Fatalf("alice's session stopped working after %q: %q", data, out[:min(len(out), 300)])
		}
	})
}
