package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Transport opens sessions on one upstream MCP server.
type Transport interface {
	// Connect opens an upstream session by forwarding the client's
	// initialize request. It returns the session and the upstream's
	// initialize response message (a JSON-RPC response or error, owned by
	// the caller). On a JSON-RPC error response the session is nil and err
	// is nil: the caller relays the error. Safe for concurrent use.
	Connect(ctx context.Context, initialize []byte) (Session, []byte, error)
	// Close releases pooled connections and ends what is left of every
	// session (the stdio transport's processes), waiting for the goroutines
	// that do it. Sessions should be closed first.
	Close() error
}

// Prober is implemented by transports that can check, without opening a
// session, that their upstream is reachable (for a readiness check).
type Prober interface {
	// Probe returns nil if the upstream can be reached now. It honours
	// ctx's deadline. Safe for concurrent use.
	Probe(ctx context.Context) error
}

// Resumer is implemented by transports whose upstream sessions outlive the
// gateway's process, so that a restarted gateway can re-attach one from the
// identity its Session reported before (Streamable HTTP: the same
// Mcp-Session-Id and MCP-Protocol-Version). Sessions of transports without
// it (stdio: the child dies with the gateway) are re-initialized instead.
type Resumer interface {
	// Resume returns a Session bound to the upstream session id and the
	// protocol version negotiated with it, as Session.ID and
	// Session.Version reported them. It does no I/O: a session the upstream
	// no longer knows fails its first exchange with ErrSessionGone. Safe
	// for concurrent use.
	Resume(id, version string) (Session, error)
}

// Session kinds, as the sessions of this package report them with a
// Kind() string method (for the admin API and session records).
const (
	KindHTTP      = "http"  // Streamable HTTP
	KindStdio     = "stdio" // a process per session
	KindLegacySSE = "sse"   // the HTTP+SSE transport of 2024-11-05
)

// Session is one upstream session, bound to one client session.
type Session interface {
	// ID is the upstream's session identifier, for logs only; it must never
	// reach a client. Empty when the upstream issued none.
	ID() string
	// Version is the protocol version negotiated with the upstream.
	Version() string
	// Send forwards one client message body (a request, notification,
	// response or batch). Safe for concurrent use.
	Send(ctx context.Context, body []byte) (*Reply, error)
	// Listen opens the upstream's standalone server-to-client stream.
	// It returns ErrNotSupported when the upstream offers none.
	Listen(ctx context.Context) (Stream, error)
	// Close ends the upstream session (best effort) and is idempotent. It
	// is bounded by ctx and may return while the transport still finishes
	// the end on a goroutine it owns (a stdio process in its kill grace);
	// Transport.Close waits for that.
	Close(ctx context.Context) error
}

// WithinCloser is implemented by sessions whose Close a duration can bound
// without a context deadline (and the timer one costs): the Streamable HTTP
// transport's, whose DELETE is one exchange with a timeout.
type WithinCloser interface {
	// CloseWithin is Close, bounded by d as well as by ctx.
	CloseWithin(ctx context.Context, d time.Duration) error
}

// Aborter is implemented by sessions that nothing but the gateway ends: a
// stdio session's process, a legacy HTTP+SSE session's held-open stream.
// (A Streamable HTTP session ends upstream by itself, at the upstream's idle
// timeout, so its sessions do not implement it.)
type Aborter interface {
	// Abort starts ending the session as Close does and returns at once:
	// it never waits and does no blocking I/O (it closes a pipe, cancels a
	// request); the transport finishes the end on goroutines it owns
	// (Transport.Close waits for them). Safe for concurrent use, with Close
	// too; idempotent.
	Abort()
}

// Stream yields the JSON-RPC messages of one upstream stream, in order.
type Stream interface {
	// Next returns the next message. The bytes are valid until the next
	// call. It returns io.EOF when the upstream ended the stream. Only one
	// goroutine may call Next.
	Next() ([]byte, error)
	// Close stops the stream and releases its connection. It may be called
	// concurrently with Next (which then returns an error), and more than once.
	Close() error
}

// Parker is implemented by streams that can wait for input without a
// goroutine of their caller's: an idle stream then costs no goroutine stack.
// Its methods are called by the goroutine that calls Next.
type Parker interface {
	// SetIdle makes Next return ErrIdle once the stream has had no input for
	// about d (at least d/2); 0 turns it off. The stream is intact after
	// ErrIdle: call Park, or Next again.
	SetIdle(d time.Duration)
	// Park arranges for resume to run on a new goroutine once Next has
	// something to return (input, the end of the stream, an error, Close)
	// and reports true; the caller then stops calling Next until resume
	// runs. It reports false, arranging nothing, when the stream cannot
	// park now (input is buffered, or it cannot wait without a goroutine):
	// call Next.
	Park(resume func()) bool
}

