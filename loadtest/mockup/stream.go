package mockup

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/gateway/sse"
)

// errStreamGone is returned by stream.append when the stream can take no more events.
var errStreamGone = errors.New("mockup: stream gone")

// stream is one SSE stream of a session: a bounded replay log of encoded event blocks
// and at most one attached reader.
type stream struct {
	num      uint64 // stream number in its session; 0 is the GET stream
	lossy    bool   // evict unread events when full (GET) instead of waiting (POST)
	ids      bool   // events carry "<num>_<seq>" ids (false for stateless answers)
	capacity uint64
	srv      *Server
	wake     chan struct{} // one slot: the attached reader has something to do
	space    chan struct{} // one slot: a waiting producer may find room

	// mu guards every field below.
	mu       sync.Mutex
	log      [][]byte // slot seq%len(log) holds event seq for first <= seq < next; grows to capacity
	first    uint64   // oldest seq held
	next     uint64   // seq of the next event
	taken    uint64   // every seq below it was handed to some reader
	done     bool     // no more events will be appended
	doneAt   time.Time
	reader   *streamReader
	cancel   context.CancelFunc // cancels the producer (stateless answers: reader gone)
	closedBy error              // set when the stream was closed by the session or server
	held     int                // hold calls not yet released: appends do not wake the reader
}

// hold keeps the reader asleep across the appends until release, which wakes it
// once: a burst of events goes out in one write.
func (st *stream) hold() {
	st.mu.Lock()
	st.held++
	st.mu.Unlock()
}

func (st *stream) release() {
	st.mu.Lock()
	st.held--
	st.mu.Unlock()
	signal(st.wake)
}

