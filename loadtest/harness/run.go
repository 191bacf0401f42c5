package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/loadtest/pace"
)

// Metric names used in Result.Latency.
const (
	MetricCall     = "call"  // tools/call echo, from the intended send time to the result
	MetricEvent    = "event" // pushed event, from its embedded send time to its arrival
	MetricStalled  = "event_stalled"
	MetricProgress = "progress" // progress notification, from its send time to its arrival
	MetricCycle    = "cycle"    // initialize + initialized + call + DELETE, from the intended start
	MetricResume   = "resume"   // reconnect with Last-Event-ID, from the cut to the 200
	MetricStream   = "stream_call"
)

// Event kinds used in Result.Events.
const (
	EventsPush        = "push"
	EventsPushStalled = "push_stalled"
	EventsProgress    = "progress"
)

// runner is one run of one scenario.
type runner struct {
	cfg      Config
	c        *Client
	rec      *Recorder
	w        atomic.Pointer[window]
	stopping atomic.Bool

	// evMu guards events.
	evMu   sync.Mutex
	events map[string]*EventCounts

	streamsOpened atomic.Int64

	timeline      []Sample
	targetSamples []TargetSample
	notes         []string
	notesMu       sync.Mutex
}

// Run runs cfg's scenario and returns its result. The error is non-nil only when the run
// could not start or ctx ended; failures of the target are counted in the result (see
// Result.Passed).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkSockets(cfg); err != nil {
		return nil, err
	}
	streamConns := cfg.Sessions*2 + 16
	c, err := NewClient(ClientConfig{
		Target:      cfg.Target,
		Version:     cfg.Version,
		SourceAddrs: cfg.SourceAddrs,
		Conns:       cfg.Conns,
		StreamConns: streamConns,
		Timeout:     cfg.Timeout,
		StallWindow: max(cfg.StallWindow, 0),

		Authorization: cfg.Authorization,
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	r := &runner{cfg: cfg, c: c, rec: NewRecorder(), events: make(map[string]*EventCounts)}
	began := time.Now()
	cpu0 := processCPU()
	// Nothing is measured during setup: an empty window until the scenario schedules.
	r.w.Store(&window{start: began, measureFrom: began, end: began})
	var scenarioErr error
	switch cfg.Scenario {
	case ScenarioPost:
		scenarioErr = r.runPost(ctx)
	case ScenarioStream:
		scenarioErr = r.runStream(ctx, false)
	case ScenarioChurn:
		scenarioErr = r.runChurn(ctx)
	case ScenarioResume:
		scenarioErr = r.runResume(ctx)
	case ScenarioSlow:
		scenarioErr = r.runStream(ctx, true)
	case ScenarioSoak:
		scenarioErr = r.runSoak(ctx)
	}
	if scenarioErr != nil {
		return nil, scenarioErr
	}
	return r.result(began, time.Now(), processCPU()-cpu0), nil
}

func (r *runner) note(format string, args ...any) {
	r.notesMu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.notesMu.Unlock()
}

// window is the load window of a run.
type window struct {
	start       time.Time // load starts (warm-up begins)
	measureFrom time.Time // warm-up ends
	end         time.Time // load stops
}

// schedule fixes the load window starting now. Scenarios call it once their sessions
// and streams are set up, so setup time is neither warm-up nor measured.
func (r *runner) schedule() *window {
	start := time.Now()
	w := &window{start: start, measureFrom: start.Add(r.cfg.Warmup)}
	w.end = w.measureFrom.Add(r.cfg.Duration)
	r.w.Store(w)
	return w
}

// win returns the current load window.
func (r *runner) win() *window { return r.w.Load() }

// measured reports whether something that happened (or was due) at t is in the
// measured window.
func (r *runner) measured(t time.Time) bool {
	w := r.win()
	return !t.Before(w.measureFrom) && t.Before(w.end)
}

// call sends one request, counting it and its failure.
func (r *runner) call(lane *Lane, sess *Session, req *Request, onEvent EventFunc) ([]byte, error) {
	lane.Add("ops", 1)
	lane.Add("req/"+req.Method, 1)
	if req.Method == "tools/call" {
		lane.Add("tool/"+req.Name, 1)
	}
	res, err := r.c.Call(sess, req, onEvent)
	if err != nil && !isCut(err) {
		lane.Error(ErrorKind(err))
	}
	return res, err
}

func isCut(err error) bool {
	_, ok := err.(*CutError)
	return ok
}

// echo calls the echo tool.
func (r *runner) echo(lane *Lane, sess *Session) error {
	_, err := r.call(lane, sess, &Request{
		Method: "tools/call",
		Name:   "echo",
		Params: map[string]any{"name": "echo", "arguments": map[string]any{"size": r.cfg.Payload}},
	}, nil)
	return err
}

// pushArgs are the push tool's arguments; burst goes only when above 1, so a server
// without it is asked nothing new.
func pushArgs(rate float64, pad, burst int) map[string]any {
	args := map[string]any{"rate": rate, "pad": pad}
	if burst > 1 {
		args["burst"] = burst
	}
	return args
}

// setPush sets a session's push rate and returns the push sequence number reached.
func (r *runner) setPush(lane *Lane, sess *Session, rate float64) (uint64, error) {
	res, err := r.call(lane, sess, &Request{
		Method: "tools/call",
		Name:   "push",
		Params: map[string]any{"name": "push", "arguments": pushArgs(rate, r.cfg.Payload, r.cfg.Burst)},
	}, nil)
	if err != nil {
		return 0, err
	}
	last, ok := lookupUint(res, "structuredContent", "last_seq")
	if !ok {
		lane.Error("protocol")
		return 0, fmt.Errorf("%w: push result without last_seq", ErrProtocol)
	}
	return last, nil
}

// openSessions initializes n sessions with bounded concurrency. Failed ones are nil.
func (r *runner) openSessions(ctx context.Context, n int) []*Session {
	sessions := make([]*Session, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range min(n, r.cfg.Conns, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lane := r.rec.Lane(w)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				sess, err := r.initialize(lane)
				if err == nil {
					sess.Index = i
					sessions[i] = sess
				}
			}
		}()
	}
	wg.Wait()
	return sessions
}

