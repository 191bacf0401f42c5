package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// statelessBridge serves session-era clients over an upstream of the
// stateless revision (PROTOCOL.md section 3, rule 11): it is a Transport
// whose sessions live in the gateway alone.
//
//   - initialize is answered from the upstream's server/discover, at the
//     session-era version the client asked for (or the latest served);
//   - every forwarded request carries the revision's _meta (the client's
//     version, capabilities and info from its initialize, and the log
//     level it set) and headers (Mcp-Method, Mcp-Name);
//   - ping, logging/setLevel, notifications/initialized and
//     resources/(un)subscribe are handled here (a subscription changes the
//     filter of the standalone stream);
//   - the standalone stream (Listen) is an upstream subscriptions/listen
//     stream for the list changes the server offers and the resources
//     subscribed to, without its acknowledgement;
//   - a result of type input_required becomes server-to-client requests
//     (sampling, elicitation, roots) on the call's stream; the client's
//     answers (Send of responses) complete the call with a retry carrying
//     inputResponses and requestState, on the same stream; answers that do
//     not come within BridgeConfig.InputTimeout end the call with an error;
//   - notifications/cancelled closes the call's upstream stream, which is
//     the revision's cancellation.
type statelessBridge struct {
	st  Stateless
	cfg BridgeConfig
}

var _ Transport = (*statelessBridge)(nil)

// NewStatelessBridge returns a Transport for session-era clients over st.
func NewStatelessBridge(st Stateless, cfg BridgeConfig) Transport {
	cfg.setDefaults()
	return &statelessBridge{st: st, cfg: cfg}
}

// Close releases nothing: the underlying transport is closed by its owner.
func (b *statelessBridge) Close() error { return nil }

// Kind names the upstream binding for the admin API.
func (b *statelessBridge) Kind() string { return "stateless-bridge" }

func (b *statelessBridge) do(ctx context.Context, method string, params json.RawMessage, body []byte) (*Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	return b.st.Do(ctx, statelessHeaders(method, params), body)
}

// Connect answers the client's initialize from server/discover.
func (b *statelessBridge) Connect(ctx context.Context, initialize []byte) (Session, []byte, error) {
	e, ok := decodeEnvelope(initialize)
	if !ok || e.Method != "initialize" || len(e.ID) == 0 {
		return nil, errorResponse(e.ID, jsonrpc.CodeInvalidRequest, "Invalid Request: initialize expected"), nil
	}
	var p struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
	}
	if len(e.Params) > 0 {
		if err := json.Unmarshal(e.Params, &p); err != nil {
			return nil, errorResponse(e.ID, jsonrpc.CodeInvalidParams, "Invalid params: "+err.Error()), nil
		}
	}
	if len(p.Capabilities) == 0 || string(p.Capabilities) == "null" {
		p.Capabilities = json.RawMessage(`{}`)
	}
	s := &bridgeSession{b: b, caps: p.Capabilities, info: p.ClientInfo,
		waiting: map[string]*bridgeCall{}, calls: map[string]*bridgeCall{}, subs: map[string]bool{}}
	disc := envelope{ID: json.RawMessage(`0`), Method: "server/discover", Params: withMeta(nil, s.meta())}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout) // the answer is awaited whole
	defer cancel()
	reply, err := b.do(ctx, "server/discover", nil, disc.encode())
	if err != nil {
		return nil, nil, fmt.Errorf("server/discover: %w", err)
	}
	answer, err := FirstAnswer(ctx, reply)
	if err != nil {
		return nil, nil, fmt.Errorf("server/discover: %w", err)
	}
	d, _ := decodeEnvelope(answer)
	if d.Error != nil {
		out := envelope{ID: e.ID, Error: d.Error}
		return nil, out.encode(), nil
	}
	var res struct {
		Capabilities json.RawMessage            `json:"capabilities"`
		Instructions string                     `json:"instructions"`
		Meta         map[string]json.RawMessage `json:"_meta"`
	}
	if err := json.Unmarshal(d.Result, &res); err != nil {
		return nil, nil, fmt.Errorf("server/discover: bad result: %v: %w", err, ErrUnavailable)
	}
	s.version = b.cfg.Versions[len(b.cfg.Versions)-1]
	for _, v := range b.cfg.Versions {
		if v == p.ProtocolVersion {
			s.version = v
		}
	}
	if len(res.Capabilities) == 0 || string(res.Capabilities) == "null" {
		res.Capabilities = json.RawMessage(`{}`)
	}
	s.serverCaps = res.Capabilities
	info := res.Meta[MetaServerInfo]
	if len(info) == 0 {
		info = json.RawMessage(`{"name":"mcpgate","version":"1"}`)
	}
	result := map[string]json.RawMessage{
		"protocolVersion": quoteJSON(s.version),
		"capabilities":    res.Capabilities,
		"serverInfo":      info,
	}
	if res.Instructions != "" {
		result["instructions"] = quoteJSON(res.Instructions)
	}
	rb, _ := json.Marshal(result)
	out := envelope{ID: e.ID, Result: rb}
	return s, out.encode(), nil
}

