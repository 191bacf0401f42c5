package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
)

// Defaults for HTTPConfig zero values.
const (
	DefaultMaxConns         = 512
	DefaultStreamMaxConns   = 1 << 20
	DefaultTimeout          = 5 * time.Minute
	DefaultConnWaitTimeout  = 10 * time.Second
	DefaultMaxMessageBytes  = 16 << 20
	DefaultResumeAttempts   = 5
	defaultResumeRetryDelay = 500 * time.Millisecond
	// minResumeDelay and maxResumeDelay bound the upstream's retry hint
	// before a resume: a hostile upstream makes the gateway neither spin
	// nor wait for hours.
	minResumeDelay = 10 * time.Millisecond
	maxResumeDelay = 30 * time.Second
)

// HTTPConfig configures the Streamable HTTP transport.
type HTTPConfig struct {
	// URL of the upstream MCP endpoint, http:// or https://. Required.
	URL string
	// MaxConns bounds the pooled POST connections; 0 = DefaultMaxConns.
	// A POST answered with SSE holds its connection until its stream ends.
	MaxConns int
	// StreamMaxConns bounds standalone GET streams; 0 = DefaultStreamMaxConns.
	StreamMaxConns int
	// Timeout bounds each POST until the upstream's response headers
	// arrive (a JSON answer's body too), and Connect's initialize until its
	// answer, an SSE one included; 0 = DefaultTimeout. Other streams have
	// no timeout.
	Timeout time.Duration
	// ConnWaitTimeout is how long a POST waits for a free pooled connection
	// when all MaxConns are busy; 0 = DefaultConnWaitTimeout.
	ConnWaitTimeout time.Duration
	// MaxMessageBytes bounds one JSON answer or one SSE event;
	// 0 = DefaultMaxMessageBytes.
	MaxMessageBytes int
	// ResumeAttempts is how often a POST answer stream that the upstream
	// closed before its response is resumed with Last-Event-ID;
	// 0 = DefaultResumeAttempts, <0 = never.
	ResumeAttempts int
	// UserAgent sent upstream; empty = "mcpgate".
	UserAgent string
	// TLSConfig is used for https upstreams (for example RootCAs for a
	// private CA); nil = the system roots. It is cloned, not kept.
	TLSConfig *tls.Config
	// Auth is a header added to every upstream request; the zero value
	// adds none (the client's credentials never reach the upstream).
	Auth AuthHeader
}

// HTTP is the Streamable HTTP transport (protocol 2025-03-26 to 2025-11-25).
type HTTP struct {
	cfg  HTTPConfig
	uri  string
	post *fasthttp.HostClient // POSTs and DELETEs, timeouts per request
	late lateEnds             // SSE answers' owed ends on post's connections (conn.go)

	// GET streams run on connections of their own (see getConn).
	dialer     *net.Dialer
	addr       string      // host:port to dial
	tls        *tls.Config // nil for http
	hostHeader string
	requestURI string       // path and query
	basicAuth  string       // Authorization from the URL's user information, "" if none (get)
	getConns   atomic.Int64 // open GET stream connections

	// pollMu guards poll, the poller of parked GET streams (see
	// httpStream.Park): made on the first park, stopped by Close.
	pollMu     sync.Mutex
	poll       *poller
	pollClosed bool
	// idle watches the waits of GET streams with an idle period (see
	// idleWatch), made on first use; guarded by pollMu.
	idle *idleWatch
}

var _ Transport = (*HTTP)(nil)

