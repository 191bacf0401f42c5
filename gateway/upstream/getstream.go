package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/gateway/rawsock"
)

// getReadBuffer is the read buffer of a GET stream's connection. Response
// headers larger than it still parse (net/textproto joins long lines), up
// to maxGetHead; the SSE decoder keeps its own buffer for events.
const getReadBuffer = 1024

// maxGetHead bounds a GET stream's response head (status line and
// headers): net/textproto sets no limit of its own, and an upstream could
// otherwise make the gateway hold a head of any size, for as long as the
// Timeout lets it send. (A POST answer's head must fit fasthttp's read
// buffer, recordSize.)
const maxGetHead = 64 << 10

// errHeadTooLarge: a GET stream's response head went past maxGetHead.
var errHeadTooLarge = fmt.Errorf("response head larger than %d bytes", maxGetHead)

// While a stream's input comes in bursts (the SSE decoder asks for at least
// burstThreshold bytes at once, which it does only after a read filled its
// buffer), the body is read through a pooled buffer of burstReadBuffer
// bytes, so a burst of small chunks costs a few reads of the socket rather
// than one per kilobyte. It goes back to the pool once everything read was
// consumed and the decoder asks for little again: an idle stream keeps only
// its small buffer. A reader woken from WaitReadable (which gave its buffers
// back) reads through a burst buffer at once, until it waits again: whatever
// woke it, one event or a burst, comes in one read of the socket (a 1 KiB
// buffer took three reads for a burst of 11 KiB).
const (
	burstReadBuffer = 16 << 10
	burstThreshold  = 4 << 10
)

var burstReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, burstReadBuffer) }}

// smallReaders holds the small read buffers of GET streams whose reader is
// parked in WaitReadable: a stream holds one only while it reads, so an
// idle stream holds no read buffer at all.
var smallReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, getReadBuffer) }}

// getConn is an upstream GET stream on a connection of its own, read
// without fasthttp: net/http parses the response (any header size) and
// undoes chunking over a 1 KiB bufio.Reader. Standalone streams are idle
// most of their life, so what one holds while idle matters: no read buffer
// (WaitReadable gives it back to a pool while it waits for the socket), and a
// reader that WaitReadable parks at a shallow stack depth, which lets the
// runtime shrink its stack to the minimum.
//
// The fields an event reads come first, in two cache lines (a stream's
// state is cold again by its next event, and each line it touches is a
// miss): the rest is read when the stream opens, parks or ends.
type getConn struct {
	// br is the read buffer: a small one, or a pooled burst buffer (big)
	// while input comes in bursts (sizeBuffer) or since a wake from
	// WaitReadable; nil while the reader waits in WaitReadable with
	// nothing buffered (Read takes a burst buffer then).
	br  *bufio.Reader
	raw syscall.RawConn // nil when readiness cannot be awaited (TLS)
	// src is what br reads (the conn, through connSrc); small is the
	// small buffer put aside while br is a burst buffer that sizeBuffer
	// took, nil otherwise.
	src io.Reader
	// hook is run before a read that may wait (the BeforeWait of
	// httpStream.OnWait's WaitHook); set by the reader, which alone
	// calls it.
	hook func()
	// readableFn is g.readable, made once: a method value passed to
	// RawConn.Read escapes, so taking it at every wait would allocate.
	readableFn func(uintptr) bool
	// fd is the socket while readable reads it (inWait).
	fd uintptr

	// The body is read straight from br: chunked, with a length, or to EOF.
	// Nothing is read ahead of what Read asks for, so an empty br means a
	// Read needs the socket.
	left  int64 // bytes left in the current chunk or the sized body
	err   error // sticky end of the body
	small *bufio.Reader

	// With idle set (httpStream.SetIdle), WaitReadable gives up with
	// ErrIdle once a wait lasted between idle and idle*5/4: waitSince is
	// when the current wait began (0 when none; -1 once the transport's
	// idleWatch ended it with a read deadline in the past). Times are
	// monoNow's.
	idle      time.Duration
	waitSince atomic.Int64
	// parkedAt: when the stream last parked, until the first wait after
	// it (which has the input that woke the reader); lone: it had been
	// parked for a whole idle period, or is new (SetIdle), so the next
	// wait that finds nothing gives up at once (a keep-alive, a lone event
	// or a new stream's greeting does not hold a goroutine for another
	// idle period).
	parkedAt int64

	big         bool
	chunked     bool
	toEOF       bool // no length: the body ends when the connection does
	head        bool // openGet reads the response head: left is its budget
	crlfPending bool // a chunk's data was read, its CRLF not yet
	inWait      bool // readable is reading the socket (fd) into br
	lone        bool
	watched     bool // in the transport's idleWatch (the reader's own)

	// inEpoll: the socket is registered with the transport's poller
	// (parked before); the reader's own.
	inEpoll bool
	peek    [1]byte
	// dead is set by close (before it leaves the idleWatch, which then
	// takes g no more); fireMu orders the idleWatch's deadline that ends a
	// wait before the reader's that takes it off.
	dead   atomic.Bool
	fireMu sync.Mutex
	// waitErr is what readable's read of the socket failed with, for the
	// next read through br (which took it from the read).
	waitErr error
	t       *HTTP
	conn    net.Conn
	// parkTok and resume: the parking in the transport's poller, if any;
	// guarded by the poller's mutex.
	parkTok uint64
	resume  func()

	closeOnce sync.Once
}

