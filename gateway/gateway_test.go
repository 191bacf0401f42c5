package gateway

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

func TestMain(m *testing.M) {
	// fasthttp's own background goroutines outlive Stop/Close by design:
	// the worker-pool and connection cleaners sleep out their interval, and
	// the process-wide Date updater never stops. None is started per request.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

// nopTransport is an upstream that is never reached: the unit tests below
// exercise the gateway's own parts; integration tests use real upstreams.
type nopTransport struct{}

func (nopTransport) Connect(context.Context, []byte) (upstream.Session, []byte, error) {
	return nil, nil, upstream.ErrUnavailable
}
func (nopTransport) Close() error { return nil }

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.Upstream = nopTransport{}
	if cfg.DrainWindow == 0 {
		cfg.DrainWindow = -1 // unit tests end streams at once unless they test the drain
	}
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	return s
}

func TestFrameLenMatchesEncoder(t *testing.T) {
	cases := []string{"", "x", `{"jsonrpc":"2.0"}`, "a\nb", "a\r\nb", "a\rb", "\n", "\r\n", "\r", "a\r", "a\n\n", "\r\r\n\n", "x\r\n\r\ny"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = "ab\r\n{}"[rng.IntN(6)]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		for _, ids := range [][2]uint64{{0, 0}, {1, 9}, {12, 1234567}, {1 << 40, 1<<64 - 1}} {
			want := len(sse.AppendStreamEvent(nil, ids[0], ids[1], []byte(c)))
			assert.Equal(t, want, frameLen(ids[0], ids[1], []byte(c)), "data %q ids %v", c, ids)
		}
	}
}

func TestAccepts(t *testing.T) {
	for _, c := range []struct {
		h         string
		json, sse bool
	}{
		{"", false, false},
		{"application/json, text/event-stream", true, true},
		{"text/event-stream, application/json;q=0.9", true, true},
		{"*/*", true, true},
		{"application/*", true, false},
		{"text/*", false, true},
		{"application/json", true, false},
		{" TEXT/EVENT-STREAM ", false, true},
		{"application/jsonx", false, false},
	} {
		j, s := accepts([]byte(c.h))
		assert.Equal(t, c.json, j, "%q json", c.h)
		assert.Equal(t, c.sse, s, "%q sse", c.h)
	}
}

func TestValidSessionID(t *testing.T) {
	assert.True(t, validSessionID([]byte(newSessionID())))
	assert.True(t, validSessionID([]byte("!~")))
	assert.False(t, validSessionID(nil))
	assert.False(t, validSessionID([]byte("a b")))
	assert.False(t, validSessionID([]byte("a\x7f")))
	assert.False(t, validSessionID([]byte("é")))
	assert.False(t, validSessionID([]byte(strings.Repeat("a", MaxSessionIDLen+1))))
	ids := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := newSessionID()
		assert.Len(t, id, 32)
		assert.False(t, ids[id])
		ids[id] = true
	}
}

