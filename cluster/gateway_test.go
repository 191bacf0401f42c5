package cluster_test

// The request path in process: three gateway.Servers, each a node on its own
// cluster.Node, sharing an embedded NATS server, in front of the load
// harness's mock upstream; the Go SDK client reaches them through a
// round-robin HTTP transport (every request may land on another node).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/cluster"
	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/loadtest/mockup"
)

// startMock runs the mock upstream (session era) on a free port.
func startMock(t testing.TB) string {
	t.Helper()
	srv, err := mockup.New(mockup.Config{Era: mockup.EraSession})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String() + "/mcp"
}

type gwNode struct {
	srv  *gateway.Server
	node *cluster.Node
	addr string
}

// startNodes runs n gateway nodes on one NATS server in front of upURL.
func startNodes(t testing.TB, n int, natsURL, upURL string, tweak func(*gateway.Config)) []*gwNode {
	t.Helper()
	var nodes []*gwNode
	for i := range n {
		node := openNode(t, natsURL, cluster.Config{NodeID: fmt.Sprintf("n%d", i+1), RingSize: 1024, LeaseTTL: 2 * time.Second})
		up, err := upstream.NewHTTP(upstream.HTTPConfig{URL: upURL})
		require.NoError(t, err)
		cfg := gateway.Config{Upstream: up, Cluster: node, RingSize: 1024,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if tweak != nil {
			tweak(&cfg)
		}
		srv, err := gateway.New(cfg)
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(ln) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			<-done
		})
		nodes = append(nodes, &gwNode{srv: srv, node: node, addr: ln.Addr().String()})
	}
	return nodes
}

// roundRobin sends each request to the next node: a balancer without
// stickiness.
type roundRobin struct {
	hosts []string
	next  atomic.Uint64
	base  http.RoundTripper
}

func (r *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Host = r.hosts[r.next.Add(1)%uint64(len(r.hosts))]
	req.Host = req.URL.Host
	return r.base.RoundTrip(req)
}

func balancer(t testing.TB, nodes []*gwNode) *http.Client {
	rr := &roundRobin{base: &http.Transport{MaxIdleConnsPerHost: 16}}
	for _, n := range nodes {
		rr.hosts = append(rr.hosts, n.addr)
	}
	t.Cleanup(rr.base.(*http.Transport).CloseIdleConnections)
	return &http.Client{Transport: rr}
}

func TestNodesServeAnySession(t *testing.T) {
	natsURL := startNATS(t, true)
	nodes := startNodes(t, 3, natsURL, startMock(t), nil)
	hc := balancer(t, nodes)

	var mu sync.Mutex
	var progress []int
	c := mcp.NewClient(&mcp.Implementation{Name: "cluster-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progress = append(progress, int(r.Params.Progress))
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + nodes[0].addr + "/mcp", HTTPClient: hc}, nil)
	require.NoError(t, err)
	for range 6 { // every request lands on another node
		_, err := cs.ListTools(ctx, nil)
		require.NoError(t, err)
	}
	const count = 500
	params := &mcp.CallToolParams{Name: "stream", Arguments: map[string]any{"count": count, "rate": 5000}}
	params.SetProgressToken("p")
	res, err := cs.CallTool(ctx, params)
	require.NoError(t, err)
	require.False(t, res.IsError)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(progress) >= count }, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	for i, v := range progress {
		require.Equal(t, i+1, v, "progress exactly once, in order")
	}
	mu.Unlock()

	held := 0
	for _, n := range nodes {
		held += n.srv.Metrics().Sessions
	}
	assert.GreaterOrEqual(t, held, 2, "the session is served by more than one node")
	keys, err := nodes[0].node.Keys(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{cs.ID()}, keys)

	require.NoError(t, cs.Close()) // DELETE, on whichever node
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if n.srv.Metrics().Sessions != 0 {
				return false
			}
		}
		keys, err := nodes[1].node.Keys(ctx)
		return err == nil && len(keys) == 0
	}, 10*time.Second, 10*time.Millisecond, "the session leaves every node and the registry")

	// The id now answers 404 on every node.
	for _, n := range nodes {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.addr+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", cs.ID())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
}

// TestExpiryAcrossNodes: a session used only on one node is not idle on
// the node that owns it; once idle everywhere it ends everywhere and
// leaves the registry.
func TestExpiryAcrossNodes(t *testing.T) {
	natsURL := startNATS(t, true)
	const idle = 2 * time.Second
	nodes := startNodes(t, 2, natsURL, startMock(t), func(c *gateway.Config) {
		c.SessionIdleTimeout = idle
		c.SweepInterval = 50 * time.Millisecond
	})
	post := func(addr, sid, body string) (int, string) { return postMCP(t, addr, sid, body) }
	code, sid := post(nodes[0].addr, "", initializeBody)
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, sid)
	// Used on node 2 only, for three idle timeouts.
	until := time.Now().Add(3 * idle)
	for time.Now().Before(until) {
		code, _ := post(nodes[1].addr, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		require.Equal(t, http.StatusOK, code, "the session stays alive while used on another node")
		time.Sleep(idle / 10)
	}
	assert.Equal(t, 1, nodes[0].srv.Metrics().Sessions, "the owner kept it")
	// Idle everywhere: it ends on both nodes and in the registry.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		keys, err := nodes[0].node.Keys(ctx)
		return err == nil && len(keys) == 0 && nodes[0].srv.Metrics().Sessions == 0 && nodes[1].srv.Metrics().Sessions == 0
	}, 4*idle, 20*time.Millisecond)
	code, _ = post(nodes[1].addr, sid, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	assert.Equal(t, http.StatusNotFound, code)
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`

// postMCP POSTs body to a node (with sid unless empty) and returns the
// status and the answer's Mcp-Session-Id.
func postMCP(t testing.TB, addr, sid, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id")
}

// TestDrainHandsOverWhileLeaseCached: a draining node hands its sessions
// to peers that saw its lease a moment before (NodeAlive reuses an answer
// for up to half a second). The claim names the draining node, so a peer
// takes the session at once rather than refusing it as owned by a live
// node, which left it ownerless until its client came back.
func TestDrainHandsOverWhileLeaseCached(t *testing.T) {
	natsURL := startNATS(t, true)
	nodes := startNodes(t, 3, natsURL, startMock(t), nil)
	code, sid := postMCP(t, nodes[0].addr, "", initializeBody)
	require.Equal(t, http.StatusOK, code)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := func() string {
		_, owner, _, _, err := nodes[1].node.LoadSession(ctx, sid)
		require.NoError(t, err)
		return owner
	}
	require.Equal(t, "n1", owner())
	for _, n := range nodes[1:] {
		require.True(t, n.node.NodeAlive(ctx, "n1"), "n1's lease, seen (and kept) by a peer")
	}
	done := make(chan error, 1)
	go func() { done <- nodes[0].srv.Shutdown(ctx) }()
	require.Eventually(t, func() bool { o := owner(); return o == "n2" || o == "n3" },
		5*time.Second, 10*time.Millisecond, "a peer took the session over during the drain")
	require.NoError(t, <-done)
}
