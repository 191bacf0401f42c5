package gateway

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sockopt(t *testing.T, c net.Conn, opt int) int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt) }))
	require.NoError(t, gerr)
	return v
}

// TestLimitSendBuffer: the stream send buffer is set (Linux reports it
// doubled), and 0 leaves the kernel's autotuned default alone.
func TestLimitSendBuffer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, n := range []int{0, 16 << 10, DefaultStreamSendBuffer} {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		sc, err := ln.Accept()
		require.NoError(t, err)
		before := sockopt(t, sc, syscall.SO_SNDBUF)
		limitSendBuffer(sc, n)
		if n == 0 {
			assert.Equal(t, before, sockopt(t, sc, syscall.SO_SNDBUF))
		} else {
			assert.Equal(t, 2*n, sockopt(t, sc, syscall.SO_SNDBUF))
		}
		_ = c.Close()
		_ = sc.Close()
	}
}
