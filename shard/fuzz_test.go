package shard

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzStoreID feeds arbitrary client-sent IDs through the store: the shard
// index stays in range and stable, the hashes are deterministic, and
// Create/Get/GetBytes/Delete round-trip. The seed corpus is in testdata/fuzz.
func FuzzStoreID(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef")
	f.Add("")
	f.Add("a")
	f.Add("session-1")
	f.Add(strings.Repeat("~", 128))
	s, err := New(Config[*sess]{Shards: 16, MaxEntries: 1 << 20, OwnerOf: ownerOf})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, id string) {
		i := s.ShardOf(id)
		require.True(t, i >= 0 && i < s.NumShards(), "shard %d", i)
		clone := strings.Clone(id)
		require.Equal(t, i, s.ShardOf(clone))
		require.Equal(t, hashID(id, 7), hashID(clone, 7))

		v := &sess{owner: id}
		_, existed := s.Get(id)
		err := s.Create(id, v)
		if existed {
			require.ErrorIs(t, err, ErrExists)
			return
		}
		require.NoError(t, err)
		got, ok := s.Get(clone)
		require.True(t, ok)
		assert.Same(t, v, got)
		got, ok = s.GetBytes([]byte(id))
		require.True(t, ok)
		assert.Same(t, v, got)
		assert.Equal(t, 1, s.OwnerCount(id))
		got, ok = s.Delete(clone)
		require.True(t, ok)
		assert.Same(t, v, got)
		_, ok = s.Get(id)
		assert.False(t, ok)
		_, ok = s.GetBytes([]byte(id))
		assert.False(t, ok)
		assert.Equal(t, 0, s.OwnerCount(id))
	})
}
