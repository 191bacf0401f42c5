package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// Defaults for StdioConfig zero values.
const (
	DefaultKillGrace            = 5 * time.Second
	DefaultStdinGrace           = time.Second
	DefaultMaxProcesses         = 256
	DefaultMaxMessage           = 4 << 20
	DefaultStderrLinesPerSecond = 20
	// drainTimeout is how long, after a process was reaped, its stdout and
	// stderr are still read for what it wrote before it ended (a descendant
	// that left its process group may hold them open forever).
	drainTimeout = time.Second
)

// StdioConfig configures the stdio transport: one child process per
// session, speaking newline-delimited JSON-RPC on its stdin and stdout.
// Zero values mean the documented defaults; a negative duration or limit is
// an error, except StderrLinesPerSecond.
type StdioConfig struct {
	// Command is the program to run (a path; it is not looked up in PATH).
	// Required.
	Command string
	// Args are the program's arguments, without the program name.
	Args []string
	// Env is the child's whole environment, as KEY=VALUE entries. Nothing
	// of the gateway's own environment is passed unless listed here (nil
	// and empty both mean an empty environment).
	Env []string
	// Dir is the child's working directory; "" = the gateway's.
	Dir string
	// KillGrace is how long a process may take to exit after SIGTERM
	// before it gets SIGKILL; 0 = DefaultKillGrace.
	KillGrace time.Duration
	// StdinGrace is how long a process may take to exit after its stdin
	// was closed (the polite end of a stdio session) before it gets
	// SIGTERM; 0 = min(DefaultStdinGrace, KillGrace). Session.Close waits
	// at most this long.
	StdinGrace time.Duration
	// MaxProcesses bounds the live child processes (started and not yet
	// reaped); Connect beyond it returns ErrAtCapacity.
	// 0 = DefaultMaxProcesses.
	MaxProcesses int
	// MaxMessageBytes bounds one stdout line (one message); a longer one
	// ends its session. 0 = DefaultMaxMessage.
	MaxMessageBytes int
	// Timeout bounds the initialize exchange and each write to a child's
	// stdin (a child that stops reading it); 0 = DefaultTimeout. Calls
	// themselves have no timeout.
	Timeout time.Duration
	// StderrLinesPerSecond bounds the stderr lines logged per process and
	// second; the rest are counted and reported as one line.
	// 0 = DefaultStderrLinesPerSecond, <0 = stderr is read and discarded.
	StderrLinesPerSecond int
	// StreamBuffer is the number of messages each call stream and the
	// standalone stream buffer; 0 = DefaultStreamBuffer.
	StreamBuffer int
	// Logger receives the children's stderr and lifecycle logs;
	// nil = slog.Default().
	Logger *slog.Logger
}

// Stdio is the stdio transport. See the package documentation for its
// process lifecycle and doc.go's concurrency contract.
type Stdio struct {
	cfg   StdioConfig
	log   *slog.Logger
	stats counters
	spawn *spawner // forks every child from one long-lived thread (Pdeathsig)

	// mu guards closed and sessions.
	mu       sync.Mutex
	closed   bool
	sessions map[*stdioSession]struct{}
	// wg counts each session's supervisor goroutine, which ends when its
	// process was reaped and its I/O goroutines ended.
	wg sync.WaitGroup
}

var _ Transport = (*Stdio)(nil)

