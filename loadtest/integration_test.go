//go:build integration

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/loadtest/harness"
	"github.com/mcpgate/mcpgate/loadtest/mockup"
)

// loadtestBin is the binary under test: $MCPGATE_LOADTEST_BIN, or one built by TestMain.
var loadtestBin string

func TestMain(m *testing.M) {
	loadtestBin = os.Getenv("MCPGATE_LOADTEST_BIN")
	var tmp string
	if loadtestBin == "" {
		var err error
		tmp, err = os.MkdirTemp("", "loadtest-it")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		loadtestBin = filepath.Join(tmp, "loadtest")
		out, err := exec.Command("go", "build", "-o", loadtestBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building loadtest: %v\n%s", err, out)
			os.RemoveAll(tmp)
			os.Exit(1)
		}
	}
	code := m.Run()
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	os.Exit(code)
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer starts a child that prints "listening on http://<host:port>/mcp" as its
// first stdout line and returns that URL. The child is stopped with SIGTERM at cleanup;
// its stderr is printed if the test failed.
func startServer(t *testing.T, name, bin string, args ...string) string {
	t.Helper()
	return startServerLines(t, name, bin, 1, args...)[0]
}

// startServerLines starts a child like startServer and returns its first n stdout
// lines' URLs: "listening on <URL>", then (bin/gateway) "admin on <URL>".
func startServerLines(t *testing.T, name, bin string, n int, args ...string) []string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "starting %s", name)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
	})
	lines := make(chan string, n)
	go func() {
		sc := bufio.NewScanner(stdout)
		for i := 0; i < n && sc.Scan(); i++ {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(15 * time.Second)
	var urls []string
	for i := 0; i < n; i++ {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "%s printed %d lines; stderr:\n%s", name, i, stderr.String())
			prefix := "listening on "
			if i > 0 {
				prefix = "admin on "
			}
			url, found := strings.CutPrefix(line, prefix)
			require.True(t, found, "%s line %d %q", name, i+1, line)
			require.True(t, strings.HasPrefix(url, "http://"), "%s URL %q", name, url)
			if i == 0 {
				require.True(t, strings.HasSuffix(url, "/mcp"), "%s URL %q", name, url)
			}
			urls = append(urls, url)
		case <-timeout:
			t.Fatalf("%s did not print its URL; stderr:\n%s", name, stderr.String())
		}
	}
	return urls
}

func startUpstream(t *testing.T, args ...string) string {
	return startServer(t, "upstream", loadtestBin, append([]string{"upstream", "-listen", "127.0.0.1:0"}, args...)...)
}

func stats(t *testing.T, upstreamURL string) mockup.Snapshot {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(upstreamURL, "/mcp") + "/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var snap mockup.Snapshot
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&snap))
	return snap
}

// adminOf maps a gateway's MCP URL to its admin listener's URL, where soak samples
// the gateway's metrics.
var adminOf sync.Map

