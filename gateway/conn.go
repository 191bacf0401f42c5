package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/mcpgate/mcpgate/gateway/rawsock"
	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// clientConn is one client connection attached to a stream: its socket, its
// clocks (last write for heartbeats, write stall, connection deadline) and
// its close reason, set once. A stream outlives its connections, and a new
// connection of the same stream replaces the old one (stream.attach), so
// everything that describes one connection lives here, never on the stream.
//
// The stream's bytes reach the client through one of two writers, both
// draining the ring with clientConn.fill:
//   - bodyWriter: a POST answer, streamed by fasthttp (SetBodyStream): the
//     connection goroutine calls Read and writes each result as one chunk,
//     so the connection stays reusable for the next request;
//   - hijackWriter: a GET stream on a connection taken over from fasthttp,
//     written by a Server-owned goroutine started on demand, so an idle
//     connected stream holds no goroutine and no I/O buffers; or, for the
//     standalone stream's own upstream events, by its pump's goroutine
//     while the socket takes the bytes at once (writerHold, runInline).
//
// The drain state (after, pending, frame, ...) belongs to the connection's
// one writer at a time; the atomics may be read and ended from anywhere.
//
// The fields an event touches come first (srv to shutdown, 144 bytes);
// hijackWriter puts its own before them, so that an event on a live stream
// reads three cache lines of its connection rather than five (its state is
// cold again by the next event, and each line is a miss).
type clientConn struct {
	srv *Server
	st  *stream
	w   connWriter

	// reason is the close reason + 1, 0 while the connection is open. It is
	// set once (compare-and-swap): by end for a cut from outside (replaced,
	// slow consumer, write stall), or by the writer when it ends the
	// connection itself (finished, deadline, shutdown, client gone).
	reason atomic.Uint32
	// drain asks the writer to end the connection with a retry hint (a
	// shutdown's paced drain, an admin shard drain): the close reason + 1,
	// 0 while not asked.
	drain atomic.Uint32
	// lastWrite is the coarse time of the last bytes handed to the client.
	lastWrite atomic.Int64
	// writeSince is when the writer last handed bytes to the socket (unix
	// ns), 0 while it has nothing in flight. A value that stays old means
	// the write is stuck (or, for a hijacked connection, that its writer
	// never started).
	writeSince atomic.Int64
	// deadline ends the connection at this time (unix ns) with a retry
	// hint, so the client polls (-stream-max-connection); 0 = never.
	deadline atomic.Int64

	after    uint64 // seq of the last event handed out
	pending  []byte // the rest of an event larger than one write buffer
	p        []byte // the write buffer while Next runs
	n        int    // bytes of p filled while Next runs
	limit    uint64 // the highest seq Next may hand out (stream.readLimit)
	legacy   bool   // the legacy framing (encodeLegacyEvent)
	plain    bool   // events without ids (the stateless revision: no resumption)
	eof      bool   // the writer decided to end after what is pending
	beat     bool   // a heartbeat is due
	shutdown bool   // the server is shutting down

	nc        net.Conn
	frame     []byte // scratch for an event larger than one write buffer
	closeOnce sync.Once
}

// connWriter is how a clientConn's bytes reach its client. Both methods
// may be called from any goroutine and never block.
type connWriter interface {
	// notify: the ring changed (an event was stored, or it closed).
	notify()
	// kick: look at the connection now (a heartbeat may be due, the
	// deadline passed, or it was ended).
	kick()
}

var heartbeatComment = sse.AppendComment(nil, "")

func (c *clientConn) init(srv *Server, st *stream, nc net.Conn, w connWriter, after uint64, prefix []byte) {
	c.srv, c.st, c.nc, c.w = srv, st, nc, w
	c.after = after
	c.pending = prefix
}

// Encode implements ringbuf.Encoder for Next: one event into the write
// buffer, in the connection's framing.
func (c *clientConn) Encode(seq uint64, data []byte) bool {
	if c.legacy {
		return c.encodeLegacyEvent(seq, data)
	}
	return c.encodeEvent(seq, data)
}

// setReason records why the connection ends, if nothing did before; it
// reports whether this call set it.
func (c *clientConn) setReason(r CloseReason) bool {
	return c.reason.CompareAndSwap(0, uint32(r)+1)
}

