package upstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// sessionPool serves clients of the stateless revision over a session-era
// upstream (HTTP or stdio; PROTOCOL.md section 3, rule 11): it is a
// Stateless whose requests run on upstream sessions the gateway opens
// itself, pooled by the client's capabilities and owner and reused across
// requests. The owner is the client's principal and, when the gateway
// forwards clients' credentials upstream (WithCredential), the credential
// itself: an upstream session opened with one client's Authorization is
// never used for a request carrying another (or none), even when both
// clients have the same principal, as every client has when the gateway
// authenticates nobody.
//
//   - server/discover is answered from the pooled session's initialize
//     result; its supportedVersions are the session-era versions (the
//     upstream hop does not speak the stateless revision), so a client able
//     to fall back to initialize does so and keeps a resumable session,
//     unless BridgeConfig.AdvertiseStateless lists the revision first;
//   - a request goes upstream under an id unique in its pooled session and
//     its answer comes back under the client's id, with resultType set;
//   - a server-to-client request (sampling, elicitation, roots) inside a
//     call ends the client's answer with an input_required result whose
//     requestState names the upstream call, which waits; the client's retry
//     with inputResponses answers the server and continues the same
//     upstream call;
//   - closing a call's stream before its response sends
//     notifications/cancelled upstream;
//   - subscriptions/listen streams are fed from the pooled session's
//     standalone stream (list changes of the kinds asked for, updates of the
//     resources subscribed to), after an acknowledgement, tagged with the
//     subscription id;
//   - log messages reach a call's stream only when the request set a log
//     level in its _meta, and only at or above it.
type sessionPool struct {
	t   Transport
	cfg BridgeConfig

	// mu guards every field below.
	mu      sync.Mutex
	entries map[string]*poolEntry
	parked  map[string]*parkedCall // requestState -> upstream call waiting for input
	closed  bool

	// salt is mixed into every owner digest. A pool key is logged (at
	// debug level) and may digest a forwarded credential: without a
	// secret of the process's own, anyone reading the log could test
	// guesses of a weak credential against it offline.
	salt [16]byte
}

var _ Stateless = (*sessionPool)(nil)

// Pool limits: distinct pooled sessions, idle time before one is closed,
// and how many upstream calls may wait for the client's input (each for
// BridgeConfig.InputTimeout).
const (
	maxPoolEntries = 64
	poolIdle       = 5 * time.Minute
	maxParked      = 1024
)

// maxSubscribedURIs bounds the resources a pooled session subscribes to
// upstream for its listen streams (each stays subscribed while the session
// lives): a subscriptions/listen that would pass it is refused with
// -32602, so one request cannot make the pool send thousands of
// resources/subscribe upstream, nor grow the set without end. It bounds a
// bridged session's resources/subscribe too (bridge_stateless.go), whose
// every URI goes into each subscriptions/listen filter.
const maxSubscribedURIs = 1024

// principalKey carries the client's principal to the pool (its sessions
// are never shared across principals, nor across forwarded credentials).
type principalKey struct{}

// WithPrincipal returns ctx carrying the authenticated principal of a
// stateless request.
func WithPrincipal(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, principalKey{}, principal)
}

// NewSessionPool returns a Stateless for stateless clients over t.
func NewSessionPool(t Transport, cfg BridgeConfig) Stateless {
	cfg.setDefaults()
	p := &sessionPool{t: t, cfg: cfg, entries: map[string]*poolEntry{}, parked: map[string]*parkedCall{}}
	_, _ = rand.Read(p.salt[:])
	return p
}

// owner is the digest of whom a pooled session, and the calls waiting on
// it, belong to.
type owner [sha256.Size]byte

// ownerOf returns the owner of a request: its principal and, when the
// request's context carries a credential to forward (WithCredential, set
// only when the gateway forwards clients' Authorization headers), that
// credential, so that clients sharing a principal (every client, when the
// gateway authenticates nobody) but not a credential never share an
// upstream session opened with the other's credential. A client without
// the header (an empty credential) is an owner of its own too: it must not
// be served by a session opened with someone's credential either. Only
// digests are kept: the credential itself is neither stored nor logged.
func (p *sessionPool) ownerOf(ctx context.Context) owner {
	principal, _ := ctx.Value(principalKey{}).(string)
	var buf [len(p.salt) + 2*sha256.Size + 1]byte
	b := append(buf[:0], p.salt[:]...)
	pd := sha256.Sum256([]byte(principal))
	b = append(b, pd[:]...)
	if cred, forwarded := ctx.Value(credentialKey{}).(string); forwarded {
		// Hashed only when forwarding is on: without it the common case
		// costs nothing more than the principal's digest.
		cd := sha256.Sum256([]byte(cred))
		b = append(append(b, 1), cd[:]...)
	} else {
		b = append(b, 0)
	}
	return sha256.Sum256(b)
}

