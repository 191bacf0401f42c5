package gateway

import (
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// bufferedStream is an answer stream whose first messages arrived with the
// headers (inHand) and whose later ones come when released; Next blocks
// until then, NextBuffered never does. rest says whether RestArrived.
type bufferedStream struct {
	inHand, later [][]byte
	messages      int // what Buffered reports as the upper bound
	rest          bool
	release       chan struct{}
	nextCalls     atomic.Int32
	closed        atomic.Bool
	// awaited is what arrives during AwaitBuffered (moved to inHand);
	// waits records the waits asked for.
	awaited [][]byte
	waits   []time.Duration
}

func (b *bufferedStream) AwaitBuffered(d time.Duration) bool {
	b.waits = append(b.waits, d)
	b.inHand = append(b.inHand, b.awaited...)
	b.awaited = nil
	return len(b.inHand) > 0
}

func (b *bufferedStream) Buffered() (int, int) {
	n := 0
	for _, m := range b.inHand {
		n += len(m)
	}
	return n, b.messages
}

func (b *bufferedStream) NextBuffered() ([]byte, error) {
	if len(b.inHand) == 0 {
		return nil, upstream.ErrNotBuffered
	}
	m := b.inHand[0]
	b.inHand = b.inHand[1:]
	return m, nil
}

func (b *bufferedStream) RestArrived() bool { return b.rest }
func (b *bufferedStream) OweEnd() bool      { return false }

func (b *bufferedStream) Next() ([]byte, error) {
	b.nextCalls.Add(1)
	if len(b.inHand) > 0 {
		return b.NextBuffered()
	}
	<-b.release
	if len(b.later) == 0 {
		return nil, io.EOF
	}
	m := b.later[0]
	b.later = b.later[1:]
	return m, nil
}

func (b *bufferedStream) Close() error { b.closed.Store(true); return nil }

// TestRelayBuffered: the request's goroutine relays what arrived with the
// headers and finishes the answer when that answers every call (reading
// the end itself only when it arrived); it leaves the rest to a pump with
// the calls still owed, and does not start when the input could fill the
// ring to its hard limits.
func TestRelayBuffered(t *testing.T) {
	s := newTestServer(t, Config{})
	answer := func(up string) []byte { return []byte(`{"jsonrpc":"2.0","id":` + up + `,"result":{}}`) }
	progress := []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`)
	setup := func(ringCfg ringbuf.Config) (*stream, *session) {
		st := streamFixture(t, s, ringCfg)
		st.sess.busy.Add(1)
		return st, st.sess
	}
	callsAB := func() []*call { return []*call{{clientID: []byte(`"a"`), upID: 1}, {clientID: []byte(`"b"`), upID: 2}} }

	t.Run("whole", func(t *testing.T) {
		st, sess := setup(ringbuf.Config{})
		up := &bufferedStream{inHand: [][]byte{progress, answer("1"), answer("2")}, messages: 3, rest: true, release: make(chan struct{})}
		close(up.release) // the end: Drain reads it at once
		done, pending, _ := s.relayBuffered(sess, st, up, callsAB())
		assert.True(t, done)
		assert.False(t, pending.started())
		assert.True(t, st.ring.Closed(), "the answer is finished")
		assert.Equal(t, uint64(3), st.ring.Stats().Pushed)
		assert.True(t, up.closed.Load(), "drained and closed")
		assert.Zero(t, sess.busy.Load(), "the idle clock runs again")
	})

	t.Run("end not arrived", func(t *testing.T) {
		st, sess := setup(ringbuf.Config{})
		up := &bufferedStream{inHand: [][]byte{answer("1"), answer("2")}, messages: 2, release: make(chan struct{})}
		done, _, _ := s.relayBuffered(sess, st, up, callsAB())
		assert.True(t, done)
		assert.True(t, st.ring.Closed())
		assert.False(t, up.closed.Load(), "the end is read by a goroutine of its own")
		close(up.release)
		require.Eventually(t, up.closed.Load, 5*time.Second, time.Millisecond)
	})

	t.Run("rest to come", func(t *testing.T) {
		st, sess := setup(ringbuf.Config{})
		up := &bufferedStream{inHand: [][]byte{progress, answer("1")}, later: [][]byte{answer("2")}, messages: 2, release: make(chan struct{})}
		calls := callsAB()
		done, pending, _ := s.relayBuffered(sess, st, up, calls)
		require.False(t, done)
		require.Equal(t, 1, pending.left, "a was answered")
		assert.Equal(t, []*call{calls[1]}, slices.Collect(pending.all()))
		assert.Zero(t, up.nextCalls.Load(), "nothing that had not arrived was waited for")
		assert.False(t, st.ring.Closed())
		close(up.release)
		s.pumpAnswer(sess, st, up, calls, pending)
		assert.True(t, st.ring.Closed())
		assert.Equal(t, uint64(3), st.ring.Stats().Pushed, "progress, a, b: each once")
	})

	t.Run("headers alone", func(t *testing.T) {
		st, sess := setup(ringbuf.Config{})
		up := &bufferedStream{awaited: [][]byte{answer("1"), answer("2")}, messages: 2, rest: true, release: make(chan struct{})}
		close(up.release)
		done, pending, _ := s.relayBuffered(sess, st, up, callsAB())
		assert.True(t, done, "what came during the wait is relayed here")
		assert.False(t, pending.started())
		require.Len(t, up.waits, 1)
		assert.LessOrEqual(t, up.waits[0], s.cfg.WholeAnswerWindow, "waited up to the whole-answer window")
		assert.Greater(t, up.waits[0], s.cfg.WholeAnswerWindow/2)
		assert.True(t, up.closed.Load(), "drained and closed")
		assert.True(t, st.ring.Closed())
		assert.Equal(t, uint64(2), st.ring.Stats().Pushed)
	})

	t.Run("a notification first, the answers awaited", func(t *testing.T) {
		st, sess := setup(ringbuf.Config{})
		up := &bufferedStream{inHand: [][]byte{progress}, awaited: [][]byte{answer("1"), answer("2")}, messages: 1, rest: true, release: make(chan struct{})}
		close(up.release)
		done, pending, _ := s.relayBuffered(sess, st, up, callsAB())
		assert.True(t, done, "the answers that came during the wait are relayed here too")
		assert.False(t, pending.started())
		assert.Len(t, up.waits, 1, "one wait, after the notification")
		assert.Equal(t, uint64(3), st.ring.Stats().Pushed, "progress, a, b")
		assert.True(t, st.ring.Closed())
	})

	t.Run("headers alone, nothing in time", func(t *testing.T) {
		st, sess := setup(ringbuf.Config{})
		up := &bufferedStream{later: [][]byte{answer("1"), answer("2")}, messages: 2, release: make(chan struct{})}
		calls := callsAB()
		done, pending, _ := s.relayBuffered(sess, st, up, calls)
		require.False(t, done)
		assert.False(t, pending.started(), "the pump owes every call")
		assert.Len(t, up.waits, 1)
		close(up.release)
		s.pumpAnswer(sess, st, up, calls, pending)
		assert.Equal(t, uint64(2), st.ring.Stats().Pushed)
	})

	t.Run("too much for the ring", func(t *testing.T) {
		st, sess := setup(ringbuf.Config{Capacity: 2})
		lim := st.ring.Limits()
		up := &bufferedStream{inHand: [][]byte{answer("1")}, messages: lim.HardCapacity + 1, release: make(chan struct{})}
		done, pending, _ := s.relayBuffered(sess, st, up, callsAB())
		assert.False(t, done)
		assert.False(t, pending.started(), "not started: the pump owes every call")
		assert.Len(t, up.inHand, 1, "nothing read")
	})
}

// TestRelayBufferedStreamAtOnce: with the whole-answer window off (every
// answer streamed at once), or once the server is shutting down, an answer
// whose headers came alone is not waited for.
func TestRelayBufferedStreamAtOnce(t *testing.T) {
	for _, c := range []struct {
		name     string
		cfg      Config
		shutting bool
	}{
		{"window off", Config{WholeAnswerWindow: -1}, false},
		{"shutting down", Config{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t, c.cfg)
			s.shutting.Store(c.shutting)
			st := streamFixture(t, s, ringbuf.Config{})
			st.sess.busy.Add(1)
			up := &bufferedStream{awaited: [][]byte{[]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`)}, messages: 1, release: make(chan struct{})}
			done, pending, waited := s.relayBuffered(st.sess, st, up, []*call{{clientID: []byte(`"a"`), upID: 1}})
			assert.False(t, done)
			assert.False(t, pending.started())
			assert.Zero(t, waited)
			assert.Empty(t, up.waits)
			s.shutting.Store(false)
			close(up.release)
			_ = up.Close()
		})
	}
}

