package gateway

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// stdioKindSession is a stub upstream session of the stdio transport.
type stdioKindSession struct{ stubSession }

func (*stdioKindSession) Kind() string { return upstream.KindStdio }

// TestAdminLegacySessionUpstreamKind: a legacy HTTP+SSE client's session
// over a stdio upstream is listed with upstream_kind stdio and found by
// the upstream=stdio filter, like any other session on that upstream (its
// upstream session sits behind the legacy session's lazy binding).
func TestAdminLegacySessionUpstreamKind(t *testing.T) {
	s := newTestServer(t, Config{AdminToken: "s3cret"})
	id := newSessionID()
	l := &legacyState{}
	require.True(t, l.up.set(&stdioKindSession{stubSession{id: "up-1"}}))
	v := "2025-06-18"
	l.version.Store(&v)
	sess := &session{id: id, up: &l.up, legacy: l, withStreams: s.streamSet(id)}
	t.Cleanup(sess.cancel)
	sess.created = s.clock.Now()
	sess.lastActive.Store(s.clock.Now())
	require.NoError(t, s.storeSession(sess))

	var page struct {
		Sessions []adminSession `json:"sessions"`
		Matching int            `json:"matching"`
	}
	w := adminGet(t, s.AdminHandler(true), "GET", "/admin/v1/sessions?upstream=stdio", "s3cret")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &page))
	assert.Equal(t, 1, page.Matching, "the upstream=stdio filter finds it")
	w = adminGet(t, s.AdminHandler(true), "GET", "/admin/v1/sessions/"+id, "s3cret")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var d adminSessionDetail
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &d))
	assert.Equal(t, upstream.KindStdio, d.Upstream)
}
