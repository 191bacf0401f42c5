package harness

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// EventCounts accounts the measured events of one kind. Offered is what the server
// says it sent (its last sequence numbers); Delivered counts distinct sequence numbers
// received; Received counts every arrival, duplicates included.
type EventCounts struct {
	Offered    uint64 `json:"offered"`
	Delivered  uint64 `json:"delivered"`
	Received   uint64 `json:"received"`
	Lost       uint64 `json:"lost"`
	Duplicated uint64 `json:"duplicated"`
	Late       uint64 `json:"late"`
}

// Sample is one second of the run's timeline, for the primary metric.
type Sample struct {
	T      float64 `json:"t_s"`    // seconds since the load started
	Rate   float64 `json:"rate"`   // completions (or deliveries) in this second
	Errors int64   `json:"errors"` // errors in this second
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
	Warmup bool    `json:"warmup,omitempty"`
}

// TargetSample is one reading of the target's metrics endpoint (soak).
type TargetSample struct {
	T          float64 `json:"t_s"`
	Goroutines float64 `json:"goroutines"`
	RSSBytes   float64 `json:"rss_bytes"`
	OpenFDs    float64 `json:"open_fds"`
	HeapBytes  float64 `json:"heap_inuse_bytes"`
}

// TargetSlopes are the least-squares slopes, per minute, of the target samples taken
// while the load ran, after the warm-up (soak): flat resource use has slopes near zero.
type TargetSlopes struct {
	Samples             int     `json:"samples"`
	GoroutinesPerMinute float64 `json:"goroutines_per_min"`
	OpenFDsPerMinute    float64 `json:"open_fds_per_min"`
	RSSBytesPerMinute   float64 `json:"rss_bytes_per_min"`
	HeapBytesPerMinute  float64 `json:"heap_inuse_bytes_per_min"`
	// Min and max over the same samples.
	GoroutinesMin, GoroutinesMax float64
	OpenFDsMin, OpenFDsMax       float64
	RSSBytesMin, RSSBytesMax     float64
	HeapBytesMin, HeapBytesMax   float64
}

// slopes fits a line to each series of samples with from <= t <= to (seconds).
func slopes(samples []TargetSample, from, to float64) *TargetSlopes {
	var xs, gs, fs, rs, hs []float64
	for _, s := range samples {
		if s.T >= from && s.T <= to {
			xs = append(xs, s.T/60)
			gs = append(gs, s.Goroutines)
			fs = append(fs, s.OpenFDs)
			rs = append(rs, s.RSSBytes)
			hs = append(hs, s.HeapBytes)
		}
	}
	if len(xs) < 2 {
		return nil
	}
	out := &TargetSlopes{Samples: len(xs)}
	out.GoroutinesPerMinute, out.GoroutinesMin, out.GoroutinesMax = fitSlope(xs, gs)
	out.OpenFDsPerMinute, out.OpenFDsMin, out.OpenFDsMax = fitSlope(xs, fs)
	out.RSSBytesPerMinute, out.RSSBytesMin, out.RSSBytesMax = fitSlope(xs, rs)
	out.HeapBytesPerMinute, out.HeapBytesMin, out.HeapBytesMax = fitSlope(xs, hs)
	return out
}

// fitSlope returns the least-squares slope of ys over xs, and ys' minimum and maximum.
func fitSlope(xs, ys []float64) (slope, lo, hi float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	lo, hi = ys[0], ys[0]
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
		lo, hi = min(lo, ys[i]), max(hi, ys[i])
	}
	if d := n*sxx - sx*sx; d != 0 {
		slope = (n*sxy - sx*sy) / d
	}
	return slope, lo, hi
}

