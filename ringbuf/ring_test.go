package ringbuf

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// event is one event seen by a reader.
type event struct {
	seq  uint64
	data string
}

// drain reads every retained event after `after` and returns them with
// Next's results.
func drain(t *testing.T, r *Ring, after uint64) ([]event, uint64, uint64, error) {
	t.Helper()
	var got []event
	last, skipped, err := r.Next(after, func(seq uint64, data []byte) bool {
		got = append(got, event{seq, string(data)})
		return true
	})
	return got, last, skipped, err
}

func newRing(t *testing.T, cfg Config) *Ring {
	t.Helper()
	r, err := New(cfg)
	require.NoError(t, err)
	return r
}

func push(t *testing.T, r *Ring, class Class, key uint64, data string) (uint64, Outcome) {
	t.Helper()
	seq, out, err := r.Push(class, key, []byte(data))
	require.NoError(t, err)
	return seq, out
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want Limits
		err  bool
	}{
		{"zero means defaults", Config{}, Limits{DefaultCapacity, DefaultMaxBytes, 2 * DefaultCapacity, 2 * DefaultMaxBytes}, false},
		{"capacity rounded up", Config{Capacity: 5, MaxBytes: 10}, Limits{8, 10, 16, 20}, false},
		{"capacity one", Config{Capacity: 1, MaxBytes: 1}, Limits{1, 1, 2, 2}, false},
		{"power of two kept", Config{Capacity: 64}, Limits{64, DefaultMaxBytes, 128, 2 * DefaultMaxBytes}, false},
		{"max capacity", Config{Capacity: MaxCapacity}, Limits{MaxCapacity, DefaultMaxBytes, 2 * MaxCapacity, 2 * DefaultMaxBytes}, false},
		{"negative capacity", Config{Capacity: -1}, Limits{}, true},
		{"capacity too large", Config{Capacity: MaxCapacity + 1}, Limits{}, true},
		{"negative bytes", Config{MaxBytes: -1}, Limits{}, true},
		{"bytes too large", Config{MaxBytes: MaxMaxBytes + 1}, Limits{}, true},
		{"unknown policy", Config{Policy: Disconnect + 1}, Limits{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg)
			if tt.err {
				require.ErrorIs(t, err, ErrInvalidConfig)
				assert.Nil(t, r)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, r.Limits())
			assert.Nil(t, r.slots, "slot array is allocated lazily")
		})
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{DropOldest, DropNewest, Disconnect} {
		got, err := ParsePolicy(p.String())
		require.NoError(t, err)
		assert.Equal(t, p, got)
	}
	_, err := ParsePolicy("drop-all")
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = ParsePolicy("")
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Equal(t, "Policy(9)", Policy(9).String())
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "droppable", Droppable.String())
	assert.Equal(t, "must-deliver", MustDeliver.String())
	assert.Equal(t, "Class(7)", Class(7).String())
	names := map[Outcome]string{
		Accepted: "accepted", Coalesced: "coalesced", DroppedOldest: "dropped-oldest",
		DroppedNewest: "dropped-newest", MustDisconnect: "must-disconnect", Outcome(42): "Outcome(42)",
	}
	for o, s := range names {
		assert.Equal(t, s, o.String())
	}
}

func TestPushNextInOrder(t *testing.T) {
	r := newRing(t, Config{Capacity: 8})
	buf := []byte("a")
	for i := range 5 {
		buf[0] = byte('a' + i)
		seq, out, err := r.Push(Class(i%2), 0, buf)
		require.NoError(t, err)
		assert.Equal(t, uint64(i+1), seq)
		assert.Equal(t, Accepted, out)
	}
	buf[0] = 'z' // the ring copied the data
	assert.Equal(t, uint64(5), r.LastSeq())

	got, last, skipped, err := drain(t, r, 0)
	require.NoError(t, err)
	assert.Equal(t, []event{{1, "a"}, {2, "b"}, {3, "c"}, {4, "d"}, {5, "e"}}, got)
	assert.Equal(t, uint64(5), last)
	assert.Zero(t, skipped)

	got, last, _, err = drain(t, r, 5)
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, uint64(5), last, "last == after when nothing was consumed")

	// Replay from an earlier position: delivered events stay retained.
	got, last, _, err = drain(t, r, 3)
	require.NoError(t, err)
	assert.Equal(t, []event{{4, "d"}, {5, "e"}}, got)
	assert.Equal(t, uint64(5), last)
}