// monoBase and monoNow: a monotonic clock in nanoseconds, never 0 (which
// getConn's times use for none), cheaper to read than time.Now.
var monoBase = time.Now()

func monoNow() int64 { return int64(time.Since(monoBase)) + 1 }

// connSrc is what the read buffers read: the connection, read without
// waiting while readable reads it inside WaitReadable's wait (inWait), else
// after the reader's BeforeWait hook, and after any error that wait read
// (waitErr). A read inside the body has no deadline: only WaitReadable's
// waits are watched for idleness (idleWatch), so input that paused
// mid-event is not an idle stream.
type connSrc getConn

func (c *connSrc) Read(p []byte) (int, error) {
	g := (*getConn)(c)
	if g.inWait {
		n, wait, err := rawsock.ReadNow(g.fd, p)
		if wait {
			return 0, nothingPending{}
		}
		return n, err
	}
	if g.head {
		return g.readHead(p)
	}
	if err := g.waitErr; err != nil {
		g.waitErr = nil
		return 0, err
	}
	if g.hook != nil {
		g.hook()
	}
	return g.read(p)
}

// readHead reads while openGet parses the response head: at most left
// bytes more (maxGetHead in all, what of the body came with the head's end
// included), then errHeadTooLarge.
func (g *getConn) readHead(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, errHeadTooLarge
	}
	n, err := g.read(p[:min(int64(len(p)), g.left)])
	g.left -= int64(n)
	return n, err
}

// read reads the socket: with raw system calls where it can (rawsock: a
// stream that moves one event at a time does not wake the runtime's
// monitor thread on every read), else through the connection.
func (g *getConn) read(p []byte) (int, error) {
	if g.raw != nil && rawsock.Supported {
		return rawsock.Read(g.raw, p)
	}
	return g.conn.Read(p)
}

// errStreamSlots is returned when HTTPConfig.StreamMaxConns streams are open.
var errStreamSlots = errors.New("upstream stream connection limit reached")