// poolEntry is one pooled upstream session.
type poolEntry struct {
	key   string
	owner owner         // whose requests the session serves (ownerOf)
	ready chan struct{} // closed once s, init or err is set
	s     Session
	init  json.RawMessage // the initialize result
	err   error
	mu    sync.Mutex // guards next, used, fan
	next  uint64     // upstream ids of this session's calls
	used  time.Time
	fan   *fanout // the standalone stream shared by the listen subscribers
	gone  bool
}

// Close ends every pooled session and parked call.
func (p *sessionPool) Close() error {
	p.mu.Lock()
	p.closed = true
	entries := p.entries
	parked := p.parked
	p.entries, p.parked = map[string]*poolEntry{}, map[string]*parkedCall{}
	p.mu.Unlock()
	for _, pc := range parked {
		pc.timer.Stop()
		_ = pc.call.rd.stop() // its session closes next, ending the call upstream
	}
	for _, e := range entries {
		p.retire(e)
	}
	return nil
}

func (p *sessionPool) retire(e *poolEntry) {
	<-e.ready
	e.mu.Lock()
	e.gone = true
	f := e.fan
	e.fan = nil
	e.mu.Unlock()
	if f != nil {
		f.stop()
	}
	if e.s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.s.Close(ctx)
		cancel()
	}
}

// statelessMeta is what the pool reads from a request's _meta.
type statelessMeta struct {
	Version  string          `json:"io.modelcontextprotocol/protocolVersion"`
	Caps     json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
	Info     json.RawMessage `json:"io.modelcontextprotocol/clientInfo"`
	LogLevel string          `json:"io.modelcontextprotocol/logLevel"`
}

// entry returns the pooled session for caps and the request's owner
// (ownerOf), opening it if needed.
func (p *sessionPool) entry(ctx context.Context, m statelessMeta) (*poolEntry, error) {
	who := p.ownerOf(ctx)
	sum := sha256.Sum256(append(who[:], canonical(m.Caps)...))
	key := fmt.Sprintf("%x", sum[:16])
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("session pool closed: %w", ErrUnavailable)
	}
	victims := p.evictLocked(key)
	e := p.entries[key]
	fresh := e == nil
	if fresh {
		e = &poolEntry{key: key, owner: who, ready: make(chan struct{}), used: time.Now()}
		p.entries[key] = e
	}
	p.mu.Unlock()
	// Idle sessions end here, outside the lock, on the caller's
	// goroutine: the pool starts none of its own for it.
	for _, v := range victims {
		p.retire(v)
	}
	if fresh {
		p.open(ctx, e, m)
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		p.drop(e)
		return nil, e.err
	}
	e.mu.Lock()
	e.used = time.Now()
	e.mu.Unlock()
	return e, nil
}

// evictLocked removes pooled sessions idle for poolIdle (with no listen
// subscriber), failed ones, and the least recently used beyond
// maxPoolEntries; the caller ends them after unlocking.
func (p *sessionPool) evictLocked(key string) (victims []*poolEntry) {
	now := time.Now()
	// used is read under e.mu: requests update it without p.mu.
	type liveEntry struct {
		e    *poolEntry
		used time.Time
	}
	var live []liveEntry
	for k, e := range p.entries {
		select {
		case <-e.ready:
		default:
			continue // opening
		}
		e.mu.Lock()
		used := e.used
		idle := now.Sub(used) > poolIdle && (e.fan == nil || e.fan.idle())
		e.mu.Unlock()
		if idle || e.err != nil {
			delete(p.entries, k)
			victims = append(victims, e)
			continue
		}
		live = append(live, liveEntry{e, used})
	}
	// Room is made only for a new entry (key not pooled yet).
	if _, pooled := p.entries[key]; !pooled && len(live) >= maxPoolEntries {
		sort.Slice(live, func(i, j int) bool { return live[i].used.Before(live[j].used) })
		for _, l := range live[:len(live)-maxPoolEntries+1] {
			delete(p.entries, l.e.key)
			victims = append(victims, l.e)
		}
	}
	return victims
}

// open initializes a pooled session with the client's capabilities.
func (p *sessionPool) open(ctx context.Context, e *poolEntry, m statelessMeta) {
	defer close(e.ready)
	caps := m.Caps
	if len(caps) == 0 || string(caps) == "null" {
		caps = json.RawMessage(`{}`)
	}
	info := m.Info
	if len(info) == 0 || string(info) == "null" {
		info = json.RawMessage(`{"name":"mcpgate","version":"1"}`)
	}
	params, _ := json.Marshal(map[string]json.RawMessage{
		"protocolVersion": quoteJSON(p.cfg.Versions[len(p.cfg.Versions)-1]),
		"capabilities":    caps,
		"clientInfo":      info,
	})
	init := (&envelope{ID: json.RawMessage(`0`), Method: "initialize", Params: params}).encode()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout)
	defer cancel()
	s, answer, err := p.t.Connect(cctx, init)
	if err != nil {
		e.err = fmt.Errorf("opening a pooled upstream session: %w", err)
		return
	}
	if s == nil {
		a, _ := decodeEnvelope(answer)
		e.err = &StatusError{Op: "initialize", Status: 502, Body: errorResponse(nil, jsonrpc.CodeInternalError,
			"the upstream refused the gateway's session: "+string(a.Error))}
		return
	}
	if r, err := s.Send(cctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err == nil && r.Stream != nil {
		_ = r.Stream.Close()
	}
	e.s, e.init = s, resultOf(answer)
	p.cfg.Logger.Debug("pooled upstream session opened", "key", e.key, "upstream_session", s.ID())
}

