package gateway

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// clusterCounter reads one series of s's cluster collector.
func clusterCounter(t *testing.T, s *Server, name, label, value string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(clusterCollector{s}))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

// TestClusterForwardsOKCounterNeverDecreases: mcpgate_cluster_forwards_total
// is a counter: its result="ok" series must not count a forward still in
// flight, which then fails and would make the counter go down (read by
// Prometheus as a reset).
func TestClusterForwardsOKCounterNeverDecreases(t *testing.T) {
	fnet := newFakeNet()
	gate := testenv.NewGate("answer")
	upA := testenv.NewFakeUpstream(t).On("tools/call", testenv.Fail(upstream.ErrUnavailable).After(gate))
	_, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	b, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	sid := liveSession(t, urlA)

	done := make(chan int, 1)
	go func() {
		code, _, _ := mcpPostNoFail(urlB, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{}}}`)
		done <- code
	}()
	gate.WaitReached(t)
	during := clusterCounter(t, b, "mcpgate_cluster_forwards_total", "result", "ok")
	gate.Release()
	require.NotEqual(t, http.StatusOK, <-done)
	after := clusterCounter(t, b, "mcpgate_cluster_forwards_total", "result", "ok")
	assert.GreaterOrEqual(t, after, during, "the ok counter went down")
	assert.Equal(t, 1.0, clusterCounter(t, b, "mcpgate_cluster_forwards_total", "result", "error"))
}
