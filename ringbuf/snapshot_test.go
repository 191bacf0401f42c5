package ringbuf

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAll reads every event after `after` from r.
func readAll(t *testing.T, r *Ring, after uint64) ([]event, uint64, error) {
	t.Helper()
	var got []event
	last, skipped, err := r.Next(after, func(seq uint64, data []byte) bool {
		got = append(got, event{seq, string(data)})
		return true
	})
	_ = last
	return got, skipped, err
}

// TestSnapshotRestore: a restored ring serves every reader position as the
// original does (replays, skipped droppable events, a replay across a gone
// must-deliver event refused), keeps its counters and numbering, and the
// snapshot does not alias the ring's buffers.
func TestSnapshotRestore(t *testing.T) {
	cfg := Config{Capacity: 4, MaxBytes: 1 << 10}
	r, err := New(cfg)
	require.NoError(t, err)
	must := func(s string) { _, _, err := r.Push(MustDeliver, 0, []byte(s)); require.NoError(t, err) }
	drop := func(key uint64, s string) { _, _, err := r.Push(Droppable, key, []byte(s)); require.NoError(t, err) }
	must("m1")
	drop(0, "d2")
	_, _, err = readAll(t, r, 0) // delivers 1 and 2
	require.NoError(t, err)
	drop(7, "d3")
	must("m4")
	drop(0, "d5")
	drop(0, "d6") // evicts delivered 1 (must: a replay from 0 now fails) and 2
	drop(7, "d7") // full of undelivered events: evicts... or coalesces into 3
	snap := r.Snapshot()
	require.NotEmpty(t, snap.Events)

	back, err := Restore(cfg, snap)
	require.NoError(t, err)
	assert.Equal(t, r.Stats(), back.Stats())
	assert.Equal(t, r.LastSeq(), back.LastSeq())
	for after := uint64(0); after <= r.LastSeq(); after++ {
		want, wskip, werr := readAll(t, r, after)
		got, gskip, gerr := readAll(t, back, after)
		assert.Equal(t, want, got, "after %d", after)
		assert.Equal(t, wskip, gskip, "after %d", after)
		assert.Equal(t, werr, gerr, "after %d", after)
	}
	assert.Equal(t, r.Stats(), back.Stats(), "the same reads count the same")

	// The snapshot owns its bytes.
	snap.Events[0].Data[0] = 'X'
	got, _, _ := readAll(t, back, snap.Events[0].Seq-1)
	assert.NotEqual(t, byte('X'), got[0].data[0])

	// Numbering goes on.
	s1, _, err := r.Push(MustDeliver, 0, []byte("next"))
	require.NoError(t, err)
	s2, _, err := back.Push(MustDeliver, 0, []byte("next"))
	require.NoError(t, err)
	assert.Equal(t, s1, s2)
}

func TestRestoreClosedAndEmpty(t *testing.T) {
	r, err := New(Config{})
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		_, _, err := r.Push(MustDeliver, 0, []byte{byte('a' + i)})
		require.NoError(t, err)
	}
	_, _, err = readAll(t, r, 0)
	require.NoError(t, err)
	r.Close()
	back, err := Restore(Config{}, r.Snapshot())
	require.NoError(t, err)
	assert.True(t, back.Closed())
	select {
	case <-back.Wait():
	default:
		t.Fatal("a restored closed ring wakes its reader")
	}
	got, _, err := readAll(t, back, 1)
	assert.Len(t, got, 2, "retained events stay readable")
	assert.NoError(t, err)
	_, _, err = readAll(t, back, 3)
	assert.ErrorIs(t, err, ErrClosed)
	_, _, err = back.Push(Droppable, 0, nil)
	assert.ErrorIs(t, err, ErrClosed)

	empty, err := Restore(Config{}, Snapshot{Last: 9, Delivered: 9, Lost: 4})
	require.NoError(t, err)
	assert.Equal(t, uint64(9), empty.LastSeq())
	_, _, err = readAll(t, empty, 3)
	var ev *EvictedError
	assert.ErrorAs(t, err, &ev, "a must-deliver event before seq 5 is gone")
	got, _, err = readAll(t, empty, 4)
	assert.Empty(t, got)
	assert.NoError(t, err)
}

// TestRestoreSmallerRing: a snapshot restored into a ring with smaller
// limits gives up its oldest delivered events, and only those.
func TestRestoreSmallerRing(t *testing.T) {
	big := Config{Capacity: 16, MaxBytes: 1 << 20}
	r, err := New(big)
	require.NoError(t, err)
	for i := 0; i < 10; i++ {
		_, _, err := r.Push(MustDeliver, 0, []byte{byte('0' + i)})
		require.NoError(t, err)
	}
	_, _, err = r.Next(0, func(seq uint64, _ []byte) bool { return seq <= 7 }) // 1..7 delivered
	require.NoError(t, err)
	small := Config{Capacity: 2} // hard capacity 4
	back, err := Restore(small, r.Snapshot())
	require.NoError(t, err)
	got, _, err := readAll(t, back, 6)
	require.NoError(t, err)
	assert.Equal(t, []event{{7, "6"}, {8, "7"}, {9, "8"}, {10, "9"}}, got)
	var ev *EvictedError
	_, _, err = readAll(t, back, 5)
	assert.ErrorAs(t, err, &ev, "the evicted must-deliver event 6 fails an older replay")
	assert.Equal(t, r.Stats().Evicted+6, back.Stats().Evicted)

	tiny := Config{Capacity: 1} // hard capacity 2: three undelivered events do not fit
	_, err = Restore(tiny, r.Snapshot())
	assert.ErrorIs(t, err, ErrInvalidSnapshot)
}

func TestRestoreRefusesInconsistentSnapshots(t *testing.T) {
	ev := func(seq uint64, class Class, key uint64) Event {
		return Event{Seq: seq, Class: class, Key: key, Data: []byte("x")}
	}
	for name, s := range map[string]Snapshot{
		"seq zero":           {Events: []Event{ev(0, Droppable, 0)}, Last: 0},
		"gap":                {Events: []Event{ev(1, Droppable, 0), ev(3, Droppable, 0)}, Last: 3},
		"not ending at last": {Events: []Event{ev(1, Droppable, 0)}, Last: 2},
		"unknown class":      {Events: []Event{ev(1, 9, 0)}, Last: 1},
		"keyed must":         {Events: []Event{ev(1, MustDeliver, 4)}, Last: 1},
		"delivered ahead":    {Events: []Event{ev(1, Droppable, 0)}, Last: 1, Delivered: 2},
		"lost retained":      {Events: []Event{ev(2, Droppable, 0)}, Last: 2, Lost: 2},
		"skip mark ahead":    {Last: 3, SkipMark: 4},
	} {
		_, err := Restore(Config{}, s)
		assert.True(t, errors.Is(err, ErrInvalidSnapshot), "%s: %v", name, err)
	}
	_, err := Restore(Config{Capacity: -1}, Snapshot{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}
