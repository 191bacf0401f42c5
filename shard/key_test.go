package shard

import (
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refKey builds the key of id byte by byte.
func refKey(id string) key {
	if len(id) != inlineLen || id == strings.Repeat("\x00", inlineLen) {
		return key{tail: id}
	}
	w := func(i int) uint64 { return binary.LittleEndian.Uint64([]byte(id[8*i : 8*i+8])) }
	return key{w0: w(0), w1: w(1), w2: w(2), w3: w(3)}
}

// TestMakeKeyEveryByte puts every byte value at every position of a gateway
// ID: makeKey agrees with the byte-by-byte reference, and hashKey with
// hashID, each time.
func TestMakeKeyEveryByte(t *testing.T) {
	base := []byte(newID(t))
	k := makeKey(string(base))
	require.True(t, k.inline())
	for pos := range inlineLen {
		for c := range 256 {
			id := []byte(string(base))
			id[pos] = byte(c)
			k := makeKey(string(id))
			if want := refKey(string(id)); k != want {
				t.Fatalf("byte %#x at %d: key %+v, want %+v", c, pos, k, want)
			}
			if hashKey(k, 99) != hashID(string(id), 99) {
				t.Fatalf("byte %#x at %d: hashKey differs from hashID", c, pos)
			}
		}
	}
}

// TestMakeKeyShapes covers IDs that are not held inline.
func TestMakeKeyShapes(t *testing.T) {
	id := newID(t)
	for _, s := range []string{"", "a", id[:31], id + "0", "session-1", strings.Repeat("~", 128), strings.Repeat("\x00", 32)} {
		k := makeKey(s)
		assert.False(t, k.inline(), "%q", s)
		assert.Equal(t, s, k.tail)
		assert.Equal(t, hashID(s, 5), hashKey(k, 5))
	}
	// 32 zero bytes are held whole, so they do not collide with the empty ID.
	assert.NotEqual(t, makeKey(strings.Repeat("\x00", 32)), makeKey(""))
}

// FuzzKey checks that two IDs have equal keys exactly when they are equal,
// and that makeKey and hashKey agree with the byte-wise reference and hashID.
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
		if hashKey(ka, 7) != hashID(a, 7) {
			t.Fatalf("%q: hashKey differs from hashID", a)
		}
	})
}

// TestShardOfKeyBits checks that every output bit of shardOfKey flips about
// half the time over random gateway IDs (hashKey is hashID, see
// TestHashBits).
func TestShardOfKeyBits(t *testing.T) {
	const n = 4000
	var ones [64]int
	for range n {
		k := makeKey(newID(t))
		require.True(t, k.inline())
		s := shardOfKey(&k, 42)
		for b := range 64 {
			ones[b] += int(s >> b & 1)
		}
	}
	for b := range 64 {
		assert.InDelta(t, n/2, ones[b], 6*32, "bit %d", b) // sd = sqrt(n)/2 ~ 32
	}
}

// TestEntrySize pins the key at 48 bytes (see key) and the map entry of a
// pointer value within the 80-byte size class: xsync allocates key and
// value together per entry.
func TestEntrySize(t *testing.T) {
	type entryOf struct {
		k key
		e entry[*sess]
	}
	assert.Equal(t, uintptr(48), unsafe.Sizeof(key{}))
	assert.Equal(t, uintptr(72), unsafe.Sizeof(entryOf{}))
}
