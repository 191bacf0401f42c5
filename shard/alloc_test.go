//go:build !race

package shard

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGetAllocs is the allocation budget of the hot path: Get allocates
// nothing, for present and absent IDs.
func TestGetAllocs(t *testing.T) {
	s, err := New(Config[*sess]{Presize: 1000, OwnerLimit: 1000, OwnerOf: ownerOf})
	require.NoError(t, err)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = newID(t)
		require.NoError(t, s.Create(ids[i], &sess{owner: "o"}))
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		_, ok := s.Get(ids[i%len(ids)])
		if !ok {
			t.Fatal("missing")
		}
		i++
	})
	assert.Zero(t, allocs, "Get (present)")
	allocs = testing.AllocsPerRun(1000, func() {
		_, _ = s.Get("not-a-session-id")
	})
	assert.Zero(t, allocs, "Get (absent)")
	// The gateway looks up the ID bytes of a request header.
	header, absent := []byte(ids[0]), []byte("not-a-session-id")
	allocs = testing.AllocsPerRun(1000, func() {
		if _, ok := s.GetBytes(header); !ok {
			t.Fatal("missing")
		}
		if _, ok := s.GetBytes(absent); ok {
			t.Fatal("found")
		}
	})
	assert.Zero(t, allocs, "GetBytes")
	allocs = testing.AllocsPerRun(1000, func() {
		_ = s.ShardOf(ids[0])
		_ = s.Len()
		_ = s.OwnerCount("o")
	})
	assert.Zero(t, allocs, "ShardOf, Len, OwnerCount")
}

// TestCreateDeleteAllocs bounds Create+Delete of an existing owner: the map
// entry is the only allocation.
func TestCreateDeleteAllocs(t *testing.T) {
	s, err := New(Config[*sess]{Presize: 1000, OwnerLimit: 10, OwnerOf: ownerOf})
	require.NoError(t, err)
	keep := newID(t)
	require.NoError(t, s.Create(keep, &sess{owner: "o"}))
	id := newID(t)
	v := &sess{owner: "o"}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := s.Create(id, v); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Delete(id); !ok {
			t.Fatal("missing")
		}
	})
	assert.LessOrEqual(t, allocs, 1.0)
}
