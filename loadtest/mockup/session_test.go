package mockup

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/sse"
)

// TestFinishedStreamsPruned: a finished POST answer stream stays resumable for the TTL
// and is dropped at most one prune period (TTL/8, at most a second) after it, while
// the look for such streams comes once per period, not with every new stream.
func TestFinishedStreamsPruned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, err := New(Config{FinishedTTL: 4 * time.Second})
		require.NoError(t, err)
		sess := newSession(srv, "s", Version20251125)
		defer sess.cancel()

		newFinished := func() uint64 {
			st, ok := sess.newPostStream()
			require.True(t, ok)
			st.finish()
			return st.num
		}
		held := func(num uint64) bool { return sess.stream(num) != nil }

		first := newFinished() // the first call looks (nothing to drop) and sets the period
		time.Sleep(4 * time.Second)
		second := newFinished() // 4 s: the first finished exactly a TTL ago, still kept
		require.True(t, held(first), "a stream finished a TTL ago was dropped")

		time.Sleep(400 * time.Millisecond)
		newFinished() // within the period of the last look: no look, the first is kept
		require.True(t, held(first), "a look came before its period (0.5 s) was over")

		time.Sleep(100 * time.Millisecond)
		newFinished() // the period is over: the first (4.5 s old) goes, the second stays
		require.False(t, held(first), "a stream finished 4.5 s ago outlived the TTL and a period")
		require.True(t, held(second), "a stream finished 0.5 s ago was dropped")

		time.Sleep(5 * time.Second)
		last := newFinished()
		require.False(t, held(second))
		require.True(t, held(last))
		sess.mu.Lock()
		n := len(sess.streams)
		sess.mu.Unlock()
		require.Equal(t, 1, n, "finished streams left past the TTL")
	})
}

// TestStreamLogGrows: a stream's log starts small and doubles up to the
// capacity (here 10, not a power of two), keeping every held event in its slot
// through each growth and, once full, evicting the oldest.
func TestStreamLogGrows(t *testing.T) {
	srv, err := New(Config{ReplayEvents: 10})
	require.NoError(t, err)
	st := newStream(srv, 1, true, true)
	for i := 1; i <= 25; i++ {
		require.NoError(t, st.append(t.Context(), []byte(strconv.Itoa(i))))
		st.mu.Lock()
		held := int(st.next - st.first)
		require.Equal(t, min(i, 10), held)
		require.LessOrEqual(t, len(st.log), 10)
		require.GreaterOrEqual(t, len(st.log), held)
		for seq := st.first; seq < st.next; seq++ {
			want := sse.AppendStreamEvent(nil, 1, seq, []byte(strconv.FormatUint(seq, 10)))
			require.Equal(t, string(want), string(st.log[seq%uint64(len(st.log))]), "event %d after %d appends", seq, i)
		}
		st.mu.Unlock()
	}
	require.Len(t, st.log, 10)
	one := newStream(srv, 2, false, true)
	require.NoError(t, one.append(t.Context(), []byte("x")))
	require.Len(t, one.log, 4, "a one-event answer's log")
}