// openGet sends GET to the upstream endpoint with the given headers and
// reads the response headers, within ctx and the transport's timeout. The
// caller owns the returned response's body through the getConn (non-2xx
// answers included).
func (t *HTTP) openGet(ctx context.Context, headers [][2]string) (*getConn, *http.Response, error) {
	if t.getConns.Add(1) > int64(t.cfg.StreamMaxConns) {
		t.getConns.Add(-1)
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, errStreamSlots)
	}
	g := &getConn{t: t}
	ok := false
	defer func() {
		if !ok {
			g.close()
		}
	}()
	conn, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	g.conn = conn
	if tcp, isTCP := conn.(*net.TCPConn); isTCP {
		_ = tcp.SetNoDelay(true)
		if t.tls == nil {
			g.raw, _ = tcp.SyscallConn()
		}
	}
	// The exchange up to the response headers (the TLS handshake included)
	// is bounded; the body is not.
	deadline := time.Now().Add(t.cfg.Timeout)
	if d, has := ctx.Deadline(); has && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if t.tls != nil {
		tc := tls.Client(conn, t.tls)
		g.conn = tc
		if err := tc.HandshakeContext(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, nil, fmt.Errorf("%w: tls handshake: %v", ErrTimeout, err)
			}
			return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = g.conn.SetDeadline(time.Unix(1, 0)) })
	req := t.getRequest(headers)
	_, err = g.conn.Write(req)
	var resp *http.Response
	if err == nil {
		g.br = smallReaders.Get().(*bufio.Reader)
		g.src = (*connSrc)(g)
		g.br.Reset(g.src)
		g.head, g.left = true, maxGetHead
		resp, err = http.ReadResponse(g.br, nil)
		g.head, g.left = false, 0
	}
	if !stop() || ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, fmt.Errorf("%w: %v", ErrTimeout, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	_ = g.conn.SetDeadline(time.Time{})
	switch {
	case len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked":
		g.chunked = true
	case resp.ContentLength >= 0:
		g.left = resp.ContentLength
		if g.left == 0 {
			g.err = io.EOF
		}
	default:
		g.toEOF = true
	}
	ok = true
	return g, resp, nil
}

// getRequest is the request head of a GET stream.
func (t *HTTP) getRequest(headers [][2]string) []byte {
	b := make([]byte, 0, 256)
	b = append(b, "GET "...)
	b = append(b, t.requestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.hostHeader...)
	b = append(b, "\r\nUser-Agent: "...)
	b = append(b, t.cfg.UserAgent...)
	b = append(b, "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"...)
	for _, h := range headers {
		b = append(b, h[0]...)
		b = append(b, ": "...)
		b = append(b, h[1]...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// Read reads the response body, undoing chunked encoding.
func (g *getConn) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if g.br == nil { // given back while the reader waited (WaitReadable)
		g.br = burstReaders.Get().(*bufio.Reader)
		g.br.Reset(g.src)
		g.big = true
	}
	g.sizeBuffer(len(p))
	if g.chunked && g.left == 0 {
		if err := g.nextChunk(); err != nil {
			g.err = err
			return 0, err
		}
	}
	if !g.toEOF && int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.br.Read(p)
	if !g.toEOF {
		g.left -= int64(n)
		switch {
		case err == io.EOF:
			err = io.ErrUnexpectedEOF // the connection ended inside the body
		case err == nil && g.left == 0 && !g.chunked:
			err = io.EOF
		case err == nil && g.left == 0:
			// Consume the chunk's CRLF now if it is here; never wait for it.
			g.crlfPending = true
			if g.br.Buffered() >= 2 {
				err = g.crlf()
			}
		}
	}
	if err != nil {
		g.err = err
	}
	return n, err
}

// sizeBuffer moves the reading to the pooled burst buffer when the caller
// asks for want >= burstThreshold bytes, and back to the small one when it
// asks for less; only while nothing is buffered, so no input moves. A burst
// buffer taken at a wake (no small one put aside) stays until the next wait.
func (g *getConn) sizeBuffer(want int) {
	if g.src == nil || g.br.Buffered() > 0 {
		return
	}
	switch {
	case want >= burstThreshold && !g.big:
		big := burstReaders.Get().(*bufio.Reader)
		big.Reset(g.src)
		g.small, g.br, g.big = g.br, big, true
	case want < burstThreshold && g.small != nil:
		big := g.br
		g.br, g.small, g.big = g.small, nil, false
		big.Reset(nil)
		burstReaders.Put(big)
	}
}

// nextChunk reads the next chunk-size line (after the previous chunk's
// CRLF); at the last chunk it skips the trailer and returns io.EOF.
func (g *getConn) nextChunk() error {
	if g.crlfPending {
		if err := g.crlf(); err != nil {
			return err
		}
	}
	line, err := g.br.ReadSlice('\n')
	if err != nil {
		return chunkErr(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return errBadChunk // a bare LF: rejected, as net/http does
	}
	line = line[:len(line)-2]
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i] // chunk extensions are ignored
	}
	line = bytes.TrimRight(line, " \t")
	size, perr := strconv.ParseUint(string(line), 16, 63)
	if perr != nil {
		return errBadChunk
	}
	if size > 0 {
		g.left = int64(size)
		return nil
	}
	for { // the trailer, up to an empty line; fields are ignored
		line, err := g.br.ReadSlice('\n')
		for err == bufio.ErrBufferFull { // a field longer than the buffer
			_, err = g.br.ReadSlice('\n')
			line = nil
		}
		if err != nil {
			return chunkErr(err)
		}
		if line != nil && len(bytes.TrimRight(line, "\r\n")) == 0 {
			return io.EOF
		}
	}
}

// crlf consumes the CRLF that ends a chunk's data.
func (g *getConn) crlf() error {
	b, err := g.br.Peek(2)
	if err != nil {
		return chunkErr(err)
	}
	if b[0] != '\r' || b[1] != '\n' {
		return errBadChunk
	}
	_, _ = g.br.Discard(2)
	g.crlfPending = false
	return nil
}

// chunkErr maps the end of the connection inside chunked framing to
// io.ErrUnexpectedEOF: only the last chunk ends the body.
func chunkErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err == bufio.ErrBufferFull {
		return errBadChunk
	}
	return err
}

