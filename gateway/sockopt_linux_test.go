package gateway

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sockopt(t *testing.T, c net.Conn, level, opt int) int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }))
	require.NoError(t, gerr)
	return v
}

// TestTuneStreamConn: the stream send buffer is set (Linux reports it
// doubled) and TCP_USER_TIMEOUT is two heartbeats; zero values leave the
// kernel's defaults alone.
func TestTuneStreamConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, tc := range []struct {
		sendBuf  int
		deadPeer time.Duration
	}{{0, 0}, {16 << 10, 0}, {DefaultStreamSendBuffer, 30 * time.Second}} {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		sc, err := ln.Accept()
		require.NoError(t, err)
		before := sockopt(t, sc, syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		tuneStreamConn(sc, tc.sendBuf, tc.deadPeer)
		if tc.sendBuf == 0 {
			assert.Equal(t, before, sockopt(t, sc, syscall.SOL_SOCKET, syscall.SO_SNDBUF))
		} else {
			assert.Equal(t, 2*tc.sendBuf, sockopt(t, sc, syscall.SOL_SOCKET, syscall.SO_SNDBUF))
		}
		assert.Equal(t, int(tc.deadPeer.Milliseconds()), sockopt(t, sc, syscall.IPPROTO_TCP, tcpUserTimeout))
		_ = c.Close()
		_ = sc.Close()
	}
	s := newTestServer(t, Config{Heartbeat: 15 * time.Second})
	assert.Equal(t, 30*time.Second, s.deadPeerTimeout(), "two heartbeats")
	s = newTestServer(t, Config{Heartbeat: -1})
	assert.Zero(t, s.deadPeerTimeout(), "no heartbeats: the kernel default")
}
