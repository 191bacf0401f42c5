package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestClusterOwnerWhoseLeaseLapsedStopsActingAsOwner: a node whose lease
// ran out while it lived (a NATS partition longer than -cluster-lease)
// loses its sessions to the node that claims them; once back, it must not
// go on serving them from its own upstream session (a second stdio child
// beside the new owner's): its messages go to the owner in the registry.
func TestClusterOwnerWhoseLeaseLapsedStopsActingAsOwner(t *testing.T) {
	fnet := newFakeNet()
	upA, upC := testenv.NewFakeUpstream(t), testenv.NewFakeUpstream(t)
	_, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	_, urlC := fakeClusterServer(t, fnet, "c", upC, Config{})
	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	sid := liveSession(t, urlA)

	fnet.whileLapsed("a", func() { // A's lease runs out, then A is back
		code, _, body := mcpPost(t, urlC, sid, list) // C claims the session
		require.Equal(t, http.StatusOK, code, body)
	})

	code, _, body := mcpPost(t, urlA, sid, list)
	require.Equal(t, http.StatusOK, code, body)
	sentTo := func(up *testenv.FakeUpstream) (n int) {
		for _, r := range up.Records() {
			if r.Op == "send" && strings.Contains(r.Body, "tools/list") {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 0, sentTo(upA), "A still served the session from its own upstream session")
	assert.Equal(t, 2, sentTo(upC), "the owner's upstream session did not get A's message")
	assert.Eventually(t, upA.Session(1).Closed, 5*time.Second, 10*time.Millisecond, "A's own upstream session was not closed")
	_, owner, _, _, err := fnet.nodes["c"].LoadSession(context.Background(), sid)
	require.NoError(t, err)
	assert.Equal(t, "c", owner, "the session left the registry or changed hands")
}

// TestClusterDemotedOwnerHandsItsStandaloneStreamOver: the standalone
// stream a node pumped for a session that another node claimed (the
// node's lease ran out while it lived) ends on that node; the client
// resumes it by Last-Event-ID, here on the node demoted, and gets what the
// new owner's upstream session sends from then on, after what it had.
// The session's settings, kept in the registry, stay with it.
func TestClusterDemotedOwnerHandsItsStandaloneStreamOver(t *testing.T) {
	fnet := newFakeNet()
	upA, upC := testenv.NewFakeUpstream(t), testenv.NewFakeUpstream(t)
	a, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	_, urlC := fakeClusterServer(t, fnet, "c", upC, Config{})
	sid := liveSession(t, urlA)
	code, _, body := mcpPost(t, urlA, sid, `{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"debug"}}`)
	require.Equal(t, http.StatusOK, code, body)
	sessA, ok := a.store.Get(sid)
	require.True(t, ok)
	a.saveActivity(context.Background(), sessA, time.Now().UnixNano()) // the owner's activity write keeps the setting

	get := testenv.DialStream(t, urlA, sid, "")
	upA.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"from a"}}`)
	last := get.EventID(t, "from a")

	fnet.whileLapsed("a", func() { // A's lease runs out, then A is back
		code, _, body = mcpPost(t, urlC, sid, clusterPingBody) // C claims the session
		require.Equal(t, http.StatusOK, code, body)
	})

	get.Ended(t)
	assert.Eventually(t, upA.Session(1).Closed, 5*time.Second, 10*time.Millisecond, "A's own upstream session was not closed")
	var replayed bool
	for _, r := range upC.Records() {
		replayed = replayed || r.Op == "send" && strings.Contains(r.Body, "logging/setLevel") && strings.Contains(r.Body, "debug")
	}
	assert.True(t, replayed, "the new owner's upstream session did not get the session's log level")

	resumed := testenv.DialStream(t, urlA, sid, last)
	upC.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"from c"}}`)
	got := resumed.Until(t, "from c")
	assert.NotContains(t, got, "from a", "the resume repeated what the client had")

	rec, owner, _, _, err := fnet.nodes["c"].LoadSession(context.Background(), sid)
	require.NoError(t, err)
	require.NotNil(t, rec, "the session left the registry")
	assert.Equal(t, "c", owner)
	assert.Contains(t, string(rec.LogLevel), "debug", "the session's log level was lost")
}