// NewStdio validates cfg, fills defaults and returns the transport. It
// starts the transport's spawner goroutine; Close stops it.
func NewStdio(cfg StdioConfig) (*Stdio, error) {
	if cfg.Command == "" {
		return nil, errors.New("upstream: stdio: no command")
	}
	if cfg.KillGrace < 0 || cfg.StdinGrace < 0 || cfg.MaxProcesses < 0 || cfg.MaxMessageBytes < 0 || cfg.Timeout < 0 || cfg.StreamBuffer < 0 {
		return nil, errors.New("upstream: stdio: negative limit in config")
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.StdinGrace == 0 {
		cfg.StdinGrace = min(DefaultStdinGrace, cfg.KillGrace)
	}
	if cfg.MaxProcesses == 0 {
		cfg.MaxProcesses = DefaultMaxProcesses
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessage
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.StderrLinesPerSecond == 0 {
		cfg.StderrLinesPerSecond = DefaultStderrLinesPerSecond
	}
	if cfg.StreamBuffer == 0 {
		cfg.StreamBuffer = DefaultStreamBuffer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Args = append([]string(nil), cfg.Args...)
	cfg.Env = append([]string{}, cfg.Env...) // never nil: nil would pass the gateway's environment
	sp, err := newSpawner()
	if err != nil {
		return nil, err
	}
	return &Stdio{cfg: cfg, log: cfg.Logger, spawn: sp, sessions: make(map[*stdioSession]struct{})}, nil
}

// Stats returns the transport's counts (processes, exits, stderr lines,
// dropped messages). Safe for concurrent use.
func (t *Stdio) Stats() Stats { return t.stats.snapshot() }

// Close ends every session's process and waits until all are reaped: each
// gets its stdin closed and SIGTERM at once (no stdin grace), and SIGKILL
// after KillGrace, so Close returns within about KillGrace. Then it stops
// the spawner. Connect fails afterwards. Idempotent.
func (t *Stdio) Close() error {
	t.mu.Lock()
	t.closed = true
	live := make([]*stdioSession, 0, len(t.sessions))
	for s := range t.sessions {
		live = append(live, s)
	}
	t.mu.Unlock()
	for _, s := range live {
		s.byUs.Store(true)
		s.end(errTransportClosed, false)
		s.requestStop(stopHurry)
	}
	t.wg.Wait()
	t.spawn.stop()
	return nil
}

var (
	errSessionClosed   = fmt.Errorf("%w: session closed", ErrSessionGone)
	errTransportClosed = fmt.Errorf("%w: transport closed", ErrSessionGone)
)

// Connect starts a child process, sends it the initialize request and
// returns its answer. The process belongs to the session from then on.
func (t *Stdio) Connect(ctx context.Context, initialize []byte) (Session, []byte, error) {
	var p jsonrpc.Parser
	msgs, batch, perr := p.Parse(initialize)
	if perr != nil || batch || msgs[0].Kind != jsonrpc.KindRequest {
		return nil, nil, errors.New("upstream: initialize must be a single JSON-RPC request")
	}
	id := bytes.Clone(msgs[0].ID)
	s, err := t.start()
	if err != nil {
		return nil, nil, err
	}
	answer, err := s.initialize(ctx, initialize, id)
	if err != nil || answer == nil {
		_ = s.Close(context.Background())
		return nil, nil, fmt.Errorf("initialize: %w", err)
	}
	if _, isErr := jsonrpc.Lookup(answer, "error"); isErr {
		_ = s.Close(context.Background())
		return nil, answer, nil
	}
	v, err := protocolVersion(answer)
	if err != nil {
		_ = s.Close(context.Background())
		return nil, nil, fmt.Errorf("initialize: %w", err)
	}
	s.version = v
	return s, answer, nil
}

// protocolVersion reads result.protocolVersion of an initialize answer.
func protocolVersion(answer []byte) (string, error) {
	raw, ok := jsonrpc.Lookup(answer, "result", "protocolVersion")
	if !ok {
		return "", fmt.Errorf("result without protocolVersion: %w", ErrUnavailable)
	}
	v, ok := jsonrpc.Unquote(raw)
	if !ok || v == "" {
		return "", fmt.Errorf("bad protocolVersion %s: %w", raw, ErrUnavailable)
	}
	return v, nil
}

// start reserves a process slot, starts the child and its goroutines.
func (t *Stdio) start() (*stdioSession, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: transport closed", ErrUnavailable)
	}
	if t.stats.live.Load() >= int64(t.cfg.MaxProcesses) {
		t.mu.Unlock()
		t.stats.rejected.Add(1)
		return nil, fmt.Errorf("%w: %d processes running (-max-processes)", ErrAtCapacity, t.cfg.MaxProcesses)
	}
	t.stats.live.Add(1)
	t.wg.Add(1) // the supervisor's; Close waits for it
	t.mu.Unlock()
	started := false
	defer func() {
		if !started {
			t.stats.live.Add(-1)
			t.wg.Done()
		}
	}()

	var files [6]*os.File // stdin r/w, stdout r/w, stderr r/w
	for i := 0; i < 6; i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(files[:i])
			return nil, fmt.Errorf("%w: pipe: %v", ErrUnavailable, err)
		}
		files[i], files[i+1] = r, w
	}
	argv := append([]string{t.cfg.Command}, t.cfg.Args...)
	proc, err := t.spawn.start(t.cfg.Command, argv, &os.ProcAttr{
		Dir:   t.cfg.Dir,
		Env:   t.cfg.Env,
		Files: []*os.File{files[0], files[3], files[5]},
	})
	// The child has its ends now (or failed to start): ours go.
	closeFiles([]*os.File{files[0], files[3], files[5]})
	if err != nil {
		closeFiles([]*os.File{files[1], files[2], files[4]})
		return nil, fmt.Errorf("%w: start %s: %v", ErrUnavailable, t.cfg.Command, err)
	}
	started = true
	t.stats.started.Add(1)
	s := &stdioSession{
		t:      t,
		id:     shortID(),
		pid:    proc.pid(),
		proc:   proc,
		stdin:  files[1],
		stdout: files[2],
		stderr: files[4],
		wslot:  make(chan struct{}, 1),
		reaped: make(chan struct{}),
	}
	s.stdoutDone = make(chan struct{})
	s.log = t.log.With("upstream_session", s.id, "pid", s.pid)
	s.d = newDemux(&t.stats, s.log, t.cfg.StreamBuffer, s.answer)
	t.mu.Lock()
	closing := t.closed // Close ran meanwhile and did not see this session
	t.sessions[s] = struct{}{}
	t.mu.Unlock()
	s.log.Debug("upstream process started", "command", t.cfg.Command)
	s.io.Add(2)
	go s.readStdout()
	go func() {
		defer s.io.Done()
		logStderr(s.stderr, s.log, &t.stats, t.cfg.StderrLinesPerSecond)
	}()
	go s.supervise()
	if closing {
		s.byUs.Store(true)
		s.end(errTransportClosed, false)
		s.requestStop(stopHurry)
	}
	return s, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
}

