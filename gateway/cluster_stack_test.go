//go:build integration || conformance

package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/cluster"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// A cluster of bin/gateway nodes for the integration and conformance
// tests: one NATS server with JetStream (the nats-server binary built from
// the Go module), n nodes, and HAProxy balancing round-robin without
// stickiness in front (each node's readiness checked on its admin
// listener).

type clusterStack struct {
	nats  *testenv.Proc
	nodes []*testenv.Proc
	lb    *testenv.HAProxy
	reg   *cluster.Registry // the test's own view of the registry
}

// clusterLease is the nodes' lease in these tests: a SIGKILLed node's
// sessions and streams are taken over this long after it died.
const clusterLease = "2s"

// startCluster starts NATS, n gateway nodes in front of upURL, and HAProxy.
func startCluster(t *testing.T, n int, upURL string, flags ...string) *clusterStack {
	t.Helper()
	s := &clusterStack{nats: testenv.StartNATS(t, testenv.Env(t, "MCPGATE_NATS_SERVER"))}
	var backends []testenv.Backend
	for i := range n {
		args := append([]string{"-cluster", s.nats.URL, "-node-id", fmt.Sprintf("n%d", i+1), "-cluster-lease", clusterLease}, flags...)
		gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), upURL, args...)
		gw.Name = fmt.Sprintf("gateway n%d", i+1)
		s.nodes = append(s.nodes, gw)
		backends = append(backends, testenv.Backend{Addr: strings.TrimSuffix(strings.TrimPrefix(gw.URL, "http://"), "/mcp"), Ready: strings.TrimPrefix(gw.AdminURL, "http://")})
	}
	s.lb = testenv.StartHAProxy(t, testenv.Env(t, "MCPGATE_HAPROXY"), backends)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := cluster.OpenRegistry(ctx, s.nats.URL, "")
	require.NoError(t, err)
	t.Cleanup(reg.Close)
	s.reg = reg
	return s
}