// Result is the outcome of a run; it is what -out writes as JSON.
type Result struct {
	Scenario        string `json:"scenario"`
	Target          string `json:"target"`
	ProtocolVersion string `json:"protocol_version"`
	Sessions        int    `json:"sessions"`
	// Streams is the number of GET streams the run opened.
	Streams         int       `json:"streams"`
	Started         time.Time `json:"started"`
	ElapsedSeconds  float64   `json:"elapsed_s"`
	WarmupSeconds   float64   `json:"warmup_s"`
	MeasuredSeconds float64   `json:"measured_s"`
	// Primary is the metric the rates refer to; Unit names what it counts.
	Primary string `json:"primary"`
	Unit    string `json:"unit"`
	// OfferedRate is the configured load per second; AchievedRate is Primary's measured
	// completions per second.
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	// Operations counts every HTTP request sent, warm-up and teardown included.
	Operations int64   `json:"operations"`
	ErrorCount int64   `json:"error_count"`
	ErrorRate  float64 `json:"error_rate"`
	// Errors counts errors by kind (see ErrorKind).
	Errors map[string]int64 `json:"errors"`
	// Latency summarizes the measured latencies by metric.
	Latency     map[string]LatencySummary    `json:"latency"`
	Percentiles map[string][]PercentilePoint `json:"percentiles"`
	// Counts holds exact counters, warm-up and teardown included: requests by method
	// ("req/tools/call", "req/GET", "req/DELETE"), tool calls ("tool/echo"), sessions
	// created and deleted, cuts, resumes, stalls.
	Counts map[string]int64 `json:"counts"`
	// Events accounts pushed and progress events by kind (see EventsPush and friends).
	Events map[string]EventCounts `json:"events"`
	// LossRate is lost/offered over the kinds whose readers did not stall.
	LossRate float64 `json:"loss_rate"`
	// Generator describes the load generator process itself.
	Generator     GeneratorStats `json:"generator"`
	Timeline      []Sample       `json:"timeline"`
	TargetSamples []TargetSample `json:"target_samples,omitempty"`
	// TargetSlopes fit the target samples after the warm-up (soak).
	TargetSlopes *TargetSlopes `json:"target_slopes,omitempty"`
	Notes        []string      `json:"notes,omitempty"`
	// Passed is false when the error or loss rate passed its threshold; Failures says
	// which.
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures,omitempty"`
}

// GeneratorStats is the load generator's own footprint during the run, so a report can
// show how much of the machine the harness took.
type GeneratorStats struct {
	GOMAXPROCS int     `json:"gomaxprocs"`
	CPUSeconds float64 `json:"cpu_s"`     // user + system CPU time used by the run
	CPUShare   float64 `json:"cpu_share"` // CPUSeconds / elapsed seconds (1.0 = one core)
}

// processCPU returns this process's user + system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// primaryOf returns the primary metric and its unit for a scenario.
func primaryOf(scenario string) (string, string) {
	switch scenario {
	case ScenarioStream, ScenarioSlow, ScenarioResume:
		return MetricEvent, "events"
	case ScenarioChurn:
		return MetricCycle, "sessions"
	}
	return MetricCall, "calls"
}

func (r *runner) result(began, ended time.Time, cpu time.Duration) *Result {
	t := r.rec.Merge()
	primary, unit := primaryOf(r.cfg.Scenario)
	res := &Result{
		Scenario:        r.cfg.Scenario,
		Target:          r.cfg.Target,
		ProtocolVersion: r.cfg.Version,
		Sessions:        r.cfg.Sessions,
		Streams:         int(r.streamsOpened.Load()),
		Started:         began.UTC(),
		ElapsedSeconds:  ended.Sub(began).Seconds(),
		WarmupSeconds:   r.cfg.Warmup.Seconds(),
		MeasuredSeconds: r.cfg.Duration.Seconds(),
		Primary:         primary,
		Unit:            unit,
		OfferedRate:     r.cfg.Rate,
		Operations:      t.Counts["ops"],
		ErrorCount:      t.ErrorCount(),
		Errors:          t.Errors,
		Latency:         make(map[string]LatencySummary),
		Percentiles:     make(map[string][]PercentilePoint),
		Counts:          t.Counts,
		Events:          make(map[string]EventCounts),
		Timeline:        r.timeline,
		TargetSamples:   r.targetSamples,
		TargetSlopes:    slopes(r.targetSamples, r.cfg.Warmup.Seconds(), (r.cfg.Warmup + r.cfg.Duration).Seconds()),
		Notes:           r.notes,
		Passed:          true,
		Generator: GeneratorStats{
			GOMAXPROCS: runtime.GOMAXPROCS(0),
			CPUSeconds: cpu.Seconds(),
		},
	}
	if el := ended.Sub(began).Seconds(); el > 0 {
		res.Generator.CPUShare = res.Generator.CPUSeconds / el
	}
	for name, h := range t.Latency {
		res.Latency[name] = Summarize(h)
		res.Percentiles[name] = PercentileCurve(h)
	}
	if r.cfg.Scenario == ScenarioSoak {
		res.OfferedRate = r.cfg.Rate / 2 // the calls; the other half are pushed events
	}
	res.AchievedRate = float64(res.Latency[primary].Count) / r.cfg.Duration.Seconds()
	if res.Operations > 0 {
		res.ErrorRate = float64(res.ErrorCount) / float64(res.Operations)
	}
	var lost, offered uint64
	for k, ec := range r.events {
		res.Events[k] = *ec
		if k != EventsPushStalled {
			lost += ec.Lost
			offered += ec.Offered
		}
	}
	if offered > 0 {
		res.LossRate = float64(lost) / float64(offered)
	}
	if r.cfg.MaxErrorRate >= 0 && res.ErrorRate > r.cfg.MaxErrorRate {
		res.Passed = false
		res.Failures = append(res.Failures, fmt.Sprintf("error rate %.4f%% over the %.4f%% threshold", 100*res.ErrorRate, 100*r.cfg.MaxErrorRate))
	}
	if r.cfg.MaxLossRate >= 0 && res.LossRate > r.cfg.MaxLossRate {
		res.Passed = false
		res.Failures = append(res.Failures, fmt.Sprintf("loss rate %.4f%% (%d of %d events) over the %.4f%% threshold", 100*res.LossRate, lost, offered, 100*r.cfg.MaxLossRate))
	}
	return res
}

