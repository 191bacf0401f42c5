package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// TestClusterRefusedResumeKeepsThePlainStart: on a cluster node, as on a
// single node, a plain GET of the standalone stream starts where the
// stream's newest connection started. A resume the gateway refused (400:
// its Last-Event-ID is ahead of the stream, or events it needs are gone)
// attached no connection, so it must not move that start: the plain GET
// after it still replays what the client was not shown an id of.
func TestClusterRefusedResumeKeepsThePlainStart(t *testing.T) {
	fnet := newFakeNet()
	up := testenv.NewFakeUpstream(t)
	srv, url := fakeClusterServer(t, fnet, "a", up, Config{})
	sid := liveSession(t, url)
	a := testenv.DialStream(t, url, sid, "")
	up.WaitFor(t, "the upstream standalone stream", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })
	up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
	a.Until(t, "id: 0_1")

	ctx := getWithLastEventID(srv, sid, "0_99")
	require.Equal(t, http.StatusBadRequest, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	assert.Contains(t, string(ctx.Response.Body()), "ahead of the stream")

	b := testenv.DialStream(t, url, sid, "")
	up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`)
	got := b.Until(t, "prompts/list_changed")
	assert.Contains(t, got, "id: 0_1\n", "the refused resume moved where a plain GET starts: the client lost events")
}

// TestClusterPlainGetAfterGoneStartKeepsUndelivered: when the position a
// plain GET of the standalone stream would start from is gone (a delivered
// must-deliver event after it was evicted), a single node goes on after
// what was delivered (plainStart); a cluster node must too, not skip the
// events no connection was handed yet.
func TestClusterPlainGetAfterGoneStartKeepsUndelivered(t *testing.T) {
	fnet := newFakeNet()
	up := testenv.NewFakeUpstream(t)
	srv, url := fakeClusterServer(t, fnet, "a", up, Config{RingSize: 2})
	sid := liveSession(t, url)
	a := testenv.DialStream(t, url, sid, "")
	up.WaitFor(t, "the upstream standalone stream", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })
	up.Session(1).Push(`{"jsonrpc":"2.0","id":"r1","method":"roots/list"}`) // must-deliver
	a.Until(t, "id: 0_1")
	sess, ok := srv.store.Get(sid)
	require.True(t, ok)
	st := sess.stream(0)
	require.True(t, st.cut(CloseSlowConsumer))
	require.Eventually(t, func() bool { return !st.attached() }, 5*time.Second, 5*time.Millisecond)

	// Two events no connection got: the second evicts the delivered
	// request, so the stream's newest connection's start (0) is gone.
	up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"two"}}`)
	up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"three"}}`)
	require.Eventually(t, func() bool { return st.ring.LastSeq() == 3 }, 5*time.Second, 5*time.Millisecond)
	_, _, err := st.ring.Next(0, func(uint64, []byte) bool { return false })
	require.ErrorIs(t, err, ringbuf.ErrEvicted, "the precondition: the plain start is gone")

	// (Nothing more is pushed: the ring is full of undelivered events, so
	// a new one would drop the oldest by the policy.)
	b := testenv.DialStream(t, url, sid, "")
	require.Equal(t, uint64(1), st.connStart.Load(),
		"the plain GET starts after what was delivered (1), not after the end: events no connection was handed are skipped")
	got := b.Until(t, "id: 0_3\n")
	assert.Contains(t, got, "id: 0_2\n")
}
