package ringbuf

import (
	"errors"
	"fmt"
	"math"
)

// Class says whether an event may be dropped under backpressure.
type Class uint8

const (
	// Droppable events (progress, logging, list_changed and other
	// notifications) may be refused or dropped by the Policy and may be
	// coalesced by key.
	Droppable Class = iota
	// MustDeliver events (responses and server-to-client requests) are
	// never dropped and never coalesced.
	MustDeliver
)

// String returns "droppable" or "must-deliver".
func (c Class) String() string {
	switch c {
	case Droppable:
		return "droppable"
	case MustDeliver:
		return "must-deliver"
	}
	return fmt.Sprintf("Class(%d)", uint8(c))
}

// Policy says what happens to an incoming Droppable event when the ring is at
// its soft limits and its oldest event has not been delivered yet.
type Policy uint8

const (
	// DropOldest evicts the oldest undelivered droppable events to make
	// room. If the oldest undelivered event is MustDeliver it cannot be
	// dropped, so the incoming event is refused instead (outcome
	// DroppedNewest, counted in Stats.DroppedNewest).
	DropOldest Policy = iota
	// DropNewest refuses the incoming droppable event.
	DropNewest
	// Disconnect refuses the incoming droppable event and tells the caller
	// to cut the reader off (outcome MustDisconnect).
	Disconnect
)

// String returns the policy's name as accepted by ParsePolicy.
func (p Policy) String() string {
	switch p {
	case DropOldest:
		return "drop-oldest"
	case DropNewest:
		return "drop-newest"
	case Disconnect:
		return "disconnect"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy parses "drop-oldest", "drop-newest" or "disconnect". Any other
// string yields an error wrapping ErrInvalidConfig.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "drop-oldest":
		return DropOldest, nil
	case "drop-newest":
		return DropNewest, nil
	case "disconnect":
		return Disconnect, nil
	}
	return 0, fmt.Errorf("ringbuf.ParsePolicy: unknown policy %q (want drop-oldest, drop-newest or disconnect): %w", s, ErrInvalidConfig)
}

// Outcome says what Push did with an event.
type Outcome uint8

const (
	// Accepted: the event was stored. Older, already delivered events may
	// have been evicted to make room (normal ring wrap).
	Accepted Outcome = iota
	// Coalesced: the ring was full of undelivered events and the key matched
	// a retained, not yet delivered droppable event, whose data was replaced
	// in place. The returned seq is that
	// event's seq; it keeps its position.
	Coalesced
	// DroppedOldest: the event was stored after one or more undelivered
	// droppable events were dropped from the head (DropOldest policy).
	DroppedOldest
	// DroppedNewest: the incoming droppable event was refused (seq 0).
	DroppedNewest
	// MustDisconnect: the reader is too far behind and the caller must cut
	// its connection. For a Droppable event under the Disconnect policy the
	// event was refused (seq 0); for a MustDeliver event (any policy) it
	// was stored past the soft limits.
	MustDisconnect
)

// String returns a lower-case name for the outcome.
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Coalesced:
		return "coalesced"
	case DroppedOldest:
		return "dropped-oldest"
	case DroppedNewest:
		return "dropped-newest"
	case MustDisconnect:
		return "must-disconnect"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

const (
	// DefaultCapacity is the soft event limit used when Config.Capacity is 0.
	DefaultCapacity = 256
	// DefaultMaxBytes is the soft byte budget used when Config.MaxBytes is 0.
	DefaultMaxBytes = 1 << 20
	// HardLimitFactor is how far MustDeliver events may push a ring past
	// its soft limits: up to HardLimitFactor*Capacity events and
	// HardLimitFactor*MaxBytes bytes. Beyond that Push returns ErrOverflow.
	HardLimitFactor = 2
	// MaxCapacity is the largest accepted Config.Capacity (after rounding
	// up to a power of two).
	MaxCapacity = 1 << 24
	// MaxMaxBytes is the largest accepted Config.MaxBytes.
	MaxMaxBytes = math.MaxInt / (2 * HardLimitFactor)
	// ReleaseBufferAbove is the slot buffer capacity above which an evicted
	// slot's buffer is released instead of kept for reuse, so that one huge
	// event does not pin memory for the life of the ring.
	ReleaseBufferAbove = 64 << 10
)

// initialSlots is the slot array size allocated on the first Push; it
// doubles as needed up to the hard capacity.
const initialSlots = 8

// Config configures a Ring. The zero value is valid: DefaultCapacity events,
// DefaultMaxBytes bytes, DropOldest, lenient replay.
type Config struct {
	// Capacity is the soft limit on retained events, rounded up to a power
	// of two. 0 means DefaultCapacity; negative or above MaxCapacity is an
	// error.
	Capacity int
	// MaxBytes is the soft budget of retained event data in bytes. 0 means
	// DefaultMaxBytes; negative or above MaxMaxBytes is an error.
	MaxBytes int
	// Policy applies to incoming Droppable events when the ring is full.
	// The zero value is DropOldest; an unknown value is an error.
	Policy Policy
	// StrictReplay makes a replay (Next) fail with ErrEvicted if any event
	// after the requested position is gone. When false (the default) only
	// a gone MustDeliver event fails a replay; gone droppable events are
	// reported as skipped. Under StrictReplay a live reader that falls
	// behind a DropOldest ring gets ErrEvicted too: the events dropped for
	// it are gone, and the caller must restart it from what is left.
	StrictReplay bool
}