// NewHTTP validates cfg, fills defaults and returns the transport.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: invalid URL %q: want http(s)://host[:port]/path", cfg.URL)
	}
	if err := cfg.Auth.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxConns < 0 || cfg.StreamMaxConns < 0 || cfg.Timeout < 0 || cfg.ConnWaitTimeout < 0 || cfg.MaxMessageBytes < 0 {
		return nil, errors.New("upstream: negative limit in config")
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.StreamMaxConns == 0 {
		cfg.StreamMaxConns = DefaultStreamMaxConns
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ConnWaitTimeout == 0 {
		cfg.ConnWaitTimeout = DefaultConnWaitTimeout
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.ResumeAttempts == 0 {
		cfg.ResumeAttempts = DefaultResumeAttempts
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "mcpgate"
	}
	addr := u.Host
	isTLS := u.Scheme == "https"
	if u.Port() == "" {
		if isTLS {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	var tlsConf *tls.Config
	if isTLS {
		if cfg.TLSConfig != nil {
			tlsConf = cfg.TLSConfig.Clone()
		} else {
			tlsConf = &tls.Config{}
		}
		if tlsConf.ServerName == "" {
			tlsConf.ServerName = u.Hostname()
		}
		tlsConf.MinVersion = max(tlsConf.MinVersion, tls.VersionTLS12)
	}
	t := &HTTP{
		cfg:        cfg,
		uri:        u.String(),
		dialer:     dialer,
		addr:       addr,
		tls:        tlsConf,
		hostHeader: u.Host,
		requestURI: u.RequestURI(),
	}
	if u.User != nil && u.User.Username() != "" {
		pw, _ := u.User.Password()
		t.basicAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw))
	}
	t.post = &fasthttp.HostClient{ // after t: its dialer holds &t.late
		Addr:                          addr,
		IsTLS:                         isTLS,
		Name:                          cfg.UserAgent,
		MaxConns:                      cfg.MaxConns,
		MaxConnWaitTimeout:            cfg.ConnWaitTimeout,
		MaxIdleConnDuration:           30 * time.Second,
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: false,
		RetryIfErr:                    retryStaleConn,
		Dial:                          dialTracked(dialer, !isTLS, &t.late),
		TLSConfig:                     tlsConf,
		ReadBufferSize:                recordSize, // a response's start is recorded up to it (conn.go)
		WriteBufferSize:               8 << 10,
	}
	return t, nil
}

// retryStaleConn retries a POST once when a pooled keep-alive connection
// turns out to be dead before any answer byte: the upstream closed it while
// idle (a restart, its idle timeout), so it never read the request. Any
// other failure, and any second failure, is final: POSTs are not
// idempotent. A connection that failed because its previous answer's owed
// end had not come (errLateEnd) sent nothing: retried on another, within
// fasthttp's attempts (MaxIdemponentCallAttempts).
func retryStaleConn(_ *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if errors.Is(err, errLateEnd) {
		return false, true
	}
	if attempts > 1 {
		return false, false
	}
	stale := errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	return true, stale
}

// Probe checks that the upstream accepts a TCP connection (and completes
// a TLS handshake for https).
func (t *HTTP) Probe(ctx context.Context) error {
	c, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer c.Close()
	if t.tls != nil {
		tc := tls.Client(c, t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	return nil
}

// Close releases idle pooled connections and stops the poller of parked
// GET streams (their readers resume on goroutines of their own).
func (t *HTTP) Close() error {
	t.post.CloseIdleConnections()
	t.pollMu.Lock()
	p, w := t.poll, t.idle
	t.pollClosed, t.idle = true, nil
	t.pollMu.Unlock()
	if p != nil {
		p.close()
	}
	if w != nil {
		w.close()
	}
	return nil
}

// idleWatch returns the transport's watcher of idle GET streams, made on
// first use; nil once the transport is closed.
func (t *HTTP) idleWatch() *idleWatch {
	t.pollMu.Lock()
	defer t.pollMu.Unlock()
	if t.pollClosed {
		return nil
	}
	if t.idle == nil {
		t.idle = newIdleWatch()
	}
	return t.idle
}

// idleWatchIfAny returns the watcher if one was made.
func (t *HTTP) idleWatchIfAny() *idleWatch {
	t.pollMu.Lock()
	defer t.pollMu.Unlock()
	return t.idle
}

// poller returns the transport's poller of parked GET streams, made on
// first use; nil when it cannot be made or the transport is closed.
func (t *HTTP) poller() *poller {
	t.pollMu.Lock()
	defer t.pollMu.Unlock()
	if t.pollClosed {
		return nil
	}
	if t.poll == nil {
		p, err := newPoller()
		if err != nil {
			return nil // the stream keeps its goroutine; tried again next time
		}
		t.poll = p
	}
	return t.poll
}

// pollerIfAny returns the poller if one was made.
func (t *HTTP) pollerIfAny() *poller {
	t.pollMu.Lock()
	defer t.pollMu.Unlock()
	return t.poll
}

var _ Resumer = (*HTTP)(nil)

// Resume re-attaches the upstream session id (negotiated at version) after
// the gateway restarted: requests carry its Mcp-Session-Id again, and Close
// ends it with DELETE. A session the upstream forgot fails its first
// exchange with ErrSessionGone.
func (t *HTTP) Resume(id, version string) (Session, error) {
	if version == "" {
		return nil, errors.New("upstream: resume: no protocol version")
	}
	return &httpSession{t: t, id: id, version: version}, nil
}

// Connect forwards initialize and opens an upstream session. Timeout
// bounds the whole exchange, an answer that comes as an SSE stream too:
// the session is not made until the answer is in.
func (t *HTTP) Connect(ctx context.Context, initialize []byte) (Session, []byte, error) {
	s := &httpSession{t: t}
	deadline := time.Now().Add(t.cfg.Timeout)
	req, resp := t.newPost(ctx, s, initialize)
	defer fasthttp.ReleaseRequest(req)
	if err := t.do(ctx, req, resp); err != nil { // bounded by Timeout too
		fasthttp.ReleaseResponse(resp)
		return nil, nil, fmt.Errorf("initialize: %w", err)
	}
	s.id = string(resp.Header.Peek("Mcp-Session-Id"))
	reply, err := t.reply(s, "initialize", resp)
	if err != nil {
		return nil, nil, err
	}
	actx := ctx
	if reply.Stream != nil {
		// Only an answer that streams needs a context with the deadline (and
		// its timer): a JSON answer is in already.
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	answer, err := FirstAnswer(actx, reply)
	if err != nil {
		s.abandon(ctx)
		return nil, nil, fmt.Errorf("initialize: %w", err)
	}
	if _, isErr := jsonrpc.Lookup(answer, "error"); isErr {
		s.abandon(ctx)
		return nil, answer, nil
	}
	raw, ok := jsonrpc.Lookup(answer, "result", "protocolVersion")
	if !ok {
		s.abandon(ctx)
		return nil, nil, fmt.Errorf("initialize: result without protocolVersion: %w", ErrUnavailable)
	}
	v, ok := VersionOf(raw)
	if !ok || v == "" {
		s.abandon(ctx)
		return nil, nil, fmt.Errorf("initialize: bad protocolVersion %s: %w", raw, ErrUnavailable)
	}
	s.version = v
	return s, answer, nil
}

// abandonTimeout bounds the DELETE of an upstream session whose initialize
// failed: the client already waited for the failure.
const abandonTimeout = 2 * time.Second

// abandon ends the upstream session of a failed Connect, if the upstream
// named one (an answer that never came, or did not open a session the
// gateway can use): nothing else would, and the upstream would keep it
// until its own expiry. It is sent even when ctx was cancelled (the client
// left), within abandonTimeout.
func (s *httpSession) abandon(ctx context.Context) {
	if s.id == "" {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	_ = s.Close(dctx)
}

// knownVersions are the protocol revisions upstreams answer with: a session
// keeps one of these strings instead of its own copy (a million idle
// sessions hold a million version strings otherwise).
var knownVersions = [...]string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"}

// VersionOf returns the protocol version named by raw, a JSON string
// literal: a known revision without an allocation (it is one of every
// session's initialize), any other as jsonrpc.Unquote decodes it.
func VersionOf(raw []byte) (string, bool) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		for _, k := range knownVersions {
			if string(raw[1:len(raw)-1]) == k {
				return k, true
			}
		}
	}
	return jsonrpc.Unquote(raw)
}

// FirstAnswer reduces a reply to its response message (the first response
// or error on an answer stream, which is then read to its end so its
// connection is pooled). An answer stream is read within ctx: when ctx
// ends first, the stream is closed and the error wraps ErrTimeout (ctx's
// deadline passed) or ctx's error.
func FirstAnswer(ctx context.Context, r *Reply) ([]byte, error) {
	switch {
	case r.JSON != nil:
		return r.JSON, nil
	case r.Stream != nil:
		defer r.Stream.Close()
		stop := context.AfterFunc(ctx, func() { _ = r.Stream.Close() })
		defer stop()
		var p jsonrpc.Parser
		for {
			msg, err := r.Stream.Next()
			if err != nil {
				if cerr := ctx.Err(); cerr != nil {
					if errors.Is(cerr, context.DeadlineExceeded) {
						return nil, fmt.Errorf("%w: no answer in time", ErrTimeout)
					}
					return nil, cerr
				}
				if errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("stream ended without a response: %w", ErrUnavailable)
				}
				return nil, err
			}
			msgs, _, perr := p.Parse(msg)
			if perr != nil || len(msgs) != 1 {
				continue
			}
			if k := msgs[0].Kind; k == jsonrpc.KindResponse || k == jsonrpc.KindError {
				answer := bytes.Clone(msg)
				Drain(r.Stream)
				return answer, nil
			}
		}
	default:
		return nil, fmt.Errorf("no answer (HTTP 202): %w", ErrUnavailable)
	}
}

func (t *HTTP) newPost(ctx context.Context, s *httpSession, body []byte) (*fasthttp.Request, *fasthttp.Response) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	req.SetRequestURI(t.uri)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	s.setHeaders(ctx, req)
	req.SetBodyRaw(body)
	return req, resp
}

// do runs one exchange on the pooled POST client, bounded by the POST
// timeout and ctx's deadline.
func (t *HTTP) do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	return t.doWithin(ctx, req, resp, 0)
}

// doWithin is do bounded by limit too, when it is not 0.
func (t *HTTP) doWithin(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, limit time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timeout := t.cfg.Timeout
	if limit > 0 && limit < timeout {
		timeout = limit
	}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	if err := t.post.DoTimeout(req, resp, timeout); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) {
			return fmt.Errorf("%w: %v", ErrTimeout, err)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if tc := trackedOf(resp.LocalAddr()); tc != nil && !isEventStream(resp.Header.ContentType()) {
		tc.stopRecording() // only an SSE answer's start is looked at (reply)
	}
	return nil
}

// reply turns a received response into a Reply, taking ownership of resp.
func (t *HTTP) reply(s *httpSession, op string, resp *fasthttp.Response) (*Reply, error) {
	status := resp.StatusCode()
	ct := resp.Header.ContentType()
	switch {
	case status == fasthttp.StatusAccepted || (status == fasthttp.StatusOK && len(ct) == 0 && resp.Header.ContentLength() == 0):
		drainAndRelease(resp)
		return &Reply{Accepted: true}, nil
	case status == fasthttp.StatusOK && isEventStream(ct):
		// A session's answer is resumed if cut before its response; the
		// stateless revision has no resumption (s.id and s.version empty).
		a := &postAnswer{body: postBody{resp: resp, refs: 1}}
		st := &a.st
		st.init(t, s, &a.body, s != statelessSession)
		if tc := trackedOf(resp.LocalAddr()); tc != nil {
			tc.clearDeadlines()
			st.fromRecord(tc, resp.Header.ContentLength())
			tc.stopRecording()
		}
		a.reply.Stream = st
		return &a.reply, nil
	case status == fasthttp.StatusOK:
		body, err := readBody(resp, t.cfg.MaxMessageBytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		return &Reply{JSON: body}, nil
	case status == fasthttp.StatusNotFound && s.id != "":
		drainAndRelease(resp)
		return nil, fmt.Errorf("%s: %w", op, ErrSessionGone)
	default:
		retryAfter := RetryAfterOf(resp.Header.Peek("Retry-After"))
		body, _ := readBody(resp, 64<<10)
		if status == fasthttp.StatusBadRequest && s.id != "" && sessionRefused(body) {
			// The TypeScript SDK's examples and server-everything answer
			// an unknown session with 400 instead of 404 (PROTOCOL.md
			// section 3, rule 5): the session is gone all the same.
			return nil, fmt.Errorf("%s: HTTP 400 refusing the session: %w", op, ErrSessionGone)
		}
		se := &StatusError{Op: op, Status: status, RetryAfter: retryAfter}
		if len(body) > 0 && isJSONRPCError(body) {
			se.Body = body
		}
		return nil, se
	}
}

// sessionRefused reports whether body, an upstream's 400 to a session
// request, refuses the session rather than the message: a JSON-RPC error
// about no request (id null) whose message names the session ("Bad
// Request: No valid session ID provided").
func sessionRefused(body []byte) bool {
	var p jsonrpc.Parser
	msgs, batch, err := p.Parse(body)
	if err != nil || batch || len(msgs) != 1 || msgs[0].Kind != jsonrpc.KindError || string(msgs[0].ID) != "null" {
		return false
	}
	msg, ok := jsonrpc.Lookup(body, "error", "message")
	return ok && bytes.Contains(bytes.ToLower(msg), []byte("session"))
}

func isJSONRPCError(body []byte) bool {
	var p jsonrpc.Parser
	msgs, batch, err := p.Parse(body)
	return err == nil && !batch && len(msgs) == 1 && msgs[0].Kind == jsonrpc.KindError
}

func isEventStream(ct []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(ct), []byte("text/event-stream"))
}

// readBody reads a streamed body to EOF (so the connection can be pooled),
// bounded by max, and releases resp.
func readBody(resp *fasthttp.Response, limit int) ([]byte, error) {
	defer fasthttp.ReleaseResponse(resp)
	r := resp.BodyStream()
	if r == nil {
		b := resp.Body()
		if len(b) > limit {
			return nil, ErrTooLarge
		}
		return bytes.Clone(b), nil
	}
	n := resp.Header.ContentLength()
	buf := make([]byte, 0, min(max(n, 512), limit+1))
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				_ = resp.CloseBodyStream()
				return nil, ErrTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = resp.CloseBodyStream()
			if errors.Is(err, os.ErrDeadlineExceeded) { // the exchange's Timeout, set by do
				return nil, fmt.Errorf("%w: reading body: %v", ErrTimeout, err)
			}
			return nil, fmt.Errorf("%w: reading body: %v", ErrUnavailable, err)
		}
	}
	if len(buf) > limit {
		_ = resp.CloseBodyStream()
		return nil, ErrTooLarge
	}
	_ = resp.CloseBodyStream()
	return buf, nil
}

