package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// One /mcp serves both eras (PROTOCOL.md section 1): a POST that opens
// with initialize starts a session of the session era (2025-03-26 to
// 2025-11-25); a POST carrying the stateless revision (2026-07-28) in its
// MCP-Protocol-Version header or its _meta is a stateless request. Each
// upstream hop speaks its own era: the gateway finds out which the upstream
// serves (UpstreamEra): a client era the upstream serves is passed through,
// the other is bridged (gateway/upstream's bridge adapters).

// statelessVersion is the stateless revision the gateway serves.
const statelessVersion = upstream.StatelessVersion

// The _meta keys of the stateless revision.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaSubscriptionID     = "io.modelcontextprotocol/subscriptionId"
)

// UpstreamEra says which eras the gateway assumes its upstream serves.
type UpstreamEra uint8

const (
	// UpstreamEraAuto: ask the upstream (server/discover); each client era
	// it serves is passed through, the other bridged.
	UpstreamEraAuto UpstreamEra = iota
	// UpstreamEraSession: the upstream serves sessions only; stateless
	// clients are bridged onto pooled upstream sessions.
	UpstreamEraSession
	// UpstreamEraStateless: the upstream serves the stateless revision
	// only; session-era clients are bridged onto it.
	UpstreamEraStateless
)

func (e UpstreamEra) String() string {
	switch e {
	case UpstreamEraAuto:
		return "auto"
	case UpstreamEraSession:
		return "session"
	case UpstreamEraStateless:
		return "stateless"
	}
	return fmt.Sprintf("UpstreamEra(%d)", uint8(e))
}

// ParseUpstreamEra parses "auto", "session" or "stateless".
func ParseUpstreamEra(s string) (UpstreamEra, error) {
	switch s {
	case "", "auto":
		return UpstreamEraAuto, nil
	case "session":
		return UpstreamEraSession, nil
	case "stateless":
		return UpstreamEraStateless, nil
	}
	return 0, fmt.Errorf("gateway: upstream era %q: want auto, session or stateless", s)
}

// allVersions are every protocol version the gateway serves to clients,
// oldest first: the session era and the stateless revision.
var allVersions = append(append([]string(nil), supportedVersions...), statelessVersion)

// isStatelessVersion reports whether v is the stateless revision or later.
func isStatelessVersion(v []byte) bool { return string(v) >= statelessVersion }

// upstreams holds the two faces of the upstream: sessions for session-era
// clients and a stateless forwarder for stateless clients. Each is the
// transport itself where the upstream speaks that era (passed through), or a
// bridge where it does not, chosen once the upstream's eras are known.
type upstreams struct {
	sessions  upstream.Transport
	stateless upstream.Stateless
	era       string // what the hops speak, for logs and the admin API
}

// eraProbeRetry is how soon an auto detection that could not reach the
// upstream is tried again.
const eraProbeRetry = 5 * time.Second

// eraState caches the detection.
type eraState struct {
	mu      sync.Mutex
	known   *upstreams
	failed  time.Time // last failed probe (auto)
	lastErr error
}

// Upstreams returns the upstream's two faces, detecting its eras first if
// needed (Config.UpstreamEra auto: one server/discover; its supportedVersions
// say which eras the upstream serves, and a refusal means the session era
// only). Until a detection succeeds the transport is used for sessions and
// stateless clients are bridged, so a slow or absent upstream never blocks
// more than one probe per eraProbeRetry.
func (s *Server) Upstreams(ctx context.Context) (upstream.Transport, upstream.Stateless, string) {
	u := s.upstreamFaces(ctx)
	return u.sessions, u.stateless, u.era
}

