package ringbuf

import (
	"sync"
	"sync/atomic"
)

// slot is one retained event. Its buffer is reused by later events.
type slot struct {
	data  []byte
	key   uint64 // coalescing key of a droppable event, 0 for none
	class Class
}

// Ring is a bounded ring of events for one stream. See the package
// documentation for the concurrency contract. A Ring must not be copied.
//
// The fields a push or a read touches come first, in three cache lines: a
// stream's ring is cold again by its next event, and each line it touches
// is a miss. mu guards every field but the read-only ones (set by New) and
// the atomics.
type Ring struct {
	_ noCopy

	mu sync.Mutex
	// isClosed mirrors closed (written under mu) so Closed needs no lock.
	isClosed atomic.Bool
	closed   bool
	wantRoom bool   // a producer waits on room: Next signals it when delivered advances
	policy   Policy // read-only
	strict   bool   // read-only
	noFast   bool   // read-only; tests only: every Push takes the general path
	slots    []slot // nil until the first Push; length a power of two
	first    uint64 // seq of the oldest retained event; last+1 when empty
	last     uint64 // highest seq assigned, 0 if none

	mask      uint64 // len(slots) - 1
	delivered uint64 // highest seq delivered to a reader
	lost      uint64 // highest evicted seq whose loss fails a replay
	bytes     int    // bytes of retained event data
	keyed     int    // retained events with a coalescing key
	// wake is the reader's one-slot wake-up channel, signalled without
	// blocking; made by the first Wait (a ring read whole before its
	// reader ever waits, as most answer streams are, never pays for it).
	// (An atomic.Value: a channel is stored in it without an allocation.)
	wake atomic.Value // chan struct{}
	// pushed and evicted are Stats.Pushed and Stats.Evicted, counted here
	// rather than in stats, which an event would touch one more line for.
	pushed uint64

	lim     Limits // read-only
	evicted uint64
	// spare is the unused rest of the block small events' buffers are
	// carved from (carveLocked); nil until the first small event.
	spare []byte

	skipMark uint64        // highest seq already counted in stats.Skipped
	room     chan struct{} // one slot, made by the first Room call
	stats    Stats         // the other counters; statsLocked fills in the rest
}

// New returns an empty ring configured by cfg (see Config for defaults).
// Errors wrap ErrInvalidConfig. The slot array is allocated on the first
// Push, so an idle ring costs a few hundred bytes.
func New(cfg Config) (*Ring, error) {
	lim, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	return &Ring{
		lim:    lim,
		policy: cfg.Policy,
		strict: cfg.StrictReplay,
		first:  1,
	}, nil
}

// Limits returns the ring's effective soft and hard limits.
func (r *Ring) Limits() Limits { return r.lim }

// Wait returns the ring's one-slot wake-up channel. It receives a value
// after a Push that stored or coalesced an event and after Close. Several
// pushes may collapse into one signal, so the reader drains with Next until
// it finds nothing new before waiting again. Safe for concurrent use.
func (r *Ring) Wait() <-chan struct{} {
	if c, ok := r.wake.Load().(chan struct{}); ok {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.wake.Load().(chan struct{}); ok {
		return c
	}
	// A push or Close before now signalled nothing: made with the signal
	// they would have left, if something is there to read.
	c := make(chan struct{}, 1)
	if r.closed || r.last > r.delivered {
		c <- struct{}{}
	}
	r.wake.Store(c)
	return c
}

func (r *Ring) signal() {
	if c, ok := r.wake.Load().(chan struct{}); ok {
		signalOne(c)
	}
}

// signalOne sends on a one-slot channel without blocking.
func signalOne(c chan struct{}) {
	if len(c) != 0 {
		return // a wake-up is already pending
	}
	select {
	case c <- struct{}{}:
	default:
	}
}

// Room returns the one-slot channel a producer waits on after TryPushMust
// returned ErrNoRoom. It receives a value when a reader marks events
// delivered (so they can be evicted) and after Close. A signal may be
// stale: retry TryPushMust and wait again on ErrNoRoom. Safe for
// concurrent use.
func (r *Ring) Room() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.room == nil {
		r.room = make(chan struct{}, 1) // only rings that ever make a producer wait pay for it
		if r.closed {
			r.room <- struct{}{}
		}
	}
	return r.room
}