func drainAndRelease(resp *fasthttp.Response) {
	if r := resp.BodyStream(); r != nil {
		discardUpTo(r, 64<<10)
		_ = resp.CloseBodyStream()
	}
	fasthttp.ReleaseResponse(resp)
}

// drainBufs are discardUpTo's read buffers.
var drainBufs = sync.Pool{New: func() any { return new([4 << 10]byte) }}

// discardUpTo reads and discards r until its end, an error or limit bytes,
// without an allocation (io.LimitReader makes one: a 202's empty body is
// drained twice in every session's life, after initialized and DELETE, and
// a legacy upstream's answer to every POST).
func discardUpTo(r io.Reader, limit int) {
	buf := drainBufs.Get().(*[4 << 10]byte)
	defer drainBufs.Put(buf)
	for empty := 0; limit > 0 && empty < 100; {
		n, err := r.Read(buf[:min(len(buf), limit)])
		if err != nil {
			return
		}
		limit -= n
		if n == 0 {
			empty++ // a reader that makes no progress is given up on, as io.Copy does
		}
	}
}

// httpSession is one upstream Streamable HTTP session.
type httpSession struct {
	t       *HTTP
	id      string // upstream Mcp-Session-Id, never shown to clients
	version string // negotiated with the upstream
	// cred is the last client credential forwarded (AuthHeader.Forward).
	cred atomic.Pointer[string]

	closeOnce sync.Once
}

