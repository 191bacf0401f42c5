package gateway

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// TestClusterForwardedAnswerLostInStoreDoesNotHang: a call forwarded to
// the session's owner whose streamed answer JetStream fails to store (a
// short outage while the owner relays it) gets an answer, an error if
// need be, once the store is back: the forwarding node never waits for
// ever for a relay whose events and end were lost while its owner lives.
func TestClusterForwardedAnswerLostInStoreDoesNotHang(t *testing.T) {
	fnet := newFakeNet()
	upA := testenv.NewFakeUpstream(t).On("tools/call", testenv.Stream(testenv.Respond(`{"content":[]}`)))
	_, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	sid := liveSession(t, urlA)

	var outage atomic.Bool
	outage.Store(true)
	fnet.mu.Lock()
	fnet.refuse = func(ev *sessionrec.Published) bool { return ev.Stream&relayBit != 0 && outage.Load() }
	fnet.mu.Unlock()
	time.AfterFunc(500*time.Millisecond, func() { outage.Store(false) })

	type result struct {
		code int
		body string
	}
	got := make(chan result, 1)
	go func() {
		code, _, body := mcpPostNoFail(urlB, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{}}}`)
		got <- result{code, body}
	}()
	select {
	case r := <-got:
		require.Equal(t, http.StatusOK, r.code, r.body)
		assert.Contains(t, r.body, `"id":7`)
	case <-time.After(8 * time.Second):
		t.Fatal("the forwarded call got no answer 7.5 s after the store came back")
	}
}
