package shard

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// bval is the benchmark value: a small pointer, like *Session.
type bval struct{ n int64 }

// kvMap is the common face of the store and its baselines.
type kvMap interface {
	get(id string) (*bval, bool)
	create(id string, v *bval) bool
	del(id string) bool
}

type storeMap struct{ s *Store[*bval] }

func (m storeMap) get(id string) (*bval, bool)    { return m.s.Get(id) }
func (m storeMap) create(id string, v *bval) bool { return m.s.Create(id, v) == nil }
func (m storeMap) del(id string) bool             { _, ok := m.s.Delete(id); return ok }

// rwMap is the single-lock baseline: one map behind one sync.RWMutex.
type rwMap struct {
	// mu guards m.
	mu sync.RWMutex
	m  map[string]*bval
}

func (m *rwMap) get(id string) (*bval, bool) {
	m.mu.RLock()
	v, ok := m.m[id]
	m.mu.RUnlock()
	return v, ok
}

func (m *rwMap) create(id string, v *bval) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.m[id]; ok {
		return false
	}
	m.m[id] = v
	return true
}

func (m *rwMap) del(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.m[id]
	delete(m.m, id)
	return ok
}

// syncMap is the sync.Map baseline.
type syncMap struct{ m sync.Map }

func (m *syncMap) get(id string) (*bval, bool) {
	v, ok := m.m.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*bval), true
}

func (m *syncMap) create(id string, v *bval) bool {
	_, loaded := m.m.LoadOrStore(id, v)
	return !loaded
}

func (m *syncMap) del(id string) bool {
	_, ok := m.m.LoadAndDelete(id)
	return ok
}

// impls are the implementations compared side by side, in this order.
var impls = []struct {
	name string
	make func() kvMap
}{
	{"sharded", func() kvMap { return storeMap{mustStore(hasherID)} }},
	{"sharded-memhash", func() kvMap { return storeMap{mustStore(hasherRuntime)} }},
	{"rwmutex", func() kvMap { return &rwMap{m: map[string]*bval{}} }},
	{"syncmap", func() kvMap { return new(syncMap) }},
}

func mustStore(hk hasherKind) *Store[*bval] {
	s, err := newStore(Config[*bval]{}, hk)
	if err != nil {
		panic(err)
	}
	return s
}

// benchIDs returns n gateway-style IDs (32 hex digits): benchID(seed, i)
// for i in [0, n).
func benchIDs(n int, seed uint64) []string {
	ids := make([]string, n)
	var b [idLen]byte
	for i := range ids {
		ids[i] = string(benchID(&b, seed, i))
	}
	return ids
}

// benchID writes the i-th ID of the seed's sequence into b and returns b as
// a slice: 32 hex digits of two splitmix64 outputs. It reads no memory
// beyond b, so a lookup key built with it is as cache-hot as the session ID
// the gateway reads from a request header.
func benchID(b *[idLen]byte, seed uint64, i int) []byte {
	const digits = "0123456789abcdef"
	for w := range 2 {
		x := splitmix(seed<<32 ^ uint64(2*i+w))
		for k := range 16 {
			b[16*w+k] = digits[x>>(4*k)&15]
		}
	}
	return b[:]
}

// splitmix is the splitmix64 finalizer: a bijection with well-spread bits.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// fixture is a pre-filled map and its keys, built once per size and
// implementation and reused by every run of the benchmarks.
//
// Lookups do not pass the stored strings: in the gateway the ID to look up
// comes from a request header, so its bytes are cache-hot and are not the
// stored key's (a hit's key comparison reads the stored bytes, unless the
// map holds them inline). probe rebuilds keys[i] in a caller's buffer.
type fixture struct {
	m      kvMap
	keys   []string // present at the start: benchID(keySeed, i)
	fresh  []string // never pre-filled: created by the mixed workload
	cursor atomic.Uint64
}

// idLen is the length of every benchmark ID.
const idLen = 32

// keySeed and freshSeed are the benchID seeds of fixture.keys and .fresh.
const keySeed, freshSeed = 1, 2

// probe returns keys[i] rebuilt in b; the string is valid until b changes.
// The maps under test do not keep the strings passed to get.
func probe(b *[idLen]byte, i int) string {
	return unsafe.String(&benchID(b, keySeed, i)[0], idLen)
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]*fixture{}
	keySets    = map[int][2][]string{}
)

