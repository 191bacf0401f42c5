package mockup

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/loadtest/pace"
)

// errSessionClosed is the close reason of streams whose session was deleted.
var errSessionClosed = errors.New("mockup: session closed")

// session is one session-era session.
type session struct {
	id      string
	version string
	srv     *Server
	done    chan struct{} // closed when the session ends
	ctx     context.Context
	cancel  context.CancelFunc
	get     *stream // stream 0, the standalone GET stream

	// getMu serializes numbering and appending events on get (the pusher and the
	// notify tool), so sequence numbers reach the stream in order. It is taken
	// before mu; appends to the lossy GET stream never wait.
	getMu sync.Mutex

	// mu guards the fields below.
	mu         sync.Mutex
	streams    map[uint64]*stream // POST answer streams, for resumes
	nextStream uint64
	inflight   map[string]context.CancelFunc // running stream tool calls by raw request id
	pusher     *pusher
	pushSeq    uint64    // last GET-stream sequence number used (pushes and notify)
	pruneAt    time.Time // when newPostStream next looks for finished streams to drop
	closed     bool
}

func newSession(srv *Server, id, version string) *session {
	ctx, cancel := context.WithCancel(srv.ctx)
	s := &session{
		id:         id,
		version:    version,
		srv:        srv,
		done:       make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		nextStream: 1,
	}
	s.get = newStream(srv, 0, true, true)
	return s
}

// newPostStream registers and returns the next POST answer stream. Finished streams
// older than the TTL are dropped by a look at all of them at most once per prune
// period (an eighth of the TTL, at most a second), not on every call: at 125 calls/s
// on a session and the default 30 s TTL a look per call visited ~3,750 streams, which
// made the mock's CPU per SSE-answered call grow with the rate. A finished stream so
// stays resumable for the TTL and is gone at most one period after it.
func (s *session) newPostStream() (*stream, bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	if s.streams == nil {
		s.streams = make(map[uint64]*stream)
	}
	if !now.Before(s.pruneAt) {
		ttl := s.srv.cfg.FinishedTTL
		cutoff := now.Add(-ttl)
		for n, st := range s.streams {
			if st.finishedBefore(cutoff) {
				delete(s.streams, n)
			}
		}
		s.pruneAt = now.Add(min(ttl/8, time.Second))
	}
	st := newStream(s.srv, s.nextStream, false, true)
	s.streams[st.num] = st
	s.nextStream++
	return st, true
}