// closeReason is the recorded reason, or CloseClientGone if none was.
func (c *clientConn) closeReason() CloseReason {
	if r := c.reason.Load(); r != 0 {
		return CloseReason(r - 1)
	}
	return CloseClientGone
}

// end cuts the connection from outside (replaced by a newer one, slow
// consumer, stalled write): the socket is closed, so a blocked write
// fails, and the writer is woken to see the end. The stream stays
// resumable. Only the first end (or writer decision) counts.
func (c *clientConn) end(r CloseReason) {
	if !c.setReason(r) {
		return
	}
	_ = c.nc.Close()
	c.w.kick()
	if hw, ok := c.w.(*hijackWriter); ok {
		hw.abandonUnstarted()
	}
}

// ended reports whether the connection was ended from outside.
func (c *clientConn) ended() bool { return c.reason.Load() != 0 && !c.eof }

// frameLen is the exact size of sse.AppendStreamEvent's output for data.
func frameLen(stream, seq uint64, data []byte) int {
	n := len("id: ") + digits(stream) + 1 + digits(seq) + 1 + len("\n")
	// One "data: " line per line of data; CRLF, LF and CR all split lines,
	// and each break's one or two bytes become the line's "\n". Counted with
	// vectorised scans (bytes.IndexAny, byte by byte, was 5 % of the
	// gateway's CPU on bursty streams); JSON text seldom holds a raw CR.
	cr, crlf := bytes.Count(data, crByte), 0
	if cr > 0 {
		crlf = bytes.Count(data, crlfBytes)
	}
	breaks := bytes.Count(data, lfByte) + cr - crlf
	return n + (1+breaks)*len("data: \n") + len(data) - breaks - crlf
}

var (
	crByte    = []byte{'\r'}
	lfByte    = []byte{'\n'}
	crlfBytes = []byte("\r\n")
)

