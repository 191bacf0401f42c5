package harness

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/loadtest/mockup"
)

// TestSmallWindowStreams: GET streams of SmallWindow sessions (the stalling readers)
// run on connections with the configured receive buffer; others keep the kernel's.
func TestSmallWindowStreams(t *testing.T) {
	_, url := upstream(t, mockup.Config{})
	c, err := NewClient(ClientConfig{Target: url, Version: "2025-06-18", Conns: 2, StreamConns: 4, Timeout: DefaultTimeout, StallWindow: 4096})
	require.NoError(t, err)
	defer c.Close()
	defer c.CloseAll()

	// small counts the client's connections whose receive buffer is the small one
	// (Linux reports it doubled).
	small := func() int {
		t.Helper()
		c.connsMu.Lock()
		defer c.connsMu.Unlock()
		n := 0
		for tc := range c.conns {
			raw, err := tc.Conn.(*net.TCPConn).SyscallConn()
			require.NoError(t, err)
			var v int
			require.NoError(t, raw.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }))
			if v == 2*4096 {
				n++
			}
		}
		return n
	}

	sess, err := c.Initialize()
	require.NoError(t, err)
	es, err := c.Get(sess, nil)
	require.NoError(t, err)
	defer es.Close()
	assert.Zero(t, small(), "ordinary streams keep the kernel's buffer")

	stalled, err := c.Initialize()
	require.NoError(t, err)
	stalled.SmallWindow = true
	es2, err := c.Get(stalled, nil)
	require.NoError(t, err)
	defer es2.Close()
	assert.Equal(t, 1, small(), "the stalling reader's stream has the small buffer")
}