func shortID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b[:])
}

// stdioSession is one child process serving one client session.
type stdioSession struct {
	t       *Stdio
	id      string // short id for logs
	pid     int
	version string
	log     *slog.Logger
	d       *demux
	proc    *process

	stdin          *os.File // our write end of the child's stdin
	stdout, stderr *os.File // our read ends of its stdout and stderr
	stdinOnce      sync.Once
	// wslot is the stdin write lock: one message is written at a time, and
	// a writer waiting for it gives up with its context or deadline.
	wslot chan struct{}

	// byUs is set when the gateway ended the session (Close), as opposed
	// to the process or its pipes.
	byUs atomic.Bool
	// stopReq asks the supervisor to end the process: stopPolite (close
	// stdin, SIGTERM after StdinGrace, SIGKILL after KillGrace more) or
	// stopHurry (SIGTERM at once). It only grows.
	stopReq atomic.Int32
	// io counts the goroutines the supervisor waits for after the reap:
	// the stdout and stderr readers and any answer writers.
	io      sync.WaitGroup
	answers pendingAnswers // answer writers running
	// stdoutDone is closed when the stdout reader has ended.
	stdoutDone chan struct{}
	// reaped is closed when the process was reaped and every goroutine of
	// the session ended.
	reaped chan struct{}
}

