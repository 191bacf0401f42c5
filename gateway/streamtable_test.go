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

	// put replaces the stream of the same id.
	repl := mk(5)
	tab.put(repl)
	assert.Same(t, repl, tab.get(5))
	assert.Equal(t, 5, tab.len())

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