var _ Session = (*httpSession)(nil)

func (s *httpSession) ID() string      { return s.id }
func (s *httpSession) Version() string { return s.version }

// Kind names the transport: KindHTTP.
func (s *httpSession) Kind() string { return KindHTTP }

func (s *httpSession) setHeaders(ctx context.Context, req *fasthttp.Request) {
	if s.t == nil {
		return // statelessSession: Do sets what a stateless request carries
	}
	if v, ok := s.t.cfg.Auth.valueFor(ctx, &s.cred); ok {
		req.Header.Set(s.t.cfg.Auth.Name, v)
	}
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
	}
	if s.version != "" {
		req.Header.Set("MCP-Protocol-Version", s.version)
	}
}

// Send forwards one client message.
func (s *httpSession) Send(ctx context.Context, body []byte) (*Reply, error) {
	req, resp := s.t.newPost(ctx, s, body)
	defer fasthttp.ReleaseRequest(req)
	if err := s.t.do(ctx, req, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, fmt.Errorf("post: %w", err)
	}
	return s.t.reply(s, "post", resp)
}

// Listen opens the standalone GET stream.
func (s *httpSession) Listen(ctx context.Context) (Stream, error) {
	return asStream(s.get(ctx, nil, false))
}

func (s *httpSession) get(ctx context.Context, lastEventID []byte, wantResponse bool) (*httpStream, error) {
	headers := make([][2]string, 0, 5)
	v, ok := s.t.cfg.Auth.valueFor(ctx, &s.cred)
	if ok {
		headers = append(headers, [2]string{s.t.cfg.Auth.Name, v})
	}
	if s.t.basicAuth != "" && !(ok && strings.EqualFold(s.t.cfg.Auth.Name, "Authorization")) {
		// As fasthttp does for POSTs and DELETEs: the URL's user
		// information, unless the request carries another Authorization.
		headers = append(headers, [2]string{"Authorization", s.t.basicAuth})
	}
	if s.id != "" {
		headers = append(headers, [2]string{"Mcp-Session-Id", s.id})
	}
	if s.version != "" {
		headers = append(headers, [2]string{"MCP-Protocol-Version", s.version})
	}
	if len(lastEventID) > 0 {
		headers = append(headers, [2]string{"Last-Event-ID", string(lastEventID)})
	}
	g, resp, err := s.t.openGet(ctx, headers)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	status := resp.StatusCode
	switch {
	case status == http.StatusOK && isEventStream([]byte(resp.Header.Get("Content-Type"))):
		return newHTTPStream(s.t, s, g, wantResponse), nil
	case status == http.StatusMethodNotAllowed:
		g.drain()
		return nil, fmt.Errorf("get: %w", ErrNotSupported)
	case status == http.StatusNotFound && s.id != "":
		g.drain()
		return nil, fmt.Errorf("get: %w", ErrSessionGone)
	default:
		g.drain()
		return nil, &StatusError{Op: "get", Status: status}
	}
}

