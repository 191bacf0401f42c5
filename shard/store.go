package shard

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"unsafe"

	"github.com/puzpuzpuz/xsync/v3"
)

// DefaultShards is the shard count used when Config.Shards is 0.
const DefaultShards = 64

// MaxShards is the largest accepted Config.Shards.
const MaxShards = 1 << 16

var (
	// ErrExists is returned by Create when the ID is already present.
	ErrExists = errors.New("shard: ID already exists")
	// ErrFull is returned by Create when the store holds Config.MaxEntries entries.
	ErrFull = errors.New("shard: store is full")
	// ErrOwnerFull is returned by Create when the owner of the value already
	// holds Config.OwnerLimit entries.
	ErrOwnerFull = errors.New("shard: owner has too many entries")
	// ErrConfig is returned by New for an invalid Config.
	ErrConfig = errors.New("shard: invalid config")
)

// Config configures a Store. The zero value is valid: DefaultShards shards,
// no caps, no presizing, no owner tracking.
type Config[V any] struct {
	// Shards is the number of shards, rounded up to a power of two.
	// 0 means DefaultShards; a negative value or one above MaxShards is an
	// error.
	Shards int
	// MaxEntries is the global cap on entries. 0 means no cap; negative is an
	// error.
	MaxEntries int
	// Presize is the expected total number of entries. It is spread evenly
	// across the shards as each map's minimum capacity (xsync.WithPresize).
	// 0 means the xsync minimum per shard; negative is an error. Shard maps
	// are always grow-only (xsync.WithGrowOnly): they never shrink below the
	// largest size they reached.
	Presize int
	// OwnerLimit is the maximum number of entries per owner. 0 means no
	// limit; negative is an error. A positive value requires OwnerOf.
	OwnerLimit int
	// OwnerOf returns the owner of a value (the gateway passes the session's
	// principal). It must return the same owner for a value for as long as
	// the value is in the store, and must be cheap and safe for concurrent
	// use. nil means no owner tracking (OwnerCount always returns 0); it is
	// required when OwnerLimit > 0. When set without a limit, per-owner
	// counts are still kept for OwnerCount.
	OwnerOf func(V) string
}

// Store maps string IDs to values of type V over a power-of-two array of
// xsync.MapOf shards. See the package documentation for the concurrency
// contract. A Store must not be copied; create it with New.
type Store[V any] struct {
	_ noCopy

	shards []*xsync.MapOf[key, entry[V]]
	shift  uint   // 64 - log2(len(shards)): the shard index is the hash's top bits
	seed   uint64 // per-store random seed for shardHash and hashID

	maxEntries int64                               // 0: no cap
	ownerLimit int64                               // 0: no limit
	ownerOf    func(V) string                      // nil: no owner tracking
	owners     *xsync.MapOf[string, *ownerCounter] // nil when ownerOf is nil

	_ [64]byte // keep n off the cache line of the read-mostly fields above
	n atomic.Int64
	_ [56]byte
}

// hasherKind selects the hash function the shard maps use. New uses
// hasherID (hashKey); hasherRuntime, xsync's default hash of the key struct,
// is kept for comparison (BenchmarkHasher, BenchmarkStore sharded-memhash).
type hasherKind int

const (
	hasherID      hasherKind = iota // hashKey with the store seed
	hasherRuntime                   // xsync's default (the runtime's hash of key)
)

// New validates cfg, fills in defaults and returns an empty Store.
func New[V any](cfg Config[V]) (*Store[V], error) {
	return newStore(cfg, hasherID)
}

func newStore[V any](cfg Config[V], hk hasherKind) (*Store[V], error) {
	n := cfg.Shards
	switch {
	case n == 0:
		n = DefaultShards
	case n < 0 || n > MaxShards:
		return nil, fmt.Errorf("shard.New: Shards %d not in [0, %d]: %w", cfg.Shards, MaxShards, ErrConfig)
	}
	if cfg.MaxEntries < 0 {
		return nil, fmt.Errorf("shard.New: MaxEntries %d < 0: %w", cfg.MaxEntries, ErrConfig)
	}
	if cfg.Presize < 0 {
		return nil, fmt.Errorf("shard.New: Presize %d < 0: %w", cfg.Presize, ErrConfig)
	}
	if cfg.OwnerLimit < 0 {
		return nil, fmt.Errorf("shard.New: OwnerLimit %d < 0: %w", cfg.OwnerLimit, ErrConfig)
	}
	if cfg.OwnerLimit > 0 && cfg.OwnerOf == nil {
		return nil, fmt.Errorf("shard.New: OwnerLimit %d without OwnerOf: %w", cfg.OwnerLimit, ErrConfig)
	}
	log2 := bits.Len(uint(n - 1)) // n rounded up to 1<<log2
	n = 1 << log2

	s := &Store[V]{
		shards:     make([]*xsync.MapOf[key, entry[V]], n),
		shift:      uint(64 - log2),
		seed:       rand.Uint64(),
		maxEntries: int64(cfg.MaxEntries),
		ownerLimit: int64(cfg.OwnerLimit),
		ownerOf:    cfg.OwnerOf,
	}
	opts := []func(*xsync.MapConfig){xsync.WithGrowOnly()}
	if cfg.Presize > 0 {
		opts = append(opts, xsync.WithPresize((cfg.Presize+n-1)/n))
	}
	for i := range s.shards {
		switch hk {
		case hasherRuntime:
			s.shards[i] = xsync.NewMapOf[key, entry[V]](opts...)
		default:
			seed := s.seed
			s.shards[i] = xsync.NewMapOfWithHasher[key, entry[V]](func(k key, tableSeed uint64) uint64 {
				return hashKey(k, tableSeed^seed)
			}, opts...)
		}
	}
	if s.ownerOf != nil {
		s.owners = xsync.NewMapOf[string, *ownerCounter](xsync.WithGrowOnly())
	}
	return s, nil
}