// bridgeSession is one session-era client session over the stateless
// upstream.
type bridgeSession struct {
	b          *statelessBridge
	version    string
	caps, info json.RawMessage
	serverCaps json.RawMessage

	// mu guards every field below.
	mu       sync.Mutex
	logLevel string
	subs     map[string]bool        // resource URIs subscribed to
	listen   *bridgeListen          // the standalone stream, if open
	waiting  map[string]*bridgeCall // server-to-client request id -> the call awaiting its answer
	calls    map[string]*bridgeCall // calls in flight by request id (as the gateway sent it)
	nextIn   uint64                 // minted server-to-client request ids
	closed   bool
}

var _ Session = (*bridgeSession)(nil)

func (s *bridgeSession) ID() string      { return "" }
func (s *bridgeSession) Version() string { return s.version }
func (s *bridgeSession) Kind() string    { return "stateless-bridge" }

// meta is the revision's _meta for this client.
func (s *bridgeSession) meta() map[string]json.RawMessage {
	m := map[string]json.RawMessage{
		MetaProtocolVersion:    quoteJSON(StatelessVersion),
		MetaClientCapabilities: s.caps,
	}
	if len(s.info) > 0 && string(s.info) != "null" {
		m[MetaClientInfo] = s.info
	}
	s.mu.Lock()
	if s.logLevel != "" {
		m[MetaLogLevel] = quoteJSON(s.logLevel)
	}
	s.mu.Unlock()
	return m
}

// Send handles one client POST body.
func (s *bridgeSession) Send(ctx context.Context, body []byte) (*Reply, error) {
	var p jsonrpc.Parser
	msgs, batch, perr := p.Parse(body)
	if perr != nil {
		return &Reply{JSON: errorResponse(perr.ID, perr.Code, perr.Message)}, nil
	}
	if !batch {
		return s.one(ctx, msgs[0].Raw)
	}
	raws := make([][]byte, len(msgs))
	for i := range msgs {
		raws[i] = append([]byte(nil), msgs[i].Raw...)
	}
	var parts []*Reply
	for _, raw := range raws {
		r, err := s.one(ctx, raw)
		if err != nil {
			for _, p := range parts {
				if p.Stream != nil {
					_ = p.Stream.Close()
				}
			}
			return nil, err
		}
		if !r.Accepted {
			parts = append(parts, r)
		}
	}
	if len(parts) == 0 {
		return &Reply{Accepted: true}, nil
	}
	return &Reply{Stream: &seqStream{parts: parts}}, nil
}

