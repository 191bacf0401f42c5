package upstream

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testDemux is a demux whose answers are collected.
type testDemux struct {
	*demux
	stats   counters
	mu      sync.Mutex
	answers []string
}

func newTestDemux(maxQueue int) *testDemux {
	td := &testDemux{}
	td.demux = newDemux(&td.stats, slog.New(slog.DiscardHandler), maxQueue, func(msg []byte) {
		td.mu.Lock()
		td.answers = append(td.answers, string(msg))
		td.mu.Unlock()
	})
	return td
}

// contents peeks at what a stream holds without consuming it: its queued
// messages and the end it will report after them (nil: open).
func (td *testDemux) contents(s *msgStream) ([]string, error) {
	td.mu.Lock()
	defer td.mu.Unlock()
	td.demux.mu.Lock()
	defer td.demux.mu.Unlock()
	q := s.queue()
	var out []string
	for _, it := range q.items[q.head:] {
		out = append(out, string(it.msg))
	}
	return out, q.end
}

const (
	resp1     = `{"jsonrpc":"2.0","id":1,"result":{}}`
	resp2     = `{"jsonrpc":"2.0","id":2,"result":{}}`
	logMsg    = `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`
	sampling  = `{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}`
	sampling2 = `{"jsonrpc":"2.0","id":"s2","method":"sampling/createMessage","params":{}}`
	progA     = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"a","progress":1}}`
	progB     = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"b","progress":1}}`
	toolsLC   = `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`
	resUpd    = `{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x://y"}}`
	cancelled = `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"s1"}}`
)

