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
type expiryWheel struct {
	// mu guards due. A leaf: held only to add or take sessions.
	mu  sync.Mutex
	due map[int64][]*session // period number -> sessions due then
	// looks counts the sessions examined (the sweeper's cost).
	looks atomic.Uint64
}

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
	w.mu.Unlock()
}

// expireDue ends the sessions of shard i that expired by now and moves the
// others on the wheel. Ending a session's upstream side is I/O: the reaper
// does it, never the sweeper.
func (s *Server) expireDue(i int, now int64) {
	w := s.wheels[i]
	cur := s.period(now)
	w.mu.Lock()
	var due []*session
	for p, list := range w.due {
		if p <= cur {
			due = append(due, list...)
			delete(w.due, p)
		}
	}
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
	}
	w.mu.Unlock()
}
