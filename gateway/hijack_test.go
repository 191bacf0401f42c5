package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/ringbuf"
)

// readChunk reads one HTTP chunk's payload from br.
func readChunk(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	var size int
	for _, c := range strings.TrimSpace(line) {
		size <<= 4
		switch {
		case c >= '0' && c <= '9':
			size |= int(c - '0')
		case c >= 'a' && c <= 'f':
			size |= int(c-'a') + 10
		default:
			t.Fatalf("bad chunk size line %q", line)
		}
	}
	body := make([]byte, size+2)
	_, err = io.ReadFull(br, body)
	require.NoError(t, err)
	require.Equal(t, "\r\n", string(body[size:]))
	return string(body[:size])
}

// loopbackPair is a connected pair of loopback TCP connections (client
// side, server side), closed when the test ends.
func loopbackPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}

// hijackFixture is a stored session's stream with a hijack writer on sc,
// started as after fasthttp hands the connection over.
func hijackFixture(t testing.TB, s *Server, sc net.Conn, ringCfg ringbuf.Config) (*stream, *hijackWriter) {
	t.Helper()
	st := streamFixture(t, s, ringCfg)
	st.sess.addStreamLocked(st)
	require.NoError(t, s.storeSession(st.sess))
	w := newHijackWriter(s, st, sc, 0, nil)
	attachFixture(s, &w.clientConn)
	w.start()
	return st, w
}

// TestHijackedStreamsHoldNoGoroutineWhileIdle attaches many GET streams to
// real loopback connections and checks that, once their headers are out,
// none keeps a writer goroutine; that a pushed event, a heartbeat kick and
// the shutdown each start one that delivers and then goes idle again.
func TestHijackedStreamsHoldNoGoroutineWhileIdle(t *testing.T) {
	const n = 100
	s := newTestServer(t, Config{Heartbeat: time.Hour})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	before := runtime.NumGoroutine()
	type conn struct {
		st *stream
		r  *hijackWriter
		c  net.Conn
		br *bufio.Reader
	}
	conns := make([]conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		sc, err := ln.Accept()
		require.NoError(t, err)
		st, r := hijackFixture(t, s, sc, ringbuf.Config{})
		conns[i] = conn{st: st, r: r, c: c, br: bufio.NewReader(c)}
	}
	for _, cn := range conns {
		head, err := cn.br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "HTTP/1.1 200 OK\r\n", head)
		for line := ""; line != "\r\n"; {
			line, err = cn.br.ReadString('\n')
			require.NoError(t, err)
		}
	}
	idle := func() bool {
		for _, cn := range conns {
			if cn.r.work.Load() != 0 {
				return false
			}
		}
		return true
	}
	require.Eventually(t, idle, 5*time.Second, 5*time.Millisecond, "writers go idle after the headers")
	assert.Less(t, runtime.NumGoroutine()-before, n/4, "idle hijacked streams hold no goroutine each")

	msg := []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}`)
	for _, cn := range conns {
		s.push(cn.st, ringbuf.Droppable, 0, msg, nil)
	}
	for _, cn := range conns {
		assert.Equal(t, "id: 3_1\ndata: "+string(msg)+"\n\n", readChunk(t, cn.br))
	}
	require.Eventually(t, idle, 5*time.Second, 5*time.Millisecond, "writers go idle after delivering")

	// A kick with no heartbeat due writes nothing; one after the interval
	// writes the comment.
	cn := conns[0]
	cn.r.kick()
	require.Eventually(t, idle, 5*time.Second, 5*time.Millisecond)
	cn.r.lastWrite.Store(s.clock.Now() - int64(2*time.Hour))
	cn.r.kick()
	assert.Equal(t, ": \n\n", readChunk(t, cn.br))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	for _, cn := range conns {
		assert.Equal(t, "retry: 1000\n\n", readChunk(t, cn.br), "shutdown ends every idle stream with a retry hint")
		assert.Equal(t, "", readChunk(t, cn.br), "then the last chunk")
		_, err := cn.br.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "and closes the connection")
		assert.Nil(t, cn.st.conn.Load(), "detached")
	}
}

// gatedConn holds its first Write until gate closes and counts writes.
type gatedConn struct {
	net.Conn
	gate   chan struct{}
	once   sync.Once
	writes atomic.Int32
}

func (c *gatedConn) Write(b []byte) (int, error) {
	c.once.Do(func() { <-c.gate })
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestHijackedBurstOneWrite: events that are ready together go out in one
// chunk, one write: a burst of 64 events of ~200 bytes took four writes
// with 4 KiB write buffers.
func TestHijackedBurstOneWrite(t *testing.T) {
	s := newTestServer(t, Config{Heartbeat: time.Hour})
	c, sc := loopbackPair(t)
	gc := &gatedConn{Conn: sc, gate: make(chan struct{})}
	st, _ := hijackFixture(t, s, gc, ringbuf.Config{Capacity: 1024})
	defer s.store.Delete(st.sess.id)

	// The writer waits in its first write (the headers) while the burst is pushed.
	const burst = 64
	total := 0
	for i := range burst {
		msg := fmt.Appendf(nil, `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"seq":%d,"pad":"%s"}}}`, i, strings.Repeat("x", 100))
		total += len(msg)
		s.push(st, ringbuf.Droppable, 0, msg, nil)
	}
	require.Greater(t, total, 3*chunkBufSize, "the burst is larger than three 4 KiB buffers")
	close(gc.gate)

	br := bufio.NewReader(c)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if line == "\r\n" {
			break // the end of the headers
		}
	}
	events := strings.Count(readChunk(t, br), "\ndata: ")
	assert.Equal(t, burst, events, "the whole burst in the first chunk")
	assert.EqualValues(t, 2, gc.writes.Load(), "the headers and one chunk")
}