// Close sends DELETE for the upstream session, once.
func (s *httpSession) Close(ctx context.Context) error { return s.CloseWithin(ctx, 0) }

var _ WithinCloser = (*httpSession)(nil)

// CloseWithin is Close bounded by d too (0: by the transport's timeout
// alone), without a context of its own.
func (s *httpSession) CloseWithin(ctx context.Context, d time.Duration) error {
	var err error
	s.closeOnce.Do(func() {
		if s.id == "" {
			return
		}
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI(s.t.uri)
		req.Header.SetMethod(fasthttp.MethodDelete)
		s.setHeaders(ctx, req)
		if err = s.t.doWithin(ctx, req, resp, d); err != nil {
			fasthttp.ReleaseResponse(resp)
			err = fmt.Errorf("delete: %w", err)
			return
		}
		status := resp.StatusCode()
		drainAndRelease(resp)
		switch {
		case status >= 200 && status < 300, status == fasthttp.StatusNotFound, status == fasthttp.StatusMethodNotAllowed:
		default:
			err = &StatusError{Op: "delete", Status: status}
		}
	})
	return err
}

// httpStream reads JSON-RPC messages from an upstream SSE body. For a POST
// answer (wantResponse) that the upstream closes before sending a response,
// it resumes with GET + Last-Event-ID after the upstream's retry delay.
type httpStream struct {
	t *HTTP
	s *httpSession

	// mu guards body, dec and closed; Next holds it only to swap the body
	// on a resume, never while blocked in a read.
	mu           sync.Mutex
	closed       bool
	wantResponse bool
	gotResp      bool
	hinted       bool // the upstream sent a retry hint
	// gated: the gate knows what arrived with the headers (inhand.go).
	gated bool
	dec   *sse.Decoder // firstDec, or a resumed body's
	tries int
	body  streamBody

	// lastID is the last event id read from an earlier body (in lastIDA
	// while it fits): the current decoder's is lastEventID's once it saw
	// one, so an event's id is not copied again.
	lastID []byte
	retry  time.Duration

	// Inline room for what every stream has, so a stream is one
	// allocation (for a POST answer with its body and Reply: postAnswer).
	// A standalone stream's httpStream is allocated on its own and held
	// for the stream's life: it must stay within the 896-byte size class
	// with the 8-byte header the runtime puts before objects over 512
	// bytes that hold pointers (TestStreamSizeClass); the next class is
	// 1024 bytes. What an event touches (the fields above, lastIDA and
	// the decoder's first fields) is kept together, ahead of what only
	// a POST answer or a resume uses.
	lastIDA  [32]byte
	firstDec sse.Decoder

	// ctx ends when Close is called: it interrupts a resume's wait and its
	// GET. Made by the first resume (resumeContext), under mu.
	ctx    context.Context
	cancel context.CancelFunc

	// gate is what the decoder of a POST answer reads (inhand.go).
	gate  bufferedGate
	await awaitBody
}