func getFixture(size int, impl int) *fixture {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	name := fmt.Sprint(size, "/", impls[impl].name)
	if f, ok := fixtures[name]; ok {
		return f
	}
	ks, ok := keySets[size]
	if !ok {
		ks = [2][]string{benchIDs(size, keySeed), benchIDs(size, freshSeed)}
		keySets[size] = ks
	}
	f := &fixture{m: impls[impl].make(), keys: ks[0], fresh: ks[1]}
	for _, k := range f.keys {
		f.m.create(k, &bval{})
	}
	fixtures[name] = f
	// Finish the collection the build triggered, so that it does not run
	// concurrently with the timed loop.
	runtime.GC()
	return f
}

// xorshift is a per-goroutine pseudo-random stream.
type xorshift uint64

func (x *xorshift) next() uint64 {
	v := uint64(*x)
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	*x = xorshift(v)
	return v
}

// index maps a random value to [0, n) without a division.
func index(r uint64, n int) int { return int((r >> 32) * uint64(n) >> 32) }

func benchGet(b *testing.B, f *fixture) {
	var misses atomic.Int64
	b.ReportAllocs()
	defer reportCPU(b, processCPU())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := xorshift(rand.Uint64() | 1)
		n, m := len(f.keys), f.m
		var b [idLen]byte
		miss := 0
		for pb.Next() {
			if _, ok := m.get(probe(&b, index(r.next(), n))); !ok {
				miss++
			}
		}
		misses.Add(int64(miss))
	})
	if misses.Load() != 0 {
		b.Fatalf("%d gets missed", misses.Load())
	}
}

// benchMixed runs 90% gets of pre-filled keys, 5% creates of fresh keys and
// 5% deletes of keys this goroutine created 64 creates earlier, so the size
// stays near the pre-filled one.
func benchMixed(b *testing.B, f *fixture) {
	b.ReportAllocs()
	defer reportCPU(b, processCPU())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		const region = 1 << 12
		r := xorshift(rand.Uint64() | 1)
		n, fresh, m := len(f.keys), f.fresh, f.m
		var b [idLen]byte
		base := int(f.cursor.Add(region)) % len(fresh)
		next := 0
		var ring [128]string
		head, tail := 0, 0
		v := &bval{}
		for i := 0; pb.Next(); i++ {
			switch i % 20 {
			case 0:
				id := fresh[(base+next%region)%len(fresh)]
				next++
				if m.create(id, v) && head-tail < len(ring) {
					ring[head%len(ring)] = id
					head++
				}
			case 10:
				if head-tail >= 64 {
					m.del(ring[tail%len(ring)])
					tail++
					break
				}
				fallthrough
			default:
				m.get(probe(&b, index(r.next(), n)))
			}
		}
		for ; tail < head; tail++ {
			m.del(ring[tail%len(ring)])
		}
	})
}

// reportCPU reports the process CPU time (user+system, GC included) per
// operation since start, as cpu-ns/op. On a busy machine it is steadier than
// the wall-clock ns/op, which also counts time spent waiting for a core.
func reportCPU(b *testing.B, start time.Duration) {
	if start == 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkStore compares the store with a single RWMutex map and sync.Map at
// 100k and 1M entries: get-only, and 90% get / 5% create / 5% delete.
func BenchmarkStore(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"100k", 100_000}, {"1M", 1_000_000}} {
		for _, wl := range []struct {
			name string
			run  func(*testing.B, *fixture)
		}{{"get", benchGet}, {"mixed", benchMixed}} {
			for i, impl := range impls {
				b.Run(size.name+"/"+wl.name+"/"+impl.name, func(b *testing.B) {
					f := getFixture(size.n, i)
					wl.run(b, f)
				})
			}
		}
	}
}

// BenchmarkHasher compares the store's ID hash with the runtime's memhash
// that xsync uses by default, on a 32-hex-digit ID.
func BenchmarkHasher(b *testing.B) {
	id := benchIDs(1, 3)[0]
	b.Run("hashID", func(b *testing.B) {
		h := func(id string, seed uint64) uint64 { return hashID(id, seed^12345) }
		var sink uint64
		for i := 0; b.Loop(); i++ {
			sink += h(id, uint64(i))
		}
		_ = sink
	})
	b.Run("shardHash", func(b *testing.B) {
		var sink uint64
		for i := 0; b.Loop(); i++ {
			sink += shardHash(id, uint64(i))
		}
		_ = sink
	})
	b.Run("memhash", func(b *testing.B) {
		s := mustStore(hasherRuntime)
		_ = s.Create(id, &bval{})
		for b.Loop() {
			s.Get(id)
		}
	})
	b.Run("hashID-store", func(b *testing.B) {
		s := mustStore(hasherID)
		_ = s.Create(id, &bval{})
		for b.Loop() {
			s.Get(id)
		}
	})
}

