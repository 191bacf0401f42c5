package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// FakeUpstream is an in-process upstream.Transport with scripted behaviour,
// for handler tests that run the real gateway without a network upstream.
//
// Scripts are per JSON-RPC method: On queues answers (JSON results or
// errors, 202, an SSE-style Stream of messages, transport errors, all
// optionally delayed behind a Gate) and every forwarded message with that
// method takes the next one; the last answer of a queue repeats. Requests
// without a script get a JSON-RPC -32601 error, notifications and responses
// are accepted (202). Answers never carry fixed ids: each is built from the
// message the fake actually received (its id and progress token, read with
// gateway/jsonrpc), so they stay right if the gateway rewrites ids.
//
// The fake records everything the gateway did to it, in order: each
// initialize (Connect) and message body (Send), each Listen, each session
// and transport Close; every stream it handed out remembers how far it was
// read and how it ended.
//
// Concurrency contract:
//   - Every method is safe for concurrent use: the gateway calls the
//     upstream interfaces from its own goroutines while the test scripts,
//     pushes, releases gates and reads records.
//   - The fake starts no goroutine. Its calls block only on a Gate (a
//     delayed answer or a pause inside a stream) or, for a stream's Next,
//     while there is nothing to yield; each such wait ends when the gate
//     is released, the stream is closed, the call's context ends (Send,
//     Connect, Listen's stream) or the fake is stopped.
//   - Stop releases every waiting call and makes later calls fail with
//     upstream.ErrUnavailable. NewFakeUpstream registers it with t.Cleanup,
//     so nothing is left blocked when the test ends. After a test, Stop
//     reports protocol misuse it saw (two goroutines in one stream's Next).
//   - A stream yields fresh byte slices; they stay valid after the next
//     call too.
type FakeUpstream struct {
	t        testing.TB
	stop     chan struct{}
	stopOnce sync.Once

	// mu guards every field below and the fields of sessions and streams
	// marked as guarded by f.mu.
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change: waiters re-check
	phase     string
	versions  []string
	connects  []Answer
	scripts   map[string][]Answer
	listens   []error
	sessions  []*FakeSession
	streams   []*FakeStream
	records   []Record
	misuse    []string
	nextUpsID int
}

// Record is one thing the gateway did to the upstream.
type Record struct {
	// Op is "connect" (Body = the initialize request), "send" (Body = the
	// forwarded message), "listen", "close" (the session), "resume"
	// (ResumableFake; Body = the id when the fake had no such session) or
	// "transport close".
	Op string
	// Session is the 1-based upstream session number (in order of
	// Connect), 0 for transport-level records and refused connects.
	Session int
	Body    string
	// Phase is the value of SetPhase when this happened.
	Phase string
}

// DefaultFakeVersions are the protocol versions a FakeUpstream serves.
var DefaultFakeVersions = []string{"2025-03-26", "2025-06-18", "2025-11-25"}

var (
	errStreamClosed = errors.New("testenv: stream closed")
	errFakeStopped  = fmt.Errorf("testenv: fake upstream stopped: %w", upstream.ErrUnavailable)
)

// waitLimit bounds the test-side waits (Gate.WaitReached, WaitFor): a
// gateway that never gets there fails the test instead of hanging it.
const waitLimit = 10 * time.Second

// NewFakeUpstream returns a fake serving DefaultFakeVersions. It is stopped
// by t.Cleanup.
func NewFakeUpstream(t testing.TB) *FakeUpstream {
	f := &FakeUpstream{
		t:        t,
		stop:     make(chan struct{}),
		changed:  make(chan struct{}),
		versions: append([]string(nil), DefaultFakeVersions...),
		scripts:  map[string][]Answer{},
	}
	t.Cleanup(f.Stop)
	return f
}

var _ upstream.Transport = (*FakeUpstream)(nil)

// ---- scripting ----

type answerKind uint8

