package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestClusterTakeoverReplaysSubscriptionsMadeElsewhere: a stdio-like
// session's resource subscription, made through one node and written to
// the registry by its owner, survives another node's activity write of its
// own copy (which never saw the subscription) and the owner's death: the
// node that takes the session over re-initializes the upstream side and
// replays the subscription, so the client keeps getting its updates.
func TestClusterTakeoverReplaysSubscriptionsMadeElsewhere(t *testing.T) {
	fnet := newFakeNet()
	a, urlA := fakeClusterServer(t, fnet, "a", testenv.NewFakeUpstream(t), Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	upC := testenv.NewFakeUpstream(t)
	c, urlC := fakeClusterServer(t, fnet, "c", upC, Config{})
	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

	sid := liveSession(t, urlA)
	code, _, body := mcpPost(t, urlC, sid, list) // C holds a copy
	require.Equal(t, http.StatusOK, code, body)
	code, _, body = mcpPost(t, urlB, sid, `{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"file:///watched"}}`)
	require.Equal(t, http.StatusOK, code, body)

	// Each node's activity loop writes the entry: the owner first, then C.
	ctx := context.Background()
	sessA, ok := a.store.Get(sid)
	require.True(t, ok)
	a.saveActivity(ctx, sessA, time.Now().UnixNano())
	sessC, ok := c.store.Get(sid)
	require.True(t, ok)
	c.saveActivity(ctx, sessC, time.Now().UnixNano()+int64(time.Second))

	fnet.crash("a")
	// The first message after the crash meets the dead owner (C claims the
	// session: 502); the next one re-initializes the upstream side on C.
	mcpPost(t, urlC, sid, list)
	code, _, body = mcpPost(t, urlC, sid, list)
	require.Equal(t, http.StatusOK, code, body)
	var replayed bool
	for _, r := range upC.Records() {
		if r.Op == "send" && strings.Contains(r.Body, "resources/subscribe") && strings.Contains(r.Body, "file:///watched") {
			replayed = true
		}
	}
	assert.True(t, replayed, "the subscription was not replayed on the new owner's upstream session")
}
