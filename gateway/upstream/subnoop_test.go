package upstream

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSubscriptionNoopKeepsListen: a resources/unsubscribe of a resource
// never subscribed to, or a second resources/subscribe of one already
// subscribed to, leaves the filter as it is. It must not tear the upstream
// subscriptions/listen down and open another: the revision has no
// resumption, so what the upstream sent in between is lost to the client.
func TestSubscriptionNoopKeepsListen(t *testing.T) {
	up := &scriptedStateless{}
	var mu sync.Mutex
	var streams []*sliceStream
	up.handler = func(method string, body []byte) *Reply {
		e, _ := decodeEnvelope(body)
		switch method {
		case "server/discover":
			return &Reply{JSON: []byte(result(e.ID, `{"resultType":"complete","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}}}`))}
		case "subscriptions/listen":
			st := &sliceStream{block: make(chan struct{})}
			mu.Lock()
			streams = append(streams, st)
			mu.Unlock()
			return &Reply{Stream: st}
		}
		return &Reply{JSON: errorResponse(e.ID, -32601, "nope")}
	}
	tr := NewStatelessBridge(up, BridgeConfig{})
	s, _, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	defer s.Close(context.Background())
	_, err = s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///a"}}`))
	require.NoError(t, err)
	l, err := s.Listen(context.Background())
	require.NoError(t, err)
	go func() { // the gateway's standalone pump
		for {
			if _, err := l.Next(); err != nil {
				return
			}
		}
	}()
	for i, body := range []string{
		`{"jsonrpc":"2.0","id":2,"method":"resources/unsubscribe","params":{"uri":"file:///never"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"file:///a"}}`,
	} {
		r, err := s.Send(context.Background(), []byte(body))
		require.NoError(t, err)
		assert.Contains(t, string(r.JSON), `"result":{}`, "message %d", i)
	}
	time.Sleep(100 * time.Millisecond) // a reopen would have happened by now
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, streams, 1, "the upstream subscriptions/listen was reopened for a filter that did not change")
	streams[0].mu.Lock()
	assert.False(t, streams[0].closed, "the upstream subscriptions/listen was closed")
	streams[0].mu.Unlock()
}