// TestDemuxRouting checks the routing rule, message by message.
func TestDemuxRouting(t *testing.T) {
	type call struct {
		ids    []string
		tokens []string
	}
	for _, tc := range []struct {
		name       string
		calls      []call
		in         []string
		want       [][]string // per call
		ends       []error    // per call: io.EOF when answered, nil when open
		standalone []string
		answers    []string
		unroutable uint64
	}{
		{
			name:  "a response goes to its call, which then ends",
			calls: []call{{ids: []string{"1"}}, {ids: []string{"2"}}},
			in:    []string{resp2, resp1},
			want:  [][]string{{resp1}, {resp2}},
			ends:  []error{io.EOF, io.EOF},
		},
		{
			name:  "ids match by value",
			calls: []call{{ids: []string{"7"}}, {ids: []string{"8"}}, {ids: []string{`"x"`}}},
			in: []string{`{"jsonrpc":"2.0","id":7.0,"result":{}}`, `{"jsonrpc":"2.0","id":"8","result":{}}`,
				`{"jsonrpc":"2.0","id":"\u0078","error":{"code":1,"message":"m"}}`},
			want: [][]string{{`{"jsonrpc":"2.0","id":7.0,"result":{}}`}, {`{"jsonrpc":"2.0","id":"8","result":{}}`},
				{`{"jsonrpc":"2.0","id":"\u0078","error":{"code":1,"message":"m"}}`}},
			ends: []error{io.EOF, io.EOF, io.EOF},
		},
		{
			name:  "a batch call ends after its last response",
			calls: []call{{ids: []string{"1", "2"}}},
			in:    []string{resp1, logMsg, resp2, logMsg},
			want:  [][]string{{resp1, logMsg, resp2}},
			ends:  []error{io.EOF},
			// the last log message has no call in flight any more
			standalone: []string{logMsg},
		},
		{
			name:  "progress goes by token",
			calls: []call{{ids: []string{"1"}, tokens: []string{`"a"`}}, {ids: []string{"2"}, tokens: []string{`"b"`}}},
			in:    []string{progB, progA, progB},
			want:  [][]string{{progA}, {progB, progB}},
			ends:  []error{nil, nil},
		},
		{
			name:       "progress after its response is dropped",
			calls:      []call{{ids: []string{"1"}, tokens: []string{`"a"`}}, {ids: []string{"2"}}},
			in:         []string{resp1, progA},
			want:       [][]string{{resp1}, nil},
			ends:       []error{io.EOF, nil},
			unroutable: 1,
		},
		{
			name:  "logs, requests and cancellations go to the newest call in flight",
			calls: []call{{ids: []string{"1"}}, {ids: []string{"2"}}},
			in:    []string{logMsg, sampling, cancelled, resp2, sampling2},
			want:  [][]string{{sampling2}, {logMsg, sampling, cancelled, resp2}},
			ends:  []error{nil, io.EOF},
		},
		{
			name:       "with no call in flight, the standalone stream",
			in:         []string{logMsg, sampling},
			standalone: []string{logMsg, sampling},
		},
		{
			name:       "session-wide notifications go to the standalone stream",
			calls:      []call{{ids: []string{"1"}}},
			in:         []string{toolsLC, resUpd, `{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`},
			want:       [][]string{nil},
			ends:       []error{nil},
			standalone: []string{toolsLC, resUpd, `{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`},
		},
		{
			name:    "a ping is answered by the transport",
			calls:   []call{{ids: []string{"1"}}},
			in:      []string{`{"jsonrpc":"2.0","id":"p-9","method":"ping"}`},
			want:    [][]string{nil},
			ends:    []error{nil},
			answers: []string{`{"jsonrpc":"2.0","id":"p-9","result":{}}`},
		},
		{
			name:       "unroutable: no call, null id, not JSON-RPC",
			calls:      []call{{ids: []string{"1"}}},
			in:         []string{resp2, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}`, `hello world`, `{"x":1}`},
			want:       [][]string{nil},
			ends:       []error{nil},
			unroutable: 4,
		},
		{
			name:  "a batch from the upstream is split",
			calls: []call{{ids: []string{"1"}}},
			in:    []string{`[` + logMsg + `,` + resp1 + `]`},
			want:  [][]string{{logMsg, resp1}},
			ends:  []error{io.EOF},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDemux(16)
			var streams []*msgStream
			for _, c := range tc.calls {
				var ids, toks [][]byte
				for _, id := range c.ids {
					ids = append(ids, []byte(id))
				}
				for _, tok := range c.tokens {
					toks = append(toks, []byte(tok))
				}
				s, err := td.openCall(ids, toks)
				require.NoError(t, err)
				streams = append(streams, s)
			}
			for _, m := range tc.in {
				td.route([]byte(m))
			}
			for i, s := range streams {
				got, end := td.contents(s)
				assert.Equal(t, tc.want[i], got, "call %d", i)
				assert.Equal(t, tc.ends[i], end, "end of call %d", i)
			}
			l, err := td.listen()
			require.NoError(t, err)
			got, _ := td.contents(l)
			assert.Equal(t, tc.standalone, got, "standalone")
			assert.Equal(t, tc.answers, td.answers, "answered by the transport")
			assert.Equal(t, tc.unroutable, td.stats.unroutable.Load(), "unroutable")
		})
	}
}

// TestDemuxStandaloneBuffer: while nobody listens, a full standalone stream
// drops droppable messages first and refuses the server requests it drops.
func TestDemuxStandaloneBuffer(t *testing.T) {
	td := newTestDemux(3)
	td.route([]byte(logMsg))
	td.route([]byte(sampling))
	td.route([]byte(sampling2))
	td.route([]byte(logMsg)) // full, droppable: dropped
	assert.Equal(t, uint64(1), td.stats.standaloneDropped.Load())
	req3 := `{"jsonrpc":"2.0","id":"s3","method":"elicitation/create","params":{}}`
	td.route([]byte(req3)) // full, must: evicts the oldest droppable (the log)
	req4 := `{"jsonrpc":"2.0","id":"s4","method":"roots/list"}`
	td.route([]byte(req4)) // full of requests: evicts the oldest, refused upstream
	assert.Equal(t, uint64(3), td.stats.standaloneDropped.Load())
	assert.Equal(t, uint64(1), td.stats.refused.Load())
	require.Len(t, td.answers, 1)
	assert.Contains(t, td.answers[0], `"id":"s1","error":{"code":-32603`)

	l, err := td.listen()
	require.NoError(t, err)
	for _, want := range []string{sampling2, req3, req4} {
		got, err := l.Next()
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}
}

// TestDemuxBackpressure: a full call stream makes route wait for must-
// deliver messages (never dropping them) and drop droppable ones; its
// reader taking a message, or closing, lets route go on.
func TestDemuxBackpressure(t *testing.T) {
	td := newTestDemux(2)
	s, err := td.openCall([][]byte{[]byte("1")}, nil)
	require.NoError(t, err)
	td.route([]byte(sampling))
	td.route([]byte(sampling2))
	td.route([]byte(logMsg)) // dropped: full
	assert.Equal(t, uint64(1), td.stats.streamDropped.Load())

	routed := make(chan struct{})
	go func() {
		td.route([]byte(resp1)) // waits for room
		close(routed)
	}()
	select {
	case <-routed:
		t.Fatal("route did not wait for room")
	case <-time.After(50 * time.Millisecond):
	}
	m, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, sampling, string(m))
	<-routed
	for _, want := range []string{sampling2, resp1} {
		m, err := s.Next()
		require.NoError(t, err)
		assert.Equal(t, want, string(m))
	}
	_, err = s.Next()
	assert.Equal(t, io.EOF, err)

	// A reader that goes away releases a waiting route.
	s2, err := td.openCall([][]byte{[]byte("2")}, nil)
	require.NoError(t, err)
	td.route([]byte(sampling))
	td.route([]byte(sampling2))
	routed = make(chan struct{})
	go func() {
		td.route([]byte(cancelled))
		close(routed)
	}()
	require.NoError(t, s2.Close())
	<-routed
	_, err = s2.Next()
	assert.Equal(t, io.ErrClosedPipe, err)
	l, err := td.listen()
	require.NoError(t, err)
	got, _ := td.contents(l)
	assert.Equal(t, []string{cancelled}, got, "with its call gone, the cancellation went to the standalone stream")

	// The session ending releases it too.
	s3, err := td.openCall([][]byte{[]byte("3")}, nil)
	require.NoError(t, err)
	td.route([]byte(sampling))
	td.route([]byte(sampling2))
	routed = make(chan struct{})
	go func() {
		td.route([]byte(sampling))
		close(routed)
	}()
	td.fail(ErrSessionGone, false)
	<-routed
	for range 2 {
		_, err := s3.Next()
		require.NoError(t, err, "buffered messages are still delivered")
	}
	_, err = s3.Next()
	assert.ErrorIs(t, err, ErrSessionGone)
}

func TestDemuxFailAndClose(t *testing.T) {
	td := newTestDemux(8)
	a, err := td.openCall([][]byte{[]byte("1")}, [][]byte{[]byte(`"a"`)})
	require.NoError(t, err)
	_, err = td.openCall([][]byte{[]byte("1")}, nil)
	assert.Error(t, err, "an id already in flight")

	// A closed call leaves the tables: its response is dropped, its
	// notifications go elsewhere.
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close twice")
	td.route([]byte(resp1))
	td.route([]byte(logMsg))
	assert.Equal(t, uint64(1), td.stats.unroutable.Load())
	b, err := td.openCall([][]byte{[]byte("1")}, nil)
	require.NoError(t, err, "the id is free again")

	l, err := td.listen()
	require.NoError(t, err)
	m, err := l.Next()
	require.NoError(t, err)
	assert.Equal(t, logMsg, string(m))

	// Blocked readers wake up with the session's error.
	errs := make(chan error, 2)
	go func() { _, err := b.Next(); errs <- err }()
	go func() { _, err := l.Next(); errs <- err }()
	assert.True(t, td.fail(ErrSessionGone, true))
	assert.False(t, td.fail(io.ErrUnexpectedEOF, true), "the first error wins")
	assert.ErrorIs(t, <-errs, ErrSessionGone)
	assert.Equal(t, uint64(1), td.stats.lost.Load(), "counted once, before any stream is woken")
	assert.ErrorIs(t, <-errs, ErrSessionGone)
	_, err = td.openCall([][]byte{[]byte("5")}, nil)
	assert.ErrorIs(t, err, ErrSessionGone)
	_, err = td.listen()
	assert.ErrorIs(t, err, ErrSessionGone)
	td.route([]byte(logMsg)) // dropped, no panic
}

func TestDemuxListenTakeover(t *testing.T) {
	td := newTestDemux(8)
	td.route([]byte(logMsg))
	first, err := td.listen()
	require.NoError(t, err)
	errs := make(chan error, 1)
	m, err := first.Next()
	require.NoError(t, err)
	assert.Equal(t, logMsg, string(m))
	go func() { _, err := first.Next(); errs <- err }()
	second, err := td.listen()
	require.NoError(t, err)
	assert.ErrorIs(t, <-errs, errReplaced, "the newest Listen wins")
	td.route([]byte(toolsLC))
	m, err = second.Next()
	require.NoError(t, err)
	assert.Equal(t, toolsLC, string(m))
	require.NoError(t, first.Close())
	require.NoError(t, second.Close())
	// Nobody listens again: buffered.
	td.route([]byte(resUpd))
	third, err := td.listen()
	require.NoError(t, err)
	m, err = third.Next()
	require.NoError(t, err)
	assert.Equal(t, resUpd, string(m))
}

func TestIDKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"7", "7", true},
		{"7", "7.0", true},
		{"7", "7e0", true},
		{"7", `"7"`, true},
		{"7", "8", false},
		{`"a"`, `"\u0061"`, true},
		{`"a"`, `"b"`, false},
		{"1.5", "1.5", true},
		{"1.5", "15e-1", false}, // non-integers match only byte for byte
		{"-1", "-1", true},
	} {
		assert.Equal(t, tc.same, IDKey([]byte(tc.a)) == IDKey([]byte(tc.b)), "%s vs %s", tc.a, tc.b)
	}
}

// TestSendSplit: a batch is written message by message and answered by one
// stream; a cancellation ends the cancelled call's stream.
func TestSendSplit(t *testing.T) {
	td := newTestDemux(8)
	var written []string
	write := func(_ context.Context, msg []byte) error {
		written = append(written, string(msg))
		return nil
	}
	r, err := sendSplit(context.Background(), td.demux, []byte(`[{"jsonrpc":"2.0","id":1,"method":"a"}, {"jsonrpc":"2.0","method":"n"} ,{"jsonrpc":"2.0","id":2,"method":"b"}]`), write)
	require.NoError(t, err)
	require.NotNil(t, r.Stream)
	assert.Equal(t, []string{`{"jsonrpc":"2.0","id":1,"method":"a"}`, `{"jsonrpc":"2.0","method":"n"}`, `{"jsonrpc":"2.0","id":2,"method":"b"}`}, written)

	r2, err := sendSplit(context.Background(), td.demux, []byte(`{"jsonrpc":"2.0","id":3,"method":"c"}`), write)
	require.NoError(t, err)
	td.route([]byte(logMsg)) // to the newest call, 3
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, // one of two: the stream waits for 2
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}`,
		`{"jsonrpc":"2.0","id":"s1","result":{}}`,
	} {
		a, err := sendSplit(context.Background(), td.demux, []byte(body), write)
		require.NoError(t, err)
		assert.True(t, a.Accepted, body)
	}
	m, err := r2.Stream.Next()
	require.NoError(t, err)
	assert.Equal(t, logMsg, string(m), "what arrived before the cancellation is delivered")
	_, err = r2.Stream.Next()
	assert.ErrorIs(t, err, errCancelled)
	td.route([]byte(`{"jsonrpc":"2.0","id":3,"result":{}}`)) // late: dropped
	td.route([]byte(resp2))
	m, err = r.Stream.Next()
	require.NoError(t, err)
	assert.Equal(t, resp2, string(m))
	_, err = r.Stream.Next()
	assert.Equal(t, io.EOF, err)

	_, err = sendSplit(context.Background(), td.demux, []byte(`{"jsonrpc":"2.0","id":2,"method":"b"}`), func(context.Context, []byte) error { return ErrTimeout })
	assert.ErrorIs(t, err, ErrTimeout)
	_, err = sendSplit(context.Background(), td.demux, []byte(`{"jsonrpc":"2.0","id":2,"method":"b"}`), write)
	assert.NoError(t, err, "a failed write leaves no call registered")
	_, err = sendSplit(context.Background(), td.demux, []byte(`not json`), write)
	assert.Error(t, err)
}
