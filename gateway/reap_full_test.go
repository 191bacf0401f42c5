//go:build linux

package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

const reapInit = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

const reapInitAnswer = `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"sh","version":"1"}}}`

// stdioUpstream opens a session on a stdio upstream whose child answers
// initialize and then runs until its stdin closes; ended reports that the
// child was reaped.
func stdioUpstream(t *testing.T) (up upstream.Session, ended func() bool) {
	t.Helper()
	tr, err := upstream.NewStdio(upstream.StdioConfig{
		Command: "/bin/sh",
		Args:    []string{"-c", "read -r l; echo '" + reapInitAnswer + "'; while read -r l; do :; done"},
		Logger:  slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	up, _, err = tr.Connect(context.Background(), []byte(reapInit))
	require.NoError(t, err)
	require.NotNil(t, up)
	require.EqualValues(t, 1, tr.Stats().ProcessesLive)
	return up, func() bool { return tr.Stats().ProcessesLive == 0 }
}

// legacyUpstream opens a session on a legacy HTTP+SSE upstream that keeps
// its SSE stream open until the gateway closes it; ended reports that the
// stream was closed.
func legacyUpstream(t *testing.T) (up upstream.Session, ended func() bool) {
	t.Helper()
	var open atomic.Int32
	events := make(chan string, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		open.Add(1)
		defer open.Add(-1)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: endpoint\ndata: /messages?sessionId=1\n\n")
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-events:
				fmt.Fprintf(w, "event: message\ndata: %s\n\n", ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /messages", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"initialize"`) {
			events <- reapInitAnswer
		}
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tr, err := upstream.NewLegacySSE(upstream.LegacySSEConfig{URL: srv.URL + "/sse", Timeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	up, _, err = tr.Connect(context.Background(), []byte(reapInit))
	require.NoError(t, err)
	require.NotNil(t, up)
	require.EqualValues(t, 1, open.Load())
	return up, func() bool { return open.Load() == 0 }
}

// fillReapQueue fills the reaper's queue with sessions that no reaper
// takes (none is started for them); the shutdown ends them.
func fillReapQueue(s *Server) {
	for len(s.reapq) < cap(s.reapq) {
		s.reapq <- &session{id: newSessionID(), up: &stubSession{}}
	}
}

// TestReapQueueFullStillEndsUpstream: a session that expires or is evicted
// while the reaper's queue is full still has its upstream side ended when
// nothing else would end it (a stdio child, a legacy HTTP+SSE stream),
// without the sweeper or the evictor waiting for it; only a Streamable HTTP
// upstream session, which expires upstream by itself, is left to do so.
func TestReapQueueFullStillEndsUpstream(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   func(*testing.T) (upstream.Session, func() bool)
		end  func(*testing.T, *Server, *session)
	}{
		{"stdio/expiry", stdioUpstream, expireNow},
		{"stdio/eviction", stdioUpstream, evictNow},
		{"legacy/expiry", legacyUpstream, expireNow},
		{"legacy/eviction", legacyUpstream, evictNow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, ended := tc.up(t)
			s := newTestServer(t, Config{SweepInterval: 5 * time.Millisecond, SessionIdleTimeout: time.Second,
				MaxSessions: 1, EvictIdle: true})
			fillReapQueue(s)
			id := newSessionID()
			sess := &session{id: id, withStreams: s.streamSet(id), up: up}
			sess.created = s.clock.Now()
			tc.end(t, s, sess)
			require.Eventually(t, ended, 5*time.Second, 5*time.Millisecond,
				"the upstream side of the session ended although the reaper's queue was full")
			assert.Zero(t, s.Metrics().UpstreamSkipped, "nothing was left to expire upstream")
			assert.Equal(t, cap(s.reapq), len(s.reapq), "the queue was full throughout")
		})
	}
}

// expireNow stores sess, idle for an hour, and waits until the sweeper
// ended it.
func expireNow(t *testing.T, s *Server, sess *session) {
	sess.lastActive.Store(s.clock.Now() - int64(time.Hour))
	require.NoError(t, s.storeSession(sess))
	require.Eventually(t, func() bool { return s.store.Len() == 0 }, 5*time.Second, 5*time.Millisecond, "the session expired")
}

// evictNow stores sess and evicts it, as an initialize at the cap does.
func evictNow(t *testing.T, s *Server, sess *session) {
	sess.lastActive.Store(s.clock.Now())
	require.NoError(t, s.storeSession(sess))
	require.True(t, s.evictIdle())
	require.Zero(t, s.store.Len())
}

// TestReapQueueFullSkipsSelfExpiring: with the reaper's queue full, an
// upstream session that expires upstream by itself (Streamable HTTP; here
// a stub) is left to do so, counted, and not closed by the sweeper.
func TestReapQueueFullSkipsSelfExpiring(t *testing.T) {
	s := newTestServer(t, Config{SweepInterval: 5 * time.Millisecond, SessionIdleTimeout: time.Second})
	fillReapQueue(s)
	up := &stubSession{}
	id := newSessionID()
	sess := &session{id: id, withStreams: s.streamSet(id), up: up}
	sess.created = s.clock.Now()
	expireNow(t, s, sess)
	assert.Equal(t, uint64(1), s.Metrics().UpstreamSkipped)
	assert.Zero(t, up.closed.Load())
}

// TestReapQueueFullLogsSparingly: a mass expiry past the reaper's queue
// logs one line per reapLogEvery with the number of sessions since, not one
// line per session.
func TestReapQueueFullLogsSparingly(t *testing.T) {
	var buf bytes.Buffer
	s := newTestServer(t, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	fillReapQueue(s)
	for range 500 {
		id := newSessionID()
		s.reapLater(&session{id: id, withStreams: s.streamSet(id), up: &stubSession{}})
	}
	assert.Equal(t, 1, strings.Count(buf.String(), "left to expire upstream"), buf.String())
	assert.Equal(t, uint64(500), s.Metrics().UpstreamSkipped)
	s.reapSkipped.lastLog.Add(-int64(reapLogEvery)) // as if the interval were over
	id := newSessionID()
	s.reapLater(&session{id: id, withStreams: s.streamSet(id), up: &stubSession{}})
	assert.Equal(t, 2, strings.Count(buf.String(), "left to expire upstream"))
	assert.Contains(t, buf.String(), "since_last_line=500")
}
