package upstream

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
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
//
// A chunked SSE answer whose end comes after its last message can be owed
// (oweChunkedEnd): fasthttp reads the end at once and pools the
// connection, which takes the real end from the socket before its next
// request, so nothing waits for it (see lateEnds).
type trackedConn struct {
	net.Conn
	addr connAddr

	raw syscall.RawConn // for peeks, reads and writes; nil when not a TCP connection
	// dl holds the deadlines fasthttp sets for each exchange (the
	// request's write, the answer's read) until a read or write waits: a
	// request that fits the socket's buffer needs none on the socket.
	dl         rawsock.Deadlines
	peekFn     func(fd uintptr) // peekFd, bound once
	peekBuf    [8]byte
	peekN      int
	nothingIn  bool                  // the last chunkedEndPending found nothing pending, and nothing was read since
	takeFd     func(fd uintptr)      // takeOwed, bound once (Control)
	takeWaitFn func(fd uintptr) bool // takeOwed, bound once (Read)
	took       int                   // bytes of the owed end taken
	takeFailed bool                  // something else came
	takeClosed bool                  // the connection ended or failed
	lateEnds   *lateEnds             // the transport's, nil: never owe
	owed       bool                  // the socket still holds lastChunk of the previous exchange
	synth      int                   // bytes of lastChunk that Read returns before it reads the socket again
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

// Write starts recording a new exchange's response, after taking the end
// of the previous one if it was owed.
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.owed {
		if err := c.takeOwedEnd(); err != nil {
			return 0, err
		}
	}
	if c.recordable {
		c.recording, c.truncated, c.n = true, false, 0
	}
	if c.raw != nil && rawsock.Supported {
		return c.dl.Write(c.raw, p)
	}
	return c.Conn.Write(p)
}