// postAnswer is a POST's SSE answer: its stream, its body and the Reply
// that hands the stream over, made in one allocation.
type postAnswer struct {
	st    httpStream
	body  postBody
	reply Reply
}

// parsers classify a POST answer's messages (httpStream.message) until its
// response: one parse per answer most of the time, so not one parser each.
var parsers = sync.Pool{New: func() any { return new(jsonrpc.Parser) }}

// streamBody is the SSE body an httpStream reads: a POST's answer on a
// pooled fasthttp connection, or a GET stream on its own connection.
type streamBody interface {
	io.Reader
	// close ends the body, interrupting a blocked Read or WaitReadable, and
	// releases its connection. Idempotent.
	close()
}

// postBody is a POST's SSE answer, streamed by fasthttp. Its response goes
// back to fasthttp's pool once the body is closed and no Read is running
// (refs counts the owner and the Reads in flight): a response left to the
// collector costs every SSE answer a new one, whose header slices then grow
// from nothing while the headers are parsed. A body that fasthttp read whole
// (no body stream) is read from the response's buffer by bodyReader, outside
// Read, so that response is left to the collector.
type postBody struct {
	mu     sync.Mutex
	resp   *fasthttp.Response
	refs   int
	closed bool
}

func (b *postBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	var r io.Reader
	if !b.closed {
		r = b.resp.BodyStream()
	}
	if r == nil {
		b.mu.Unlock()
		return 0, io.EOF // closed, or not streamed (handled by bodyReader)
	}
	b.refs++
	b.mu.Unlock()
	n, err := r.Read(p)
	b.unref()
	return n, err
}

