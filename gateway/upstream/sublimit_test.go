package upstream

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBridgedSubscriptionsBounded: a session-era client bridged onto a
// stateless upstream subscribes to resources; each URI is kept by the
// session and sent in every subscriptions/listen filter. Past
// maxSubscribedURIs a new one is refused with -32602 (the set grew
// without bound before); one already subscribed, and an unsubscribe, are
// still answered, and the room an unsubscribe makes is usable again.
func TestBridgedSubscriptionsBounded(t *testing.T) {
	up := &scriptedStateless{}
	up.handler = func(method string, body []byte) *Reply {
		e, _ := decodeEnvelope(body)
		if method == "server/discover" {
			return &Reply{JSON: []byte(result(e.ID, `{"resultType":"complete","capabilities":{"resources":{"subscribe":true}}}`))}
		}
		return &Reply{JSON: errorResponse(e.ID, -32601, "nope")}
	}
	s, _, err := NewStatelessBridge(up, BridgeConfig{}).Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	defer s.Close(context.Background())
	send := func(method string, i int) string {
		r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":7,"method":"`+method+`","params":{"uri":"file:///r`+strconv.Itoa(i)+`"}}`))
		require.NoError(t, err)
		return string(r.JSON)
	}
	for i := 0; i < maxSubscribedURIs; i++ {
		require.Contains(t, send("resources/subscribe", i), `"result":{}`, "subscription %d", i)
	}
	over := send("resources/subscribe", maxSubscribedURIs)
	assert.Contains(t, over, `"code":-32602`)
	assert.Contains(t, over, `"id":7`)
	assert.Contains(t, send("resources/subscribe", 0), `"result":{}`, "a resource subscribed to already")
	assert.Contains(t, send("resources/unsubscribe", 1), `"result":{}`)
	assert.Contains(t, send("resources/subscribe", maxSubscribedURIs), `"result":{}`, "the room an unsubscribe made")
}