const (
	answerNegotiate answerKind = iota // Connect only: the default InitializeResult
	answerResult
	answerRPCError
	answerAccepted
	answerStream
	answerFail
	answerStatus
)

// Answer is a scripted reaction to one forwarded message (or Connect).
type Answer struct {
	kind   answerKind
	result string // raw JSON result
	code   int
	msg    string
	err    error
	status int
	steps  []Step
	gate   *Gate
}

// Negotiated is Connect's default answer: an InitializeResult with the
// version the client asked for if the fake serves it, else its latest.
func Negotiated() Answer { return Answer{kind: answerNegotiate} }

// Result answers with {"jsonrpc":"2.0","id":<id>,"result":<raw>} as JSON.
// For Connect, raw is the InitializeResult and its protocolVersion becomes
// the session's version.
func Result(raw string) Answer { return Answer{kind: answerResult, result: raw} }

// RPCError answers with a JSON-RPC error carrying the request's id, as JSON
// (HTTP 200). For Connect the session is refused (nil, error message, nil).
func RPCError(code int, msg string) Answer { return Answer{kind: answerRPCError, code: code, msg: msg} }

// Accepted answers 202 without a body.
func Accepted() Answer { return Answer{kind: answerAccepted} }

// Stream answers with an SSE-style stream running steps; after the last
// step the stream ends (io.EOF) unless a step ended it before.
func Stream(steps ...Step) Answer { return Answer{kind: answerStream, steps: steps} }

// Fail returns err: upstream.ErrSessionGone (the upstream answered 404),
// upstream.ErrUnavailable, upstream.ErrTimeout, ...
func Fail(err error) Answer { return Answer{kind: answerFail, err: err} }

// HTTPStatus fails with an *upstream.StatusError of that HTTP status whose
// Body is a JSON-RPC error (code, msg) carrying the request's id.
func HTTPStatus(status, code int, msg string) Answer {
	return Answer{kind: answerStatus, status: status, code: code, msg: msg}
}

// After delays the answer until g is released.
func (a Answer) After(g *Gate) Answer { a.gate = g; return a }

// Step is one thing an answer stream does on a call of Next.
type Step struct {
	gate *Gate
	err  error
	msg  func(r *Request) string
}

// Msg yields raw as it is.
func Msg(raw string) Step { return Step{msg: func(*Request) string { return raw }} }

// Notify yields a notification; params is raw JSON or "" for none.
func Notify(method, params string) Step {
	return Step{msg: func(*Request) string {
		if params == "" {
			return `{"jsonrpc":"2.0","method":` + quote(method) + `}`
		}
		return `{"jsonrpc":"2.0","method":` + quote(method) + `,"params":` + params + `}`
	}}
}

// Progress yields notifications/progress for the request's progress token
// (params._meta.progressToken as received; null if it sent none).
func Progress(progress int) Step {
	return Step{msg: func(r *Request) string {
		tok := r.ProgressToken
		if tok == "" {
			tok = "null"
		}
		return `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":` + tok +
			`,"progress":` + strconv.Itoa(progress) + `}}`
	}}
}

// Respond yields the response to the request: its id, result raw.
func Respond(raw string) Step {
	return Step{msg: func(r *Request) string { return resultMessage(r.ID, raw) }}
}

// RespondError yields a JSON-RPC error response to the request.
func RespondError(code int, msg string) Step {
	return Step{msg: func(r *Request) string { return errorMessage(r.ID, code, msg) }}
}

// Pause blocks Next until g is released.
func Pause(g *Gate) Step { return Step{gate: g} }

// Cut ends the stream with err (as a dropped upstream connection would).
func Cut(err error) Step { return Step{err: err} }

// Request is what the fake read from a forwarded message.
type Request struct {
	Method string
	// ID and ProgressToken are raw JSON as received ("" if absent).
	ID            string
	ProgressToken string
	Body          string
}

// On queues answers for messages with this method. The last answer of a
// method's queue is used for every later message too.
func (f *FakeUpstream) On(method string, answers ...Answer) *FakeUpstream {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scripts[method] = append(f.scripts[method], answers...)
	return f
}

