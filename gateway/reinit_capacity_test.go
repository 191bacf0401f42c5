package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestStateReinitAtCapacity: a restored session whose upstream session is
// re-initialized on first use finds the upstream at its process cap
// (-max-processes). The client gets what an initialize at the cap gets, 503
// with Retry-After and a JSON-RPC error under its id, not 502; the session
// stays, and the next request re-initializes it and is answered.
func TestStateReinitAtCapacity(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	cfg := gateway.Config{Upstream: fake, StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	g1 := startLive(t, cfg)
	sid := g1.initialize()
	g1.stop()

	fake.OnConnect(testenv.Fail(fmt.Errorf("%w: 1 processes running (-max-processes)", upstream.ErrAtCapacity)), testenv.Negotiated())
	g2 := startLive(t, cfg)
	require.Equal(t, 1, g2.srv.Metrics().Sessions)

	resp := g2.post(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, string(body), `"id":2`)
	assert.Contains(t, string(body), `"code":-32000`)
	assert.Equal(t, 1, g2.srv.Metrics().Sessions, "the session stays")

	code, out := g2.postJSON(sid, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	require.Equal(t, http.StatusOK, code, out)
	assert.Contains(t, out, `"tools":[]`)
	connects := 0
	for _, rec := range fake.Records() {
		if rec.Op == "connect" {
			connects++
		}
	}
	assert.Equal(t, 3, connects, "the initialize, the refused re-initialization and the one that succeeded")
}
