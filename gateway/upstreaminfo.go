package gateway

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// logSessionCreated logs a new session once, with its upstream session's
// id next to the gateway's: a stdio process's stderr lines and the
// transports' own logs name the upstream id (upstream_session), the
// gateway's logs the gateway's (session).
func (s *Server) logSessionCreated(sess *session, up upstream.Session) {
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return // the attributes below cost 5 allocations per session
	}
	s.log.Info("session created", "session", shortID(sess.id), "upstream_session", up.ID(),
		"version", sess.info().Version, "upstream_version", up.Version())
}

// upstreamStatser is implemented by transports that keep counts of their
// own (stdio: processes and exits; both stdio and legacy HTTP+SSE: dropped
// messages, lost sessions); the gateway publishes them as metrics.
type upstreamStatser interface {
	Stats() upstream.Stats
}

var (
	descUpProcesses   = prometheus.NewDesc("mcpgate_upstream_processes", "Live upstream processes (stdio upstream: started and not yet reaped; -max-processes bounds it).", nil, nil)
	descUpStarted     = prometheus.NewDesc("mcpgate_upstream_processes_started_total", "Upstream processes started (stdio upstream: one per session).", nil, nil)
	descUpReaped      = prometheus.NewDesc("mcpgate_upstream_processes_reaped_total", "Upstream processes that ended and were reaped.", nil, nil)
	descUpExits       = prometheus.NewDesc("mcpgate_upstream_process_exits_total", "Reaped upstream processes by how they ended: exit status 0, another exit status, or a signal (including the session end's SIGTERM and SIGKILL).", []string{"reason"}, nil)
	descUpKilled      = prometheus.NewDesc("mcpgate_upstream_processes_killed_total", "Upstream processes still alive a kill grace after SIGTERM, killed with SIGKILL.", nil, nil)
	descUpRejected    = prometheus.NewDesc("mcpgate_upstream_processes_rejected_total", "initialize refused because -max-processes processes were running.", nil, nil)
	descUpStderr      = prometheus.NewDesc("mcpgate_upstream_stderr_lines_total", "Upstream processes' stderr lines: logged, or suppressed by the rate limit.", []string{"outcome"}, nil)
	descUpDropped     = prometheus.NewDesc("mcpgate_upstream_messages_dropped_total", "Upstream messages the transport dropped, by reason: a full standalone or call stream buffer (droppable notifications), or unroutable (unreadable, or for no call in flight).", []string{"reason"}, nil)
	descUpTooLong     = prometheus.NewDesc("mcpgate_upstream_messages_too_long_total", "Upstream sessions ended by a message over -max-message.", nil, nil)
	descUpRefused     = prometheus.NewDesc("mcpgate_upstream_requests_refused_total", "Server-to-client requests the transport answered with an error because no stream could take them.", nil, nil)
	descUpReconnects  = prometheus.NewDesc("mcpgate_upstream_reconnects_total", "Upstream SSE streams re-established (legacy HTTP+SSE upstream).", nil, nil)
	descUpSessionLost = prometheus.NewDesc("mcpgate_upstream_sessions_lost_total", "Upstream sessions that ended on the upstream's side (an exited process, a lost stream).", nil, nil)
)

// describeUpstream and collectUpstream add the transport's counts to the
// gateway's collector, if it keeps any.
func (c *promCollector) describeUpstream(ch chan<- *prometheus.Desc) {
	if _, ok := c.s.cfg.Upstream.(upstreamStatser); !ok {
		return
	}
	for _, d := range []*prometheus.Desc{descUpProcesses, descUpStarted, descUpReaped, descUpExits, descUpKilled,
		descUpRejected, descUpStderr, descUpDropped, descUpTooLong, descUpRefused, descUpReconnects, descUpSessionLost} {
		ch <- d
	}
}

func (c *promCollector) collectUpstream(ch chan<- prometheus.Metric) {
	t, ok := c.s.cfg.Upstream.(upstreamStatser)
	if !ok {
		return
	}
	st := t.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(descUpProcesses, prometheus.GaugeValue, float64(st.ProcessesLive))
	counter(descUpStarted, st.ProcessesStarted)
	counter(descUpReaped, st.ProcessesReaped)
	counter(descUpExits, st.ExitsZero, "exit_zero")
	counter(descUpExits, st.ExitsNonzero, "exit_nonzero")
	counter(descUpExits, st.ExitsSignal, "signal")
	counter(descUpKilled, st.ProcessesKilled)
	counter(descUpRejected, st.Rejected)
	counter(descUpStderr, st.StderrLines, "logged")
	counter(descUpStderr, st.StderrSuppressed, "suppressed")
	counter(descUpDropped, st.StandaloneDropped, "standalone_full")
	counter(descUpDropped, st.StreamDropped, "stream_full")
	counter(descUpDropped, st.Unroutable, "unroutable")
	counter(descUpTooLong, st.MessagesTooLong)
	counter(descUpRefused, st.Refused)
	counter(descUpReconnects, st.Reconnects)
	counter(descUpSessionLost, st.SessionsLost)
}