// OnConnect queues answers for Connect (default Negotiated). The last one
// repeats.
func (f *FakeUpstream) OnConnect(answers ...Answer) *FakeUpstream {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connects = append(f.connects, answers...)
	return f
}

// OnListen queues the outcomes of Listen calls: nil opens a standalone
// stream (the default), an error (upstream.ErrNotSupported,
// upstream.ErrSessionGone, ...) is returned. The last one repeats.
func (f *FakeUpstream) OnListen(errs ...error) *FakeUpstream {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listens = append(f.listens, errs...)
	return f
}

// Versions replaces the protocol versions Negotiated picks from.
func (f *FakeUpstream) Versions(vs ...string) *FakeUpstream {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions = append([]string(nil), vs...)
	return f
}

// SetPhase labels the records made from now on (for example "shutdown").
func (f *FakeUpstream) SetPhase(phase string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.phase = phase
}

func takeLocked(q *[]Answer) (Answer, bool) {
	if len(*q) == 0 {
		return Answer{}, false
	}
	a := (*q)[0]
	if len(*q) > 1 {
		*q = (*q)[1:]
	}
	return a, true
}

// ---- Gate ----

// Gate holds scripted calls until the test releases it. Every call that
// arrives waits; Release lets all of them (and later ones) through.
type Gate struct {
	name        string
	reached     chan struct{}
	reachedOnce sync.Once
	release     chan struct{}
	releaseOnce sync.Once
}

// NewGate returns a closed gate; name is for failure messages.
func NewGate(name string) *Gate {
	return &Gate{name: name, reached: make(chan struct{}), release: make(chan struct{})}
}

// Release opens the gate. It may be called more than once.
func (g *Gate) Release() { g.releaseOnce.Do(func() { close(g.release) }) }

func (g *Gate) released() bool {
	select {
	case <-g.release:
		return true
	default:
		return false
	}
}

// Reached is closed once a call waits at the gate (or passed it).
func (g *Gate) Reached() <-chan struct{} { return g.reached }

// WaitReached blocks until a call arrived at the gate; it fails the test
// if none does within a generous limit.
func (g *Gate) WaitReached(t testing.TB) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(waitLimit):
		t.Fatalf("testenv: nothing reached gate %q", g.name)
	}
}

