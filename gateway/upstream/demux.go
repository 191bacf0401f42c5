package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// Defaults shared by the transports whose upstream speaks over one channel
// (stdio, legacy HTTP+SSE).
const (
	// DefaultStreamBuffer is how many messages a call stream or the
	// standalone stream buffers before the reader waits (must-deliver
	// messages) or drops (droppable ones).
	DefaultStreamBuffer = 256
	// streamBufferBytes bounds the bytes buffered per stream in the same
	// way; one message of any size is always accepted into an empty buffer.
	streamBufferBytes = 1 << 20
	// maxBadLogged bounds the unreadable upstream lines logged per session.
	maxBadLogged = 10
	// maxPendingAnswers bounds a session's answers being written upstream
	// by the transport itself (ping answers, refusals) at any one time.
	maxPendingAnswers = 8
)

// pendingAnswers sends the messages a transport answers itself (ping
// answers, refusals) each on a goroutine counted by a wait group its
// session waits for, so the reader that routed the request never waits for
// the upstream; at most maxPendingAnswers at a time, the rest dropped with
// a warning.
type pendingAnswers struct {
	n atomic.Int32
}

// send runs write(msg) on a goroutine counted by wg. The caller holds a
// count of wg itself, so wg.Add never races with its Wait.
func (a *pendingAnswers) send(wg *sync.WaitGroup, log *slog.Logger, msg []byte, write func([]byte) error) {
	if a.n.Add(1) > maxPendingAnswers {
		a.n.Add(-1)
		log.Warn("upstream answer dropped: too many pending", "message", preview(msg))
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer a.n.Add(-1)
		if err := write(msg); err != nil {
			log.Debug("upstream answer not sent", "err", err)
		}
	}()
}

var (
	// errReplaced ends a standalone stream that a newer Listen took over.
	errReplaced = errors.New("upstream: standalone stream taken over by a newer Listen")
	// errCancelled ends a call stream whose request the client cancelled.
	errCancelled = errors.New("upstream: request cancelled by the client")
)

// demux routes the messages an upstream sends on its one channel (a stdio
// child's stdout, a legacy HTTP+SSE stream) to the Streams the gateway
// reads. Routing rule, per message:
//
//  1. A response (or error) goes to the call stream waiting for its id
//     (ids are matched by value: 7, 7.0 and "7" are one id). A call stream
//     ends (io.EOF) right after the last response it waits for. A response
//     to no call in flight is dropped (Stats.Unroutable).
//  2. notifications/progress goes to the call stream whose request carried
//     its progressToken (params._meta.progressToken); progress for a token
//     no call in flight carries is dropped: it can only be late.
//  3. Notifications about the session rather than a call,
//     notifications/{tools,prompts,resources}/list_changed and
//     notifications/resources/updated, go to the standalone stream.
//  4. Everything else (server-to-client requests such as sampling,
//     elicitation and roots/list; notifications/message;
//     notifications/cancelled; any other notification) goes to the newest
//     call in flight: the call stream opened last whose response has not
//     arrived and which its reader has not closed. With no call in flight
//     it goes to the standalone stream.
//  5. A ping request is answered at once ({} result) through the answer
//     function and goes nowhere (PROTOCOL.md section 2, rule 35).
//
// A batch (a JSON array) is split and each message routed on its own; a
// line or event that is not JSON-RPC is dropped (Stats.Unroutable). When
// the client cancels a call (notifications/cancelled, see sendSplit), its
// stream ends with errCancelled once nothing else is owed: a server need
// not answer a cancelled request, and its reader must not wait forever.
//
// Buffering: each stream holds up to DefaultStreamBuffer messages (and
// streamBufferBytes). When a call stream, or the standalone stream while
// someone listens, is full, a droppable message (a notification other than
// notifications/cancelled) is dropped and counted, and a must-deliver one
// (a response, a request, a cancellation) makes route wait for room, so
// the upstream's channel is not read meanwhile (backpressure, as TCP gives
// an HTTP upstream). While nobody listens, the full standalone stream drops
// its oldest droppable message (else its oldest) to take a new one; a
// server-to-client request dropped that way, or one that nobody can take,
// is answered upstream with an error, so the server does not wait forever.
//
// Concurrency: route is called by one goroutine, the channel's reader, and
// may block as described above (until room, or fail). The other methods
// and the streams' methods are safe for concurrent use; Stream.Next
// blocks, Stream.Close never does. mu guards every field below it and
// every msgStream's queue and state.
type demux struct {
	stats    *counters
	log      *slog.Logger
	maxQueue int
	// answer sends a message upstream on behalf of the transport (a ping
	// answer, a refusal). It must not block route for long: transports
	// hand the write to a goroutine of their own.
	answer func(msg []byte)

	parser jsonrpc.Parser // owned by route's caller
	// badLogged counts the unreadable lines logged (owned by route's
	// caller): a child printing its logs to stdout must not flood the
	// gateway's log, so only the first maxBadLogged are.
	badLogged int

	mu         sync.Mutex
	calls      map[string]*msgStream // call streams by the id of a request they wait for
	tokens     map[string]*msgStream // call streams by progress token
	inflight   []*msgStream          // unanswered, unclosed call streams, oldest first
	standalone msgQueue
	listener   *msgStream // the standalone stream's reader, if any
	err        error      // set by fail: every stream ends with it
	done       chan struct{}
}

