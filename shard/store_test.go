package shard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sess is a small session-like value with a fixed owner.
type sess struct {
	owner string
	n     int
}

func ownerOf(v *sess) string { return v.owner }

// newID returns a gateway-style ID: 32 lowercase hex digits of crypto/rand.
func newID(tb testing.TB) string {
	tb.Helper()
	var b [16]byte
	_, err := rand.Read(b[:])
	require.NoError(tb, err)
	return hex.EncodeToString(b[:])
}

func TestNewShards(t *testing.T) {
	tests := []struct {
		shards int
		want   int
		err    bool
	}{
		{shards: 0, want: DefaultShards},
		{shards: 1, want: 1},
		{shards: 2, want: 2},
		{shards: 3, want: 4},
		{shards: 5, want: 8},
		{shards: 64, want: 64},
		{shards: 65, want: 128},
		{shards: 1000, want: 1024},
		{shards: MaxShards - 1, want: MaxShards},
		{shards: MaxShards + 1, err: true},
		{shards: -1, err: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.shards), func(t *testing.T) {
			s, err := New(Config[*sess]{Shards: tt.shards})
			if tt.err {
				require.ErrorIs(t, err, ErrConfig)
				assert.Nil(t, s)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, s.NumShards())
			for range 100 {
				i := s.ShardOf(newID(t))
				assert.True(t, i >= 0 && i < s.NumShards(), "shard %d", i)
			}
		})
	}
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config[*sess]
	}{
		{"negative MaxEntries", Config[*sess]{MaxEntries: -1}},
		{"negative Presize", Config[*sess]{Presize: -1}},
		{"negative OwnerLimit", Config[*sess]{OwnerLimit: -1, OwnerOf: ownerOf}},
		{"OwnerLimit without OwnerOf", Config[*sess]{OwnerLimit: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			require.ErrorIs(t, err, ErrConfig)
			assert.Nil(t, s)
		})
	}
	s, err := New(Config[*sess]{Shards: 8, MaxEntries: 10, Presize: 1000, OwnerLimit: 2, OwnerOf: ownerOf})
	require.NoError(t, err)
	assert.Equal(t, 8, s.NumShards())
}

func TestCreateGetDelete(t *testing.T) {
	s, err := New(Config[*sess]{})
	require.NoError(t, err)

	ids := []string{
		newID(t), newID(t),
		"", "a", "ab", "abc", "abcd", "abcdefg", "abcdefgh", "abcdefghi",
		"0123456789abcdef", "0123456789abcdef0",
		"Not-Hex~!{}|", string(make([]byte, 128)),
	}
	for i, id := range ids {
		v := &sess{n: i}
		require.NoError(t, s.Create(id, v), "id %q", id)
		got, ok := s.Get(id)
		require.True(t, ok, "id %q", id)
		assert.Same(t, v, got)
		assert.ErrorIs(t, s.Create(id, &sess{}), ErrExists)
		got, _ = s.Get(id)
		assert.Same(t, v, got, "a failed Create must not replace the value")
	}
	assert.Equal(t, len(ids), s.Len())

	_, ok := s.Get("missing")
	assert.False(t, ok)
	_, ok = s.Delete("missing")
	assert.False(t, ok)

	for i, id := range ids {
		v, ok := s.Delete(id)
		require.True(t, ok, "id %q", id)
		assert.Equal(t, i, v.n)
		_, ok = s.Get(id)
		assert.False(t, ok)
		_, ok = s.Delete(id)
		assert.False(t, ok, "second Delete")
	}
	assert.Equal(t, 0, s.Len())
}

func TestGlobalCap(t *testing.T) {
	s, err := New(Config[*sess]{Shards: 4, MaxEntries: 3})
	require.NoError(t, err)
	ids := []string{newID(t), newID(t), newID(t)}
	for _, id := range ids {
		require.NoError(t, s.Create(id, &sess{}))
	}
	extra := newID(t)
	err = s.Create(extra, &sess{})
	require.ErrorIs(t, err, ErrFull)
	assert.Equal(t, 3, s.Len(), "no partial state after ErrFull")
	_, ok := s.Get(extra)
	assert.False(t, ok)

	// A duplicate is reported as such even when full.
	assert.ErrorIs(t, s.Create(ids[0], &sess{}), ErrExists)

	_, ok = s.Delete(ids[1])
	require.True(t, ok)
	require.NoError(t, s.Create(extra, &sess{}), "Delete releases the slot")
	assert.Equal(t, 3, s.Len())
	assert.ErrorIs(t, s.Create(newID(t), &sess{}), ErrFull)
}