// pass waits at the gate: nil once released, else the reason it gave up.
func (g *Gate) pass(ctx context.Context, closed, stop <-chan struct{}) error {
	g.reachedOnce.Do(func() { close(g.reached) })
	select {
	case <-g.release:
		return nil
	default:
	}
	select {
	case <-g.release:
		return nil
	case <-closed:
		return errStreamClosed
	case <-stop:
		return errFakeStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---- Transport ----

// Connect implements upstream.Transport.
func (f *FakeUpstream) Connect(ctx context.Context, initialize []byte) (upstream.Session, []byte, error) {
	req := parseRequest(initialize)
	f.mu.Lock()
	a, ok := takeLocked(&f.connects)
	if !ok {
		a = Negotiated()
	}
	f.mu.Unlock()
	if err := f.delay(ctx, a.gate); err != nil {
		f.record(Record{Op: "connect", Body: string(initialize)})
		return nil, nil, err
	}
	var result string
	switch a.kind {
	case answerNegotiate:
		result = f.initializeResult(initialize)
	case answerResult:
		result = a.result
	case answerRPCError:
		f.record(Record{Op: "connect", Body: string(initialize)})
		return nil, []byte(errorMessage(req.ID, a.code, a.msg)), nil
	case answerFail:
		f.record(Record{Op: "connect", Body: string(initialize)})
		return nil, nil, a.err
	case answerStatus:
		f.record(Record{Op: "connect", Body: string(initialize)})
		return nil, nil, &upstream.StatusError{Op: "initialize", Status: a.status, Body: []byte(errorMessage(req.ID, a.code, a.msg))}
	default:
		f.record(Record{Op: "connect", Body: string(initialize)})
		return nil, nil, fmt.Errorf("testenv: answer kind %d not valid for Connect: %w", a.kind, upstream.ErrUnavailable)
	}
	version := ""
	if raw, ok := jsonrpc.Lookup([]byte(result), "protocolVersion"); ok {
		version, _ = jsonrpc.Unquote(raw)
	}
	f.mu.Lock()
	if f.stopped() {
		f.mu.Unlock()
		return nil, nil, errFakeStopped
	}
	f.nextUpsID++
	s := &FakeSession{f: f, n: len(f.sessions) + 1, id: "fake-upstream-session-" + strconv.Itoa(f.nextUpsID), version: version}
	f.sessions = append(f.sessions, s)
	f.recordLocked(Record{Op: "connect", Session: s.n, Body: string(initialize)})
	f.mu.Unlock()
	return s, []byte(resultMessage(req.ID, result)), nil
}

// initializeResult answers an initialize: the requested version if served,
// else the latest one served.
func (f *FakeUpstream) initializeResult(initialize []byte) string {
	requested := ""
	if raw, ok := jsonrpc.Lookup(initialize, "params", "protocolVersion"); ok {
		requested, _ = jsonrpc.Unquote(raw)
	}
	f.mu.Lock()
	version := ""
	if n := len(f.versions); n > 0 {
		version = f.versions[n-1]
	}
	for _, v := range f.versions {
		if v == requested {
			version = v
		}
	}
	f.mu.Unlock()
	return `{"protocolVersion":` + quote(version) +
		`,"capabilities":{"logging":{},"tools":{"listChanged":true}},"serverInfo":{"name":"fake-upstream","version":"1.0.0"}}`
}

// Close implements upstream.Transport.
func (f *FakeUpstream) Close() error {
	f.record(Record{Op: "transport close"})
	return nil
}

// Stop releases every blocked call and fails later ones. It is idempotent
// and is called by t.Cleanup.
func (f *FakeUpstream) Stop() {
	f.stopOnce.Do(func() {
		close(f.stop)
		f.mu.Lock()
		misuse := f.misuse
		f.notifyLocked()
		f.mu.Unlock()
		for _, m := range misuse {
			f.t.Errorf("testenv: fake upstream misused: %s", m)
		}
	})
}

func (f *FakeUpstream) stopped() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

func (f *FakeUpstream) delay(ctx context.Context, g *Gate) error {
	if f.stopped() {
		return errFakeStopped
	}
	if g == nil {
		return nil
	}
	return g.pass(ctx, nil, f.stop)
}

func (f *FakeUpstream) record(r Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recordLocked(r)
}

func (f *FakeUpstream) recordLocked(r Record) {
	r.Phase = f.phase
	f.records = append(f.records, r)
	f.notifyLocked()
}

func (f *FakeUpstream) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// ---- Session ----

// FakeSession is one upstream session opened by Connect.
type FakeSession struct {
	f       *FakeUpstream
	n       int
	id      string
	version string

	// gone: a session Resume did not find (the upstream forgot it); every
	// exchange fails with upstream.ErrSessionGone. Set before it is shared.
	gone bool

	// Guarded by f.mu.
	closed     bool
	standalone []string // messages pushed for the standalone stream, not yet yielded
	cut        error    // ends the open standalone stream once standalone is empty
}

var _ upstream.Session = (*FakeSession)(nil)

// ID implements upstream.Session ("fake-upstream-session-<n>").
func (s *FakeSession) ID() string { return s.id }

// Version implements upstream.Session.
func (s *FakeSession) Version() string { return s.version }

// N is the session's 1-based number, in order of Connect.
func (s *FakeSession) N() int { return s.n }

// Send implements upstream.Session: it records body and answers by the
// script of its method. A batch is answered element by element (JSON
// answers only) as a JSON array, or 202 if it holds no request.
func (s *FakeSession) Send(ctx context.Context, body []byte) (*upstream.Reply, error) {
	f := s.f
	f.record(Record{Op: "send", Session: s.n, Body: string(body)})
	if s.gone {
		return nil, fmt.Errorf("testenv: %s: %w", s.id, upstream.ErrSessionGone)
	}
	var p jsonrpc.Parser
	msgs, batch, perr := p.Parse(body)
	if perr != nil {
		return &upstream.Reply{JSON: []byte(errorMessage(string(perr.ID), perr.Code, perr.Message))}, nil
	}
	if !batch {
		req := requestOf(&msgs[0], body)
		a := f.answerFor(req.Method, msgs[0].Kind)
		if err := f.delay(ctx, a.gate); err != nil {
			return nil, err
		}
		return f.reply(s, req, a)
	}
	var out []string
	for i := range msgs {
		if msgs[i].Kind != jsonrpc.KindRequest {
			continue
		}
		req := requestOf(&msgs[i], msgs[i].Raw)
		a := f.answerFor(req.Method, msgs[i].Kind)
		if err := f.delay(ctx, a.gate); err != nil {
			return nil, err
		}
		r, err := f.reply(s, req, a)
		if err != nil {
			return nil, err
		}
		if r.JSON == nil {
			return nil, fmt.Errorf("testenv: only JSON answers are supported in a batch (%s): %w", req.Method, upstream.ErrUnavailable)
		}
		out = append(out, string(r.JSON))
	}
	if len(out) == 0 {
		return &upstream.Reply{Accepted: true}, nil
	}
	return &upstream.Reply{JSON: []byte("[" + strings.Join(out, ",") + "]")}, nil
}

func (f *FakeUpstream) answerFor(method string, kind jsonrpc.Kind) Answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q, ok := f.scripts[method]; ok && method != "" {
		a, _ := takeLocked(&q)
		f.scripts[method] = q
		return a
	}
	if kind == jsonrpc.KindRequest {
		return RPCError(jsonrpc.CodeMethodNotFound, "Method not found")
	}
	return Accepted()
}

func (f *FakeUpstream) reply(s *FakeSession, req *Request, a Answer) (*upstream.Reply, error) {
	switch a.kind {
	case answerResult:
		return &upstream.Reply{JSON: []byte(resultMessage(req.ID, a.result))}, nil
	case answerRPCError:
		return &upstream.Reply{JSON: []byte(errorMessage(req.ID, a.code, a.msg))}, nil
	case answerAccepted:
		return &upstream.Reply{Accepted: true}, nil
	case answerStream:
		st := f.newStream(s, "answer to "+req.Method+" id "+req.ID, req, a.steps, nil)
		return &upstream.Reply{Stream: st}, nil
	case answerFail:
		return nil, a.err
	case answerStatus:
		return nil, &upstream.StatusError{Op: "POST", Status: a.status, Body: []byte(errorMessage(req.ID, a.code, a.msg))}
	}
	return nil, fmt.Errorf("testenv: answer kind %d not valid for Send: %w", a.kind, upstream.ErrUnavailable)
}

// Listen implements upstream.Session: by default it opens the session's
// standalone stream, which yields what Push queues.
func (s *FakeSession) Listen(ctx context.Context) (upstream.Stream, error) {
	f := s.f
	f.mu.Lock()
	f.recordLocked(Record{Op: "listen", Session: s.n})
	var err error
	if len(f.listens) > 0 {
		err = f.listens[0]
		if len(f.listens) > 1 {
			f.listens = f.listens[1:]
		}
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if s.gone {
		return nil, fmt.Errorf("testenv: %s: %w", s.id, upstream.ErrSessionGone)
	}
	if f.stopped() {
		return nil, errFakeStopped
	}
	return f.newStream(s, "standalone", nil, nil, ctx), nil
}

// Close implements upstream.Session; it is recorded on every call.
func (s *FakeSession) Close(context.Context) error {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	s.closed = true
	f.recordLocked(Record{Op: "close", Session: s.n})
	return nil
}

// Push queues a message for the session's standalone stream (now or when
// the gateway opens one).
func (s *FakeSession) Push(raw string) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	s.standalone = append(s.standalone, raw)
	f.notifyLocked()
}

// CutListen ends the open standalone stream with err once the messages
// pushed before have been yielded.
func (s *FakeSession) CutListen(err error) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	s.cut = err
	f.notifyLocked()
}

