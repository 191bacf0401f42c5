package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStreamTable(t *testing.T) {
	var tab streamTable
	assert.Nil(t, tab.get(0))
	tab.del(3) // nothing there: no effect
	assert.Zero(t, tab.len())

	mk := func(id uint64) *stream { return &stream{id: id} }
	for _, id := range []uint64{2, 0, 5, 1, 9} { // out of order: a restart's records
		tab.put(mk(id))
	}
	require.Equal(t, 5, tab.len())
	var ids []uint64
	for id, st := range tab.all() {
		require.Equal(t, id, st.id)
		ids = append(ids, id)
	}
	assert.Equal(t, []uint64{9, 5, 2, 1, 0}, ids)
	for _, id := range []uint64{0, 1, 2, 5, 9} {
		require.NotNil(t, tab.get(id))
		assert.Equal(t, id, tab.get(id).id)
	}
	assert.Nil(t, tab.get(3))
	assert.Nil(t, tab.get(10))

	// put replaces the stream of the same id, the highest too.
	for _, id := range []uint64{5, 9} {
		repl := mk(id)
		tab.put(repl)
		assert.Same(t, repl, tab.get(id))
		assert.Equal(t, 5, tab.len())
	}

	// A loop may delete the stream it is at (the sweeper does).
	ids = ids[:0]
	for id := range tab.all() {
		ids = append(ids, id)
		if id%2 == 1 {
			tab.del(id)
		}
	}
	assert.Equal(t, []uint64{9, 5, 2, 1, 0}, ids, "every stream visited once")
	assert.Equal(t, 2, tab.len())
	assert.NotNil(t, tab.get(0))
	assert.NotNil(t, tab.get(2))
	snap := tab.snapshot()
	require.Len(t, snap, 2)
	assert.Equal(t, []uint64{2, 0}, []uint64{snap[0].id, snap[1].id}, "highest id first, as all")

	// Stopping early.
	n := 0
	for range tab.all() {
		n++
		break
	}
	assert.Equal(t, 1, n)

	tab.del(0)
	tab.del(2)
	assert.Nil(t, tab.list, "an emptied table holds nothing")
}

// BenchmarkStreamTableCall is the table's work for one call of a session
// that keeps maxRetainedStreams finished answers: the live-stream count's
// look for stream 0, the new answer stream's put and its look at the end,
// and the prune of the oldest finished one.
func BenchmarkStreamTableCall(b *testing.B) {
	var tab streamTable
	tab.put(&stream{id: 0})
	streams := make([]*stream, maxRetainedStreams+1)
	for i := range streams {
		streams[i] = &stream{id: uint64(i + 1)}
		if i < maxRetainedStreams {
			tab.put(streams[i])
		}
	}
	next, oldest := uint64(maxRetainedStreams+1), uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		_ = tab.get(0)
		st := streams[next%uint64(len(streams))]
		st.id = next
		tab.put(st)
		_ = tab.get(next)
		_ = tab.get(oldest)
		tab.del(oldest)
		next++
		oldest++
	}
}