// Close marks the ring closed and wakes the reader and a waiting producer.
// Later pushes fail with ErrClosed; retained events stay readable, and Next
// returns ErrClosed once the reader has read past them. Idempotent, never
// blocks.
func (r *Ring) Close() {
	r.mu.Lock()
	r.closed = true
	r.isClosed.Store(true)
	room := r.room
	r.mu.Unlock()
	r.signal()
	if room != nil {
		signalOne(room)
	}
}

// Closed reports whether Close was called. Never blocks.
func (r *Ring) Closed() bool { return r.isClosed.Load() }

// LastSeq returns the highest sequence number assigned so far, 0 if none.
// It takes the ring's lock briefly (keeping an atomic copy would cost every
// Push a full barrier).
func (r *Ring) LastSeq() uint64 {
	r.mu.Lock()
	last := r.last
	r.mu.Unlock()
	return last
}

// Stats returns a snapshot of the ring's counters and current size.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	s := r.statsLocked()
	r.mu.Unlock()
	return s
}

// statsLocked returns the ring's counters, Len and Bytes included.
func (r *Ring) statsLocked() Stats {
	s := r.stats
	s.Pushed, s.Evicted = r.pushed, r.evicted
	s.Len = int(r.last + 1 - r.first)
	s.Bytes = r.bytes
	return s
}

// Push copies data into the ring and returns the event's sequence number
// and what happened to it (see Outcome). The data slice is not retained.
//
// A non-zero key on a Droppable event is a coalescing key. While the ring
// has room (after evicting delivered events) every event is stored, so a
// reader that keeps up sees every update. Only when the ring is full of
// undelivered events, and a retained undelivered droppable event has the
// same key, is that event's data replaced in place (outcome Coalesced, its
// seq is returned) before the policy would drop anything. MustDeliver
// events ignore the key: merging one would drop a message.
//
// A refused event gets seq 0 and a nil error. Push fails with ErrClosed
// after Close, with ErrOverflow when a MustDeliver event would pass the hard
// limits, and with ErrInvalidClass for an unknown class; the outcome is
// meaningless then. Safe for concurrent producers; never waits for the
// reader; signals the reader without blocking when the event was stored or
// coalesced.
func (r *Ring) Push(class Class, key uint64, data []byte) (seq uint64, out Outcome, err error) {
	if class > MustDeliver {
		return 0, Accepted, errPushClass
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, Accepted, errPushClosed
	}
	if !r.noFast {
		seq = r.pushFastLocked(class, key, data)
	}
	if seq != 0 {
		r.mu.Unlock()
		r.signal()
		return seq, Accepted, nil
	}
	if class == Droppable {
		seq, out = r.pushDroppableLocked(key, data)
	} else {
		seq, out, err = r.pushMustDeliverLocked(data)
	}
	r.mu.Unlock()
	if seq != 0 {
		r.signal()
	}
	return seq, out, err
}

// TryPushMust stores a MustDeliver event without ever losing an undelivered
// must-deliver event or passing the hard limits: it is the producer side of
// backpressure. Room is made first by evicting delivered events, as for any
// push; an event that then fits the soft limits is stored (Accepted).
// Otherwise it is stored past the soft limits as long as it fits the hard
// ones (counted in Stats.PastSoftLimit), after dropping undelivered
// droppable events from the head if that is what it takes (DroppedOldest,
// whatever the policy: a must-deliver event outranks them). When the head
// is an undelivered must-deliver event and the hard limits leave no room,
// nothing changes and it returns ErrNoRoom: the producer stops reading its
// source, waits on Room (or its own cancellation) and tries again. An event
// larger than the hard byte limit can never be stored: ErrOverflow. After
// Close: ErrClosed. It never waits itself.
func (r *Ring) TryPushMust(data []byte) (uint64, Outcome, error) {
	n := len(data)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, Accepted, errPushMustClosed
	}
	if n > r.lim.HardMaxBytes {
		r.stats.Overflow++
		r.mu.Unlock()
		return 0, Accepted, errPushMustOverflow
	}
	out := Accepted
	if !r.makeRoomLocked(1, n, r.last+1) {
		// The head is undelivered now (or the ring is empty).
		for !r.fitsLocked(1, n, r.lim.HardCapacity, r.lim.HardMaxBytes) &&
			r.first <= r.last && r.slots[r.first&r.mask].class == Droppable {
			r.evictHeadLocked()
			r.stats.DroppedOldest++
			out = DroppedOldest
		}
		if !r.fitsLocked(1, n, r.lim.HardCapacity, r.lim.HardMaxBytes) {
			r.wantRoom = true
			if r.room == nil { // made here, under the lock, so no signal is lost before the producer waits
				r.room = make(chan struct{}, 1)
			}
			r.mu.Unlock()
			return 0, out, errPushMustNoRoom
		}
		r.stats.PastSoftLimit++
	}
	seq := r.storeLocked(MustDeliver, 0, data)
	r.mu.Unlock()
	r.signal()
	return seq, out, nil
}