func TestNextStopsWhenFnReturnsFalse(t *testing.T) {
	r := newRing(t, Config{Capacity: 8})
	for i := range 5 {
		push(t, r, Droppable, 0, fmt.Sprint(i+1))
	}
	budget := 2
	var got []uint64
	fill := func(seq uint64, _ []byte) bool {
		if budget == 0 {
			return false
		}
		budget--
		got = append(got, seq)
		return true
	}
	last, _, err := r.Next(0, fill)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), last)
	assert.Equal(t, []uint64{1, 2}, got)

	// Nothing fits: nothing consumed, last == after.
	last, _, err = r.Next(2, fill)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), last)

	budget = 10
	last, _, err = r.Next(last, fill)
	require.NoError(t, err)
	assert.Equal(t, uint64(5), last)
	assert.Equal(t, []uint64{1, 2, 3, 4, 5}, got)

	// Only delivered events are evictable: 3..5 were delivered, 6.. not.
	r.mu.Lock()
	assert.Equal(t, uint64(5), r.delivered)
	r.mu.Unlock()
}

func TestWrapAround(t *testing.T) {
	r := newRing(t, Config{Capacity: 4, Policy: DropNewest})
	var after uint64
	for i := range 100 {
		seq, out := push(t, r, Class(i%2), 0, fmt.Sprintf("e%d", i))
		require.Equal(t, Accepted, out)
		require.Equal(t, uint64(i+1), seq)
		got, last, skipped, err := drain(t, r, after)
		require.NoError(t, err)
		require.Equal(t, []event{{seq, fmt.Sprintf("e%d", i)}}, got)
		require.Zero(t, skipped)
		after = last
	}
	st := r.Stats()
	assert.Equal(t, uint64(100), st.Pushed)
	assert.Equal(t, uint64(96), st.Evicted)
	assert.Equal(t, 4, st.Len)
	assert.Zero(t, st.DroppedNewest+st.DroppedOldest+st.DroppedDisconnect)
	assert.Len(t, r.slots, initialSlots, "slots grow only as far as needed")
}

func TestPolicies(t *testing.T) {
	tests := []struct {
		policy  Policy
		wantSeq uint64
		wantOut Outcome
		wantGot []event
		wantSk  uint64
		stats   Stats
	}{
		{DropOldest, 5, DroppedOldest, []event{{2, "2"}, {3, "3"}, {4, "4"}, {5, "new"}}, 1,
			Stats{Pushed: 5, DroppedOldest: 1, Skipped: 1, Len: 4, Bytes: 6}},
		{DropNewest, 0, DroppedNewest, []event{{1, "1"}, {2, "2"}, {3, "3"}, {4, "4"}}, 0,
			Stats{Pushed: 4, DroppedNewest: 1, Len: 4, Bytes: 4}},
		{Disconnect, 0, MustDisconnect, []event{{1, "1"}, {2, "2"}, {3, "3"}, {4, "4"}}, 0,
			Stats{Pushed: 4, DroppedDisconnect: 1, Len: 4, Bytes: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			r := newRing(t, Config{Capacity: 4, Policy: tt.policy})
			for i := range 4 {
				seq, out := push(t, r, Droppable, 0, fmt.Sprint(i+1))
				require.Equal(t, Accepted, out)
				require.Equal(t, uint64(i+1), seq)
			}
			seq, out := push(t, r, Droppable, 0, "new")
			assert.Equal(t, tt.wantSeq, seq)
			assert.Equal(t, tt.wantOut, out)

			got, _, skipped, err := drain(t, r, 0)
			require.NoError(t, err)
			assert.Equal(t, tt.wantGot, got)
			assert.Equal(t, tt.wantSk, skipped)
			assert.Equal(t, tt.stats, r.Stats())

			// Once delivered, the ring wraps normally under every policy.
			seq, out = push(t, r, Droppable, 0, "after")
			assert.Equal(t, Accepted, out)
			assert.Equal(t, r.LastSeq(), seq)
			assert.Equal(t, uint64(1), r.Stats().Evicted)
		})
	}
}

