package gateway

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/rawsock"
)

// guardListener wraps the listener Serve is given. It counts connections
// per client address and refuses the ones beyond Config.MaxConnsPerIP, and
// wraps every connection in a guardConn, which refuses request heads with
// bare LF or bare CR line ends.
//
// fasthttp's own Server.MaxConnsPerIP is not used: its connection wrapper
// hides the socket (SyscallConn, SetWriteBuffer) that stream connections
// are tuned through (tuneStreamConn), and it answers in plain text.
type guardListener struct {
	net.Listener
	s        *Server
	maxPerIP int           // 0: no cap
	stall    time.Duration // Config.WriteStallTimeout: a response write's deadline

	// mu guards perIP, the open connections per client key (clientKey).
	mu    sync.Mutex
	perIP map[netip.Addr]int
}

func newGuardListener(ln net.Listener, s *Server) *guardListener {
	return &guardListener{Listener: ln, s: s, maxPerIP: s.cfg.MaxConnsPerIP, stall: s.cfg.WriteStallTimeout, perIP: map[netip.Addr]int{}}
}

// tooManyConns is the whole answer to a connection beyond the per-IP cap,
// written before anything is read from it.
var tooManyConns = func() []byte {
	body := jsonrpc.AppendError(nil, nil, jsonrpc.CodeServerError, "Too Many Requests: too many connections from this address", nil)
	head := "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
	b := append([]byte(head), strconv.Itoa(len(body))...)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}()

// Accept returns the next connection within the per-IP cap.
func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, counted := clientKey(c.RemoteAddr())
		if counted && l.maxPerIP > 0 {
			l.mu.Lock()
			n := l.perIP[key]
			if n >= l.maxPerIP {
				l.mu.Unlock()
				l.s.metrics.connsRefused.Add(1)
				l.s.metrics.status(429)
				// A fresh socket's send buffer is empty: this write does not
				// block the accept loop; the deadline makes sure of it.
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = c.Write(tooManyConns)
				_ = c.Close()
				continue
			}
			l.perIP[key] = n + 1
			l.mu.Unlock()
		} else {
			counted = false
		}
		gc := &guardConn{Conn: c, l: l, key: key, counted: counted, stall: l.stall, state: headMethod}
		if tcp, ok := c.(*net.TCPConn); ok && rawsock.Supported {
			gc.raw, _ = tcp.SyscallConn()
		}
		gc.dl.Init(c, gc.raw)
		return gc, nil
	}
}

// release returns one connection of key.
func (l *guardListener) release(key netip.Addr) {
	l.mu.Lock()
	if n := l.perIP[key] - 1; n > 0 {
		l.perIP[key] = n
	} else {
		delete(l.perIP, key)
	}
	l.mu.Unlock()
}

// clientKey is what connections are counted by: the client's IPv4 address,
// or the /64 of an IPv6 address (one host usually has a whole /64).
func clientKey(a net.Addr) (netip.Addr, bool) {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return netip.Addr{}, false
	}
	return addrKey(ip), true
}

// addrKey is clientKey of an address: itself for IPv4 (an IPv4-mapped IPv6
// address unmapped), its /64 for IPv6.
func addrKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip
}

// errBareLineEnd: a request head used a bare LF or CR as a line end. The
// ErrorHandler answers 400 at once (fasthttp would otherwise wait for a
// CRLF CRLF that never comes, until the read timeout).
var errBareLineEnd = errors.New("bare LF or CR in the request head")

// guardConn is one accepted connection. Its Read watches request heads: a
// LF not preceded by CR, or a CR not followed by LF, ends the request with
// errBareLineEnd. Only heads that start where a request surely starts are
// watched: at the connection's start and at the first read after each
// response write, and only once their first bytes form a request line
// ("METHOD target HTTP/d.d"; a pipelined request's body never does); from
// the end of a head to the next write nothing is looked at.
//
// Read runs on the connection's fasthttp goroutine only; Write may run on
// another (a stream's writer), so it only sets an atomic flag.
type guardConn struct {
	net.Conn
	l       *guardListener
	key     netip.Addr
	counted bool
	stall   time.Duration // a response write's deadline per stallChunk; 0: none
	closed  atomic.Bool
	wrote   atomic.Bool // a response was written since the last Read
	// streaming: a stream's writer (attachConn) writes the connection, and
	// the sweeper cuts its stalled writes; otherwise fasthttp writes a
	// response, bounded by a write deadline (Write).
	streaming atomic.Bool

	state headState
	n     int   // bytes of the current token (method, target) or line so far, CR excluded
	cr    bool  // the last byte read in the head was a CR
	err   error // sticky: the head was refused
	// raw is the socket, read and written with raw system calls
	// (rawsock: a call's exchange, or a stream's event written by its
	// hijackWriter, then does not wake the runtime's monitor thread);
	// nil: through Conn.
	raw syscall.RawConn
	// dl holds the connection's deadlines until a read or write waits:
	// fasthttp sets three per request, which a request whose bytes are
	// there and whose answer fits the socket's buffer never needs.
	dl rawsock.Deadlines
}

type headState uint8

const (
	headOff     headState = iota // not watching
	headMethod                   // at a request's start: preamble CRLFs, then the method token
	headTarget                   // the request target
	headVersion                  // "HTTP/d.d"
	headLines                    // the rest of the head
)

// versionPattern is the request line's end; '#' stands for a digit.
const versionPattern = "HTTP/#.#"