var errBadChunk = errors.New("upstream: malformed chunked encoding")

// WaitReadable returns when reading will not block: bytes are buffered, or
// the socket has bytes (or EOF, or an error) pending. Without a way to await
// readiness (TLS) it returns at once. The SSE decoder calls it before reading
// with nothing pending (sse.ReadWaiter): parking here rather than deep inside
// the body reader keeps an idle reader's stack small. With an idle period
// set it returns ErrIdle once the socket stayed quiet that long.
func (g *getConn) WaitReadable() error {
	if g.raw == nil || g.buffered() {
		return nil
	}
	if g.hook != nil {
		g.hook()
	}
	g.releaseBuffers()
	if g.idle > 0 {
		now, giveUp := g.idleStart()
		if giveUp {
			return ErrIdle
		}
		if !g.watched {
			if w := g.t.idleWatch(); w != nil {
				g.watched = true
				w.watch(g)
			}
		}
		g.waitSince.Store(now)
	}
	if g.readableFn == nil {
		g.readableFn = g.readable
	}
	err := g.raw.Read(g.readableFn)
	if g.idle > 0 && g.waitSince.Swap(0) < 0 {
		// The idleWatch ended the wait, or was ending it as input came:
		// its deadline goes (after it was set: fireMu).
		g.fireMu.Lock()
		_ = g.conn.SetReadDeadline(time.Time{})
		g.fireMu.Unlock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ErrIdle
		}
	}
	return nil // a closed socket: the Read that follows reports it
}

// endWait is the idleWatch's: it ends the reader's wait that began at
// since, if that wait still goes on, with a read deadline in the past.
func (g *getConn) endWait(since int64) {
	g.fireMu.Lock()
	if g.waitSince.CompareAndSwap(since, -1) {
		_ = g.conn.SetReadDeadline(time.Unix(1, 0))
	}
	g.fireMu.Unlock()
}

// unwatch takes g out of the idleWatch (it parks); the reader's own.
func (g *getConn) unwatch() {
	if g.watched {
		g.watched = false
		if w := g.t.idleWatchIfAny(); w != nil {
			w.forget(g)
		}
	}
}

