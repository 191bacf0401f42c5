package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mcpgate/mcpgate/loadtest/harness"
)

// Exit codes of `loadtest run`.
const (
	exitOK     = 0
	exitFailed = 1 // the run finished but passed an error or loss threshold
	exitUsage  = 2 // bad flags
	exitError  = 3 // the run could not be carried out
)

// runMain runs `loadtest run`.
func runMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg harness.Config
	fs.StringVar(&cfg.Target, "target", "", "MCP endpoint `URL`, e.g. http://127.0.0.1:8080/mcp (required; http only)")
	fs.StringVar(&cfg.Scenario, "scenario", harness.DefaultScenario, "`name`: "+strings.Join(harness.Scenarios, ", ")+"\n"+
		"post:   open-loop tools/call echo at -rate across -sessions, latency from the intended send time\n"+
		"stream: every session holds a GET stream pushed at -rate/-sessions events/s; delivery latency from the embedded send time, delivered/offered\n"+
		"churn:  initialize + initialized + tools/call + DELETE at -rate per second\n"+
		"resume: stream, plus stream tool calls; connections are cut at random (-cut-every) and resumed with Last-Event-ID; counts lost and duplicated events\n"+
		"slow:   stream, with -slow-fraction of the readers stalling for -stall\n"+
		"soak:   half -rate calls, half pushed events (streams cut every -cut-every and resumed), churn at -rate/100, -hostile-rate hostile requests, sampling the target's goroutines, open files and RSS from -metrics-url and fitting slopes")
	fs.IntVar(&cfg.Sessions, "sessions", harness.DefaultSessions, "number of `sessions`")
	fs.IntVar(&cfg.Streams, "streams", 0, "post and soak: how many of the sessions also hold a standalone GET stream (`n`; -1: all; soak's 0 means all)")
	fs.Float64Var(&cfg.Rate, "rate", harness.DefaultRate, "offered load `per second`: calls (post), pushed events over all streams (stream, resume, slow), lifecycles (churn), operations (soak)")
	fs.DurationVar(&cfg.Duration, "duration", harness.DefaultDuration, "measured `time`, after the warm-up")
	fs.DurationVar(&cfg.Warmup, "warmup", harness.DefaultWarmup, "load `time` before measuring starts, excluded from percentiles and rates (negative: none)")
	sourceAddrs := fs.String("source-addrs", "", "comma-separated local `addresses` (127.0.0.2,127.0.0.3,...) to spread connections over, beyond ~28k ports per address pair")
	fs.IntVar(&cfg.Conns, "conns", harness.DefaultConns, "maximum concurrent plain POSTs and their `connections` (open-loop workers)")
	fs.DurationVar(&cfg.Timeout, "timeout", harness.DefaultTimeout, "`deadline` of each plain POST and DELETE")
	fs.StringVar(&cfg.Version, "protocol-version", harness.DefaultVersion, "MCP `revision` requested; 2026-07-28 runs the post scenario statelessly")
	fs.IntVar(&cfg.Payload, "payload", 0, "echo result size and event padding in `bytes`")
	fs.IntVar(&cfg.Burst, "burst", 1, "stream, slow: pushed `events` the mock upstream writes at once (1..1024; the rate stays the offered one)")
	fs.IntVar(&cfg.StreamCount, "stream-count", harness.DefaultStreamCount, "resume: progress notifications per stream tool `call`")
	fs.Float64Var(&cfg.StreamRate, "stream-rate", harness.DefaultStreamRate, "resume: progress notifications `per second` per stream tool call")
	fs.DurationVar(&cfg.CutEvery, "cut-every", harness.DefaultCutEvery, "resume: mean `interval` between cuts of each GET stream (exponentially distributed)")
	fs.Float64Var(&cfg.SlowFraction, "slow-fraction", harness.DefaultSlowFraction, "slow: `fraction` of readers that stall (at least one)")
	fs.DurationVar(&cfg.Stall, "stall", 0, "slow: how `long` stalled readers stop reading, from the end of the warm-up (0: to the end of the run)")
	fs.IntVar(&cfg.StallWindow, "stall-window", harness.DefaultStallWindow, "slow: socket receive buffer of stalled readers in `bytes`, so the server feels the stall at once (-1: kernel default, which autotunes to megabytes and absorbs the backlog)")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "soak: the target's Prometheus `URL` (default: the target's origin + /metrics; \"off\": no sampling)")
	fs.DurationVar(&cfg.SampleEvery, "sample-every", harness.DefaultSampleEvery, "soak: metrics sampling `interval`")
	fs.StringVar(&cfg.Authorization, "authorization", "", "the Authorization header `value` sent with every request, e.g. \"Bearer <token>\" (default: none; also MCPGATE_LOADTEST_AUTHORIZATION)")
	fs.Float64Var(&cfg.HostileRate, "hostile-rate", 0, "soak: hostile raw-TCP requests `per second` mixed in (malformed framing, duplicate headers, rebinding Host/Origin, bad bodies, cut heads); each must get a 4xx or a close, never a 5xx (0: none)")
	fs.Float64Var(&cfg.MaxErrorRate, "max-errors", harness.DefaultMaxErrorRate, "exit 1 when errors/operations exceeds this `fraction` (negative: never)")
	fs.Float64Var(&cfg.MaxLossRate, "max-loss", 0, "exit 1 when lost/offered events (of readers that did not stall) exceeds this `fraction` (0: any loss; negative: never)")
	fs.DurationVar(&cfg.DrainTimeout, "drain", harness.DefaultDrainTimeout, "after the load, how `long` to wait for in-flight events and streams to end")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "`seed` of the random cuts")
	out := fs.String("out", "", "write the full result as JSON to this `file` (\"-\": stdout, replacing the summary)")
	report := fs.String("report", "", "write report.md and charts into this `directory`")
	chartFormat := fs.String("chart-format", "svg", "chart `format`: svg or png")
	quiet := fs.Bool("quiet", false, "no live progress line on stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: loadtest run -target URL [flags]

Drives MCP load at -target and prints a summary table (p50/p90/p99/p99.9/max per metric,
throughput, events offered/delivered/lost/duplicated, errors by kind). Exits 0 on PASS,
1 when the error or loss threshold was passed, 2 on bad flags, 3 when the run could not
be carried out. Stream scenarios need the mock upstream's tools (loadtest upstream),
directly or through a gateway.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseArgs(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadtest run: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if cfg.Target == "" {
		fmt.Fprintln(stderr, "loadtest run: -target is required")
		fs.Usage()
		return exitUsage
	}
	if *chartFormat != "svg" && *chartFormat != "png" {
		fmt.Fprintln(stderr, "loadtest run: -chart-format must be svg or png")
		return exitUsage
	}
	if cfg.Authorization == "" {
		cfg.Authorization = os.Getenv("MCPGATE_LOADTEST_AUTHORIZATION")
	}
	if *sourceAddrs != "" {
		for _, a := range strings.Split(*sourceAddrs, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.SourceAddrs = append(cfg.SourceAddrs, a)
			}
		}
	}
	if !*quiet {
		cfg.Progress = progressOutput(stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := harness.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest run:", err)
		if errors.Is(err, harness.ErrBadConfig) {
			return exitUsage
		}
		return exitError
	}
	if *out != "-" {
		if err := harness.WriteSummary(stdout, res); err != nil {
			fmt.Fprintln(stderr, "loadtest run:", err)
			return exitError
		}
	}
	if *out != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			fmt.Fprintln(stderr, "loadtest run:", err)
			return exitError
		}
		b = append(b, '\n')
		if *out == "-" {
			_, err = stdout.Write(b)
		} else {
			err = os.WriteFile(*out, b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "loadtest run:", err)
			return exitError
		}
	}
	if *report != "" {
		paths, err := harness.WriteReport(*report, *chartFormat, res)
		if err != nil {
			fmt.Fprintln(stderr, "loadtest run:", err)
			return exitError
		}
		fmt.Fprintf(stderr, "report: %s\n", strings.Join(paths, ", "))
	}
	if !res.Passed {
		return exitFailed
	}
	return exitOK
}

// progressOutput returns where the live progress line goes: stderr itself when it is a
// terminal (the line is rewritten in place with \r), else a writer that turns each
// rewrite into a plain log line.
func progressOutput(stderr io.Writer) io.Writer {
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return stderr
		}
	}
	return lineWriter{stderr}
}

// lineWriter writes each \r-prefixed progress update as its own line.
type lineWriter struct{ w io.Writer }

func (l lineWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(strings.TrimPrefix(string(p), "\r"))
	if line == "" {
		return len(p), nil
	}
	if _, err := io.WriteString(l.w, line+"\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}
