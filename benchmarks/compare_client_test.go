//go:build bench

// Helpers for benchmarks/compare.sh, driven by environment variables so that one
// compiled test binary serves every step of the script:
//
//	go test -c -tags bench -o results/compare.test ./benchmarks
//	CMP_TARGET=http://127.0.0.1:PORT/mcp CMP_CONC=64 results/compare.test -test.run '^TestCompareClosedLoop$'
//
// TestCompareClosedLoop is a closed-loop tools/call driver (each worker sends its next
// call when the previous answer arrived), for throughput at saturation and for servers
// whose tools the open-loop harness does not call (test_simple_text on the reference
// server). TestCompareIdleSessions opens idle sessions in steps and reads the target's
// Prometheus metrics after each step, for bytes per idle session as a slope.
// TestCompareFreePort prints a free loopback port (for Caddy, which cannot report the
// port the OS chose). TestCompareJWTSetup writes a fresh key for -jwt-key-file and
// prints an access token signed with it. TestCompareMillionIdle opens a million idle
// sessions and watches the gateway's memory, idle CPU and expiry. Each test prints one JSON object per line
// prefixed with "RESULT ".
package benchmarks

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/loadtest/harness"
)

func envString(t *testing.T, name, def string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if def == "" {
		t.Skipf("%s not set", name)
	}
	return def
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// printResult writes v as one "RESULT {json}" line on stdout.
func printResult(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT %s\n", b)
}

// cpuSeconds returns this process's user and system CPU time.
func cpuSeconds() (user, sys float64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds()
}

// TestCompareClosedLoop runs CMP_CONC workers over CMP_SESSIONS sessions, each calling
// CMP_TOOL back to back for CMP_WARMUP + CMP_DURATION. Latency is from the send of each
// call to its answer (closed loop: it is service time under saturation, not the
// open-loop latency at a fixed rate). Requests counts every HTTP request the target
// saw, set-up and teardown included, so the script can divide a proxy's CPU time by it.
func TestCompareClosedLoop(t *testing.T) {
	target := envString(t, "CMP_TARGET", "")
	tool := envString(t, "CMP_TOOL", "echo")
	conc := envInt(t, "CMP_CONC", 64)
	nsess := envInt(t, "CMP_SESSIONS", conc)
	warmup := envDuration(t, "CMP_WARMUP", time.Second)
	duration := envDuration(t, "CMP_DURATION", 5*time.Second)

	authz := os.Getenv("CMP_AUTHORIZATION") // e.g. "Bearer <jwt>", sent with every request
	// CMP_STATELESS=1: requests of the stateless revision (2026-07-28): no
	// initialize, no session; the version, method and name in headers and
	// the per-request _meta in the body.
	stateless := os.Getenv("CMP_STATELESS") != ""
	if stateless {
		nsess = 0
	}
	c, err := harness.NewClient(harness.ClientConfig{
		Target: target, Version: "2025-11-25", Conns: conc, StreamConns: 4, Timeout: 10 * time.Second,
		Authorization: authz,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var requests atomic.Int64
	sessions := make([]*harness.Session, nsess)
	for i := range sessions {
		s, err := c.Initialize()
		requests.Add(2)
		if err != nil {
			t.Fatalf("initialize %d: %v", i, err)
		}
		sessions[i] = s
	}

	u0, s0 := cpuSeconds()
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	hists := make([]*hdrhistogram.Histogram, conc)
	var measured, errs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	// The hot loop is a lean fasthttp client (pre-encoded body, one id per call), so
	// that the load generator takes as little of the two cores as it can.
	hc := &fasthttp.HostClient{Addr: u.Host, MaxConns: conc, MaxConnWaitTimeout: 10 * time.Second,
		ReadBufferSize: 16 << 10, NoDefaultUserAgentHeader: true}
	prefix := []byte(`{"jsonrpc":"2.0","id":`)
	args := `"arguments":{` + map[bool]string{true: `"size":0`}[tool == "echo"] + `}`
	if stateless {
		args += `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	}
	suffix := []byte(`,"method":"tools/call","params":{"name":"` + tool + `",` + args + `}}`)
	var wg sync.WaitGroup
	for w := range conc {
		hists[w] = hdrhistogram.New(1, 60_000_000, 3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(target)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if stateless {
				req.Header.Set("MCP-Protocol-Version", "2026-07-28")
				req.Header.Set("Mcp-Method", "tools/call")
				req.Header.Set("Mcp-Name", tool)
			} else {
				sess := sessions[w%nsess]
				req.Header.Set("Mcp-Session-Id", sess.ID)
				req.Header.Set("MCP-Protocol-Version", sess.Version)
			}
			if authz != "" {
				req.Header.Set("Authorization", authz)
			}
			body := make([]byte, 0, 256)
			for id := int64(w+1) << 32; ; id++ {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				body = append(strconv.AppendInt(append(body[:0], prefix...), id, 10), suffix...)
				req.SetBodyRaw(body)
				err := hc.DoDeadline(req, resp, t0.Add(10*time.Second))
				d := time.Since(t0)
				requests.Add(1)
				switch {
				case err != nil:
					fail(err)
					continue
				case resp.StatusCode() != fasthttp.StatusOK:
					fail(fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body()))
					continue
				case !bytes.Contains(resp.Body(), []byte(`"result"`)):
					fail(fmt.Errorf("no result: %.200s", resp.Body()))
					continue
				}
				if !t0.Before(measureFrom) {
					measured.Add(1)
					_ = hists[w].RecordValue(d.Microseconds())
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	u1, s1 := cpuSeconds()

	for _, s := range sessions {
		_ = c.Delete(s)
		requests.Add(1)
	}
	h := hdrhistogram.New(1, 60_000_000, 3)
	for _, x := range hists {
		h.Merge(x)
	}
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	res := map[string]any{
		"target": target, "tool": tool, "conc": conc, "sessions": nsess, "stateless": stateless,
		"measured_s": duration.Seconds(), "completed": measured.Load(),
		"rps":    float64(measured.Load()) / duration.Seconds(),
		"p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "p99_9_ms": ms(99.9),
		"max_ms": float64(h.Max()) / 1000, "errors": errs.Load(), "requests": requests.Load(),
		"client_cpu_s": (u1 - u0) + (s1 - s0), "client_wall_s": wall,
		"client_gomaxprocs": runtime.GOMAXPROCS(0),
	}
	if e := firstErr.Load(); e != nil {
		res["first_error"] = e
	}
	printResult(t, res)
}

// scrape reads the named metrics from a Prometheus text endpoint.
func scrape(url string, names ...string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

// TestCompareIdleSessions opens sessions (initialize + notifications/initialized) on
// CMP_CONC keep-alive connections until each count in CMP_STEPS (comma-separated,
// ascending) is reached, leaves them idle, waits CMP_SETTLE and reads CMP_METRICS.
// Sessions are never deleted: the script stops the gateway afterwards.
func TestCompareIdleSessions(t *testing.T) {
	target := envString(t, "CMP_TARGET", "")
	metrics := envString(t, "CMP_METRICS", "")
	conc := envInt(t, "CMP_CONC", 32)
	settle := envDuration(t, "CMP_SETTLE", 3*time.Second)
	var steps []int
	for _, f := range strings.Split(envString(t, "CMP_STEPS", "10000,100000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("CMP_STEPS: %v", err)
		}
		steps = append(steps, n)
	}
	c, err := harness.NewClient(harness.ClientConfig{
		Target: target, Version: "2025-11-25", Conns: conc, StreamConns: 1, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_sys_bytes", "go_goroutines", "mcpgate_sessions"}
	opened := 0
	for _, step := range steps {
		openSecs := openSessions(t, c, conc, opened, step)
		prev := opened
		opened = step
		time.Sleep(settle)
		m, err := scrape(metrics, names...)
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		printResult(t, map[string]any{
			"sessions": step, "open_s": openSecs, "open_per_s": float64(step-prev) / openSecs,
			"metrics": m,
		})
	}
}

// openSessions opens sessions number from+1 to to (initialize and
// notifications/initialized each) with conc workers and returns the seconds
// it took; any error fails the test.
func openSessions(t *testing.T, c *harness.Client, conc, from, to int) float64 {
	t.Helper()
	t0 := time.Now()
	var next atomic.Int64
	next.Store(int64(from))
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(to) {
				if _, err := c.Initialize(); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("sessions %d..%d: %d initialize errors, first: %v", from+1, to, errs.Load(), firstErr.Load())
	}
	return time.Since(t0).Seconds()
}

// procCPUSeconds is the user+system CPU time of process pid from
// /proc/pid/stat (in clock ticks of 1/100 s on Linux).
func procCPUSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count from the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	user, _ := strconv.ParseFloat(f[11], 64) // field 14
	sys, _ := strconv.ParseFloat(f[12], 64)  // field 15
	return (user + sys) / 100
}

// TestCompareMillionIdle holds CMP_SESSIONS idle sessions on one gateway (pid
// CMP_PID, started with -session-idle-timeout CMP_IDLE) and reports, as one
// RESULT line: the time to open them (and the RSS at CMP_STEP and at the
// end, for the slope), the gateway's CPU while they sit idle for
// CMP_IDLE_WINDOW (after CMP_IDLE_SETTLE) with nothing else talking to it (no
// scrape either), and
// when expiry ended them (CPU measured from the first expiry to the last): the
// first session must not end before the first
// one opened has been idle CMP_IDLE, and the last must end within
// CMP_IDLE plus the gateway's expiry check period after the last one
// opened. The gateway's session count is read from its /metrics once a
// second while expiry runs (a scrape costs what the streams cost, not the
// sessions).
func TestCompareMillionIdle(t *testing.T) {
	target := envString(t, "CMP_TARGET", "")
	metrics := envString(t, "CMP_METRICS", "")
	pid := envInt(t, "CMP_PID", 0)
	n := envInt(t, "CMP_SESSIONS", 1000000)
	step := envInt(t, "CMP_STEP", n/10)
	conc := envInt(t, "CMP_CONC", 32)
	idle := envDuration(t, "CMP_IDLE", 0)
	window := envDuration(t, "CMP_IDLE_WINDOW", 20*time.Second)
	settle := envDuration(t, "CMP_SETTLE", 3*time.Second)
	idleSettle := envDuration(t, "CMP_IDLE_SETTLE", 30*time.Second)
	if pid == 0 || idle == 0 {
		t.Skip("CMP_PID and CMP_IDLE must be set")
	}
	c, err := harness.NewClient(harness.ClientConfig{
		Target: target, Version: "2025-11-25", Conns: conc, StreamConns: 1, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "mcpgate_sessions"}
	res := map[string]any{"sessions": n, "step": step, "idle_timeout_s": idle.Seconds()}

	firstOpen := time.Now()
	cpu0 := procCPUSeconds(t, pid)
	openSessions(t, c, conc, 0, step)
	time.Sleep(settle)
	atStep, err := scrape(metrics, names...)
	if err != nil {
		t.Fatal(err)
	}
	openSessions(t, c, conc, step, n)
	lastOpen := time.Now()
	openCPU := procCPUSeconds(t, pid) - cpu0
	res["open_s"] = lastOpen.Sub(firstOpen).Seconds() - settle.Seconds()
	res["open_cpu_us_per_session"] = openCPU / float64(n) * 1e6
	time.Sleep(settle)
	atEnd, err := scrape(metrics, names...)
	if err != nil {
		t.Fatal(err)
	}
	if atEnd["mcpgate_sessions"] != float64(n) {
		t.Fatalf("the gateway holds %v sessions, want %d (did expiry start already? raise CMP_IDLE)", atEnd["mcpgate_sessions"], n)
	}
	res["at_step"], res["at_end"] = atStep, atEnd
	res["rss_per_session_bytes"] = (atEnd["process_resident_memory_bytes"] - atStep["process_resident_memory_bytes"]) / float64(n-step)
	res["heap_per_session_bytes"] = (atEnd["go_memstats_heap_inuse_bytes"] - atStep["go_memstats_heap_inuse_bytes"]) / float64(n-step)

	// Idle: nothing talks to the gateway, after CMP_IDLE_SETTLE for the runtime to
	// finish what opening them left (the last GC cycle, returning memory).
	// The runtime forces a GC cycle every 2 minutes, which at a million sessions
	// marks the whole heap: a window of 2 minutes or more averages it in, a shorter
	// one may or may not hold one (gc_cycles_in_window says).
	time.Sleep(idleSettle)
	gc0, err := scrape(metrics, "go_gc_duration_seconds_count")
	if err != nil {
		t.Fatal(err)
	}
	w0, c0 := time.Now(), procCPUSeconds(t, pid)
	time.Sleep(window)
	res["idle_cpu_pct"] = (procCPUSeconds(t, pid) - c0) / time.Since(w0).Seconds() * 100
	res["idle_window_s"] = window.Seconds()
	if gc1, err := scrape(metrics, "go_gc_duration_seconds_count"); err == nil {
		res["gc_cycles_in_window"] = gc1["go_gc_duration_seconds_count"] - gc0["go_gc_duration_seconds_count"]
	}
	if time.Since(firstOpen) >= idle {
		t.Fatalf("the idle window ran into expiry: raise CMP_IDLE")
	}

	// Expiry: poll the session count once a second until none is left.
	var firstGone, allGone time.Time
	deadline := lastOpen.Add(idle + 2*time.Minute)
	e0 := procCPUSeconds(t, pid)
	for time.Now().Before(deadline) {
		m, err := scrape(metrics, "mcpgate_sessions")
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if firstGone.IsZero() && m["mcpgate_sessions"] < float64(n) {
			firstGone = now
			e0 = procCPUSeconds(t, pid)
		}
		if m["mcpgate_sessions"] == 0 {
			allGone = now
			break
		}
		time.Sleep(time.Second)
	}
	if allGone.IsZero() {
		t.Fatalf("sessions left 2 minutes past their idle timeout")
	}
	res["expiry_cpu_us_per_session"] = (procCPUSeconds(t, pid) - e0) / float64(n) * 1e6
	res["first_expiry_after_first_open_s"] = firstGone.Sub(firstOpen).Seconds()
	res["last_expiry_after_last_open_s"] = allGone.Sub(lastOpen).Seconds()
	res["last_expiry_late_s"] = allGone.Sub(lastOpen).Seconds() - idle.Seconds()
	if early := firstGone.Sub(firstOpen); early < idle {
		t.Errorf("a session ended %.1f s after the first was opened, before its idle timeout %s", early.Seconds(), idle)
	}
	printResult(t, res)
}

// TestCompareFreePort prints a loopback port that was free a moment ago.
func TestCompareFreePort(t *testing.T) {
	if os.Getenv("CMP_FREE_PORT") == "" {
		t.Skip("CMP_FREE_PORT not set")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	fmt.Printf("PORT %d\n", port)
}

// TestCompareJWTSetup makes an RS256 key pair, writes the public key to
// $CMP_JWT_DIR/key.pem (for the gateway's -jwt-key-file) and prints a token valid for
// two hours for issuer https://issuer.bench and audience http://bench/mcp as
// "TOKEN <jwt>", the shape of an access token an OAuth authorization server issues.
func TestCompareJWTSetup(t *testing.T) {
	dir := envString(t, "CMP_JWT_DIR", "")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": "https://issuer.bench", "aud": "http://bench/mcp", "sub": "bench-client", "client_id": "bench",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(), "scope": "mcp:tools mcp:resources",
		"jti": strconv.FormatInt(now.UnixNano(), 36),
	})
	tok.Header["kid"] = "bench-1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("TOKEN %s\n", s)
}