func newStream(srv *Server, num uint64, lossy, ids bool) *stream {
	return &stream{
		num:      num,
		lossy:    lossy,
		ids:      ids,
		capacity: uint64(srv.cfg.ReplayEvents),
		srv:      srv,
		wake:     make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
		first:    1,
		next:     1,
		taken:    1,
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// append adds one event with data as its payload. A lossless stream waits while its log
// is full of events no reader has taken; ctx ends the wait.
func (st *stream) append(ctx context.Context, data []byte) error {
	for {
		st.mu.Lock()
		if st.done || st.closedBy != nil {
			st.mu.Unlock()
			return errStreamGone
		}
		if st.next-st.first < st.capacity || st.lossy || st.taken > st.first {
			st.appendLocked(data)
			held := st.held > 0
			st.mu.Unlock()
			if !held {
				signal(st.wake)
			}
			return nil
		}
		st.mu.Unlock()
		signal(st.wake) // held or not: the reader must make room
		select {
		case <-st.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appendLocked stores the event, evicting the oldest when the log is full.
func (st *stream) appendLocked(data []byte) {
	if st.next-st.first >= st.capacity {
		if st.taken <= st.first {
			st.srv.stats.evictedUnread.Add(1)
			st.taken = st.first + 1
		}
		st.first++
	}
	if held := st.next - st.first; held == uint64(len(st.log)) {
		st.growLocked(held)
	}
	slot := st.next % uint64(len(st.log))
	b := st.log[slot][:0]
	if st.ids {
		b = sse.AppendStreamEvent(b, st.num, st.next, data)
	} else {
		b = sse.AppendEvent(b, &sse.Event{Data: data, HasData: true, Retry: -1})
	}
	st.log[slot] = b
	st.next++
}

// growLocked doubles the log (up to the capacity) when the held events fill it:
// most POST answers hold one event, and a log of the full capacity for each
// (24 KiB at the default 1,024) kept every finished answer stream large for the
// collector to scan. The held events move to their slots in the new log.
func (st *stream) growLocked(held uint64) {
	size := min(max(2*held, 4), st.capacity)
	log := make([][]byte, size)
	for seq := st.first; seq < st.next; seq++ {
		log[seq%size] = st.log[seq%uint64(len(st.log))]
	}
	st.log = log
}

// finish marks the stream complete: its reader ends after the last event.
func (st *stream) finish() {
	st.mu.Lock()
	st.done = true
	st.doneAt = time.Now()
	st.mu.Unlock()
	signal(st.wake)
}

// close ends the stream for good (session deleted or server shutdown).
func (st *stream) close(reason error) {
	st.mu.Lock()
	if st.closedBy == nil {
		st.closedBy = reason
	}
	cancel := st.cancel
	st.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	signal(st.wake)
	signal(st.space)
}

// attach makes a new reader the stream's only reader, starting at seq from, with an
// optional prefix written first. A previous reader is taken over and ends.
func (st *stream) attach(from uint64, prefix []byte, sess *session) (*streamReader, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closedBy != nil {
		return nil, errStreamGone
	}
	if from < st.first || from > st.next {
		return nil, errStreamGone
	}
	if st.reader != nil {
		st.srv.stats.takeovers.Add(1)
	}
	r := &streamReader{st: st, pos: from, pending: prefix, srvDone: st.srv.done}
	if sess != nil {
		r.sessDone = sess.done
	}
	st.reader = r
	signal(st.wake)
	return r, nil
}

// finishedBefore reports whether the stream finished before t.
func (st *stream) finishedBefore(t time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.done && st.doneAt.Before(t)
}

var heartbeatComment = sse.AppendComment(nil, "hb")

// streamReader is the body of one SSE response: fasthttp's connection goroutine calls
// Read, which copies as many whole events as fit. It never touches the RequestCtx.
type streamReader struct {
	st       *stream
	srvDone  <-chan struct{}
	sessDone <-chan struct{} // nil for stateless answers

	// Owned by the goroutine calling Read.
	pos     uint64 // next seq to send
	off     int    // bytes of event pos already sent
	pending []byte // bytes to send before any event (": ok", priming event, heartbeat)
	timer   *time.Timer

	closeOnce sync.Once
}

// Read implements io.Reader. It blocks until there is something to send and never
// returns (0, nil).
func (r *streamReader) Read(p []byte) (int, error) {
	st := r.st
	for {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		st.mu.Lock()
		if st.reader != r || st.closedBy != nil {
			st.mu.Unlock()
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		}
		if r.pos < st.first {
			// Evicted before this reader took them: the client sees a gap.
			r.pos, r.off = st.first, 0
		}
		for r.pos < st.next && n < len(p) {
			ev := st.log[r.pos%uint64(len(st.log))][r.off:]
			if len(ev) > len(p)-n && n > 0 {
				break // whole events only, unless one alone does not fit
			}
			c := copy(p[n:], ev)
			n += c
			if c < len(ev) {
				r.off += c
				break
			}
			r.pos++
			r.off = 0
		}
		if r.pos > st.taken {
			st.taken = r.pos
		}
		done := st.done && r.pos == st.next
		st.mu.Unlock()
		if n > 0 {
			signal(st.space)
			return n, nil
		}
		if done {
			return 0, io.EOF
		}
		if err := r.wait(); err != nil {
			return 0, err
		}
	}
}

// wait blocks until the stream signals, a heartbeat is due or the stream must end.
func (r *streamReader) wait() error {
	var tick <-chan time.Time
	if hb := r.st.srv.cfg.Heartbeat; hb > 0 {
		if r.timer == nil {
			r.timer = time.NewTimer(hb)
		} else {
			r.timer.Reset(hb)
		}
		tick = r.timer.C
	}
	select {
	case <-r.st.wake:
	case <-tick:
		r.pending = heartbeatComment
	case <-r.sessDone:
		return io.EOF
	case <-r.srvDone:
		return io.EOF
	}
	return nil
}

// Close implements io.Closer; fasthttp calls it (and CloseWithError) when the response
// ends for any reason. It is idempotent.
func (r *streamReader) Close() error {
	r.closeOnce.Do(func() {
		if r.timer != nil {
			r.timer.Stop()
		}
		st := r.st
		st.mu.Lock()
		mine := st.reader == r
		if mine {
			st.reader = nil
		}
		finished := st.done && r.pos == st.next
		cancel := st.cancel
		st.mu.Unlock()
		// A stateless answer whose client went away is cancelled (2026-07-28: closing
		// the response stream is cancellation). Session-era streams keep running so
		// the client can resume.
		if mine && !finished && !st.ids && cancel != nil {
			cancel()
		}
		signal(st.space)
	})
	return nil
}

// CloseWithError implements the interface fasthttp calls after Close.
func (r *streamReader) CloseWithError(error) error { return r.Close() }
