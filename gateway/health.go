package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// readyUpstreamWindow is how recent a successful upstream exchange must be
// for /readyz to trust it; without one the upstream is probed, and a probe
// result is kept for probeCacheFor.
const (
	readyUpstreamWindow = 10 * time.Second
	probeCacheFor       = 5 * time.Second
)

// upstreamSucceeded records a successful upstream exchange (coarse time).
func (s *Server) upstreamSucceeded() {
	if now := s.clock.Now(); s.upstreamOK.Load() != now {
		s.upstreamOK.Store(now)
	}
}

// upstreamReachable reports nil if an upstream exchange succeeded within
// readyUpstreamWindow, or if the upstream answers a probe (upstream.Prober),
// at most one probe per probeCacheFor. An upstream without a probe is
// trusted until an exchange fails.
func (s *Server) upstreamReachable(ctx context.Context) error {
	now := s.clock.Now()
	if now-s.upstreamOK.Load() < int64(readyUpstreamWindow) {
		return nil
	}
	p, ok := s.cfg.Upstream.(upstream.Prober)
	if !ok {
		return nil
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if now-s.probeAt < int64(probeCacheFor) {
		return s.probeErr
	}
	err := p.Probe(ctx)
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled)) {
		// The caller went away (transports wrap the dial or handshake
		// error as text, so ctx says it): do not cache.
		return err
	}
	s.probeAt, s.probeErr = s.clock.Now(), err
	if err == nil {
		s.upstreamSucceeded()
	}
	return err
}