func digits(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// encodeEvent runs under the ring lock: it appends one event to c.p if it
// fits, or parks it in c.pending when it is the first and too large.
func (c *clientConn) encodeEvent(seq uint64, data []byte) bool {
	if len(c.pending) > 0 || seq > c.limit {
		// An oversized event is parked: it goes out first, alone. Or the
		// event is not stored by the cluster yet (cluster.go).
		return false
	}
	free := len(c.p) - c.n
	if len(data) < free { // cheap pre-check before the exact length
		if need := c.frameLen(seq, data); need <= free {
			out := c.appendEvent(c.p[c.n:c.n], seq, data)
			c.n += len(out)
			return true
		}
	}
	if c.n > 0 {
		return false
	}
	c.frame = c.appendEvent(c.frame[:0], seq, data)
	c.pending = c.frame
	return true
}

// plainIDLen is the "id: 0_0\n" line frameLen counts for stream 0, seq 0.
const plainIDLen = len("id: 0_0\n")

// frameLen is the exact size of the event appendEvent writes.
func (c *clientConn) frameLen(seq uint64, data []byte) int {
	if c.plain {
		return frameLen(0, 0, data) - plainIDLen
	}
	return frameLen(c.st.id, seq, data)
}

// appendEvent encodes one event: with its id, or without for the
// stateless revision.
func (c *clientConn) appendEvent(dst []byte, seq uint64, data []byte) []byte {
	if c.plain {
		return sse.AppendDataEvent(dst, data)
	}
	return sse.AppendStreamEvent(dst, c.st.id, seq, data)
}

// handed records that n bytes go to the connection now.
func (c *clientConn) handed(n int) (int, error) {
	now := c.srv.clock.Now()
	c.lastWrite.Store(now)
	c.writeSince.Store(now)
	return n, nil
}

// endWithRetry sends a retry hint and then ends the connection; the client
// reconnects after the hint and resumes by Last-Event-ID. A stateless
// revision's stream (plain: no ids, no resumption) ends without one
// (PROTOCOL.md section 3, rule 7).
func (c *clientConn) endWithRetry(p []byte, r CloseReason) (int, error) {
	c.setReason(r)
	c.eof = true
	if c.plain {
		return 0, io.EOF
	}
	hint := sse.AppendRetry(c.frame[:0], c.srv.retryHintMs(r))
	n := copy(p, hint)
	c.pending = hint[n:]
	return c.handed(n)
}

// fill copies whatever is ready into p without blocking: a pending rest,
// as many whole ring events as fit, a due heartbeat, or the end of the
// connection. ready is false when there is nothing to send yet.
func (c *clientConn) fill(p []byte) (n int, err error, ready bool) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		n, err = c.handed(n)
		return n, err, true
	}
	if c.eof || c.ended() {
		return 0, io.EOF, true
	}
	if d := c.deadline.Load(); d != 0 && c.srv.clock.Now() >= d {
		// Polling (2025-11-25): close the connection deliberately.
		n, err = c.endWithRetry(p, CloseFinished)
		return n, err, true
	}
	if r := c.drain.Load(); r != 0 {
		n, err = c.endWithRetry(p, CloseReason(r-1))
		return n, err, true
	}
	c.p, c.n, c.limit = p, 0, c.st.readLimit()
	last, skipped, nerr := c.st.ring.NextTo(c.after, c)
	c.p = nil
	if last != c.after {
		c.after = last
		c.st.markDelivered(last)
	}
	if skipped > 0 {
		c.srv.accountSkipped(c.st)
	}
	if len(c.pending) > 0 && c.n == 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		n, err = c.handed(n)
		return n, err, true
	}
	if c.n > 0 {
		n, err = c.handed(c.n)
		return n, err, true
	}
	// A listen the gateway ended waits for its response and its stream's
	// end (endListen): no retry hint, nothing to resume.
	listenEnded := c.st.sess.listenEnded.Load()
	if nerr != nil {
		if (c.shutdown || c.srv.shutting.Load()) && !listenEnded {
			// Shutdown closed the ring before this writer saw the signal:
			// still tell the client when to come back.
			n, err = c.endWithRetry(p, CloseShutdown)
			return n, err, true
		}
		// ErrClosed: the stream finished and everything was sent. Any
		// other error (events the connection still needed are gone) ends
		// this connection; the client resumes and learns more.
		if errors.Is(nerr, ringbuf.ErrClosed) {
			c.setReason(CloseFinished)
		} else {
			c.setReason(CloseProtocolError)
		}
		c.eof = true
		return 0, io.EOF, true
	}
	if c.shutdown && !listenEnded {
		n, err = c.endWithRetry(p, CloseShutdown)
		return n, err, true
	}
	if c.beat {
		c.beat = false
		n, err = c.handed(copy(p, heartbeatComment))
		return n, err, true
	}
	return 0, nil, false
}

// kickedNow handles a kick: a heartbeat is due if the connection has been
// quiet for an interval (an end or a deadline is seen by fill).
func (c *clientConn) kickedNow() {
	if !c.ended() && c.srv.quietFor(c, c.srv.clock.Now()) {
		c.beat = true
	}
}

// hasWork reports whether fill might send something now; false positives
// only cost a wasted fill.
func (c *clientConn) hasWork() bool {
	if len(c.pending) > 0 || c.eof || c.beat || c.shutdown || c.reason.Load() != 0 || c.drain.Load() != 0 || c.st.ring.Closed() {
		return true
	}
	if d := c.deadline.Load(); d != 0 && c.srv.clock.Now() >= d {
		return true
	}
	return min(c.st.ring.LastSeq(), c.st.readLimit()) > c.after
}

// detach ends the connection's attachment, once: the stream forgets it
// (unless a newer connection replaced it already), the idle clock resumes
// and the close is counted by its reason.
func (c *clientConn) detach() {
	st := c.st
	st.detach(c)
	c.writeSince.Store(0)
	setStreaming(c.nc, false) // a POST answer's connection serves the next request
	st.sess.busy.Add(-1)
	if st.sess.ephemeral {
		// A stateless answer's connection ended: its request is over (a
		// client that closed early cancelled it: PROTOCOL.md rule 46).
		c.srv.endEphemeral(st.sess)
	}
	st.sess.touch(c.srv.clock.Now())
	reason := c.closeReason()
	if st.cs != nil {
		c.srv.mirrorDetached(st, c)
	}
	c.srv.metrics.streamClosed(reason)
	c.srv.cfg.Hooks.StreamClosed(st.info(), reason)
	if st.sess.legacy != nil {
		c.srv.legacyStreamClosed(st.sess, reason) // its stream is the session
	}
}

