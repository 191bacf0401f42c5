package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// stream is one SSE stream of a session: stream 0 is the standalone GET
// stream, stream n > 0 the n-th POST answer. The ring outlives client
// connections, so a client can resume with Last-Event-ID.
type stream struct {
	id   uint64
	sess *session
	ring *ringbuf.Ring

	// attached is true while a client connection reads the stream; it is
	// the one-reader-at-a-time guard (CompareAndSwap).
	attached atomic.Bool
	// lastWrite is the coarse time of the last bytes handed to a client.
	lastWrite atomic.Int64
	// finishedAt is when the ring was closed (unix ns), 0 while live.
	finishedAt atomic.Int64
	// kick wakes the reader for a heartbeat or a cut; one slot, never blocks.
	kick chan struct{}
	// droppedOldestSeen and skippedSeen are the ring counters already
	// added to the gateway's metrics.
	droppedOldestSeen atomic.Uint64
	skippedSeen       atomic.Uint64
	// writeSince is when Read last handed bytes to fasthttp (unix ns); 0
	// while Read runs. A value that stays old means the write is stuck.
	writeSince atomic.Int64
	// pumping is set once a pump feeds the standalone stream.
	pumping atomic.Bool
	// connDeadline ends the attached connection at this time (unix ns) so
	// the client polls (-stream-max-connection); 0 = never.
	connDeadline atomic.Int64
	// stalled marks a cut made by the write-stall watchdog; replaced one
	// made for a resuming reader.
	stalled  atomic.Bool
	replaced atomic.Bool
	// cut asks the attached reader to end its connection (slow consumer).
	cut atomic.Bool

	// delivered is the seq of the last event handed to a client connection;
	// a new standalone GET without Last-Event-ID continues after it.
	delivered atomic.Uint64

	// hijacked is the attached GET reader writing on a connection taken
	// over from fasthttp, nil otherwise. Producers schedule its writer.
	hijacked atomic.Pointer[streamReader]

	// mu guards conn and up.
	mu   sync.Mutex
	conn net.Conn        // the attached client's connection, for cutting it
	up   upstream.Stream // the upstream stream feeding the ring, if any
}

func (st *stream) setUpstream(up upstream.Stream) {
	st.mu.Lock()
	st.up = up
	st.mu.Unlock()
}

// closeUpstream interrupts the pump feeding the stream.
func (st *stream) closeUpstream() {
	st.mu.Lock()
	up := st.up
	st.mu.Unlock()
	if up != nil {
		_ = up.Close()
	}
}

func newStream(id uint64, sess *session, ring *ringbuf.Ring) *stream {
	return &stream{id: id, sess: sess, ring: ring, kick: make(chan struct{}, 1)}
}

// wake asks the attached reader to look at the stream now: a heartbeat
// may be due, the connection cut or its deadline passed.
func (st *stream) wake() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
	if r := st.hijacked.Load(); r != nil {
		r.kicked.Store(true)
		r.schedule()
	}
}

// notify tells a hijacked reader that the ring changed (an event was
// stored or the ring closed). Readers on fasthttp's goroutine wait on the
// ring's own wake-up channel instead.
func (st *stream) notify() {
	if r := st.hijacked.Load(); r != nil {
		r.schedule()
	}
}

// disconnect cuts the attached reader's connection, if any. The blocked
// write fails, fasthttp closes the body reader, and the stream stays
// resumable.
func (st *stream) disconnect() {
	st.cut.Store(true)
	st.mu.Lock()
	c := st.conn
	st.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	st.wake()
}

func (st *stream) info() StreamInfo {
	return StreamInfo{Session: st.sess.info(), Stream: st.id}
}

// accountSkipped adds the events the ring reported gone to a reader (each
// seq once, by the ring's own count) to the gateway's metrics.
func (s *Server) accountSkipped(st *stream) {
	total := st.ring.Stats().Skipped
	if prev := st.skippedSeen.Swap(total); total > prev {
		s.metrics.eventsSkipped.Add(total - prev)
	}
}

