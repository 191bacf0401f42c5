package gateway

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// TestRestoreDroppedSessionLeavesNoStreams: a saved session that does not
// fit this configuration (here an answer stream with more undelivered
// events than the ring now holds) is dropped whole, and nothing of it
// stays behind: its standalone stream, restored before the answer stream
// failed, must not stay in the set of sessions with streams, where the
// sweeper would keep it up and the metrics count it for ever.
func TestRestoreDroppedSessionLeavesNoStreams(t *testing.T) {
	s := newTestServer(t, Config{RingSize: 16})
	const sid = "0123456789abcdef0123456789abcdef"
	events := make([]sessionrec.Event, 100)
	for i := range events {
		events[i] = sessionrec.Event{Seq: uint64(i + 1), MustDeliver: true, Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	rec := &sessionrec.Record{ID: sid, Version: "2025-06-18", Initialize: []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize"}`),
		Upstream: sessionrec.Upstream{Kind: "stdio", Version: "2025-06-18"},
		Streams: []sessionrec.Stream{
			{ID: 0, Ring: sessionrec.Ring{}},
			{ID: 5, Ring: sessionrec.Ring{Last: 100, Closed: true, Events: events}},
		}}
	var file bytes.Buffer
	w, err := sessionrec.NewWriter(&file, 1)
	require.NoError(t, err)
	require.NoError(t, w.Write(rec))
	require.NoError(t, w.Close())

	n, err := s.Restore(&file)
	require.NoError(t, err)
	require.Equal(t, 0, n, "the session does not fit: dropped")
	_, ok := s.store.Get(sid)
	require.False(t, ok)
	assert.Zero(t, s.streamSet(sid).Size(), "the dropped session stays among the sessions with streams")
}
