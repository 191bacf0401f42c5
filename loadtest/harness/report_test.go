package harness

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleResult() *Result {
	h := newHist()
	for v := int64(100); v <= 5000; v += 7 {
		_ = h.RecordValue(v)
	}
	return &Result{
		Scenario:        ScenarioStream,
		Target:          "http://127.0.0.1:1/mcp",
		ProtocolVersion: DefaultVersion,
		Sessions:        4,
		Started:         time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		WarmupSeconds:   1,
		MeasuredSeconds: 2,
		Primary:         MetricEvent,
		Unit:            "events",
		OfferedRate:     200,
		AchievedRate:    199.5,
		Operations:      24,
		ErrorCount:      3,
		ErrorRate:       0.125,
		Errors:          map[string]int64{"http_503": 2, "timeout": 1},
		Latency:         map[string]LatencySummary{MetricEvent: Summarize(h)},
		Percentiles:     map[string][]PercentilePoint{MetricEvent: PercentileCurve(h)},
		Counts:          map[string]int64{"ops": 24, "sessions_created": 4},
		Events:          map[string]EventCounts{EventsPush: {Offered: 10, Delivered: 9, Received: 10, Lost: 1, Duplicated: 1}},
		LossRate:        0.1,
		Timeline:        []Sample{{T: 1, Rate: 198, P50: 0.2, P99: 0.9, Max: 2}, {T: 2, Rate: 201, Errors: 3, P50: 0.3, P99: 1.1, Max: 3}},
		TargetSamples:   []TargetSample{{T: 0, Goroutines: 10, RSSBytes: 1 << 20}, {T: 5, Goroutines: 12, RSSBytes: 2 << 20}},
		Passed:          false,
		Failures:        []string{"loss rate 10% over the 0% threshold"},
	}
}

func TestWriteSummary(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteSummary(&b, sampleResult()))
	out := b.String()
	for _, want := range []string{
		"scenario stream against http://127.0.0.1:1/mcp",
		"events offered 200/s, achieved 199.5/s",
		"errors 3 (12.500%), loss 10.000%",
		"p50", "p99.9", "event",
		"push", // events table
		"http_503", "timeout",
		"FAIL: loss rate 10% over the 0% threshold",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "PASS")
}

func TestRenderMarkdown(t *testing.T) {
	md := RenderMarkdown(sampleResult(), []string{"latency.svg"})
	for _, want := range []string{
		"# loadtest: stream",
		"**FAIL: loss rate 10% over the 0% threshold**",
		"| achieved | 199.5 events/s |",
		"| event | 701 |",
		"| push | 10 | 9 | 1 | 1 | 0 |",
		"| http_503 | 2 |",
		"| last | 5 | 12 | 0 | 2.0 |",
		"![latency](latency.svg)",
	} {
		assert.Contains(t, md, want)
	}
}

func TestWriteReport(t *testing.T) {
	for _, format := range []string{"svg", "png"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			paths, err := WriteReport(dir, format, sampleResult())
			require.NoError(t, err)
			assert.Len(t, paths, 4)
			for _, name := range []string{ChartLatency, ChartThroughput, ChartLatencyT} {
				fi, err := os.Stat(filepath.Join(dir, name+"."+format))
				require.NoError(t, err)
				assert.Greater(t, fi.Size(), int64(500))
			}
			md, err := os.ReadFile(filepath.Join(dir, ReportFile))
			require.NoError(t, err)
			assert.Contains(t, string(md), "!["+ChartThroughput+"]("+ChartThroughput+"."+format+")")
		})
	}
	_, err := WriteReport(t.TempDir(), "gif", sampleResult())
	assert.ErrorIs(t, err, ErrBadConfig)
}

func TestWriteReportEmpty(t *testing.T) {
	dir := t.TempDir()
	paths, err := WriteReport(dir, "svg", &Result{Scenario: ScenarioPost, Passed: true})
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, ReportFile)}, paths, "no charts without data")
}

func TestResultJSONRoundTrip(t *testing.T) {
	res := sampleResult()
	b, err := json.Marshal(res)
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(b), `"p99_9_ms"`))
	var back Result
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, res.Events, back.Events)
	assert.Equal(t, res.Latency, back.Latency)
	assert.Equal(t, res.Failures, back.Failures)
}

// TestSlopes: the fitted slopes are per minute over the samples after the warm-up.
func TestSlopes(t *testing.T) {
	var samples []TargetSample
	for i := 0; i <= 10; i++ {
		tsec := float64(i * 30)
		samples = append(samples, TargetSample{T: tsec, Goroutines: 100 + tsec/60*2, OpenFDs: 50, RSSBytes: 1e6 + tsec/60*1024})
	}
	samples[0].Goroutines = 1000                                     // during the warm-up: left out
	samples = append(samples, TargetSample{T: 400, Goroutines: 1e6}) // after the load: left out
	sl := slopes(samples, 1, 300)
	require.NotNil(t, sl)
	assert.Equal(t, 10, sl.Samples)
	assert.InDelta(t, 2, sl.GoroutinesPerMinute, 1e-9)
	assert.InDelta(t, 0, sl.OpenFDsPerMinute, 1e-9)
	assert.InDelta(t, 1024, sl.RSSBytesPerMinute, 1e-6)
	assert.Equal(t, 50.0, sl.OpenFDsMin)
	assert.Nil(t, slopes(samples[:1], 0, 300))
}
