package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// stubSession is an upstream session that answers nothing and counts
// Close calls.
type stubSession struct {
	id     string
	closed atomic.Int32
}

func (s *stubSession) ID() string      { return s.id }
func (s *stubSession) Version() string { return "2025-11-25" }
func (s *stubSession) Send(context.Context, []byte) (*upstream.Reply, error) {
	return &upstream.Reply{Accepted: true}, nil
}
func (s *stubSession) Listen(context.Context) (upstream.Stream, error) {
	return nil, upstream.ErrNotSupported
}
func (s *stubSession) Close(context.Context) error { s.closed.Add(1); return nil }

// addSession stores a session with a stub upstream session.
func addSession(t testing.TB, s *Server, principal, version string) (*session, *stubSession) {
	t.Helper()
	id := newSessionID()
	up := &stubSession{id: "up-" + id[:6]}
	sess := &session{id: id, version: version, principal: principal, up: up,
		withStreams: s.streamSet(id)}
	t.Cleanup(sess.cancel)
	sess.created = s.clock.Now()
	sess.lastActive.Store(s.clock.Now())
	require.NoError(t, s.storeSession(sess))
	return sess, up
}

func adminGet(t testing.TB, h http.Handler, method, path, token string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:9090"+path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAdminAPI(t *testing.T) {
	s := newTestServer(t, Config{AdminToken: "s3cret", Shards: 4})
	h := s.AdminHandler(true)
	a, upA := addSession(t, s, "alice", "2025-11-25")
	b, _ := addSession(t, s, "bob", "2025-06-18")
	_, _ = addSession(t, s, "alice", "2025-03-26")

	t.Run("token required", func(t *testing.T) {
		for _, tok := range []string{"", "wrong", "s3cret "} {
			w := adminGet(t, h, "GET", "/admin/v1/sessions", tok)
			if tok == "s3cret " { // surrounding space is trimmed: the right token
				assert.Equal(t, http.StatusOK, w.Code)
				continue
			}
			assert.Equal(t, http.StatusUnauthorized, w.Code, "token %q", tok)
			assert.Contains(t, w.Header().Get("WWW-Authenticate"), "Bearer")
		}
		none := newTestServer(t, Config{})
		w := adminGet(t, none.AdminHandler(true), "GET", "/admin/v1/config", "anything")
		assert.Equal(t, http.StatusUnauthorized, w.Code, "no token configured: the API is closed")
	})
	t.Run("list, filter, page", func(t *testing.T) {
		var page struct {
			Sessions []adminSession `json:"sessions"`
			Next     string         `json:"next"`
			Matching int            `json:"matching"`
		}
		w := adminGet(t, h, "GET", "/admin/v1/sessions?principal=alice", "s3cret")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &page))
		assert.Equal(t, 2, page.Matching)
		for _, x := range page.Sessions {
			assert.Equal(t, "alice", x.Principal)
		}
		w = adminGet(t, h, "GET", "/admin/v1/sessions?version=2025-06-18", "s3cret")
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &page))
		require.Len(t, page.Sessions, 1)
		assert.Equal(t, b.id, page.Sessions[0].ID)

		var ids []string
		after := ""
		for range 10 {
			page.Next = "" // omitted on the last page
			w := adminGet(t, h, "GET", "/admin/v1/sessions?limit=1&after="+after, "s3cret")
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &page))
			for _, x := range page.Sessions {
				ids = append(ids, x.ID)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		assert.Len(t, ids, 3, "three pages of one")
		assert.IsIncreasing(t, ids)

		assert.Equal(t, http.StatusBadRequest, adminGet(t, h, "GET", "/admin/v1/sessions?limit=0", "s3cret").Code)
		assert.Equal(t, http.StatusBadRequest, adminGet(t, h, "GET", "/admin/v1/sessions?idle_min=x", "s3cret").Code)
		w = adminGet(t, h, "GET", "/admin/v1/sessions?idle_min=1h", "s3cret")
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &page))
		assert.Zero(t, page.Matching, "no session idle that long")
	})
	t.Run("inspect", func(t *testing.T) {
		st, _ := s.newStream(a, false, false)
		_, _, err := st.ring.Push(0, 0, []byte(`{"jsonrpc":"2.0","method":"notifications/message"}`))
		require.NoError(t, err)
		w := adminGet(t, h, "GET", "/admin/v1/sessions/"+a.id, "s3cret")
		require.Equal(t, http.StatusOK, w.Code)
		var d adminSessionDetail
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &d))
		assert.Equal(t, "alice", d.Principal)
		assert.Equal(t, upA.id, d.UpstreamSession)
		require.Len(t, d.StreamList, 1)
		assert.Equal(t, "answer", d.StreamList[0].Kind)
		assert.Equal(t, "waiting", d.StreamList[0].State)
		assert.Equal(t, 1, d.StreamList[0].Events)
		assert.Equal(t, uint64(1), d.StreamList[0].LastSeq)
		assert.Equal(t, http.StatusNotFound, adminGet(t, h, "GET", "/admin/v1/sessions/nope", "s3cret").Code)
	})
	t.Run("end one: its client gets 404", func(t *testing.T) {
		w := adminGet(t, h, "DELETE", "/admin/v1/sessions/"+b.id, "s3cret")
		assert.Equal(t, http.StatusNoContent, w.Code)
		ctx := request(s, fasthttp.MethodGet, "127.0.0.1:8080", map[string]string{"Accept": "text/event-stream", "Mcp-Session-Id": b.id})
		assert.Equal(t, fasthttp.StatusNotFound, ctx.Response.StatusCode())
		assert.Equal(t, uint64(1), s.Metrics().SessionsClosed["admin"])
	})
	t.Run("drain a shard", func(t *testing.T) {
		shard := s.store.ShardOf(a.id)
		w := adminGet(t, h, "POST", "/admin/v1/shards/"+itoa(shard)+"/drain", "s3cret")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		_, ok := s.store.Get(a.id)
		assert.False(t, ok)
		assert.Equal(t, http.StatusBadRequest, adminGet(t, h, "POST", "/admin/v1/shards/99/drain", "s3cret").Code)
	})
	t.Run("config is redacted", func(t *testing.T) {
		w := adminGet(t, h, "GET", "/admin/v1/config", "s3cret")
		require.Equal(t, http.StatusOK, w.Code)
		assert.NotContains(t, w.Body.String(), "s3cret")
		assert.Contains(t, w.Body.String(), `"admin_token": "(redacted)"`)
		assert.Contains(t, w.Body.String(), `"ring_size": 256`)
		var cfg map[string]any
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &cfg))
		for _, k := range []string{"authentication", "rate_limit", "max_sessions_per_principal", "max_conns_per_ip",
			"evict_idle", "read_header_timeout", "max_header_bytes", "whole_answer_window", "upstream_era", "legacy_sse", "cluster"} {
			assert.Contains(t, cfg, k, "the configuration view shows %s", k)
		}
		assert.Equal(t, false, cfg["authentication"])
	})
	t.Run("methods, hosts, origins", func(t *testing.T) {
		w := adminGet(t, h, "POST", "/metrics", "")
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
		assert.Contains(t, w.Header().Get("Allow"), "GET")
		r := httptest.NewRequest("GET", "http://evil.example/metrics", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		assert.Equal(t, http.StatusForbidden, rec.Code, "DNS rebinding: a foreign Host")
		r = httptest.NewRequest("GET", "http://127.0.0.1:9090/metrics", nil)
		r.Header.Set("Origin", "http://evil.example")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		assert.Equal(t, http.StatusForbidden, rec.Code, "a cross-origin read")
		r.Header.Set("Origin", "http://127.0.0.1:9090")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		assert.Equal(t, http.StatusOK, rec.Code, "the page's own origin")
	})
	t.Run("page", func(t *testing.T) {
		w := adminGet(t, h, "GET", "/admin/", "")
		assert.Equal(t, http.StatusOK, w.Code)
		assert.Contains(t, w.Body.String(), "<title>mcpgate admin</title>")
		assert.Contains(t, w.Header().Get("Content-Security-Policy"), "default-src 'none'")
	})
}