// one handles one message.
func (s *bridgeSession) one(ctx context.Context, raw []byte) (*Reply, error) {
	e, ok := decodeEnvelope(raw)
	if !ok {
		return &Reply{JSON: errorResponse(nil, jsonrpc.CodeParseError, "Parse error")}, nil
	}
	switch {
	case e.isResponse():
		s.mu.Lock()
		c := s.waiting[string(e.ID)]
		delete(s.waiting, string(e.ID))
		s.mu.Unlock()
		if c != nil {
			select {
			case c.answers <- raw:
			case <-c.done: // the call ended: nobody collects its answers
			}
		}
		return &Reply{Accepted: true}, nil
	case e.isNotification():
		if e.Method == "notifications/cancelled" {
			if rid, ok := jsonrpc.Lookup(e.Params, "requestId"); ok {
				s.mu.Lock()
				c := s.calls[string(rid)]
				s.mu.Unlock()
				if c != nil {
					_ = c.Close()
				}
			}
		}
		// initialized, roots/list_changed and the like have no upstream
		// counterpart in the stateless revision.
		return &Reply{Accepted: true}, nil
	}
	switch e.Method {
	case "ping":
		return &Reply{JSON: (&envelope{ID: e.ID, Result: json.RawMessage(`{}`)}).encode()}, nil
	case "logging/setLevel":
		var p struct {
			Level string `json:"level"`
		}
		if err := json.Unmarshal(e.Params, &p); err != nil || logRank(p.Level) < 0 {
			return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeInvalidParams, "Invalid params: unknown log level")}, nil
		}
		s.mu.Lock()
		s.logLevel = p.Level
		s.mu.Unlock()
		return &Reply{JSON: (&envelope{ID: e.ID, Result: json.RawMessage(`{}`)}).encode()}, nil
	case "resources/subscribe", "resources/unsubscribe":
		var p struct {
			URI string `json:"uri"`
		}
		if err := json.Unmarshal(e.Params, &p); err != nil || p.URI == "" {
			return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeInvalidParams, "Invalid params: uri required")}, nil
		}
		subscribe := e.Method == "resources/subscribe"
		s.mu.Lock()
		if subscribe && !s.subs[p.URI] && len(s.subs) >= maxSubscribedURIs {
			// Every subscription goes into the filter of each upstream
			// subscriptions/listen: bounded like the pool's (bridge_pool.go).
			s.mu.Unlock()
			return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeInvalidParams,
				"Invalid params: the session is subscribed to the gateway's limit of "+strconv.Itoa(maxSubscribedURIs)+" resources")}, nil
		}
		changed := s.subs[p.URI] != subscribe
		if subscribe {
			s.subs[p.URI] = true
		} else {
			delete(s.subs, p.URI)
		}
		l := s.listen
		s.mu.Unlock()
		if l != nil && changed {
			l.reopen() // the standalone stream's filter changed
		}
		return &Reply{JSON: (&envelope{ID: e.ID, Result: json.RawMessage(`{}`)}).encode()}, nil
	case "initialize":
		return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeInvalidRequest, "Invalid Request: the session is initialized")}, nil
	}
	c := &bridgeCall{s: s, req: e, answers: make(chan []byte, 16), done: make(chan struct{})}
	first, err := c.send(ctx)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Body != nil && se.Status >= 400 && se.Status < 500 && se.Status != 401 {
			// The revision answers a JSON-RPC error with an HTTP status
			// (404 for -32601, 400 for invalid params); the session era
			// answers it like any response.
			return &Reply{JSON: se.Body}, nil
		}
		return nil, err
	}
	if first.JSON != nil && resultType(resultOf(first.JSON)) != "input_required" {
		return &Reply{JSON: s.clean(first.JSON)}, nil
	}
	s.mu.Lock()
	s.calls[string(e.ID)] = c
	s.mu.Unlock()
	c.adopt(first)
	return &Reply{Stream: c}, nil
}

// clean turns a stateless result into a session-era one: resultType,
// ttlMs and cacheScope have no meaning there (they are harmless, but a
// strict client schema may refuse them).
func (s *bridgeSession) clean(msg []byte) []byte {
	e, ok := decodeEnvelope(msg)
	if !ok || e.Result == nil {
		return msg
	}
	r := e.Result
	for _, k := range []string{"resultType", "ttlMs", "cacheScope"} {
		r = setParam(r, k, nil)
	}
	e.Result = r
	return e.encode()
}

func resultOf(msg []byte) json.RawMessage {
	raw, _ := jsonrpc.Lookup(msg, "result")
	return raw
}

