package harness

import (
	"fmt"
	"image/color"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Chart file names written by WriteReport (with the chosen extension).
const (
	ChartLatency    = "latency"    // latency by percentile, one line per metric
	ChartThroughput = "throughput" // primary completions per second over time
	ChartLatencyT   = "latency-over-time"
	ReportFile      = "report.md"
)

// WriteReport writes a Markdown summary of res and its charts into dir (created if
// needed). format is "svg" or "png". It returns the paths written.
func WriteReport(dir, format string, res *Result) ([]string, error) {
	if format != "svg" && format != "png" {
		return nil, fmt.Errorf("harness.WriteReport: chart format %q: %w", format, ErrBadConfig)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("harness.WriteReport: %w", err)
	}
	var written []string
	charts := []struct {
		name string
		plot func() (*plot.Plot, error)
	}{
		{ChartLatency, func() (*plot.Plot, error) { return latencyChart(res) }},
		{ChartThroughput, func() (*plot.Plot, error) { return throughputChart(res) }},
		{ChartLatencyT, func() (*plot.Plot, error) { return latencyTimeChart(res) }},
	}
	var embedded []string
	for _, c := range charts {
		p, err := c.plot()
		if err != nil {
			return written, fmt.Errorf("harness.WriteReport: %s chart: %w", c.name, err)
		}
		if p == nil {
			continue
		}
		path := filepath.Join(dir, c.name+"."+format)
		if err := p.Save(8*vg.Inch, 4*vg.Inch, path); err != nil {
			return written, fmt.Errorf("harness.WriteReport: %w", err)
		}
		written = append(written, path)
		embedded = append(embedded, c.name+"."+format)
	}
	path := filepath.Join(dir, ReportFile)
	if err := os.WriteFile(path, []byte(RenderMarkdown(res, embedded)), 0o644); err != nil {
		return written, fmt.Errorf("harness.WriteReport: %w", err)
	}
	return append(written, path), nil
}

// RenderMarkdown renders res as a Markdown report embedding the given chart files.
func RenderMarkdown(res *Result, charts []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# loadtest: %s\n\n", res.Scenario)
	verdict := "PASS"
	if !res.Passed {
		verdict = "FAIL: " + strings.Join(res.Failures, "; ")
	}
	fmt.Fprintf(&b, "**%s**\n\n", verdict)
	b.WriteString("| setting | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| target | `%s` |\n", res.Target)
	fmt.Fprintf(&b, "| protocol | %s |\n", res.ProtocolVersion)
	fmt.Fprintf(&b, "| sessions / streams | %d / %d |\n", res.Sessions, res.Streams)
	fmt.Fprintf(&b, "| started | %s |\n", res.Started.Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(&b, "| warm-up / measured | %.1f s / %.1f s |\n", res.WarmupSeconds, res.MeasuredSeconds)
	fmt.Fprintf(&b, "| offered | %.0f %s/s |\n", res.OfferedRate, res.Unit)
	fmt.Fprintf(&b, "| achieved | %.1f %s/s |\n", res.AchievedRate, res.Unit)
	fmt.Fprintf(&b, "| operations | %d |\n", res.Operations)
	fmt.Fprintf(&b, "| errors | %d (%.3f%%) |\n", res.ErrorCount, 100*res.ErrorRate)
	fmt.Fprintf(&b, "| loss | %.3f%% |\n", 100*res.LossRate)
	fmt.Fprintf(&b, "| generator | %.2f s CPU, %.0f%% of a core, GOMAXPROCS %d |\n\n",
		res.Generator.CPUSeconds, 100*res.Generator.CPUShare, res.Generator.GOMAXPROCS)

	b.WriteString("## Latency (ms)\n\n| metric | count | p50 | p90 | p99 | p99.9 | max | mean |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range slices.Sorted(maps.Keys(res.Latency)) {
		s := res.Latency[name]
		fmt.Fprintf(&b, "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", name, s.Count, s.P50, s.P90, s.P99, s.P999, s.Max, s.Mean)
	}
	if len(res.Events) > 0 {
		b.WriteString("\n## Events\n\n| kind | offered | delivered | lost | duplicated | late |\n|---|---:|---:|---:|---:|---:|\n")
		for _, k := range slices.Sorted(maps.Keys(res.Events)) {
			e := res.Events[k]
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d |\n", k, e.Offered, e.Delivered, e.Lost, e.Duplicated, e.Late)
		}
	}
	if len(res.Errors) > 0 {
		b.WriteString("\n## Errors by kind\n\n| kind | count |\n|---|---:|\n")
		for _, k := range slices.Sorted(maps.Keys(res.Errors)) {
			fmt.Fprintf(&b, "| %s | %d |\n", k, res.Errors[k])
		}
	}
	if len(res.TargetSamples) > 0 {
		first, last := res.TargetSamples[0], res.TargetSamples[len(res.TargetSamples)-1]
		b.WriteString("\n## Target samples\n\n| | t (s) | goroutines | open fds | RSS (MiB) |\n|---|---:|---:|---:|---:|\n")
		fmt.Fprintf(&b, "| first | %.0f | %.0f | %.0f | %.1f |\n", first.T, first.Goroutines, first.OpenFDs, first.RSSBytes/(1<<20))
		fmt.Fprintf(&b, "| last | %.0f | %.0f | %.0f | %.1f |\n", last.T, last.Goroutines, last.OpenFDs, last.RSSBytes/(1<<20))
		if sl := res.TargetSlopes; sl != nil {
			fmt.Fprintf(&b, "| slope per minute after the warm-up (%d samples) | | %+.2f | %+.2f | %+.3f |\n",
				sl.Samples, sl.GoroutinesPerMinute, sl.OpenFDsPerMinute, sl.RSSBytesPerMinute/(1<<20))
		}
	}
	b.WriteString("\n## Counts\n\n| counter | value |\n|---|---:|\n")
	for _, k := range slices.Sorted(maps.Keys(res.Counts)) {
		fmt.Fprintf(&b, "| %s | %d |\n", k, res.Counts[k])
	}
	if len(charts) > 0 {
		b.WriteString("\n## Charts\n\n")
		for _, c := range charts {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(c, filepath.Ext(c)), c)
		}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "> note: %s\n", n)
	}
	return b.String()
}