func TestDropOldestKeepsMustDeliverHead(t *testing.T) {
	r := newRing(t, Config{Capacity: 4, Policy: DropOldest})
	push(t, r, MustDeliver, 0, "response")
	for range 3 {
		push(t, r, Droppable, 0, "p")
	}
	seq, out := push(t, r, Droppable, 0, "p")
	assert.Zero(t, seq)
	assert.Equal(t, DroppedNewest, out, "an undelivered MustDeliver head cannot be dropped")
	st := r.Stats()
	assert.Equal(t, uint64(1), st.DroppedNewest)
	assert.Zero(t, st.DroppedOldest)
	assert.Equal(t, 4, st.Len)

	// Droppable events at the head are dropped until a MustDeliver event
	// would have to go: [D D M D] needs only the first D dropped.
	r = newRing(t, Config{Capacity: 4, Policy: DropOldest})
	push(t, r, Droppable, 0, "d1")
	push(t, r, Droppable, 0, "d2")
	push(t, r, MustDeliver, 0, "m3")
	push(t, r, Droppable, 0, "d4")
	seq, out = push(t, r, Droppable, 0, "d5")
	assert.Equal(t, uint64(5), seq)
	assert.Equal(t, DroppedOldest, out)
	seq, out = push(t, r, Droppable, 0, "d6")
	assert.Equal(t, uint64(6), seq)
	assert.Equal(t, DroppedOldest, out)
	seq, out = push(t, r, Droppable, 0, "d7")
	assert.Zero(t, seq)
	assert.Equal(t, DroppedNewest, out)
	got, _, skipped, err := drain(t, r, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), skipped)
	assert.Equal(t, []event{{3, "m3"}, {4, "d4"}, {5, "d5"}, {6, "d6"}}, got)
}

func TestByteBudget(t *testing.T) {
	t.Run("policy applies to bytes", func(t *testing.T) {
		r := newRing(t, Config{Capacity: 64, MaxBytes: 100, Policy: DropOldest})
		d40 := string(bytes.Repeat([]byte("x"), 40))
		push(t, r, Droppable, 0, d40)
		push(t, r, Droppable, 0, d40)
		seq, out := push(t, r, Droppable, 0, d40)
		assert.Equal(t, uint64(3), seq)
		assert.Equal(t, DroppedOldest, out)
		assert.Equal(t, 80, r.Stats().Bytes)
		// An event needing two drops.
		seq, out = push(t, r, Droppable, 0, d40+d40)
		assert.Equal(t, uint64(4), seq)
		assert.Equal(t, DroppedOldest, out)
		st := r.Stats()
		assert.Equal(t, 80, st.Bytes)
		assert.Equal(t, 1, st.Len)
		assert.Equal(t, uint64(3), st.DroppedOldest)
	})
	t.Run("oversized droppable refused", func(t *testing.T) {
		for _, p := range []Policy{DropOldest, DropNewest, Disconnect} {
			r := newRing(t, Config{MaxBytes: 10, Policy: p})
			seq, out := push(t, r, Droppable, 0, "01234567890")
			assert.Zero(t, seq)
			assert.Equal(t, DroppedNewest, out, p.String())
			assert.Equal(t, uint64(1), r.Stats().DroppedNewest)
			seq, out = push(t, r, Droppable, 0, "0123456789")
			assert.Equal(t, uint64(1), seq, "exactly MaxBytes fits")
			assert.Equal(t, Accepted, out)
		}
	})
	t.Run("delivered events evicted for bytes", func(t *testing.T) {
		r := newRing(t, Config{Capacity: 64, MaxBytes: 100, Policy: DropNewest})
		var after uint64
		for range 10 {
			_, out := push(t, r, Droppable, 0, string(bytes.Repeat([]byte("y"), 30)))
			require.Equal(t, Accepted, out)
			_, after, _, _ = drain(t, r, after)
		}
		st := r.Stats()
		assert.Equal(t, 3, st.Len)
		assert.Equal(t, 90, st.Bytes)
		assert.Equal(t, uint64(7), st.Evicted)
	})
}

