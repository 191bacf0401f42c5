package gateway_test

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestStateReinitializesOnFirstUse: a restored session whose upstream side
// must be re-initialized (a stdio child died with the gateway) is
// re-initialized on its first use, not at start: a restart opens no
// upstream session (starts no process) for a client that does not come
// back, even when the session had a standalone stream. The first request
// re-initializes it, and its standalone stream is fed from then on.
func TestStateReinitializesOnFirstUse(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	cfg := gateway.Config{Upstream: fake, StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	g1 := startLive(t, cfg)
	sid := g1.initialize()
	resp, _ := g1.get(sid, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	fake.WaitFor(t, "the standalone stream opened", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })
	g1.stop()

	g2 := startLive(t, cfg)
	require.Equal(t, 1, g2.srv.Metrics().Sessions)
	time.Sleep(300 * time.Millisecond) // what the restart does by itself
	for _, rec := range fake.Records() {
		assert.NotEqual(t, 2, rec.Session, "nothing reached a new upstream session before the session's first use: %+v", rec)
	}

	code, body := g2.postJSON(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	require.Equal(t, http.StatusOK, code, body)
	fake.WaitFor(t, "the re-initialized session's standalone stream", func(v *testenv.FakeView) bool {
		return v.Count("connect") == 2 && v.Count("listen") == 2
	})
}