func TestOriginPolicy(t *testing.T) {
	loop := newOriginPolicy(nil, nil, true)
	for h, ok := range map[string]bool{
		"127.0.0.1:8080": true, "localhost": true, "[::1]:9": true, "LOCALHOST:1": true,
		"evil.example.com": false, "127.0.0.1.evil.com:80": false, "": false,
	} {
		assert.Equal(t, ok, loop.hostAllowed([]byte(h)), "host %q", h)
	}
	for o, ok := range map[string]bool{
		"http://localhost:3000": true, "https://127.0.0.1": true, "http://[::1]:5": true,
		"http://evil.example.com": false, "null": false, "file://localhost": false,
	} {
		assert.Equal(t, ok, loop.originAllowed([]byte(o), []byte("127.0.0.1:8080")), "origin %q", o)
	}
	public := newOriginPolicy(nil, nil, false)
	assert.True(t, public.hostAllowed([]byte("gw.example.com")))
	assert.True(t, public.originAllowed([]byte("https://gw.example.com"), []byte("gw.example.com")))
	assert.False(t, public.originAllowed([]byte("https://evil.example.com"), []byte("gw.example.com")))
	listed := newOriginPolicy([]string{"https://app.example.com", "http://tool.example.com:8443"}, []string{"gw.example.com"}, false)
	assert.True(t, listed.hostAllowed([]byte("gw.example.com:443")))
	assert.False(t, listed.hostAllowed([]byte("other.example.com")))
	assert.True(t, listed.originAllowed([]byte("https://app.example.com"), nil))
	assert.True(t, listed.originAllowed([]byte("http://tool.example.com:8443"), nil))
	assert.False(t, listed.originAllowed([]byte("http://tool.example.com:9999"), nil))
	anyOrigin := newOriginPolicy([]string{"*"}, []string{"*"}, true)
	assert.True(t, anyOrigin.originAllowed([]byte("http://x.y"), nil))
}

func TestClassify(t *testing.T) {
	var p jsonrpc.Parser
	for _, c := range []struct {
		msg   string
		class ringbuf.Class
		keyed bool
		resp  string
	}{
		{`{"jsonrpc":"2.0","id":5,"result":{}}`, ringbuf.MustDeliver, false, "5"},
		{`{"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"x"}}`, ringbuf.MustDeliver, false, `"a"`},
		{`{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}`, ringbuf.MustDeliver, false, ""},
		{`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, ringbuf.MustDeliver, false, ""},
		{`{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{}}}`, ringbuf.MustDeliver, false, ""},
		{`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`, ringbuf.Droppable, true, ""},
		{`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, ringbuf.Droppable, true, ""},
		{`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"a://b"}}`, ringbuf.Droppable, true, ""},
		{`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`, ringbuf.Droppable, false, ""},
		{`not json`, ringbuf.MustDeliver, false, ""},
	} {
		class, key, resp := classify(&p, []byte(c.msg))
		assert.Equal(t, c.class, class, c.msg)
		assert.Equal(t, c.keyed, key != 0, c.msg)
		assert.Equal(t, c.resp, string(resp), c.msg)
	}
	var q jsonrpc.Parser
	_, k1, _ := classify(&q, []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`))
	_, k2, _ := classify(&q, []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":2}}`))
	_, k3, _ := classify(&q, []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"u","progress":2}}`))
	assert.Equal(t, k1, k2, "same token, same key")
	assert.NotEqual(t, k1, k3, "other token, other key")
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	c := Config{Upstream: nopTransport{}}
	require.NoError(t, c.setDefaults())
	assert.Equal(t, DefaultPath, c.Path)
	assert.Equal(t, DefaultMaxSessions, c.MaxSessions)
	assert.Equal(t, DefaultRingSize, c.RingSize)
	assert.Equal(t, DefaultHeartbeat, c.Heartbeat)
	assert.Equal(t, DefaultSessionMaxAge, c.SessionMaxAge)
	assert.Error(t, (&Config{}).setDefaults(), "upstream required")
	assert.Error(t, (&Config{Upstream: nopTransport{}, MaxSessions: -1}).setDefaults())
	assert.Error(t, (&Config{Upstream: nopTransport{}, Path: "mcp"}).setDefaults())
	for _, p := range []string{"/a%2Fb", "//mcp", "/x/../mcp", "/mcp?x", "/m cp"} {
		assert.Error(t, (&Config{Upstream: nopTransport{}, Path: p}).setDefaults(), "%q never matches a request's normalized path", p)
	}
	for _, p := range []string{"/", "/mcp/", "/v1/mcp", "/a.b/..c"} {
		assert.NoError(t, (&Config{Upstream: nopTransport{}, Path: p}).setDefaults(), p)
	}
	assert.Error(t, (&Config{Upstream: nopTransport{}, SessionIdleTimeout: -time.Second}).setDefaults())
	_, err := New(Config{Upstream: nopTransport{}, RingSize: 1 << 30})
	assert.Error(t, err, "ring size above the ring's maximum")
}

// readerFixture is a stream with a body writer attached, without HTTP.
func readerFixture(t testing.TB, s *Server, ringCfg ringbuf.Config) (*stream, *bodyWriter) {
	t.Helper()
	st := streamFixture(t, s, ringCfg)
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	w := newBodyWriter(s, st, a, nil)
	attachFixture(s, &w.clientConn)
	return st, w
}

// streamFixture is stream 3 of a new session, not in the store.
func streamFixture(t testing.TB, s *Server, ringCfg ringbuf.Config) *stream {
	t.Helper()
	ring, err := ringbuf.New(ringCfg)
	require.NoError(t, err)
	id := newSessionID()
	sess := &session{id: id, version: "2025-11-25", withStreams: s.streamSet(id)}
	t.Cleanup(sess.cancel)
	sess.lastActive.Store(s.clock.Now())
	sess.created = s.clock.Now()
	return newStream(3, sess, ring)
}

// attachFixture attaches c to its stream as attachConn does, without the
// socket options and hooks.
func attachFixture(s *Server, c *clientConn) {
	c.lastWrite.Store(s.clock.Now())
	c.st.sess.busy.Add(1)
	c.st.attach(c)
}

func TestStreamReaderBatchesWholeEvents(t *testing.T) {
	s := newTestServer(t, Config{})
	st, r := readerFixture(t, s, ringbuf.Config{})
	msg := []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"hello"}}`)
	for i := 0; i < 100; i++ {
		_, _, err := st.ring.Push(ringbuf.Droppable, 0, msg)
		require.NoError(t, err)
	}
	buf := make([]byte, 4096)
	n, err := r.Read(buf)
	require.NoError(t, err)
	dec := sse.NewDecoder(strings.NewReader(string(buf[:n])), 0)
	got := 0
	for {
		ev, err := dec.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		got++
		assert.Equal(t, "3_"+itoa(got), string(ev.ID))
		assert.Equal(t, string(msg), string(ev.Data))
	}
	assert.Greater(t, got, 1, "several events per Read")
	assert.Equal(t, n, len(encodedRun(1, got, msg)), "only whole events")
	assert.Greater(t, frameLen(3, uint64(got+1), msg), 4096-n, "as many as fit")
}

