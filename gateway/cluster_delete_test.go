package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestClusterDeleteOnAnotherNodeEndsTheOwnersUpstream: a client's DELETE
// that lands on a node which does not own the session (its upstream side,
// a stdio child or a legacy HTTP+SSE stream, exists on the owner only)
// ends the upstream session on the owner, as a DELETE on the owner does.
func TestClusterDeleteOnAnotherNodeEndsTheOwnersUpstream(t *testing.T) {
	fnet := newFakeNet()
	upA := testenv.NewFakeUpstream(t)
	_, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})

	sid := liveSession(t, urlA)
	require.Equal(t, http.StatusNoContent, liveDelete(t, urlB, sid).StatusCode)

	code, _, _ := mcpPost(t, urlA, sid, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	assert.Equal(t, http.StatusNotFound, code, "the session ended everywhere")
	assert.Eventually(t, func() bool { return upA.Session(1).Closed() }, 3*time.Second, 10*time.Millisecond,
		"the owner's upstream session was left open")
}