// bodyWriter streams a POST answer through fasthttp: it is the io.Reader
// passed to SetBodyStream. Read blocks until bytes are ready and drains as
// many whole events as fit into fasthttp's buffer, so queued events leave
// in one write. It never touches the RequestCtx.
type bodyWriter struct {
	clientConn
	kickc chan struct{} // one slot, never blocks
}

func newBodyWriter(srv *Server, st *stream, nc net.Conn, prefix []byte) *bodyWriter {
	w := &bodyWriter{kickc: make(chan struct{}, 1)}
	w.init(srv, st, nc, w, 0, prefix)
	return w
}

// notify: the body writer waits on the ring's own wake-up channel.
func (w *bodyWriter) notify() {}

func (w *bodyWriter) kick() {
	select {
	case w.kickc <- struct{}{}:
	default:
	}
}

// Read implements io.Reader for fasthttp's SetBodyStream: it blocks until
// bytes are ready and never returns (0, nil).
func (w *bodyWriter) Read(p []byte) (int, error) {
	// fasthttp calls Read again only after the previous chunk was written.
	w.writeSince.Store(0)
	for {
		if n, err, ready := w.fill(p); ready {
			return n, err
		}
		done := w.srv.streamsDone
		if w.shutdown {
			done = nil // seen already: an ended listen waits for its response
		}
		select {
		case <-w.st.ring.Wait():
		case <-w.kickc:
			w.kickedNow()
		case <-done:
			w.shutdown = true
		}
	}
}

// Close is called by fasthttp when the response ends for any reason
// (CloseWithError follows with the write error, nil on a clean end). Both
// may run; cleanup happens once.
func (w *bodyWriter) Close() error {
	w.closeOnce.Do(w.detach)
	return nil
}

// CloseWithError implements fasthttp's body-stream close with the cause.
func (w *bodyWriter) CloseWithError(error) error {
	w.closeOnce.Do(w.detach)
	return nil
}

// hijackWriter writes a GET stream on a connection taken over from
// fasthttp. No goroutine waits on an idle stream: producers, the sweeper
// and end call schedule, which starts the writer on a Server-owned
// goroutine unless it runs; the writer writes the status line and headers
// once, then one HTTP chunk per batch of whole events, and exits when
// nothing is left to send.
type hijackWriter struct {
	// The fields an event touches first, then clientConn's (which puts
	// its own first): three cache lines in all.

	// work counts schedule calls since the writer last went idle; the
	// writer runs while it is nonzero. It starts at 1 ("start pending"),
	// so schedule starts nothing before start.
	work atomic.Int64
	// kicked records a kick for the writer's next run.
	kicked atomic.Bool
	// http10: the request was HTTP/1.0, which cannot take chunks (RFC
	// 9112 section 6.1): the body goes out as it is, ended by the close.
	http10 bool
	// raw is gc's socket, kept here so that an event's non-blocking write
	// (rawsock.WriteNow: a stream's writes carry no deadline, and only
	// its writer writes) does not touch gc's cache lines; nil when gc is.
	raw syscall.RawConn

	clientConn

	// state: hijackPending until start or abandonUnstarted decides.
	state       atomic.Int32
	headersSent bool
	// gc is the connection when the writer may also run on a producer's
	// goroutine (runInline: it can write without waiting); nil otherwise.
	gc *guardConn
	// rest is what a run on a producer's goroutine left of a chunk when
	// the socket's buffer filled, in the pooled buffer restBuf; ending is
	// how such a run left a connection that is done. The writer's own
	// goroutine, which it then started, writes the rest first and ends
	// the connection.
	rest    []byte
	restBuf *[]byte
	ending  uint8
	run     func()
}

// Values of hijackWriter.ending.
const (
	endNot    uint8 = iota
	endLast         // send the last chunk, then close
	endFailed       // a write failed: close
)

const (
	hijackPending int32 = iota
	hijackStarted
	hijackAbandoned
)