const (
	stopNone int32 = iota
	stopPolite
	stopHurry
)

var (
	_ Session = (*stdioSession)(nil)
	_ Aborter = (*stdioSession)(nil)
)

// ID is the session's short id, as its stderr lines are logged with.
func (s *stdioSession) ID() string      { return s.id }
func (s *stdioSession) Version() string { return s.version }

// Kind names the transport: KindStdio.
func (s *stdioSession) Kind() string { return KindStdio }

func (s *stdioSession) initialize(ctx context.Context, initialize, id []byte) ([]byte, error) {
	call, err := s.d.openCall([][]byte{id}, nil)
	if err != nil {
		return nil, err
	}
	defer call.Close()
	if err := s.write(ctx, initialize); err != nil {
		return nil, err
	}
	return awaitAnswer(ctx, call, s.t.cfg.Timeout, "the process ended before answering (see its stderr in the log)")
}

// awaitAnswer reads call until its response, within ctx and timeout; gone
// explains an upstream that ended first.
func awaitAnswer(ctx context.Context, call *msgStream, timeout time.Duration, gone string) ([]byte, error) {
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() { timedOut.Store(true); _ = call.Close() })
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { _ = call.Close() })
	defer stop()
	var p jsonrpc.Parser
	for {
		msg, err := call.Next()
		switch {
		case err == nil:
		case timedOut.Load():
			return nil, fmt.Errorf("%w: no answer to initialize within %v", ErrTimeout, timeout)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, gone, err)
		}
		msgs, _, perr := p.Parse(msg)
		if perr == nil && len(msgs) == 1 && (msgs[0].Kind == jsonrpc.KindResponse || msgs[0].Kind == jsonrpc.KindError) {
			return msg, nil
		}
	}
}

var parserPool = sync.Pool{New: func() any { return new(jsonrpc.Parser) }}

// Send writes each message of body (a batch is split) to the child's
// stdin, one line each. Requests are answered through the returned
// Reply's Stream (see demux for which upstream messages it carries);
// notifications and responses are Accepted.
func (s *stdioSession) Send(ctx context.Context, body []byte) (*Reply, error) {
	return sendSplit(ctx, s.d, body, s.write)
}

// sendSplit is Send for the transports that write messages one by one.
func sendSplit(ctx context.Context, d *demux, body []byte, write func(context.Context, []byte) error) (*Reply, error) {
	if err := d.failed(); err != nil {
		return nil, err
	}
	p := parserPool.Get().(*jsonrpc.Parser)
	defer parserPool.Put(p)
	msgs, _, perr := p.Parse(body)
	if perr != nil {
		return nil, fmt.Errorf("upstream: send: %w", perr)
	}
	var ids, tokens [][]byte
	for i := range msgs {
		if msgs[i].Kind == jsonrpc.KindRequest {
			ids = append(ids, msgs[i].ID)
			tokens = append(tokens, msgs[i].ProgressToken)
		}
	}
	var call *msgStream
	if len(ids) > 0 {
		var err error
		if call, err = d.openCall(ids, tokens); err != nil {
			return nil, err
		}
	}
	for i := range msgs {
		if err := write(ctx, msgs[i].Raw); err != nil {
			if call != nil {
				_ = call.Close()
			}
			return nil, err
		}
		if msgs[i].Kind == jsonrpc.KindNotification && string(msgs[i].Method) == "notifications/cancelled" {
			if id, ok := jsonrpc.Lookup(msgs[i].Raw, "params", "requestId"); ok {
				d.cancelCall(id)
			}
		}
	}
	if call != nil {
		return &Reply{Stream: call}, nil
	}
	return &Reply{Accepted: true}, nil
}

