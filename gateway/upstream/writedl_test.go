//go:build linux

package upstream

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWriteCancelDoesNotLeakDeadline: a write whose ctx ends as it
// completes must not leave its "interrupt now" deadline on the child's
// stdin for the next, unrelated write, which would then fail with
// ErrTimeout although the process reads its stdin.
func TestWriteCancelDoesNotLeakDeadline(t *testing.T) {
	tr, _ := newPeerTransport(t, "", nil)
	s := connectPeer(t, tr).(*stdioSession)
	defer s.Close(context.Background())
	msg := []byte(`{"jsonrpc":"2.0","method":"notifications/rv1"}`)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	failures := 0
	var first error
	for i := 0; i < 20000; i++ {
		_ = s.write(done, msg) // a client gone meanwhile: its own error is fine
		if err := s.write(context.Background(), msg); err != nil {
			failures++
			if first == nil {
				first = err
			}
		}
	}
	require.Zero(t, failures, "writes with a live context failed, first: %v", first)
}
