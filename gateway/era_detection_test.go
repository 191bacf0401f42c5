package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// discoverAfterOutage is a stateless-only upstream whose first
// server/discover meets a 503 (a proxy in front of it while it starts).
type discoverAfterOutage struct {
	nopTransport
	calls atomic.Int32
}

func (d *discoverAfterOutage) Do(context.Context, []upstream.Header, []byte) (*upstream.Reply, error) {
	if d.calls.Add(1) == 1 {
		return nil, &upstream.StatusError{Op: "stateless post", Status: 503}
	}
	return &upstream.Reply{JSON: []byte(`{"jsonrpc":"2.0","id":0,"result":{"supportedVersions":["` + statelessVersion + `"]}}`)}, nil
}

// TestEraDetectionRetriesAfterUpstream5xx: a 5xx to server/discover is an
// upstream failure, not a session-era server's refusal; it must not fix the
// upstream's era for the life of the process.
func TestEraDetectionRetriesAfterUpstream5xx(t *testing.T) {
	up := &discoverAfterOutage{}
	s, err := New(Config{Upstream: up, DrainWindow: -1})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	s.Upstreams(context.Background()) // the 503
	s.eras.mu.Lock()
	s.eras.failed = time.Time{} // as if eraProbeRetry had passed
	s.eras.mu.Unlock()
	_, _, era := s.Upstreams(context.Background())
	require.Equal(t, "stateless (session clients bridged)", era)
	require.EqualValues(t, 2, up.calls.Load(), "server/discover asked again after the 503")
}

// discoverHeld is an upstream that answers server/discover with an SSE
// stream and then sends nothing.
type discoverHeld struct {
	nopTransport
	stream *heldStream
}

func (d *discoverHeld) Do(context.Context, []upstream.Header, []byte) (*upstream.Reply, error) {
	return &upstream.Reply{Stream: d.stream}, nil
}

// TestEraDetectionBoundedWhenDiscoverStalls: the era probe runs under the
// detection's lock, which every initialize and stateless request takes. An
// upstream that opens an SSE answer to server/discover and never finishes
// it must fail the probe within the upstream timeout (and be asked again
// later), not hold the lock, and with it the gateway, for as long as it
// keeps the stream open.
func TestEraDetectionBoundedWhenDiscoverStalls(t *testing.T) {
	up := &discoverHeld{stream: newHeldStream()}
	s, err := New(Config{Upstream: up, DrainWindow: -1, UpstreamTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = up.stream.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	done := make(chan string, 1)
	go func() {
		_, _, era := s.Upstreams(context.Background())
		done <- era
	}()
	select {
	case era := <-done:
		require.Equal(t, "session (stateless clients bridged)", era, "not detected: the session side, asked again later")
	case <-time.After(5 * time.Second):
		t.Fatal("the era probe still waits for a server/discover answer that never comes")
	}
	require.True(t, up.stream.closed.Load(), "the stalled answer stream is closed")
	s.eras.mu.Lock()
	require.ErrorIs(t, s.eras.lastErr, upstream.ErrTimeout)
	s.eras.mu.Unlock()
}
