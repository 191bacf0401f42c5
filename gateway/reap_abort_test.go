package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// abortSession is an upstream session that nothing but the gateway ends
// (upstream.Aborter), counting Abort calls.
type abortSession struct {
	stubSession
	aborted atomic.Int32
}

func (a *abortSession) Abort() { a.aborted.Add(1) }

// TestAbortUpstreamThroughWrappers: abortUpstream (reapLater with its queue
// full) reaches the real upstream session through a legacy session's
// lazyUpstream and leaves one that expires upstream by itself as it is.
func TestAbortUpstreamThroughWrappers(t *testing.T) {
	a := &abortSession{}
	assert.True(t, abortUpstream(a))
	assert.EqualValues(t, 1, a.aborted.Load())
	assert.False(t, abortUpstream(&stubSession{}), "expires upstream by itself: left")
	assert.False(t, abortUpstream(nil))

	var l lazyUpstream
	require.True(t, l.set(a))
	assert.True(t, abortUpstream(&l))
	assert.EqualValues(t, 2, a.aborted.Load())

	var none lazyUpstream
	assert.True(t, abortUpstream(&none), "nothing opened")
	assert.False(t, none.set(&stubSession{}), "nor opened later: its initialize closes what it opened")

	var self lazyUpstream
	require.True(t, self.set(&stubSession{}))
	assert.False(t, abortUpstream(&self))
}

// TestReinitAbortDuringReinitialize: abortUpstream on a restored session
// whose upstream side is being re-initialized does not wait for that; the
// upstream session it opens is ended, and the call that started it finds
// the session gone.
func TestReinitAbortDuringReinitialize(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	gate := testenv.NewGate("connect")
	fake.OnConnect(testenv.Negotiated().After(gate))
	s, err := New(Config{Upstream: fake, DrainWindow: -1, UpstreamEra: UpstreamEraSession})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	init := []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sess := &session{id: newSessionID(), restart: &restartState{init: init}}
	r := &reinitSession{srv: s, sess: sess, kind: upstream.KindStdio, version: "2025-11-25", init: init}
	errc := make(chan error, 1)
	go func() {
		_, err := r.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		errc <- err
	}()
	gate.WaitReached(t)
	assert.True(t, abortUpstream(r), "taken care of, without waiting for the re-initialization")
	gate.Release()
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, upstream.ErrSessionGone)
	case <-time.After(10 * time.Second):
		t.Fatal("the re-initializing call never returned")
	}
	assert.True(t, fake.Session(1).Closed(), "the upstream session opened meanwhile is ended")
	_, err = r.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`))
	assert.ErrorIs(t, err, upstream.ErrSessionGone)
}
