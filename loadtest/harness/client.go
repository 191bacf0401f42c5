package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
)

// Sentinel errors. Errors returned by Client wrap one of them (or a fasthttp or net
// error); ErrorKind names them for the error table.
var (
	// ErrBadConfig is wrapped by New and NewClient for an invalid configuration.
	ErrBadConfig = errors.New("harness: bad config")
	// ErrProtocol means the target sent something an MCP server must not send.
	ErrProtocol = errors.New("harness: protocol violation")
	// ErrHTTPStatus is wrapped by HTTPError.
	ErrHTTPStatus = errors.New("harness: unexpected HTTP status")
	// ErrRPC is wrapped by RPCError.
	ErrRPC = errors.New("harness: JSON-RPC error")
	// ErrStreamEnded means an SSE answer ended before its response.
	ErrStreamEnded = errors.New("harness: stream ended before the response")
	// ErrCut is returned when the harness cut a stream on purpose (resume scenario).
	ErrCut = errors.New("harness: stream cut")
)

// HTTPError is an answer with an unexpected status code.
type HTTPError struct {
	Op     string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("harness.%s: status %d: %s: %v", e.Op, e.Status, e.Body, ErrHTTPStatus)
}

func (e *HTTPError) Unwrap() error { return ErrHTTPStatus }

// RPCError is a JSON-RPC error response.
type RPCError struct {
	Code int64
}

func (e *RPCError) Error() string { return fmt.Sprintf("harness: code %d: %v", e.Code, ErrRPC) }

func (e *RPCError) Unwrap() error { return ErrRPC }

// ErrorKind names err for the error table: "http_404", "rpc_-32601", "timeout",
// "connect", "conn_closed", "stream_ended", "protocol", "no_free_conns" or "other".
func ErrorKind(err error) string {
	var he *HTTPError
	var re *RPCError
	var ne net.Error
	var oe *net.OpError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &he):
		return "http_" + strconv.Itoa(he.Status)
	case errors.As(err, &re):
		return "rpc_" + strconv.FormatInt(re.Code, 10)
	case errors.Is(err, ErrStreamEnded):
		return "stream_ended"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no_free_conns"
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return "timeout"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "connect"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "conn_closed"
	case errors.As(err, &oe):
		return "conn_closed"
	}
	return "other"
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Target is the MCP endpoint URL (http only).
	Target string
	// Version is the protocol revision requested; 2026-07-28 or later means stateless.
	Version string
	// SourceAddrs are local IP addresses connections are spread over, round-robin. Empty
	// lets the OS choose.
	SourceAddrs []string
	// Conns caps the connections used for plain POSTs.
	Conns int
	// StreamConns caps the connections used for SSE streams (GET streams and stream tool
	// calls), each of which holds its connection while it runs.
	StreamConns int
	// Timeout bounds each plain POST and DELETE.
	Timeout time.Duration
	// Authorization is sent as the Authorization header of every request; "" sends
	// none.
	Authorization string
	// StallWindow is the socket receive buffer (SO_RCVBUF) of GET streams of sessions
	// marked SmallWindow, the readers that stall. A small one makes the server feel a
	// stalled reader at once: with the kernel default the buffer autotunes to megabytes,
	// which absorb the backlog before the server's writes block. Zero means the default.
	StallWindow int
}

// Client is a black-box MCP client over fasthttp: one HostClient for plain POSTs (with
// a deadline each) and two, without timeouts, for SSE streams (the second for the GET
// streams of SmallWindow sessions). It is safe for concurrent
// use. It tracks every connection it dials so CloseAll can end them.
type Client struct {
	uri       string
	auth      string
	version   string
	stateless bool
	timeout   time.Duration
	post      *fasthttp.HostClient
	streams   *fasthttp.HostClient
	// smallWindow serves the GET streams of SmallWindow sessions.
	smallWindow *fasthttp.HostClient
	nextID      atomic.Int64
	dials       atomic.Int64

	// connsMu guards conns, every connection dialled and not yet closed.
	connsMu sync.Mutex
	conns   map[*trackedConn]struct{}
}

