package gateway

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// TestCallTable: calls in flight are found by both ids in the slice and,
// past callTableFew, in the maps, and the table goes back to the slice
// once empty.
func TestCallTable(t *testing.T) {
	var tab callTable
	n := 3 * callTableFew
	calls := make([]*call, n)
	for i := range calls {
		calls[i] = &call{clientID: []byte(strconv.Itoa(i)), upID: uint64(1000 + i)}
	}
	for i, c := range calls {
		tab.add(c)
		require.Equal(t, i+1, tab.len())
		assert.Equal(t, i >= callTableFew, tab.byUpID != nil, "maps only past the slice's size (%d calls)", i+1)
		for _, d := range calls[:i+1] {
			assert.Same(t, d, tab.byClient(d.clientID))
			assert.Same(t, d, tab.byUp(d.upID))
		}
		assert.Nil(t, tab.byClient([]byte("x")))
		assert.Nil(t, tab.byUp(1))
	}
	tab.remove(&call{clientID: calls[0].clientID, upID: calls[0].upID}) // not this call: kept
	assert.Same(t, calls[0], tab.byUp(calls[0].upID))
	for i, c := range calls {
		tab.remove(c)
		tab.remove(c) // ended twice: nothing more
		assert.Nil(t, tab.byClient(c.clientID))
		assert.Nil(t, tab.byUp(c.upID))
		assert.Equal(t, n-i-1, tab.len())
	}
	assert.Nil(t, tab.byUpID, "empty: back to the slice")

	for _, c := range calls[:3] {
		tab.add(c)
	}
	tab.remove(calls[1])
	assert.Equal(t, 2, tab.len())
	assert.Same(t, calls[2], tab.byClient(calls[2].clientID))
	assert.Nil(t, tab.byUp(calls[1].upID))
}

// TestBeginCalls: a session refuses a request whose id is in flight, or
// twice in one batch, and gives each call its own upstream id.
func TestBeginCalls(t *testing.T) {
	var s session
	req := func(id string) jsonrpc.Message {
		return jsonrpc.Message{Kind: jsonrpc.KindRequest, ID: []byte(id)}
	}
	one, ok := s.beginCalls([]jsonrpc.Message{req("1")})
	require.True(t, ok)
	require.Len(t, one, 1)
	assert.Equal(t, uint64(1), one[0].upID)
	_, ok = s.beginCalls([]jsonrpc.Message{req("1")})
	assert.False(t, ok, "id 1 is in flight")
	_, ok = s.beginCalls([]jsonrpc.Message{req(`"a"`), req(`"a"`)})
	assert.False(t, ok, "the same id twice in one batch")
	batch, ok := s.beginCalls([]jsonrpc.Message{req(`"a"`), {Kind: jsonrpc.KindNotification}, req(`"b"`)})
	require.True(t, ok)
	require.Len(t, batch, 2)
	assert.Equal(t, []uint64{2, 3}, []uint64{batch[0].upID, batch[1].upID})
	s.endCalls(one)
	again, ok := s.beginCalls([]jsonrpc.Message{req("1")})
	require.True(t, ok, "id 1 ended: usable again")
	assert.Equal(t, uint64(4), again[0].upID)
	assert.Same(t, batch[1], s.callOf([]byte("3")))
	up, ok := s.upIDOf([]byte(`"a"`))
	assert.True(t, ok)
	assert.Equal(t, uint64(2), up)
}

// TestBeginCallsLargeBatch: a batch of many requests is checked for
// duplicate ids in linear time (a hostile client controls its size).
func TestBeginCallsLargeBatch(t *testing.T) {
	var s session
	msgs := make([]jsonrpc.Message, 50000)
	for i := range msgs {
		msgs[i] = jsonrpc.Message{Kind: jsonrpc.KindRequest, ID: []byte(strconv.Itoa(i))}
	}
	dup := append(append([]jsonrpc.Message(nil), msgs...), jsonrpc.Message{Kind: jsonrpc.KindRequest, ID: []byte("49999")})
	_, ok := s.beginCalls(dup)
	assert.False(t, ok, "the last id repeats one before it")
	calls, ok := s.beginCalls(msgs)
	require.True(t, ok)
	assert.Len(t, calls, len(msgs))
	assert.Equal(t, len(msgs), s.inflight.len())
	assert.Same(t, calls[31337], s.inflight.byClient([]byte("31337")))
}
