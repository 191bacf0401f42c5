package gateway

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AdminHandler serves the operator's endpoints, for a listener of their
// own (cmd/gateway's -admin-listen), never the MCP listener:
//
//	GET /metrics              Prometheus metrics (MetricsHandler)
//	GET /healthz              200 while the process runs
//	GET /readyz               200 when ready for traffic, else 503 with the reasons
//	    /debug/pprof/...      the runtime profiles
//	    /admin/v1/...         the admin API (a bearer token: Config.AdminToken)
//	GET /admin/               the admin page
//
// loopback says whether that listener is on a loopback address: then, as
// on the MCP endpoint, only loopback Host names are accepted, and a
// browser's cross-origin request is refused everywhere, so a page on
// another site cannot read the metrics or the API through DNS rebinding.
// Other methods than the ones listed get 405 with Allow.
func (s *Server) AdminHandler(loopback bool) http.Handler {
	// On loopback, the loopback names only: AllowedHosts is the MCP
	// endpoint's (a public name, or "*"), never the admin listener's.
	var hosts []string
	if !loopback {
		hosts = []string{"*"} // the admin listener is the operator's: any name it is reached by
	}
	policy := newOriginPolicy(nil, hosts, loopback)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol) // how pprof tools look addresses up
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	api := http.NewServeMux()
	api.HandleFunc("GET /admin/v1/sessions", s.apiListSessions)
	api.HandleFunc("GET /admin/v1/sessions/{id}", s.apiSession)
	api.HandleFunc("DELETE /admin/v1/sessions/{id}", s.apiEndSession)
	api.HandleFunc("POST /admin/v1/shards/{shard}/drain", s.apiDrainShard)
	api.HandleFunc("GET /admin/v1/config", s.apiConfig)
	api.HandleFunc("GET /admin/v1/stats", s.apiStats)
	api.HandleFunc("/admin/v1/", func(w http.ResponseWriter, r *http.Request) {
		apiNoRoute(api, w, r)
	})
	mux.Handle("/admin/v1/", s.adminAuth(api))
	mux.HandleFunc("GET /admin/{$}", servePage)
	mux.HandleFunc("GET /admin", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusMovedPermanently)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := []byte(r.Host)
		if !policy.hostAllowed(host) {
			apiError(w, http.StatusForbidden, "Forbidden: Host not allowed")
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
			apiError(w, http.StatusForbidden, "Forbidden: cross-origin request")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether an Origin header names the host the request
// was sent to (the admin page's own requests).
func sameOrigin(origin, host string) bool {
	rest, ok := strings.CutPrefix(strings.ToLower(origin), "http://")
	if !ok {
		rest, ok = strings.CutPrefix(strings.ToLower(origin), "https://")
	}
	return ok && rest == strings.ToLower(host)
}

// apiError answers an admin request with a JSON error.
func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// apiNoRoute answers an admin API request no route took, in JSON like
// every other API error: 405 with Allow when another method has a route
// for the path, else 404.
func apiNoRoute(api *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		alt := *r
		alt.Method = m
		if _, p := api.Handler(&alt); p != "" && p != "/admin/v1/" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) == 0 {
		apiError(w, http.StatusNotFound, "Not Found: no such admin API endpoint")
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	apiError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
}

func apiJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// adminAuth requires the admin bearer token, compared in constant time
// (of hashes, so the length does not leak either). Without a configured
// token the API refuses every request. Failures count against the client
// address as on the endpoint (limits.go), in a budget of their own: past
// it, 429 with Retry-After before the token is compared.
func (s *Server) adminAuth(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var addr netip.Addr
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err == nil {
			addr = addrKey(ap.Addr())
		}
		if blocked, wait := s.authBlocked(adminFailures, addr, err == nil); blocked {
			s.authRefused("admin", addr, wait)
			retryAfter(w.Header(), wait)
			apiError(w, http.StatusTooManyRequests, "Too Many Requests: too many failed authentications from this address")
			return
		}
		// The scheme is case-insensitive (RFC 9110 section 11.1).
		h := r.Header.Get("Authorization")
		ok := len(h) > len("Bearer ") && strings.EqualFold(h[:len("Bearer ")], "Bearer ")
		tok := ""
		if ok {
			tok = h[len("Bearer "):]
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if s.cfg.AdminToken == "" || !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcpgate admin"`)
			msg := "Unauthorized: the admin API needs the bearer token of -admin-token-file"
			if s.cfg.AdminToken == "" {
				msg = "Unauthorized: no admin token is configured (-admin-token-file)"
			}
			s.authFailed(adminFailures, addr, err == nil)
			apiError(w, http.StatusUnauthorized, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readiness is the state /readyz reports.
type readiness struct {
	Ready    bool     `json:"ready"`
	Reasons  []string `json:"reasons,omitempty"`
	Sessions int      `json:"sessions"`
	Max      int      `json:"max_sessions"`
}

// Ready reports whether the gateway should get traffic: not draining,
// under the session cap, and its upstream reachable recently (an exchange
// succeeded in the last readyUpstreamWindow, or a probe does now).
func (s *Server) Ready(ctx context.Context) (bool, []string) {
	var reasons []string
	if s.draining.Load() {
		reasons = append(reasons, "draining")
	}
	if s.store.Len() >= s.cfg.MaxSessions && !s.cfg.EvictIdle {
		// With EvictIdle the cap is the steady state: a new session
		// still fits, in place of the least recently active idle one.
		reasons = append(reasons, "session cap reached")
	}
	if err := s.upstreamReachable(ctx); err != nil {
		reasons = append(reasons, "upstream unreachable: "+err.Error())
	}
	return len(reasons) == 0, reasons
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	ok, reasons := s.Ready(ctx)
	if !ok {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(readiness{Reasons: reasons, Sessions: s.store.Len(), Max: s.cfg.MaxSessions})
		return
	}
	apiJSON(w, readiness{Ready: true, Sessions: s.store.Len(), Max: s.cfg.MaxSessions})
}

// SessionInfo as the admin API lists it.
type adminSession struct {
	ID            string    `json:"id"`
	Principal     string    `json:"principal"`
	Version       string    `json:"protocol_version"`
	Upstream      string    `json:"upstream_kind"`
	Created       time.Time `json:"created"`
	LastActive    time.Time `json:"last_active"`
	IdleSeconds   float64   `json:"idle_seconds"`
	Busy          int32     `json:"busy"`
	Streams       int       `json:"streams"`
	CallsInFlight int       `json:"calls_in_flight"`
}

type adminStream struct {
	ID        uint64 `json:"id"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	Events    int    `json:"ring_events"`
	Bytes     int    `json:"ring_bytes"`
	Capacity  int    `json:"ring_capacity"`
	MaxBytes  int    `json:"ring_max_bytes"`
	LastSeq   uint64 `json:"last_seq"`
	Delivered uint64 `json:"delivered_seq"`
	Pushed    uint64 `json:"pushed"`
	Dropped   uint64 `json:"dropped"`
	Coalesced uint64 `json:"coalesced"`
	Skipped   uint64 `json:"skipped"`
}

type adminSessionDetail struct {
	adminSession
	UpstreamSession string        `json:"upstream_session_id"`
	UpstreamVersion string        `json:"upstream_protocol_version"`
	Shard           int           `json:"shard"`
	StreamList      []adminStream `json:"stream_list"`
}

func (s *Server) describe(sess *session, now int64) adminSession {
	sess.mu.Lock()
	n, calls := sess.streams.len(), sess.inflight.len()
	sess.mu.Unlock()
	last := sess.lastActive.Load()
	return adminSession{
		ID: sess.id, Principal: sess.principal, Version: sess.protocolVersion(), Upstream: upstreamKind(sess),
		Created: time.Unix(0, sess.created).UTC(), LastActive: time.Unix(0, last).UTC(),
		IdleSeconds: time.Duration(now - last).Seconds(), Busy: sess.busy.Load(), Streams: n, CallsInFlight: calls,
	}
}

// upstreamKind names the kind of a session's upstream binding.
func upstreamKind(sess *session) string {
	if k, ok := sess.up.(interface{ Kind() string }); ok {
		return k.Kind()
	}
	return "http"
}

// apiListSessions: GET /admin/v1/sessions?limit=&after=&principal=&version=&upstream=&idle_min=&prefix=
// Sessions ordered by id; "next" is the cursor (after=) of the next page.
func (s *Server) apiListSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			apiError(w, http.StatusBadRequest, "limit must be 1..1000")
			return
		}
		limit = n
	}
	var idleMin time.Duration
	if v := q.Get("idle_min"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			apiError(w, http.StatusBadRequest, "idle_min must be a duration, e.g. 30s")
			return
		}
		idleMin = d
	}
	after, prefix := q.Get("after"), q.Get("prefix")
	principal, hasPrincipal := q.Get("principal"), q.Has("principal")
	version, kind := q.Get("version"), q.Get("upstream")
	now := s.clock.Now()
	page := firstIDs{max: limit + 1}
	total := 0
	s.store.Range(func(id string, sess *session) bool {
		switch {
		case !strings.HasPrefix(id, prefix),
			hasPrincipal && sess.principal != principal,
			version != "" && sess.protocolVersion() != version,
			kind != "" && upstreamKind(sess) != kind,
			idleMin > 0 && time.Duration(now-sess.lastActive.Load()) < idleMin:
			return true
		}
		total++
		if id > after {
			page.offer(sess)
		}
		return true
	})
	next, list := "", page.sorted()
	if len(list) > limit {
		list = list[:limit]
		next = list[limit-1].id
	}
	out := struct {
		Sessions []adminSession `json:"sessions"`
		Next     string         `json:"next,omitempty"`
		Matching int            `json:"matching"`
	}{Sessions: make([]adminSession, 0, len(list)), Next: next, Matching: total}
	for _, sess := range list {
		out.Sessions = append(out.Sessions, s.describe(sess, now))
	}
	apiJSON(w, out)
}

// firstIDs keeps the max sessions with the lowest ids of those offered: a
// max-heap on the id, so a page of a listing costs a pass over the store
// and O(log max) per session kept, not a sort of every session after the
// cursor (a million of them for the first page of a loaded gateway).
type firstIDs struct {
	max int
	h   idHeap
}

func (f *firstIDs) offer(sess *session) {
	switch {
	case len(f.h) < f.max:
		heap.Push(&f.h, sess)
	case len(f.h) > 0 && sess.id < f.h[0].id:
		f.h[0] = sess
		heap.Fix(&f.h, 0)
	}
}

// idHeap is a max-heap of sessions by id (container/heap).
type idHeap []*session

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i].id > h[j].id }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(*session)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sorted returns the sessions kept, in ascending id order.
func (f *firstIDs) sorted() []*session {
	slices.SortFunc(f.h, func(a, b *session) int { return strings.Compare(a.id, b.id) })
	return f.h
}

func (s *Server) apiSession(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.store.Get(r.PathValue("id"))
	if !ok {
		apiError(w, http.StatusNotFound, "no such session")
		return
	}
	d := adminSessionDetail{adminSession: s.describe(sess, s.clock.Now()), Shard: s.store.ShardOf(sess.id)}
	if sess.up != nil {
		d.UpstreamSession, d.UpstreamVersion = sess.up.ID(), sess.up.Version()
	}
	sess.mu.Lock()
	for id, st := range sess.streams.all() {
		rs, lim := st.ring.Stats(), st.ring.Limits()
		a := adminStream{ID: id, Kind: "answer", State: "waiting", Events: rs.Len, Bytes: rs.Bytes,
			Capacity: lim.Capacity, MaxBytes: lim.MaxBytes, LastSeq: rs.Pushed, Delivered: st.delivered.Load(),
			Pushed: rs.Pushed, Dropped: rs.DroppedOldest + rs.DroppedNewest + rs.DroppedDisconnect,
			Coalesced: rs.Coalesced, Skipped: rs.Skipped}
		if id == 0 {
			a.Kind = "standalone"
		}
		switch {
		case st.attached():
			a.State = "connected"
		case st.finishedAt.Load() != 0:
			a.State = "finished"
		}
		d.StreamList = append(d.StreamList, a)
	}
	sess.mu.Unlock()
	slices.SortFunc(d.StreamList, func(a, b adminStream) int { return int(a.ID) - int(b.ID) })
	apiJSON(w, d)
}

// apiEndSession ends a session: its client then gets 404 for it. Its
// upstream side is ended before the answer, as for a client's DELETE, and
// bounded only by upstreamCloseTimeout: not by the admin request, whose
// client may go away (or time out) with the session ended here already and
// its upstream close half done.
func (s *Server) apiEndSession(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.store.Get(r.PathValue("id"))
	if !ok {
		apiError(w, http.StatusNotFound, "no such session")
		return
	}
	s.endSession(context.Background(), sess, CloseAdmin, upstreamNow)
	w.WriteHeader(http.StatusNoContent)
}

// apiDrainShard ends every session of one shard (their streams end with a
// retry hint; their clients then get 404 and start new sessions).
func (s *Server) apiDrainShard(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.Atoi(r.PathValue("shard"))
	if err != nil || i < 0 || i >= s.store.NumShards() {
		apiError(w, http.StatusBadRequest, "shard must be 0.."+strconv.Itoa(s.store.NumShards()-1))
		return
	}
	var victims []*session
	s.store.RangeShard(i, func(_ string, sess *session) bool {
		victims = append(victims, sess)
		return true
	})
	for _, sess := range victims {
		for _, c := range sess.conns() {
			c.drainNow(CloseAdmin)
		}
		s.endSession(r.Context(), sess, CloseAdmin, upstreamLater)
	}
	apiJSON(w, map[string]int{"shard": i, "sessions_ended": len(victims)})
}

// conns returns the session's attached connections.
func (s *session) conns() []*clientConn { return s.appendConns(nil, nil) }

// apiConfig returns the effective configuration, secrets redacted.
func (s *Server) apiConfig(w http.ResponseWriter, _ *http.Request) {
	apiJSON(w, s.EffectiveConfig())
}

// EffectiveConfig is the configuration in force, with defaults filled in
// and secrets redacted, for the admin API and logs.
func (s *Server) EffectiveConfig() map[string]any {
	c := s.cfg
	redacted := func(v string) string {
		if v == "" {
			return ""
		}
		return "(redacted)"
	}
	return map[string]any{
		"path":                    c.Path,
		"shards":                  s.store.NumShards(),
		"max_sessions":            c.MaxSessions,
		"session_idle_timeout":    c.SessionIdleTimeout.String(),
		"session_max_age":         durOrOff(c.SessionMaxAge),
		"max_streams_per_session": c.MaxStreamsPerSession,
		"ring_size":               c.RingSize,
		"ring_bytes":              c.RingBytes,
		"drop_policy":             c.DropPolicy.String(),
		"heartbeat":               durOrOff(c.Heartbeat),
		"stream_retention":        c.StreamRetention.String(),
		"stream_max_connection":   durOrOff(c.StreamMaxConnection),
		"stream_send_buffer":      c.StreamSendBuffer,
		"write_stall_timeout":     c.WriteStallTimeout.String(),
		"retry_hint":              c.RetryHint.String(),
		"drain_window":            durOrOff(c.DrainWindow),
		"state_file":              c.StateFile,
		"allowed_origins":         c.AllowedOrigins,
		"allowed_hosts":           c.AllowedHosts,
		"max_body_bytes":          c.MaxBodyBytes,
		"upstream_timeout":        c.UpstreamTimeout.String(),
		"admin_token":             redacted(c.AdminToken),
		"supported_versions":      supportedVersions,
		"whole_answer_window":     durOrOff(c.WholeAnswerWindow),
		"upstream_era":            c.UpstreamEra.String(),
		"advertise_stateless":     c.AdvertiseStateless,
		"legacy_sse":              legacyPaths(c),
		"cluster":                 c.Cluster != nil,
		// Security and limits (authn.go, limits.go, listener.go): which
		// authentication is on, never a token or key.
		"authentication":             c.Authenticator != nil,
		"required_scopes":            c.RequiredScopes,
		"authorization_servers":      c.AuthorizationServers,
		"resource_url":               c.ResourceURL,
		"forward_authorization":      c.ForwardAuthorization,
		"max_sessions_per_principal": c.MaxSessionsPerPrincipal,
		"rate_limit":                 c.RateLimit,
		"rate_burst":                 c.RateBurst,
		"auth_failure_burst":         max(0, c.AuthFailureBurst), // 0: no limit
		"auth_failure_rate":          c.AuthFailureRate,
		"evict_idle":                 c.EvictIdle,
		"max_conns_per_ip":           c.MaxConnsPerIP,
		"max_header_bytes":           c.MaxHeaderBytes,
		"max_headers":                c.MaxHeaders,
		"read_header_timeout":        c.ReadHeaderTimeout.String(),
		"read_body_timeout":          c.ReadBodyTimeout.String(),
	}
}

// legacyPaths names the legacy HTTP+SSE endpoints, "off" when they are.
func legacyPaths(c Config) string {
	if c.LegacySSEOff {
		return "off"
	}
	return c.LegacySSEPath + " " + c.LegacyMessagePath
}

func durOrOff(d time.Duration) string {
	if d <= 0 {
		return "off"
	}
	return d.String()
}

// apiStats is what the admin page draws: the counters, the live state and
// the latency histograms, in one request per second.
func (s *Server) apiStats(w http.ResponseWriter, _ *http.Request) {
	w2 := s.walkStreams()
	m := s.Metrics()
	streams := map[string]int{}
	for k := 0; k < 2; k++ {
		for st := 0; st < 3; st++ {
			streams[streamKindNames[k]+"_"+streamStateNames[st]] = w2.streams[k][st]
		}
	}
	hist, err := s.registry.Gather()
	latency := map[string]any{}
	if err == nil {
		for _, mf := range hist {
			if mf.GetName() != "mcpgate_request_duration_seconds" && mf.GetName() != "mcpgate_upstream_request_duration_seconds" {
				continue
			}
			side := map[string]any{}
			for _, metric := range mf.GetMetric() {
				h := metric.GetHistogram()
				var buckets [][2]float64
				for _, b := range h.GetBucket() {
					buckets = append(buckets, [2]float64{b.GetUpperBound(), float64(b.GetCumulativeCount())})
				}
				side[metric.GetLabel()[0].GetValue()] = map[string]any{
					"count": h.GetSampleCount(), "sum": h.GetSampleSum(), "buckets": buckets,
				}
			}
			latency[mf.GetName()] = side
		}
	}
	apiJSON(w, map[string]any{
		"time":        time.Now().UTC(),
		"draining":    s.draining.Load(),
		"counters":    m,
		"streams":     streams,
		"ring_events": w2.ringEvents,
		"ring_bytes":  w2.ringBytes,
		"latency":     latency,
	})
}