func (p *sessionPool) drop(e *poolEntry) {
	p.mu.Lock()
	if p.entries[e.key] == e {
		delete(p.entries, e.key)
	}
	p.mu.Unlock()
}

// canonical re-encodes a JSON value with sorted keys (encoding/json sorts
// map keys), so equal capabilities share a pooled session.
func canonical(raw json.RawMessage) []byte {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return raw
	}
	b, _ := json.Marshal(v)
	return b
}

// Do serves one request or notification of the stateless revision.
func (p *sessionPool) Do(ctx context.Context, _ []Header, body []byte) (*Reply, error) {
	e, ok := decodeEnvelope(body)
	if !ok {
		return &Reply{JSON: errorResponse(nil, jsonrpc.CodeParseError, "Parse error")}, nil
	}
	if !e.isRequest() {
		return &Reply{Accepted: true}, nil // nothing of a stateless client's notifications has a session-era counterpart
	}
	var m statelessMeta
	if raw, ok := jsonrpc.Lookup(e.Params, "_meta"); ok {
		_ = json.Unmarshal(raw, &m)
	}
	if e.Method == "server/discover" && !p.cfg.AdvertiseStateless {
		// Not offered over this upstream: the client falls back to
		// initialize (no pooled session is opened for the probe).
		return &Reply{JSON: p.unsupported(e, m.Version)}, nil
	}
	if st, ok := jsonrpc.Lookup(e.Params, "requestState"); ok && len(st) > 2 {
		if state, _ := jsonrpc.Unquote(st); strings.HasPrefix(state, "mcpgate-") {
			// A state the pool minted (others are the server's own and go
			// upstream with the retry).
			if r, handled := p.resume(ctx, e, state); handled {
				return r, nil
			}
		}
	}
	entry, err := p.entry(ctx, m)
	if err != nil {
		return nil, err
	}
	switch e.Method {
	case "server/discover":
		return &Reply{JSON: p.discover(e, entry)}, nil
	case "subscriptions/listen":
		return p.listen(ctx, e, entry)
	}
	return p.call(ctx, e, m, entry, true)
}

// unsupported is the revision's -32022 error listing the session-era
// versions served.
func (p *sessionPool) unsupported(e envelope, requested string) []byte {
	supported := make([]string, 0, len(p.cfg.Versions))
	for i := len(p.cfg.Versions) - 1; i >= 0; i-- {
		supported = append(supported, p.cfg.Versions[i])
	}
	data, _ := json.Marshal(map[string]any{"supported": supported, "requested": requested})
	return jsonrpc.AppendError(nil, e.ID, -32022,
		"protocol version "+requested+" is not offered over this upstream: initialize a session", data)
}

// discover builds a DiscoverResult from the pooled session's initialize.
func (p *sessionPool) discover(e envelope, entry *poolEntry) []byte {
	var init struct {
		Capabilities json.RawMessage `json:"capabilities"`
		ServerInfo   json.RawMessage `json:"serverInfo"`
		Instructions string          `json:"instructions"`
	}
	_ = json.Unmarshal(entry.init, &init)
	if len(init.Capabilities) == 0 {
		init.Capabilities = json.RawMessage(`{}`)
	}
	var versions []string
	if p.cfg.AdvertiseStateless {
		versions = append(versions, StatelessVersion)
	}
	for i := len(p.cfg.Versions) - 1; i >= 0; i-- {
		versions = append(versions, p.cfg.Versions[i]) // newest first
	}
	vb, _ := json.Marshal(versions)
	res := map[string]json.RawMessage{
		"resultType":        quoteJSON("complete"),
		"supportedVersions": vb,
		"capabilities":      init.Capabilities,
		"ttlMs":             json.RawMessage(`0`),
		"cacheScope":        quoteJSON("public"),
	}
	if init.Instructions != "" {
		res["instructions"] = quoteJSON(init.Instructions)
	}
	if len(init.ServerInfo) > 0 {
		meta, _ := json.Marshal(map[string]json.RawMessage{MetaServerInfo: init.ServerInfo})
		res["_meta"] = meta
	}
	b, _ := json.Marshal(res)
	return (&envelope{ID: e.ID, Result: b}).encode()
}