// streamReader is the body of one SSE response: fasthttp's connection
// goroutine calls Read with its write buffer and writes whatever Read
// returns as one chunk. Read blocks on the ring and drains as many whole
// events as fit, so queued events leave in one syscall. It never touches
// the RequestCtx.
type streamReader struct {
	srv *Server
	st  *stream

	after   uint64 // seq of the last event handed out
	pending []byte // the rest of an event larger than one Read buffer
	frame   []byte // scratch for such an event
	p       []byte // the Read buffer while Next runs
	n       int    // bytes of p filled while Next runs
	encode  func(seq uint64, data []byte) bool

	heartbeat []byte
	closeOnce sync.Once

	// A hijacked GET stream has no goroutine while idle: conn is the
	// connection, work counts schedule calls since the writer last went
	// idle (the writer runs while it is nonzero), kicked records a wake
	// (heartbeat, cut, deadline) for the next run, run is the writer.
	conn        net.Conn
	work        atomic.Int64
	kicked      atomic.Bool
	headersSent bool
	run         func()

	eof      bool
	beat     bool // a heartbeat is due
	shutdown bool // the server is shutting down
	reason   CloseReason
}

var heartbeatComment = sse.AppendComment(nil, "")

func newStreamReader(srv *Server, st *stream, after uint64, prefix []byte) *streamReader {
	r := &streamReader{srv: srv, st: st, after: after, heartbeat: heartbeatComment, reason: CloseClientGone}
	r.pending = prefix
	r.encode = r.encodeEvent
	return r
}

// frameLen is the exact size of sse.AppendStreamEvent's output for data.
func frameLen(stream, seq uint64, data []byte) int {
	n := len("id: ") + digits(stream) + 1 + digits(seq) + 1 + len("\n")
	// One "data: " line per line of data; CRLF, LF and CR all split lines.
	lines := 1
	rest := data
	for {
		i := bytes.IndexAny(rest, "\r\n")
		if i < 0 {
			break
		}
		if rest[i] == '\r' && i+1 < len(rest) && rest[i+1] == '\n' {
			n-- // the pair becomes one line break
			i++
		}
		lines++
		rest = rest[i+1:]
	}
	return n + lines*len("data: \n") + len(data) - (lines - 1)
}