func TestCoalesce(t *testing.T) {
	// With room, every update is kept: coalescing only replaces losing
	// events under pressure.
	r := newRing(t, Config{Capacity: 4})
	seq, out := push(t, r, Droppable, 7, "progress 1")
	require.Equal(t, uint64(1), seq)
	require.Equal(t, Accepted, out)
	push(t, r, MustDeliver, 0, "response")
	push(t, r, Droppable, 9, "other token")
	seq, out = push(t, r, Droppable, 7, "progress 2")
	assert.Equal(t, uint64(4), seq, "room left: stored, not coalesced")
	assert.Equal(t, Accepted, out)

	// Full of undelivered events: the newest undelivered event with the key
	// takes the update, keeping its seq and position.
	seq, out = push(t, r, Droppable, 7, "progress 3 of 10")
	assert.Equal(t, uint64(4), seq)
	assert.Equal(t, Coalesced, out)
	assert.Equal(t, uint64(4), r.LastSeq())
	assert.Equal(t, len("progress 1")+len("response")+len("other token")+len("progress 3 of 10"), r.Stats().Bytes)

	// MustDeliver ignores the key: never merged (stored past the soft limit).
	seq, out = push(t, r, MustDeliver, 9, "request")
	assert.Equal(t, uint64(5), seq)
	assert.Equal(t, MustDisconnect, out)
	seq, out = push(t, r, Droppable, 9, "other token 2")
	assert.Equal(t, uint64(3), seq)
	assert.Equal(t, Coalesced, out)

	got, last, _, err := drain(t, r, 0)
	require.NoError(t, err)
	assert.Equal(t, []event{{1, "progress 1"}, {2, "response"}, {3, "other token 2"}, {4, "progress 3 of 10"}, {5, "request"}}, got)
	assert.Equal(t, uint64(2), r.Stats().Coalesced)

	// Delivered events are never coalesced into: they make room instead.
	seq, out = push(t, r, Droppable, 7, "progress 4")
	assert.Equal(t, last+1, seq)
	assert.Equal(t, Accepted, out)
}

func TestCoalesceByteBudget(t *testing.T) {
	tests := []struct {
		policy  Policy
		wantSeq uint64
		wantOut Outcome
	}{
		{DropOldest, 2, Coalesced},
		{DropNewest, 0, DroppedNewest},
		{Disconnect, 0, MustDisconnect},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			r := newRing(t, Config{Capacity: 8, MaxBytes: 10, Policy: tt.policy})
			push(t, r, Droppable, 0, "aaaa")
			push(t, r, Droppable, 5, "bbb")
			seq, out := push(t, r, Droppable, 5, "ccccccc") // 4+7 > 10
			assert.Equal(t, tt.wantSeq, seq)
			assert.Equal(t, tt.wantOut, out)
			assert.LessOrEqual(t, r.Stats().Bytes, 10)
			// With room again, an update is stored as a new event.
			seq, out = push(t, r, Droppable, 5, "d")
			assert.Equal(t, r.LastSeq(), seq)
			assert.Equal(t, Accepted, out)
		})
	}
}

