package gateway_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestStandaloneProgressOnlyForLiveTokens (PROTOCOL.md section 2, rule 36):
// progress reaches the client only for tokens of calls in flight, none
// after the call's response. The upstream sends progress on the standalone
// stream for a call the client was already answered (and for a token it
// never sent): the client must not get it (the TypeScript SDK reports
// "Received a progress notification for an unknown token" as an error);
// progress for a call still in flight passes.
func TestStandaloneProgressOnlyForLiveTokens(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	held := testenv.NewGate("held")
	up.On("tools/call", testenv.Result(`{"content":[]}`), testenv.Stream(testenv.Pause(held), testenv.Respond(`{"content":[]}`)))
	g := startLive(t, gateway.Config{Upstream: up, DrainWindow: -1})
	t.Cleanup(held.Release) // before the gateway's shutdown, which waits for the call
	sid := g.initialize()

	code, body := g.postJSON(sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"quick","_meta":{"progressToken":"done"}}}`)
	require.Equal(t, http.StatusOK, code, body)
	slow := g.post(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"live"}}}`)
	t.Cleanup(func() { slow.Body.Close() })
	require.Equal(t, http.StatusOK, slow.StatusCode)
	held.WaitReached(t)

	resp, events := g.get(sid, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s := up.Session(1)
	s.Push(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"done","progress":1}}`)
	s.Push(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"never","progress":1}}`)
	s.Push(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"live","progress":1}}`)
	s.Push(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"marker"}}`)
	got := events.want(2)
	assert.JSONEq(t, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"live","progress":1}}`, got[0].data,
		"only the call in flight's progress reaches the client")
	assert.Contains(t, got[1].data, "marker")
}