// trackedConn removes itself from its client's set when closed.
type trackedConn struct {
	net.Conn
	c    *Client
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.connsMu.Lock()
		delete(t.c.conns, t)
		t.c.connsMu.Unlock()
	})
	return t.Conn.Close()
}

// CloseAll closes every open connection, streams included: blocked stream reads fail
// at once. It is the hard stop for streams a target never ends.
func (c *Client) CloseAll() {
	c.connsMu.Lock()
	conns := make([]*trackedConn, 0, len(c.conns))
	for t := range c.conns {
		conns = append(conns, t)
	}
	c.connsMu.Unlock()
	for _, t := range conns {
		_ = t.Close()
	}
}

// Session is one session-era session opened by Initialize.
type Session struct {
	ID      string
	Version string
	// Index is the session's position in its scenario.
	Index int
	// SmallWindow makes the session's GET streams use connections with a receive buffer
	// of ClientConfig.StallWindow bytes (see there).
	SmallWindow bool
}

// IsStateless reports whether version is a stateless (2026-07-28 or later) revision.
func IsStateless(version string) bool { return version >= "2026-07-28" }

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("harness.NewClient: target %q must be an http:// URL: %w", cfg.Target, ErrBadConfig)
	}
	var locals []*net.TCPAddr
	for _, a := range cfg.SourceAddrs {
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, fmt.Errorf("harness.NewClient: source address %q: %w", a, ErrBadConfig)
		}
		locals = append(locals, &net.TCPAddr{IP: ip})
	}
	c := &Client{
		uri:       u.String(),
		auth:      cfg.Authorization,
		version:   cfg.Version,
		stateless: IsStateless(cfg.Version),
		timeout:   cfg.Timeout,
		conns:     make(map[*trackedConn]struct{}),
	}
	dialWindow := func(rcvbuf int) fasthttp.DialFunc {
		return func(addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 5 * time.Second}
			if len(locals) > 0 {
				d.LocalAddr = locals[int(c.dials.Add(1))%len(locals)]
			}
			conn, err := d.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := conn.(*net.TCPConn); ok && rcvbuf > 0 {
				if err := tc.SetReadBuffer(rcvbuf); err != nil {
					_ = conn.Close()
					return nil, err
				}
			}
			t := &trackedConn{Conn: conn, c: c}
			c.connsMu.Lock()
			c.conns[t] = struct{}{}
			c.connsMu.Unlock()
			return t, nil
		}
	}
	dial := dialWindow(0)
	c.post = &fasthttp.HostClient{
		Addr:                          u.Host,
		Dial:                          dial,
		MaxConns:                      cfg.Conns,
		MaxConnWaitTimeout:            cfg.Timeout,
		MaxIdleConnDuration:           30 * time.Second,
		ReadBufferSize:                16 << 10,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: false,
		StreamResponseBody:            true,
	}
	streamClient := func(dial fasthttp.DialFunc, readBuf int) *fasthttp.HostClient {
		return &fasthttp.HostClient{
			Addr:                     u.Host,
			Dial:                     dial,
			MaxConns:                 cfg.StreamConns,
			MaxConnWaitTimeout:       cfg.Timeout,
			MaxIdleConnDuration:      30 * time.Second,
			ReadBufferSize:           readBuf,
			NoDefaultUserAgentHeader: true,
			StreamResponseBody:       true,
		}
	}
	c.streams = streamClient(dial, 16<<10)
	// Stalling readers also get a small read buffer: it holds the response headers,
	// and little of the backlog.
	c.smallWindow = streamClient(dialWindow(cfg.StallWindow), 2<<10)
	return c, nil
}

// Close closes idle connections.
func (c *Client) Close() {
	c.post.CloseIdleConnections()
	c.streams.CloseIdleConnections()
	c.smallWindow.CloseIdleConnections()
}

// NextID returns a fresh request id.
func (c *Client) NextID() int64 { return c.nextID.Add(1) }

// maxJSONBody bounds a JSON answer read into memory.
const maxJSONBody = 16 << 20

