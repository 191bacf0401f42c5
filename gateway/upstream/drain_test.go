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

// TestRefusedGetDrainIsBounded: an upstream that refuses the standalone
// GET (405) but never finishes the refusal's body must not hold Listen
// forever: the gateway passes the session's context, which has no deadline.
func TestRefusedGetDrainIsBounded(t *testing.T) {
	hold := make(chan struct{})
	url := rawServer(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nnope.\r\n")
		<-hold // the body's end never comes
	})
	t.Cleanup(func() { close(hold) })
	tr, err := NewHTTP(HTTPConfig{URL: url, Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer tr.Close()
	s := &httpSession{t: tr, id: "up-1", version: "2025-06-18"}
	done := make(chan error, 1)
	go func() {
		_, err := s.Listen(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrNotSupported)
	case <-time.After(3 * time.Second):
		t.Fatal("Listen hangs draining a refused GET's body")
	}
}