// call forwards a request on the pooled session and adapts its answer.
func (p *sessionPool) call(ctx context.Context, e envelope, m statelessMeta, entry *poolEntry, retryGone bool) (*Reply, error) {
	entry.mu.Lock()
	entry.next++
	up := counterID("s", entry.next)
	entry.mu.Unlock()
	params := withoutStatelessMeta(e.Params)
	token, hasToken := jsonrpc.Lookup(e.Params, "_meta", "progressToken")
	if hasToken {
		// The pooled session is shared: the client's token (often its
		// request id, which every stateless client numbers alike) goes
		// upstream as the upstream id, unique in the session (PROTOCOL.md
		// section 3, rule 3), and comes back as the client's.
		params = withMeta(params, map[string]json.RawMessage{"progressToken": up})
	}
	fwd := envelope{ID: up, Method: e.Method, Params: params}
	r, err := entry.s.Send(ctx, fwd.encode())
	if errors.Is(err, ErrSessionGone) && retryGone {
		// The upstream lost the pooled session: open another, once.
		p.drop(entry)
		p.retire(entry)
		if entry, err = p.entry(ctx, m); err != nil {
			return nil, err
		}
		return p.call(ctx, e, m, entry, false)
	}
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			if se.Body != nil {
				se.Body = mapID(se.Body, up, e.ID)
			} else if se.Status == 400 && !standardMethods[e.Method] {
				// A session-era server refuses a method it does not know
				// with a plain 400; the revision says method not found.
				return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeMethodNotFound, "Method not found: "+e.Method)}, nil
			}
		}
		return nil, err
	}
	pc := &poolCall{p: p, entry: entry, clientID: e.ID, upID: up, logLevel: m.LogLevel, req: e}
	if hasToken {
		pc.token = token
	}
	switch {
	case r.JSON != nil:
		return &Reply{JSON: completeResult(mapID(r.JSON, up, e.ID))}, nil
	case r.Stream != nil:
		pc.rd = newUpReader(r.Stream)
		return pc.start(ctx)
	}
	return nil, fmt.Errorf("%w: the upstream accepted a request without answering it", ErrUnavailable)
}

// standardMethods are the requests a client sends to a server in the
// revisions the gateway serves.
var standardMethods = map[string]bool{
	"tools/list": true, "tools/call": true, "prompts/list": true, "prompts/get": true,
	"resources/list": true, "resources/read": true, "resources/templates/list": true,
	"completion/complete": true, "server/discover": true, "subscriptions/listen": true,
}

// withoutStatelessMeta removes the revision's _meta keys (a session-era
// server refuses a request claiming another version); the rest of _meta (a
// progress token) stays.
func withoutStatelessMeta(params json.RawMessage) json.RawMessage {
	raw, ok := jsonrpc.Lookup(params, "_meta")
	if !ok {
		return params
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return params
	}
	for _, k := range []string{MetaProtocolVersion, MetaClientCapabilities, MetaClientInfo, MetaLogLevel} {
		delete(m, k)
	}
	if len(m) == 0 {
		return setParam(params, "_meta", nil)
	}
	b, _ := json.Marshal(m)
	return setParam(params, "_meta", b)
}

// mapID replaces a response's id up by id.
func mapID(msg []byte, up, id json.RawMessage) []byte {
	e, ok := decodeEnvelope(msg)
	if !ok || string(e.ID) != string(up) {
		return msg
	}
	e.ID = id
	return e.encode()
}

// completeResult adds resultType "complete" to a result (an error passes).
func completeResult(msg []byte) []byte {
	e, ok := decodeEnvelope(msg)
	if !ok || e.Result == nil || resultType(e.Result) != "" {
		return msg
	}
	kind := "complete"
	if _, asks := jsonrpc.Lookup(e.Result, "inputRequests"); asks {
		// A tool that answers in the revision's own terms (its handler
		// returned input requests): the client retries with its requestState.
		kind = "input_required"
	}
	e.Result = setParam(e.Result, "resultType", quoteJSON(kind))
	return e.encode()
}

// upReader reads an upstream answer stream on a goroutine of its own, so
// the pool can wait for a message with a deadline (gathering the server
// requests of one input round). The goroutine is owned by the call: it
// ends when the stream fails or closes, or when stop is called.
type upReader struct {
	stream Stream
	ch     chan readResult
	done   chan struct{}
	once   sync.Once
	back   []byte // a message put back by the consumer (its one goroutine)
	failed error  // the stream's end, read and kept by the consumer (its one goroutine)
	// finished: done was closed by finish (the call was answered), so
	// the reader reads the stream to its end and closes it itself.
	finished atomic.Bool
}

type readResult struct {
	msg []byte
	err error
}

func newUpReader(s Stream) *upReader {
	r := &upReader{stream: s, ch: make(chan readResult, 16), done: make(chan struct{})}
	go r.run()
	return r
}

func (r *upReader) run() {
	defer func() {
		if r.finished.Load() {
			_ = r.stream.Close()
		}
	}()
	for {
		select {
		case <-r.done:
			if r.finished.Load() {
				Drain(r.stream)
			}
			return
		default:
		}
		m, err := r.stream.Next()
		var res readResult
		if err != nil {
			res.err = err
		} else {
			res.msg = append([]byte(nil), m...)
		}
		select {
		case r.ch <- res:
		case <-r.done:
			if err == nil && r.finished.Load() {
				Drain(r.stream)
			}
			return
		}
		if err != nil {
			return
		}
	}
}

