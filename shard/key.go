package shard

import "math/bits"

// key is how the shard maps hold an ID. A canonical ID, the 32 lower-case hex
// digits the gateway issues, is decoded into two words, so the key comparison
// of a hit reads only the map entry and no separately allocated string bytes
// (at 1M entries every such read is a cache miss). Any other string is kept
// whole in tail. Two keys are equal exactly when their IDs are.
type key struct {
	hi, lo uint64
	tail   string // the whole ID when other is set, else ""
	other  bool   // not a canonical ID
}

// entry is what a shard map stores under a key: the value and the ID string
// given to Create, which Range and sweeps pass on without rebuilding it.
// With a pointer value, key plus entry fill one 64-byte map entry.
type entry[V any] struct {
	v  V
	id string
}

// canonicalLen is the length of a canonical ID.
const canonicalLen = 32

// makeKey returns the key of id. It does not allocate.
func makeKey(id string) key {
	if len(id) == canonicalLen {
		a, ok1 := hex8(le64(id))
		b, ok2 := hex8(le64(id[8:]))
		c, ok3 := hex8(le64(id[16:]))
		d, ok4 := hex8(le64(id[24:]))
		if ok1 && ok2 && ok3 && ok4 {
			return key{hi: a | b<<32, lo: c | d<<32}
		}
	}
	return key{tail: id, other: true}
}

// Byte-wise constants for the SWAR hex decoder.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// hex8 decodes eight lower-case hex digits, read as a little-endian word,
// into 32 bits: digit i becomes bits 4i to 4i+3 (a fixed bijection, which is
// all a key needs). It reports false if any byte is not in [0-9a-f]. Adding
// 0x80-c to a byte below 0x80 sets its top bit exactly when the byte is at
// least c, and never carries into the next byte.
func hex8(x uint64) (uint64, bool) {
	if x&msb != 0 {
		return 0, false
	}
	digit := (x + (0x80-'0')*lsb) &^ (x + (0x80-'9'-1)*lsb)
	letter := (x + (0x80-'a')*lsb) &^ (x + (0x80-'f'-1)*lsb)
	if (digit|letter)&msb != msb {
		return 0, false
	}
	v := x&(0x0f*lsb) + (letter&msb)>>7*9 // one nibble value per byte
	v = (v | v>>4) & 0x00ff00ff00ff00ff
	v = (v | v>>8) & 0x0000ffff0000ffff
	return (v | v>>16) & 0xffffffff, true
}

// hashKey is the shard maps' hash: for a canonical key the last rounds of
// hashID over its two words (two multiplies), else hashID of the ID.
func hashKey(k key, seed uint64) uint64 {
	if k.other {
		return hashID(k.tail, seed)
	}
	a := mix(k.hi^hashK1, k.lo^seed)
	return mix(a^hashK0^canonicalLen, k.lo^seed^hashK1)
}

// shardOfKey spreads keys over the shards (the result's top bits select
// one): shardHash of the ID's bytes, or for a canonical key the same
// multiply-xorshift rounds over its two words.
func shardOfKey(k key, seed uint64) uint64 {
	if k.other {
		return shardHash(k.tail, seed)
	}
	n := uint64(canonicalLen) // a variable: the constant product overflows
	x := k.hi ^ bits.RotateLeft64(k.lo, 29) ^ seed ^ n*hashK2
	x *= hashK0
	x ^= x >> 32
	x *= hashK1
	x ^= x >> 29
	return x
}