// pushFastLocked stores an event when no policy decision is needed, which
// is every push of a stream whose reader keeps up: the event fits the byte
// budget and a free slot, after evicting at most the head if it was
// delivered (the first step makeRoomLocked would take). It returns 0,
// having changed nothing, when the general path must decide.
func (r *Ring) pushFastLocked(class Class, key uint64, data []byte) uint64 {
	n := len(data)
	count := int(r.last + 1 - r.first)
	free := r.lim.MaxBytes - r.bytes
	evict := count >= r.lim.Capacity
	if evict {
		if count > r.lim.Capacity || r.first > r.delivered {
			return 0
		}
		count--
		free += len(r.slots[r.first&r.mask].data)
	}
	if count == len(r.slots) || n > free {
		return 0
	}
	if evict {
		r.evictHeadLocked()
		r.evicted++
	}
	if class == MustDeliver {
		key = 0 // a must-deliver event is never merged
	}
	return r.storeLocked(class, key, data)
}

// pushDroppableLocked stores, coalesces or refuses a droppable event.
func (r *Ring) pushDroppableLocked(key uint64, data []byte) (uint64, Outcome) {
	n := len(data)
	if n > r.lim.MaxBytes {
		r.stats.DroppedNewest++
		return 0, DroppedNewest
	}
	stop := r.last + 1
	if r.makeRoomLocked(1, n, stop) {
		return r.storeLocked(Droppable, key, data), Accepted
	}
	// Full of undelivered events: coalescing into an undelivered event with
	// the same key loses less than the policy would.
	if key != 0 && r.keyed > 0 {
		if seq := r.findKeyLocked(key); seq != 0 {
			return r.coalesceLocked(seq, data)
		}
	}
	switch r.policy {
	case DropOldest:
		if r.dropOldestLocked(1, n, stop) {
			return r.storeLocked(Droppable, key, data), DroppedOldest
		}
		r.stats.DroppedNewest++
		return 0, DroppedNewest
	case DropNewest:
		r.stats.DroppedNewest++
		return 0, DroppedNewest
	default: // Disconnect
		r.stats.DroppedDisconnect++
		return 0, MustDisconnect
	}
}

// coalesceLocked replaces the data of the undelivered droppable event seq,
// if the byte budget allows (after evicting delivered events, and under
// DropOldest undelivered droppable events older than seq). Otherwise the
// incoming data is refused as the policy says and the old data stays.
func (r *Ring) coalesceLocked(seq uint64, data []byte) (uint64, Outcome) {
	s := &r.slots[seq&r.mask]
	grow := len(data) - len(s.data)
	fits := grow <= 0 || r.makeRoomLocked(0, grow, seq) ||
		(r.policy == DropOldest && r.dropOldestLocked(0, grow, seq))
	if !fits {
		if r.policy == Disconnect {
			r.stats.DroppedDisconnect++
			return 0, MustDisconnect
		}
		r.stats.DroppedNewest++
		return 0, DroppedNewest
	}
	if cap(s.data) > ReleaseBufferAbove && len(data) <= ReleaseBufferAbove {
		s.data = nil
	}
	r.setDataLocked(s, data)
	r.bytes += grow
	r.stats.Coalesced++
	return seq, Coalesced
}

// pushMustDeliverLocked stores a must-deliver event within the soft limits
// if delivered events can make room, else within the hard limits (outcome
// MustDisconnect), else fails with ErrOverflow. It never drops an
// undelivered event.
func (r *Ring) pushMustDeliverLocked(data []byte) (uint64, Outcome, error) {
	n := len(data)
	if n > r.lim.HardMaxBytes { // cannot fit: evict nothing for it
		r.stats.Overflow++
		return 0, Accepted, errPushOverflow
	}
	if r.makeRoomLocked(1, n, r.last+1) {
		return r.storeLocked(MustDeliver, 0, data), Accepted, nil
	}
	if r.fitsLocked(1, n, r.lim.HardCapacity, r.lim.HardMaxBytes) {
		r.stats.PastSoftLimit++
		return r.storeLocked(MustDeliver, 0, data), MustDisconnect, nil
	}
	r.stats.Overflow++
	return 0, Accepted, errPushOverflow
}