// Closed reports whether the gateway closed the session.
func (s *FakeSession) Closed() bool {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.closed
}

// Session returns the n-th session (1-based); it fails the test if there
// is none.
func (f *FakeUpstream) Session(n int) *FakeSession {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < 1 || n > len(f.sessions) {
		f.t.Fatalf("testenv: no upstream session %d (have %d)", n, len(f.sessions))
	}
	return f.sessions[n-1]
}

// ---- Stream ----

// FakeStream is an answer stream (from Stream) or a standalone stream
// (from Listen).
type FakeStream struct {
	f       *FakeUpstream
	sess    *FakeSession
	label   string
	req     *Request
	steps   []Step
	ctx     context.Context // Listen's; nil for answer streams
	closed  chan struct{}
	closeMu sync.Once

	// Guarded by f.mu.
	pos     int    // next step
	yielded int    // messages returned by Next
	waiting bool   // Next is blocked: at steps[pos] (a Pause) or, standalone, for a Push
	inNext  bool   // a Next call is running
	end     string // how the stream ended, "" while open
	closes  int
}

// idleLocked: everything the stream yielded has been taken by its reader,
// which now waits in Next for something the test has not provided yet (a
// gate release, a Push): the gateway has stored all it was given. A flag
// alone would lag behind a release or push the reader has not woken for.
func (st *FakeStream) idleLocked() bool {
	switch {
	case st.end != "" || st.closes > 0:
		return true
	case !st.waiting:
		return false
	case st.req == nil:
		return len(st.sess.standalone) == 0 && st.sess.cut == nil
	default:
		return st.pos < len(st.steps) && st.steps[st.pos].gate != nil && !st.steps[st.pos].gate.released()
	}
}

