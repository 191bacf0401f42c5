package gateway

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestClusterNodeAtCapDoesNotClaimWhatItCannotHold: a node at its session
// cap that is asked for a session whose owner died answers 503, and leaves
// the session to a node that can hold it: it must not take the session
// over (becoming its owner in the registry) without holding it, after
// which every other node forwarding to it learns "no such session" and
// ends the session everywhere.
func TestClusterNodeAtCapDoesNotClaimWhatItCannotHold(t *testing.T) {
	fnet := newFakeNet()
	_, urlA := fakeClusterServer(t, fnet, "a", testenv.NewFakeUpstream(t), Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{MaxSessions: 1})
	_, urlC := fakeClusterServer(t, fnet, "c", testenv.NewFakeUpstream(t), Config{})
	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

	sid := liveSession(t, urlA)
	liveSession(t, urlB) // B is at its cap
	fnet.crash("a")

	code, _, body := mcpPost(t, urlB, sid, list)
	require.Equal(t, http.StatusServiceUnavailable, code, body)

	code, _, body = mcpPost(t, urlC, sid, list)
	assert.NotEqual(t, http.StatusNotFound, code, "the session was lost: %s", body)
	assert.True(t, fnet.has(sid), "the session left the registry")
	code, _, body = mcpPost(t, urlC, sid, list)
	assert.Equal(t, http.StatusOK, code, "%s", body)
}

// TestClusterInitializeRefusedAtCapLeavesNoEntry: two initializes that both
// pass the cap's first check reach the store together; the one the store
// refuses (503) must not leave its registry entry behind, where every node
// would take it for a live session until its TTL.
func TestClusterInitializeRefusedAtCapLeavesNoEntry(t *testing.T) {
	fnet := newFakeNet()
	first, second := testenv.NewGate("first initialize"), testenv.NewGate("second initialize")
	up := testenv.NewFakeUpstream(t).OnConnect(testenv.Negotiated().After(first), testenv.Negotiated().After(second))
	_, url := fakeClusterServer(t, fnet, "a", up, Config{MaxSessions: 1})

	codes := make(chan int, 2)
	for range 2 {
		go func() {
			code, _, _ := mcpPostNoFail(url, "", liveInit)
			codes <- code
		}()
	}
	first.WaitReached(t)
	second.WaitReached(t)
	first.Release()
	second.Release()
	got := []int{<-codes, <-codes}
	assert.ElementsMatch(t, []int{http.StatusOK, http.StatusServiceUnavailable}, got)
	assert.Equal(t, 1, fnet.entryCount(), "the refused session's entry stayed in the registry")
}