func TestMustDeliverPastSoftLimits(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		r := newRing(t, Config{Capacity: 4, Policy: DropOldest})
		for i := range 4 {
			_, out := push(t, r, MustDeliver, 0, "m")
			require.Equal(t, Accepted, out, i)
		}
		for i := range 4 {
			seq, out := push(t, r, MustDeliver, 0, "m")
			require.Equal(t, MustDisconnect, out, i)
			require.Equal(t, uint64(5+i), seq)
		}
		seq, out, err := r.Push(MustDeliver, 0, []byte("m"))
		require.ErrorIs(t, err, ErrOverflow)
		assert.Zero(t, seq)
		// Droppable events are refused while must-deliver ones fill the ring.
		seq, out = push(t, r, Droppable, 0, "d")
		assert.Zero(t, seq)
		assert.Equal(t, DroppedNewest, out)
		st := r.Stats()
		assert.Equal(t, 8, st.Len)
		assert.Equal(t, uint64(4), st.PastSoftLimit)
		assert.Equal(t, uint64(1), st.Overflow)
		assert.Len(t, r.slots, 8, "slot array grows to the hard capacity")

		// Nothing was dropped: a reader gets all eight.
		got, last, skipped, err := drain(t, r, 0)
		require.NoError(t, err)
		assert.Len(t, got, 8)
		assert.Equal(t, uint64(8), last)
		assert.Zero(t, skipped)
		// Delivered, they make room again.
		seq, out = push(t, r, MustDeliver, 0, "m")
		assert.Equal(t, uint64(9), seq)
		assert.Equal(t, Accepted, out)
		assert.Equal(t, 4, r.Stats().Len)
	})
	t.Run("bytes", func(t *testing.T) {
		r := newRing(t, Config{Capacity: 64, MaxBytes: 10, Policy: Disconnect})
		seq, out := push(t, r, MustDeliver, 0, "0123456789")
		assert.Equal(t, uint64(1), seq)
		assert.Equal(t, Accepted, out)
		seq, out = push(t, r, MustDeliver, 0, "01234")
		assert.Equal(t, uint64(2), seq)
		assert.Equal(t, MustDisconnect, out)
		seq, out = push(t, r, MustDeliver, 0, "56789")
		assert.Equal(t, uint64(3), seq)
		assert.Equal(t, MustDisconnect, out)
		_, _, err := r.Push(MustDeliver, 0, []byte("x"))
		require.ErrorIs(t, err, ErrOverflow)
		assert.Equal(t, 20, r.Stats().Bytes)
	})
	t.Run("single event above hard bytes", func(t *testing.T) {
		r := newRing(t, Config{MaxBytes: 4})
		seq, out := push(t, r, MustDeliver, 0, "12345678")
		assert.Equal(t, uint64(1), seq)
		assert.Equal(t, MustDisconnect, out)
		_, _, _, err := drain(t, r, 0)
		require.NoError(t, err)
		_, _, err = r.Push(MustDeliver, 0, []byte("123456789"))
		require.ErrorIs(t, err, ErrOverflow)
		assert.Equal(t, 1, r.Stats().Len, "nothing stored, nothing evicted for nothing")
	})
}

func TestReplayAfterEviction(t *testing.T) {
	t.Run("must-deliver gone", func(t *testing.T) {
		r := newRing(t, Config{Capacity: 4})
		for range 4 {
			push(t, r, MustDeliver, 0, "m")
		}
		_, last, _, err := drain(t, r, 0)
		require.NoError(t, err)
		for range 3 {
			push(t, r, Droppable, 0, "d")
		}
		// Seqs 1..3 were evicted; 1..3 are must-deliver.
		visited := false
		last2, skipped, err := r.Next(0, func(uint64, []byte) bool { visited = true; return true })
		require.ErrorIs(t, err, ErrEvicted)
		var ee *EvictedError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, uint64(0), ee.After)
		assert.Equal(t, uint64(3), ee.Missing)
		assert.False(t, visited, "nothing visited on ErrEvicted")
		assert.Zero(t, last2)
		assert.Zero(t, skipped)
		assert.Contains(t, err.Error(), "3 events after seq 0")

		_, _, err = r.Next(2, func(uint64, []byte) bool { return true })
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, uint64(1), ee.Missing)

		got, _, skipped, err := drain(t, r, 3)
		require.NoError(t, err, "resuming after the last gone event works")
		assert.Zero(t, skipped)
		assert.Len(t, got, 4)
		assert.Equal(t, uint64(4), last)
	})
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("droppable gone strict=%v", strict), func(t *testing.T) {
			r := newRing(t, Config{Capacity: 4, StrictReplay: strict})
			for range 4 {
				push(t, r, Droppable, 0, "d")
			}
			drain(t, r, 0)
			push(t, r, Droppable, 0, "e")
			push(t, r, Droppable, 0, "f")
			got, last, skipped, err := drain(t, r, 0)
			if strict {
				var ee *EvictedError
				require.ErrorAs(t, err, &ee)
				assert.Equal(t, EvictedError{After: 0, Missing: 2}, *ee)
				assert.Empty(t, got)
				assert.Zero(t, last)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, uint64(2), skipped)
			assert.Equal(t, uint64(6), last)
			assert.Equal(t, []event{{3, "d"}, {4, "d"}, {5, "e"}, {6, "f"}}, got)
			// Skipped counts each seq once, however often it is reported.
			_, _, skipped, _ = drain(t, r, 0)
			assert.Equal(t, uint64(2), skipped)
			assert.Equal(t, uint64(2), r.Stats().Skipped)
		})
	}
	t.Run("strict with drop-oldest", func(t *testing.T) {
		r := newRing(t, Config{Capacity: 2, Policy: DropOldest, StrictReplay: true})
		push(t, r, Droppable, 0, "a")
		push(t, r, Droppable, 0, "b")
		_, out := push(t, r, Droppable, 0, "c")
		require.Equal(t, DroppedOldest, out)
		_, _, _, err := drain(t, r, 0)
		require.ErrorIs(t, err, ErrEvicted)
		got, _, _, err := drain(t, r, 1)
		require.NoError(t, err)
		assert.Equal(t, []event{{2, "b"}, {3, "c"}}, got)
	})
}

