//go:build conformance

package gateway_test

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

var totalLine = regexp.MustCompile(`(?m)^Total: (\d+) passed, (\d+) failed`)

type suiteResult struct {
	passed, failed int
	exit           int
	output         string
}

// runSuite runs the official conformance suite against url.
func runSuite(t *testing.T, bin, url string, args ...string) suiteResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append([]string{"server", "--url", url, "-o", t.TempDir()}, args...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := suiteResult{output: out.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("conformance suite: %v\n%s", err, out.String())
	}
	m := totalLine.FindStringSubmatch(r.output)
	require.NotNil(t, m, "no summary line in the suite's output:\n%s", r.output)
	r.passed, _ = strconv.Atoi(m[1])
	r.failed, _ = strconv.Atoi(m[2])
	return r
}

// summary is the part of the suite's output after its per-scenario lines.
func summary(out string) string {
	if i := strings.Index(out, "Total:"); i >= 0 {
		return out[i:]
	}
	return out
}

// TestConformance runs the official MCP conformance suite
// (--requirements 2025-11-25) against the reference server directly and
// through the gateway, in the same run. The gateway must exit 0 with no
// failure and at least the direct pass count.
func TestConformance(t *testing.T) {
	suite := testenv.Env(t, "MCPGATE_CONFORMANCE")
	everything := testenv.Env(t, "MCPGATE_EVERYTHING_SERVER")
	gwBin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")

	up := testenv.StartEverything(t, everything, true)
	direct := runSuite(t, suite, up.URL, "--requirements", "2025-11-25")
	t.Logf("direct against the reference server:\n%s", summary(direct.output))
	require.Zero(t, direct.exit, "the reference server itself must pass:\n%s", direct.output)

	gw := testenv.StartGateway(t, gwBin, up.URL)
	via := runSuite(t, suite, gw.URL, "--requirements", "2025-11-25")
	t.Logf("through mcpgate:\n%s", summary(via.output))
	require.Zero(t, via.exit, "suite exit code through the gateway:\n%s", via.output)
	require.Zero(t, via.failed, "failed checks through the gateway:\n%s", via.output)
	require.GreaterOrEqual(t, via.passed, direct.passed, "the gateway must pass every check the server passes directly")
	require.GreaterOrEqual(t, via.passed, 82, "2025-11-25 requirement set: 82 checks")
	for _, s := range []string{"server-session-lifecycle", "server-sse-polling", "json-schema-2020-12", "dns-rebinding-protection"} {
		require.Regexp(t, regexp.MustCompile(`✓ `+regexp.QuoteMeta(s)+`: \d+ passed, 0 failed`), via.output, "scenario %s", s)
	}
	t.Logf("CONFORMANCE: direct %d passed, %d failed; through mcpgate %d passed, %d failed", direct.passed, direct.failed, via.passed, via.failed)
}

// TestConformanceStdioUpstream runs the same suite through the gateway in
// front of the reference server run as a stdio upstream (a process per
// session; everything-server speaks stdio without -http). It must exit 0
// with no failure and the full 2025-11-25 requirement set.
func TestConformanceStdioUpstream(t *testing.T) {
	suite := testenv.Env(t, "MCPGATE_CONFORMANCE")
	everything := testenv.Env(t, "MCPGATE_EVERYTHING_SERVER")
	gwBin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")

	gw := testenv.StartGateway(t, gwBin, "stdio:"+everything)
	via := runSuite(t, suite, gw.URL, "--requirements", "2025-11-25")
	t.Logf("through mcpgate, stdio upstream:\n%s", summary(via.output))
	require.Zero(t, via.exit, "suite exit code through the gateway:\n%s", via.output)
	require.Zero(t, via.failed, "failed checks through the gateway:\n%s", via.output)
	require.GreaterOrEqual(t, via.passed, 82, "2025-11-25 requirement set: 82 checks")
	t.Logf("CONFORMANCE (stdio upstream): through mcpgate %d passed, %d failed", via.passed, via.failed)
}

// eraRow is one client era and upstream of the bridging table (README,
// "Both eras"): the suite's result through the gateway, and the scored
// scenarios allowed to fail there, each listed in the README with why.
type eraRow struct {
	name         string
	requirements string
	upstream     func(t *testing.T, everything string) string
	flags        []string
	allowed      []string // scored scenarios that cannot be bridged
	minPassed    int
}

// scoredFailures returns the failed scenarios of an output, without the
// unscored ones (extensions, pending) the suite lists after the total.
func scoredFailures(out string) []string {
	unscored := map[string]bool{}
	if i := strings.Index(out, "Not scored"); i >= 0 {
		for _, m := range regexp.MustCompile(`(?m)^\s+[✓✗] (\S+) \(`).FindAllStringSubmatch(out[i:], -1) {
			unscored[m[1]] = true
		}
	}
	var failed []string
	for _, m := range regexp.MustCompile(`(?m)^✗ (\S+):`).FindAllStringSubmatch(out, -1) {
		if !unscored[m[1]] {
			failed = append(failed, m[1])
		}
	}
	return failed
}

var scenarioLine = regexp.MustCompile(`(?m)^([✓✗]) ([A-Za-z0-9_-]+): (\d+) passed, (\d+) failed`)

// failedScenarios lists the scenarios the suite's output marks failed.
func failedScenarios(out string) []string {
	var failed []string
	for _, m := range scenarioLine.FindAllStringSubmatch(out, -1) {
		if m[1] == "✗" {
			failed = append(failed, m[2])
		}
	}
	return failed
}