func newDemux(stats *counters, log *slog.Logger, maxQueue int, answer func([]byte)) *demux {
	d := &demux{
		stats:    stats,
		log:      log,
		maxQueue: maxQueue,
		answer:   answer,
		calls:    make(map[string]*msgStream, 2),
		tokens:   make(map[string]*msgStream),
		done:     make(chan struct{}),
	}
	d.standalone.room = make(chan struct{}, 1)
	return d
}

// msgQueue is a FIFO of messages; its fields are guarded by demux.mu.
type msgQueue struct {
	items []queued
	head  int
	bytes int
	// room is signalled (without blocking) when an item leaves or the
	// reader goes away: route may be waiting for it.
	room chan struct{}
	// end is returned by Next once items are drained: io.EOF for an
	// answered call, the session's error after fail.
	end error
}

type queued struct {
	msg  []byte
	must bool
}

func (q *msgQueue) len() int { return len(q.items) - q.head }

func (q *msgQueue) full(max int) bool {
	n := q.len()
	return n > 0 && (n >= max || q.bytes >= streamBufferBytes)
}

func (q *msgQueue) push(msg []byte, must bool) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, queued{msg: msg, must: must})
	q.bytes += len(msg)
}

func (q *msgQueue) pop() (queued, bool) {
	if q.head == len(q.items) {
		return queued{}, false
	}
	it := q.items[q.head]
	q.items[q.head] = queued{}
	q.head++
	q.bytes -= len(it.msg)
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return it, true
}

// evict removes the oldest droppable item, or else the oldest one, and
// returns it.
func (q *msgQueue) evict() queued {
	victim := q.head
	for i := q.head; i < len(q.items); i++ {
		if !q.items[i].must {
			victim = i
			break
		}
	}
	it := q.items[victim]
	copy(q.items[victim:], q.items[victim+1:])
	q.items[len(q.items)-1] = queued{}
	q.items = q.items[:len(q.items)-1]
	q.bytes -= len(it.msg)
	return it
}