var _ upstream.Stream = (*FakeStream)(nil)

func (f *FakeUpstream) newStream(s *FakeSession, label string, req *Request, steps []Step, ctx context.Context) *FakeStream {
	st := &FakeStream{f: f, sess: s, label: label, req: req, steps: steps, ctx: ctx, closed: make(chan struct{})}
	f.mu.Lock()
	f.streams = append(f.streams, st)
	f.notifyLocked()
	f.mu.Unlock()
	return st
}

// Next implements upstream.Stream.
func (st *FakeStream) Next() ([]byte, error) {
	f := st.f
	f.mu.Lock()
	if st.inNext {
		f.misuse = append(f.misuse, "concurrent Next on stream "+st.label)
	}
	st.inNext = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		st.inNext, st.waiting = false, false
		f.notifyLocked()
		f.mu.Unlock()
	}()
	if st.req == nil {
		return st.nextStandalone()
	}
	for {
		f.mu.Lock()
		switch {
		case st.isClosed():
			st.endLocked("closed by the gateway")
			f.mu.Unlock()
			return nil, errStreamClosed
		case f.stopped():
			st.endLocked("fake stopped")
			f.mu.Unlock()
			return nil, errFakeStopped
		case st.pos == len(st.steps):
			st.endLocked("EOF")
			f.mu.Unlock()
			return nil, io.EOF
		}
		step := st.steps[st.pos]
		switch {
		case step.gate != nil:
			st.waiting = true
			f.notifyLocked()
			f.mu.Unlock()
			if err := step.gate.pass(context.Background(), st.closed, f.stop); err != nil {
				continue // the checks above say why
			}
			f.mu.Lock()
			st.waiting = false
			st.pos++
			f.mu.Unlock()
		case step.err != nil:
			st.pos++
			st.endLocked("cut: " + step.err.Error())
			f.mu.Unlock()
			return nil, step.err
		default:
			st.pos++
			st.yielded++
			f.notifyLocked()
			f.mu.Unlock()
			return []byte(step.msg(st.req)), nil
		}
	}
}