// nines maps a percentile to the "number of nines" axis: 90 -> 1, 99 -> 2, 99.9 -> 3.
// 100 is drawn at maxNines.
func nines(p float64) float64 {
	if p >= 100 {
		return maxNines
	}
	return -math.Log10(1 - p/100)
}

const maxNines = 5.5

// minPlotMillis is the floor of the log-scale latency axis (1 µs, the histogram floor).
const minPlotMillis = 0.001

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

func addLine(p *plot.Plot, i int, name string, xys plotter.XYs) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = palette[i%len(palette)]
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// latencyChart plots every metric's latency by percentile. Nil when nothing was measured.
func latencyChart(res *Result) (*plot.Plot, error) {
	if len(res.Percentiles) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: latency by percentile", res.Scenario)
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms)"
	p.X.Min, p.X.Max = 0, maxNines
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{
		{Value: 0, Label: "0%"}, {Value: nines(90), Label: "90%"}, {Value: nines(99), Label: "99%"},
		{Value: nines(99.9), Label: "99.9%"}, {Value: nines(99.99), Label: "99.99%"},
		{Value: nines(99.999), Label: "99.999%"}, {Value: maxNines, Label: "max"},
	})
	// Metrics differ by orders of magnitude (an event in microseconds, a stream call in
	// hundreds of milliseconds): a log scale keeps each readable.
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = false
	p.Legend.Left = false
	for i, name := range slices.Sorted(maps.Keys(res.Percentiles)) {
		pts := res.Percentiles[name]
		if len(pts) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(pts))
		for j, pt := range pts {
			xys[j] = plotter.XY{X: nines(pt.Percentile), Y: max(pt.Millis, minPlotMillis)}
		}
		if err := addLine(p, i, name, xys); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// throughputChart plots the primary rate and errors per second. Nil without a timeline.
func throughputChart(res *Result) (*plot.Plot, error) {
	if len(res.Timeline) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s per second (offered %.0f/s)", res.Scenario, res.Unit, res.OfferedRate)
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = res.Unit + "/s"
	p.Y.Min = 0
	rate := make(plotter.XYs, len(res.Timeline))
	errs := make(plotter.XYs, len(res.Timeline))
	for i, s := range res.Timeline {
		rate[i] = plotter.XY{X: s.T, Y: s.Rate}
		errs[i] = plotter.XY{X: s.T, Y: float64(s.Errors)}
	}
	if err := addLine(p, 0, res.Unit+"/s", rate); err != nil {
		return nil, err
	}
	if err := addLine(p, 1, "errors/s", errs); err != nil {
		return nil, err
	}
	return p, nil
}

// latencyTimeChart plots the primary metric's p50, p99 and max per second.
func latencyTimeChart(res *Result) (*plot.Plot, error) {
	if len(res.Timeline) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s latency per second", res.Scenario, res.Primary)
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "latency (ms)"
	p.Y.Min = 0
	series := []struct {
		name string
		get  func(Sample) float64
	}{
		{"p50", func(s Sample) float64 { return s.P50 }},
		{"p99", func(s Sample) float64 { return s.P99 }},
		{"max", func(s Sample) float64 { return s.Max }},
	}
	for i, se := range series {
		xys := make(plotter.XYs, len(res.Timeline))
		for j, s := range res.Timeline {
			xys[j] = plotter.XY{X: s.T, Y: se.get(s)}
		}
		if err := addLine(p, i, se.name, xys); err != nil {
			return nil, err
		}
	}
	return p, nil
}