// Limits are a ring's effective limits after defaults and rounding.
type Limits struct {
	Capacity     int // soft event limit (power of two)
	MaxBytes     int // soft byte budget
	HardCapacity int // HardLimitFactor * Capacity
	HardMaxBytes int // HardLimitFactor * MaxBytes
}

// Stats are a ring's counters and current size. Counters only grow.
type Stats struct {
	Pushed            uint64 // events stored with a new seq (equals LastSeq)
	Coalesced         uint64 // pushes merged into an undelivered event
	DroppedOldest     uint64 // undelivered droppable events evicted by DropOldest
	DroppedNewest     uint64 // incoming droppable events refused (DropNewest, MustDeliver head, larger than MaxBytes)
	DroppedDisconnect uint64 // incoming droppable events refused under Disconnect
	PastSoftLimit     uint64 // MustDeliver events stored past the soft limits (outcome MustDisconnect)
	Overflow          uint64 // MustDeliver pushes refused with ErrOverflow
	Evicted           uint64 // delivered events evicted to make room (normal wrap)
	Skipped           uint64 // gone events reported to readers by Next, each seq counted at most once
	Len               int    // events retained now
	Bytes             int    // bytes of event data retained now
}

var (
	// ErrClosed is returned by Push after Close, and by Next after Close
	// once every event after the reader's position was read.
	ErrClosed = errors.New("ringbuf: ring closed")
	// ErrEvicted means a replay position is no longer available. Next
	// returns it as an *EvictedError.
	ErrEvicted = errors.New("ringbuf: events evicted")
	// ErrOverflow means a MustDeliver event would pass the hard limits;
	// nothing was stored.
	ErrOverflow = errors.New("ringbuf: hard limit exceeded")
	// ErrNoRoom means TryPushMust could not store its event without going
	// past the soft limits while undelivered events remain; wait on Room
	// and try again.
	ErrNoRoom = errors.New("ringbuf: no room for the event until the reader catches up")
	// ErrFutureSeq means Next was asked for events after a sequence
	// number the ring has not assigned yet (a bogus Last-Event-ID).
	ErrFutureSeq = errors.New("ringbuf: sequence number not assigned yet")
	// ErrInvalidConfig is wrapped by New and ParsePolicy for bad settings.
	ErrInvalidConfig = errors.New("ringbuf: invalid config")
	// ErrInvalidClass is wrapped by Push for an unknown Class.
	ErrInvalidClass = errors.New("ringbuf: invalid class")
)

// Pre-wrapped errors of the hot paths, so returning them does not allocate.
var (
	errPushClosed   = fmt.Errorf("ringbuf.Push: %w", ErrClosed)
	errPushOverflow = fmt.Errorf("ringbuf.Push: %w", ErrOverflow)
	errPushClass    = fmt.Errorf("ringbuf.Push: %w", ErrInvalidClass)
	errNextClosed   = fmt.Errorf("ringbuf.Next: %w", ErrClosed)

	errPushMustClosed   = fmt.Errorf("ringbuf.TryPushMust: %w", ErrClosed)
	errPushMustOverflow = fmt.Errorf("ringbuf.TryPushMust: %w", ErrOverflow)
	errPushMustNoRoom   = fmt.Errorf("ringbuf.TryPushMust: %w", ErrNoRoom)
	errNextFuture       = fmt.Errorf("ringbuf.Next: %w", ErrFutureSeq)
)

// EvictedError is returned by Next when an event the reader needs is gone.
// errors.Is(err, ErrEvicted) reports true for it.
type EvictedError struct {
	// After is the position the reader asked to resume after.
	After uint64
	// Missing is how many sequence numbers after After are no longer
	// retained (droppable and must-deliver, delivered or not). It is exact
	// for sequence numbers; it cannot count events that never got one
	// (refused by the policy) or updates merged by coalescing, so read it
	// as the best estimate of what the client missed.
	Missing uint64
}

func (e *EvictedError) Error() string {
	return fmt.Sprintf("ringbuf.Next: %d events after seq %d are gone: %v", e.Missing, e.After, ErrEvicted)
}

// Is reports whether target is ErrEvicted.
func (e *EvictedError) Is(target error) bool { return target == ErrEvicted }

// Unwrap returns ErrEvicted.
func (e *EvictedError) Unwrap() error { return ErrEvicted }

// normalize fills in defaults and validates cfg.
func (cfg Config) normalize() (Limits, error) {
	c, b := cfg.Capacity, cfg.MaxBytes
	switch {
	case c < 0 || c > MaxCapacity:
		return Limits{}, fmt.Errorf("ringbuf.New: capacity %d outside [0, %d]: %w", c, MaxCapacity, ErrInvalidConfig)
	case b < 0 || b > MaxMaxBytes:
		return Limits{}, fmt.Errorf("ringbuf.New: max bytes %d outside [0, %d]: %w", b, MaxMaxBytes, ErrInvalidConfig)
	case cfg.Policy > Disconnect:
		return Limits{}, fmt.Errorf("ringbuf.New: unknown policy %d: %w", uint8(cfg.Policy), ErrInvalidConfig)
	}
	if c == 0 {
		c = DefaultCapacity
	}
	if b == 0 {
		b = DefaultMaxBytes
	}
	p := 1
	for p < c {
		p <<= 1
	}
	return Limits{Capacity: p, MaxBytes: b, HardCapacity: HardLimitFactor * p, HardMaxBytes: HardLimitFactor * b}, nil
}

// noCopy makes go vet's copylocks check flag copies of a Ring.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