func (st *FakeStream) nextStandalone() ([]byte, error) {
	f := st.f
	for {
		f.mu.Lock()
		switch {
		case st.isClosed():
			st.endLocked("closed by the gateway")
			f.mu.Unlock()
			return nil, errStreamClosed
		case f.stopped():
			st.endLocked("fake stopped")
			f.mu.Unlock()
			return nil, errFakeStopped
		case st.ctx.Err() != nil:
			// The gateway cancels Listen's context as it closes the stream;
			// whichever Next sees first, the gateway ended the stream.
			st.endLocked("closed by the gateway")
			f.mu.Unlock()
			return nil, st.ctx.Err()
		case len(st.sess.standalone) > 0:
			msg := st.sess.standalone[0]
			st.sess.standalone = st.sess.standalone[1:]
			st.yielded++
			f.notifyLocked()
			f.mu.Unlock()
			return []byte(msg), nil
		case st.sess.cut != nil:
			err := st.sess.cut
			st.sess.cut = nil
			st.endLocked("cut: " + err.Error())
			f.mu.Unlock()
			return nil, err
		}
		st.waiting = true
		f.notifyLocked() // WaitFor callers may now see the stream idle
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-st.closed:
		case <-f.stop:
		case <-st.ctx.Done():
		}
	}
}

func (st *FakeStream) isClosed() bool {
	select {
	case <-st.closed:
		return true
	default:
		return false
	}
}

func (st *FakeStream) endLocked(how string) {
	if st.end == "" {
		st.end = how
	}
	st.f.notifyLocked()
}

// Close implements upstream.Stream: it interrupts a blocked Next and may
// be called more than once, from any goroutine.
func (st *FakeStream) Close() error {
	st.closeMu.Do(func() { close(st.closed) })
	f := st.f
	f.mu.Lock()
	st.closes++
	st.endLocked("closed by the gateway")
	f.mu.Unlock()
	return nil
}

// Yielded is how many messages Next returned so far.
func (st *FakeStream) Yielded() int {
	st.f.mu.Lock()
	defer st.f.mu.Unlock()
	return st.yielded
}

// ---- waiting and records ----

// WaitFor blocks until cond (called with the fake's lock held, so it must
// only read the fake) holds; it fails the test after a generous limit.
func (f *FakeUpstream) WaitFor(t testing.TB, what string, cond func(v *FakeView) bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		ok := cond(&FakeView{f: f})
		changed := f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("testenv: fake upstream: gave up waiting for %s; records:\n%s", what, f.Transcript())
		}
	}
}

// FakeView reads the fake's state inside WaitFor.
type FakeView struct{ f *FakeUpstream }

// Count is the number of records with op (all sessions).
func (v *FakeView) Count(op string) int {
	n := 0
	for _, r := range v.f.records {
		if r.Op == op {
			n++
		}
	}
	return n
}

// Sent reports whether some message sent upstream contains s.
func (v *FakeView) Sent(s string) bool {
	for _, r := range v.f.records {
		if r.Op == "send" && strings.Contains(r.Body, s) {
			return true
		}
	}
	return false
}

// StreamsIdle reports whether every stream the fake handed out is either
// ended or blocked in Next with nothing to yield (at an unreleased gate
// or, standalone, with no pushed message left): whatever it yielded has
// been consumed.
func (v *FakeView) StreamsIdle() bool {
	for _, st := range v.f.streams {
		if !st.idleLocked() {
			return false
		}
	}
	return true
}

