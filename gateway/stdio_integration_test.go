//go:build integration && linux

package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// startStdioGateway starts bin/gateway with a stdio upstream.
func startStdioGateway(t *testing.T, command string, flags ...string) *testenv.Proc {
	t.Helper()
	return testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), "stdio:"+command, flags...)
}

// buildStdioServer builds testdata/stdioserver, a tiny stdio MCP server.
func buildStdioServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stdioserver")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/stdioserver").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// children lists the processes whose parent is pid, with their state
// letter, from /proc.
func children(t *testing.T, pid int) map[int]string {
	t.Helper()
	out := map[int]string{}
	dirs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:])) // state, ppid, ...
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out[p] = f[0]
		}
	}
	return out
}

func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

const rawInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// TestStdioUpstreamSDKProgress: the official Go SDK client, in its default
// configuration, calls a tool with progress on the reference server run as
// a stdio upstream.
func TestStdioUpstreamSDKProgress(t *testing.T) {
	gw := startStdioGateway(t, testenv.Env(t, "MCPGATE_EVERYTHING_SERVER"))
	var progress atomic.Int32
	cs := connect(t, gw.URL, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			if r.Params.ProgressToken == "tok-1" {
				progress.Add(1)
			}
		},
	}, false)
	params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
	params.SetProgressToken("tok-1")
	res, err := cs.CallTool(context.Background(), params)
	require.NoError(t, err)
	assert.False(t, res.IsError)
	assert.Equal(t, "tok-1", textOf(t, res))
	assert.Eventually(t, func() bool { return progress.Load() == 3 }, 5*time.Second, 10*time.Millisecond,
		"every progress notification of the call arrives: %d", progress.Load())

	// A server-to-client request (sampling) reaches the client and its
	// answer the server.
	cs2 := connect(t, gw.URL, &mcp.ClientOptions{
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "from the client"}}, nil
		},
	}, false)
	res, err = cs2.CallTool(context.Background(), &mcp.CallToolParams{Name: "test_sampling", Arguments: map[string]any{"prompt": "hi"}})
	require.NoError(t, err)
	assert.Contains(t, textOf(t, res), "from the client")

	tools, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	assert.Greater(t, len(tools.Tools), 10)
	sid := cs.ID()
	require.NoError(t, cs.Close())
	require.NoError(t, cs2.Close())
	status, _ := rawPost(t, gw.URL, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, nil)
	assert.Equal(t, http.StatusNotFound, status)
	require.Eventually(t, func() bool { return len(children(t, gw.Cmd.Process.Pid)) == 0 }, 10*time.Second, 20*time.Millisecond,
		"DELETE ends the session's process")
}

// TestStdioUpstreamProcessHygiene: 1,000 sessions abandoned without DELETE
// expire; afterwards no child process and no zombie is left, and the
// transport counted 1,000 started and 1,000 reaped.
func TestStdioUpstreamProcessHygiene(t *testing.T) {
	const sessions = 1000
	server := buildStdioServer(t)
	gw := startStdioGateway(t, server, "-session-idle-timeout", "1s", "-max-processes", "2000", "-log-level", "info")
	gwPid := gw.Cmd.Process.Pid

	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int32
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				req, _ := http.NewRequest(http.MethodPost, gw.URL, strings.NewReader(rawInit))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 0; i < sessions; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	require.Zero(t, failed.Load(), "every initialize succeeded")
	t.Logf("%d sessions created in %v; %d processes alive now", sessions, time.Since(start), len(children(t, gwPid)))

	// Abandoned: no DELETE. Expiry ends every process; the gateway reaps them.
	require.Eventually(t, func() bool { return len(children(t, gwPid)) == 0 }, 60*time.Second, 100*time.Millisecond,
		"children left: %v", children(t, gwPid))
	t.Logf("all expired and reaped %v after the first initialize", time.Since(start))
	for pid, st := range children(t, gwPid) {
		t.Errorf("child %d left in state %s", pid, st)
	}

	require.NoError(t, gw.Signal(syscall.SIGTERM))
	_, exited := gw.Wait(20 * time.Second)
	require.True(t, exited)
	m := regexp.MustCompile(`msg="upstream stats" processes_started=(\d+) processes_reaped=(\d+) processes_live=(\d+)`).FindStringSubmatch(gw.Stderr())
	require.NotNil(t, m, "no stats line in the gateway's log")
	assert.Equal(t, strconv.Itoa(sessions), m[1], "started")
	assert.Equal(t, strconv.Itoa(sessions), m[2], "reaped")
	assert.Equal(t, "0", m[3], "live")
}

// TestStdioUpstreamGatewayKilled: a SIGKILLed gateway leaves no child
// behind (Pdeathsig).
func TestStdioUpstreamGatewayKilled(t *testing.T) {
	server := buildStdioServer(t)
	// Orphans are reparented to this process, not to an init that might
	// not reap them, so the test can tell dead from running and clean up.
	const prSetChildSubreaper = 36
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	require.Zero(t, errno)
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })

	// The children outlive the end of their input, so only the signal
	// the gateway's death sends them (Pdeathsig) ends them: a child that
	// exited on its own when its stdin closed would hide a missing one.
	gw := startStdioGateway(t, server, "-upstream-env", "STDIOSERVER_LINGER=1")
	for i := 0; i < 5; i++ {
		sessionFromInit(t, gw.URL)
	}
	kids := children(t, gw.Cmd.Process.Pid)
	require.Len(t, kids, 5, "one process per session")
	require.NoError(t, gw.Signal(syscall.SIGKILL))
	_, exited := gw.Wait(10 * time.Second)
	require.True(t, exited)
	for pid := range kids {
		require.Eventually(t, func() bool { st := procState(pid); return st == "" || st == "Z" }, 10*time.Second, 10*time.Millisecond,
			"child %d still running after the gateway was killed", pid)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil) // reap what we inherited
		assert.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child %d: %v", pid, ws)
		assert.Empty(t, procState(pid))
	}
}

// TestStdioUpstreamMaxProcesses: beyond -max-processes, initialize gets
// 503 with Retry-After; a session's end frees its slot.
func TestStdioUpstreamMaxProcesses(t *testing.T) {
	gw := startStdioGateway(t, buildStdioServer(t), "-max-processes", "2")
	first := sessionFromInit(t, gw.URL)
	sessionFromInit(t, gw.URL)
	req, _ := http.NewRequest(http.MethodPost, gw.URL, strings.NewReader(rawInit))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))

	del, _ := http.NewRequest(http.MethodDelete, gw.URL, nil)
	del.Header.Set("Mcp-Session-Id", first)
	resp, err = http.DefaultClient.Do(del)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Eventually(t, func() bool {
		st, _ := rawPost(t, gw.URL, "", rawInit, nil)
		return st == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "a slot is free again")
}
