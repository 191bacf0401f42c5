package harness

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Scenario names.
const (
	ScenarioPost   = "post"
	ScenarioStream = "stream"
	ScenarioChurn  = "churn"
	ScenarioResume = "resume"
	ScenarioSlow   = "slow"
	ScenarioSoak   = "soak"
)

// Scenarios lists every scenario.
var Scenarios = []string{ScenarioPost, ScenarioStream, ScenarioChurn, ScenarioResume, ScenarioSlow, ScenarioSoak}

// Defaults for Config fields left at zero.
const (
	DefaultScenario     = ScenarioPost
	DefaultSessions     = 16
	DefaultRate         = 1000
	DefaultDuration     = 10 * time.Second
	DefaultWarmup       = time.Second
	DefaultConns        = 64
	DefaultTimeout      = 10 * time.Second
	DefaultVersion      = "2025-11-25"
	DefaultStreamCount  = 100
	DefaultStreamRate   = 200
	DefaultCutEvery     = 500 * time.Millisecond
	DefaultSlowFraction = 0.1
	// DefaultStallWindow is the receive buffer of stalling readers' sockets (the kernel
	// doubles it and rounds up to its minimum).
	DefaultStallWindow  = 4 << 10
	DefaultSampleEvery  = 5 * time.Second
	DefaultMaxErrorRate = 0.01
	DefaultDrainTimeout = 5 * time.Second
)

// Config configures a run. Zero values mean the documented defaults; negative values are
// invalid unless a field says otherwise.
type Config struct {
	// Target is the MCP endpoint, e.g. http://127.0.0.1:8080/mcp. Required.
	Target string
	// Scenario is one of Scenarios. Zero means DefaultScenario.
	Scenario string
	// Sessions is the number of sessions. Zero means DefaultSessions.
	Sessions int
	// Streams is the number of sessions that also hold a standalone GET stream in the
	// post and soak scenarios (stream, resume and slow open one per session). Zero means
	// none in post and every session in soak; negative means every session.
	Streams int
	// Rate is the offered load per second: tools/call requests (post), pushed events
	// across all streams (stream, resume, slow), session lifecycles (churn), or the
	// combined operations (soak). Zero means DefaultRate.
	Rate float64
	// Duration is the measured time after the warm-up. Zero means DefaultDuration.
	Duration time.Duration
	// Warmup runs load before measuring starts; it is excluded from percentiles and
	// rates but included in counts. Zero means DefaultWarmup; negative means none.
	Warmup time.Duration
	// SourceAddrs spreads connections over these local addresses (127.x.y.z).
	SourceAddrs []string
	// Conns caps concurrent plain POSTs (and their connections). Zero means DefaultConns.
	Conns int
	// Timeout bounds each plain POST and DELETE. Zero means DefaultTimeout.
	Timeout time.Duration
	// Version is the protocol revision requested. Zero means DefaultVersion; 2026-07-28
	// runs the post scenario statelessly (other scenarios need sessions).
	Version string
	// Payload is the echo result size in bytes (post, churn, soak) and the padding of
	// pushed and progress events. Zero means none.
	Payload int
	// Burst is how many pushed events the upstream writes at once (stream, slow: the
	// mock upstream's push tool); the offered rate is kept. Zero means 1.
	Burst int
	// StreamCount and StreamRate shape the stream tool calls of the resume scenario:
	// progress notifications per call and per second. Zero means DefaultStreamCount
	// and DefaultStreamRate.
	StreamCount int
	StreamRate  float64
	// CutEvery is the mean interval between connection cuts per stream (resume). Zero
	// means DefaultCutEvery.
	CutEvery time.Duration
	// SlowFraction is the fraction of readers that stall (slow). Zero means
	// DefaultSlowFraction; it must be below 1.
	SlowFraction float64
	// Stall is how long slow readers stop reading. Zero means the rest of the measured
	// run.
	Stall time.Duration
	// StallWindow is the socket receive buffer of the stalling readers' streams
	// (ClientConfig.StallWindow). Zero means DefaultStallWindow; negative means the
	// kernel default.
	StallWindow int
	// Authorization is sent as the Authorization header of every request (for
	// example "Bearer <token>"); "" sends none.
	Authorization string
	// HostileRate is how many hostile requests per second soak sends over raw TCP
	// (malformed framing, duplicate headers, DNS-rebinding Host and Origin, bad bodies,
	// another session's id, a head cut short); each must be answered with a 4xx, or the
	// connection closed, never a 5xx. Zero means none (a target other than the gateway,
	// the mock upstream say, need not refuse them all).
	HostileRate float64
	// MetricsURL is the target's Prometheus endpoint sampled by soak. Zero means the
	// target's origin + "/metrics"; "off" disables sampling.
	MetricsURL string
	// SampleEvery is the soak sampling interval. Zero means DefaultSampleEvery.
	SampleEvery time.Duration
	// MaxErrorRate fails the run when errors/operations exceeds it. Zero means
	// DefaultMaxErrorRate; negative disables the check.
	MaxErrorRate float64
	// MaxLossRate fails the run when lost/offered events (of readers that did not stall)
	// exceeds it. Zero means any loss fails; negative disables the check.
	MaxLossRate float64
	// DrainTimeout bounds the wait for in-flight events after the load stops. Zero means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Seed seeds the random cuts and stalls. Zero means a fixed seed of 1.
	Seed uint64
	// Progress receives the live status line (rewritten with \r every second). Nil
	// disables it.
	Progress io.Writer
}