func TestNextFutureSeq(t *testing.T) {
	r := newRing(t, Config{})
	push(t, r, Droppable, 0, "a")
	last, _, err := r.Next(2, func(uint64, []byte) bool { return true })
	require.ErrorIs(t, err, ErrFutureSeq)
	assert.Equal(t, uint64(2), last)
	// The bogus position marked nothing delivered.
	seq, out := push(t, r, Droppable, 0, "b")
	assert.Equal(t, uint64(2), seq)
	assert.Equal(t, Accepted, out)
}

func TestClose(t *testing.T) {
	r := newRing(t, Config{})
	push(t, r, MustDeliver, 0, "a")
	push(t, r, Droppable, 0, "b")
	<-r.Wait() // drain the push signal

	assert.False(t, r.Closed())
	r.Close()
	r.Close() // idempotent
	assert.True(t, r.Closed())
	select {
	case <-r.Wait():
	default:
		t.Fatal("Close did not wake the reader")
	}

	_, _, err := r.Push(Droppable, 0, []byte("c"))
	require.ErrorIs(t, err, ErrClosed)
	_, _, err = r.Push(MustDeliver, 0, []byte("c"))
	require.ErrorIs(t, err, ErrClosed)

	// Retained events stay readable, one at a time too.
	got := 0
	last, _, err := r.Next(0, func(uint64, []byte) bool { got++; return got < 2 })
	require.NoError(t, err)
	assert.Equal(t, uint64(1), last)
	events, last, _, err := drain(t, r, last)
	require.NoError(t, err, "events remained after the position")
	assert.Equal(t, []event{{2, "b"}}, events)
	_, last2, _, err := drain(t, r, last)
	require.ErrorIs(t, err, ErrClosed)
	assert.Equal(t, last, last2)
	assert.Equal(t, uint64(2), r.LastSeq())
}

func TestPushInvalidClass(t *testing.T) {
	r := newRing(t, Config{})
	_, _, err := r.Push(Class(2), 0, nil)
	require.ErrorIs(t, err, ErrInvalidClass)
	assert.Zero(t, r.LastSeq())
}

func TestWaitSignal(t *testing.T) {
	r := newRing(t, Config{Capacity: 1, Policy: DropNewest})
	select {
	case <-r.Wait():
		t.Fatal("signal before any push")
	default:
	}
	push(t, r, Droppable, 0, "a")
	push(t, r, Droppable, 0, "b") // refused: no new data, collapses anyway
	<-r.Wait()
	select {
	case <-r.Wait():
		t.Fatal("signals must collapse into one slot")
	default:
	}
	push(t, r, Droppable, 0, "c") // refused again
	select {
	case <-r.Wait():
		t.Fatal("a refused event must not wake the reader")
	default:
	}
	push(t, r, Droppable, 0, "")
	// The empty event is refused too (ring full, undelivered), so deliver first.
	drain(t, r, 0)
	push(t, r, Droppable, 0, "d")
	select {
	case <-r.Wait():
	case <-time.After(time.Second):
		t.Fatal("no signal after a stored event")
	}
}