// Listen opens the standalone stream: an upstream subscriptions/listen.
func (s *bridgeSession) Listen(ctx context.Context) (Stream, error) {
	l := &bridgeListen{s: s}
	// Registered before it opens: a subscription made while the upstream
	// answers (after the filter was read) reopens it. The stream it
	// replaces is closed outside s.mu, which its Close takes.
	s.mu.Lock()
	old := s.listen
	s.listen = l
	s.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	if err := l.open(ctx); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// Close ends the session's calls and standalone stream; the upstream keeps
// no state to end.
func (s *bridgeSession) Close(context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	calls := make([]*bridgeCall, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	l := s.listen
	s.mu.Unlock()
	for _, c := range calls {
		_ = c.Close()
	}
	if l != nil {
		_ = l.Close()
	}
	return nil
}

// logRank orders the MCP log levels; -1 for an unknown one.
func logRank(level string) int {
	for i, l := range []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"} {
		if l == level {
			return i
		}
	}
	return -1
}

// bridgeCall is one forwarded request's answer stream.
type bridgeCall struct {
	s       *bridgeSession
	req     envelope
	answers chan []byte // the client's answers to this call's input requests
	done    chan struct{}

	// Owned by the reader (Next):
	cur     Stream            // the current upstream answer stream
	json    []byte            // or the current upstream JSON answer, not yet read
	pending [][]byte          // messages to hand out before reading cur
	await   map[string]string // minted id -> input request key, awaiting answers
	state   json.RawMessage   // requestState of the current round
	got     map[string]json.RawMessage
	rounds  int
	ended   bool

	mu     sync.Mutex // guards closed and cur for Close
	closed bool
}

// send forwards the request (with its inputResponses and requestState on
// a retry).
func (c *bridgeCall) send(ctx context.Context) (*Reply, error) {
	params := withMeta(c.req.Params, c.s.meta())
	e := envelope{ID: c.req.ID, Method: c.req.Method, Params: params}
	return c.s.b.do(ctx, c.req.Method, params, e.encode())
}

// adopt makes r the current upstream answer.
func (c *bridgeCall) adopt(r *Reply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Stream != nil {
		if c.closed {
			_ = r.Stream.Close()
			return
		}
		c.cur = r.Stream
	} else {
		c.json = r.JSON
	}
}

// Next yields the call's messages: the upstream's notifications, the
// server-to-client requests of input rounds, and the final response.
func (c *bridgeCall) Next() ([]byte, error) {
	for {
		if len(c.pending) > 0 {
			m := c.pending[0]
			c.pending = c.pending[1:]
			return m, nil
		}
		if c.ended {
			return nil, io.EOF
		}
		if c.await != nil {
			if err := c.collect(); err != nil {
				return nil, err
			}
			continue
		}
		msg, err := c.read()
		if err != nil {
			return nil, err
		}
		if out, ok := c.handle(msg); ok {
			return out, nil
		}
	}
}

// read returns the next upstream message of the current answer.
func (c *bridgeCall) read() ([]byte, error) {
	if c.json != nil {
		m := c.json
		c.json = nil
		return m, nil
	}
	c.mu.Lock()
	cur, closed := c.cur, c.closed
	c.mu.Unlock()
	if closed || cur == nil {
		return nil, io.ErrClosedPipe
	}
	msg, err := cur.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: upstream answer ended before its response", ErrUnavailable)
		}
		return nil, err
	}
	return append([]byte(nil), msg...), nil
}

// handle looks at one upstream message: the final response ends the call,
// an input_required result starts an input round, a log message below the
// client's level is dropped.
func (c *bridgeCall) handle(msg []byte) ([]byte, bool) {
	e, ok := decodeEnvelope(msg)
	if !ok {
		return msg, true
	}
	if e.isNotification() && e.Method == "notifications/message" {
		var p struct {
			Level string `json:"level"`
		}
		_ = json.Unmarshal(e.Params, &p)
		c.s.mu.Lock()
		min := c.s.logLevel
		c.s.mu.Unlock()
		if min != "" && logRank(p.Level) < logRank(min) {
			return nil, false
		}
		return msg, true
	}
	if !e.isResponse() || !sameID(e.ID, c.req.ID) {
		return msg, true
	}
	if e.Result != nil && resultType(e.Result) == "input_required" {
		if err := c.startRound(e.Result); err != nil {
			c.ended = true
			return errorResponse(c.req.ID, jsonrpc.CodeInternalError, err.Error()), true
		}
		return nil, false
	}
	c.ended = true
	c.closeCur()
	return c.s.clean(msg), true
}