func TestOwnerCap(t *testing.T) {
	s, err := New(Config[*sess]{Shards: 4, MaxEntries: 5, OwnerLimit: 2, OwnerOf: ownerOf})
	require.NoError(t, err)

	a1, a2, a3 := newID(t), newID(t), newID(t)
	require.NoError(t, s.Create(a1, &sess{owner: "alice"}))
	require.NoError(t, s.Create(a2, &sess{owner: "alice"}))
	err = s.Create(a3, &sess{owner: "alice"})
	require.ErrorIs(t, err, ErrOwnerFull)
	assert.Equal(t, 2, s.OwnerCount("alice"))
	assert.Equal(t, 2, s.Len(), "ErrOwnerFull rolls back the global reservation")
	_, ok := s.Get(a3)
	assert.False(t, ok)

	// ErrExists rolls back both reservations.
	require.ErrorIs(t, s.Create(a1, &sess{owner: "bob"}), ErrExists)
	assert.Equal(t, 0, s.OwnerCount("bob"))
	assert.Equal(t, 2, s.Len())

	b1 := newID(t)
	require.NoError(t, s.Create(b1, &sess{owner: "bob"}))
	assert.Equal(t, 1, s.OwnerCount("bob"))

	_, ok = s.Delete(a1)
	require.True(t, ok)
	assert.Equal(t, 1, s.OwnerCount("alice"), "Delete releases the owner count")
	require.NoError(t, s.Create(a3, &sess{owner: "alice"}))
	assert.Equal(t, 2, s.OwnerCount("alice"))

	// The global cap applies across owners; a rejected Create leaves the
	// owner count unchanged.
	require.NoError(t, s.Create(newID(t), &sess{owner: "carol"}))
	require.NoError(t, s.Create(newID(t), &sess{owner: "carol"}))
	require.ErrorIs(t, s.Create(newID(t), &sess{owner: "dave"}), ErrFull)
	assert.Equal(t, 0, s.OwnerCount("dave"))
	assert.Equal(t, 5, s.Len())

	// Owners whose count drops to zero are forgotten.
	for _, id := range []string{a2, a3} {
		_, ok := s.Delete(id)
		require.True(t, ok)
	}
	assert.Equal(t, 0, s.OwnerCount("alice"))
	_, ok = s.owners.Load("alice")
	assert.False(t, ok, "a zero counter is removed")
	require.NoError(t, s.Create(newID(t), &sess{owner: "alice"}))
	assert.Equal(t, 1, s.OwnerCount("alice"))
}

func TestOwnerCountWithoutLimit(t *testing.T) {
	s, err := New(Config[*sess]{OwnerOf: ownerOf})
	require.NoError(t, err)
	for range 10 {
		require.NoError(t, s.Create(newID(t), &sess{owner: "x"}))
	}
	assert.Equal(t, 10, s.OwnerCount("x"))

	plain, err := New(Config[*sess]{})
	require.NoError(t, err)
	require.NoError(t, plain.Create(newID(t), &sess{owner: "x"}))
	assert.Equal(t, 0, plain.OwnerCount("x"), "no OwnerOf, no owner counts")
}

