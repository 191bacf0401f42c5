//go:build integration

package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// resultsDir is where the admin page test leaves its screenshot: the
// repository's git-ignored results/ folder, or $MCPGATE_RESULTS.
func resultsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MCPGATE_RESULTS")
	if dir == "" {
		dir = filepath.Join("..", "results")
	}
	dir = filepath.Join(dir, "admin-page")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// browser starts headless Chromium ($MCPGATE_CHROMIUM, Debian's package:
// make chromium installs it) with a fresh profile; the returned context
// drives one tab and is cancelled (the browser stopped) at cleanup.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := testenv.Env(t, "MCPGATE_CHROMIUM")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1100),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser process
	})
	// The first run starts the browser and ties it to its context: this
	// one, not a step's shorter one.
	require.NoError(t, chromedp.Do(ctx))
	return ctx
}

// TestAdminPageInChromium loads the admin page in headless Chromium against
// a gateway carrying traffic (calls, pushed events on standalone streams,
// resumes), logs in with the admin token, lets the charts run, saves a
// screenshot under results/admin-page/, then stops the traffic and checks
// every number the page shows against the gateway's /metrics; the session
// search finds a session by id prefix.
func TestAdminPageInChromium(t *testing.T) {
	ctx := browser(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("page-t0ken\n"), 0o600))
	up, gw := mockStack(t, "-admin-token-file", tokenFile, "-ring-size", "8", "-drop-policy", "drop-oldest")
	_ = up

	// Traffic: five sessions with standalone streams, two of them pushed
	// to; calls in a loop; a resume now and then.
	const sessions = 5
	sids := make([]string, sessions)
	for i := range sids {
		sids[i] = rawSession(t, gw.URL, "2025-11-25")
		c, br := openStream(t, gw.URL, sids[i], "")
		t.Cleanup(func() { c.Close() })
		go func() { _ = readUntilEnd(br) }() // the client reads along
	}
	callPush(t, gw.URL, sids[0], 200, 64)
	callPush(t, gw.URL, sids[1], 50, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			callTool(t, gw.URL, sids[n%sessions], "2025-11-25", "echo")
			if n%25 == 0 {
				c, _ := openStream(t, gw.URL, sids[2], "0_0") // a resume; it replaces the stream's connection
				c.Close()
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// step runs browser actions, bounded: a page that never gets there
	// fails the test instead of hanging it.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(sctx, actions...), what)
	}
	page := gw.AdminURL + "/admin/"
	step("load the page", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("token")))
	// Typed and submitted with the keyboard (Enter submits the form, as
	// for a person); clicks below are the elements' own click().
	step("log in", chromedp.SendKeys(chromedp.ID("token"), "page-t0ken"+kb.Enter))
	step("the dashboard", chromedp.WaitVisible(chromedp.CSS("#cards .card")))
	eval := func(expr string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		require.NoError(t, err, expr)
		return s
	}
	waitTicks := func(n int) int {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Poll[int](fmt.Sprintf(`(+document.body.dataset.ticks || 0) >= %d && +document.body.dataset.ticks`, n),
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
		require.NoError(t, err, "the page updated %s times, want %d; it says %q", eval(`document.body.dataset.ticks || "0"`), n,
			eval(`document.getElementById("status").textContent + " | " + JSON.stringify(document.body.dataset) + " | " + location.href + " | " + (typeof ticks) + " " + String(window.ticks)`))
		return got
	}
	waitTicks(6) // six seconds of charts under traffic
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	shotPath := filepath.Join(resultsDir(t), "admin-under-traffic.png")
	require.NoError(t, os.WriteFile(shotPath, shot, 0o644))
	t.Logf("screenshot: %s (%d bytes)", shotPath, len(shot))

	// Quiet: stop the traffic, wait until the counters stand still, let the
	// page update twice more, and compare.
	close(stop)
	wg.Wait()
	callPush(t, gw.URL, sids[0], 0, 0)
	callPush(t, gw.URL, sids[1], 0, 0)
	var m map[string]float64
	prev := -1.0
	for i := 0; i < 100; i++ {
		time.Sleep(300 * time.Millisecond)
		m = scrape(t, gw)
		if m["mcpgate_events_pushed_total"] == prev {
			break
		}
		prev = m["mcpgate_events_pushed_total"]
	}
	n, _ := strconv.Atoi(eval(`document.body.dataset.ticks`))
	waitTicks(n + 2)
	m = scrape(t, gw)

	// read is what the page shows: a card's raw value, a total, or a
	// latency chart's sample count.
	read := func(sel string) float64 {
		t.Helper()
		prop := "textContent"
		switch {
		case strings.Contains(sel, "data-key"):
			prop = "dataset.raw"
		case strings.HasPrefix(sel, "#h-"):
			prop = "dataset.count"
		}
		s := eval(fmt.Sprintf(`String(document.querySelector(%q)?.%s ?? "missing")`, sel, prop))
		v, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err, "%s shows %q", sel, s)
		return v
	}
	sumOf := func(prefix string) float64 {
		total := 0.0
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				total += v
			}
		}
		return total
	}
	for _, c := range []struct {
		sel  string
		want float64
	}{
		{`[data-key="sessions"]`, m["mcpgate_sessions"]},
		{`[data-key="connected"]`, m[`mcpgate_streams{kind="standalone",state="connected"}`] + m[`mcpgate_streams{kind="answer",state="connected"}`]},
		{`[data-key="waiting"]`, m[`mcpgate_streams{kind="standalone",state="waiting"}`] + m[`mcpgate_streams{kind="answer",state="waiting"}`]},
		{`[data-key="ring"]`, m["mcpgate_ring_bytes"]},
		{`[data-total="events"]`, m["mcpgate_events_pushed_total"]},
		{`[data-total="drops"]`, sumOf("mcpgate_events_dropped_total")},
		{`[data-total="resumes"]`, m["mcpgate_resume_hits_total"]},
		{`[data-total="requests"]`, m["mcpgate_requests_total"]},
		{`[data-total="errors"]`, sumOf("mcpgate_upstream_errors_total")},
		{`#h-gateway-tools_call`, m[`mcpgate_request_duration_seconds_count{class="tools_call"}`]},
		{`#h-upstream-tools_call`, m[`mcpgate_upstream_request_duration_seconds_count{class="tools_call"}`]},
	} {
		assert.Equal(t, c.want, read(c.sel), c.sel)
	}
	assert.Equal(t, float64(sessions), m["mcpgate_sessions"])
	assert.Positive(t, m["mcpgate_events_pushed_total"], "the page was looked at under traffic")
	assert.Positive(t, m["mcpgate_resume_hits_total"])

	// The session search.
	step("search", chromedp.SendKeys(chromedp.ID("prefix"), sids[3][:10]+kb.Enter))
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll("#sessionRows tr").length === 1`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "one row")
	matching, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("matching")))
	require.NoError(t, err)
	assert.Equal(t, "1 matching", matching)
	assert.Equal(t, sids[3], eval(`document.querySelector("#sessionRows tr").dataset.session`))
	eval(`document.querySelector("#sessionRows tr a").click(), ""`)
	step("inspect", chromedp.WaitVisible(chromedp.CSS("#detail table")))
	shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(resultsDir(t), "admin-session.png"), shot, 0o644))
}