// initialize opens one session, counting its two requests.
func (r *runner) initialize(lane *Lane) (*Session, error) {
	lane.Add("ops", 2)
	lane.Add("req/initialize", 1)
	sess, err := r.c.Initialize()
	if sess != nil {
		lane.Add("sessions_created", 1)
		lane.Add("req/notifications/initialized", 1)
	}
	if err != nil {
		lane.Error(ErrorKind(err))
		return nil, err
	}
	return sess, nil
}

// deleteSession ends a session, counting it.
func (r *runner) deleteSession(lane *Lane, sess *Session) {
	lane.Add("ops", 1)
	lane.Add("req/DELETE", 1)
	if err := r.c.Delete(sess); err != nil {
		lane.Error(ErrorKind(err))
		return
	}
	lane.Add("sessions_deleted", 1)
}

// closeSessions deletes every open session.
func (r *runner) closeSessions(sessions []*Session) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range min(len(sessions), r.cfg.Conns, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lane := r.rec.Lane(w)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(sessions) {
					return
				}
				if sessions[i] != nil {
					r.deleteSession(lane, sessions[i])
				}
			}
		}()
	}
	wg.Wait()
}

// openLoop runs op at rate per second through the load window on workers goroutines.
// Operation i is due at start + i/rate; a worker that falls behind runs late ops at
// once, and op measures from the intended time, so stalls show in the latencies.
func (r *runner) openLoop(ctx context.Context, rate float64, workers int, op func(lane *Lane, i uint64, intended time.Time)) {
	win := r.win()
	total := pace.Count(win.end.Sub(win.start), rate)
	workers = max(1, min(workers, int(min(total, 1<<20))))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lane := r.rec.Lane(w)
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for i := uint64(w); i < total; i += uint64(workers) {
				intended := win.start.Add(pace.Offset(i, rate))
				if d := time.Until(intended); d > 0 {
					timer.Reset(d)
					select {
					case <-timer.C:
					case <-ctx.Done():
						return
					}
				} else if ctx.Err() != nil {
					return
				}
				op(lane, i, intended)
			}
		}()
	}
	wg.Wait()
}

// sleepUntil waits for t or ctx.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// addEvents adds one stream's event accounting to kind.
func (r *runner) addEvents(kind string, offered uint64, t *SeqTracker) {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	ec := r.events[kind]
	if ec == nil {
		ec = &EventCounts{}
		r.events[kind] = ec
	}
	ec.Offered += offered
	ec.Delivered += t.Unique()
	ec.Received += t.Unique() + t.Duplicates()
	ec.Duplicated += t.Duplicates()
	ec.Late += t.Late()
	ec.Lost += t.Lost(offered)
}

// rng returns a random source for goroutine i, derived from the seed.
func (r *runner) rng(i int) *rand.Rand {
	return rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)+1))
}

