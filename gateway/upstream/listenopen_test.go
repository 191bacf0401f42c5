package upstream

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSubscribeWhileListenOpensIsNotLost: a client opens its standalone
// GET stream and subscribes to a resource right away; the
// resources/subscribe arrives while the upstream subscriptions/listen is
// still being opened, after its filter was read. The standalone stream must
// still end up listening for the resource, or the client never hears of
// its updates.
func TestSubscribeWhileListenOpensIsNotLost(t *testing.T) {
	up := &scriptedStateless{}
	var mu sync.Mutex
	var listenBodies []string
	var s Session
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
			if n == 1 { // the client subscribes while the upstream answers
				r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///a"}}`))
				require.NoError(t, err)
				require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{}}`, string(r.JSON))
			}
			return &Reply{Stream: &sliceStream{msgs: []string{`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///a"}}`},
				block: make(chan struct{})}}
		}
		return &Reply{JSON: errorResponse(e.ID, -32601, "nope")}
	}
	tr := NewStatelessBridge(up, BridgeConfig{})
	var err error
	s, _, err = tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	defer s.Close(context.Background())
	l, err := s.Listen(context.Background())
	require.NoError(t, err)
	got := make(chan struct{})
	go func() {
		defer close(got)
		_, _ = l.Next()
	}()
	select {
	case <-got:
	case <-time.After(2 * time.Second):
		t.Fatal("the standalone stream yields nothing")
	}
	mu.Lock()
	defer mu.Unlock()
	require.True(t, strings.Contains(listenBodies[len(listenBodies)-1], `"resourceSubscriptions":["file:///a"]`),
		"the upstream listens without the resource subscribed to: %v", listenBodies)
}

// TestListenAgainWhileOpen: a second Listen on a session whose standalone
// stream is open replaces it; it must not hang.
func TestListenAgainWhileOpen(t *testing.T) {
	up := &scriptedStateless{}
	up.handler = func(method string, body []byte) *Reply {
		e, _ := decodeEnvelope(body)
		switch method {
		case "server/discover":
			return &Reply{JSON: []byte(result(e.ID, `{"resultType":"complete","capabilities":{"tools":{"listChanged":true}}}`))}
		case "subscriptions/listen":
			return &Reply{Stream: &sliceStream{block: make(chan struct{})}}
		}
		return &Reply{JSON: errorResponse(e.ID, -32601, "nope")}
	}
	tr := NewStatelessBridge(up, BridgeConfig{})
	s, _, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	first, err := s.Listen(context.Background())
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := s.Listen(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("a second Listen while the first is open hangs (and with it the session)")
	}
	_, err = first.Next()
	require.Error(t, err, "the replaced standalone stream is closed")
	require.NoError(t, s.Close(context.Background()))
}
