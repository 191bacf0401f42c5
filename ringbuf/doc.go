// Package ringbuf is the bounded event ring behind every SSE stream of the
// gateway.
//
// A Ring holds the encoded events of one stream. Producers (the upstream
// reader goroutines) append with Push; exactly one reader (the stream's
// writer) copies events out with Next, as many as fit into its write buffer,
// and waits on Wait between batches. A client that reconnects with
// Last-Event-ID is replayed from the ring by calling Next with the sequence
// number it last saw.
//
// # Sequence numbers
//
// Every stored event gets the next sequence number of its ring: 1, 2, 3 ...,
// never reused. Events refused by the drop policy get no sequence number
// (seq 0), so the retained events always form one contiguous run of sequence
// numbers, oldest first.
//
// # Limits and policies
//
// A ring has soft limits (Config.Capacity events and Config.MaxBytes bytes of
// event data) and hard limits of HardLimitFactor times each. Room is always
// made at the head (the oldest event): events that were already delivered are
// evicted first, as in any ring. When the head is undelivered the Policy
// decides what happens to an incoming Droppable event. A MustDeliver event is
// never dropped and never drops an undelivered event: it may pass the soft
// limits, up to the hard limits (outcome MustDisconnect, the caller should cut
// the slow reader off so that it resumes later), and beyond them Push fails
// with ErrOverflow and stores nothing.
//
// # Backpressure
//
// A producer that must not lose anything uses TryPushMust instead of Push for
// MustDeliver events: it makes room by evicting delivered events and, past the
// soft limits, by dropping undelivered droppable events from the head, and
// stores the event within the hard limits. When the head is an undelivered
// must-deliver event and the hard limits leave no room, it returns ErrNoRoom
// without changing anything. The producer then stops reading its source and
// waits on Room, which is signalled when the reader delivers events or the
// ring closes, and tries again.
//
// # Snapshots
//
// Snapshot copies a ring's retained events with their sequence numbers and
// classes, and the positions behind every replay decision (last assigned,
// delivered, the newest gone event whose loss fails a replay); Restore
// builds a ring from one, so a stream survives a process restart and its
// readers resume exactly where they would have. A snapshot is plain data
// (the gateway encodes it with its own session records).
//
// # Concurrency contract
//
//   - Push, TryPushMust, Close, Closed, LastSeq, Stats, Limits, Wait, Room
//     and Snapshot are safe for concurrent use by any number of goroutines. Neither
//     push blocks on the reader: it takes the ring's mutex for a bounded
//     amount of work (a copy of the event data and at most a scan of the
//     undelivered events for a coalescing key) and signals the reader
//     without blocking.
//   - Next must be called by one reader at a time. The gateway guarantees it
//     (one attached connection per stream). It is safe to call Next
//     concurrently with Push and Close.
//   - Next calls its callback while holding the ring's mutex. The callback
//     must only copy or encode the bytes it is given: no I/O, no blocking,
//     no calls back into the Ring (that deadlocks), and it must not retain
//     the data slice after it returns (the slot buffer is reused).
//   - Close is idempotent and may race with Push and Next.
//   - A Ring starts no goroutines and owns none.
//
// The ring's one lock is a leaf: no other lock is taken while it is held.
package ringbuf
