package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
// serves (UpstreamEra) and bridges where the two differ (gateway/upstream's
// bridge adapters).

// statelessVersion is the stateless revision the gateway serves.
const statelessVersion = upstream.StatelessVersion

// The _meta keys of the stateless revision.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
)

// UpstreamEra says which era the gateway speaks to its upstream.
type UpstreamEra uint8

const (
	// UpstreamEraAuto: ask the upstream (server/discover) and speak the
	// stateless revision if it serves it, else sessions.
	UpstreamEraAuto UpstreamEra = iota
	// UpstreamEraSession: sessions (initialize); stateless clients are
	// bridged onto pooled upstream sessions.
	UpstreamEraSession
	// UpstreamEraStateless: the stateless revision; session-era clients
	// are bridged onto it.
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
// clients and a stateless forwarder for stateless clients, one of them the
// transport itself and the other a bridge, chosen once the upstream's era
// is known.
type upstreams struct {
	sessions  upstream.Transport
	stateless upstream.Stateless
	era       UpstreamEra // the era the upstream hop speaks (session or stateless)
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

// Upstreams returns the upstream's two faces, detecting its era first if
// needed (Config.UpstreamEra auto: one server/discover, answered by a
// stateless upstream with 2026-07-28 among its supportedVersions). Until a
// detection succeeds the transport is used for sessions and stateless
// clients are bridged, so a slow or absent upstream never blocks more than
// one probe per eraProbeRetry.
func (s *Server) Upstreams(ctx context.Context) (upstream.Transport, upstream.Stateless, UpstreamEra) {
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
	era := s.cfg.UpstreamEra
	if era == UpstreamEraStateless && !canStateless {
		era = UpstreamEraSession // refused by setDefaults; kept safe here
	}
	if era == UpstreamEraAuto && !canStateless {
		era = UpstreamEraSession
	}
	if era == UpstreamEraAuto {
		if time.Since(s.eras.failed) < eraProbeRetry {
			return s.sessionFaces(t) // not cached: try again later
		}
		ok, err := probeStateless(ctx, st, s.cfg.UpstreamTimeout)
		switch {
		case err != nil:
			s.eras.failed, s.eras.lastErr = time.Now(), err
			s.log.Warn("upstream era not known yet: server/discover failed", "err", err)
			return s.sessionFaces(t)
		case ok:
			era = UpstreamEraStateless
		default:
			era = UpstreamEraSession
		}
	}
	var u *upstreams
	if era == UpstreamEraStateless {
		u = &upstreams{sessions: upstream.NewStatelessBridge(st, s.bridgeConfig()), stateless: st, era: era}
	} else {
		u = s.sessionFaces(t)
	}
	s.eras.known = u
	s.log.Info("upstream era", "era", u.era.String())
	return u
}

// sessionFaces: the transport serves sessions; stateless clients are
// bridged onto pooled upstream sessions.
func (s *Server) sessionFaces(t upstream.Transport) *upstreams {
	if s.pool == nil {
		s.pool = upstream.NewSessionPool(t, s.bridgeConfig())
	}
	return &upstreams{sessions: t, stateless: s.pool, era: UpstreamEraSession}
}

// bridgeConfig configures the bridge adapters.
func (s *Server) bridgeConfig() upstream.BridgeConfig {
	return upstream.BridgeConfig{Timeout: s.cfg.UpstreamTimeout, Logger: s.log, Versions: supportedVersions,
		AdvertiseStateless: s.cfg.AdvertiseStateless}
}

// probeStateless asks the upstream server/discover in the stateless
// revision: true if it serves 2026-07-28, false if it answers but does not
// (or refuses the revision), an error if it cannot be asked.
func probeStateless(ctx context.Context, st upstream.Stateless, timeout time.Duration) (bool, error) {
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
	case errors.As(err, &se):
		return false, nil // refused: a session-era server
	case err != nil:
		return false, err
	}
	answer, err := firstMessage(reply)
	if err != nil {
		return false, err
	}
	raw, ok := jsonrpc.Lookup(answer, "result", "supportedVersions")
	if !ok {
		return false, nil
	}
	return bytes.Contains(raw, []byte(`"`+statelessVersion+`"`)), nil
}

// firstMessage reads an answer down to its first response message.
func firstMessage(r *upstream.Reply) ([]byte, error) {
	switch {
	case r.JSON != nil:
		return r.JSON, nil
	case r.Stream != nil:
		defer r.Stream.Close()
		var p jsonrpc.Parser
		for {
			msg, err := r.Stream.Next()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("answer stream ended without a response: %w", upstream.ErrUnavailable)
				}
				return nil, err
			}
			if msgs, _, perr := p.Parse(msg); perr == nil && len(msgs) == 1 &&
				(msgs[0].Kind == jsonrpc.KindResponse || msgs[0].Kind == jsonrpc.KindError) {
				return bytes.Clone(msg), nil
			}
		}
	}
	return nil, fmt.Errorf("no answer: %w", upstream.ErrUnavailable)
}