// StreamEnded reports whether the n-th stream handed out (1-based, answer
// and standalone streams counted together) has ended.
func (v *FakeView) StreamEnded(n int) bool {
	return n <= len(v.f.streams) && v.f.streams[n-1].end != ""
}

// StreamEnd returns how the n-th stream handed out (1-based) ended: "EOF"
// (read to its end), "closed by the gateway", "cut: ..." or "fake
// stopped"; "" while it is open or when there is no such stream.
func (v *FakeView) StreamEnd(n int) string {
	if n > len(v.f.streams) {
		return ""
	}
	return v.f.streams[n-1].end
}

// Records returns a copy of the records so far.
func (f *FakeUpstream) Records() []Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Record(nil), f.records...)
}

// Sent returns the bodies the gateway sent upstream (initialize requests
// and forwarded messages), in order.
func (f *FakeUpstream) Sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.records {
		if r.Op == "connect" || r.Op == "send" {
			out = append(out, r.Body)
		}
	}
	return out
}

// Transcript renders the records for a golden file: connects that
// opened no session first, then each session (in Connect order) with its records in order
// and the streams it handed out, then transport records. Records of one
// session are in the order they happened; sessions are not interleaved,
// so the rendering does not depend on how concurrent sessions raced.
func (f *FakeUpstream) Transcript() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	line := func(r Record, indent string) {
		b.WriteString(indent)
		b.WriteString(r.Op)
		if r.Body != "" {
			b.WriteString(" ")
			b.WriteString(r.Body)
		}
		if r.Phase != "" {
			b.WriteString("   [" + r.Phase + "]")
		}
		b.WriteString("\n")
	}
	for _, r := range f.records {
		if r.Session == 0 && r.Op == "connect" {
			b.WriteString("no session opened: ")
			line(r, "")
		}
	}
	for _, s := range f.sessions {
		fmt.Fprintf(&b, "session %d (%s, version %s)\n", s.n, s.id, s.version)
		for _, r := range f.records {
			if r.Session == s.n {
				line(r, "  ")
			}
		}
		// Standalone streams first, then the answers in the order of their
		// requests: a standalone stream opened in the background may be
		// made before or after the first call's answer.
		streams := make([]*FakeStream, 0, len(f.streams))
		for _, st := range f.streams {
			if st.sess == s && st.req == nil {
				streams = append(streams, st)
			}
		}
		for _, st := range f.streams {
			if st.sess == s && st.req != nil {
				streams = append(streams, st)
			}
		}
		for _, st := range streams {
			end := st.end
			switch {
			case end == "":
				end = "still open, not closed"
			case st.closes == 0:
				end += ", not closed"
			case end != "closed by the gateway":
				end += ", then closed"
			}
			fmt.Fprintf(&b, "  stream (%s): yielded %d, then %s\n", st.label, st.yielded, end)
		}
	}
	for _, r := range f.records {
		if r.Session == 0 && r.Op != "connect" {
			line(r, "")
		}
	}
	if b.Len() == 0 {
		return "nothing\n"
	}
	return b.String()
}

// ---- JSON helpers ----

func parseRequest(body []byte) *Request {
	var p jsonrpc.Parser
	msgs, batch, err := p.Parse(body)
	if err != nil || batch || len(msgs) != 1 {
		return &Request{ID: "null", Body: string(body)}
	}
	return requestOf(&msgs[0], body)
}

func requestOf(m *jsonrpc.Message, body []byte) *Request {
	r := &Request{Method: string(m.Method), ID: string(m.ID), ProgressToken: string(m.ProgressToken), Body: string(body)}
	if r.ID == "" {
		r.ID = "null"
	}
	return r
}

func resultMessage(id, result string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":` + result + `}`
}

func errorMessage(id string, code int, msg string) string {
	var raw []byte
	if id != "" && id != "null" {
		raw = []byte(id)
	}
	return string(jsonrpc.AppendError(nil, raw, code, msg, nil))
}

func quote(s string) string { return string(jsonrpc.AppendString(nil, s)) }