func encodedRun(from, to int, msg []byte) []byte {
	var b []byte
	for i := from; i <= to; i++ {
		b = sse.AppendStreamEvent(b, 3, uint64(i), msg)
	}
	return b
}

func itoa(i int) string { return string(sse.AppendEventID(nil, 0, uint64(i))[2:]) }

func TestStreamReaderLargeEventSpansReads(t *testing.T) {
	s := newTestServer(t, Config{})
	st, r := readerFixture(t, s, ringbuf.Config{})
	big := []byte(`{"jsonrpc":"2.0","id":1,"result":{"x":"` + strings.Repeat("z", 10000) + `"}}`)
	_, _, err := st.ring.Push(ringbuf.MustDeliver, 0, big)
	require.NoError(t, err)
	st.ring.Close()
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.NotZero(t, n, "Read must never return (0, nil)")
	}
	assert.Equal(t, string(sse.AppendStreamEvent(nil, 3, 1, big)), string(out))
	require.NoError(t, r.Close())
	require.NoError(t, r.CloseWithError(nil), "both close paths may run")
	assert.False(t, st.attached())
	assert.Equal(t, uint64(1), st.delivered.Load())
}

func TestStreamReaderCutAndShutdown(t *testing.T) {
	s := newTestServer(t, Config{})
	st, r := readerFixture(t, s, ringbuf.Config{})
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 4096))
		done <- err
	}()
	require.True(t, st.cut(CloseSlowConsumer))
	select {
	case err := <-done:
		assert.Equal(t, io.EOF, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a cut did not wake the reader")
	}
	assert.Equal(t, CloseSlowConsumer, r.closeReason())
	assert.False(t, r.setReason(CloseFinished), "the close reason is set once")

	st2, r2 := readerFixture(t, s, ringbuf.Config{})
	_ = st2
	go func() {
		buf := make([]byte, 4096)
		n, err := r2.Read(buf)
		if err == nil && !strings.HasPrefix(string(buf[:n]), "retry: ") {
			err = io.ErrUnexpectedEOF
		}
		if err == nil {
			_, err = r2.Read(buf)
		}
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	select {
	case err := <-done:
		assert.Equal(t, io.EOF, err, "retry hint first, then the end")
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not end the reader")
	}
}

func TestHeartbeatOnQuietStream(t *testing.T) {
	s := newTestServer(t, Config{Heartbeat: 50 * time.Millisecond, SweepInterval: 20 * time.Millisecond})
	st, r := readerFixture(t, s, ringbuf.Config{})
	sess := st.sess
	sess.addStreamLocked(st)
	require.NoError(t, s.storeSession(sess))
	buf := make([]byte, 256)
	// The stream's quiet time is measured on the gateway's coarse clock,
	// which a loaded machine may leave behind the wall clock when the
	// fixture attached: measured the same way here.
	quietSince := r.lastWrite.Load()
	n, err := r.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, ": \n\n", string(buf[:n]))
	assert.GreaterOrEqual(t, time.Duration(s.clock.Now()-quietSince), 50*time.Millisecond, "the heartbeat came before the stream was quiet that long")
	s.store.Delete(sess.id)
}