func (q *msgQueue) clear() {
	clear(q.items)
	q.items, q.head, q.bytes = q.items[:0], 0, 0
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// msgStream is a call stream (the messages of one forwarded request or
// batch, ending after its responses) or a reader of the standalone stream.
// It implements Stream.
type msgStream struct {
	d          *demux
	standalone bool
	// ready is signalled (without blocking) when Next may have something
	// new: a message, the end, a Close, a takeover.
	ready chan struct{}

	// Guarded by d.mu.
	q       msgQueue // call streams only; readers of the standalone use d.standalone
	ids     []string // call: keys of the requests not yet answered
	tokens  []string // call: progress tokens of its requests
	closed  bool
	retired bool // standalone: a newer Listen took over
}

var _ Stream = (*msgStream)(nil)

func (s *msgStream) queue() *msgQueue {
	if s.standalone {
		return &s.d.standalone
	}
	return &s.q
}

// Next returns the next message, io.EOF after a call's last response, the
// session's error when it ended, or io.ErrClosedPipe after Close. The bytes
// are the caller's.
func (s *msgStream) Next() ([]byte, error) {
	for {
		if msg, err, done := s.tryNext(); done {
			return msg, err
		}
		<-s.ready
	}
}

// tryNext is Next without waiting: done is false when nothing is there yet.
func (s *msgStream) tryNext() (msg []byte, err error, done bool) {
	d := s.d
	d.mu.Lock()
	switch {
	case s.closed:
		d.mu.Unlock()
		return nil, io.ErrClosedPipe, true
	case s.retired:
		d.mu.Unlock()
		return nil, errReplaced, true
	}
	q := s.queue()
	if it, ok := q.pop(); ok {
		room := q.room
		d.mu.Unlock()
		notify(room)
		return it.msg, nil, true
	}
	if q.end != nil {
		err := q.end
		d.mu.Unlock()
		return nil, err, true
	}
	d.mu.Unlock()
	return nil, nil, false
}

// Close stops the stream: a call stream leaves the routing tables (its
// late messages are dropped), a standalone reader stops listening (the
// standalone stream buffers again). Idempotent; wakes a blocked Next.
func (s *msgStream) Close() error {
	d := s.d
	d.mu.Lock()
	if s.closed {
		d.mu.Unlock()
		return nil
	}
	s.closed = true
	q := s.queue()
	if s.standalone {
		if d.listener == s {
			d.listener = nil
		}
	} else {
		d.unregisterLocked(s)
		q.clear()
	}
	room := q.room
	d.mu.Unlock()
	notify(s.ready)
	notify(room) // route may be waiting for this queue
	return nil
}

// IDKey is the routing key of a JSON-RPC id or progress token (raw JSON):
// an integer in any JSON spelling, or a string of its digits, keys as the
// integer, the way the gateway reads the ids it gave (parseUpID); any other
// string keys by its value, anything else by its bytes.
func IDKey(raw []byte) string {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		if v, err := strconv.ParseUint(string(raw[1:len(raw)-1]), 10, 64); err == nil {
			return "#" + strconv.FormatUint(v, 10)
		}
		if s, ok := jsonrpc.Unquote(raw); ok {
			return "s" + s
		}
		return "r" + string(raw)
	}
	if v, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
		return "#" + strconv.FormatUint(v, 10)
	}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil && f >= 0 && f <= 1<<53 && f == float64(uint64(f)) {
		return "#" + strconv.FormatUint(uint64(f), 10)
	}
	return "r" + string(raw)
}

