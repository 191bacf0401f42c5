package upstream

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGetTLSHandshakeBoundedByTimeout: an https upstream that accepts the
// connection but never answers the TLS handshake must fail a GET stream's
// open within Config.Timeout (the head exchange is bounded), also when the
// caller's ctx has no deadline (the gateway passes the session's context).
func TestGetTLSHandshakeBoundedByTimeout(t *testing.T) {
	addr := acceptLoop(t, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c) // read the ClientHello, never answer
	})
	tr, err := NewHTTP(HTTPConfig{URL: "https://" + addr + "/mcp", Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer tr.Close()
	s := &httpSession{t: tr, id: "up-1", version: "2025-06-18"}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		st, err := s.Listen(ctx)
		if err == nil {
			_ = st.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrTimeout)
	case <-time.After(3 * time.Second):
		cancel() // unblock the stalled handshake
		<-done
		t.Fatal("GET stream open stalled in the TLS handshake past Config.Timeout (200ms)")
	}
}