// next returns the next message, or (nil, nil) if none came within wait
// (wait < 0: no limit).
func (r *upReader) next(ctx context.Context, wait time.Duration) ([]byte, error) {
	if r.back != nil {
		m := r.back
		r.back = nil
		return m, nil
	}
	if r.failed != nil {
		return nil, r.failed
	}
	var timeout <-chan time.Time
	if wait >= 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case res := <-r.ch:
		return res.msg, res.err
	case <-timeout:
		return nil, nil
	case <-r.done:
		return nil, io.ErrClosedPipe
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// finish ends the reader of an answered call: the reader goroutine reads
// what is left of the stream (Drain: the upstream ends it right after the
// response) and closes it, so an HTTP connection goes back to the pool
// instead of being closed with the stream's end still on its way.
func (r *upReader) finish() {
	r.once.Do(func() {
		r.finished.Store(true)
		close(r.done)
	})
}

// stop closes the stream and ends the reader.
func (r *upReader) stop() error {
	r.once.Do(func() { close(r.done) })
	return r.stream.Close()
}

// gatherWindow is how long the pool waits, after a server request, for more
// requests of the same input round (a server asks for several at once).
const gatherWindow = 25 * time.Millisecond

// poolCall is one stateless request's answer from a pooled session.
type poolCall struct {
	p        *sessionPool
	entry    *poolEntry
	req      envelope
	clientID json.RawMessage
	upID     json.RawMessage // also the progress token upstream, if the client sent one
	token    json.RawMessage // the client's progress token (nil: none)
	logLevel string
	rd       *upReader

	first  []byte // a message read by start, handed out first
	mu     sync.Mutex
	done   bool // the response (or an input_required hand-off) went out
	parked bool // handed to a parkedCall: Close must not cancel it
	closed bool
}

// start reads the answer's first message: a final response or an input
// round is answered as JSON (so an error gets its HTTP status), anything
// else starts a stream.
func (c *poolCall) start(ctx context.Context) (*Reply, error) {
	for {
		msg, err := c.rd.next(ctx, -1)
		if err != nil {
			if ctx.Err() != nil {
				// The request ended first (its client gone, or the
				// upstream timeout): a session-era server takes a closed
				// stream for no cancellation.
				_ = c.cancelUpstream("the request ended before the upstream answered")
			} else {
				_ = c.rd.stop()
			}
			return nil, fmt.Errorf("%w: upstream answer ended before its response: %v", ErrUnavailable, err)
		}
		out, final, keep := c.handle(ctx, msg)
		switch {
		case final:
			return &Reply{JSON: out}, nil
		case keep:
			c.first = out
			return &Reply{Stream: c}, nil
		}
	}
}

// handle looks at one upstream message: final says it ends the answer
// (the response, or an input_required hand-off), keep that it is passed
// on, neither that it is dropped.
func (c *poolCall) handle(ctx context.Context, msg []byte) (out []byte, final, keep bool) {
	e, ok := decodeEnvelope(msg)
	if !ok {
		return nil, false, false
	}
	switch {
	case e.isResponse() && string(e.ID) == string(c.upID):
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
		c.rd.finish() // read to its end, so the connection is pooled
		e.ID = c.clientID
		return completeResult(e.encode()), true, false
	case e.isRequest():
		return c.handOff(ctx, e), true, false
	case e.Method == "notifications/progress":
		tok, _ := jsonrpc.Lookup(e.Params, "progressToken")
		if c.token == nil || string(tok) != string(c.upID) {
			return nil, false, false // not this request's progress (or it asked for none)
		}
		e.Params = setParam(e.Params, "progressToken", c.token)
		return e.encode(), false, true
	case e.Method == "notifications/message":
		var lp struct {
			Level string `json:"level"`
		}
		_ = json.Unmarshal(e.Params, &lp)
		if c.logLevel == "" || logRank(lp.Level) < logRank(c.logLevel) {
			return nil, false, false // logs only for requests that asked, at or above their level
		}
		return msg, false, true
	case e.isNotification():
		return msg, false, true
	}
	return nil, false, false
}

// Next yields the call's messages under the client's ids; a server
// request becomes an input_required result that ends this answer.
func (c *poolCall) Next() ([]byte, error) {
	if c.first != nil {
		m := c.first
		c.first = nil
		return m, nil
	}
	for {
		c.mu.Lock()
		done := c.done || c.closed
		c.mu.Unlock()
		if done {
			return nil, io.EOF
		}
		msg, err := c.rd.next(context.Background(), -1)
		if err != nil {
			return nil, err
		}
		if out, final, keep := c.handle(context.Background(), msg); final || keep {
			return out, nil
		}
	}
}

// handOff parks the upstream call and answers the client with an
// input_required result for the server's request and the others of the
// same round (those arriving within gatherWindow).
func (c *poolCall) handOff(ctx context.Context, first envelope) []byte {
	reqs := []envelope{first}
	for {
		msg, err := c.rd.next(ctx, gatherWindow)
		if err != nil && ctx.Err() == nil {
			// The stream ended (or broke) after the round: the retry
			// learns it at once instead of waiting out its request.
			c.rd.failed = err
		}
		if err != nil || msg == nil {
			break
		}
		if e, ok := decodeEnvelope(msg); ok && e.isRequest() {
			reqs = append(reqs, e)
			continue
		}
		c.rd.back = msg // something else: it is read after the round
		break
	}
	state := randomToken()
	pc := &parkedCall{call: c, owner: c.entry.owner, serverIDs: map[string]json.RawMessage{}}
	in := map[string]any{}
	for i, r := range reqs {
		key := fmt.Sprintf("r%d", i+1)
		pc.serverIDs[key] = r.ID
		in[key] = map[string]json.RawMessage{"method": quoteJSON(r.Method), "params": orEmpty(r.Params)}
	}
	c.p.mu.Lock()
	if len(c.p.parked) >= maxParked {
		c.p.mu.Unlock()
		_ = c.Close()
		return errorResponse(c.clientID, jsonrpc.CodeInternalError, "too many requests are waiting for input")
	}
	c.p.parked[state] = pc
	pc.timer = time.AfterFunc(c.p.cfg.InputTimeout, func() { c.p.expire(state, pc) })
	c.p.mu.Unlock()
	c.mu.Lock()
	c.done, c.parked = true, true
	c.mu.Unlock()
	ib, _ := json.Marshal(in)
	res, _ := json.Marshal(map[string]json.RawMessage{
		"resultType":    quoteJSON("input_required"),
		"inputRequests": ib,
		"requestState":  quoteJSON(state),
	})
	return (&envelope{ID: c.clientID, Result: res}).encode()
}

func orEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage(`{}`)
	}
	return raw
}