// close ends the body (interrupting a Read in flight: fasthttp closes the
// connection when the body was not read to its end) and lets the response
// go once no Read holds it. Idempotent.
func (b *postBody) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	_ = b.resp.CloseBodyStream()
	b.unref()
}

func (b *postBody) unref() {
	b.mu.Lock()
	b.refs--
	var resp *fasthttp.Response
	if b.refs == 0 {
		resp, b.resp = b.resp, nil
	}
	b.mu.Unlock()
	if resp != nil {
		fasthttp.ReleaseResponse(resp)
	}
}

func newHTTPStream(t *HTTP, s *httpSession, body streamBody, wantResponse bool) *httpStream {
	st := new(httpStream)
	st.init(t, s, body, wantResponse)
	return st
}

// init makes st, a zero httpStream, read body.
func (st *httpStream) init(t *HTTP, s *httpSession, body streamBody, wantResponse bool) {
	st.t, st.s, st.body, st.wantResponse, st.retry = t, s, body, wantResponse, defaultResumeRetryDelay
	st.lastID = st.lastIDA[:0]
	r := bodyReader(body)
	if _, isPost := body.(*postBody); isPost {
		st.gate.r = r
		r = &st.gate
	}
	st.firstDec.Init(r, t.cfg.MaxMessageBytes)
	st.dec = &st.firstDec
}

// bodyReader is what the decoder reads: a fasthttp answer that was not
// streamed (it fit the read buffer whole) is read from memory.
func bodyReader(body streamBody) io.Reader {
	if pb, ok := body.(*postBody); ok && pb.resp.BodyStream() == nil {
		pb.refs++ // read outside Read from the response's buffer: never released
		return bytes.NewReader(pb.resp.Body())
	}
	return body
}

// Next returns the next message of the stream.
//
// Its frame is kept small, with the work after a read in helpers, because
// an idle reader parks below it (getConn.WaitReadable): the shallower that
// stack, the smaller the runtime lets it shrink.
func (st *httpStream) Next() ([]byte, error) {
	for {
		dec, err := st.decoder()
		if err != nil {
			return nil, err
		}
		ev, err := dec.Next()
		if err != nil {
			if err == ErrIdle || err == ErrNotBuffered {
				return nil, err // not an end: Next or Park goes on
			}
			if st.gate.on && st.wantResponse && !st.gotResp {
				// A resume waits and dials: not for NextBuffered. The
				// decoder keeps the error for the Next that follows.
				return nil, ErrNotBuffered
			}
			if err = st.ended(err); err != nil {
				return nil, err
			}
			continue
		}
		if data := st.message(ev); data != nil {
			return data, nil
		}
	}
}

// decoder returns the current body's decoder, or io.ErrClosedPipe.
func (st *httpStream) decoder() (*sse.Decoder, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil, io.ErrClosedPipe
	}
	return st.dec, nil
}

