package gateway

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

const clusterPing = `{"jsonrpc":"2.0","id":2,"method":"ping"}`

// TestClusterEvictingACopyKeepsTheSession: a node at its session cap with
// EvictIdle makes room by dropping its own copy of a session another node
// owns; the session lives on (its registry entry, and on its owner), as a
// copy that idles leaves quietly. Evicting the copy must not end the
// session on every node.
func TestClusterEvictingACopyKeepsTheSession(t *testing.T) {
	fnet := newFakeNet()
	_, urlA := fakeClusterServer(t, fnet, "a", testenv.NewFakeUpstream(t), Config{})
	b, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{MaxSessions: 1, EvictIdle: true})

	sid := liveSession(t, urlA)
	code, _, body := mcpPost(t, urlB, sid, clusterPing) // B builds a copy (forwarding to A)
	require.Equal(t, http.StatusOK, code, body)
	_, ok := b.store.Get(sid)
	require.True(t, ok, "B holds a copy")

	liveSession(t, urlB) // B is at its cap: its copy of sid makes room

	assert.True(t, fnet.has(sid), "the registry entry of a session B only held a copy of is gone")
	code, _, body = mcpPost(t, urlA, sid, clusterPing)
	assert.Equal(t, http.StatusOK, code, "the session ended on its owner: %s", body)
}
