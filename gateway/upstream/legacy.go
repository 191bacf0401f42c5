package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
)

// Defaults for LegacySSEConfig zero values.
const (
	DefaultReconnectAttempts = 3
	reconnectMinDelay        = 100 * time.Millisecond
	reconnectMaxDelay        = 5 * time.Second
)

// LegacySSEConfig configures the legacy HTTP+SSE transport (protocol
// 2024-11-05's transport, deprecated since 2025-03-26 but still served).
// Zero values mean the documented defaults; a negative duration or limit is
// an error, except ReconnectAttempts.
type LegacySSEConfig struct {
	// URL of the upstream's SSE endpoint, http:// or https://. Required.
	URL string
	// MaxConns bounds the connections used for POSTs; 0 = DefaultMaxConns.
	// Each session's SSE stream has a connection of its own besides.
	MaxConns int
	// Timeout bounds each POST until its response headers, the SSE GET
	// until its endpoint event, and initialize until its answer;
	// 0 = DefaultTimeout.
	Timeout time.Duration
	// MaxMessageBytes bounds one SSE event; a larger one ends its session.
	// 0 = DefaultMaxMessage.
	MaxMessageBytes int
	// ReconnectAttempts is how often a lost SSE stream is re-opened (with
	// backoff from 100 ms, doubling, up to 5 s) before the session is
	// given up; 0 = DefaultReconnectAttempts, <0 = never.
	ReconnectAttempts int
	// StreamBuffer is the number of messages each call stream and the
	// standalone stream buffer; 0 = DefaultStreamBuffer.
	StreamBuffer int
	// UserAgent sent upstream; "" = "mcpgate".
	UserAgent string
	// TLSConfig is used for https upstreams; nil = the system roots. It is
	// cloned, not kept.
	TLSConfig *tls.Config
	// Logger receives lifecycle logs; nil = slog.Default().
	Logger *slog.Logger
	// Auth is a header added to every upstream request; the zero value
	// adds none (the client's credentials never reach the upstream).
	Auth AuthHeader
}

// LegacySSE is the legacy HTTP+SSE transport: per session, a GET on the
// SSE URL whose first event, `endpoint`, names the URL (carrying the
// upstream's session) that messages are POSTed to; every answer and server
// message arrives on the SSE stream, and a demux routes them to calls by
// JSON-RPC id (see demux for the rule). The SSE stream is the session: when
// it drops, it is re-opened with backoff, and if the upstream then issues
// another endpoint (a new session), the old session is gone.
type LegacySSE struct {
	cfg    LegacySSEConfig
	sseURL *url.URL
	log    *slog.Logger
	stats  counters
	// streams carries the SSE GETs (one connection each, no limit), posts
	// the POSTs (at most MaxConns connections).
	streams, posts *http.Client

	// mu guards closed and sessions.
	mu       sync.Mutex
	closed   bool
	sessions map[*legacySession]struct{}
	// wg counts each session's stream reader and answer POSTs.
	wg sync.WaitGroup
}

var _ Transport = (*LegacySSE)(nil)