// EventStream is an SSE answer being read. It is owned by one goroutine.
type EventStream struct {
	req    *fasthttp.Request
	resp   *fasthttp.Response
	dec    *sse.Decoder
	lastID []byte
}

// Next returns the next event, remembering its id.
func (s *EventStream) Next() (*sse.Event, error) {
	ev, err := s.dec.Next()
	if err != nil {
		return nil, err
	}
	if ev.HasID {
		s.lastID = append(s.lastID[:0], ev.ID...)
	}
	return ev, nil
}

// LastID is the id of the last event read that had one (nil if none).
func (s *EventStream) LastID() []byte { return s.lastID }

// Close ends the stream. Closing before the end closes its connection, which is how
// the harness cuts a stream.
func (s *EventStream) Close() {
	if s.resp == nil {
		return
	}
	_ = s.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(s.resp)
	fasthttp.ReleaseRequest(s.req)
	s.resp, s.req = nil, nil
}

// drainTail bounds what drainEnd reads after an answer's response.
const drainTail = 16

// drainEnd reads an answer stream to its end after the response, as the
// SDK clients do: servers end the stream right after the response, and a
// body closed before its end costs its connection (fasthttp closes it), so
// a generator that stopped at the response would pay a new connection per
// call (and so would the server it measures). A stream that goes on past
// drainTail events is cut by Close.
func (s *EventStream) drainEnd() {
	for range drainTail {
		if _, err := s.dec.Next(); err != nil {
			return
		}
	}
}

// reply is a POST answer: a JSON body or an SSE stream.
type reply struct {
	status    int
	sessionID string
	body      []byte
	stream    *EventStream
}

func (c *Client) setCommon(req *fasthttp.Request, sess *Session) {
	req.SetRequestURI(c.uri)
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if sess != nil {
		req.Header.Set("Mcp-Session-Id", sess.ID)
		if sess.Version != "" && sess.Version != "2025-03-26" {
			req.Header.Set("MCP-Protocol-Version", sess.Version)
		}
	}
}

// do sends req on hc and turns the answer into a reply. A zero deadline waits forever.
func (c *Client) do(hc *fasthttp.HostClient, req *fasthttp.Request, deadline time.Time, op string) (*reply, error) {
	resp := fasthttp.AcquireResponse()
	var err error
	if deadline.IsZero() {
		err = hc.Do(req, resp)
	} else {
		err = hc.DoDeadline(req, resp, deadline)
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		fasthttp.ReleaseRequest(req)
		return nil, fmt.Errorf("harness.%s: %w", op, err)
	}
	r := &reply{status: resp.StatusCode(), sessionID: string(resp.Header.Peek("Mcp-Session-Id"))}
	if r.status == fasthttp.StatusOK && bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
		body := resp.BodyStream()
		if body == nil {
			body = bytes.NewReader(resp.Body())
		}
		r.stream = &EventStream{req: req, resp: resp, dec: sse.NewDecoder(body, 0)}
		return r, nil
	}
	r.body, err = readBody(resp)
	fasthttp.ReleaseResponse(resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		return nil, fmt.Errorf("harness.%s: reading the body: %w", op, err)
	}
	return r, nil
}

// readBody reads a whole (possibly streamed) body and closes the stream.
func readBody(resp *fasthttp.Response) ([]byte, error) {
	bs := resp.BodyStream()
	if bs == nil {
		return append([]byte(nil), resp.Body()...), nil
	}
	b, err := io.ReadAll(io.LimitReader(bs, maxJSONBody))
	cerr := resp.CloseBodyStream()
	if err == nil {
		err = cerr
	}
	return b, err
}

// Request is one JSON-RPC request or notification to send.
type Request struct {
	Method string
	// Params is marshalled with encoding/json (nil: no params).
	Params map[string]any
	// Name is the tool name for tools/call (sent as Mcp-Name to stateless targets).
	Name string
	// Notification sends no id and expects 202.
	Notification bool
	// Stream sends the request on the stream client without a deadline (for long SSE
	// answers).
	Stream bool
}

