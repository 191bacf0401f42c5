//go:build integration

package gateway_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// recorder is a Hooks implementation that records what it saw.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *recorder) SessionCreated(gateway.SessionInfo) { r.add("session+") }
func (r *recorder) SessionClosed(_ gateway.SessionInfo, why gateway.CloseReason) {
	r.add("session-:" + why.String())
}
func (r *recorder) StreamOpened(s gateway.StreamInfo) { r.add("stream+") }
func (r *recorder) StreamClosed(s gateway.StreamInfo, why gateway.CloseReason) {
	r.add("stream-:" + why.String())
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// TestLibraryHooks embeds the gateway as a library in front of the real
// reference server and checks the hooks, including the typed close reasons
// of a DELETE and of idle expiry.
func TestLibraryHooks(t *testing.T) {
	up := testenv.StartEverything(t, testenv.Env(t, "MCPGATE_EVERYTHING_SERVER"), true)
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: up.URL})
	require.NoError(t, err)
	rec := &recorder{}
	srv, err := gateway.New(gateway.Config{
		Upstream:           tr,
		Hooks:              rec,
		SessionIdleTimeout: 700 * time.Millisecond,
		SweepInterval:      100 * time.Millisecond,
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.NoError(t, <-served)
	})
	url := "http://" + ln.Addr().String() + "/mcp"

	// A session that streams an answer and ends with DELETE.
	cs := connect(t, url, nil, true)
	params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
	params.SetProgressToken("h")
	_, err = cs.CallTool(context.Background(), params)
	require.NoError(t, err)
	require.NoError(t, cs.Close())
	require.Eventually(t, func() bool {
		ev := rec.snapshot()
		return len(ev) >= 4 && ev[len(ev)-1] == "session-:client_delete"
	}, 5*time.Second, 10*time.Millisecond, "events: %v", rec.snapshot())
	ev := rec.snapshot()
	assert.Equal(t, "session+", ev[0])
	assert.Contains(t, ev, "stream+")
	assert.Contains(t, ev, "stream-:finished")

	// A session left idle expires by sweeping, with its reason.
	cs2 := connect(t, url, nil, true)
	_, err = cs2.ListTools(context.Background(), nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, e := range rec.snapshot() {
			if e == "session-:idle" {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond, "idle expiry: %v", rec.snapshot())
	m := srv.Metrics()
	assert.Equal(t, uint64(2), m.SessionsCreated)
	assert.Equal(t, uint64(1), m.SessionsClosed["client_delete"])
	assert.Equal(t, uint64(1), m.SessionsClosed["idle"])
	assert.Zero(t, m.Sessions)
	_ = cs2.Close()
}
