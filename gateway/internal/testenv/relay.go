package testenv

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Relay is a loopback TCP relay between clients and a target address. Tests
// cut every connection through it at chosen moments, as a flaky network or a
// crashed client would.
type Relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]net.Conn // client side -> target side
	wg    sync.WaitGroup

	cuts     atomic.Int64
	accepted atomic.Int64
}

// StartRelay listens on a free loopback port and relays to target. It is
// closed by t.Cleanup.
func StartRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{ln: ln, target: target, conns: map[net.Conn]net.Conn{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.Close)
	return r
}

// Addr is the relay's listening address.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		r.accepted.Add(1)
		r.mu.Lock()
		r.conns[c] = u
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(c, u)
		go r.pipe(u, c)
	}
}

func (r *Relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	r.mu.Lock()
	delete(r.conns, dst)
	delete(r.conns, src)
	r.mu.Unlock()
}

// CutAll closes both sides of every relayed connection, abruptly (RST), and
// returns how many it cut.
func (r *Relay) CutAll() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for c, u := range r.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		if tu, ok := u.(*net.TCPConn); ok {
			_ = tu.SetLinger(0)
		}
		_ = c.Close()
		_ = u.Close()
		delete(r.conns, c)
		n++
	}
	r.cuts.Add(int64(n))
	return n
}

// Cuts is how many connections CutAll closed so far.
func (r *Relay) Cuts() int64 { return r.cuts.Load() }

// Accepted is how many connections the relay accepted.
func (r *Relay) Accepted() int64 { return r.accepted.Load() }

// Close stops the relay and every connection, and waits for its goroutines.
func (r *Relay) Close() {
	_ = r.ln.Close()
	r.CutAll()
	r.wg.Wait()
}
