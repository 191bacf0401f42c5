package upstream

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSubscribeDuringReopenIsNotLost: a client subscribes to two
// resources in quick succession; the second resources/subscribe arrives
// while the standalone stream is being reopened for the first. The upstream
// subscriptions/listen must end up with both URIs in its filter, or the
// client never hears of the second resource's updates.
func TestSubscribeDuringReopenIsNotLost(t *testing.T) {
	up := &scriptedStateless{}
	var mu sync.Mutex
	var listenBodies []string
	opening := make(chan struct{}, 8)
	release := make(chan struct{})
	up.handler = func(method string, body []byte) *Reply {
		e, _ := decodeEnvelope(body)
		switch method {
		case "server/discover":
			return &Reply{JSON: []byte(result(e.ID, `{"resultType":"complete","capabilities":{"resources":{"subscribe":true}}}`))}
		case "subscriptions/listen":
			mu.Lock()
			listenBodies = append(listenBodies, string(body))
			n := len(listenBodies)
			mu.Unlock()
			if n == 2 { // the reopen for the first subscription is slow
				opening <- struct{}{}
				<-release
			}
			return &Reply{Stream: &sliceStream{block: make(chan struct{})}}
		}
		return &Reply{JSON: errorResponse(e.ID, -32601, "nope")}
	}
	tr := NewStatelessBridge(up, BridgeConfig{})
	s, _, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	defer s.Close(context.Background())
	l, err := s.Listen(context.Background())
	require.NoError(t, err)
	go func() { // the gateway's standalone pump
		for {
			if _, err := l.Next(); err != nil {
				return
			}
		}
	}()
	_, err = s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///a"}}`))
	require.NoError(t, err)
	<-opening
	_, err = s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"file:///b"}}`))
	require.NoError(t, err)
	close(release)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := listenBodies[len(listenBodies)-1]
		return strings.Contains(last, "file:///a") && strings.Contains(last, "file:///b")
	}, 2*time.Second, 10*time.Millisecond, "no subscriptions/listen carries both subscriptions")
	require.NoError(t, l.Close())
}