func (c Config) withDefaults() (Config, error) {
	if c.Target == "" {
		return c, fmt.Errorf("harness: no target: %w", ErrBadConfig)
	}
	if c.Scenario == "" {
		c.Scenario = DefaultScenario
	}
	if !slices.Contains(Scenarios, c.Scenario) {
		return c, fmt.Errorf("harness: unknown scenario %q: %w", c.Scenario, ErrBadConfig)
	}
	switch {
	case c.Sessions < 0, c.Rate < 0, c.Duration < 0, c.Conns < 0, c.Timeout < 0, c.Payload < 0, c.Burst < 0, c.Burst > 1024,
		c.StreamCount < 0, c.StreamRate < 0, c.CutEvery < 0, c.SlowFraction < 0, c.SlowFraction >= 1,
		c.Stall < 0, c.SampleEvery < 0, c.DrainTimeout < 0, c.HostileRate < 0:
		return c, fmt.Errorf("harness: negative or out-of-range setting: %w", ErrBadConfig)
	}
	if c.Sessions == 0 {
		c.Sessions = DefaultSessions
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	} else if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.StreamCount == 0 {
		c.StreamCount = DefaultStreamCount
	}
	if c.StreamRate == 0 {
		c.StreamRate = DefaultStreamRate
	}
	if c.CutEvery == 0 {
		c.CutEvery = DefaultCutEvery
	}
	if c.SlowFraction == 0 {
		c.SlowFraction = DefaultSlowFraction
	}
	if c.StallWindow == 0 {
		c.StallWindow = DefaultStallWindow
	}
	if c.SampleEvery == 0 {
		c.SampleEvery = DefaultSampleEvery
	}
	if c.MaxErrorRate == 0 {
		c.MaxErrorRate = DefaultMaxErrorRate
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Streams < 0 || c.Streams > c.Sessions {
		c.Streams = c.Sessions
	}
	if IsStateless(c.Version) && c.Scenario != ScenarioPost {
		return c, fmt.Errorf("harness: scenario %s needs sessions; stateless %s runs only post: %w", c.Scenario, c.Version, ErrBadConfig)
	}
	if IsStateless(c.Version) && c.Streams > 0 {
		return c, fmt.Errorf("harness: stateless %s has no GET streams: %w", c.Version, ErrBadConfig)
	}
	return c, nil
}