// runHarness runs `loadtest run` for about two seconds at tiny scale and returns its
// exit code and result.
func runHarness(t *testing.T, target, scenario string, extra ...string) (int, *harness.Result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "result.json")
	args := []string{"run", "-target", target, "-scenario", scenario,
		"-sessions", "4", "-rate", "200", "-duration", "1500ms", "-warmup", "500ms",
		"-conns", "8", "-stream-count", "40", "-stream-rate", "400", "-cut-every", "200ms",
		"-sample-every", "500ms", "-drain", "5s", "-quiet", "-out", out}
	if admin, ok := adminOf.Load(target); ok {
		args = append(args, "-metrics-url", admin.(string)+"/metrics")
	}
	cmd := exec.Command(loadtestBin, append(args, extra...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	b, rerr := os.ReadFile(out)
	require.NoError(t, rerr, "exit %d; stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	var res harness.Result
	require.NoError(t, json.Unmarshal(b, &res))
	t.Logf("%s: exit %d\n%s", scenario, code, stdout.String())
	return code, &res
}

func sumEvents(res *harness.Result, kinds ...string) (e harness.EventCounts) {
	for _, k := range kinds {
		c := res.Events[k]
		e.Offered += c.Offered
		e.Delivered += c.Delivered
		e.Received += c.Received
		e.Lost += c.Lost
		e.Duplicated += c.Duplicated
	}
	return e
}

// checkCounts compares the harness's exact counts with the upstream's.
func checkCounts(t *testing.T, res *harness.Result, snap mockup.Snapshot) {
	t.Helper()
	assert.Equal(t, snap.SessionsCreated, res.Counts["sessions_created"], "sessions created")
	assert.Equal(t, snap.SessionsDeleted, res.Counts["sessions_deleted"], "sessions deleted")
	assert.Equal(t, snap.Requests["tools/call"], res.Counts["req/tools/call"], "tools/call")
	for _, tool := range []string{"echo", "stream", "push"} {
		assert.Equal(t, snap.ToolCalls[tool], res.Counts["tool/"+tool], "tool %s", tool)
	}
	push := sumEvents(res, harness.EventsPush, harness.EventsPushStalled)
	assert.Equal(t, uint64(snap.Events[mockup.KindPush]), push.Offered, "pushed events offered")
	assert.Equal(t, uint64(snap.Events[mockup.KindPush]), push.Received, "pushed events received")
	progress := sumEvents(res, harness.EventsProgress)
	assert.Equal(t, uint64(snap.Events[mockup.KindProgress]), progress.Received, "progress events received")
	assert.Zero(t, push.Lost+progress.Lost, "lost events")
	assert.Zero(t, push.Duplicated+progress.Duplicated, "duplicated events")
}

// runAll runs every scenario against target, with a fresh upstream each, and checks
// the harness against the upstream.
func runAll(t *testing.T, target func(t *testing.T, upstreamURL string) string) {
	for _, scenario := range harness.Scenarios {
		t.Run(scenario, func(t *testing.T) {
			up := startUpstream(t)
			code, res := runHarness(t, target(t, up), scenario)
			assert.Equal(t, 0, code, "exit code; failures %v, errors %v", res.Failures, res.Errors)
			if scenario == harness.ScenarioSoak {
				assert.NotEmpty(t, res.TargetSamples, "the target's metrics were sampled; notes: %v", res.Notes)
			}
			assert.True(t, res.Passed)
			assert.Zero(t, res.ErrorCount, "%v", res.Errors)
			assert.Positive(t, res.Latency[res.Primary].Count, "primary metric %s measured", res.Primary)
			assert.Positive(t, res.AchievedRate)
			checkCounts(t, res, stats(t, up))
			switch scenario {
			case harness.ScenarioResume:
				assert.Positive(t, res.Counts["cuts"])
				assert.Positive(t, res.Counts["resumes"])
			case harness.ScenarioSlow:
				assert.Positive(t, res.Counts["stalls"])
				assert.Positive(t, res.Latency[harness.MetricStalled].Count)
			}
		})
	}
}

// runInjected checks that the harness reports injected losses and duplicates exactly
// and exits 1.
func runInjected(t *testing.T, target func(t *testing.T, upstreamURL string) string) {
	for _, scenario := range []string{harness.ScenarioStream, harness.ScenarioResume} {
		t.Run(scenario, func(t *testing.T) {
			up := startUpstream(t, "-inject-loss-every", "23", "-inject-dup-every", "29")
			code, res := runHarness(t, target(t, up), scenario)
			snap := stats(t, up)
			require.Positive(t, snap.InjectedLoss)
			require.Positive(t, snap.InjectedDup)
			all := sumEvents(res, harness.EventsPush, harness.EventsProgress)
			assert.Equal(t, uint64(snap.InjectedLoss), all.Lost, "lost = injected loss")
			assert.Equal(t, uint64(snap.InjectedDup), all.Duplicated, "duplicated = injected duplicates")
			assert.Equal(t, 1, code, "a run with losses exits 1")
			assert.False(t, res.Passed)
		})
	}
}

func direct(_ *testing.T, upstreamURL string) string { return upstreamURL }

func TestScenariosDirect(t *testing.T) { runAll(t, direct) }

func TestInjectedFaultsDirect(t *testing.T) { runInjected(t, direct) }

func TestSoakSamplesTarget(t *testing.T) {
	up := startUpstream(t)
	_, res := runHarness(t, up, harness.ScenarioSoak)
	require.NotEmpty(t, res.TargetSamples, "notes: %v", res.Notes)
	assert.Positive(t, res.TargetSamples[0].Goroutines)
	assert.Positive(t, res.TargetSamples[0].RSSBytes)
}

func TestReportAndStdoutJSON(t *testing.T) {
	up := startUpstream(t)
	dir := t.TempDir()
	code, _ := runHarness(t, up, harness.ScenarioPost, "-report", dir, "-chart-format", "png")
	require.Equal(t, 0, code)
	for _, f := range []string{"report.md", "latency.png", "throughput.png", "latency-over-time.png"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Positive(t, fi.Size(), f)
	}
}

// gateway returns a target function that starts bin/gateway in front of the upstream.
func gateway(t *testing.T) func(t *testing.T, upstreamURL string) string {
	bin := os.Getenv("MCPGATE_GATEWAY_BIN")
	if bin == "" {
		t.Skip("MCPGATE_GATEWAY_BIN is not set")
	}
	_, err := os.Stat(bin)
	require.NoError(t, err, "MCPGATE_GATEWAY_BIN is set but the binary is missing")
	return func(t *testing.T, upstreamURL string) string {
		urls := startServerLines(t, "gateway", bin, 2, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-upstream", upstreamURL)
		adminOf.Store(urls[0], urls[1])
		return urls[0]
	}
}

func TestScenariosThroughGateway(t *testing.T) { runAll(t, gateway(t)) }

func TestInjectedFaultsThroughGateway(t *testing.T) { runInjected(t, gateway(t)) }