// TestPendingCalls: a POST's calls are found by upstream id once each, in
// the slice for a small batch and in a map for a large one; all yields
// those not answered yet.
func TestPendingCalls(t *testing.T) {
	for _, n := range []int{1, 3, pendingInline, pendingInline + 1, 300} {
		calls := make([]*call, n)
		for i := range calls {
			calls[i] = &call{clientID: []byte(strconv.Itoa(i)), upID: uint64(100 + i)}
		}
		p := newPendingCalls(calls)
		require.True(t, p.started())
		assert.Equal(t, n > pendingInline, p.m != nil, "n=%d: a map only past the inline size", n)
		assert.Nil(t, p.take(99), "no such call")
		for i := 0; i < n; i += 2 {
			assert.Same(t, calls[i], p.take(uint64(100+i)), "n=%d", n)
			assert.Nil(t, p.take(uint64(100+i)), "n=%d: answered once", n)
		}
		var rest []*call
		for i := 1; i < n; i += 2 {
			rest = append(rest, calls[i])
		}
		assert.Equal(t, len(rest), p.left, "n=%d", n)
		assert.ElementsMatch(t, rest, slices.Collect(p.all()), "n=%d", n)
	}
	p := newPendingCalls(nil)
	assert.True(t, p.started(), "a POST without calls owes nothing")
	assert.Zero(t, p.left)
	var none pendingCalls
	assert.False(t, none.started())
}
