package upstream

import "sync/atomic"

// Stats are a transport's own counts, for the gateway to publish as
// metrics. Counters only grow; Live* fields are gauges. Fields that do not
// apply to a transport stay zero (the stdio transport has no reconnects,
// the legacy HTTP+SSE transport no processes).
type Stats struct {
	// ProcessesStarted counts child processes started (stdio).
	ProcessesStarted uint64
	// ProcessesLive is the number of child processes started and not yet
	// reaped (stdio), the figure -max-processes bounds.
	ProcessesLive int64
	// ProcessesReaped counts child processes that ended and were waited
	// for (stdio); every started process is eventually reaped.
	ProcessesReaped uint64
	// ExitsZero, ExitsNonzero and ExitsSignal count reaped processes by how
	// they ended: exit status 0, another exit status, or a signal
	// (including the SIGTERM and SIGKILL of a session's end).
	ExitsZero, ExitsNonzero, ExitsSignal uint64
	// ProcessesKilled counts processes that were still alive a kill grace
	// after SIGTERM and got SIGKILL.
	ProcessesKilled uint64
	// Rejected counts Connects refused with ErrAtCapacity.
	Rejected uint64
	// StderrLines counts stderr lines logged; StderrSuppressed those
	// dropped by the per-process rate limit (each run of them is logged as
	// one "suppressed" line).
	StderrLines, StderrSuppressed uint64
	// MessagesTooLong counts sessions ended because the upstream sent a
	// message (a stdout line, an SSE event) larger than the limit.
	MessagesTooLong uint64
	// StandaloneDropped counts messages for the standalone stream dropped
	// because its buffer was full (while nobody listened, the oldest ones).
	StandaloneDropped uint64
	// StreamDropped counts droppable notifications (progress, logging)
	// dropped because the call stream they belonged to was full.
	StreamDropped uint64
	// Unroutable counts upstream messages that belonged nowhere: unreadable
	// lines or events, responses to no call in flight, progress for a call
	// that was already answered.
	Unroutable uint64
	// Refused counts server-to-client requests answered with an error by
	// the transport because no stream could take them.
	Refused uint64
	// Reconnects counts re-established upstream SSE streams (legacy
	// HTTP+SSE); SessionsLost counts upstream sessions that ended on the
	// upstream's side (an exited process, a lost stream, HTTP 404).
	Reconnects, SessionsLost uint64
}

// counters are the live Stats of one transport.
type counters struct {
	started, reaped, exitZero, exitNonzero, exitSignal, killed atomic.Uint64
	live                                                       atomic.Int64
	rejected, stderrLines, stderrSuppressed, tooLong           atomic.Uint64
	standaloneDropped, streamDropped, unroutable, refused      atomic.Uint64
	reconnects, lost                                           atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		ProcessesStarted:  c.started.Load(),
		ProcessesLive:     c.live.Load(),
		ProcessesReaped:   c.reaped.Load(),
		ExitsZero:         c.exitZero.Load(),
		ExitsNonzero:      c.exitNonzero.Load(),
		ExitsSignal:       c.exitSignal.Load(),
		ProcessesKilled:   c.killed.Load(),
		Rejected:          c.rejected.Load(),
		StderrLines:       c.stderrLines.Load(),
		StderrSuppressed:  c.stderrSuppressed.Load(),
		MessagesTooLong:   c.tooLong.Load(),
		StandaloneDropped: c.standaloneDropped.Load(),
		StreamDropped:     c.streamDropped.Load(),
		Unroutable:        c.unroutable.Load(),
		Refused:           c.refused.Load(),
		Reconnects:        c.reconnects.Load(),
		SessionsLost:      c.lost.Load(),
	}
}