// TestClusterForwardToDemotedOwnerReachesTheNewOwner: a node that holds a
// copy of a session and has not yet learned that the session changed
// hands (its registry watch lags) forwards a message to the node that
// owned it, which dropped the session when it was demoted: the message
// reaches the new owner, and the session is not ended as gone.
func TestClusterForwardToDemotedOwnerReachesTheNewOwner(t *testing.T) {
	fnet := newFakeNet()
	upA, upC := testenv.NewFakeUpstream(t), testenv.NewFakeUpstream(t)
	_, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	b, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	_, urlC := fakeClusterServer(t, fnet, "c", upC, Config{})
	sid := liveSession(t, urlA)
	code, _, body := mcpPost(t, urlB, sid, clusterPingBody) // B holds a copy, owned by A
	require.Equal(t, http.StatusOK, code, body)

	nb := b.cfg.Cluster.(*fakeNode)
	nb.mu.Lock()
	watchB := nb.watch
	nb.watch = nil // B's watch lags behind
	nb.mu.Unlock()
	fnet.whileLapsed("a", func() { // A's lease runs out, then A is back
		code, _, body = mcpPost(t, urlC, sid, clusterPingBody) // C claims the session
		require.Equal(t, http.StatusOK, code, body)
	})

	code, _, body = mcpPost(t, urlB, sid, clusterPingBody)
	assert.Equal(t, http.StatusOK, code, "B did not reach the new owner: %s", body)
	assert.True(t, fnet.has(sid), "the session left the registry")
	nb.mu.Lock()
	nb.watch = watchB
	nb.mu.Unlock()
	n := 0
	for _, r := range upC.Records() {
		if r.Op == "send" && strings.Contains(r.Body, "tools/list") {
			n++
		}
	}
	assert.Equal(t, 2, n, "the new owner's upstream session did not get B's message")
}

// TestClusterDemotedOwnerOfAResumableSessionKeepsItsCopy: a session whose
// upstream session every node re-attaches by its id stays on the node
// that owned it when another node claims it (the node's lease ran out
// while it lived), as a copy: that node's standalone stream ends and its
// pump stops (the new owner pumps the stream), and the upstream session,
// which the new owner uses too, is not ended.
func TestClusterDemotedOwnerOfAResumableSessionKeepsItsCopy(t *testing.T) {
	fnet := newFakeNet()
	up := testenv.NewFakeUpstream(t)
	a, urlA := liveServer(t, Config{Cluster: fnet.node("a"), Upstream: up.Resumable()})
	_, urlC := liveServer(t, Config{Cluster: fnet.node("c"), Upstream: up.Resumable()})
	sid := liveSession(t, urlA)
	get := testenv.DialStream(t, urlA, sid, "")
	up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"from a"}}`)
	last := get.EventID(t, "from a")

	var onC *testenv.SSEConn
	fnet.whileLapsed("a", func() { // A's lease runs out, then A is back
		onC = testenv.DialStream(t, urlC, sid, last) // C claims the session, and pumps its standalone stream
	})

	get.Ended(t)
	sessA, ok := a.store.Get(sid)
	require.True(t, ok, "A dropped a copy it can serve")
	assert.False(t, sessA.isClosed())
	assert.False(t, a.isOwner(sessA))
	assert.False(t, up.Session(1).Closed(), "the upstream session the owner uses was ended")
	up.Session(1).Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"from c"}}`)
	onC.Until(t, "from c")
	code, _, body := mcpPost(t, urlA, sid, clusterPingBody)
	assert.Equal(t, http.StatusOK, code, body)
}
