package gateway

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/ringbuf"
)

// TestPushCountsWhatTheRingDid: the gateway's event counters follow what
// the ring did with each droppable push, whatever the outcome says first:
// undelivered events a coalescing push dropped to make byte room are
// counted as dropped (oldest), and a refused event is not counted as
// stored.
func TestPushCountsWhatTheRingDid(t *testing.T) {
	s := newTestServer(t, Config{})
	msg := func(n int) []byte { return []byte(strings.Repeat("x", n)) }

	// Four undelivered events fill the ring's count; the byte budget is
	// nearly used up. A coalescing update that grows its event must drop
	// the oldest undelivered one to make byte room.
	st := streamFixture(t, s, ringbuf.Config{Capacity: 4, MaxBytes: 195, Policy: ringbuf.DropOldest})
	s.push(st, ringbuf.Droppable, 0, msg(50), nil)
	s.push(st, ringbuf.Droppable, 7, msg(50), nil)
	s.push(st, ringbuf.Droppable, 0, msg(50), nil)
	s.push(st, ringbuf.Droppable, 0, msg(40), nil)
	s.push(st, ringbuf.Droppable, 7, msg(60), nil)
	rs := st.ring.Stats()
	require.Equal(t, uint64(1), rs.Coalesced, "the precondition: a coalescing push")
	require.Equal(t, uint64(1), rs.DroppedOldest, "the precondition: it dropped the oldest event")
	m := s.Metrics()
	assert.Equal(t, uint64(1), m.EventsCoalesced)
	assert.Equal(t, uint64(1), m.DroppedOldest, "the event the coalescing push dropped is counted")

	// Refused by the policy: nothing is stored, so nothing counts as pushed.
	for _, policy := range []ringbuf.Policy{ringbuf.DropNewest, ringbuf.Disconnect} {
		st := streamFixture(t, s, ringbuf.Config{Capacity: 1, Policy: policy})
		before := s.Metrics().EventsPushed
		s.push(st, ringbuf.Droppable, 0, msg(10), nil)
		s.push(st, ringbuf.Droppable, 0, msg(10), nil) // the ring holds one undelivered event: refused
		assert.Equal(t, uint64(1), st.ring.Stats().Pushed, policy.String())
		assert.Equal(t, before+1, s.Metrics().EventsPushed, "%s: only the stored event counts as pushed", policy)
	}
}