// ended handles a decoder error: nil when the stream resumed on a new body.
//
//go:noinline
func (st *httpStream) ended(err error) error {
	if errors.Is(err, sse.ErrEventTooLarge) {
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	return st.resume(err)
}

// message records an event's id and retry and returns its JSON-RPC
// message, or nil for priming events, keep-alives and other event types.
//
//go:noinline
func (st *httpStream) message(ev *sse.Event) []byte {
	if ev.HasID {
		st.tries = 0
	}
	if ev.Retry >= 0 {
		// Capped before the conversion, which overflows for huge hints.
		st.retry = max(time.Duration(min(ev.Retry, maxResumeDelay.Milliseconds()))*time.Millisecond, minResumeDelay)
		st.hinted = true
	}
	if !ev.HasData || len(bytes.TrimSpace(ev.Data)) == 0 {
		return nil // priming event or keep-alive
	}
	if len(ev.Event) > 0 && string(ev.Event) != "message" {
		return nil
	}
	if st.wantResponse && !st.gotResp {
		p := parsers.Get().(*jsonrpc.Parser)
		if msgs, _, perr := p.Parse(ev.Data); perr == nil && len(msgs) == 1 &&
			(msgs[0].Kind == jsonrpc.KindResponse || msgs[0].Kind == jsonrpc.KindError) {
			st.gotResp = true
		}
		parsers.Put(p)
	}
	return ev.Data
}

// resumeContext returns the context a resume waits and dials under, made on
// the first resume (most answer streams never need one): Close cancels it,
// and one made after Close is cancelled already.
func (st *httpStream) resumeContext() context.Context {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ctx == nil {
		st.ctx, st.cancel = context.WithCancel(context.Background())
		if st.closed {
			st.cancel()
		}
	}
	return st.ctx
}

// lastEventID is the id of the last event read: the current decoder's once
// it saw one, else the one an earlier body ended with. Only the goroutine
// calling Next may call it (it alone swaps dec).
func (st *httpStream) lastEventID() []byte {
	if st.dec.SawEventID() {
		return st.dec.LastEventID()
	}
	return st.lastID
}

// resume handles the end of the current body: io.EOF when nothing more is
// owed, or a reconnect with Last-Event-ID when a POST answer was cut short.
func (st *httpStream) resume(cause error) error {
	if !st.wantResponse || st.gotResp {
		if errors.Is(cause, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, cause)
	}
	lastID := st.lastEventID()
	if len(lastID) == 0 || st.t.cfg.ResumeAttempts < 0 || st.tries >= st.t.cfg.ResumeAttempts {
		return fmt.Errorf("%w: stream ended before its response: %v", ErrUnavailable, cause)
	}
	st.tries++
	ctx := st.resumeContext()
	wait := time.NewTimer(min(st.retry, maxResumeDelay))
	select {
	case <-wait.C:
	case <-ctx.Done():
		wait.Stop()
		return io.ErrClosedPipe
	}
	next, err := st.s.get(ctx, lastID, true)
	if err != nil {
		if ctx.Err() != nil {
			return io.ErrClosedPipe
		}
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		next.body.close()
		return io.ErrClosedPipe
	}
	old := st.body
	if og, ok := old.(*getConn); ok && og.hook != nil {
		if ng, ok := next.body.(*getConn); ok {
			ng.hook = og.hook
		}
	}
	st.lastID = append(st.lastID[:0], lastID...) // the new decoder has none yet
	st.body, st.dec = next.body, next.dec
	st.gated = false // the new body's input is not known
	st.await.tc = nil
	old.close()
	return nil
}

var _ Parker = (*httpStream)(nil)

// SetIdle makes Next return ErrIdle after d without input (0: never). Only
// a GET stream without TLS can tell; other bodies ignore it. The stream
// counts as new: once what it has sent so far (a server's greeting, a
// priming event) is read, the first wait that finds nothing gives up at
// once rather than after d, so opening many streams does not hold a
// goroutine each for d.
func (st *httpStream) SetIdle(d time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if g, ok := st.body.(*getConn); ok {
		g.idle = d
		g.lone = d > 0
	}
}

// OnWait implements WaitHooker for a GET stream's body (getConn).
func (st *httpStream) OnWait(h WaitHook) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	g, ok := st.body.(*getConn)
	if ok {
		g.hook = h.BeforeWait
	}
	return ok
}

var _ WaitHooker = (*httpStream)(nil)

// Park implements Parker: a GET stream without TLS whose reader has nothing
// buffered waits in the transport's poller.
func (st *httpStream) Park(resume func()) bool {
	st.mu.Lock()
	g, ok := st.body.(*getConn)
	ok = ok && !st.closed && g.raw != nil && !st.dec.Pending() && !g.buffered()
	st.mu.Unlock()
	if !ok {
		return false
	}
	p := st.t.poller()
	if p == nil {
		return false
	}
	g.parkedAt = monoNow()
	g.unwatch() // a parked stream has no wait to end
	return p.park(g, resume)
}

// Close interrupts a blocked Next and releases the connection.
func (st *httpStream) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil
	}
	st.closed = true
	if st.cancel != nil {
		st.cancel() // a resume waiting or connecting gives up
	}
	// Closing the body interrupts an in-flight Read (fasthttp closes the
	// conn when the body was not read to the end and waits for the Read).
	st.body.close()
	return nil
}
