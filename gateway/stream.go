package gateway

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// stream is one SSE stream of a session: stream 0 is the standalone GET
// stream, stream n > 0 the n-th POST answer. It owns the ring of encoded
// events, the position delivered so far and the stream's lifetime
// (finished, retained); the client connection draining it, if any, is a
// clientConn (conn.go). The ring outlives connections, so a client can
// resume with Last-Event-ID, and the newest connection of a stream always
// wins: attaching one ends the one it replaces.
//
// What an event touches (its pump and its writer) is in the first cache
// line: a stream is cold again by its next event.
type stream struct {
	id   uint64
	ring *ringbuf.Ring

	// conn is the client connection attached to the stream, nil if none.
	conn atomic.Pointer[clientConn]
	// delivered is the highest seq handed to any connection of the stream.
	delivered atomic.Uint64

	// cs is the stream's cluster state (cluster.go): set before the
	// stream is fed or read, nil on a single node.
	cs *clusterStream

	// hold: the standalone stream's pump runs its connection's writer
	// itself (writerHold); only the pump's goroutine touches it.
	hold writerHold

	// pumping is set once a pump feeds the standalone stream.
	pumping atomic.Bool
	// holdOK: the standalone stream's upstream stream calls BeforeWait
	// (upstream.WaitHooker) and the session is no legacy one, so its pump
	// may hold the writer (writerHold); only the pump's goroutine touches
	// it (next to pumping: no padding).
	holdOK bool

	sess *session

	// connStart is the position the newest connection started after: a
	// plain standalone GET (no Last-Event-ID) replays from there.
	connStart atomic.Uint64
	// upLastID is the upstream's id of the last event read of the
	// standalone stream (stream 0 only; nil if none): reopened after a
	// break or a restart (it is in the session record), the stream
	// continues from it. Stored by the stream's reader when its upstream
	// stream ends, rarely.
	upLastID atomic.Pointer[string]
	// finishedAt is when the ring was closed (unix ns), 0 while live.
	finishedAt atomic.Int64
	// droppedOldestSeen and skippedSeen are the ring counters already
	// added to the gateway's metrics.
	droppedOldestSeen atomic.Uint64
	skippedSeen       atomic.Uint64

	// mu guards up.
	mu sync.Mutex
	up upstream.Stream // the upstream stream feeding the ring, if any
}

func newStream(id uint64, sess *session, ring *ringbuf.Ring) *stream {
	return &stream{id: id, sess: sess, ring: ring}
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

// attach makes c the stream's connection and returns the one it replaced,
// if any; the caller ends that one.
func (st *stream) attach(c *clientConn) *clientConn {
	st.connStart.Store(c.after)
	return st.conn.Swap(c)
}

// plainStart is where a standalone GET without Last-Event-ID starts: where
// the previous connection started. A client that got an event with an id
// there would have sent Last-Event-ID; one that sent none got nothing
// (the events were written into a connection that died), so they are
// replayed rather than lost. If that position can no longer be served,
// the stream continues after what was delivered.
func (st *stream) plainStart() uint64 {
	after := st.connStart.Load()
	if !st.servable(after) {
		return st.delivered.Load()
	}
	return after
}

// servable reports whether a reader may start after seq: seq is not ahead
// of the stream and no event the reader needs is gone.
func (st *stream) servable(after uint64) bool {
	_, _, err := st.ring.Next(after, func(uint64, []byte) bool { return false })
	return err == nil || errors.Is(err, ringbuf.ErrClosed)
}

// detach forgets c unless a newer connection replaced it already.
func (st *stream) detach(c *clientConn) { st.conn.CompareAndSwap(c, nil) }

// attached reports whether a client connection reads the stream.
func (st *stream) attached() bool { return st.conn.Load() != nil }

// notify tells the attached connection's writer that the ring changed.
func (st *stream) notify() {
	if c := st.conn.Load(); c != nil {
		c.w.notify()
	}
}

// writerHold lets a standalone stream's pump write its events itself. A
// notification that finds the connection's writer idle takes it (its
// work count goes 0 → 1, so no other notifier starts it) instead of
// starting it on a goroutine; the pump runs it (runInline) once it has
// pushed what input it has, before it waits for more (the upstream
// stream's BeforeWait) or for anything else. Events that arrive together
// still leave in one write, and a live stream's event costs no goroutine
// start. Only where the pump never waits on another producer: not for a
// legacy session's one stream (its producers take turns) nor a clustered
// one (publishing may wait); those use notify.
type writerHold struct {
	w *hijackWriter // the writer held, nil if none
}

// notifyHeld is notify from the stream's pump: h nil is plain notify.
func (st *stream) notifyHeld(h *writerHold) {
	c := st.conn.Load()
	if c == nil {
		return
	}
	w, ok := c.w.(*hijackWriter)
	if h == nil || !ok || w.raw == nil { // raw: w.gc can write without waiting
		c.w.notify()
		return
	}
	if h.w == w {
		return // held: its run sends this event too
	}
	h.flush() // a replaced connection's writer, if held
	if w.work.Add(1) == 1 {
		h.w = w
	}
}

// flush runs the held writer, if any, and lets it go. A nil h holds none.
func (h *writerHold) flush() {
	if h == nil {
		return
	}
	if w := h.w; w != nil {
		h.w = nil
		w.runInline()
	}
}

// BeforeWait implements upstream.WaitHook: the pump's upstream stream is
// about to wait for input, so what it pushed goes out now.
func (st *stream) BeforeWait() { st.hold.flush() }

// heldBy is the writer hold the stream's pump passes to deliver: nil
// where it must notify (writerHold).
func (st *stream) heldBy() *writerHold {
	if !st.holdOK || st.cs != nil {
		return nil
	}
	return &st.hold
}

// cut ends the attached connection, if any, for reason; the stream stays
// resumable.
func (st *stream) cut(reason CloseReason) bool {
	c := st.conn.Load()
	if c == nil {
		return false
	}
	c.end(reason)
	return true
}

// markDelivered raises delivered to seq.
func (st *stream) markDelivered(seq uint64) {
	for {
		cur := st.delivered.Load()
		if seq <= cur || st.delivered.CompareAndSwap(cur, seq) {
			return
		}
	}
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