// WriteSummary writes the human-readable summary table of res.
func WriteSummary(w io.Writer, res *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s against %s (protocol %s), %d sessions\n", res.Scenario, res.Target, res.ProtocolVersion, res.Sessions)
	fmt.Fprintf(&b, "measured %.1fs after %.1fs warm-up; %s offered %.0f/s, achieved %.1f/s\n",
		res.MeasuredSeconds, res.WarmupSeconds, res.Unit, res.OfferedRate, res.AchievedRate)
	fmt.Fprintf(&b, "operations %d, errors %d (%.3f%%), loss %.3f%%; generator CPU %.2fs (%.0f%% of a core, GOMAXPROCS %d)\n\n",
		res.Operations, res.ErrorCount, 100*res.ErrorRate, 100*res.LossRate,
		res.Generator.CPUSeconds, 100*res.Generator.CPUShare, res.Generator.GOMAXPROCS)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax\tmean\t")
	for _, name := range slices.Sorted(maps.Keys(res.Latency)) {
		s := res.Latency[name]
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", name, s.Count, s.P50, s.P90, s.P99, s.P999, s.Max, s.Mean)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res.Events) > 0 {
		b.WriteString("\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "events\toffered\tdelivered\tlost\tduplicated\tlate\t")
		for _, k := range slices.Sorted(maps.Keys(res.Events)) {
			e := res.Events[k]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", k, e.Offered, e.Delivered, e.Lost, e.Duplicated, e.Late)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(res.Errors) > 0 {
		b.WriteString("\nerrors by kind:\n")
		for _, k := range slices.Sorted(maps.Keys(res.Errors)) {
			fmt.Fprintf(&b, "  %-24s %d\n", k, res.Errors[k])
		}
	}
	if sl := res.TargetSlopes; sl != nil {
		fmt.Fprintf(&b, "\ntarget over %d samples after the warm-up: slope per minute (min .. max)\n", sl.Samples)
		fmt.Fprintf(&b, "  goroutines  %+.2f/min  (%.0f .. %.0f)\n", sl.GoroutinesPerMinute, sl.GoroutinesMin, sl.GoroutinesMax)
		fmt.Fprintf(&b, "  open fds    %+.2f/min  (%.0f .. %.0f)\n", sl.OpenFDsPerMinute, sl.OpenFDsMin, sl.OpenFDsMax)
		fmt.Fprintf(&b, "  RSS         %+.1f KiB/min  (%.1f .. %.1f MiB)\n", sl.RSSBytesPerMinute/1024, sl.RSSBytesMin/(1<<20), sl.RSSBytesMax/(1<<20))
		fmt.Fprintf(&b, "  heap in use %+.1f KiB/min  (%.1f .. %.1f MiB)\n", sl.HeapBytesPerMinute/1024, sl.HeapBytesMin/(1<<20), sl.HeapBytesMax/(1<<20))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if res.Passed {
		b.WriteString("\nPASS\n")
	} else {
		for _, f := range res.Failures {
			fmt.Fprintf(&b, "\nFAIL: %s", f)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