// body encodes r with id, adding the stateless _meta when needed.
func (c *Client) body(r *Request, id int64) ([]byte, error) {
	params := r.Params
	if c.stateless {
		p := make(map[string]any, len(params)+1)
		for k, v := range params {
			p[k] = v
		}
		meta, _ := p["_meta"].(map[string]any)
		m := make(map[string]any, len(meta)+3)
		for k, v := range meta {
			m[k] = v
		}
		m["io.modelcontextprotocol/protocolVersion"] = c.version
		m["io.modelcontextprotocol/clientCapabilities"] = map[string]any{}
		m["io.modelcontextprotocol/clientInfo"] = map[string]any{"name": "mcpgate-loadtest", "version": "1.0.0"}
		p["_meta"] = m
		params = p
	}
	msg := map[string]any{"jsonrpc": "2.0", "method": r.Method}
	if !r.Notification {
		msg["id"] = id
	}
	if params != nil {
		msg["params"] = params
	}
	return json.Marshal(msg)
}

// send POSTs r and returns the raw reply and the id used.
func (c *Client) send(sess *Session, r *Request) (*reply, int64, error) {
	var id int64
	if !r.Notification {
		id = c.NextID()
	}
	body, err := c.body(r, id)
	if err != nil {
		return nil, 0, fmt.Errorf("harness.send: %w", err)
	}
	req := fasthttp.AcquireRequest()
	c.setCommon(req, sess)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.stateless {
		req.Header.Set("MCP-Protocol-Version", c.version)
		req.Header.Set("Mcp-Method", r.Method)
		if r.Name != "" {
			req.Header.Set("Mcp-Name", r.Name)
		}
	}
	req.SetBodyRaw(body)
	hc, deadline := c.post, time.Now().Add(c.timeout)
	if r.Stream {
		hc, deadline = c.streams, time.Time{}
	}
	rep, err := c.do(hc, req, deadline, "post "+r.Method)
	return rep, id, err
}

// EventFunc sees each notification on an SSE answer or GET stream. Returning false
// cuts the stream (the call then fails with ErrCut).
type EventFunc func(m *Message) bool

// Call sends r and returns the raw result. SSE answers are read to the response, with
// each notification passed to onEvent (which may be nil). A stream cut by onEvent is
// returned open inside a *CutError so the caller can resume it.
func (c *Client) Call(sess *Session, r *Request, onEvent EventFunc) ([]byte, error) {
	rep, id, err := c.send(sess, r)
	if err != nil {
		return nil, err
	}
	if r.Notification {
		if rep.stream != nil {
			rep.stream.Close()
		}
		if rep.status != fasthttp.StatusAccepted && rep.status != fasthttp.StatusNoContent && rep.status != fasthttp.StatusOK {
			return nil, &HTTPError{Op: "notify " + r.Method, Status: rep.status, Body: clip(rep.body)}
		}
		return nil, nil
	}
	return c.finish(rep, id, r.Method, onEvent)
}

// CutError carries the last event id of a stream the harness cut.
type CutError struct {
	ID     int64  // the request id whose answer was cut (0 for GET streams)
	LastID []byte // last SSE event id received, nil if none
}

func (e *CutError) Error() string { return "harness: stream cut: " + ErrCut.Error() }

func (e *CutError) Unwrap() error { return ErrCut }

func (c *Client) finish(rep *reply, id int64, method string, onEvent EventFunc) ([]byte, error) {
	if rep.status != fasthttp.StatusOK {
		return nil, &HTTPError{Op: "post " + method, Status: rep.status, Body: clip(rep.body)}
	}
	if rep.stream != nil {
		return ReadAnswer(rep.stream, id, onEvent)
	}
	var d decoder
	m, err := d.decode(rep.body)
	if err != nil {
		return nil, err
	}
	return resultOf(&m, id)
}