func digits(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// encodeEvent runs under the ring lock: it appends one event to r.p if it
// fits, or parks it in r.pending when it is the first and too large.
func (r *streamReader) encodeEvent(seq uint64, data []byte) bool {
	if len(r.pending) > 0 {
		return false // an oversized event is parked: it goes out first, alone
	}
	free := len(r.p) - r.n
	if len(data) < free { // cheap pre-check before the exact length
		if need := frameLen(r.st.id, seq, data); need <= free {
			out := sse.AppendStreamEvent(r.p[r.n:r.n], r.st.id, seq, data)
			r.n += len(out)
			return true
		}
	}
	if r.n > 0 {
		return false
	}
	r.frame = sse.AppendStreamEvent(r.frame[:0], r.st.id, seq, data)
	r.pending = r.frame
	return true
}

// handed records that n bytes go to the connection now.
func (r *streamReader) handed(n int) (int, error) {
	now := r.srv.clock.Now()
	r.st.lastWrite.Store(now)
	r.st.writeSince.Store(now)
	return n, nil
}

// endWithRetry sends a retry hint and then ends the connection; the client
// reconnects after the hint and resumes by Last-Event-ID.
func (r *streamReader) endWithRetry(p []byte, reason CloseReason) (int, error) {
	r.reason = reason
	r.eof = true
	hint := sse.AppendRetry(r.frame[:0], r.srv.cfg.RetryHint.Milliseconds())
	n := copy(p, hint)
	r.pending = hint[n:]
	return r.handed(n)
}

// Read implements io.Reader for fasthttp's SetBodyStream: it blocks until
// bytes are ready and never returns (0, nil).
func (r *streamReader) Read(p []byte) (int, error) {
	// fasthttp calls Read again only after the previous chunk was written.
	r.st.writeSince.Store(0)
	for {
		if n, err, ready := r.fill(p); ready {
			return n, err
		}
		r.wait()
	}
}

// fill copies whatever is ready into p without blocking: a pending rest,
// as many whole ring events as fit, a due heartbeat, or the end of the
// stream. ready is false when there is nothing to send yet (call wait).
func (r *streamReader) fill(p []byte) (n int, err error, ready bool) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		n, err = r.handed(n)
		return n, err, true
	}
	if r.eof {
		return 0, io.EOF, true
	}
	if d := r.st.connDeadline.Load(); d != 0 && r.srv.clock.Now() >= d {
		// Polling (2025-11-25): close the connection deliberately.
		n, err = r.endWithRetry(p, CloseFinished)
		return n, err, true
	}
	if r.st.cut.Load() {
		switch {
		case r.st.stalled.Load():
			r.reason = CloseWriteStall
		case r.st.replaced.Load():
			r.reason = CloseClientGone
		default:
			r.reason = CloseSlowConsumer
		}
		return 0, io.EOF, true
	}
	r.p, r.n = p, 0
	last, skipped, nerr := r.st.ring.Next(r.after, r.encode)
	r.p = nil
	r.after = last
	if skipped > 0 {
		r.srv.accountSkipped(r.st)
	}
	if len(r.pending) > 0 && r.n == 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		n, err = r.handed(n)
		return n, err, true
	}
	if r.n > 0 {
		n, err = r.handed(r.n)
		return n, err, true
	}
	if nerr != nil {
		if r.shutdown || r.srv.shutting.Load() {
			// Shutdown closed the ring before this reader saw the signal:
			// still tell the client when to come back.
			n, err = r.endWithRetry(p, CloseShutdown)
			return n, err, true
		}
		// ErrClosed: the stream finished and everything was sent. Any
		// other error (eviction while live under StrictReplay) ends this
		// connection; the client resumes and learns more.
		if errors.Is(nerr, ringbuf.ErrClosed) {
			r.reason = CloseFinished
		} else {
			r.reason = CloseProtocolError
		}
		return 0, io.EOF, true
	}
	if r.shutdown {
		// Shutdown: tell the client when to come back, then end.
		n, err = r.endWithRetry(p, CloseShutdown)
		return n, err, true
	}
	if r.beat {
		r.beat = false
		n, err = r.handed(copy(p, r.heartbeat))
		return n, err, true
	}
	return 0, nil, false
}

// wait blocks until fill may have something to send.
func (r *streamReader) wait() {
	select {
	case <-r.st.ring.Wait():
	case <-r.st.kick:
		r.kickedNow()
	case <-r.srv.streamsDone:
		r.shutdown = true
	}
}

// kickedNow handles a wake from stream.wake: a heartbeat is due if the
// stream has been quiet for an interval (a cut or deadline is seen by fill).
func (r *streamReader) kickedNow() {
	if !r.st.cut.Load() && r.srv.heartbeatDue(r.st) {
		r.beat = true
	}
}

// hasWork reports whether fill might send something now; false positives
// only cost a wasted fill.
func (r *streamReader) hasWork() bool {
	if len(r.pending) > 0 || r.eof || r.beat || r.shutdown || r.st.cut.Load() || r.st.ring.Closed() {
		return true
	}
	if d := r.st.connDeadline.Load(); d != 0 && r.srv.clock.Now() >= d {
		return true
	}
	return r.st.ring.LastSeq() > r.after
}

// chunkBufs holds write buffers for hijacked streams: taken only while a
// batch is written, so an idle stream holds none.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, chunkBufSize); return &b }}

const (
	chunkBufSize = 4096
	chunkHead    = 6 // room for up to 4 hex digits of size and CRLF
)

var hijackedHeaders = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
	"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n")