// write sends one message as one line, within ctx and the transport's
// Timeout. A write that stopped inside a line ends the session (the
// framing is lost).
func (s *stdioSession) write(ctx context.Context, msg []byte) error {
	frame := appendFrame(make([]byte, 0, len(msg)+1), msg)
	deadline := time.Now().Add(s.t.cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case s.wslot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-wait.C:
		return fmt.Errorf("%w: the upstream process does not read its stdin", ErrTimeout)
	case <-s.d.done:
		return s.d.failed()
	}
	defer func() { <-s.wslot }()
	_ = s.stdin.SetWriteDeadline(deadline)
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = s.stdin.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	n, err := s.stdin.Write(frame)
	if !stop() {
		// The interruption started: let it finish before the slot goes to
		// the next writer, or its past deadline would fail that write.
		<-interrupted
	}
	if err == nil {
		return nil
	}
	if n > 0 {
		gone := fmt.Errorf("%w: a write to the process's stdin stopped after %d of %d bytes: %v", ErrSessionGone, n, len(frame), err)
		s.end(gone, true)
		return gone
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: the upstream process does not read its stdin", ErrTimeout)
	}
	if e := s.d.failed(); e != nil {
		return e
	}
	return fmt.Errorf("%w: writing to the process's stdin: %v", ErrSessionGone, err)
}

// answer writes a message of the transport's own (a ping answer, a
// refusal) on a goroutine of the session's io group, so route never waits
// for stdin. Only route calls it, on the stdout reader, which holds an io
// count (so io.Add never races with the supervisor's io.Wait).
func (s *stdioSession) answer(msg []byte) {
	s.answers.send(&s.io, s.log, msg, func(m []byte) error { return s.write(context.Background(), m) })
}

