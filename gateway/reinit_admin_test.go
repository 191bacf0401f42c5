package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestReinitDoesNotHoldTheAdminAPI: while a restored session's upstream
// session is being re-initialized (up to -upstream-timeout when the
// upstream is slow), the admin API still describes the session at once:
// its upstream session id is "none yet" then, not a wait.
func TestReinitDoesNotHoldTheAdminAPI(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	cfg := gateway.Config{Upstream: fake, StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1, AdminToken: "s3cret"}
	g1 := startLive(t, cfg)
	sid := g1.initialize()
	g1.stop()

	gate := testenv.NewGate("re-initialize")
	fake.OnConnect(testenv.Negotiated().After(gate))
	g2 := startLive(t, cfg)
	answered := make(chan int, 1)
	go func() {
		code, _ := g2.postJSON(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		answered <- code
	}()
	gate.WaitReached(t)

	got := make(chan int, 1)
	go func() {
		r := httptest.NewRequest("GET", "http://127.0.0.1:9090/admin/v1/sessions/"+sid, nil)
		r.Header.Set("Authorization", "Bearer s3cret")
		w := httptest.NewRecorder()
		g2.srv.AdminHandler(true).ServeHTTP(w, r)
		got <- w.Code
	}()
	waited := false
	select {
	case code := <-got:
		assert.Equal(t, http.StatusOK, code)
	case <-time.After(5 * time.Second):
		t.Error("the admin API waited for the re-initialization")
		waited = true
	}
	gate.Release()
	require.Equal(t, http.StatusOK, <-answered)
	if waited {
		<-got
	}
}
