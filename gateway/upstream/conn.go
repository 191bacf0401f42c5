package upstream

import (
	"net"
	"time"
)

// trackedConn wraps an upstream connection so that the transport can find it
// again from a fasthttp.Response: its LocalAddr is a *connAddr pointing back
// to the connection. fasthttp sets one read deadline for a whole exchange,
// body included; a POST answered with an SSE stream must drop that deadline
// once the headers are in, or the stream would be cut at the POST timeout.
type trackedConn struct {
	net.Conn
	addr connAddr
}

type connAddr struct {
	net.Addr
	conn *trackedConn
}

func (c *trackedConn) LocalAddr() net.Addr { return &c.addr }

func newTrackedConn(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c}
	tc.addr = connAddr{Addr: c.LocalAddr(), conn: tc}
	return tc
}

// clearDeadlines removes the read deadline of the connection behind addr, if
// addr came from a trackedConn.
func clearDeadlines(addr net.Addr) {
	if a, ok := addr.(*connAddr); ok && a.conn != nil {
		_ = a.conn.Conn.SetReadDeadline(time.Time{})
	}
}

func dialTracked(dialer *net.Dialer) func(addr string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		if tcp, ok := c.(*net.TCPConn); ok {
			_ = tcp.SetNoDelay(true)
		}
		return newTrackedConn(c), nil
	}
}