// openCall registers a call stream for requests with the given raw ids and
// progress tokens (nil entries are skipped). It fails when the session
// ended or an id is already in flight.
func (d *demux) openCall(ids, tokens [][]byte) (*msgStream, error) {
	s := &msgStream{d: d, ready: make(chan struct{}, 1)}
	s.q.room = make(chan struct{}, 1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	for _, id := range ids {
		k := IDKey(id)
		if _, dup := d.calls[k]; dup || slices.Contains(s.ids, k) {
			return nil, fmt.Errorf("upstream: request id %s already in flight", id)
		}
		s.ids = append(s.ids, k)
	}
	for _, id := range s.ids {
		d.calls[id] = s
	}
	for _, tok := range tokens {
		if tok != nil {
			k := IDKey(tok)
			s.tokens = append(s.tokens, k)
			d.tokens[k] = s
		}
	}
	d.inflight = append(d.inflight, s)
	return s, nil
}

// unregisterLocked removes a call stream from the routing tables.
func (d *demux) unregisterLocked(s *msgStream) {
	for _, k := range s.ids {
		if d.calls[k] == s {
			delete(d.calls, k)
		}
	}
	s.ids = nil
	d.dropTokensLocked(s)
	if i := slices.Index(d.inflight, s); i >= 0 {
		d.inflight = slices.Delete(d.inflight, i, i+1)
	}
}

func (d *demux) dropTokensLocked(s *msgStream) {
	for _, k := range s.tokens {
		if d.tokens[k] == s {
			delete(d.tokens, k)
		}
	}
	s.tokens = nil
}

// cancelCall stops waiting for the response to the request with raw id
// (the client sent notifications/cancelled for it, and a server need not
// answer a cancelled request): its call stream ends with errCancelled once
// nothing else is owed, so its reader is not left waiting forever. A
// response that still comes is dropped as late.
func (d *demux) cancelCall(id []byte) {
	key := IDKey(id)
	d.mu.Lock()
	s := d.calls[key]
	if s == nil {
		d.mu.Unlock()
		return
	}
	delete(d.calls, key)
	if i := slices.Index(s.ids, key); i >= 0 {
		s.ids = slices.Delete(s.ids, i, i+1)
	}
	if len(s.ids) > 0 {
		d.mu.Unlock()
		return
	}
	s.q.end = errCancelled
	d.unregisterLocked(s)
	d.mu.Unlock()
	notify(s.ready)
}

// listen returns a new reader of the standalone stream; a previous reader
// is retired (its Next returns errReplaced). Buffered messages go to the
// new reader.
func (d *demux) listen() (*msgStream, error) {
	s := &msgStream{d: d, standalone: true, ready: make(chan struct{}, 1)}
	d.mu.Lock()
	if d.err != nil && d.standalone.len() == 0 {
		err := d.err
		d.mu.Unlock()
		return nil, err
	}
	old := d.listener
	if old != nil {
		old.retired = true
	}
	d.listener = s
	d.mu.Unlock()
	if old != nil {
		notify(old.ready)
	}
	notify(s.ready)
	return s, nil
}

// fail ends the session's routing with err: call streams and the
// standalone stream return err once their buffered messages are read,
// openCall and listen refuse, route drops everything. The first error
// wins; fail reports whether it was this one. lost says the upstream side
// ended the session: the first error counts it (SessionsLost) before anyone
// is woken, so whoever sees err also sees the count.
func (d *demux) fail(err error, lost bool) bool {
	d.mu.Lock()
	if d.err != nil {
		d.mu.Unlock()
		return false
	}
	d.err = err
	if lost {
		d.stats.lost.Add(1)
	}
	close(d.done)
	wake := make([]chan struct{}, 0, len(d.inflight)+1)
	for _, s := range d.inflight {
		s.q.end = err
		s.ids, s.tokens = nil, nil
		wake = append(wake, s.ready)
	}
	clear(d.calls)
	clear(d.tokens)
	d.inflight = d.inflight[:0]
	d.standalone.end = err
	if d.listener != nil {
		wake = append(wake, d.listener.ready)
	}
	d.mu.Unlock()
	for _, c := range wake {
		notify(c)
	}
	return true
}

// failed returns the error fail set, or nil.
func (d *demux) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// route delivers one upstream line or event (a message or a batch).
func (d *demux) route(data []byte) {
	msgs, _, perr := d.parser.Parse(data)
	if perr != nil {
		d.stats.unroutable.Add(1)
		d.warnBad("upstream sent something that is not JSON-RPC: dropped", "err", perr.Message, "bytes", len(data), "start", preview(data))
		return
	}
	for i := range msgs {
		d.routeOne(&msgs[i])
	}
}

// warnBad logs a dropped upstream message, the first maxBadLogged of a
// session only.
func (d *demux) warnBad(msg string, args ...any) {
	if d.badLogged >= maxBadLogged {
		return
	}
	d.badLogged++
	if d.badLogged == maxBadLogged {
		args = append(args, "note", "the last one logged for this session; the rest are only counted (unroutable)")
	}
	d.log.Warn(msg, args...)
}

func preview(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// destination of one message.
type destination uint8

const (
	toNowhere    destination = iota // dropped
	toCall                          // a response: its call stream
	toProgress                      // progress: the call stream of its token
	toNewest                        // the newest call in flight, else the standalone stream
	toStandalone                    // the standalone stream
	toPing                          // answered by the transport
)

// destinationOf applies the routing rule's rules 1 to 5 to a message kind
// and method; must says whether it may never be dropped.
func destinationOf(m *jsonrpc.Message) (dest destination, must bool) {
	switch m.Kind {
	case jsonrpc.KindResponse, jsonrpc.KindError:
		if string(m.ID) == "null" {
			return toNowhere, true
		}
		return toCall, true
	case jsonrpc.KindRequest:
		if string(m.Method) == "ping" {
			return toPing, true
		}
		return toNewest, true
	}
	method := string(m.Method)
	switch {
	case method == "notifications/progress":
		return toProgress, false
	case method == "notifications/cancelled":
		return toNewest, true
	case method == "notifications/tools/list_changed", method == "notifications/prompts/list_changed",
		method == "notifications/resources/list_changed", method == "notifications/resources/updated":
		return toStandalone, false
	}
	return toNewest, false
}

// routeOne delivers one message, waiting for room if it must.
func (d *demux) routeOne(m *jsonrpc.Message) {
	dest, must := destinationOf(m)
	var key string
	switch dest {
	case toNowhere:
		d.stats.unroutable.Add(1)
		d.warnBad("upstream sent an error response with a null id: dropped", "message", preview(m.Raw))
		return
	case toPing:
		pong := append(append([]byte(`{"jsonrpc":"2.0","id":`), m.ID...), `,"result":{}}`...)
		d.answer(pong)
		return
	case toCall:
		key = IDKey(m.ID)
	case toProgress:
		if m.ProgressToken == nil {
			d.stats.unroutable.Add(1)
			return
		}
		key = IDKey(m.ProgressToken)
	}
	for {
		d.mu.Lock()
		if d.err != nil {
			d.mu.Unlock()
			return
		}
		var s *msgStream // nil: the standalone stream
		switch dest {
		case toCall:
			if s = d.calls[key]; s == nil {
				d.mu.Unlock()
				d.stats.unroutable.Add(1)
				d.log.Debug("upstream response to no call in flight: dropped", "id", string(m.ID))
				return
			}
		case toProgress:
			if s = d.tokens[key]; s == nil {
				d.mu.Unlock()
				d.stats.unroutable.Add(1)
				return
			}
		case toNewest:
			if n := len(d.inflight); n > 0 {
				s = d.inflight[n-1]
			}
		}
		q := &d.standalone
		if s != nil {
			q = &s.q
		}
		if q.full(d.maxQueue) {
			switch {
			case !must:
				d.mu.Unlock()
				if s == nil {
					d.stats.standaloneDropped.Add(1)
				} else {
					d.stats.streamDropped.Add(1)
				}
				return
			case s == nil && d.listener == nil:
				// Nobody listens: make room by dropping the oldest.
				victim := q.evict()
				d.stats.standaloneDropped.Add(1)
				if victim.must {
					d.refuseLater(victim.msg)
				}
			default:
				// Backpressure: wait until the reader takes one, goes
				// away, or the session ends.
				room := q.room
				d.mu.Unlock()
				select {
				case <-room:
				case <-d.done:
				}
				continue
			}
		}
		q.push(bytes.Clone(m.Raw), must)
		var ready chan struct{}
		switch {
		case s != nil:
			ready = s.ready
		case d.listener != nil:
			ready = d.listener.ready
		}
		if dest == toCall {
			delete(d.calls, key)
			if i := slices.Index(s.ids, key); i >= 0 {
				s.ids = slices.Delete(s.ids, i, i+1)
			}
			if len(s.ids) == 0 { // answered: later messages go elsewhere
				s.q.end = io.EOF
				d.unregisterLocked(s)
			}
		}
		d.mu.Unlock()
		if ready != nil {
			notify(ready)
		}
		return
	}
}

// refuseLater answers a server-to-client request that no stream can carry
// with an error, so the server does not wait for it forever. It is called
// with d.mu held and only hands the answer on.
func (d *demux) refuseLater(msg []byte) {
	var p jsonrpc.Parser
	msgs, batch, perr := p.Parse(msg)
	if perr != nil || batch || len(msgs) != 1 || msgs[0].Kind != jsonrpc.KindRequest {
		return
	}
	d.stats.refused.Add(1)
	d.answer(jsonrpc.AppendError(nil, msgs[0].ID, jsonrpc.CodeInternalError,
		"the gateway could not deliver this request: no client stream had room for it", nil))
}
