// Package shard is the session store of the gateway: values keyed by string
// IDs, spread over a power-of-two array of xsync.MapOf shards.
//
// Gateway IDs are 32 random hex digits; the maps hold an ID of 32 bytes as
// four words in the map entry itself, so a lookup's key comparison reads no
// separately allocated string. Any other string works as an ID too and is
// held whole. The shard of an ID comes from the ID's own bytes (the first,
// middle and last eight, and the length) and a per-store random seed, so a
// lookup touches no global lock and no global table. Inside a shard the map
// hashes every byte of the ID with a per-store seed.
//
// # Concurrency contract
//
// Every method of Store and Clock is safe for concurrent use.
//
//   - Get takes no lock and does not allocate.
//   - Create and Delete lock one bucket of one shard map for the duration of
//     the insert or removal, never across a call into user code. The global
//     cap (Config.MaxEntries) and the per-owner cap (Config.OwnerLimit) are
//     reserved with compare-and-swap before the insert and released when the
//     insert fails, on Delete and on sweep removal, so they are never
//     exceeded and a failed Create leaves no trace.
//   - Len and OwnerCount are atomic loads. They may count a Create in
//     progress; once calls return they are exact.
//   - Range and RangeShard visit one shard at a time and are not snapshots:
//     entries created or deleted meanwhile may or may not be seen. Their
//     callback runs outside every lock and may call any Store method.
//   - SweepShard removes expired entries of one shard. The expired predicate
//     is evaluated again under the entry's bucket lock just before removal, so
//     it must be cheap and must not modify the store. onRemoved runs after the
//     entry left the map and its counts were released, outside every lock.
//     Delete and a sweep racing on one entry: exactly one of them reports it.
//     VisitSweepShard also calls a visit function for every entry it sees,
//     outside every lock, before its expiry is checked.
//   - Config.OwnerOf is called on Create, Delete and sweep removal, outside
//     map locks; it must return the same owner for a value while the value
//     is stored.
//
// Values are stored as given: store pointers (the gateway stores *Session)
// and mutate their fields with atomics, since every Create allocates a map
// entry and replacing values is not part of the API.
//
// # Goroutines
//
// The package starts no goroutines. SweepLoop and ShardLoop block until their
// context is done; the caller starts them, owns them and cancels them.
//
// Clock is a coarse clock for last-activity stamps: Now is one monotonic
// clock read rounded down to the tick, with no goroutine behind it.
//
// Store and Clock embed noCopy: go vet reports copies.
package shard