// Close ends the answer. Before its response it is the client's
// cancellation: notifications/cancelled goes upstream. A parked call stays.
func (c *poolCall) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	done, parked := c.done, c.parked
	c.mu.Unlock()
	if parked {
		return nil
	}
	if !done {
		return c.cancelUpstream("the client closed its stream")
	}
	c.rd.finish()
	return nil
}

// cancelUpstream ends an unanswered upstream call: notifications/cancelled
// goes upstream (closing its stream is no cancellation to a session-era
// server) and the reader stops.
func (c *poolCall) cancelUpstream(reason string) error {
	n := fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%s,"reason":%s}}`, c.upID, quoteJSON(reason))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if r, err := c.entry.s.Send(ctx, []byte(n)); err == nil && r.Stream != nil {
		_ = r.Stream.Close()
	}
	cancel()
	return c.rd.stop()
}

// expire forgets a parked call whose client did not retry within
// InputTimeout and cancels it upstream: the server's call, waiting for
// answers that will never come, must not hold its pooled session (and the
// stream the gateway reads) for good.
func (p *sessionPool) expire(state string, pc *parkedCall) {
	p.mu.Lock()
	mine := p.parked[state] == pc
	if mine {
		delete(p.parked, state)
	}
	p.mu.Unlock()
	if mine {
		_ = pc.call.cancelUpstream("the client did not answer the server's requests in time")
	}
}

// parkedCall is an upstream call waiting for the client's input.
type parkedCall struct {
	call      *poolCall
	owner     owner                      // the owner of the call's pooled session: only it may continue the call
	serverIDs map[string]json.RawMessage // input key -> the server request's id
	timer     *time.Timer                // expires the call after InputTimeout (expire)
}

// resume continues a parked call with the client's retry: the input
// responses go upstream as answers to the server's requests, and the
// client's new answer continues the upstream call.
func (p *sessionPool) resume(ctx context.Context, e envelope, state string) (*Reply, bool) {
	who := p.ownerOf(ctx)
	p.mu.Lock()
	pc := p.parked[state]
	if pc != nil && pc.owner != who {
		// Another client's call (another principal or forwarded
		// credential): its inputs must not reach that call, nor its
		// answer this client. The state is unknown to this client, and
		// the call keeps waiting for its own.
		pc = nil
	}
	if pc != nil {
		delete(p.parked, state)
		pc.timer.Stop()
	}
	p.mu.Unlock()
	if pc == nil {
		return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeInvalidParams, "Invalid params: unknown or expired requestState")}, true
	}
	var responses map[string]json.RawMessage
	if raw, ok := jsonrpc.Lookup(e.Params, "inputResponses"); ok {
		_ = json.Unmarshal(raw, &responses)
	}
	for key, id := range pc.serverIDs {
		res, ok := responses[key]
		var msg []byte
		if ok {
			msg = (&envelope{ID: id, Result: res}).encode()
		} else {
			msg = errorResponse(id, jsonrpc.CodeInvalidParams, "the client gave no input")
		}
		if r, err := pc.call.entry.s.Send(ctx, msg); err == nil && r.Stream != nil {
			_ = r.Stream.Close()
		}
	}
	var m statelessMeta
	if raw, ok := jsonrpc.Lookup(e.Params, "_meta"); ok {
		_ = json.Unmarshal(raw, &m)
	}
	next := &poolCall{p: p, entry: pc.call.entry, req: e, clientID: e.ID, upID: pc.call.upID, logLevel: m.LogLevel, rd: pc.call.rd}
	if pc.call.token != nil {
		// The upstream call goes on under its first token: its progress
		// reaches the retry under the retry's own token, if it has one.
		next.token, _ = jsonrpc.Lookup(e.Params, "_meta", "progressToken")
	}
	r, err := next.start(ctx)
	if err != nil {
		return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeInternalError, err.Error())}, true
	}
	return r, true
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("mcpgate-%x", b[:])
}

// listen serves subscriptions/listen from the pooled session's standalone
// stream.
func (p *sessionPool) listen(ctx context.Context, e envelope, entry *poolEntry) (*Reply, error) {
	var params struct {
		Notifications struct {
			Tools     bool     `json:"toolsListChanged"`
			Prompts   bool     `json:"promptsListChanged"`
			Resources bool     `json:"resourcesListChanged"`
			URIs      []string `json:"resourceSubscriptions"`
		} `json:"notifications"`
	}
	_ = json.Unmarshal(e.Params, &params)
	n := params.Notifications
	// Only what the pooled session can deliver is honoured, and the
	// acknowledgement says so (PROTOCOL.md section 2, rule 45).
	offers := func(kind, feature string) bool {
		raw, ok := jsonrpc.Lookup(entry.init, "capabilities", kind, feature)
		return ok && string(raw) == "true"
	}
	n.Tools = n.Tools && offers("tools", "listChanged")
	n.Prompts = n.Prompts && offers("prompts", "listChanged")
	n.Resources = n.Resources && offers("resources", "listChanged")
	if !offers("resources", "subscribe") {
		n.URIs = nil
	}
	entry.mu.Lock()
	if entry.fan == nil {
		entry.fan = newFanout(entry.s, p.cfg)
	}
	f := entry.fan
	entry.mu.Unlock()
	sub := &listenSub{id: e.ID, tools: n.Tools, prompts: n.Prompts, resources: n.Resources, uris: map[string]bool{}, ch: make(chan []byte, 64), done: make(chan struct{}), fan: f}
	for _, u := range n.URIs {
		sub.uris[u] = true
	}
	fresh, dropped, ok := f.reserve(sub.uris)
	if !ok {
		return &Reply{JSON: errorResponse(e.ID, jsonrpc.CodeInvalidParams,
			"Invalid params: resourceSubscriptions would pass the gateway's limit of "+strconv.Itoa(maxSubscribedURIs)+" resources")}, nil
	}
	for _, u := range dropped {
		f.request(ctx, "resources/unsubscribe", "mcpgate-unsub-", u)
	}
	for _, u := range fresh {
		f.request(ctx, "resources/subscribe", "mcpgate-sub-", u)
	}
	ack := map[string]any{}
	if n.Tools {
		ack["toolsListChanged"] = true
	}
	if n.Prompts {
		ack["promptsListChanged"] = true
	}
	if n.Resources {
		ack["resourcesListChanged"] = true
	}
	if len(n.URIs) > 0 {
		ack["resourceSubscriptions"] = n.URIs
	}
	ab, _ := json.Marshal(map[string]any{"notifications": ack, "_meta": map[string]json.RawMessage{MetaSubscriptionID: e.ID}})
	sub.first = (&envelope{Method: "notifications/subscriptions/acknowledged", Params: ab}).encode()
	f.add(sub)
	return &Reply{Stream: sub}, nil
}

// fanout reads a pooled session's standalone stream and hands its list
// changes and resource updates to the listen subscribers.
type fanout struct {
	s    Session
	cfg  BridgeConfig
	mu   sync.Mutex
	subs map[*listenSub]bool
	// uris are the resources subscribed to upstream, each with the number
	// of listens (added or being added) that name it; one at 0 stays
	// subscribed until room is needed (reserve).
	uris map[string]int
	up   Stream
	stop func()
	// gone: the pooled session is gone (its standalone stream cannot be
	// reopened): subscribers end, and new ones end at once.
	gone bool
}

func newFanout(s Session, cfg BridgeConfig) *fanout {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fanout{s: s, cfg: cfg, subs: map[*listenSub]bool{}, uris: map[string]int{}}
	done := make(chan struct{})
	f.stop = func() {
		cancel()
		f.mu.Lock()
		up := f.up
		subs := f.subs
		f.subs = map[*listenSub]bool{}
		f.mu.Unlock()
		if up != nil {
			_ = up.Close()
		}
		<-done
		for sub := range subs {
			sub.end()
		}
	}
	go func() { // owned by the pooled session: stop ends it and waits
		defer close(done)
		f.run(ctx)
	}()
	return f
}

func (f *fanout) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs) == 0
}

func (f *fanout) add(sub *listenSub) {
	f.mu.Lock()
	if f.gone {
		f.mu.Unlock()
		sub.end()
		return
	}
	f.subs[sub] = true
	f.mu.Unlock()
}

// endAll ends every subscriber, now and to come: the session is gone.
func (f *fanout) endAll() {
	f.mu.Lock()
	f.gone = true
	subs := f.subs
	f.subs = map[*listenSub]bool{}
	f.mu.Unlock()
	for sub := range subs {
		sub.end()
	}
}

func (f *fanout) remove(sub *listenSub) {
	f.mu.Lock()
	if f.subs[sub] {
		delete(f.subs, sub)
		for u := range sub.uris {
			f.uris[u]--
		}
	}
	f.mu.Unlock()
}

// reserve counts a listen naming uris among the holders of each and
// returns those not subscribed to upstream yet, to subscribe to. Past
// maxSubscribedURIs, resources no listen names any more make room: they
// are returned in dropped, to unsubscribe from. ok is false, nothing
// recorded, when even that leaves no room: one client's listens cannot
// hold the pooled session's subscriptions for good.
func (f *fanout) reserve(uris map[string]bool) (fresh, dropped []string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for u := range uris {
		if _, held := f.uris[u]; !held {
			fresh = append(fresh, u)
		}
	}
	if over := len(f.uris) + len(fresh) - maxSubscribedURIs; over > 0 {
		for u, n := range f.uris {
			if n == 0 && len(dropped) < over {
				dropped = append(dropped, u)
			}
		}
		if len(dropped) < over {
			return nil, nil, false
		}
		for _, u := range dropped {
			delete(f.uris, u)
		}
	}
	for u := range uris {
		f.uris[u]++
	}
	return fresh, dropped, true
}

// request sends the pooled session a resources/subscribe or unsubscribe
// for uri, under an id of its own.
func (f *fanout) request(ctx context.Context, method, idPrefix, uri string) {
	params, _ := json.Marshal(map[string]string{"uri": uri})
	req := (&envelope{ID: quoteJSON(idPrefix + uri), Method: method, Params: params}).encode()
	if r, err := f.s.Send(ctx, req); err == nil && r.Stream != nil {
		_ = r.Stream.Close()
	}
}

// run reads the standalone stream until stopped, reopening it with backoff.
func (f *fanout) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		up, err := f.s.Listen(ctx)
		if err != nil {
			if errors.Is(err, ErrSessionGone) {
				f.endAll()
				return
			}
			if errors.Is(err, ErrNotSupported) {
				return
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		f.mu.Lock()
		if ctx.Err() != nil {
			// stop ran meanwhile and did not see this stream: it waits for
			// this goroutine, which must not go on reading it.
			f.mu.Unlock()
			_ = up.Close()
			return
		}
		f.up = up
		f.mu.Unlock()
		for {
			msg, err := up.Next()
			if err != nil {
				break
			}
			backoff = 100 * time.Millisecond
			f.deliver(msg)
		}
		_ = up.Close()
	}
}

func (f *fanout) deliver(msg []byte) {
	e, ok := decodeEnvelope(msg)
	if !ok || !e.isNotification() {
		return
	}
	var uri string
	if e.Method == "notifications/resources/updated" {
		var p struct {
			URI string `json:"uri"`
		}
		_ = json.Unmarshal(e.Params, &p)
		uri = p.URI
	}
	f.mu.Lock()
	subs := make([]*listenSub, 0, len(f.subs))
	for s := range f.subs {
		subs = append(subs, s)
	}
	f.mu.Unlock()
	for _, s := range subs {
		if !s.wants(e.Method, uri) {
			continue
		}
		tagged := e
		tagged.Params = withMeta(e.Params, map[string]json.RawMessage{MetaSubscriptionID: s.id})
		select {
		case s.ch <- tagged.encode():
		default: // a subscriber that does not read loses updates, counted by its ring downstream
		}
	}
}

// listenSub is one subscriptions/listen stream.
type listenSub struct {
	id                        json.RawMessage
	tools, prompts, resources bool
	uris                      map[string]bool
	first                     []byte
	ch                        chan []byte
	done                      chan struct{}
	once                      sync.Once
	fan                       *fanout
	closed                    atomic.Bool // Close was called: the reader is done
	completed                 bool        // the complete response was read (the reader's)
}

func (s *listenSub) wants(method, uri string) bool {
	switch method {
	case "notifications/tools/list_changed":
		return s.tools
	case "notifications/prompts/list_changed":
		return s.prompts
	case "notifications/resources/list_changed":
		return s.resources
	case "notifications/resources/updated":
		return s.uris[uri]
	}
	return false
}

func (s *listenSub) end() { s.once.Do(func() { close(s.done) }) }

func (s *listenSub) Next() ([]byte, error) {
	if s.first != nil {
		m := s.first
		s.first = nil
		return m, nil
	}
	select {
	case m := <-s.ch:
		return m, nil
	case <-s.done:
		if s.closed.Load() || s.completed {
			return nil, io.EOF
		}
		// The gateway ended the subscription (its pooled session retired
		// or lost): a graceful end, the listen request's response (rule
		// 45); the client may listen again.
		s.completed = true
		return (&envelope{ID: s.id, Result: json.RawMessage(`{"resultType":"complete"}`)}).encode(), nil
	}
}

func (s *listenSub) Close() error {
	s.closed.Store(true)
	s.end()
	s.fan.remove(s)
	return nil
}
