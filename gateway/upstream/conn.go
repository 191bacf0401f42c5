package upstream

import (
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/gateway/rawsock"
)

// trackedConn wraps an upstream connection so that the transport can find it
// again from a fasthttp.Response: its LocalAddr is a *connAddr pointing back
// to the connection. fasthttp sets one read deadline for a whole exchange,
// body included; a POST answered with an SSE stream must drop that deadline
// once the headers are in, or the stream would be cut at the POST timeout.
//
// A plain (not TLS) connection also keeps a copy of the first bytes of each
// exchange's response (up to recordSize, from the request's write until
// stopRecording): what of an SSE answer arrived with its headers, which
// fasthttp holds in its read buffer, can be read without waiting on the
// socket (answerInHand).
type trackedConn struct {
	net.Conn
	addr connAddr

	raw        syscall.RawConn  // for peeks, reads and writes; nil when not a TCP connection
	peekFn     func(fd uintptr) // peekFd, bound once
	peekBuf    [8]byte
	peekN      int
	recordable bool
	recording  bool
	truncated  bool // the response went on past rec
	rec        *[recordSize]byte
	n          int    // bytes in rec
	read       uint64 // bytes read from the socket, ever (bufferedGate.mark)
}

// recordSize is fasthttp's read buffer for POST answers (NewHTTP): the
// headers and whatever came with them in the first read fit.
const recordSize = 8 << 10

var records = sync.Pool{New: func() any { return new([recordSize]byte) }}

type connAddr struct {
	net.Addr
	conn *trackedConn
}

func (c *trackedConn) LocalAddr() net.Addr { return &c.addr }

// Write starts recording a new exchange's response.
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.recordable {
		c.recording, c.truncated, c.n = true, false, 0
	}
	if c.raw != nil && rawsock.Supported {
		return rawsock.Write(c.raw, p)
	}
	return c.Conn.Write(p)
}

// Read reads the socket with raw system calls where it can (see rawsock:
// a call's exchange then does not wake the runtime's monitor thread).
func (c *trackedConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.raw != nil && rawsock.Supported {
		n, err = rawsock.Read(c.raw, p)
	} else {
		n, err = c.Conn.Read(p)
	}
	c.read += uint64(max(n, 0))
	if c.recording && n > 0 && c.n < recordSize {
		if c.rec == nil {
			c.rec = records.Get().(*[recordSize]byte)
		}
		m := copy(c.rec[c.n:], p[:n])
		c.n += m
		c.truncated = m < n
	} else if c.recording && n > 0 {
		c.truncated = true
	}
	return n, err
}

// chunkedEndPending reports whether the socket's pending input starts with
// the end of a chunked body, which a read then takes without waiting.
func (c *trackedConn) chunkedEndPending() bool {
	if c.raw == nil {
		return false
	}
	c.peekN = -1
	if c.raw.Control(c.peekFn) != nil {
		return false
	}
	return c.peekN >= len(lastChunk) && string(c.peekBuf[:len(lastChunk)]) == lastChunk
}

func (c *trackedConn) peekFd(fd uintptr) { c.peekN = peekInto(fd, c.peekBuf[:]) }

// lastChunk ends a chunked body without trailer fields.
const lastChunk = "0\r\n\r\n"

// recorded returns the response bytes recorded so far; valid until
// stopRecording.
func (c *trackedConn) recorded() []byte {
	if c.rec == nil {
		return nil
	}
	return c.rec[:c.n]
}

// stopRecording ends the exchange's recording and gives its buffer back.
func (c *trackedConn) stopRecording() {
	c.recording, c.truncated, c.n = false, false, 0
	if c.rec != nil {
		records.Put(c.rec)
		c.rec = nil
	}
}

func newTrackedConn(c net.Conn, recordable bool) *trackedConn {
	tc := &trackedConn{Conn: c, recordable: recordable}
	if tcp, ok := c.(*net.TCPConn); ok {
		tc.raw, _ = tcp.SyscallConn()
		tc.peekFn = tc.peekFd
	}
	tc.addr = connAddr{Addr: c.LocalAddr(), conn: tc}
	return tc
}

// trackedOf returns the trackedConn behind addr, or nil.
func trackedOf(addr net.Addr) *trackedConn {
	if a, ok := addr.(*connAddr); ok {
		return a.conn
	}
	return nil
}

// clearDeadlines removes the connection's read deadline.
func (c *trackedConn) clearDeadlines() { _ = c.Conn.SetReadDeadline(time.Time{}) }

// dialTracked dials trackedConns; recordable is false under TLS (fasthttp
// encrypts above the dialed connection, so its bytes are not the answer's).
func dialTracked(dialer *net.Dialer, recordable bool) func(addr string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		if tcp, ok := c.(*net.TCPConn); ok {
			_ = tcp.SetNoDelay(true)
		}
		return newTrackedConn(c, recordable), nil
	}
}