func TestMemory(t *testing.T) {
	r := newRing(t, Config{Capacity: 256})
	assert.Nil(t, r.slots)
	push(t, r, Droppable, 0, "a")
	assert.Len(t, r.slots, initialSlots, "start small")
	for range 20 {
		push(t, r, Droppable, 0, "a")
	}
	assert.Len(t, r.slots, 32, "double as needed")

	// A huge event's buffer is released when it is evicted; small ones
	// are kept for reuse.
	r = newRing(t, Config{Capacity: 2, MaxBytes: 1 << 20})
	push(t, r, Droppable, 0, string(make([]byte, 200<<10)))
	push(t, r, Droppable, 0, "small")
	drain(t, r, 0)
	push(t, r, Droppable, 0, "x") // evicts seq 1
	push(t, r, Droppable, 0, "y") // evicts seq 2
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, uint64(3), r.first)
	assert.Nil(t, r.slots[1&r.mask].data, "huge buffer released")
	assert.NotNil(t, r.slots[2&r.mask].data, "small buffer kept")
}

// TestConcurrentProducers runs several producers against one reader and
// checks that no must-deliver event is lost or duplicated, that seqs stay
// monotonic, and that every droppable push is accounted for.
func TestConcurrentProducers(t *testing.T) {
	for _, policy := range []Policy{DropOldest, DropNewest, Disconnect} {
		for _, mustEvery := range []int{8, 64} {
			t.Run(fmt.Sprintf("%s/must-every-%d", policy, mustEvery), func(t *testing.T) {
				testConcurrent(t, policy, mustEvery)
			})
		}
	}
}