func (c *guardConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.wrote.Load() && c.wrote.Swap(false) {
		c.state, c.cr, c.n = headMethod, false, 0
	}
	var n int
	var err error
	if c.raw != nil {
		n, err = c.dl.Read(c.raw, p)
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 && c.state != headOff {
		if bad := c.scan(p[:n]); bad >= 0 {
			c.err = errBareLineEnd
			if bad == 0 {
				return 0, c.err
			}
			return bad, nil // what came before; the next Read fails
		}
	}
	return n, err
}

// scan follows the head through b. It returns the offset of a bare line
// end, or -1. The request line's start is looked at byte by byte; the rest
// of the head jumps from line end to line end.
func (c *guardConn) scan(b []byte) int {
	for i := 0; i < len(b); {
		ch := b[i]
		switch c.state {
		case headOff:
			return -1
		case headMethod:
			switch {
			case (ch == '\r' || ch == '\n') && c.n == 0:
				// empty lines before the request line are allowed
			case ch >= 'A' && ch <= 'Z' && c.n < 32:
				c.n++
			case ch == ' ' && c.n > 0:
				c.state, c.n = headTarget, 0
			default:
				c.state = headOff // not a request line: leave it to fasthttp
			}
			i++
			continue
		case headTarget:
			switch {
			case ch > ' ' && ch < 0x7f:
				c.n++
			case ch == ' ' && c.n > 0:
				c.state, c.n = headVersion, 0
			default:
				c.state = headOff
			}
			i++
			continue
		case headVersion:
			if c.n < len(versionPattern) {
				want := versionPattern[c.n]
				if ch == want || (want == '#' && ch >= '0' && ch <= '9') {
					c.n++
				} else {
					c.state = headOff
				}
				i++
				continue
			}
			c.state, c.n = headLines, len(versionPattern) // the request line goes on: its end follows
		}
		// headLines
		if c.cr {
			if ch != '\n' {
				return i // bare CR
			}
			c.cr = false
			if c.n == 0 { // CRLF CRLF: the head ends
				c.state = headOff
				return -1
			}
			c.n = 0
			i++
			continue
		}
		j := indexLineEnd(b[i:])
		if j < 0 {
			c.n += len(b) - i
			return -1
		}
		c.n += j
		i += j
		if b[i] == '\n' {
			return i // bare LF
		}
		c.cr = true
		i++
	}
	return -1
}

// indexLineEnd returns the offset of the first CR or LF in b, or -1.
func indexLineEnd(b []byte) int {
	r, n := bytes.IndexByte(b, '\r'), bytes.IndexByte(b, '\n')
	switch {
	case r < 0:
		return n
	case n < 0 || r < n:
		return r
	}
	return n
}

// stallChunk is how much of a response one write deadline covers: a
// response write is cut when a chunk makes no progress for
// Config.WriteStallTimeout.
const stallChunk = 64 << 10

// Write writes a response fasthttp sends (an answer, an error, a whole SSE
// answer) under a write deadline of Config.WriteStallTimeout per
// stallChunk, so a client that stops reading cannot hold the connection,
// its goroutine and the answer forever; a stream's writer writes without
// one (the sweeper cuts its stalls: sweep.go).
func (c *guardConn) Write(p []byte) (int, error) {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	if c.stall <= 0 || c.streaming.Load() {
		return c.write(p)
	}
	n := 0
	for n < len(p) {
		_ = c.dl.SetWrite(time.Now().Add(c.stall))
		k, err := c.write(p[n:min(len(p), n+stallChunk)])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *guardConn) write(p []byte) (int, error) {
	if c.raw != nil {
		return c.dl.Write(c.raw, p)
	}
	return c.Conn.Write(p)
}

// canTry reports whether a hijacked stream's writer can write the socket
// without waiting (rawsock.WriteNow: conn.go).
func (c *guardConn) canTry() bool { return c.raw != nil && rawsock.Supported }

// setStreaming marks nc (a connection accepted by Serve) as written by a
// stream's writer, or again by fasthttp: a stream's writes carry no
// deadline, so the last response's is cleared.
func setStreaming(nc net.Conn, on bool) {
	c, ok := nc.(*guardConn)
	if !ok || c.streaming.Load() == on {
		return
	}
	c.streaming.Store(on)
	if on {
		_ = c.dl.SetWrite(time.Time{})
	}
}

// SetDeadline, SetReadDeadline and SetWriteDeadline set the connection's
// deadlines through dl: on the socket once a read or write waits.
func (c *guardConn) SetDeadline(t time.Time) error      { return c.dl.Set(t) }
func (c *guardConn) SetReadDeadline(t time.Time) error  { return c.dl.SetRead(t) }
func (c *guardConn) SetWriteDeadline(t time.Time) error { return c.dl.SetWrite(t) }

// Close closes the connection and returns its place under the per-IP cap,
// once.
func (c *guardConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.Conn.Close()
	if c.counted {
		c.l.release(c.key)
	}
	return err
}

// SetWriteBuffer and SyscallConn reach the socket, so stream connections
// can be tuned (tuneStreamConn).
func (c *guardConn) SetWriteBuffer(n int) error {
	if wb, ok := c.Conn.(interface{ SetWriteBuffer(int) error }); ok {
		return wb.SetWriteBuffer(n)
	}
	return errors.ErrUnsupported
}

func (c *guardConn) SyscallConn() (syscall.RawConn, error) {
	if c.raw != nil {
		return c.raw, nil
	}
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// readBody is fasthttp's HeaderReceived hook: once a request's head is in,
// its body gets Config.ReadBodyTimeout (the head had ReadHeaderTimeout).
func (s *Server) readBody(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{ReadTimeout: s.cfg.ReadBodyTimeout}
}
