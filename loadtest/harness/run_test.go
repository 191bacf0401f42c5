package harness

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/loadtest/mockup"
)

// upstream starts an in-process mock upstream and returns it with its URL.
func upstream(t *testing.T, cfg mockup.Config) (*mockup.Server, string) {
	t.Helper()
	srv, err := mockup.New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		<-done
	})
	return srv, "http://" + ln.Addr().String() + "/mcp"
}

func tiny(target, scenario string) Config {
	return Config{
		Target:       target,
		Scenario:     scenario,
		Sessions:     3,
		Rate:         150,
		Duration:     400 * time.Millisecond,
		Warmup:       100 * time.Millisecond,
		Conns:        4,
		StreamCount:  20,
		StreamRate:   400,
		CutEvery:     100 * time.Millisecond,
		DrainTimeout: 3 * time.Second,
	}
}

// TestRunMatchesUpstream runs the quick scenarios in process and checks the harness's
// exact counts against the mock's own.
func TestRunMatchesUpstream(t *testing.T) {
	for _, scenario := range []string{ScenarioPost, ScenarioStream, ScenarioResume} {
		t.Run(scenario, func(t *testing.T) {
			srv, url := upstream(t, mockup.Config{})
			res, err := Run(context.Background(), tiny(url, scenario))
			require.NoError(t, err)
			snap := srv.Snapshot()
			assert.True(t, res.Passed, "%v %v", res.Failures, res.Errors)
			assert.Zero(t, res.ErrorCount, "%v", res.Errors)
			assert.Equal(t, snap.SessionsCreated, res.Counts["sessions_created"])
			assert.Equal(t, snap.SessionsDeleted, res.Counts["sessions_deleted"])
			assert.Equal(t, snap.Requests["tools/call"], res.Counts["req/tools/call"])
			assert.Equal(t, snap.ToolCalls["echo"], res.Counts["tool/echo"])
			assert.Equal(t, snap.ToolCalls["stream"], res.Counts["tool/stream"])
			assert.Equal(t, snap.Events[mockup.KindPush], int64(res.Events[EventsPush].Received))
			assert.Equal(t, snap.Events[mockup.KindProgress], int64(res.Events[EventsProgress].Received))
			assert.Positive(t, res.Latency[res.Primary].Count)
			assert.NotEmpty(t, res.Timeline)
			assert.Positive(t, res.Generator.GOMAXPROCS)
			assert.Positive(t, res.Generator.CPUSeconds)
		})
	}
}

// TestRunReportsInjectedFaults checks that injected losses and duplicates are reported
// exactly and fail the run.
func TestRunReportsInjectedFaults(t *testing.T) {
	srv, url := upstream(t, mockup.Config{InjectLossEvery: 7, InjectDupEvery: 11})
	res, err := Run(context.Background(), tiny(url, ScenarioResume))
	require.NoError(t, err)
	snap := srv.Snapshot()
	var lost, dup uint64
	for _, ec := range res.Events {
		lost += ec.Lost
		dup += ec.Duplicated
	}
	require.Positive(t, snap.InjectedLoss)
	require.Positive(t, snap.InjectedDup)
	assert.Equal(t, uint64(snap.InjectedLoss), lost)
	assert.Equal(t, uint64(snap.InjectedDup), dup)
	assert.False(t, res.Passed)
	assert.Positive(t, res.LossRate)
}

func TestRunStatelessPost(t *testing.T) {
	srv, url := upstream(t, mockup.Config{Era: mockup.EraStateless})
	cfg := tiny(url, ScenarioPost)
	cfg.Version = "2026-07-28"
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Zero(t, res.ErrorCount, "%v", res.Errors)
	snap := srv.Snapshot()
	assert.Zero(t, snap.SessionsCreated)
	assert.Equal(t, snap.StatelessRequests, res.Counts["req/tools/call"])
}

func TestRunCountsErrors(t *testing.T) {
	// A server that has never heard of MCP: every initialize fails.
	srv, url := upstream(t, mockup.Config{Era: mockup.EraStateless})
	_ = srv
	cfg := tiny(url, ScenarioChurn)
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.False(t, res.Passed)
	assert.Equal(t, res.ErrorCount, res.Errors["http_404"])
	assert.Positive(t, res.ErrorCount)
	assert.Zero(t, res.AchievedRate)
}

// TestRunCutsStreamsTheTargetKeeps: a target that answers DELETE but keeps the GET
// streams open must not hang the run.
func TestRunCutsStreamsTheTargetKeeps(t *testing.T) {
	srv, err := mockup.New(mockup.Config{})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	front := &fasthttp.Server{NoDefaultDate: true, Handler: func(ctx *fasthttp.RequestCtx) {
		if ctx.IsDelete() {
			ctx.SetStatusCode(fasthttp.StatusNoContent) // but the session lives on
			return
		}
		srv.Handler(ctx)
	}}
	done := make(chan error, 1)
	go func() { done <- front.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.NoError(t, front.ShutdownWithContext(ctx))
		<-done
	})
	cfg := tiny("http://"+ln.Addr().String()+"/mcp", ScenarioStream)
	cfg.DrainTimeout = 300 * time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	require.Len(t, res.Notes, 1)
	assert.Contains(t, res.Notes[0], "did not end")
	assert.Zero(t, res.Events[EventsPush].Lost)
}