func (s *Server) upstreamFaces(ctx context.Context) *upstreams {
	s.eras.mu.Lock()
	defer s.eras.mu.Unlock()
	if s.eras.known != nil {
		return s.eras.known
	}
	t := s.cfg.Upstream
	st, canStateless := t.(upstream.Stateless)
	sessionOK, statelessOK := true, false
	switch {
	case s.cfg.UpstreamEra == UpstreamEraSession || !canStateless:
	case s.cfg.UpstreamEra == UpstreamEraStateless:
		sessionOK, statelessOK = false, true
	default: // auto
		if time.Since(s.eras.failed) < eraProbeRetry {
			return s.faces(t, nil, true) // not cached: try again later
		}
		versions, err := probeEras(ctx, st, s.cfg.UpstreamTimeout)
		if err != nil {
			s.eras.failed, s.eras.lastErr = time.Now(), err
			s.log.Warn("upstream eras not known yet: server/discover failed", "err", err)
			return s.faces(t, nil, true)
		}
		if versions != nil { // nil: discover refused, a session-era server
			sessionOK, statelessOK = false, false
			for _, v := range versions {
				if v >= statelessVersion {
					statelessOK = true
				} else if versionSupported([]byte(v)) {
					sessionOK = true
				}
			}
			if !sessionOK && !statelessOK {
				sessionOK = true // nothing in common: let initialize negotiate
			}
		}
	}
	var stFace upstream.Stateless
	if statelessOK {
		stFace = st
	}
	u := s.faces(t, stFace, sessionOK)
	s.eras.known = u
	s.log.Info("upstream eras", "sessions", sessionOK, "stateless", statelessOK, "hops", u.era)
	return u
}

// faces builds the two faces: st is the upstream's stateless face if it
// speaks the revision (nil: stateless clients go through the session
// pool); sessionOK says whether it serves sessions (else session-era
// clients are bridged onto st).
func (s *Server) faces(t upstream.Transport, st upstream.Stateless, sessionOK bool) *upstreams {
	u := &upstreams{sessions: t, stateless: st}
	if !sessionOK && st != nil {
		u.sessions = upstream.NewStatelessBridge(st, s.bridgeConfig())
	}
	if st == nil {
		if s.pool == nil {
			s.pool = upstream.NewSessionPool(t, s.bridgeConfig())
		}
		u.stateless = s.pool
	}
	switch {
	case sessionOK && st != nil:
		u.era = "both passed through"
	case sessionOK:
		u.era = "session (stateless clients bridged)"
	default:
		u.era = "stateless (session clients bridged)"
	}
	return u
}

// bridgeConfig configures the bridge adapters.
func (s *Server) bridgeConfig() upstream.BridgeConfig {
	return upstream.BridgeConfig{Timeout: s.cfg.UpstreamTimeout, Logger: s.log, Versions: supportedVersions,
		AdvertiseStateless: s.cfg.AdvertiseStateless}
}

// probeEras asks the upstream server/discover in the stateless revision
// and returns its supportedVersions; nil (and no error) if it refuses the
// revision (a session-era server), an error if it cannot be asked.
func probeEras(ctx context.Context, st upstream.Stateless, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, min(timeout, 10*time.Second))
	defer cancel()
	body := []byte(`{"jsonrpc":"2.0","id":0,"method":"server/discover","params":{"_meta":{"` + metaProtocolVersion +
		`":"` + statelessVersion + `","` + metaClientCapabilities + `":{}}}}`)
	reply, err := st.Do(ctx, []upstream.Header{
		{Name: "MCP-Protocol-Version", Value: statelessVersion},
		{Name: "Mcp-Method", Value: "server/discover"},
	}, body)
	var se *upstream.StatusError
	switch {
	case errors.As(err, &se) && se.Status >= 400 && se.Status < 500 &&
		se.Status != http.StatusRequestTimeout && se.Status != http.StatusTooManyRequests &&
		se.Status != http.StatusUnauthorized && se.Status != http.StatusForbidden:
		return nil, nil // refused: a session-era server
	case errors.As(err, &se):
		// A 5xx (a proxy while the upstream starts, an overload), a 408, a
		// 429, or a 401/403 (the probe lacked a credential, e.g. one only
		// clients have under -upstream-auth forward) says nothing about the
		// eras: ask again later.
		return nil, err
	case err != nil:
		return nil, err
	}
	answer, err := upstream.FirstAnswer(ctx, reply)
	if err != nil {
		return nil, err
	}
	raw, ok := jsonrpc.Lookup(answer, "result", "supportedVersions")
	if !ok {
		return nil, nil
	}
	var versions []string
	if err := json.Unmarshal(raw, &versions); err != nil {
		return nil, nil
	}
	return versions, nil
}