func newHijackWriter(srv *Server, st *stream, nc net.Conn, after uint64, prefix []byte) *hijackWriter {
	w := &hijackWriter{}
	w.init(srv, st, nc, w, after, prefix)
	if gc, ok := nc.(*guardConn); ok && gc.canTry() {
		w.gc, w.raw = gc, gc.raw
		gc.wrote.Store(true) // for all its writes: fasthttp reads it no more
	}
	w.work.Store(1)
	// Made once: starting it with a go statement then allocates nothing.
	w.run = func() {
		defer srv.wg.Done()
		w.runLoop()
	}
	return w
}

// start runs the writer for the first time, once fasthttp has handed the
// connection over. A connection ended before that was detached already.
func (w *hijackWriter) start() {
	if w.state.CompareAndSwap(hijackPending, hijackStarted) {
		w.spawn()
	}
}

// abandonUnstarted detaches a connection whose writer never started (an
// end before fasthttp handed the connection over, or a hijack fasthttp
// did not complete), so it is not left attached for ever.
func (w *hijackWriter) abandonUnstarted() {
	if w.state.CompareAndSwap(hijackPending, hijackAbandoned) {
		w.closeOnce.Do(w.detach)
	}
}

func (w *hijackWriter) notify() { w.schedule() }

func (w *hijackWriter) kick() {
	w.kicked.Store(true)
	w.schedule()
}

// schedule makes sure the writer runs after this call: it starts it on a
// Server-owned goroutine unless it is running (or not started yet), in
// which case the writer sees the increment and loops once more before
// going idle.
func (w *hijackWriter) schedule() {
	if w.work.Add(1) == 1 {
		w.spawn()
	}
}

// spawn runs the writer on a Server-owned goroutine; its caller holds the
// writer (work is nonzero).
func (w *hijackWriter) spawn() {
	if w.srv.addOwned() {
		go w.run()
		return
	}
	// Shutdown has cancelled the owned goroutines (every session has
	// ended by then): no new writer; end the connection here.
	_ = w.nc.Close()
	w.setReason(CloseShutdown)
	w.closeOnce.Do(w.detach)
}

// runInline runs the writer on the calling producer's goroutine, which
// holds it (its notification found the writer idle: writerHold). It
// writes what is ready without waiting; when the socket's buffer fills or
// the connection is done it hands the writer to a goroutine of its own
// (spawn), which waits for the socket, ends the connection and detaches:
// none of that runs under a producer's frame. A live stream's event then
// goes out from the goroutine that read it, with no goroutine started.
func (w *hijackWriter) runInline() {
	for {
		seen := w.work.Load()
		for {
			out := w.pass(true)
			if out == passHandOff {
				w.spawn()
				return
			}
			if out == passIdle {
				break
			}
		}
		if w.work.CompareAndSwap(seen, 0) {
			return
		}
	}
}

// runLoop writes until nothing is ready and exits, unless schedule was
// called meanwhile. When the connection ends it closes it and detaches;
// work then stays nonzero, so schedule never starts a writer again.
func (w *hijackWriter) runLoop() {
	for {
		seen := w.work.Load()
		if !w.writeReady() {
			_ = w.nc.Close()
			w.closeOnce.Do(w.detach)
			return
		}
		if w.work.CompareAndSwap(seen, 0) {
			return
		}
	}
}

// chunkBufs holds write buffers for hijacked streams: taken only while a
// batch is written, so an idle stream holds none.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, hijackBufSize); return &b }}

const (
	chunkBufSize = 4096
	// hijackBufSize bounds one write of a hijacked stream: a burst of
	// events ready together goes out in one system call (64 events of
	// ~200 bytes took 3–4 writes with 4 KiB).
	hijackBufSize = 16 << 10
	chunkHead     = 6 // room for up to 4 hex digits of size and CRLF
)

// A chunk's size must fit chunkHead's 4 hex digits (a compile-time check).
const _ = uint(0xffff - (hijackBufSize - chunkHead - 2))

// hijackedHeaders start a GET stream. Connection: close, because the
// gateway closes the connection when the stream ends: a client must not
// put it back in its pool for the next POST.
var hijackedHeaders = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
	"X-Accel-Buffering: no\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")

// hijackedHeaders10 start a GET stream for an HTTP/1.0 request: no
// chunked coding, the body ends with the connection.
var hijackedHeaders10 = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
	"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n")

