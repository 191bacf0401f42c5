// Package relay is a byte relay for benchmarks: every accepted TCP connection
// is paired with one new connection to a fixed address, and bytes are copied
// both ways through a buffer in user space until each side has closed.
//
// It is the floor a proxy in user space pays on a machine: one read and one
// write per piece of data that arrives, a goroutine per direction, nothing
// parsed, the reads and writes as raw system calls (gateway/rawsock, as
// mcpgate makes them; PlainIO: through net.Conn, which wakes the runtime's
// monitor thread on every call). The benchmarks run it side by side with
// mcpgate and Caddy to show how much of a proxy's cost per call or per event
// is the machine's (the kernel's loopback, the Go runtime's poller and
// scheduler) and how much is the proxy's own. It copies with read and write
// on purpose, not splice(2): a gateway that looks at the bytes cannot splice
// them.
package relay

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/mcpgate/mcpgate/gateway/rawsock"
)

// DefaultBufferSize is the copy buffer of one direction of one connection.
const DefaultBufferSize = 32 << 10

// Relay copies bytes between accepted connections and the connections it
// dials to To. Its zero value is not usable; set To.
type Relay struct {
	// To is the host:port every accepted connection is relayed to.
	To string
	// BufferSize is each direction's copy buffer; 0 means DefaultBufferSize.
	BufferSize int
	// PlainIO copies with net.Conn's Read and Write (syscall.Syscall)
	// instead of raw system calls.
	PlainIO bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	ln     net.Listener
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("relay: closed")

// Serve accepts connections on ln and relays each until Close. It returns
// ErrClosed after Close, or the listener's error.
func (r *Relay) Serve(ln net.Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	r.ln = ln
	if r.conns == nil {
		r.conns = make(map[net.Conn]struct{})
	}
	r.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !r.track(c) {
			_ = c.Close()
			return ErrClosed
		}
		r.wg.Add(1)
		go r.pair(c)
	}
}

// Close stops accepting, closes every relayed connection and waits for their
// goroutines to end.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	if r.ln != nil {
		_ = r.ln.Close()
	}
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// track adds c to the open connections unless the relay is closed.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	_ = c.Close()
}

// pair dials To for the accepted connection c and copies both ways: the
// client-to-upstream direction on a goroutine of its own, the other on this
// one. A direction that reaches EOF half-closes its destination, so the
// other direction still finishes; both connections close when both are done.
func (r *Relay) pair(c net.Conn) {
	defer r.wg.Done()
	defer r.untrack(c)
	u, err := net.Dial("tcp", r.To)
	if err != nil {
		return
	}
	if !r.track(u) {
		_ = u.Close()
		return
	}
	defer r.untrack(u)
	size := r.BufferSize
	if size <= 0 {
		size = DefaultBufferSize
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(u, c, size, r.PlainIO)
	}()
	copyHalf(c, u, size, r.PlainIO)
	<-done
}

// copyHalf copies src to dst with plain reads and writes until src ends or
// either side fails, then half-closes dst's write side (or closes both on an
// error, which ends the other direction too).
func copyHalf(dst, src net.Conn, size int, plain bool) {
	buf := make([]byte, size)
	read, write := src.Read, dst.Write
	if !plain && rawsock.Supported {
		// Connections without a socket (none today: both are TCP) keep
		// net.Conn's Read and Write.
		if rs, ok := rawConn(src); ok {
			if rd, ok := rawConn(dst); ok {
				read = func(p []byte) (int, error) { return rawsock.Read(rs, p) }
				write = func(p []byte) (int, error) { return rawsock.Write(rd, p) }
			}
		}
	}
	for {
		n, err := read(buf)
		if n > 0 {
			if _, werr := write(buf[:n]); werr != nil {
				_ = src.Close()
				_ = dst.Close()
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite()
				return
			}
			_ = src.Close()
			_ = dst.Close()
			return
		}
	}
}

// rawConn is c's socket, if it has one.
func rawConn(c net.Conn) (syscall.RawConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	raw, err := sc.SyscallConn()
	return raw, err == nil
}
