package gateway

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestClusterForwardToDrainingOwnerKeepsTheSession: while a node drains,
// it hands each session it owned to a live node. A third node that holds
// a copy of such a session still believes the draining node owns it and
// forwards the client's next message there: that message must reach the
// new owner (or fail for a retry), never end the session, which the
// draining node's "no longer mine" used to do on every node.
func TestClusterForwardToDrainingOwnerKeepsTheSession(t *testing.T) {
	fnet := newFakeNet()
	a, urlA := fakeClusterServer(t, fnet, "a", testenv.NewFakeUpstream(t), Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	_, urlC := fakeClusterServer(t, fnet, "c", testenv.NewFakeUpstream(t), Config{})
	_ = urlA

	sid := liveSession(t, urlA)
	code, _, body := mcpPost(t, urlC, sid, clusterPingBody)
	require.Equal(t, http.StatusOK, code, body) // C holds a copy, owned by A

	a.clusterDrainStart(context.Background()) // A's shutdown begins: B claims the session
	_, owner, _, _, err := fnet.nodes["b"].LoadSession(context.Background(), sid)
	require.NoError(t, err)
	require.Equal(t, "b", owner)

	code, _, body = mcpPost(t, urlC, sid, clusterPingBody)
	assert.Equal(t, http.StatusOK, code, "C did not reach the new owner: %s", body)
	assert.True(t, fnet.has(sid), "the session left the registry")
	code, _, body = mcpPost(t, urlB, sid, clusterPingBody)
	assert.Equal(t, http.StatusOK, code, "the new owner lost the session: %s", body)
}

const clusterPingBody = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