func testConcurrent(t *testing.T, policy Policy, mustEvery int) {
	const (
		producers = 4
		perProd   = 3000
	)
	r := newRing(t, Config{Capacity: 16, MaxBytes: 512, Policy: policy})

	type tally struct {
		mustStored            []uint64 // seqs of stored must-deliver events
		dropStored, coalesced uint64
		refused               uint64
	}
	tallies := make([]tally, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl := &tallies[p]
			for i := range perProd {
				class := Droppable
				if i%mustEvery == 0 {
					class = MustDeliver
				}
				var key uint64
				if class == Droppable && i%3 == 0 {
					key = uint64(p*10 + i%5 + 1)
				}
				data := fmt.Appendf(nil, "%c%d:%d", "dm"[class], p, i)
				for {
					seq, out, err := r.Push(class, key, data)
					if errors.Is(err, ErrOverflow) {
						runtime.Gosched() // the reader is behind; retry
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					switch {
					case class == MustDeliver:
						if seq == 0 {
							t.Errorf("must-deliver event refused: %v", out)
						}
						tl.mustStored = append(tl.mustStored, seq)
					case out == Coalesced:
						tl.coalesced++
					case seq == 0:
						tl.refused++
					default:
						tl.dropStored++
					}
					break
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		r.Close()
	}()

	var (
		after, delivered, skippedSum uint64
		mustSeen                     = map[string]uint64{}
		lastMustIdx                  = map[byte]int{}
	)
	for {
		last, skipped, err := r.Next(after, func(seq uint64, data []byte) bool {
			if seq <= after {
				t.Errorf("seq %d not above %d", seq, after)
			}
			if data[0] == 'm' {
				if _, dup := mustSeen[string(data)]; dup {
					t.Errorf("must-deliver %s delivered twice", data)
				}
				mustSeen[string(data)] = seq
				var p, i int
				_, _ = fmt.Sscanf(string(data[1:]), "%d:%d", &p, &i)
				if prev, ok := lastMustIdx[data[1]]; ok && i <= prev {
					t.Errorf("producer %d out of order: %d after %d", p, i, prev)
				}
				lastMustIdx[data[1]] = i
			} else {
				delivered++
			}
			return true
		})
		skippedSum += skipped
		if errors.Is(err, ErrClosed) {
			break
		}
		require.NoError(t, err)
		if last == after {
			<-r.Wait()
		}
		after = last
	}

	var must, dropStored, coalesced, refused uint64
	for _, tl := range tallies {
		must += uint64(len(tl.mustStored))
		dropStored += tl.dropStored
		coalesced += tl.coalesced
		refused += tl.refused
		for i := 1; i < len(tl.mustStored); i++ {
			assert.Greater(t, tl.mustStored[i], tl.mustStored[i-1], "seqs are monotonic per producer")
		}
	}
	wantMust := producers * ((perProd + mustEvery - 1) / mustEvery)
	assert.Equal(t, uint64(wantMust), must)
	assert.Len(t, mustSeen, int(must), "every must-deliver event delivered exactly once")
	stored := map[uint64]bool{}
	for _, tl := range tallies {
		for _, seq := range tl.mustStored {
			stored[seq] = true
		}
	}
	for data, seq := range mustSeen {
		assert.True(t, stored[seq], "delivered %s at seq %d that Push did not return", data, seq)
	}
	st := r.Stats()
	droppablePushes := uint64(producers*perProd - wantMust)
	assert.Equal(t, droppablePushes, delivered+skippedSum+coalesced+refused,
		"delivered + skipped + coalesced + refused == pushed")
	assert.Equal(t, dropStored, delivered+skippedSum)
	assert.Equal(t, st.Skipped, skippedSum)
	assert.Equal(t, st.DroppedOldest, skippedSum)
	assert.Equal(t, st.Coalesced, coalesced)
	assert.Equal(t, st.DroppedNewest+st.DroppedDisconnect, refused)
	assert.Equal(t, st.Pushed, must+dropStored)
	assert.Equal(t, r.LastSeq(), st.Pushed)
	t.Logf("%+v", st)
}

// TestWaitMadeLate: the wake-up channel is made by the first Wait; what was
// pushed, or a Close, before then is signalled on it, and a ring read to
// its end before the first Wait is not.
func TestWaitMadeLate(t *testing.T) {
	r := newRing(t, Config{})
	push(t, r, MustDeliver, 0, "a")
	assert.True(t, signalled(r), "an event pushed before the first Wait is not signalled")

	r = newRing(t, Config{})
	push(t, r, MustDeliver, 0, "a")
	last, _, err := r.Next(0, func(uint64, []byte) bool { return true })
	require.NoError(t, err)
	require.Equal(t, uint64(1), last)
	assert.False(t, signalled(r), "signal with nothing new to read")
	push(t, r, MustDeliver, 0, "b")
	assert.True(t, signalled(r), "a push after the first Wait is not signalled")

	r = newRing(t, Config{})
	r.Close()
	assert.True(t, signalled(r), "a Close before the first Wait is not signalled")
}

// signalled reports whether r's wake-up channel is ready now.
func signalled(r *Ring) bool {
	select {
	case <-r.Wait():
		return true
	default:
		return false
	}
}

// TestCarvedBuffersDoNotOverlap: whatever the sizes pushed, coalesced into
// and evicted, no two retained slots' buffers share a byte of capacity, so
// a slot reusing its buffer never writes into another event.
func TestCarvedBuffersDoNotOverlap(t *testing.T) {
	r, err := New(Config{Capacity: 64, MaxBytes: 32 << 10})
	require.NoError(t, err)
	sizes := []int{1, 150, 17, 16, 900, 1024, 1025, 3000, 0, 64, 200, 33}
	var after uint64
	for i := range 2000 {
		n := sizes[i%len(sizes)] + i%7
		data := bytes.Repeat([]byte{byte(i)}, n)
		key := uint64(0)
		if i%5 == 0 {
			key = uint64(i%3 + 1) // coalesced into a retained event's slot
		}
		_, _, err := r.Push(Droppable, key, data)
		require.NoError(t, err)
		if i%3 == 0 {
			after, _, err = r.Next(after, func(uint64, []byte) bool { return true })
			require.NoError(t, err)
		}
		type span struct{ lo, hi uintptr }
		var spans []span
		r.mu.Lock()
		for seq := r.first; seq <= r.last; seq++ {
			d := r.slots[seq&r.mask].data
			if cap(d) == 0 {
				continue
			}
			lo := uintptr(unsafe.Pointer(unsafe.SliceData(d)))
			spans = append(spans, span{lo, lo + uintptr(cap(d))})
		}
		r.mu.Unlock()
		slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
		for j := 1; j < len(spans); j++ {
			require.LessOrEqual(t, spans[j-1].hi, spans[j].lo, "push %d: two slots share buffer space", i)
		}
	}
}