// startHijacked runs r on a connection taken over from fasthttp. No
// goroutine waits on an idle stream: producers and the sweeper schedule a
// writer (see schedule), which writes the status line and headers once,
// then one HTTP chunk per batch of whole events, and exits when nothing is
// left to send. fasthttp's per-connection buffers are gone and no write
// buffer is held between batches, so an idle connected stream costs its
// reader and its ring.
func (s *Server) startHijacked(c net.Conn, r *streamReader) {
	r.conn = c
	// Made once: starting it with a go statement then allocates nothing.
	r.run = func() {
		defer s.wg.Done()
		r.runHijacked()
	}
	r.st.hijacked.Store(r)
	r.schedule()
}

// schedule makes sure the writer runs after this call: it starts it on a
// Server-owned goroutine unless it is running, in which case the running
// writer sees the increment and loops once more before going idle.
func (r *streamReader) schedule() {
	if r.work.Add(1) != 1 {
		return
	}
	if r.srv.addOwned() {
		go r.run()
	} else {
		// Shutdown has cancelled the owned goroutines (every session has
		// ended by then): no new writer; end the connection here.
		_ = r.conn.Close()
		r.closeOnce.Do(r.detach)
	}
}

// runHijacked writes until nothing is ready and exits, unless schedule was
// called meanwhile. When the connection ends it closes it and detaches;
// work then stays nonzero, so schedule never starts a writer again.
func (r *streamReader) runHijacked() {
	for {
		seen := r.work.Load()
		if !r.writeReady() {
			_ = r.conn.Close()
			r.closeOnce.Do(r.detach)
			return
		}
		if r.work.CompareAndSwap(seen, 0) {
			return
		}
	}
}

// writeReady writes everything that is ready on the hijacked connection.
// It returns false when the connection is done (ended or failed).
func (r *streamReader) writeReady() bool {
	if !r.headersSent {
		r.headersSent = true
		if _, err := r.conn.Write(hijackedHeaders); err != nil {
			return false
		}
	}
	for {
		if r.kicked.Swap(false) {
			r.kickedNow()
		}
		if r.srv.shutting.Load() {
			r.shutdown = true
		}
		if !r.hasWork() {
			return true
		}
		bp := chunkBufs.Get().(*[]byte)
		buf := *bp
		n, err, ready := r.fill(buf[chunkHead : len(buf)-2])
		if n > 0 {
			var size [8]byte
			hex := strconv.AppendUint(size[:0], uint64(n), 16)
			start := chunkHead - len(hex) - 2
			copy(buf[start:], hex)
			buf[chunkHead-2], buf[chunkHead-1] = '\r', '\n'
			buf[chunkHead+n], buf[chunkHead+n+1] = '\r', '\n'
			_, werr := r.conn.Write(buf[start : chunkHead+n+2])
			r.st.writeSince.Store(0)
			if werr != nil {
				chunkBufs.Put(bp)
				return false
			}
		}
		chunkBufs.Put(bp)
		if err != nil {
			_, _ = r.conn.Write([]byte("0\r\n\r\n"))
			return false
		}
		if !ready {
			return true
		}
	}
}

// Close is called by fasthttp when the response ends for any reason
// (CloseWithError follows with the write error, nil on a clean end). Both
// may run; cleanup happens once.
func (r *streamReader) Close() error {
	r.closeOnce.Do(r.detach)
	return nil
}

// CloseWithError implements fasthttp's body-stream close with the cause.
func (r *streamReader) CloseWithError(error) error {
	r.closeOnce.Do(r.detach)
	return nil
}

func (r *streamReader) detach() {
	st := r.st
	st.hijacked.CompareAndSwap(r, nil)
	st.delivered.Store(r.after)
	st.mu.Lock()
	st.conn = nil
	st.mu.Unlock()
	st.cut.Store(false)
	st.stalled.Store(false)
	st.replaced.Store(false)
	st.writeSince.Store(0)
	st.connDeadline.Store(0)
	st.attached.Store(false)
	st.sess.busy.Add(-1)
	st.sess.touch(r.srv.clock.Now())
	r.srv.metrics.streamClosed(r.reason)
	r.srv.cfg.Hooks.StreamClosed(st.info(), r.reason)
}

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