func TestRange(t *testing.T) {
	s, err := New(Config[*sess]{Shards: 8})
	require.NoError(t, err)
	want := map[string]int{}
	for i := range 500 {
		id := newID(t)
		want[id] = i
		require.NoError(t, s.Create(id, &sess{n: i}))
	}

	got := map[string]int{}
	for i := range s.NumShards() {
		inShard := 0
		s.RangeShard(i, func(id string, v *sess) bool {
			assert.Equal(t, i, s.ShardOf(id), "RangeShard yields only its shard")
			_, dup := got[id]
			assert.False(t, dup)
			got[id] = v.n
			inShard++
			return true
		})
		assert.Equal(t, inShard, s.ShardLen(i), "ShardLen counts what RangeShard visits")
	}
	assert.Equal(t, want, got)
	assert.Panics(t, func() { s.ShardLen(s.NumShards()) })

	got = map[string]int{}
	s.Range(func(id string, v *sess) bool {
		got[id] = v.n
		return true
	})
	assert.Equal(t, want, got)

	visited := 0
	s.Range(func(string, *sess) bool {
		visited++
		return visited < 7
	})
	assert.Equal(t, 7, visited, "Range stops when f returns false")

	assert.Panics(t, func() { s.RangeShard(s.NumShards(), func(string, *sess) bool { return true }) })

	// f may modify the store.
	s.Range(func(id string, _ *sess) bool {
		_, ok := s.Delete(id)
		assert.True(t, ok)
		return true
	})
	assert.Equal(t, 0, s.Len())
}

// TestShardSpread is a chi-square check that random gateway IDs spread
// evenly over the shards, and that structured non-hex IDs do too.
func TestShardSpread(t *testing.T) {
	const shards, perShard = 64, 400
	gens := map[string]func(i int) string{
		"random hex": func(int) string { return newID(t) },
		"sequential": func(i int) string { return fmt.Sprintf("session-%d", i) },
		"short":      func(i int) string { return fmt.Sprintf("%x", i) },
		"long prefix": func(i int) string {
			return fmt.Sprintf("%0100d", i)
		},
		"varying middle": func(i int) string {
			return fmt.Sprintf("aaaaaaaaaaaa%06dbbbbbbbbbbbb", i)
		},
	}
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			s, err := New(Config[*sess]{Shards: shards})
			require.NoError(t, err)
			counts := make([]int, shards)
			for i := range shards * perShard {
				counts[s.ShardOf(gen(i))]++
			}
			chi2 := 0.0
			for _, c := range counts {
				d := float64(c - perShard)
				chi2 += d * d / perShard
			}
			// 63 degrees of freedom: mean 63, standard deviation ~11.2.
			// 130 is six standard deviations out.
			assert.Less(t, chi2, 130.0, "counts %v", counts)
			t.Logf("chi2=%.1f (df=63)", chi2)
		})
	}
}

// TestChurn runs creators, readers and deleters concurrently (meant for
// -race) and checks that Len and the owner counts match the contents.
func TestChurn(t *testing.T) {
	const (
		workers = 8
		ops     = 2000
		limit   = 40
	)
	owners := []string{"o0", "o1", "o2", "o3", "o4"}
	s, err := New(Config[*sess]{Shards: 4, MaxEntries: 150, OwnerLimit: limit, OwnerOf: ownerOf})
	require.NoError(t, err)

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for i := range ops {
				switch i % 4 {
				case 0, 1:
					id := newID(t)
					err := s.Create(id, &sess{owner: owners[(w+i)%len(owners)]})
					if err == nil {
						mine = append(mine, id)
					} else if !assert.True(t, errorIsAny(err, ErrFull, ErrOwnerFull), "%v", err) {
						return
					}
					if n := s.Len(); n > 150 {
						t.Errorf("Len %d above cap", n)
					}
				case 2:
					if len(mine) > 0 {
						v, ok := s.Get(mine[len(mine)/2])
						assert.True(t, ok)
						assert.NotNil(t, v)
					}
					for _, o := range owners {
						if n := s.OwnerCount(o); n > limit {
							t.Errorf("owner %s has %d > %d", o, n, limit)
						}
					}
				case 3:
					if len(mine) > 0 {
						_, ok := s.Delete(mine[0])
						assert.True(t, ok)
						mine = mine[1:]
					}
				}
			}
		}()
	}
	wg.Wait()

	total := 0
	perOwner := map[string]int{}
	s.Range(func(_ string, v *sess) bool {
		total++
		perOwner[v.owner]++
		return true
	})
	assert.Equal(t, total, s.Len())
	assert.LessOrEqual(t, total, 150)
	for _, o := range owners {
		assert.Equal(t, perOwner[o], s.OwnerCount(o), "owner %s", o)
		assert.LessOrEqual(t, s.OwnerCount(o), limit)
	}
}

func errorIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