// WaitHook is told when a stream's reader is about to wait for input.
type WaitHook interface {
	// BeforeWait runs on the goroutine calling Next, before a read that
	// may wait: what Next returned so far is all the input in hand.
	BeforeWait()
}

// WaitHooker is implemented by streams that can call a WaitHook. Its
// caller batches work per burst of input: whatever Next returns before
// BeforeWait arrived together.
type WaitHooker interface {
	// OnWait makes the stream call h.BeforeWait before every read of its
	// input that may wait, for the rest of its life (resumed connections
	// included). It reports false, and never calls h, when the stream
	// cannot tell.
	OnWait(h WaitHook) bool
}

// ErrIdle is returned by Next of a stream with an idle period (Parker) that
// had no input for that long. It does not end the stream.
var ErrIdle = errors.New("upstream: stream idle")

// Reply is the upstream's answer to a forwarded message. Exactly one of
// Accepted, JSON and Stream is set.
type Reply struct {
	// Accepted: the upstream took a message without answering (HTTP 202).
	Accepted bool
	// JSON is a complete JSON-RPC answer, owned by the caller.
	JSON []byte
	// Stream carries the answer as a sequence of messages. The caller must
	// Close it.
	Stream Stream
}

var (
	// ErrSessionGone: the upstream no longer knows the session (HTTP 404 on
	// a session request). The client session must end.
	ErrSessionGone = errors.New("upstream: session gone")
	// ErrNotSupported: the upstream does not offer the requested feature.
	ErrNotSupported = errors.New("upstream: not supported")
	// ErrUnavailable: the upstream could not be reached or broke the
	// exchange (connection refused or reset, malformed answer).
	ErrUnavailable = errors.New("upstream: unavailable")
	// ErrTimeout: the upstream did not answer within the configured time.
	ErrTimeout = errors.New("upstream: timeout")
	// ErrTooLarge: an upstream answer or event exceeded the configured limit.
	ErrTooLarge = errors.New("upstream: answer too large")
	// ErrAtCapacity: the transport cannot open another upstream session now
	// (a stdio transport runs its maximum number of processes). The
	// condition is temporary: the gateway answers 503 with Retry-After.
	ErrAtCapacity = errors.New("upstream: at capacity")
)

// StatusError is an upstream HTTP answer with an unexpected status. Body
// holds the upstream's body when it was a JSON-RPC error message, so the
// gateway can relay it; otherwise it is nil. RetryAfter is the answer's
// Retry-After when it was a well-formed one (RetryAfterOf), else "".
type StatusError struct {
	Op         string
	Status     int
	Body       []byte
	RetryAfter string
}

// maxRetryAfter bounds a relayed Retry-After value: an HTTP-date is 29
// bytes, delay-seconds fewer.
const maxRetryAfter = 32

// RetryAfterOf returns v if it is a Retry-After value fit to relay (delay
// seconds or an HTTP-date: RFC 9110 section 10.2.3), else "".
func RetryAfterOf(v []byte) string {
	if len(v) == 0 || len(v) > maxRetryAfter {
		return ""
	}
	digits := true
	for _, c := range v {
		if c < '0' || c > '9' {
			digits = false
			break
		}
	}
	if digits {
		return string(v)
	}
	if _, err := http.ParseTime(string(v)); err != nil {
		return ""
	}
	return string(v)
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream: %s: HTTP %d", e.Op, e.Status)
}

// Drain reads an answered stream to its end, so an HTTP connection goes
// back to the pool instead of being closed: upstreams end an answer stream
// right after its response. Messages after the response are late and
// dropped; a stream still open after a second (or 64 messages) is closed.
func Drain(s Stream) {
	d := drainers.Get().(*drainer)
	d.mu.Lock()
	d.s = s
	d.mu.Unlock()
	d.t.Reset(time.Second)
	for n := 0; n < 64; n++ {
		if _, err := s.Next(); err != nil {
			break
		}
	}
	if d.t.Stop() {
		d.mu.Lock()
		d.s = nil
		d.mu.Unlock()
		drainers.Put(d) // its timer will not fire for this stream
	}
}

// A drainer is Drain's guard timer, kept for reuse: a timer and its
// function per answered call would be two allocations on every
// SSE-answered call. One whose timer fired is not reused.
type drainer struct {
	t  *time.Timer
	mu sync.Mutex
	s  Stream
}

var drainers = sync.Pool{New: func() any {
	d := &drainer{}
	d.t = time.AfterFunc(time.Hour, d.fire)
	d.t.Stop()
	return d
}}

func (d *drainer) fire() {
	d.mu.Lock()
	s := d.s
	d.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}
