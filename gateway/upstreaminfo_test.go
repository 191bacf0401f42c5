package gateway

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// statsTransport is an upstream with transport counts of its own.
type statsTransport struct {
	nopTransport
	st upstream.Stats
}

func (t statsTransport) Stats() upstream.Stats { return t.st }

func TestUpstreamStatsMetrics(t *testing.T) {
	gather := func(tr upstream.Transport) map[string]float64 {
		s, err := New(Config{Upstream: tr, DrainWindow: -1})
		require.NoError(t, err)
		defer func() { require.NoError(t, s.Shutdown(context.Background())) }()
		mfs, err := s.Registry().Gather()
		require.NoError(t, err)
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.Metric {
				name := mf.GetName()
				for _, lp := range m.Label {
					name += "{" + lp.GetName() + "=" + lp.GetValue() + "}"
				}
				out[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue() // nil-safe: one of them is set
			}
		}
		return out
	}
	m := gather(statsTransport{st: upstream.Stats{ProcessesStarted: 7, ProcessesLive: 2, ProcessesReaped: 5, ExitsSignal: 4, ExitsZero: 1,
		ProcessesKilled: 1, StderrLines: 9, StderrSuppressed: 3, StandaloneDropped: 6, Unroutable: 2, Reconnects: 1, SessionsLost: 5}})
	assert.Equal(t, 7.0, m["mcpgate_upstream_processes_started_total"])
	assert.Equal(t, 2.0, m["mcpgate_upstream_processes"])
	assert.Equal(t, 5.0, m["mcpgate_upstream_processes_reaped_total"])
	assert.Equal(t, 4.0, m["mcpgate_upstream_process_exits_total{reason=signal}"])
	assert.Equal(t, 1.0, m["mcpgate_upstream_process_exits_total{reason=exit_zero}"])
	assert.Equal(t, 1.0, m["mcpgate_upstream_processes_killed_total"])
	assert.Equal(t, 3.0, m["mcpgate_upstream_stderr_lines_total{outcome=suppressed}"])
	assert.Equal(t, 6.0, m["mcpgate_upstream_messages_dropped_total{reason=standalone_full}"])
	assert.Equal(t, 2.0, m["mcpgate_upstream_messages_dropped_total{reason=unroutable}"])
	assert.Equal(t, 1.0, m["mcpgate_upstream_reconnects_total"])
	assert.Equal(t, 5.0, m["mcpgate_upstream_sessions_lost_total"])

	_, ok := gather(nopTransport{})["mcpgate_upstream_processes"]
	assert.False(t, ok, "a transport without counts publishes none")
}