// NumShards returns the number of shards, a power of two fixed by New.
func (s *Store[V]) NumShards() int { return len(s.shards) }

// ShardOf returns the index of the shard that holds (or would hold) id, in
// [0, NumShards()). It is a pure function of id for the life of the store.
func (s *Store[V]) ShardOf(id string) int {
	k := makeKey(id)
	return int(shardOfKey(&k, s.seed) >> s.shift)
}

// shardOf returns the map that holds k.
func (s *Store[V]) shardOf(k *key) *xsync.MapOf[key, entry[V]] {
	return s.shards[shardOfKey(k, s.seed)>>s.shift]
}

// Get returns the value stored under id. It takes no lock and does not
// allocate. Any string is accepted.
func (s *Store[V]) Get(id string) (V, bool) {
	k := makeKey(id)
	e, ok := s.shardOf(&k).Load(k)
	return e.v, ok
}

// GetBytes is Get for an ID held in bytes, such as a request header's
// value, without copying them: Get(string(id)) copies, because the compiler
// cannot prove that the shard map's hasher keeps no reference to the
// string. GetBytes keeps none; id may be reused as soon as it returns.
func (s *Store[V]) GetBytes(id []byte) (V, bool) {
	// The string lives only for this lookup: Load compares and hashes it
	// and stores nothing.
	return s.Get(unsafe.String(unsafe.SliceData(id), len(id)))
}

// Create stores v under id. It fails with an error wrapping ErrExists if id is
// present, ErrFull if the store holds MaxEntries entries, or ErrOwnerFull if
// OwnerOf(v) holds OwnerLimit entries. The caps are reserved with
// compare-and-swap before the insert and released if the insert fails, so they
// hold under any concurrency and a failed Create leaves no trace. When several
// conditions hold at once, ErrExists is reported first, then ErrFull.
func (s *Store[V]) Create(id string, v V) error {
	k := makeKey(id)
	m := s.shardOf(&k)
	if _, ok := m.Load(k); ok {
		return fmt.Errorf("shard.Create: %w", ErrExists)
	}
	if !s.reserve() {
		return fmt.Errorf("shard.Create: %d entries: %w", s.maxEntries, ErrFull)
	}
	var owner string
	if s.ownerOf != nil {
		owner = s.ownerOf(v)
		if !s.reserveOwner(owner) {
			s.n.Add(-1)
			return fmt.Errorf("shard.Create: owner %q has %d entries: %w", owner, s.ownerLimit, ErrOwnerFull)
		}
	}
	if _, loaded := m.LoadOrStore(k, entry[V]{v: v, id: id}); loaded {
		if s.ownerOf != nil {
			s.releaseOwner(owner)
		}
		s.n.Add(-1)
		return fmt.Errorf("shard.Create: %w", ErrExists)
	}
	return nil
}

// reserve takes one slot of the global count, respecting MaxEntries.
func (s *Store[V]) reserve() bool {
	if s.maxEntries == 0 {
		s.n.Add(1)
		return true
	}
	for {
		n := s.n.Load()
		if n >= s.maxEntries {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release returns the counts held by a removed value.
func (s *Store[V]) release(v V) {
	if s.ownerOf != nil {
		s.releaseOwner(s.ownerOf(v))
	}
	s.n.Add(-1)
}

// Delete removes id and returns its value. It releases the value's global and
// owner counts. Of a Delete and a sweep racing on one entry, exactly one
// reports it.
func (s *Store[V]) Delete(id string) (V, bool) {
	k := makeKey(id)
	e, ok := s.shardOf(&k).LoadAndDelete(k)
	if ok {
		s.release(e.v)
	}
	return e.v, ok
}

// Len returns the number of entries. Calls of Create in progress may be
// counted before their entry is visible; once calls return, Len is exact.
func (s *Store[V]) Len() int { return int(s.n.Load()) }

// ShardLen returns the number of entries in shard i without visiting them
// (the map's striped counters). It panics if i is not in [0, NumShards()).
// Like Len, it is exact once concurrent calls have returned.
func (s *Store[V]) ShardLen(i int) int { return s.shards[i].Size() }

// RangeShard calls f for the entries of shard i until f returns false. It
// panics if i is not in [0, NumShards()). It is not a snapshot: entries
// created or deleted meanwhile may or may not be seen. f runs outside any
// lock and may call any Store method.
func (s *Store[V]) RangeShard(i int, f func(id string, v V) bool) {
	s.shards[i].Range(func(_ key, e entry[V]) bool { return f(e.id, e.v) })
}

// Range calls f for every entry, one shard at a time, until f returns false.
// The same rules as RangeShard apply.
func (s *Store[V]) Range(f func(id string, v V) bool) {
	stop := false
	for _, m := range s.shards {
		m.Range(func(_ key, e entry[V]) bool {
			if !f(e.id, e.v) {
				stop = true
				return false
			}
			return true
		})
		if stop {
			return
		}
	}
}

// noCopy makes go vet's copylocks check flag copies of the types embedding it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
