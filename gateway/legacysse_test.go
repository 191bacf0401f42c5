package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

func TestLegacyFrameLenMatchesEncoder(t *testing.T) {
	cases := []string{"", "x", `{"jsonrpc":"2.0"}`, "a\nb", "a\r\nb", "a\rb", "\n", "\r\n", "\r", "a\r", "a\n\n", "\r\r\n\n"}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 500; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = "ab\r\n{}"[rng.IntN(6)]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		out := appendLegacyEvent(nil, []byte(c))
		assert.Equal(t, len(out), legacyFrameLen([]byte(c)), "data %q", c)
	}
	assert.Equal(t, "event: message\ndata: {}\n\n", string(appendLegacyEvent(nil, []byte("{}"))))
}

// recordingSession is an upstream.Session that counts Close calls.
type recordingSession struct {
	upstream.Session
	mu     sync.Mutex
	closes int
}

func (r *recordingSession) ID() string      { return "rec" }
func (r *recordingSession) Version() string { return "2025-06-18" }
func (r *recordingSession) Close(context.Context) error {
	r.mu.Lock()
	r.closes++
	r.mu.Unlock()
	return nil
}

func TestLazyUpstream(t *testing.T) {
	var l lazyUpstream
	assert.Empty(t, l.ID())
	_, err := l.Send(context.Background(), []byte(`{}`))
	assert.ErrorIs(t, err, errNotInitialized)
	_, err = l.Listen(context.Background())
	assert.ErrorIs(t, err, upstream.ErrNotSupported)
	up := &recordingSession{}
	require.True(t, l.set(up))
	assert.Equal(t, "rec", l.ID())
	assert.Equal(t, "2025-06-18", l.Version())
	require.NoError(t, l.Close(context.Background()))
	assert.Equal(t, 1, up.closes)

	// A Close before the upstream session arrives: set refuses it, so the
	// caller closes it; nothing is left open.
	var l2 lazyUpstream
	require.NoError(t, l2.Close(context.Background()))
	assert.False(t, l2.set(&recordingSession{}))
	assert.Empty(t, l2.ID())
}

func TestLegacyConfigPaths(t *testing.T) {
	c := Config{Upstream: nopTransport{}}
	require.NoError(t, c.setDefaults())
	assert.Equal(t, DefaultLegacySSEPath, c.LegacySSEPath)
	assert.Equal(t, DefaultLegacyMessagePath, c.LegacyMessagePath)

	c = Config{Upstream: nopTransport{}, LegacySSEOff: true}
	require.NoError(t, c.setDefaults())
	assert.Empty(t, c.LegacySSEPath, "off: no paths")

	for _, bad := range []Config{
		{LegacySSEPath: "sse"},
		{LegacyMessagePath: "/m?x=1"},
		{LegacySSEPath: "/mcp"},
		{LegacySSEPath: "/x", LegacyMessagePath: "/x"},
		// fasthttp matches a request's decoded, normalized path: these
		// would never match.
		{LegacyMessagePath: "/a%20b"},
		{LegacyMessagePath: "/a//b"},
		{LegacySSEPath: "/a/./sse"},
		{LegacySSEPath: "/a/.."},
		{LegacySSEPath: "/a\\b"},
	} {
		bad.Upstream = nopTransport{}
		assert.Error(t, bad.setDefaults(), "%+v", bad)
	}
}

// TestLegacyStreamManyProducers: a legacy session's stream is fed by several
// producers at once (the standalone pump, one pump per call, POST
// handlers). With a ring far smaller than what they push, every
// must-deliver message still arrives once, in each producer's order, and
// no producer is left waiting for room the reader already made (a ring
// wakes one waiting producer at a time).
func TestLegacyStreamManyProducers(t *testing.T) {
	s := newTestServer(t, Config{RingSize: 4, RingBytes: 256})
	l := &legacyState{}
	sess := &session{id: "legacy-test", up: &l.up, legacy: l}
	defer sess.cancel()
	st, _ := s.newStream(sess, true, false)
	require.NotNil(t, st)

	const producers, each = 8, 200
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				msg := []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":"%d-%d","result":{}}`, p, i))
				if !s.deliver(sess, st, ringbuf.MustDeliver, 0, msg, false, nil) {
					t.Errorf("producer %d: deliver failed at %d", p, i)
					return
				}
			}
		}()
	}
	next := make([]int, producers)
	got := 0
	after := uint64(0)
	deadline := time.After(30 * time.Second)
	for got < producers*each {
		last, _, err := st.ring.Next(after, func(_ uint64, data []byte) bool {
			var p, i int
			_, perr := fmt.Sscanf(string(data), `{"jsonrpc":"2.0","id":"%d-%d"`, &p, &i)
			require.NoError(t, perr, "%s", data)
			assert.Equal(t, next[p], i, "producer %d's messages in order, once", p)
			next[p] = i + 1
			got++
			return true
		})
		require.NoError(t, err)
		if last != after {
			after = last
			continue
		}
		select {
		case <-st.ring.Wait():
		case <-deadline:
			t.Fatalf("stuck after %d of %d messages: a producer waits for room that is there", got, producers*each)
		}
	}
	wg.Wait()
}