// noServerRequests are the scenarios whose reference tools send
// server-to-client requests, which a stateless reference server refuses
// itself: nothing reaches the gateway to bridge (they fail directly too).
var noServerRequests = []string{"tools-call-sampling", "tools-call-elicitation", "elicitation-sep1034-defaults", "elicitation-sep1330-enums"}

// TestConformanceEras runs the pinned suite through the gateway for each
// pairing of client era and upstream era: the stateless revision against a
// stateless upstream (passed through) and against a session-era upstream
// over HTTP and over stdio (bridged onto pooled sessions), and the session
// era against a stateless upstream (bridged). Every scored scenario passes
// except those the README lists as not bridgeable.
func TestConformanceEras(t *testing.T) {
	suite := testenv.Env(t, "MCPGATE_CONFORMANCE")
	everything := testenv.Env(t, "MCPGATE_EVERYTHING_SERVER")
	gwBin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	stateless := func(t *testing.T, bin string) string { return testenv.StartEverything(t, bin, false).URL }
	stateful := func(t *testing.T, bin string) string { return testenv.StartEverything(t, bin, true).URL }
	stdio := func(_ *testing.T, bin string) string { return "stdio:" + bin }
	rows := []eraRow{
		{name: "2026-07-28 to a stateless upstream", requirements: "2026-07-28", upstream: stateless, minPassed: 160},
		// The reference stateless server serves the session era too (each
		// request on a throwaway session): passed through.
		{name: "2025-11-25 to a stateless upstream", requirements: "2025-11-25", upstream: stateless, minPassed: 70,
			// The reference server's sampling and elicitation tools send
			// server-to-client requests, which it refuses itself on a
			// stateless server (an error result, not input requests).
			allowed: noServerRequests},
		{name: "2025-11-25 bridged onto the stateless revision", requirements: "2025-11-25", upstream: stateless,
			flags: []string{"-upstream-era", "stateless"}, minPassed: 70, allowed: noServerRequests},
		{name: "2026-07-28 to a session-era upstream", requirements: "2026-07-28", upstream: stateful, flags: []string{"-advertise-stateless"}, minPassed: 155,
			// The server's input request keys (user_name) become
			// server-to-client requests on a session-era server; the key a
			// stateless client sees is the gateway's.
			allowed: []string{"input-required-result-basic-elicitation"}},
		{name: "2026-07-28 to a stdio upstream", requirements: "2026-07-28", upstream: stdio, flags: []string{"-advertise-stateless"}, minPassed: 155,
			allowed: []string{"input-required-result-basic-elicitation"}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			gw := testenv.StartGateway(t, gwBin, row.upstream(t, everything), row.flags...)
			via := runSuite(t, suite, gw.URL, "--requirements", row.requirements)
			t.Logf("through mcpgate:\n%s", summary(via.output))
			failed := scoredFailures(via.output)
			for _, f := range failed {
				require.Contains(t, row.allowed, f, "scored scenario %s failed through the gateway:\n%s", f, via.output)
			}
			require.GreaterOrEqual(t, via.passed, row.minPassed)
			t.Logf("CONFORMANCE (%s): %d passed, %d failed (scored failures: %v)", row.name, via.passed, via.failed, failed)
		})
	}
}

// TestConformanceLegacySSEUpstream runs the suite directly against npm's
// server-everything (2026.8.31) in its own Streamable HTTP mode, and
// through the gateway in front of the same server's legacy HTTP+SSE mode
// (sse+http://.../sse), in the same run. The server fails some scenarios
// itself (its tools and resources are not the conformance ones, see the
// README); through the gateway it must be no worse: every scenario that
// fails through the gateway fails directly too, and no fewer checks pass.
func TestConformanceLegacySSEUpstream(t *testing.T) {
	suite := testenv.Env(t, "MCPGATE_CONFORMANCE")
	node := testenv.Env(t, "MCPGATE_NODE")
	entry := testenv.Env(t, "MCPGATE_SERVER_EVERYTHING_JS")
	gwBin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")

	direct := runSuite(t, suite, testenv.StartServerEverything(t, node, entry).URL, "--requirements", "2025-11-25")
	t.Logf("direct against server-everything (streamableHttp):\n%s", summary(direct.output))
	sse := testenv.StartServerEverythingSSE(t, node, entry)
	gw := testenv.StartGateway(t, gwBin, "sse+"+sse.URL)
	via := runSuite(t, suite, gw.URL, "--requirements", "2025-11-25")
	t.Logf("through mcpgate, legacy HTTP+SSE upstream (server-everything sse):\n%s", summary(via.output))

	directFailed, viaFailed := failedScenarios(direct.output), failedScenarios(via.output)
	require.NotEmpty(t, scenarioLine.FindAllString(via.output, -1), "no scenario lines in the suite's output:\n%s", via.output)
	for _, s := range viaFailed {
		assert.Contains(t, directFailed, s, "scenario %s fails through the gateway but not directly", s)
	}
	assert.GreaterOrEqual(t, via.passed, direct.passed, "checks passed through the gateway")
	for _, s := range []string{"server-initialize", "tools-list", "tools-call-simple-text", "server-session-lifecycle", "dns-rebinding-protection"} {
		require.Regexp(t, regexp.MustCompile(`✓ `+regexp.QuoteMeta(s)+`: \d+ passed, 0 failed`), via.output, "scenario %s", s)
	}
	t.Logf("CONFORMANCE (legacy HTTP+SSE upstream): server-everything directly %d passed, %d failed (failing scenarios: %s); through mcpgate %d passed, %d failed (failing scenarios: %s)",
		direct.passed, direct.failed, strings.Join(directFailed, " "), via.passed, via.failed, strings.Join(viaFailed, " "))
}