// Read reads the socket with raw system calls where it can (see rawsock:
// a call's exchange then does not wake the runtime's monitor thread).
func (c *trackedConn) Read(p []byte) (int, error) {
	if c.synth > 0 {
		k := len(lastChunk) - c.synth
		n := copy(p, lastChunk[k:])
		c.synth -= n
		return n, nil
	}
	c.nothingIn = false
	var n int
	var err error
	if c.raw != nil && rawsock.Supported {
		n, err = c.dl.Read(c.raw, p)
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
	c.nothingIn = false
	if c.raw.Control(c.peekFn) != nil {
		return false
	}
	return c.peekN >= len(lastChunk) && string(c.peekBuf[:len(lastChunk)]) == lastChunk
}

func (c *trackedConn) peekFd(fd uintptr) {
	n, wait := peekPending(fd, c.peekBuf[:])
	c.peekN, c.nothingIn = n, wait
	if wait {
		c.peekN = -1
	}
}

// oweChunkedEnd is for a chunked body read to its last chunk's boundary,
// everything read from the socket consumed, when chunkedEndPending just
// found nothing pending: the end (lastChunk) has not arrived. It makes the
// next reads return lastChunk without the socket, so the body ends now,
// and the connection owes it: its next Write first takes it from the
// socket (takeOwedEnd). It reports whether it did; false where the
// transport stopped owing ends, or the connection cannot look at its
// socket.
func (c *trackedConn) oweChunkedEnd() bool {
	if !c.nothingIn || !c.recordable || c.lateEnds == nil || c.lateEnds.off.Load() {
		return false
	}
	c.nothingIn = false
	c.owed, c.synth = true, len(lastChunk)
	return true
}

// errLateEnd fails the write of a request on a pooled connection whose
// previous answer's owed end did not come, or was something else: nothing
// was sent, the connection is closed and the request retried
// (retryStaleConn).
var errLateEnd = errors.New("upstream: the previous answer on the connection had not ended")

// lateEndWait bounds the wait for an owed end that has not arrived when its
// connection is used again: a server that writes it after its handler
// returns sends it a moment after the response, which the client may have
// answered by then.
const lateEndWait = 50 * time.Millisecond

// takeOwedEnd takes the owed lastChunk from the socket, waiting for it up to
// lateEndWait. Anything else (more of the body: a server that keeps its
// answer streams open after their response; nothing within the wait; a
// part) fails the connection, and the transport owes no more ends
// (lateEnds); so does the upstream's close, which only fails the
// connection (a restarted upstream is no reason to stop).
func (c *trackedConn) takeOwedEnd() error {
	c.owed = false
	c.took, c.takeFailed, c.takeClosed = 0, false, false
	err := c.raw.Control(c.takeFd)
	if err == nil && c.took < len(lastChunk) && !c.takeFailed && !c.takeClosed {
		if err = c.dl.ApplyRead(time.Now().Add(c.lateEnds.waitFor())); err == nil {
			err = c.raw.Read(c.takeWaitFn)
			c.clearDeadlines()
		}
	}
	switch {
	case c.took == len(lastChunk):
		return nil
	case c.takeClosed:
		return errLateEnd
	}
	c.lateEnds.off.Store(true)
	return errLateEnd
}

// takeOwed reads what of the owed end is pending, without waiting, and
// checks it; it reports whether the take is over (taken or failed).
func (c *trackedConn) takeOwed(fd uintptr) bool {
	for c.took < len(lastChunk) {
		n, wait := rawsock.Take(fd, c.peekBuf[c.took:len(lastChunk)])
		switch {
		case wait:
			return false
		case n <= 0:
			c.takeClosed = true // the upstream closed the connection, or it failed
			return true
		case string(c.peekBuf[c.took:c.took+n]) != lastChunk[c.took:c.took+n]:
			c.takeFailed = true // something else than the end
			return true
		}
		c.took += n
	}
	return true
}

// lateEnds is a transport's state of owed ends (trackedConn.oweChunkedEnd):
// off once one was missing when its connection was used again, for the
// rest of the process (such a server keeps answer streams open after their
// response; their ends are then read by a goroutine, as they come).
type lateEnds struct {
	off  atomic.Bool
	wait time.Duration // lateEndWait when 0 (tests set it)
}

func (l *lateEnds) waitFor() time.Duration {
	if l.wait > 0 {
		return l.wait
	}
	return lateEndWait
}

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

func newTrackedConn(c net.Conn, recordable bool, late *lateEnds) *trackedConn {
	tc := &trackedConn{Conn: c, recordable: recordable}
	if tcp, ok := c.(*net.TCPConn); ok {
		tc.raw, _ = tcp.SyscallConn()
		tc.peekFn = tc.peekFd
		tc.takeFd = func(fd uintptr) { tc.takeOwed(fd) }
		tc.takeWaitFn = tc.takeOwed
		if rawsock.Supported {
			tc.lateEnds = late
		}
	}
	tc.dl.Init(c, tc.raw)
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
func (c *trackedConn) clearDeadlines() { _ = c.dl.SetRead(time.Time{}) }

// SetDeadline, SetReadDeadline and SetWriteDeadline set the connection's
// deadlines through dl: on the socket once a read or write waits.
func (c *trackedConn) SetDeadline(t time.Time) error      { return c.dl.Set(t) }
func (c *trackedConn) SetReadDeadline(t time.Time) error  { return c.dl.SetRead(t) }
func (c *trackedConn) SetWriteDeadline(t time.Time) error { return c.dl.SetWrite(t) }

// dialTracked dials trackedConns; recordable is false under TLS (fasthttp
// encrypts above the dialed connection, so its bytes are not the answer's).
// late is the transport's state of owed ends.
func dialTracked(dialer *net.Dialer, recordable bool, late *lateEnds) func(addr string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		if tcp, ok := c.(*net.TCPConn); ok {
			_ = tcp.SetNoDelay(true)
		}
		return newTrackedConn(c, recordable, late), nil
	}
}