// stream returns stream num (0 is the GET stream), or nil.
func (s *session) stream(num uint64) *stream {
	if num == 0 {
		return s.get
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[num]
}

// trackCall remembers the cancel function of a running call; untrack forgets it.
func (s *session) trackCall(id string, cancel context.CancelFunc) {
	s.mu.Lock()
	if s.inflight == nil {
		s.inflight = make(map[string]context.CancelFunc)
	}
	s.inflight[id] = cancel
	s.mu.Unlock()
}

func (s *session) untrackCall(id string) {
	s.mu.Lock()
	delete(s.inflight, id)
	s.mu.Unlock()
}

// cancelCall cancels a running call named by a notifications/cancelled request id.
func (s *session) cancelCall(id string) {
	s.mu.Lock()
	cancel := s.inflight[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// setPush stops the current pusher, if any, and starts one at rate when rate > 0. It
// returns the last push sequence number used before the new rate applies.
func (s *session) setPush(rate float64, pad, burst int) (uint64, error) {
	s.mu.Lock()
	p := s.pusher
	s.pusher = nil
	s.mu.Unlock()
	if p != nil {
		p.stop()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.pushSeq
	if s.closed || rate <= 0 {
		return last, nil
	}
	np := &pusher{sess: s, rate: rate, pad: pad, burst: max(burst, 1), stopc: make(chan struct{}), donec: make(chan struct{})}
	if err := s.srv.goStart(func() { np.run() }); err != nil {
		return last, err
	}
	s.pusher = np
	return last, nil
}

// close ends the session: its streams end, its producers stop.
func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	streams := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	p := s.pusher
	s.pusher = nil
	s.mu.Unlock()
	s.cancel()
	close(s.done)
	if p != nil {
		p.stop()
	}
	s.get.close(errSessionClosed)
	for _, st := range streams {
		st.close(errSessionClosed)
	}
}

// notifyListChanged appends one notifications/<kind>/list_changed to the GET stream,
// numbered in the same sequence as pushed events, and returns its sequence number.
func (s *session) notifyListChanged(kind string) (uint64, error) {
	s.getMu.Lock()
	defer s.getMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, errSessionClosed
	}
	s.pushSeq++
	seq := s.pushSeq
	s.mu.Unlock()
	_, _, err := s.srv.emit(s.ctx, s.get, nil, seq, func(dst []byte, seq uint64, sentAt int64) []byte {
		return appendListChanged(dst, kind, seq, sentAt)
	}, &s.srv.stats.listChanged)
	return seq, err
}

// maxPushBurst bounds the push tool's burst.
const maxPushBurst = 1024

// pusher pushes notifications/message events on its session's GET stream at a fixed
// rate, measured from its start so it neither drifts nor bursts after a slow tick;
// with burst > 1, burst events at a time (rate/burst times a second), appended while
// the stream's writer is held off, so they go out together.
type pusher struct {
	sess  *session
	rate  float64
	pad   int
	burst int
	stopc chan struct{}
	donec chan struct{}
	once  sync.Once
}

func (p *pusher) stop() {
	p.once.Do(func() { close(p.stopc) })
	<-p.donec
}

func (p *pusher) run() {
	defer close(p.donec)
	s := p.sess
	var buf []byte
	var err error
	build := func(dst []byte, seq uint64, sentAt int64) []byte { return appendPush(dst, seq, sentAt, p.pad) }
	_ = runPaced(s.ctx, p.stopc, p.rate/float64(p.burst), 0, func() error {
		s.getMu.Lock()
		defer s.getMu.Unlock()
		if p.burst > 1 {
			s.get.hold()
			defer s.get.release()
		}
		for range p.burst {
			s.mu.Lock()
			s.pushSeq++
			seq := s.pushSeq
			s.mu.Unlock()
			if buf, _, err = s.srv.emit(s.ctx, s.get, buf, seq, build, &s.srv.stats.push); err != nil {
				return err
			}
		}
		return nil
	})
}

// errStopped ends runPaced when its stop channel closes.
var errStopped = errors.New("mockup: stopped")

// maxPacedBatch bounds the events emitted per wake-up so one late tick cannot hold a
// stream for long.
const maxPacedBatch = 256

// runPaced calls fn count times (forever when count is 0) on a fixed-rate schedule
// measured from its start, so it neither drifts nor skips after a slow tick. A rate of
// zero or less calls fn as fast as it returns. It stops early when fn fails, ctx ends or
// stop closes.
func runPaced(ctx context.Context, stop <-chan struct{}, rate float64, count uint64, fn func() error) error {
	var timer *time.Timer
	start := time.Now()
	var done uint64
	for count == 0 || done < count {
		due := uint64(math.MaxUint64)
		if rate > 0 {
			due = pace.Due(time.Since(start), rate)
		}
		for n := 0; done < due && (count == 0 || done < count) && n < maxPacedBatch; n++ {
			if err := fn(); err != nil {
				return err
			}
			done++
		}
		var tick <-chan time.Time
		if rate > 0 && done >= due {
			d := max(time.Until(start.Add(pace.Offset(done, rate))), 0)
			if timer == nil {
				timer = time.NewTimer(d)
				defer timer.Stop()
			} else {
				timer.Reset(d)
			}
			tick = timer.C
		}
		if tick == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-stop:
				return errStopped
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errStopped
		case <-tick:
		}
	}
	return nil
}
