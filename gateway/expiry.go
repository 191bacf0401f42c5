package gateway

import (
	"sync"
	"sync/atomic"
)

// An expiry wheel per shard keeps each session under the check period in
// which it may expire at the earliest (its idle deadline or its maximum
// age, whichever comes first). A check of a shard looks only at the
// sessions whose period has come: those that expired end, the others go
// under their new period (activity moved their deadline; requests only
// store a timestamp and never touch the wheel). So a session costs the
// sweeper about one look per idle timeout, not one per check: a million
// idle sessions need no pass over all of them.
//
// A session that ends otherwise (DELETE, its upstream gone, eviction) is
// not looked for on the wheel: it is counted, and once the ended ones are
// at least half of what the wheel holds, the shard's next check takes
// every period at once and drops them (compaction: its cost, a look at
// each session held, is paid for by as many ends as half of them). Without
// it each ended session stayed referenced until its period came, a whole
// idle timeout: under churn at 4,000 sessions a second, 470 bytes each,
// the live heap grew by ~2 MB a second and the collector's marking with it.
type expiryWheel struct {
	// mu guards due and held. A leaf: held only to add or take sessions.
	mu   sync.Mutex
	due  map[int64][]*session // period number -> sessions due then
	held int                  // sessions in due, ended or not
	// ended counts sessions that ended, other than by expiry, since the
	// last compaction: an estimate of the ended ones in due (a session
	// ended twice over or never on the wheel only brings a compaction
	// forward).
	ended atomic.Int64
	// looks counts the sessions examined (the sweeper's cost).
	looks atomic.Uint64
}

// wheelCompactMin is the fewest ended sessions a wheel compacts for: a
// wheel holding few sessions is not compacted at every check.
const wheelCompactMin = 64

func newExpiryWheel() *expiryWheel { return &expiryWheel{due: make(map[int64][]*session)} }

// period is the check period a deadline (unix ns) falls in.
func (s *Server) period(deadline int64) int64 { return deadline / int64(s.expiryCheck) }

// deadline is the earliest moment sess may expire, as seen now.
func (s *Server) deadline(sess *session, now int64) int64 {
	d := sess.lastActive.Load() + int64(s.cfg.SessionIdleTimeout)
	if sess.busy.Load() > 0 {
		d = now + int64(s.cfg.SessionIdleTimeout) // in use: not idle before then
	}
	if s.cfg.SessionMaxAge > 0 {
		d = min(d, sess.created+int64(s.cfg.SessionMaxAge))
	}
	return d
}

// storeSession adds a new session to its shard and to the shard's expiry
// wheel: every session enters the store this way.
func (s *Server) storeSession(sess *session) error {
	if err := s.store.Create(sess.id, sess); err != nil {
		return err
	}
	s.watch(sess)
	return nil
}

// watch puts a stored session on its shard's wheel.
func (s *Server) watch(sess *session) {
	w := s.wheels[s.store.ShardOf(sess.id)]
	p := s.period(s.deadline(sess, s.clock.Now()))
	w.mu.Lock()
	w.due[p] = append(w.due[p], sess)
	w.held++
	w.mu.Unlock()
}

// compactable reports whether the sessions ended since w's last
// compaction are at least half of what it holds: a check of its shard
// (expireDue) is due now, at any sweep of the shard, not only at the next
// expiry check.
func (w *expiryWheel) compactable() bool {
	if w.ended.Load() < wheelCompactMin {
		return false // most sweeps: one atomic load
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.compactableLocked()
}

func (w *expiryWheel) compactableLocked() bool {
	e := w.ended.Load()
	return e >= wheelCompactMin && 2*e >= int64(w.held)
}

// unwatched notes that sess ended other than by expiry: it stays on its
// wheel until the wheel's next compaction (or its period).
func (s *Server) unwatched(sess *session) {
	s.wheels[s.store.ShardOf(sess.id)].ended.Add(1)
}

// expireDue ends the sessions of shard i that expired by now and moves the
// others on the wheel; when ended sessions are half of what the wheel
// holds, it takes every period, to drop them. Ending a session's upstream
// side is I/O: the reaper does it, never the sweeper.
func (s *Server) expireDue(i int, now int64) {
	w := s.wheels[i]
	cur := s.period(now)
	w.mu.Lock()
	compact := w.compactableLocked()
	if compact {
		w.ended.Store(0) // those ending from now on count for the next one
	}
	var due []*session
	for p, list := range w.due {
		if compact || p <= cur {
			due = append(due, list...)
			delete(w.due, p)
		}
	}
	w.held -= len(due)
	w.mu.Unlock()
	w.looks.Add(uint64(len(due)))
	var keep map[int64][]*session
	for _, sess := range due {
		if sess.isClosed() {
			continue // ended meanwhile (DELETE, upstream gone): forget it
		}
		if r := s.expiredReason(sess, now); r >= 0 {
			s.endSession(s.ctx, sess, CloseReason(r), upstreamLater)
			continue
		}
		if keep == nil {
			keep = make(map[int64][]*session)
		}
		// Its own period, even the current one: passes need not fall on
		// period boundaries, so the next pass may still be in this period
		// and must look at it again (a period later could be two passes).
		p := s.period(s.deadline(sess, now))
		keep[p] = append(keep[p], sess)
	}
	if len(keep) == 0 {
		return
	}
	w.mu.Lock()
	for p, list := range keep {
		w.due[p] = append(w.due[p], list...)
		w.held += len(list)
	}
	w.mu.Unlock()
}
