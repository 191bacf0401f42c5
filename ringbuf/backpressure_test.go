package ringbuf

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTryPushMustWaitsForTheReader: must-deliver events fill the soft and
// then the hard limits, never more; the producer then gets ErrNoRoom, and
// Room signals once the reader has delivered something.
func TestTryPushMustWaitsForTheReader(t *testing.T) {
	r := newRing(t, Config{Capacity: 4, MaxBytes: 1 << 10})
	for i := range 8 {
		seq, out, err := r.TryPushMust([]byte("m"))
		require.NoError(t, err)
		require.Equal(t, Accepted, out)
		require.Equal(t, uint64(i+1), seq)
	}
	assert.Equal(t, uint64(4), r.Stats().PastSoftLimit, "four past the soft limit")
	seq, _, err := r.TryPushMust([]byte("m"))
	require.ErrorIs(t, err, ErrNoRoom)
	assert.Zero(t, seq)
	room := r.Room()
	select {
	case <-room:
		t.Fatal("room signalled before the reader delivered anything")
	default:
	}
	assert.Equal(t, uint64(8), r.LastSeq(), "nothing stored")

	// The reader takes two events: room is signalled, two more fit.
	_, err = nextN(r, 0, 2)
	require.NoError(t, err)
	select {
	case <-room:
	default:
		t.Fatal("room not signalled after delivery")
	}
	for range 2 {
		_, _, err := r.TryPushMust([]byte("m"))
		require.NoError(t, err)
	}
	_, _, err = r.TryPushMust([]byte("m"))
	require.ErrorIs(t, err, ErrNoRoom)

	st := r.Stats()
	assert.Zero(t, st.Overflow)
	assert.Equal(t, 8, st.Len, "the hard capacity, never more")

	// Close wakes a waiting producer too.
	r.Close()
	select {
	case <-room:
	default:
		t.Fatal("room not signalled on close")
	}
	_, _, err = r.TryPushMust([]byte("m"))
	require.ErrorIs(t, err, ErrClosed)
}

// nextN hands out at most n events after `after`.
func nextN(r *Ring, after uint64, n int) (uint64, error) {
	last, _, err := r.Next(after, func(uint64, []byte) bool {
		if n == 0 {
			return false
		}
		n--
		return true
	})
	return last, err
}

// TestTryPushMustOutranksDroppable: a ring full of undelivered droppable
// events never holds a must-deliver event back: past the hard limits the
// oldest droppable events make room, whatever the policy.
func TestTryPushMustOutranksDroppable(t *testing.T) {
	for _, policy := range []Policy{DropOldest, DropNewest, Disconnect} {
		r := newRing(t, Config{Capacity: 2, Policy: policy}) // hard capacity 4
		for range 2 {
			_, _, err := r.Push(Droppable, 0, []byte("d"))
			require.NoError(t, err)
		}
		for range 2 { // past the soft limit, within the hard one
			_, out, err := r.TryPushMust([]byte("m"))
			require.NoError(t, err)
			require.Equal(t, Accepted, out)
		}
		seq, out, err := r.TryPushMust([]byte("m"))
		require.NoError(t, err, "%v", policy)
		assert.Equal(t, DroppedOldest, out, "the oldest droppable event made room")
		got, _, _, err := drain(t, r, 0)
		require.NoError(t, err)
		assert.Equal(t, []event{{2, "d"}, {3, "m"}, {4, "m"}, {seq, "m"}}, got)
		_, _, err = r.TryPushMust([]byte("m"))
		require.NoError(t, err, "delivered events make room")
	}
}

// TestTryPushMustLargeEvent: an event larger than the soft byte budget is
// stored up to the hard limit; larger than that it can never be stored.
func TestTryPushMustLargeEvent(t *testing.T) {
	r := newRing(t, Config{Capacity: 8, MaxBytes: 100})
	_, _, err := r.TryPushMust(make([]byte, 60))
	require.NoError(t, err)
	big := make([]byte, 150) // soft 100, hard 200
	_, _, err = r.TryPushMust(big)
	require.ErrorIs(t, err, ErrNoRoom, "60 undelivered + 150 pass the hard limit")
	last, err := nextN(r, 0, 8)
	require.NoError(t, err)
	seq, _, err := r.TryPushMust(big)
	require.NoError(t, err)
	assert.Equal(t, last+1, seq)
	st := r.Stats()
	assert.Equal(t, uint64(1), st.PastSoftLimit)
	assert.Equal(t, 1, st.Len)

	_, _, err = r.TryPushMust(make([]byte, 201))
	require.ErrorIs(t, err, ErrOverflow)
	assert.Equal(t, uint64(1), r.Stats().Overflow)
}