// startRound turns an input_required result into server-to-client
// requests the client answers.
func (c *bridgeCall) startRound(result json.RawMessage) error {
	c.closeCur()
	c.rounds++
	if c.rounds > c.s.b.cfg.MaxRounds {
		return fmt.Errorf("the upstream asked for input more than %d times", c.s.b.cfg.MaxRounds)
	}
	var r struct {
		InputRequests map[string]struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		} `json:"inputRequests"`
		RequestState json.RawMessage `json:"requestState"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return fmt.Errorf("unreadable input_required result: %v", err)
	}
	if len(r.InputRequests) == 0 {
		return errors.New("the upstream is busy (input_required without input requests); retry later")
	}
	c.state = r.RequestState
	c.await = make(map[string]string, len(r.InputRequests))
	c.got = make(map[string]json.RawMessage, len(r.InputRequests))
	keys := make([]string, 0, len(r.InputRequests))
	for k, in := range r.InputRequests {
		if in.Method == "" {
			// It would reach the client as neither request nor response,
			// unanswerable: the call would wait out InputTimeout.
			return fmt.Errorf("input request %q of the upstream has no method", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		in := r.InputRequests[k]
		c.s.mu.Lock()
		c.s.nextIn++
		id := counterID("mcpgate-input-", c.s.nextIn)
		c.s.waiting[string(id)] = c
		c.s.mu.Unlock()
		c.await[string(id)] = k
		c.pending = append(c.pending, (&envelope{ID: id, Method: in.Method, Params: in.Params}).encode())
	}
	return nil
}

// collect waits for the client's answers of the current round, then
// retries the request with them.
func (c *bridgeCall) collect() error {
	// The wait is bounded: the gateway counts a call in flight as activity
	// of its session, so a client that went away during an elicitation
	// would otherwise keep the session, this goroutine and its stream
	// forever. The bound is the session pool's for a parked call.
	wait := time.NewTimer(c.s.b.cfg.InputTimeout)
	defer wait.Stop()
	for len(c.got) < len(c.await) {
		select {
		case raw := <-c.answers:
			e, ok := decodeEnvelope(raw)
			key, mine := c.await[string(e.ID)]
			if !ok || !mine {
				continue
			}
			if e.Error != nil {
				// The client refused (declined sampling, failed roots):
				// the call fails with its error.
				c.await, c.ended = nil, true
				c.pending = append(c.pending, (&envelope{ID: c.req.ID, Error: e.Error}).encode())
				return nil
			}
			c.got[key] = e.Result
		case <-c.done:
			return io.ErrClosedPipe
		case <-wait.C:
			// The call ends with an error response, so the gateway sees
			// it answered and the session's idle clock runs again. The
			// upstream keeps nothing of the call (its answer stream was
			// closed when the round began); a late answer of the client
			// finds no call waiting and is dropped.
			c.forgetInputs()
			c.await, c.got, c.ended = nil, nil, true
			c.pending = append(c.pending, errorResponse(c.req.ID, jsonrpc.CodeInternalError,
				fmt.Sprintf("Request timeout: the client did not answer the server's requests (sampling, elicitation, roots) within %v", c.s.b.cfg.InputTimeout)))
			return nil
		}
	}
	responses, _ := json.Marshal(c.got)
	c.req.Params = setParam(c.req.Params, "inputResponses", responses)
	if len(c.state) > 0 && string(c.state) != "null" {
		c.req.Params = setParam(c.req.Params, "requestState", c.state)
	} else {
		c.req.Params = setParam(c.req.Params, "requestState", nil)
	}
	c.await, c.got = nil, nil
	r, err := c.send(context.Background())
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Body != nil {
			c.json = se.Body // the upstream refused the retry: the client gets its error
			return nil
		}
		return err
	}
	c.adopt(r)
	return nil
}

// forgetInputs removes the call's server-to-client requests from those
// the session routes the client's answers of.
func (c *bridgeCall) forgetInputs() {
	c.s.mu.Lock()
	for id, wc := range c.s.waiting {
		if wc == c {
			delete(c.s.waiting, id)
		}
	}
	c.s.mu.Unlock()
}

func (c *bridgeCall) closeCur() {
	c.mu.Lock()
	cur := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cur != nil {
		_ = cur.Close()
	}
}

// Close ends the call: its upstream stream closes (the revision's
// cancellation) and an input round stops waiting.
func (c *bridgeCall) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cur := c.cur
	close(c.done)
	c.mu.Unlock()
	if cur != nil {
		_ = cur.Close()
	}
	c.s.mu.Lock()
	if c.s.calls[string(c.req.ID)] == c {
		delete(c.s.calls, string(c.req.ID))
	}
	c.s.mu.Unlock()
	c.forgetInputs()
	return nil
}

// bridgeListen is the standalone stream: an upstream subscriptions/listen,
// reopened when the client's subscriptions change.
type bridgeListen struct {
	s *bridgeSession

	mu       sync.Mutex
	cur      Stream
	reopened bool // cur was closed to change the filter: open again
	closed   bool
}

// filter is the subscriptions/listen params: every list change the server
// offers, and updates of the resources subscribed to.
func (l *bridgeListen) filter() json.RawMessage {
	n := map[string]any{}
	for kind, key := range map[string]string{"tools": "toolsListChanged", "prompts": "promptsListChanged", "resources": "resourcesListChanged"} {
		if raw, ok := jsonrpc.Lookup(l.s.serverCaps, kind, "listChanged"); ok && string(raw) == "true" {
			n[key] = true
		}
	}
	l.s.mu.Lock()
	var uris []string
	for u := range l.s.subs {
		uris = append(uris, u)
	}
	l.s.mu.Unlock()
	if len(uris) > 0 {
		sort.Strings(uris)
		n["resourceSubscriptions"] = uris
	}
	b, _ := json.Marshal(map[string]any{"notifications": n})
	return b
}

func (l *bridgeListen) open(ctx context.Context) error {
	// A reopen from now on (a subscription that the filter read below may
	// miss) makes Next open again.
	l.mu.Lock()
	l.reopened = false
	l.mu.Unlock()
	params := withMeta(l.filter(), l.s.meta())
	e := envelope{ID: json.RawMessage(`"mcpgate-listen"`), Method: "subscriptions/listen", Params: params}
	// The stream lives long: only its start is bounded.
	r, err := l.s.b.do(ctx, "subscriptions/listen", params, e.encode())
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && (se.Status == 404 || se.Status == 405) {
			return fmt.Errorf("subscriptions/listen: %w", ErrNotSupported)
		}
		return err
	}
	if r.Stream == nil {
		return fmt.Errorf("subscriptions/listen answered at once: %w", ErrNotSupported)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = r.Stream.Close()
		return io.ErrClosedPipe
	}
	old := l.cur
	l.cur = r.Stream
	l.mu.Unlock()
	if old != nil {
		_ = old.Close() // closed by reopen already, unless it came in meanwhile
	}
	return nil
}

// reopen closes the current upstream stream; Next opens a new one with the
// new filter.
func (l *bridgeListen) reopen() {
	l.mu.Lock()
	cur := l.cur
	l.reopened = true
	l.mu.Unlock()
	if cur != nil {
		_ = cur.Close()
	}
}

// Next yields the upstream's notifications, without the acknowledgement.
func (l *bridgeListen) Next() ([]byte, error) {
	for {
		l.mu.Lock()
		cur, closed, reopen := l.cur, l.closed, l.reopened
		l.mu.Unlock()
		if closed {
			return nil, io.ErrClosedPipe
		}
		if reopen {
			if err := l.open(context.Background()); err != nil {
				return nil, err
			}
			continue
		}
		msg, err := cur.Next()
		if err != nil {
			l.mu.Lock()
			again := l.reopened && !l.closed
			l.mu.Unlock()
			if again {
				continue
			}
			return nil, err
		}
		e, ok := decodeEnvelope(msg)
		switch {
		case ok && e.Method == "notifications/subscriptions/acknowledged":
			continue
		case ok && e.isResponse():
			return nil, io.EOF // the server ended the subscription gracefully
		}
		return msg, nil
	}
}

func (l *bridgeListen) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	cur := l.cur
	l.mu.Unlock()
	if cur != nil {
		_ = cur.Close()
	}
	l.s.mu.Lock()
	if l.s.listen == l {
		l.s.listen = nil
	}
	l.s.mu.Unlock()
	return nil
}

// seqStream yields the answers of a batch's messages one after another.
type seqStream struct {
	parts []*Reply
	mu    sync.Mutex
	i     int
}

func (q *seqStream) Next() ([]byte, error) {
	for {
		q.mu.Lock()
		if q.i >= len(q.parts) {
			q.mu.Unlock()
			return nil, io.EOF
		}
		p := q.parts[q.i]
		q.mu.Unlock()
		if p.JSON != nil {
			m := p.JSON
			p.JSON = nil
			return m, nil
		}
		if p.Stream != nil {
			m, err := p.Stream.Next()
			if err == nil {
				return m, nil
			}
			if !errors.Is(err, io.EOF) {
				return nil, err
			}
			_ = p.Stream.Close()
		}
		q.mu.Lock()
		q.i++
		q.mu.Unlock()
	}
}

func (q *seqStream) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, p := range q.parts[q.i:] {
		if p.Stream != nil {
			_ = p.Stream.Close()
		}
	}
	q.i = len(q.parts)
	return nil
}
