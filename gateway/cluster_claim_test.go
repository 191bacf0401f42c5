package gateway

import (
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestClusterClaimLostToAnActivityWriteKeepsTheSession: when a node
// claims a session whose owner died and the claim's compare-and-set meets
// a newer revision written meanwhile by a third node's activity write
// (which keeps the dead owner), the session still exists: the request is
// served (the claim retried on the new revision), never answered 404,
// which makes the client drop a live session.
func TestClusterClaimLostToAnActivityWriteKeepsTheSession(t *testing.T) {
	fnet := newFakeNet()
	_, urlA := fakeClusterServer(t, fnet, "a", testenv.NewFakeUpstream(t), Config{})
	b, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})

	sid := liveSession(t, urlA)
	fnet.mu.Lock()
	fnet.dead["a"] = true // A's lease ran out
	fnet.mu.Unlock()
	var once sync.Once
	nb := b.cfg.Cluster.(*fakeNode)
	nb.mu.Lock()
	nb.beforeUpdate = func(id string) { once.Do(func() { fnet.bump(id) }) } // a third node's activity write
	nb.mu.Unlock()

	code, _, body := mcpPost(t, urlB, sid, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	assert.Equal(t, http.StatusOK, code, "%s", body)
	assert.True(t, fnet.has(sid))
}
