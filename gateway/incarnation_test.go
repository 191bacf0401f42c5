package gateway_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// TestReinitKeepsServerRequestsApart: a restored session's upstream side is
// a new upstream session, which numbers its server-to-client requests from
// the start again. The client's late answer to a request of the upstream
// session that is gone (id 0 here) must not reach the new one, which asked
// something else under the same id; the answer to the new request reaches
// it under its own id (PROTOCOL.md section 3, rule 3).
func TestReinitKeepsServerRequestsApart(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	cfg := gateway.Config{Upstream: fake, StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	g1 := startLive(t, cfg)
	sid := g1.initialize()
	resp, r := g1.get(sid, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	fake.Session(1).Push(`{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}`)
	ev, ok := r.next()
	require.True(t, ok)
	require.Contains(t, ev.data, `"sampling/createMessage"`)
	g1.stop()

	g2 := startLive(t, cfg)
	resp, r = g2.get(sid, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	fake.WaitFor(t, "the re-initialization", func(v *testenv.FakeView) bool { return v.Count("connect") == 2 })
	fake.Session(2).Push(`{"jsonrpc":"2.0","id":0,"method":"roots/list"}`)
	var rootsID string
	deadline := time.Now().Add(5 * time.Second)
	for rootsID == "" && time.Now().Before(deadline) {
		ev, ok := r.next()
		require.True(t, ok, "the stream ended")
		if strings.Contains(ev.data, `"roots/list"`) {
			id, ok := jsonrpc.Lookup([]byte(ev.data), "id")
			require.True(t, ok)
			rootsID = string(id)
		}
	}
	require.NotEmpty(t, rootsID, "the new upstream's roots/list never reached the client")

	// The late answer to the old upstream's sampling request.
	code, body := g2.postJSON(sid, `{"jsonrpc":"2.0","id":0,"result":{"role":"assistant","content":{"type":"text","text":"old"},"model":"m"}}`)
	require.Equal(t, http.StatusAccepted, code, body)
	// The answer to the new upstream's roots/list.
	code, body = g2.postJSON(sid, `{"jsonrpc":"2.0","id":`+rootsID+`,"result":{"roots":[]}}`)
	require.Equal(t, http.StatusAccepted, code, body)
	fake.WaitFor(t, "the roots/list answer", func(v *testenv.FakeView) bool { return v.Sent(`"roots":[]`) })
	for _, rec := range fake.Records() {
		if rec.Op != "send" || rec.Session != 2 {
			continue
		}
		assert.NotContains(t, rec.Body, `"old"`, "the old upstream session's answer reached the new one")
		if strings.Contains(rec.Body, `"roots":[]`) {
			assert.JSONEq(t, `{"jsonrpc":"2.0","id":0,"result":{"roots":[]}}`, rec.Body, "the answer goes back under the upstream's id")
		}
	}
}
