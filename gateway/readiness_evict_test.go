package gateway_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestReadyAtCapWithEvictIdle: with EvictIdle a gateway at MaxSessions
// still takes new sessions (it evicts an idle one), so the cap must not
// make /readyz send traffic elsewhere.
func TestReadyAtCapWithEvictIdle(t *testing.T) {
	g := startLive(t, gateway.Config{Upstream: testenv.NewFakeUpstream(t), MaxSessions: 1, EvictIdle: true,
		UpstreamEra: gateway.UpstreamEraSession, DrainWindow: -1})
	g.initialize()
	ok, reasons := g.srv.Ready(context.Background())
	assert.True(t, ok, "%v", reasons)
	g.initialize() // and indeed a new session is taken
	require.Equal(t, 1, g.srv.Metrics().Sessions)
}