// NewLegacySSE validates cfg, fills defaults and returns the transport. It
// starts no goroutine.
func NewLegacySSE(cfg LegacySSEConfig) (*LegacySSE, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: invalid SSE URL %q: want http(s)://host[:port]/path", cfg.URL)
	}
	if cfg.MaxConns < 0 || cfg.Timeout < 0 || cfg.MaxMessageBytes < 0 || cfg.StreamBuffer < 0 {
		return nil, errors.New("upstream: negative limit in config")
	}
	if err := cfg.Auth.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessage
	}
	if cfg.ReconnectAttempts == 0 {
		cfg.ReconnectAttempts = DefaultReconnectAttempts
	}
	if cfg.StreamBuffer == 0 {
		cfg.StreamBuffer = DefaultStreamBuffer
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "mcpgate"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var tlsConf *tls.Config
	if u.Scheme == "https" {
		if cfg.TLSConfig != nil {
			tlsConf = cfg.TLSConfig.Clone()
		} else {
			tlsConf = &tls.Config{}
		}
		tlsConf.MinVersion = max(tlsConf.MinVersion, tls.VersionTLS12)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	newClient := func(maxConns int) *http.Client {
		return &http.Client{
			Transport: &http.Transport{
				DialContext:         dialer.DialContext,
				TLSClientConfig:     tlsConf,
				TLSHandshakeTimeout: 10 * time.Second,
				MaxConnsPerHost:     maxConns,
				MaxIdleConnsPerHost: min(max(maxConns, 1), 64),
				IdleConnTimeout:     30 * time.Second,
				DisableCompression:  true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &LegacySSE{
		cfg:      cfg,
		sseURL:   u,
		log:      cfg.Logger,
		streams:  newClient(0),
		posts:    newClient(cfg.MaxConns),
		sessions: make(map[*legacySession]struct{}),
	}, nil
}

// Stats returns the transport's counts (reconnects, lost sessions, dropped
// messages). Safe for concurrent use.
func (t *LegacySSE) Stats() Stats { return t.stats.snapshot() }

// Close ends every session (closing its SSE stream, which ends the
// upstream session in this transport), waits for their goroutines and
// releases idle connections. Connect fails afterwards. Idempotent.
func (t *LegacySSE) Close() error {
	t.mu.Lock()
	t.closed = true
	live := make([]*legacySession, 0, len(t.sessions))
	for s := range t.sessions {
		live = append(live, s)
	}
	t.mu.Unlock()
	for _, s := range live {
		s.end(errTransportClosed, false)
	}
	t.wg.Wait()
	t.streams.CloseIdleConnections()
	t.posts.CloseIdleConnections()
	return nil
}

// Connect opens the SSE stream, reads the endpoint, POSTs initialize and
// returns its answer, which arrives on the stream.
func (t *LegacySSE) Connect(ctx context.Context, initialize []byte) (Session, []byte, error) {
	var p jsonrpc.Parser
	msgs, batch, perr := p.Parse(initialize)
	if perr != nil || batch || msgs[0].Kind != jsonrpc.KindRequest {
		return nil, nil, errors.New("upstream: initialize must be a single JSON-RPC request")
	}
	id := bytes.Clone(msgs[0].ID)
	sctx, cancel := context.WithCancel(context.Background())
	s := &legacySession{t: t, ctx: sctx, cancel: cancel, readerDone: make(chan struct{})}
	s.log = t.log
	s.d = newDemux(&t.stats, t.log, t.cfg.StreamBuffer, s.answer)
	st, ep, err := s.open(ctx)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("initialize: %w", err)
	}
	s.endpoint = ep
	s.id = sessionOf(ep)
	s.log = t.log.With("upstream_session", s.id)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		st.close()
		cancel()
		return nil, nil, fmt.Errorf("%w: transport closed", ErrUnavailable)
	}
	t.sessions[s] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go s.read(st)

	answer, err := s.initialize(ctx, initialize, id)
	if err != nil {
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

// sessionOf names an upstream session for logs: the endpoint's session
// query parameter (sessionId, session_id, ...), else its path and query.
func sessionOf(ep *url.URL) string {
	for k, v := range ep.Query() {
		if strings.Contains(strings.ToLower(k), "session") && len(v) > 0 {
			return v[0]
		}
	}
	return ep.RequestURI()
}

// legacySession is one upstream HTTP+SSE session.
type legacySession struct {
	t        *LegacySSE
	id       string
	version  string
	endpoint *url.URL // set before the reader starts, never changed
	log      *slog.Logger
	d        *demux

	// ctx lives as long as the session: cancelling it closes the SSE
	// stream and aborts POSTs.
	ctx        context.Context
	cancel     context.CancelFunc
	readerDone chan struct{}
	endOnce    sync.Once
	answers    pendingAnswers
	// cred is the last client credential forwarded (AuthHeader.Forward).
	cred atomic.Pointer[string]
}

var (
	_ Session = (*legacySession)(nil)
	_ Aborter = (*legacySession)(nil)
)

func (s *legacySession) ID() string      { return s.id }
func (s *legacySession) Version() string { return s.version }

// Kind names the transport: KindLegacySSE.
func (s *legacySession) Kind() string { return KindLegacySSE }

// sseStream is an open SSE stream of a session.
type sseStream struct {
	body   io.ReadCloser
	dec    *sse.Decoder
	cancel context.CancelFunc // aborts the GET (a child of the session's ctx)
}

func (st *sseStream) close() {
	st.cancel()
	_ = st.body.Close()
}

// open GETs the SSE URL and reads up to the endpoint event, within ctx and
// Timeout. The stream then lives until closed or the session's ctx ends.
func (s *legacySession) open(ctx context.Context) (*sseStream, *url.URL, error) {
	t := s.t
	reqCtx, cancelReq := context.WithCancel(s.ctx)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, t.sseURL.String(), nil)
	if err != nil {
		cancelReq()
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", t.cfg.UserAgent)
	if v, ok := t.cfg.Auth.valueFor(ctx, &s.cred); ok {
		req.Header.Set(t.cfg.Auth.Name, v)
	}
	// Until the endpoint arrives, ctx and Timeout bound the exchange:
	// cancelling the request aborts its connection, and with it a read.
	var timedOut atomic.Bool
	timer := time.AfterFunc(t.cfg.Timeout, func() { timedOut.Store(true); cancelReq() })
	stop := context.AfterFunc(ctx, cancelReq)
	var resp *http.Response
	fail := func(err error) (*sseStream, *url.URL, error) {
		timer.Stop()
		stop()
		cancelReq()
		if resp != nil {
			_ = resp.Body.Close()
		}
		switch {
		case timedOut.Load():
			return nil, nil, fmt.Errorf("%w: no endpoint event within %v", ErrTimeout, t.cfg.Timeout)
		case ctx.Err() != nil:
			return nil, nil, ctx.Err()
		}
		return nil, nil, err
	}
	resp, err = t.streams.Do(req)
	if err != nil {
		return fail(fmt.Errorf("%w: sse: %v", ErrUnavailable, err))
	}
	if resp.StatusCode != http.StatusOK || !isEventStream([]byte(resp.Header.Get("Content-Type"))) {
		discardUpTo(resp.Body, 64<<10)
		return fail(&StatusError{Op: "sse", Status: resp.StatusCode})
	}
	dec := sse.NewDecoder(resp.Body, t.cfg.MaxMessageBytes)
	for {
		ev, err := dec.Next()
		if err != nil {
			return fail(fmt.Errorf("%w: sse stream ended before its endpoint event: %v", ErrUnavailable, err))
		}
		if string(ev.Event) != "endpoint" {
			continue // nothing may come before the endpoint
		}
		ep, err := parseEndpoint(t.sseURL, ev.Data)
		if err != nil {
			return fail(fmt.Errorf("%w: %v", ErrUnavailable, err))
		}
		if !timer.Stop() {
			return fail(fmt.Errorf("%w: no endpoint event within %v", ErrTimeout, t.cfg.Timeout))
		}
		if !stop() {
			return fail(context.Canceled)
		}
		return &sseStream{body: resp.Body, dec: dec, cancel: cancelReq}, ep, nil
	}
}

func (s *legacySession) initialize(ctx context.Context, initialize, id []byte) ([]byte, error) {
	call, err := s.d.openCall([][]byte{id}, nil)
	if err != nil {
		return nil, err
	}
	defer call.Close()
	if err := s.post(ctx, initialize); err != nil {
		return nil, err
	}
	return awaitAnswer(ctx, call, s.t.cfg.Timeout, "the upstream's stream ended before the answer")
}

// read routes the SSE stream's messages, re-opening the stream when it
// drops, until the session ends. It runs on a goroutine counted by t.wg.
func (s *legacySession) read(st *sseStream) {
	defer s.t.wg.Done()
	defer close(s.readerDone)
	for {
		err := s.pump(st.dec)
		st.close()
		if s.ctx.Err() != nil {
			return
		}
		if errors.Is(err, sse.ErrEventTooLarge) {
			s.t.stats.tooLong.Add(1)
			s.log.Error("upstream sent an SSE event larger than the limit (-max-message): session ended", "limit_bytes", s.t.cfg.MaxMessageBytes)
			s.end(fmt.Errorf("%w: %w: an SSE event exceeded %d bytes", ErrSessionGone, ErrTooLarge, s.t.cfg.MaxMessageBytes), true)
			return
		}
		s.log.Warn("upstream SSE stream lost: reconnecting", "err", err)
		if st, err = s.reconnect(); err != nil {
			s.log.Warn("upstream SSE session lost", "err", err)
			s.end(fmt.Errorf("%w: %v", ErrSessionGone, err), true)
			return
		}
	}
}

// pump routes message events until the stream fails.
func (s *legacySession) pump(dec *sse.Decoder) error {
	for {
		ev, err := dec.Next()
		if err != nil {
			return err
		}
		switch string(ev.Event) {
		case "", "message":
			if ev.HasData && len(bytes.TrimSpace(ev.Data)) > 0 {
				s.d.route(ev.Data)
			}
		case "endpoint":
			if ep, err := parseEndpoint(s.t.sseURL, ev.Data); err != nil || ep.String() != s.endpoint.String() {
				return fmt.Errorf("the upstream announced another endpoint mid-stream: %q", ev.Data)
			}
		}
	}
}

// reconnect re-opens the SSE stream with backoff. It succeeds only if the
// upstream gives the same endpoint back: another one is a new upstream
// session (which is closed at once), so the old one is gone.
func (s *legacySession) reconnect() (*sseStream, error) {
	delay := reconnectMinDelay
	var last error
	for attempt := 1; attempt <= s.t.cfg.ReconnectAttempts; attempt++ {
		if !sleepCtx(s.ctx, delay) {
			return nil, s.ctx.Err()
		}
		delay = min(2*delay, reconnectMaxDelay)
		st, ep, err := s.open(s.ctx)
		if err != nil {
			last = err
			continue
		}
		if ep.String() != s.endpoint.String() {
			st.close()
			return nil, fmt.Errorf("the upstream issued a new session on reconnect (endpoint %s): the old one is gone", ep.RequestURI())
		}
		s.t.stats.reconnects.Add(1)
		s.log.Info("upstream SSE stream re-established", "attempt", attempt)
		return st, nil
	}
	if last == nil {
		last = errors.New("reconnecting is off")
	}
	return nil, fmt.Errorf("could not re-open the SSE stream (%d attempts): %w", max(s.t.cfg.ReconnectAttempts, 0), last)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Send POSTs each message of body (a batch is split) to the endpoint.
// Requests are answered through the returned Reply's Stream, fed from the
// SSE stream; notifications and responses are Accepted.
func (s *legacySession) Send(ctx context.Context, body []byte) (*Reply, error) {
	return sendSplit(ctx, s.d, body, s.post)
}

// post sends one message to the endpoint: 2xx is success (the answer
// comes on the stream), 404 means the upstream session is gone.
func (s *legacySession) post(ctx context.Context, msg []byte) error {
	pctx, cancel := context.WithTimeout(ctx, s.t.cfg.Timeout)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(pctx, http.MethodPost, s.endpoint.String(), bytes.NewReader(msg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("User-Agent", s.t.cfg.UserAgent)
	if v, ok := s.t.cfg.Auth.valueFor(ctx, &s.cred); ok {
		req.Header.Set(s.t.cfg.Auth.Name, v)
	}
	resp, err := s.t.posts.Do(req)
	if err != nil {
		switch {
		case s.ctx.Err() != nil:
			if e := s.d.failed(); e != nil {
				return e
			}
			return errSessionClosed
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(pctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("%w: post: %v", ErrTimeout, err)
		}
		return fmt.Errorf("%w: post: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	status := resp.StatusCode
	switch {
	case status >= 200 && status < 300:
		discardUpTo(resp.Body, 64<<10)
		return nil
	case status == http.StatusNotFound:
		gone := fmt.Errorf("%w: post: HTTP 404", ErrSessionGone)
		s.end(gone, true)
		return gone
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		se := &StatusError{Op: "post", Status: status, RetryAfter: RetryAfterOf([]byte(resp.Header.Get("Retry-After")))}
		if len(b) > 0 && isJSONRPCError(b) {
			se.Body = b
		}
		return se
	}
}

// answer POSTs a message of the transport's own (a ping answer, a
// refusal) on a goroutine counted by t.wg, so route never waits for the
// network. Only route calls it, on the reader, which holds a t.wg count.
func (s *legacySession) answer(msg []byte) {
	s.answers.send(&s.t.wg, s.log, msg, func(m []byte) error { return s.post(s.ctx, m) })
}

// Listen returns the standalone stream: every message the routing rule
// does not give to a call.
func (s *legacySession) Listen(context.Context) (Stream, error) {
	st, err := s.d.listen()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Close ends the session: its streams end and its SSE stream is closed,
// which ends the upstream session (the transport has no DELETE). It waits
// for the stream's reader to stop (prompt: closing the connection
// interrupts it), or for ctx. Idempotent.
func (s *legacySession) Close(ctx context.Context) error {
	s.Abort()
	select {
	case <-s.readerDone:
	case <-ctx.Done():
	}
	return nil
}

// Abort is Close without waiting for the stream's reader (a goroutine of
// the transport's) to stop (upstream.Aborter).
func (s *legacySession) Abort() {
	s.end(errSessionClosed, false)
}

// end fails the session's routing with err and closes its stream.
func (s *legacySession) end(err error, lost bool) {
	s.d.fail(err, lost)
	s.endOnce.Do(func() {
		s.cancel()
		s.t.mu.Lock()
		delete(s.t.sessions, s)
		s.t.mu.Unlock()
	})
}