// TestHealthThroughDrain: /healthz stays 200; /readyz is 200 while the
// upstream answers probes, and 503 once the gateway drains.
func TestHealthThroughDrain(t *testing.T) {
	probe := &probeTransport{}
	s, err := New(Config{Upstream: probe, DrainWindow: -1})
	require.NoError(t, err)
	h := s.AdminHandler(true)
	assert.Equal(t, http.StatusOK, adminGet(t, h, "GET", "/healthz", "").Code)
	assert.Equal(t, http.StatusOK, adminGet(t, h, "GET", "/readyz", "").Code)
	probe.down.Store(true)
	forgetUpstream(s)
	w := adminGet(t, h, "GET", "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Contains(t, w.Body.String(), "upstream unreachable")
	probe.down.Store(false)
	forgetUpstream(s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	w = adminGet(t, h, "GET", "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Contains(t, w.Body.String(), "draining")
	assert.Equal(t, http.StatusOK, adminGet(t, h, "GET", "/healthz", "").Code)
}

// forgetUpstream drops the cached probe and the last successful exchange,
// so the next readiness check probes again.
func forgetUpstream(s *Server) {
	s.probeMu.Lock()
	s.probeAt = 0
	s.probeMu.Unlock()
	s.upstreamOK.Store(0)
}

type probeTransport struct {
	nopTransport
	down atomic.Bool
}

func (p *probeTransport) Probe(context.Context) error {
	if p.down.Load() {
		return upstream.ErrUnavailable
	}
	return nil
}

// TestMetricsExposition: the exposition parses with the library's own
// parser and carries the gateway's families; label values a library user
// registers with quotes and newlines come back intact.
func TestMetricsExposition(t *testing.T) {
	s := newTestServer(t, Config{})
	_, _ = addSession(t, s, "", "2025-11-25")
	odd := `a "quoted" value` + "\nwith a newline\\"
	c := newOddCollector(odd)
	s.Registry().MustRegister(c)
	w := adminGet(t, s.AdminHandler(true), "GET", "/metrics", "")
	require.Equal(t, http.StatusOK, w.Code)
	body, err := io.ReadAll(w.Body)
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err, "the exposition parses")
	for _, name := range []string{"mcpgate_sessions", "mcpgate_sessions_closed_total", "mcpgate_request_duration_seconds",
		"mcpgate_shard_sessions", "mcpgate_streams", "mcpgate_ring_fill_ratio", "mcpgate_upstream_errors_total",
		"go_goroutines", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes"} {
		assert.Contains(t, fams, name)
	}
	assert.Equal(t, 1.0, fams["mcpgate_sessions"].GetMetric()[0].GetGauge().GetValue())
	got := fams["odd_metric"].GetMetric()[0].GetLabel()[0].GetValue()
	assert.Equal(t, odd, got, "escaped on the way out, intact on the way back")
}

// ctxClose is an upstream session whose Close waits until released and
// reports whether its context ended first.
type ctxClose struct {
	stubSession
	entered chan struct{}
	release chan struct{}
	cut     chan error
}

func (c *ctxClose) Close(ctx context.Context) error {
	close(c.entered)
	select {
	case <-c.release:
		c.cut <- nil
	case <-ctx.Done():
		c.cut <- ctx.Err()
	}
	return nil
}

// TestAdminEndSessionOutlivesTheRequest: the admin API's DELETE of a
// session ends its upstream side even when the admin client goes away (its
// request's context ends) while the upstream close runs.
func TestAdminEndSessionOutlivesTheRequest(t *testing.T) {
	s := newTestServer(t, Config{AdminToken: "s3cret"})
	h := s.AdminHandler(true)
	up := &ctxClose{entered: make(chan struct{}), release: make(chan struct{}), cut: make(chan error, 1)}
	id := newSessionID()
	sess := &session{id: id, version: "2025-11-25", up: up, withStreams: s.streamSet(id)}
	sess.created = s.clock.Now()
	sess.lastActive.Store(s.clock.Now())
	require.NoError(t, s.storeSession(sess))

	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequest("DELETE", "http://127.0.0.1:9090/admin/v1/sessions/"+id, nil).WithContext(ctx)
	r.Header.Set("Authorization", "Bearer s3cret")
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { defer close(done); h.ServeHTTP(w, r) }()
	select {
	case <-up.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream close never began")
	}
	cancel() // the admin client disconnects
	time.Sleep(50 * time.Millisecond)
	close(up.release)
	select {
	case err := <-up.cut:
		assert.NoError(t, err, "the upstream close ran to its end, not cut by the admin client's going away")
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream close never ended")
	}
	<-done
	assert.Equal(t, http.StatusNoContent, w.Code)
	_, ok := s.store.Get(id)
	assert.False(t, ok, "the session ended")
	assert.Equal(t, uint64(1), s.Metrics().SessionsClosed["admin"])
}