// resultOf checks that m answers id and returns its result.
func resultOf(m *Message, id int64) ([]byte, error) {
	if !m.IsResponse() {
		return nil, fmt.Errorf("%w: expected a response, got %s", ErrProtocol, m.Method)
	}
	if string(m.ID) != strconv.FormatInt(id, 10) {
		return nil, fmt.Errorf("%w: response id %s, want %d", ErrProtocol, m.ID, id)
	}
	if m.Kind == jsonrpc.KindError {
		code, _ := lookupInt(m.Raw, "error", "code")
		return nil, &RPCError{Code: code}
	}
	res, ok := jsonrpc.Lookup(m.Raw, "result")
	if !ok {
		return nil, fmt.Errorf("%w: response without result", ErrProtocol)
	}
	return append([]byte(nil), res...), nil
}

// ReadAnswer reads an SSE answer until the response to id, passing notifications to
// onEvent. It closes s, except when onEvent cuts it: then s is closed too (its
// connection dropped) and a *CutError with the last event id is returned.
func ReadAnswer(s *EventStream, id int64, onEvent EventFunc) ([]byte, error) {
	defer s.Close()
	var d decoder
	for {
		ev, err := s.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, ErrStreamEnded
			}
			return nil, fmt.Errorf("harness.ReadAnswer: %w", err)
		}
		if len(ev.Data) == 0 {
			continue // priming event or an empty keep-alive
		}
		m, err := d.decode(ev.Data)
		if err != nil {
			return nil, err
		}
		if m.IsResponse() {
			res, err := resultOf(&m, id)
			s.drainEnd()
			return res, err
		}
		if onEvent != nil && !onEvent(&m) {
			return nil, &CutError{ID: id, LastID: append([]byte(nil), s.LastID()...)}
		}
	}
}

// Get opens the session's standalone GET stream, or resumes the stream named by
// lastEventID when it is not empty.
func (c *Client) Get(sess *Session, lastEventID []byte) (*EventStream, error) {
	req := fasthttp.AcquireRequest()
	c.setCommon(req, sess)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.Header.Set("Accept", "text/event-stream")
	if len(lastEventID) > 0 {
		req.Header.SetBytesV("Last-Event-ID", lastEventID)
	}
	hc := c.streams
	if sess.SmallWindow {
		hc = c.smallWindow
	}
	rep, err := c.do(hc, req, time.Time{}, "get")
	if err != nil {
		return nil, err
	}
	if rep.stream == nil {
		return nil, &HTTPError{Op: "get", Status: rep.status, Body: clip(rep.body)}
	}
	return rep.stream, nil
}

// Delete ends a session. 204 and 200 count as success.
func (c *Client) Delete(sess *Session) error {
	req := fasthttp.AcquireRequest()
	c.setCommon(req, sess)
	req.Header.SetMethod(fasthttp.MethodDelete)
	rep, err := c.do(c.post, req, time.Now().Add(c.timeout), "delete")
	if err != nil {
		return err
	}
	if rep.stream != nil {
		rep.stream.Close()
	}
	if rep.status != fasthttp.StatusNoContent && rep.status != fasthttp.StatusOK {
		return &HTTPError{Op: "delete", Status: rep.status, Body: clip(rep.body)}
	}
	return nil
}

// Initialize opens a session: initialize, then notifications/initialized.
func (c *Client) Initialize() (*Session, error) {
	rep, id, err := c.send(nil, &Request{Method: "initialize", Params: map[string]any{
		"protocolVersion": c.version,
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "mcpgate-loadtest", "version": "1.0.0"},
	}})
	if err != nil {
		return nil, err
	}
	sid := rep.sessionID
	res, err := c.finish(rep, id, "initialize", nil)
	if err != nil {
		return nil, err
	}
	if sid == "" {
		return nil, fmt.Errorf("%w: initialize answered without Mcp-Session-Id", ErrProtocol)
	}
	sess := &Session{ID: sid, Version: c.version}
	if v, ok := jsonrpc.Lookup(res, "protocolVersion"); ok {
		var s string
		if json.Unmarshal(v, &s) == nil && s != "" {
			sess.Version = s
		}
	}
	if _, err := c.Call(sess, &Request{Method: "notifications/initialized", Notification: true}, nil); err != nil {
		return sess, err
	}
	return sess, nil
}

func clip(b []byte) string {
	const n = 200
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
