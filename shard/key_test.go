package shard

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refNibble is the obvious decoder makeKey's SWAR code must agree with.
func refNibble(c byte) (uint64, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0'), true
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10, true
	}
	return 0, false
}

// refKey builds the key of id byte by byte.
func refKey(id string) key {
	if len(id) != canonicalLen {
		return key{tail: id, other: true}
	}
	var w [2]uint64
	for i := range canonicalLen {
		v, ok := refNibble(id[i])
		if !ok {
			return key{tail: id, other: true}
		}
		w[i/16] |= v << (4 * (i % 16))
	}
	return key{hi: w[0], lo: w[1]}
}

// TestMakeKeyEveryByte puts every byte value at every position of a
// canonical ID: makeKey agrees with the byte-by-byte decoder each time.
func TestMakeKeyEveryByte(t *testing.T) {
	base := []byte(newID(t))
	require.False(t, makeKey(string(base)).other)
	for pos := range canonicalLen {
		for c := range 256 {
			id := []byte(string(base))
			id[pos] = byte(c)
			want := refKey(string(id))
			got := makeKey(string(id))
			if got != want {
				t.Fatalf("byte %#x at %d: key %+v, want %+v", c, pos, got, want)
			}
		}
	}
}

// TestMakeKeyShapes covers IDs that are not canonical by length or case.
func TestMakeKeyShapes(t *testing.T) {
	id := newID(t)
	for _, s := range []string{"", "a", id[:31], id + "0", strings.ToUpper(id), "session-1", strings.Repeat("~", 128)} {
		k := makeKey(s)
		assert.True(t, k.other, "%q", s)
		assert.Equal(t, s, k.tail)
	}
	// The all-zero canonical ID and the empty ID must not collide.
	assert.NotEqual(t, makeKey(strings.Repeat("0", 32)), makeKey(""))
}

// FuzzKey checks that two IDs have equal keys exactly when they are equal,
// and that makeKey agrees with the byte-by-byte decoder.
func FuzzKey(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef")
	f.Add("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdeF")
	f.Add("", "00000000000000000000000000000000")
	f.Add("ffffffffffffffffffffffffffffffff", "fffffffffffffffffffffffffffffff")
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := makeKey(a), makeKey(b)
		if (a == b) != (ka == kb) {
			t.Fatalf("%q vs %q: keys %+v %+v", a, b, ka, kb)
		}
		if ka != refKey(a) {
			t.Fatalf("%q: key %+v, want %+v", a, ka, refKey(a))
		}
		if (ka == kb) && hashKey(ka, 7) != hashKey(kb, 7) {
			t.Fatal("equal keys, different hashes")
		}
	})
}

// TestHashKeyBits checks that every output bit of hashKey and shardOfKey
// flips about half the time over random canonical IDs.
func TestHashKeyBits(t *testing.T) {
	const n = 4000
	var ones, shardOnes [64]int
	for range n {
		k := makeKey(newID(t))
		require.False(t, k.other)
		h, s := hashKey(k, 42), shardOfKey(k, 42)
		for b := range 64 {
			ones[b] += int(h >> b & 1)
			shardOnes[b] += int(s >> b & 1)
		}
	}
	for b := range 64 {
		assert.InDelta(t, n/2, ones[b], 6*32, "hashKey bit %d", b) // sd = sqrt(n)/2 ~ 32
		assert.InDelta(t, n/2, shardOnes[b], 6*32, "shardOfKey bit %d", b)
	}
}

// TestEntrySize pins the map entry of a pointer value to one 64-byte size
// class: xsync allocates key and value together per entry.
func TestEntrySize(t *testing.T) {
	type entryOf struct {
		k key
		e entry[*sess]
	}
	assert.Equal(t, uintptr(64), unsafe.Sizeof(entryOf{}))
}
