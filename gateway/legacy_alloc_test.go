//go:build !race

package gateway

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// TestLegacyEventPathAllocs: the legacy stream's framing ("event: message",
// no id) keeps the event path allocation-free, like TestEventPathAllocs.
func TestLegacyEventPathAllocs(t *testing.T) {
	s := newTestServer(t, Config{})
	st, r := readerFixture(t, s, ringbuf.Config{Capacity: 1024})
	r.legacy = true
	var p jsonrpc.Parser
	msgs := [][]byte{
		[]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":7,"total":100}}`),
		[]byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"done"}]}}`),
	}
	buf := make([]byte, 4096)
	step := func() {
		for _, m := range msgs {
			class, key, _ := classify(&p, m)
			s.deliver(st.sess, st, class, key, m, false, nil)
		}
		n, err := r.Read(buf)
		if err != nil || n == 0 {
			t.Fatalf("Read: %d, %v", n, err)
		}
	}
	for i := 0; i < 4*1024; i++ { // every slot buffer sees every size (see TestEventPathAllocs)
		step()
	}
	require.Zero(t, testing.AllocsPerRun(1000, step), "allocations per 2 events on a legacy stream")
}
