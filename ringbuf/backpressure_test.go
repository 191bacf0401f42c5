package ringbuf

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTryPushMustWaitsForTheReader: a must-deliver event never goes past
// the soft limits beside undelivered events; the producer gets ErrNoRoom,
// and Room signals once the reader has delivered something.
func TestTryPushMustWaitsForTheReader(t *testing.T) {
	r := newRing(t, Config{Capacity: 4, MaxBytes: 1 << 10})
	for i := range 4 {
		seq, err := r.TryPushMust([]byte("m"))
		require.NoError(t, err)
		require.Equal(t, uint64(i+1), seq)
	}
	seq, err := r.TryPushMust([]byte("m"))
	require.ErrorIs(t, err, ErrNoRoom)
	assert.Zero(t, seq)
	room := r.Room()
	select {
	case <-room:
		t.Fatal("room signalled before the reader delivered anything")
	default:
	}
	assert.Equal(t, uint64(4), r.LastSeq(), "nothing stored")

	// The reader takes two events: room is signalled, two more fit.
	_, err = nextN(r, 0, 2)
	require.NoError(t, err)
	select {
	case <-room:
	default:
		t.Fatal("room not signalled after delivery")
	}
	for range 2 {
		_, err := r.TryPushMust([]byte("m"))
		require.NoError(t, err)
	}
	_, err = r.TryPushMust([]byte("m"))
	require.ErrorIs(t, err, ErrNoRoom)

	st := r.Stats()
	assert.Zero(t, st.PastSoftLimit)
	assert.Zero(t, st.Overflow)
	assert.LessOrEqual(t, st.Len, 4)

	// Close wakes a waiting producer too.
	r.Close()
	select {
	case <-room:
	default:
		t.Fatal("room not signalled on close")
	}
	_, err = r.TryPushMust([]byte("m"))
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

// TestTryPushMustLargeEvent: an event larger than the soft byte budget is
// stored alone once nothing undelivered is left; larger than the hard
// limit it can never be stored.
func TestTryPushMustLargeEvent(t *testing.T) {
	r := newRing(t, Config{Capacity: 8, MaxBytes: 100})
	_, err := r.TryPushMust(make([]byte, 10))
	require.NoError(t, err)
	big := make([]byte, 150) // soft 100, hard 200
	_, err = r.TryPushMust(big)
	require.ErrorIs(t, err, ErrNoRoom, "an undelivered event is still retained")
	last, err := nextN(r, 0, 8)
	require.NoError(t, err)
	seq, err := r.TryPushMust(big)
	require.NoError(t, err)
	assert.Equal(t, last+1, seq)
	st := r.Stats()
	assert.Equal(t, uint64(1), st.PastSoftLimit)
	assert.Equal(t, 1, st.Len)

	_, err = r.TryPushMust(make([]byte, 201))
	require.ErrorIs(t, err, ErrOverflow)
	assert.Equal(t, uint64(1), r.Stats().Overflow)
}
