package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAdminShardDrainStreamReason: the streams an operator's shard drain
// ends are counted (mcpgate_streams_closed_total) and reported to hooks
// with the close reason admin, not shutdown: the gateway is not shutting
// down, and a dashboard or alert on shutdown closes must not fire.
func TestAdminShardDrainStreamReason(t *testing.T) {
	s, url := liveServer(t, Config{AdminToken: "s3cret"})
	sid := liveSession(t, url)
	liveStream(t, url, sid)
	w := adminGet(t, s.AdminHandler(true), "POST", "/admin/v1/shards/"+itoa(s.store.ShardOf(sid))+"/drain", "s3cret")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Eventually(t, func() bool {
		m := s.Metrics().StreamsClosed
		return m["admin"]+m["shutdown"] > 0
	}, 5*time.Second, 10*time.Millisecond, "the stream connection ends")
	m := s.Metrics().StreamsClosed
	assert.Equal(t, uint64(1), m["admin"], "closed by the admin API")
	assert.Zero(t, m["shutdown"], "no shutdown happened")
}
