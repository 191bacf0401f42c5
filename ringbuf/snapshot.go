package ringbuf

import (
	"errors"
	"fmt"
)

// ErrInvalidSnapshot is wrapped by Restore for a snapshot that no ring
// could have produced, or that does not fit the ring's hard limits.
var ErrInvalidSnapshot = errors.New("ringbuf: invalid snapshot")

// Event is one retained event of a Snapshot.
type Event struct {
	Seq   uint64
	Class Class
	Key   uint64 // coalescing key of a droppable event; 0 for none (always for MustDeliver)
	Data  []byte
}

// Snapshot is a copy of a ring's state: its retained events and the
// positions that decide what a reader gets, so that a ring restored from it
// (after a process restart) serves every reader exactly as the original
// would have: the same sequence numbers, the same replays and the same
// refusals of replays across gone must-deliver events.
type Snapshot struct {
	// Events are the retained events, oldest first, with consecutive
	// sequence numbers ending at Last.
	Events []Event
	// Last is the highest sequence number assigned, 0 if none.
	Last uint64
	// Delivered is the highest sequence number handed to a reader: the
	// events up to it may be evicted, and no longer coalesce.
	Delivered uint64
	// Lost is the highest evicted sequence number whose loss fails a replay
	// (a must-deliver event, or any event with StrictReplay), 0 if none.
	Lost uint64
	// SkipMark is the highest sequence number already counted in
	// Stats.Skipped.
	SkipMark uint64
	// Closed: the ring was closed (its stream finished).
	Closed bool
	// Stats are the ring's counters; Len and Bytes describe Events.
	Stats Stats
}

// Snapshot returns a copy of the ring's state. The event data is copied
// (into one allocation), so the snapshot stays valid whatever the ring does
// next. Safe for concurrent use; it holds the ring's lock while copying.
func (r *Ring) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{Last: r.last, Delivered: r.delivered, Lost: r.lost, SkipMark: r.skipMark, Closed: r.closed, Stats: r.statsLocked()}
	n := s.Stats.Len
	if n == 0 {
		return s
	}
	buf := make([]byte, 0, r.bytes)
	s.Events = make([]Event, 0, n)
	for seq := r.first; seq <= r.last; seq++ {
		sl := &r.slots[seq&r.mask]
		start := len(buf)
		buf = append(buf, sl.data...)
		s.Events = append(s.Events, Event{Seq: seq, Class: sl.class, Key: sl.key, Data: buf[start:len(buf):len(buf)]})
	}
	return s
}

// Restore returns a ring configured by cfg holding a snapshot's events and
// positions; the event data is copied. Events that were delivered already
// are evicted from the head if the snapshot does not fit cfg's hard limits
// otherwise (a smaller ring than the one it was taken from): a replay
// across an evicted must-deliver event then fails as it would have in the
// original ring. Errors wrap ErrInvalidConfig (cfg) or ErrInvalidSnapshot:
// inconsistent positions or sequence numbers, an unknown class, a keyed
// must-deliver event, or undelivered events beyond the hard limits.
func Restore(cfg Config, s Snapshot) (*Ring, error) {
	r, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	events := s.Events
	first := s.Last + 1
	if len(events) > 0 {
		first = events[0].Seq
	}
	bytes := 0
	for i := range events {
		bytes += len(events[i].Data)
	}
	lost := s.Lost
	var evicted uint64
	for len(events) > 0 && (len(events) > r.lim.HardCapacity || bytes > r.lim.HardMaxBytes) && events[0].Seq <= s.Delivered {
		if events[0].Class == MustDeliver || r.strict {
			lost = events[0].Seq
		}
		bytes -= len(events[0].Data)
		events = events[1:]
		first++
		evicted++
	}
	if len(events) > r.lim.HardCapacity || bytes > r.lim.HardMaxBytes {
		return nil, fmt.Errorf("ringbuf.Restore: %d undelivered events of %d bytes exceed the ring's hard limits (%d events, %d bytes): %w",
			len(events), bytes, r.lim.HardCapacity, r.lim.HardMaxBytes, ErrInvalidSnapshot)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.first, r.last = first, first-1
	for i := range events {
		r.storeLocked(events[i].Class, events[i].Key, events[i].Data)
	}
	r.delivered, r.lost, r.skipMark = s.Delivered, lost, s.SkipMark
	r.stats = s.Stats
	r.pushed, r.evicted = s.Stats.Pushed, s.Stats.Evicted+evicted
	r.stats.Pushed, r.stats.Evicted, r.stats.Len, r.stats.Bytes = 0, 0, 0, 0
	if s.Closed {
		r.closed = true
		r.isClosed.Store(true)
		r.signal()
	}
	return r, nil
}

// validate checks that a ring could have produced s.
func (s *Snapshot) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ringbuf.Restore: "+format+": %w", append(args, ErrInvalidSnapshot)...)
	}
	first := s.Last + 1
	if len(s.Events) > 0 {
		first = s.Events[0].Seq
		if first == 0 {
			return bad("event with seq 0")
		}
		if end := s.Events[len(s.Events)-1].Seq; end != s.Last {
			return bad("newest event %d is not the last seq %d", end, s.Last)
		}
	}
	for i := range s.Events {
		e := &s.Events[i]
		switch {
		case e.Seq != first+uint64(i):
			return bad("event %d has seq %d, want %d (consecutive)", i, e.Seq, first+uint64(i))
		case e.Class > MustDeliver:
			return bad("event %d has unknown class %d", e.Seq, e.Class)
		case e.Class == MustDeliver && e.Key != 0:
			return bad("must-deliver event %d has a coalescing key", e.Seq)
		}
	}
	switch {
	case s.Delivered > s.Last:
		return bad("delivered %d is ahead of the last seq %d", s.Delivered, s.Last)
	case s.Lost >= first:
		return bad("lost %d is not before the oldest retained seq %d", s.Lost, first)
	case s.SkipMark >= first:
		return bad("skip mark %d is not before the oldest retained seq %d", s.SkipMark, first)
	}
	return nil
}
