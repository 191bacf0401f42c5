// Package httpproxy is a plain HTTP reverse proxy for benchmarks, built on
// the HTTP library mcpgate is built on (fasthttp, server and client): every
// request is parsed, forwarded to one upstream over pooled keep-alive
// connections, and the answer is sent back, a streamed answer (SSE) chunk by
// chunk as it arrives. Nothing else happens: no session, no JSON-RPC, no
// ring, no resumption.
//
// It sits between the byte relay (loadtest/relay: nothing parsed) and
// mcpgate in the benchmarks, so that mcpgate's distance to the relay splits
// into what parsing and writing HTTP with this library costs on the machine
// and what mcpgate's own work on a call costs.
package httpproxy

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("httpproxy: closed")

// chunkSize is the copy buffer of one streamed answer.
const chunkSize = 16 << 10

// Proxy forwards HTTP requests to To. Create it with New.
type Proxy struct {
	srv    *fasthttp.Server
	client *fasthttp.HostClient

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // upstream connections, closed by Close
	bufs   sync.Pool
}

// New returns a proxy to the upstream at host:port to.
func New(to string) *Proxy {
	p := &Proxy{conns: make(map[net.Conn]struct{})}
	p.bufs.New = func() any { b := make([]byte, chunkSize); return &b }
	p.client = &fasthttp.HostClient{
		Addr:                to,
		MaxConns:            1 << 20, // one per open stream; the generator bounds them
		MaxIdleConnDuration: 30 * time.Second,
		StreamResponseBody:  true,
		Dial:                p.dial,
	}
	p.srv = &fasthttp.Server{
		Handler:               p.handle,
		Concurrency:           256 * 1024,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		IdleTimeout:           90 * time.Second,
	}
	return p
}

// dial opens an upstream connection and tracks it until it closes.
func (p *Proxy) dial(a string) (net.Conn, error) {
	c, err := net.Dial("tcp", a)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return nil, ErrClosed
	}
	p.conns[c] = struct{}{}
	return &tracked{Conn: c, p: p}, nil
}

type tracked struct {
	net.Conn
	p    *Proxy
	once sync.Once
}

func (t *tracked) Close() error {
	t.once.Do(func() {
		t.p.mu.Lock()
		delete(t.p.conns, t.Conn)
		t.p.mu.Unlock()
	})
	return t.Conn.Close()
}

// Serve serves connections accepted on ln until Close; it returns ErrClosed
// after Close, or the listener's error.
func (p *Proxy) Serve(ln net.Listener) error {
	err := p.srv.Serve(ln)
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return err
}

// Close stops accepting, cuts every upstream connection (which ends the
// streams relayed from them) and waits until every client connection is
// closed.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	return p.srv.Shutdown()
}

// handle forwards one request and relays its answer.
func (p *Proxy) handle(ctx *fasthttp.RequestCtx) {
	req := fasthttp.AcquireRequest()
	ctx.Request.CopyTo(req)
	resp := fasthttp.AcquireResponse()
	err := p.client.Do(req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		ctx.Error("upstream: "+err.Error(), fasthttp.StatusBadGateway)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	body := resp.BodyStream()
	if body == nil || resp.Header.ContentLength() >= 0 {
		// A whole answer: read it and send it as it came.
		ctx.Response.SetBody(resp.Body())
		fasthttp.ReleaseResponse(resp)
		return
	}
	// A streamed answer: each chunk read from the upstream is written and
	// flushed to the client at once, until the upstream ends it or the
	// client goes away.
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		bp := p.bufs.Get().(*[]byte)
		defer p.bufs.Put(bp)
		defer fasthttp.ReleaseResponse(resp)
		defer func() { _ = resp.CloseBodyStream() }()
		buf := *bp
		for {
			n, rerr := body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if werr := w.Flush(); werr != nil {
					return
				}
			}
			if rerr != nil {
				return
			}
		}
	})
}