var lastChunk = []byte("0\r\n\r\n")

// writeReady writes everything that is ready on the hijacked connection.
// It returns false when the connection is done (ended or failed).
func (w *hijackWriter) writeReady() bool {
	if !w.headersSent {
		w.headersSent = true
		head := hijackedHeaders
		if w.http10 {
			head = hijackedHeaders10
		}
		_, err := w.nc.Write(head)
		w.writeSince.Store(0)
		if err != nil {
			return false
		}
	}
	if w.rest != nil { // left by a run on a producer's goroutine
		_, err := w.nc.Write(w.rest)
		w.writeSince.Store(0)
		chunkBufs.Put(w.restBuf)
		w.rest, w.restBuf = nil, nil
		if err != nil {
			return false
		}
	}
	switch w.ending {
	case endLast:
		w.writeLast()
		return false
	case endFailed:
		return false
	}
	for {
		switch w.pass(false) {
		case passIdle:
			return true
		case passDone:
			return false
		}
	}
}

// passOutcome is what one writer pass did.
type passOutcome uint8

const (
	passMore    passOutcome = iota // a chunk went out; more may be ready
	passIdle                       // nothing is ready
	passDone                       // the connection is done (ended, failed or finished)
	passHandOff                    // (try) the socket is full or the connection done: spawn
)

// pass fills one chunk from the ring and writes it. With try (runInline)
// it never waits: what the socket does not take is kept in rest, and a
// connection that is done is left to the writer's goroutine (ending).
func (w *hijackWriter) pass(try bool) passOutcome {
	if w.kicked.Swap(false) {
		w.kickedNow()
	}
	if w.srv.shutting.Load() {
		w.shutdown = true
	}
	if !w.hasWork() {
		return passIdle
	}
	bp := chunkBufs.Get().(*[]byte)
	buf := *bp
	n, err, ready := w.fill(buf[chunkHead : len(buf)-2])
	if n > 0 {
		out := buf[chunkHead : chunkHead+n]
		if !w.http10 {
			var size [8]byte
			hex := strconv.AppendUint(size[:0], uint64(n), 16)
			start := chunkHead - len(hex) - 2
			copy(buf[start:], hex)
			buf[chunkHead-2], buf[chunkHead-1] = '\r', '\n'
			buf[chunkHead+n], buf[chunkHead+n+1] = '\r', '\n'
			out = buf[start : chunkHead+n+2]
		}
		var k int
		var werr error
		if try {
			k, werr = rawsock.WriteNow(w.raw, out)
		} else {
			k, werr = w.nc.Write(out)
		}
		switch {
		case werr != nil:
			chunkBufs.Put(bp)
			if try {
				w.ending = endFailed
				return passHandOff
			}
			return passDone
		case k < len(out): // a try: the socket's buffer is full
			w.rest, w.restBuf = out[k:], bp
			if err != nil {
				w.ending = endLast
			}
			return passHandOff // writeSince stays: a write is in flight
		}
		w.writeSince.Store(0)
	}
	chunkBufs.Put(bp)
	if err != nil {
		if try {
			w.ending = endLast
			return passHandOff
		}
		w.writeLast()
		return passDone
	}
	if !ready {
		return passIdle
	}
	return passMore
}

// writeLast ends the body of a connection that finished: the last chunk,
// unless it was cut from outside or takes no chunks (HTTP/1.0).
func (w *hijackWriter) writeLast() {
	if !w.ended() && !w.http10 {
		_, _ = w.nc.Write(lastChunk)
	}
}

// primingCap holds any priming event (ids and the hint are at most 20
// digits each).
const primingCap = 96

// primingEvent is sent first on POST answer streams of 2025-11-25
// sessions: an id (seq 0: "nothing yet") with empty data, plus the retry
// hint, so the client can resume even before the first real event.
func primingEvent(dst []byte, stream uint64, retryMs int64) []byte {
	dst = append(dst, "id: "...)
	dst = sse.AppendEventID(dst, stream, 0)
	dst = append(dst, "\nretry: "...)
	dst = strconv.AppendInt(dst, retryMs, 10)
	dst = append(dst, "\ndata: \n\n"...)
	return dst
}
