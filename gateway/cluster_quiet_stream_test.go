package gateway

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/sse"
)

// quietCluster is two nodes, a and b, each with a fake upstream, and a
// session owned by a whose standalone stream got msgs (the last one's
// data "three" unless said otherwise: last is its id) and then stayed
// quiet: a wrote the stream's high-water mark, and its stored events were
// aged out (fakeNet.ageOut) as the events stream's MaxAge
// (-stream-retention) removes them.
type quietCluster struct {
	fnet       *fakeNet
	a, b       *Server
	urlA, urlB string
	upA, upB   *testenv.FakeUpstream
	sid, last  string
	get        *testenv.SSEConn // the standalone stream's connection on a
}

func newQuietCluster(t *testing.T, lastData string, msgs ...string) *quietCluster {
	t.Helper()
	q := &quietCluster{fnet: newFakeNet(), upA: testenv.NewFakeUpstream(t), upB: testenv.NewFakeUpstream(t)}
	q.a, q.urlA = fakeClusterServer(t, q.fnet, "a", q.upA, Config{})
	q.b, q.urlB = fakeClusterServer(t, q.fnet, "b", q.upB, Config{})
	q.sid = liveSession(t, q.urlA)
	q.get = testenv.DialStream(t, q.urlA, q.sid, "")
	q.upA.WaitFor(t, "the upstream standalone stream", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })
	for _, m := range msgs {
		q.upA.Session(1).Push(m)
	}
	q.last = q.get.EventID(t, `"data":"`+lastData+`"`)
	saveHighWater(t, q.a, q.sid)
	q.fnet.ageOut(q.sid, 0)
	return q
}

// bPumps waits until b, now the owner, opened its upstream's standalone
// stream.
func (q *quietCluster) bPumps(t *testing.T) {
	t.Helper()
	q.upB.WaitFor(t, "the new owner's upstream standalone stream", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })
}

func logNote(data string) string {
	return `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"` + data + `"}}`
}

// TestClusterTakeoverOfAQuietStandaloneStreamKeepsItsNumbering: after a
// takeover (the owner died) the standalone stream's event ids go on after
// the ones the old owner gave out, even when the stream was quiet for
// longer than the stream retention, so that its stored events are gone: a
// client resuming with its last id is served (200), live, with events
// numbered after it, never refused as "ahead of the stream" (the official
// SDKs then give the stream up) nor given reused ids (rule 26).
func TestClusterTakeoverOfAQuietStandaloneStreamKeepsItsNumbering(t *testing.T) {
	q := newQuietCluster(t, "three", logNote("one"), logNote("two"), logNote("three"))
	require.Equal(t, "0_3", q.last)
	q.fnet.crash("a")

	resumed := testenv.DialStream(t, q.urlB, q.sid, q.last) // B claims the session and pumps its stream
	q.bPumps(t)
	q.upB.Session(1).Push(logNote("after"))
	assert.Greater(t, eventSeq(t, resumed, `"data":"after"`), uint64(3), "the stream's numbering restarted after the takeover")
}

// TestClusterHandOverOfAQuietStandaloneStreamKeepsItsNumbering: the same
// after a drain's hand-over: the node that claims the session pumps the
// standalone stream on from the ids the draining node gave out.
func TestClusterHandOverOfAQuietStandaloneStreamKeepsItsNumbering(t *testing.T) {
	q := newQuietCluster(t, "three", logNote("one"), logNote("two"), logNote("three"))
	q.a.clusterDrainStart(context.Background()) // B claims the session and pumps its stream
	q.bPumps(t)
	q.upB.Session(1).Push(logNote("after"))

	resumed := testenv.DialStream(t, q.urlB, q.sid, q.last)
	assert.Greater(t, eventSeq(t, resumed, `"data":"after"`), uint64(3), "the stream's numbering restarted after the hand-over")
}

// TestClusterResumeOfAQuietStandaloneStreamAfterTakeover: what a resume
// gets from a standalone stream taken over after its stored events aged
// out, by rule 28 as on one node when events were evicted: a client that
// had everything, or whose missing events were all droppable, is served;
// one that misses a must-deliver event that is gone is refused (400); an
// id ahead of anything given out is refused.
func TestClusterResumeOfAQuietStandaloneStreamAfterTakeover(t *testing.T) {
	// 0_1 a droppable note, 0_2 a server-to-client request (must-deliver),
	// 0_3 and 0_4 droppable notes.
	q := newQuietCluster(t, "four", logNote("one"), `{"jsonrpc":"2.0","id":"r1","method":"roots/list"}`, logNote("three"), logNote("four"))
	require.Equal(t, "0_4", q.last)
	q.fnet.crash("a")

	testenv.DialStream(t, q.urlB, q.sid, q.last) // B claims the session and pumps its stream
	q.bPumps(t)

	for _, c := range []struct {
		last string
		code int
		body string
	}{
		{"0_1", http.StatusBadRequest, "no longer buffered"}, // the request 0_2 is gone
		{"0_99", http.StatusBadRequest, "ahead of the stream"},
	} {
		ctx := getWithLastEventID(q.b, q.sid, c.last)
		assert.Equal(t, c.code, ctx.Response.StatusCode(), "Last-Event-ID %s: %s", c.last, ctx.Response.Body())
		assert.Contains(t, string(ctx.Response.Body()), c.body, "Last-Event-ID %s", c.last)
	}
	// 0_2: only droppable notes are gone after it: skipped, as on one node.
	resumed := testenv.DialStream(t, q.urlB, q.sid, "0_2")
	q.upB.Session(1).Push(logNote("five"))
	assert.Greater(t, eventSeq(t, resumed, `"data":"five"`), uint64(4))
}

// TestClusterMirrorOfAQuietStandaloneStream: a client resuming a quiet
// standalone stream (its stored events aged out) on a node that does not
// own the session is served there too, live from its id.
func TestClusterMirrorOfAQuietStandaloneStream(t *testing.T) {
	q := newQuietCluster(t, "three", logNote("one"), logNote("two"), logNote("three"))
	resumed := testenv.DialStream(t, q.urlB, q.sid, q.last)
	q.upA.Session(1).Push(logNote("after"))
	assert.Greater(t, eventSeq(t, resumed, `"data":"after"`), uint64(3))
}

// eventSeq is the seq of the standalone stream event holding want.
func eventSeq(t *testing.T, c *testenv.SSEConn, want string) uint64 {
	t.Helper()
	stream, seq, err := sse.ParseEventID([]byte(c.EventID(t, want)))
	require.NoError(t, err)
	require.Zero(t, stream)
	return seq
}

// saveHighWater runs what the owner's activity loop does for sid's
// standalone stream on its next tick.
func saveHighWater(t *testing.T, s *Server, sid string) {
	t.Helper()
	sess, ok := s.store.Get(sid)
	require.True(t, ok)
	st := sess.stream(0)
	require.NotNil(t, st)
	s.saveHighWater(context.Background(), sess, s.clock.Now())
	h := s.cfg.Cluster.(*fakeNode).net.high(sid, 0)
	require.Equal(t, st.ring.LastSeq(), h.seq, "the owner did not write the stream's high-water mark")
}
