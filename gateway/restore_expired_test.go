package gateway_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// TestRestoreDropsSessionsExpiredWhileDown: a session whose idle timeout
// or maximum age passed while the gateway was down is not restored. Its
// client gets 404, as it would have from a gateway that had kept running,
// instead of reviving the session with its next request (which happens
// when the request comes before the first expiry check, up to 30 s after
// the start, and then resets the idle clock). Their upstream sessions,
// which the shutdown kept for the restart, are ended.
func TestRestoreDropsSessionsExpiredWhileDown(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	cfg := gateway.Config{Upstream: fake.Resumable(), StateFile: filepath.Join(t.TempDir(), "state"),
		DrainWindow: -1, SessionIdleTimeout: time.Hour, SessionMaxAge: 24 * time.Hour}
	g1 := startLive(t, cfg)
	idle, old, fresh := g1.initialize(), g1.initialize(), g1.initialize()
	g1.stop()

	// The gateway was down for a while: rewrite the saved times as they
	// would be after two hours (idle) and after 25 hours (max age).
	now := time.Now()
	n := rewriteState(t, cfg.StateFile, func(rec *sessionrec.Record) {
		switch rec.ID {
		case idle:
			rec.LastActive = now.Add(-2 * time.Hour).UnixNano()
		case old:
			rec.Created = now.Add(-25 * time.Hour).UnixNano()
		}
	})
	require.Equal(t, 3, n)

	closes := func() (n int) {
		for _, r := range fake.Records() {
			if r.Op == "close" {
				n++
			}
		}
		return n
	}
	require.Zero(t, closes(), "the shutdown kept the upstream sessions for the restart")
	g2 := startLive(t, cfg)
	assert.Equal(t, 1, g2.srv.Metrics().Sessions, "only the session that had not expired is restored")
	// The shutdown left their upstream sessions open for the restart:
	// they are ended, not left to the upstream's own timeout.
	assert.Eventually(t, func() bool { return closes() == 2 }, 5*time.Second, 10*time.Millisecond,
		"the expired sessions' upstream sessions are ended")
	for name, sid := range map[string]string{"idle past its timeout": idle, "past its maximum age": old} {
		code, body := g2.postJSON(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		assert.Equal(t, http.StatusNotFound, code, "%s: %s", name, body)
	}
	code, body := g2.postJSON(fresh, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	assert.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 2, closes(), "the restored session's upstream session is open")
}

// rewriteState rewrites the records of a saved state file with edit, as
// another version or a gateway that was down for a while would have
// written them, and returns how many there are.
func rewriteState(t *testing.T, path string, edit func(*sessionrec.Record)) int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	_, recs, err := sessionrec.ReadFile(f)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := sessionrec.NewWriter(&buf, time.Now().UnixNano())
	require.NoError(t, err)
	for _, rec := range recs {
		edit(rec)
		require.NoError(t, w.Write(rec))
	}
	require.NoError(t, w.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	return len(recs)
}