// fitsLocked reports whether addEvents more events and addBytes more bytes
// stay within maxEvents and maxBytes.
func (r *Ring) fitsLocked(addEvents, addBytes, maxEvents, maxBytes int) bool {
	count := int(r.last + 1 - r.first)
	return (addEvents == 0 || count+addEvents <= maxEvents) && r.bytes+addBytes <= maxBytes
}

// makeRoomLocked evicts delivered events from the head, never reaching
// seq stop, until addEvents and addBytes fit the soft limits. It reports
// whether they fit.
func (r *Ring) makeRoomLocked(addEvents, addBytes int, stop uint64) bool {
	for !r.fitsLocked(addEvents, addBytes, r.lim.Capacity, r.lim.MaxBytes) {
		if r.first > r.delivered || r.first >= stop {
			return false
		}
		r.evictHeadLocked()
		r.evicted++
	}
	return true
}

// dropOldestLocked drops undelivered droppable events from the head, never
// reaching seq stop, if that makes addEvents and addBytes fit the soft
// limits; otherwise it drops nothing. It is called after makeRoomLocked, so
// the head is undelivered. It reports whether they fit.
func (r *Ring) dropOldestLocked(addEvents, addBytes int, stop uint64) bool {
	count := int(r.last + 1 - r.first)
	bytes := r.bytes
	k := 0
	for seq := r.first; ; seq++ {
		if (addEvents == 0 || count-k+addEvents <= r.lim.Capacity) && bytes+addBytes <= r.lim.MaxBytes {
			break
		}
		if seq >= stop || seq > r.last || r.slots[seq&r.mask].class != Droppable {
			return false
		}
		bytes -= len(r.slots[seq&r.mask].data)
		k++
	}
	for ; k > 0; k-- {
		if r.first <= r.delivered {
			r.evicted++
		} else {
			r.stats.DroppedOldest++
		}
		r.evictHeadLocked()
	}
	return true
}

// evictHeadLocked removes the oldest retained event. The ring must not be
// empty.
func (r *Ring) evictHeadLocked() {
	s := &r.slots[r.first&r.mask]
	r.bytes -= len(s.data)
	if cap(s.data) > ReleaseBufferAbove {
		s.data = nil
	} else {
		s.data = s.data[:0]
	}
	if s.key != 0 {
		r.keyed--
		s.key = 0
	}
	if s.class == MustDeliver || r.strict {
		r.lost = r.first
	}
	r.first++
}

// findKeyLocked returns the seq of the newest retained, undelivered
// droppable event with the given key, or 0. It scans the undelivered
// events newest first, so it costs O(undelivered); it is only called when
// some retained event has a key.
func (r *Ring) findKeyLocked(key uint64) uint64 {
	lo := r.first
	if r.delivered >= lo {
		lo = r.delivered + 1
	}
	for seq := r.last; seq >= lo && seq != 0; seq-- {
		if r.slots[seq&r.mask].key == key {
			return seq
		}
	}
	return 0
}

// storeLocked appends an event that the caller checked fits the limits and
// returns its seq.
func (r *Ring) storeLocked(class Class, key uint64, data []byte) uint64 {
	count := int(r.last + 1 - r.first)
	if count == len(r.slots) {
		r.growLocked()
	}
	seq := r.last + 1
	s := &r.slots[seq&r.mask]
	r.setDataLocked(s, data)
	s.class = class
	s.key = key
	if key != 0 {
		r.keyed++
	}
	r.bytes += len(data)
	r.last = seq
	r.pushed++
	return seq
}

// setDataLocked copies data into s: into the slot's own buffer when it is
// large enough, else into a new one (carveLocked).
func (r *Ring) setDataLocked(s *slot, data []byte) {
	if cap(s.data) >= len(data) {
		// Reuse the slot's buffer without storing its pointer again.
		s.data = s.data[:len(data)]
		copy(s.data, data)
		return
	}
	if len(data) > carveMax {
		s.data = append(s.data[:0], data...)
		return
	}
	s.data = r.carveLocked(len(data))
	copy(s.data, data)
}