// monitor runs the live sampler until stop closes: every second it cuts the interval
// histograms into a timeline sample and rewrites the progress line.
func (r *runner) monitor(primary string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	w := r.win()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prevErrs int64
	last := w.start
	cut := func(now time.Time) Sample {
		lat, _, errs := r.rec.CutInterval()
		var nerr int64
		for _, v := range errs {
			nerr += v
		}
		s := Sample{T: now.Sub(w.start).Seconds(), Errors: nerr - prevErrs, Warmup: now.Before(w.measureFrom.Add(time.Second))}
		prevErrs = nerr
		if h := lat[primary]; h != nil {
			if secs := now.Sub(last).Seconds(); secs > 0 {
				s.Rate = float64(h.TotalCount()) / secs
			}
			sum := Summarize(h)
			s.P50, s.P99, s.Max = sum.P50, sum.P99, sum.Max
		}
		last = now
		r.timeline = append(r.timeline, s)
		return s
	}
	for {
		select {
		case <-stop:
			// The last, partial interval.
			if now := time.Now(); now.Sub(last) > 100*time.Millisecond || len(r.timeline) == 0 {
				cut(now)
			}
			if r.cfg.Progress != nil {
				fmt.Fprintln(r.cfg.Progress)
			}
			return
		case now := <-tick.C:
			s := cut(now)
			if r.cfg.Progress != nil {
				total := w.end.Sub(w.start).Seconds()
				fmt.Fprintf(r.cfg.Progress, "\r[%5.0fs/%4.0fs] %-6s %s %8.0f/s  p50 %7.2fms  p99 %7.2fms  errors %d   ",
					s.T, total, r.cfg.Scenario, primary, s.Rate, s.P50, s.P99, prevErrs)
			}
		}
	}
}

// startMonitor starts the sampler and returns its stop function.
func (r *runner) startMonitor(primary string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go r.monitor(primary, stop, done)
	return func() {
		close(stop)
		<-done
	}
}

// Resume retry budget: a client that just dropped its connection may find the server
// still holding the old stream (it learns of the drop only on a later write) and get
// 409 or similar; like the official clients it retries with backoff.
const (
	resumeFirstBackoff = 25 * time.Millisecond
	resumeMaxBackoff   = time.Second
	resumeBudget       = 10 * time.Second
)

// resume reconnects to the stream named by lastID with GET and Last-Event-ID, retrying
// with backoff. Every attempt counts as a request; failed attempts are counted under
// "resume_retry/<kind>", and only a resume that never succeeds is an error
// ("resume_<kind>"). The latency from the first attempt to the 200 is the resume metric.
func (r *runner) resume(lane *Lane, sess *Session, lastID []byte) (*EventStream, error) {
	t0 := time.Now()
	backoff := resumeFirstBackoff
	for {
		lane.Add("ops", 1)
		lane.Add("req/GET", 1)
		es, err := r.c.Get(sess, lastID)
		if err == nil {
			lane.Add("resumes", 1)
			lane.Latency(MetricResume, time.Since(t0), r.measured(t0))
			return es, nil
		}
		kind := ErrorKind(err)
		if r.stopping.Load() {
			// The teardown ended the session under this resume (404 or a
			// refused stream): the end of the run, not a failure of the target.
			lane.Add("resume_abandoned/"+kind, 1)
			return nil, errStopping
		}
		if time.Since(t0)+backoff > resumeBudget {
			lane.Error("resume_" + kind)
			return nil, err
		}
		lane.Add("resume_retry/"+kind, 1)
		time.Sleep(backoff)
		backoff = min(backoff*3/2, resumeMaxBackoff)
	}
}

// socketsNeeded estimates the sockets a run holds at once: its POST connections, its
// GET streams and, in resume, one stream tool call per session.
func socketsNeeded(cfg Config) int {
	n := cfg.Conns
	switch cfg.Scenario {
	case ScenarioStream, ScenarioSlow:
		n += cfg.Sessions
	case ScenarioResume:
		n += 2 * cfg.Sessions
	case ScenarioPost:
		n += cfg.Streams
	case ScenarioSoak:
		s := cfg.Streams
		if s == 0 {
			s = cfg.Sessions
		}
		n += s + cfg.Conns/8
	}
	return n
}

// checkSockets refuses a run that cannot fit in this process's open-file limit (one
// process holds at most about that many sockets; split the load over processes).
func checkSockets(cfg Config) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // unknown limit: let the run find out
	}
	const reserve = 64 // stdio, the metrics client, files written at the end
	need := socketsNeeded(cfg)
	if uint64(need+reserve) > lim.Cur {
		return fmt.Errorf("harness: the run needs about %d sockets but this process may open %d files; "+
			"lower -sessions/-streams/-conns or split the load over several processes: %w", need, lim.Cur, ErrBadConfig)
	}
	return nil
}