// WaitsForInput implements sse.InputWaiter: WaitReadable waits for input
// unless readiness cannot be awaited (TLS).
func (g *getConn) WaitsForInput() bool { return g.raw != nil }

// idleStart prepares a wait of a stream with an idle period: it returns
// the wait's start, and true (give up now) when the stream, woken after a
// long park, has consumed the input that woke it and the socket has
// nothing more.
func (g *getConn) idleStart() (now int64, giveUp bool) {
	now = monoNow()
	switch {
	case g.parkedAt != 0:
		g.lone = g.lone || time.Duration(now-g.parkedAt) >= g.idle
		g.parkedAt = 0
	case g.lone:
		g.lone = false
		wouldBlock := false
		if g.raw.Control(func(fd uintptr) { wouldBlock = peekWouldBlock(fd, g.peek[:]) }) == nil {
			if wouldBlock {
				return now, true
			}
		}
	}
	return now, false
}

// buffered reports whether a Read returns without the socket: input is
// buffered, or the body ended.
func (g *getConn) buffered() bool {
	return g.err != nil || (g.br != nil && g.br.Buffered() > 0)
}

// releaseBuffers gives the read buffers back to their pools; only while
// nothing is buffered. The next Read takes a burst buffer.
func (g *getConn) releaseBuffers() {
	if g.br == nil || g.src == nil {
		return
	}
	if g.big {
		g.br.Reset(nil)
		burstReaders.Put(g.br)
		g.br, g.small, g.big = g.small, nil, false
	}
	if g.br != nil {
		g.br.Reset(nil)
		smallReaders.Put(g.br)
	}
	g.br = nil
}

// readable is WaitReadable's RawConn.Read callback: it reads what the
// socket has into a burst buffer (taken for the read), true when it read
// something, the end of the stream or an error (which the next read through
// br returns: waitErr), false when nothing was pending, after giving the
// buffer back. The poller calls it before the wait and again when it woke
// the reader: the input that woke it is read here, under the RawConn call
// that waited, rather than by a second one from Read (per event on a quiet
// stream: one read of the socket before the wait, one after).
func (g *getConn) readable(fd uintptr) bool {
	if !rawsock.Supported {
		return !peekWouldBlock(fd, g.peek[:]) // cannot look: read (and wait) in Read
	}
	if g.br == nil {
		g.br = burstReaders.Get().(*bufio.Reader)
		g.br.Reset(g.src)
		g.big = true
	}
	g.fd, g.inWait = fd, true
	_, err := g.br.Peek(1) // one read of the socket (connSrc.Read)
	g.inWait = false
	if err == nil {
		return true
	}
	if _, empty := err.(nothingPending); empty { // a type check: no call to compare
		g.releaseBuffers()
		return false
	}
	g.waitErr = err
	return true
}

// nothingPending is connSrc's read in readable finding the socket empty.
type nothingPending struct{}

func (nothingPending) Error() string { return "nothing pending" }

// close ends the stream and frees its connection slot; it interrupts a
// blocked Read or WaitReadable. Idempotent.
func (g *getConn) close() {
	g.closeOnce.Do(func() {
		g.dead.Store(true)
		if w := g.t.idleWatchIfAny(); w != nil {
			w.forget(g)
		}
		if g.conn != nil {
			_ = g.conn.Close()
		}
		if p := g.t.pollerIfAny(); p != nil {
			p.unpark(g) // a parked reader resumes and sees the end
		}
		g.t.getConns.Add(-1)
	})
}

// drain reads a little of a refused answer (so the upstream sees it read)
// and closes the connection: GET connections are not reused.
func (g *getConn) drain() {
	// The body is the upstream's to end: bound the wait for it.
	_ = g.conn.SetReadDeadline(time.Now().Add(min(g.t.cfg.Timeout, time.Second)))
	discardUpTo(g, 64<<10)
	g.close()
}