// Slot buffers for events of up to carveMax bytes are carved, carveAlign
// bytes apart, from blocks of at most carveBlock bytes rather than
// allocated one by one: a new stream's ring, which fills a fresh slot with
// every event until it holds Capacity of them, then allocates about once
// per carveBlock bytes instead of once per event (less for the allocator
// and the collector, and events pushed together lie together). A block is
// twice the data the ring retains, up to carveBlock (one event's buffer for
// the first event, so a ring that only ever holds an answer costs what it
// did). A buffer's capacity ends at its own window, so no slot
// writes into another's; a block lives while any slot's buffer is in it.
const (
	carveMax   = 1 << 10
	carveAlign = 16
	carveBlock = 4 << 10
)

// carveLocked returns a new buffer of length n <= carveMax, carved from the
// ring's current block (a new one when the rest of it is too short).
func (r *Ring) carveLocked(n int) []byte {
	c := (n + carveAlign - 1) &^ (carveAlign - 1)
	if len(r.spare) < c {
		r.spare = make([]byte, min(max(2*r.bytes, c), carveBlock))
	}
	b := r.spare[:n:c]
	r.spare = r.spare[c:]
	return b
}

// growLocked doubles the slot array (or allocates the first one), keeping
// each retained event at index seq&mask. The caller guarantees that the
// retained count stays within the hard capacity, so the array never grows
// past it.
func (r *Ring) growLocked() {
	size := initialSlots
	if len(r.slots) > 0 {
		size = 2 * len(r.slots)
	}
	size = min(size, r.lim.HardCapacity)
	slots := make([]slot, size)
	mask := uint64(size - 1)
	for seq := r.first; seq <= r.last; seq++ {
		slots[seq&mask] = r.slots[seq&r.mask]
	}
	r.slots, r.mask = slots, mask
}

// Next calls fn for each retained event with seq > after, oldest first,
// while fn returns true. fn returning false means "did not fit, stop": that
// event is not consumed and is offered again by the next call. Next returns
// the seq of the last consumed event (after if none) and how many events
// after `after` are gone (skipped droppable events, counted in
// Stats.Skipped once per seq; a later call from the same position reports
// them again). Events up to the returned last are marked
// delivered, which makes them evictable and stops coalescing into them.
//
// If an event the reader needs is gone (a MustDeliver event, or with
// StrictReplay any event) Next visits nothing and returns an *EvictedError.
// If after is above LastSeq it returns ErrFutureSeq. If the ring is closed
// and no event after `after` remains, it returns ErrClosed (with the
// skipped count). Errors leave last == after.
//
// fn runs under the ring's lock: it must only copy or encode the bytes,
// must not block or call into the Ring, and must not keep data. Only one
// reader may call Next at a time; it may run concurrently with Push.
func (r *Ring) Next(after uint64, fn func(seq uint64, data []byte) bool) (last, skipped uint64, err error) {
	return r.NextTo(after, encodeFunc(fn))
}

// An Encoder takes the events NextTo hands out, as Next's fn does.
type Encoder interface {
	// Encode copies or encodes one event; false: it did not fit, stop.
	Encode(seq uint64, data []byte) bool
}

type encodeFunc func(seq uint64, data []byte) bool

func (f encodeFunc) Encode(seq uint64, data []byte) bool { return f(seq, data) }

// NextTo is Next with an Encoder: a reader that implements it hands the
// ring itself, where a method value would be a closure of its own, in a
// cache line of its own (a miss per call on a reader whose state is cold
// between events).
func (r *Ring) NextTo(after uint64, e Encoder) (last, skipped uint64, err error) {
	r.mu.Lock()
	if after > r.last {
		r.mu.Unlock()
		return after, 0, errNextFuture
	}
	if after < r.lost {
		e := &EvictedError{After: after, Missing: r.first - 1 - after}
		r.mu.Unlock()
		return after, 0, e
	}
	from := after + 1
	if from < r.first {
		skipped = r.first - from
		if r.first-1 > r.skipMark {
			r.stats.Skipped += r.first - 1 - max(r.skipMark, after)
			r.skipMark = r.first - 1
		}
		from = r.first
	}
	last = after
	slots, mask, end := r.slots, r.mask, r.last // fn cannot change them
	for seq := from; seq <= end; seq++ {
		if !e.Encode(seq, slots[seq&mask].data) {
			break
		}
		last = seq
	}
	var room chan struct{}
	if last > r.delivered {
		r.delivered = last
		if r.wantRoom {
			r.wantRoom, room = false, r.room
		}
	}
	if r.closed && from > r.last {
		err = errNextClosed
	}
	r.mu.Unlock()
	if room != nil {
		signalOne(room)
	}
	return last, skipped, err
}