func TestServeRejectsSecondCall(t *testing.T) {
	s := newTestServer(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	require.Eventually(t, s.served.Load, 5*time.Second, time.Millisecond, "the first Serve runs")
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln2.Close()
	assert.Error(t, s.Serve(ln2))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	assert.NoError(t, <-errc)
}

// TestStreamCapCountsLiveStreamsOnly: finished answers kept for resumption
// do not count against -max-streams-per-session, and only the newest
// maxRetainedStreams of them are kept.
func TestStreamCapCountsLiveStreamsOnly(t *testing.T) {
	s := newTestServer(t, Config{MaxStreamsPerSession: 2})
	id := newSessionID()
	sess := &session{id: id, version: "2025-06-18", withStreams: s.streamSet(id)}
	defer sess.cancel()
	for i := 0; i < 100; i++ {
		st, status := s.newStream(sess, false, false)
		require.NotNil(t, st, "call %d refused with %d", i, status)
		s.finishStream(st)
		s.finishStream(st) // idempotent
	}
	assert.Zero(t, sess.livePost.Load())
	assert.Equal(t, maxRetainedStreams, sess.streams.len())
	require.NotNil(t, sess.finished)
	assert.Len(t, *sess.finished, maxRetainedStreams)
	kept := sess.streams.get(100) != nil
	assert.True(t, kept, "the newest answers are kept")

	a, _ := s.newStream(sess, false, false)
	b, _ := s.newStream(sess, false, false)
	require.NotNil(t, a)
	require.NotNil(t, b)
	c, status := s.newStream(sess, false, false)
	assert.Nil(t, c)
	assert.Equal(t, 429, status, "two live answers reach the cap of 2")
	s.finishStream(a)
	c, _ = s.newStream(sess, false, false)
	assert.NotNil(t, c, "a finished answer frees its place")
}

// TestPruneFinishedOldestFirst: past maxRetainedStreams the oldest answers
// (by stream id, not by when they finished) go first, one a client is
// reading stays, and the retention sweep keeps the list of finished streams
// in step with the streams.
func TestPruneFinishedOldestFirst(t *testing.T) {
	s := newTestServer(t, Config{MaxStreamsPerSession: 100})
	id := newSessionID()
	sess := &session{id: id, version: "2025-11-25", withStreams: s.streamSet(id)}
	defer sess.cancel()
	var sts []*stream
	for i := 0; i < 41; i++ {
		st, status := s.newStream(sess, false, false)
		require.NotNil(t, st, "stream %d refused with %d", i, status)
		sts = append(sts, st)
	}
	kept := func() []uint64 {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		ids := []uint64{}
		for id, st := range sess.streams.all() {
			if st.finishedAt.Load() != 0 {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		assert.Equal(t, ids, *sess.finished, "the finished list matches the finished streams")
		return ids
	}
	// Streams 5..40 finish first, then 1..4 (long calls that end late).
	for _, st := range sts[4:40] {
		s.finishStream(st)
	}
	for _, st := range sts[:4] {
		s.finishStream(st)
	}
	ids := kept()
	require.Len(t, ids, maxRetainedStreams)
	assert.Equal(t, uint64(9), ids[0], "streams 1..8 are the oldest and went, whenever they finished")

	// A client resuming stream 9 keeps it past the limit.
	sts[8].conn.Store(&clientConn{})
	s.finishStream(sts[40])
	ids = kept()
	require.Len(t, ids, maxRetainedStreams)
	assert.Equal(t, []uint64{9, 11}, ids[:2], "10 went instead of the attached 9")
	sts[8].conn.Store(nil)

	// The retention sweep drops expired streams and their places in the list.
	s.maintainStreams(sess, s.clock.Now()+int64(s.cfg.StreamRetention)+int64(time.Second))
	assert.Empty(t, kept())
	assert.Zero(t, sess.streams.len())
}

// TestStreamReaderOversizedEventsKeepOrder: events larger than one write
// buffer go out whole and in order, however many follow them.
func TestStreamReaderOversizedEventsKeepOrder(t *testing.T) {
	s := newTestServer(t, Config{})
	st, r := readerFixture(t, s, ringbuf.Config{})
	var want []byte
	for i, size := range []int{9000, 8000, 10, 5000, 20, 30, 7000} {
		msg := []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"` + strings.Repeat("x", size) + `"}}`)
		_, _, err := st.ring.Push(ringbuf.Droppable, 0, msg)
		require.NoError(t, err)
		want = sse.AppendStreamEvent(want, 3, uint64(i+1), msg)
	}
	st.ring.Close()
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	assert.Equal(t, string(want), string(got))
}

// TestStreamCountFollowsStreams: nstreams, which lets the sweeper skip a
// session without streams without locking it, equals len(streams) through
// adds, the pruning of finished answers past maxRetainedStreams, and the
// sweeper's retention deletions; the session is in its shard's set of
// sessions with streams exactly while it has any and is open.
func TestStreamCountFollowsStreams(t *testing.T) {
	s := newTestServer(t, Config{MaxStreamsPerSession: 1})
	id := newSessionID()
	sess := &session{id: id, withStreams: s.streamSet(id)}
	defer sess.cancel()
	check := func(want int) {
		t.Helper()
		sess.mu.Lock()
		defer sess.mu.Unlock()
		require.Equal(t, want, sess.streams.len())
		require.Equal(t, int32(want), sess.nstreams.Load())
		_, in := s.streamSet(sess.id).Load(sess)
		require.Equal(t, want > 0 && !sess.closed, in, "in the set of sessions with streams")
		require.Equal(t, !in, s.sweepQuiet(), "the sweeper spreads its work while a session has streams")
	}
	check(0)
	// A stateless request's stream keeps the sweeper on its spread schedule too.
	eph := &session{ephemeral: true}
	s.ephemeral.Store(eph, struct{}{})
	assert.False(t, s.sweepQuiet())
	s.ephemeral.Delete(eph)
	_, status := s.newStream(sess, true, false) // standalone, id 0
	require.Zero(t, status)
	check(1)
	for i := range maxRetainedStreams + 5 {
		st, status := s.newStream(sess, false, false)
		require.Zero(t, status)
		s.finishStream(st) // keeps at most maxRetainedStreams finished answers
		check(1 + min(i+1, maxRetainedStreams))
	}
	// Past the retention, the sweeper drops every finished answer.
	s.maintainStreams(sess, s.clock.Now()+int64(s.cfg.StreamRetention))
	check(1)
	// Closing the session takes it out of the set; its streams stay.
	s.endSession(context.Background(), sess, CloseIdle, upstreamNow)
	check(1)
}

// TestFullSweepEvery: expiry is checked about 32 times per idle timeout or
// maximum age, at least every maxExpiryCheck, and on every pass when passes
// are that slow anyway.
func TestFullSweepEvery(t *testing.T) {
	for _, c := range []struct {
		every, idle, maxAge time.Duration
		want                uint32
	}{
		{time.Second, 30 * time.Minute, 24 * time.Hour, 30}, // the defaults: every 30 s
		{time.Second, 30 * time.Minute, -1, 30},             // no maximum age
		{time.Second, 64 * time.Second, 24 * time.Hour, 2},
		{time.Second, 30 * time.Minute, 64 * time.Second, 2}, // the maximum age is shorter
		{time.Second, 10 * time.Second, 24 * time.Hour, 1},
		{4 * time.Millisecond, 640 * time.Millisecond, -1, 5},
		{0, time.Hour, -1, 1},
	} {
		assert.Equal(t, c.want, fullSweepEvery(c.every, c.idle, c.maxAge), "%+v", c)
	}
}

// TestSweepPassKinds: with expiry checked every fifth pass, the passes in
// between still keep streams up (a quiet stream gets its heartbeat, see
// also TestHeartbeatOnQuietStream), and an idle session without streams is
// still ended.
func TestSweepPassKinds(t *testing.T) {
	s := newTestServer(t, Config{SweepInterval: 4 * time.Millisecond, SessionIdleTimeout: 640 * time.Millisecond, Heartbeat: 40 * time.Millisecond})
	// every = min(4 ms, 40 ms / 4) = 4 ms; expiry every 20 ms: every fifth pass.
	require.Equal(t, uint32(5), fullSweepEvery(4*time.Millisecond, 640*time.Millisecond, s.cfg.SessionMaxAge))

	st, r := readerFixture(t, s, ringbuf.Config{})
	st.sess.addStreamLocked(st)
	require.NoError(t, s.storeSession(st.sess))
	defer s.store.Delete(st.sess.id)

	id := newSessionID()
	idle := &session{id: id, withStreams: s.streamSet(id)}
	defer idle.cancel()
	idle.created = s.clock.Now()
	idle.lastActive.Store(s.clock.Now() - int64(time.Second)) // already past the idle timeout
	require.NoError(t, s.storeSession(idle))

	buf := make([]byte, 256)
	n, err := r.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, ": \n\n", string(buf[:n]), "heartbeat")
	require.Eventually(t, func() bool { _, ok := s.store.Get(id); return !ok }, 5*time.Second, 5*time.Millisecond, "idle session ended")
	_, ok := s.store.Get(st.sess.id)
	assert.True(t, ok, "the session with a connected stream stays")
}

// BenchmarkAnswerStreamRetained: a call's answer stream made and finished
// on a session that already keeps maxRetainedStreams finished ones (every
// call past the 32nd of a session), so each finish prunes one.
func BenchmarkAnswerStreamRetained(b *testing.B) {
	s := newTestServer(b, Config{})
	id := newSessionID()
	sess := &session{id: id, version: "2025-11-25", withStreams: s.streamSet(id)}
	defer sess.cancel()
	for b.Loop() {
		st, _ := s.newStream(sess, false, false)
		s.finishStream(st)
	}
}