// Listen returns the standalone stream: every message the routing rule
// does not give to a call.
func (s *stdioSession) Listen(context.Context) (Stream, error) {
	st, err := s.d.listen()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Close ends the session: its streams end, the child's stdin is closed,
// and Close waits until the child has exited and been reaped, but at most
// StdinGrace (or until ctx ends). A child still running then is left to
// the session's supervisor goroutine (owned by the transport, which waits
// for it in Close): SIGTERM to its process group at StdinGrace, SIGKILL
// KillGrace later, then the reap. So Close never blocks for the kill
// grace, and nothing is leaked. Idempotent.
func (s *stdioSession) Close(ctx context.Context) error {
	s.Abort()
	t := time.NewTimer(s.t.cfg.StdinGrace)
	defer t.Stop()
	select {
	case <-s.reaped:
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// Abort is Close without the wait: the child's stdin is closed and the
// supervisor goroutine ends the process as for Close (upstream.Aborter).
func (s *stdioSession) Abort() {
	s.byUs.Store(true)
	s.end(errSessionClosed, false)
}

// end fails the session's routing with err (the first call wins) and asks
// for the process to end. lost says the upstream side ended the session.
func (s *stdioSession) end(err error, lost bool) {
	s.d.fail(err, lost)
	s.requestStop(stopPolite)
}

// requestStop raises the stop request to level and wakes the supervisor.
func (s *stdioSession) requestStop(level int32) {
	for {
		cur := s.stopReq.Load()
		if cur >= level {
			return
		}
		if s.stopReq.CompareAndSwap(cur, level) {
			break
		}
	}
	s.closeStdin()
	s.proc.wake()
}

func (s *stdioSession) closeStdin() {
	s.stdinOnce.Do(func() { _ = s.stdin.Close() })
}

// readStdout routes the child's stdout lines until it ends.
func (s *stdioSession) readStdout() {
	defer s.io.Done()
	defer close(s.stdoutDone)
	limit := s.t.cfg.MaxMessageBytes
	lr := newLineReader(s.stdout, limit, false)
	for {
		line, _, err := lr.next()
		if err == nil {
			s.d.route(line)
			continue
		}
		switch {
		case errors.Is(err, errLineTooLong):
			s.t.stats.tooLong.Add(1)
			s.log.Error("upstream process wrote a message longer than the limit (-max-message): session ended", "limit_bytes", limit)
			s.end(fmt.Errorf("%w: %w: the process wrote a message longer than %d bytes", ErrSessionGone, ErrTooLarge, limit), true)
			// Nobody reads its stdout any more, so it may be stuck writing
			// and never see its stdin close: SIGTERM now.
			s.requestStop(stopHurry)
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrDeadlineExceeded): // the deadline: set after the exit
			s.end(fmt.Errorf("%w: the upstream process closed its stdout (exited)", ErrSessionGone), true)
		default:
			s.end(fmt.Errorf("%w: reading the process's stdout: %v", ErrSessionGone, err), true)
		}
		return
	}
}

// supervise owns the process: it ends it when asked (stdin closed, then
// SIGTERM, then SIGKILL, each to the whole process group), notices when it
// exits on its own, reaps it, and releases the session's resources once
// its I/O goroutines are done. It runs on a goroutine counted by t.wg.
func (s *stdioSession) supervise() {
	defer s.t.wg.Done()
	const (
		running = iota
		stdinClosed
		termSent
		killSent
	)
	stage := running
	var next time.Time
	for {
		now := time.Now()
		req := s.stopReq.Load()
		if stage == running && req != stopNone {
			stage, next = stdinClosed, now.Add(s.t.cfg.StdinGrace)
			s.closeStdin()
		}
		if stage == stdinClosed && (req == stopHurry || !now.Before(next)) {
			stage, next = termSent, now.Add(s.t.cfg.KillGrace)
			s.proc.signalGroup(syscall.SIGTERM)
		}
		if stage == termSent && !now.Before(next) {
			stage = killSent
			s.t.stats.killed.Add(1)
			s.log.Warn("upstream process still running a kill grace after SIGTERM: SIGKILL", "kill_grace", s.t.cfg.KillGrace.String())
			s.proc.signalGroup(syscall.SIGKILL)
		}
		var deadline time.Time // none while running or after SIGKILL
		if stage == stdinClosed || stage == termSent {
			deadline = next
		}
		if s.proc.wait(deadline) {
			break
		}
	}
	// The process has exited but is not reaped: its pid, and so its
	// process group id, cannot be reused yet. Whatever of its group is
	// left (children it started) goes now.
	s.proc.signalGroup(syscall.SIGKILL)
	state, err := s.proc.reap()
	exits := &s.t.stats.exitSignal
	switch {
	case err != nil:
		s.log.Error("upstream process wait failed", "err", err)
	case state.Exited() && state.ExitCode() == 0:
		exits = &s.t.stats.exitZero
	case state.Exited():
		exits = &s.t.stats.exitNonzero
	}
	if err == nil {
		if !s.byUs.Load() {
			s.log.Warn("upstream process ended on its own: session ended", "status", state.String())
		} else {
			s.log.Debug("upstream process ended", "status", state.String())
		}
	}
	// Let the readers take what it wrote before it ended, but not wait for
	// a descendant that left the group and holds the pipes, nor for a
	// client that does not make room for it (route's backpressure): the
	// routing ends only then, or it would drop those last messages.
	dl := time.Now().Add(drainTimeout)
	_ = s.stdout.SetReadDeadline(dl)
	_ = s.stderr.SetReadDeadline(dl)
	drain := time.NewTimer(drainTimeout)
	select {
	case <-s.stdoutDone:
	case <-drain.C:
	}
	drain.Stop()
	s.end(fmt.Errorf("%w: the upstream process exited", ErrSessionGone), true)
	s.io.Wait()
	s.closeStdin()
	_ = s.stdout.Close()
	_ = s.stderr.Close()
	s.proc.release()
	s.t.mu.Lock()
	delete(s.t.sessions, s)
	s.t.mu.Unlock()
	// Counted together, once everything of the process is gone, so that
	// Stats add up: live + reaped = started, reaped = the sum of exits.
	exits.Add(1)
	s.t.stats.reaped.Add(1)
	s.t.stats.live.Add(-1)
	close(s.reaped)
}