// BenchmarkStoreBytesPerEntry reports the heap bytes each entry costs as the
// slope between 100k and 1M entries (HeapInuse after GC; keys and values are
// allocated beforehand and not counted). Run it with -benchtime 1x.
func BenchmarkStoreBytesPerEntry(b *testing.B) {
	const small, large = 100_000, 1_000_000
	// Drop BenchmarkStore's fixtures: they would only slow every GC below.
	fixturesMu.Lock()
	clear(fixtures)
	clear(keySets)
	fixturesMu.Unlock()
	keys := benchIDs(large, 4)
	vals := make([]bval, large)
	for i, impl := range impls {
		if impl.name == "sharded-memhash" {
			continue // same layout as sharded
		}
		b.Run(impl.name, func(b *testing.B) {
			var perEntry float64
			for b.Loop() {
				hs := heapWith(i, keys[:small], vals)
				hl := heapWith(i, keys, vals)
				perEntry = float64(hl-hs) / float64(large-small)
			}
			b.ReportMetric(perEntry, "B/entry")
		})
	}
	runtime.KeepAlive(keys)
	runtime.KeepAlive(vals)
}

// heapWith fills a new map of implementation impl with keys and returns
// HeapInuse after GC while the map is alive.
func heapWith(impl int, keys []string, vals []bval) uint64 {
	runtime.GC()
	m := impls[impl].make()
	for i, k := range keys {
		m.create(k, &vals[i])
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(m)
	return ms.HeapInuse
}

// BenchmarkSweepShard measures a sweep pass that finds nothing to remove (the
// common case), per shard of a 100k-entry, 64-shard store.
func BenchmarkSweepShard(b *testing.B) {
	s := mustStore(hasherID)
	for _, id := range benchIDs(100_000, 5) {
		_ = s.Create(id, &bval{n: 1})
	}
	expired := func(_ string, v *bval) bool { return v.n == 0 }
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.SweepShard(i&(s.NumShards()-1), expired, nil)
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(100_000.0/float64(s.NumShards())), "ns/entry")
}

// BenchmarkClockNow compares Clock.Now with time.Now, the call it replaces.
func BenchmarkClockNow(b *testing.B) {
	b.Run("Clock", func(b *testing.B) {
		c := NewClock(0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var sink int64
			for pb.Next() {
				sink += c.Now()
			}
			_ = sink
		})
	})
	b.Run("time.Now", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var sink int64
			for pb.Next() {
				sink += time.Now().UnixNano()
			}
			_ = sink
		})
	})
}

// BenchmarkLoadFloor measures what memory alone costs a Get at 1M entries on
// the machine at hand, with benchGet's RunParallel loop and no map code:
// "1-load" reads a random element of a 1M-element array of 32-byte entries
// (a table holding its entries inline), "2-loads" reads a random pointer of a
// 1M-pointer table and then the entry it points to (a bucket, then the entry
// it holds: the two dependent loads of every xsync.MapOf hit, before any key
// bytes are compared). Entries are allocated in order and the table shuffled,
// so the second load is as random as the first.
func BenchmarkLoadFloor(b *testing.B) {
	const n = 1 << 20
	type entry struct {
		key [3]uint64
		v   *bval
	}
	inline := make([]entry, n)
	table := make([]*entry, n)
	for i := range table {
		table[i] = &entry{key: [3]uint64{uint64(i)}, v: &bval{}}
		inline[i].v = table[i].v
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { table[i], table[j] = table[j], table[i] })
	runtime.GC()
	run := func(b *testing.B, get func(i int) *bval) {
		var misses atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := xorshift(rand.Uint64() | 1)
			miss := 0
			for pb.Next() {
				if get(index(r.next(), n)) == nil {
					miss++
				}
			}
			misses.Add(int64(miss))
		})
		if misses.Load() != 0 {
			b.Fatal("nil entry")
		}
	}
	b.Run("1-load", func(b *testing.B) { run(b, func(i int) *bval { return inline[i].v }) })
	b.Run("2-loads", func(b *testing.B) { run(b, func(i int) *bval { return table[i].v }) })
	runtime.KeepAlive(table)
}
