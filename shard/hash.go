package shard

import "math/bits"

// Constants of the wyhash family: odd, with well-spread bits.
const (
	hashK0 = 0xa0761d6478bd642f
	hashK1 = 0xe7037ed1a0b428db
	hashK2 = 0x8ebc6af09c88c6e3
)

// mix folds the 128-bit product of a and b into 64 bits.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// le64 reads s[0:8] as a little-endian uint64. The compiler merges the byte
// loads into one load.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// le32 reads s[0:4] as a little-endian uint32, widened.
func le32(s string) uint64 {
	_ = s[3]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24
}

// hashID hashes every byte of s with seed, which must be random (the store's
// seed mixed with the map table's seed). It is a reduced wyhash: two 8-byte
// chunks per multiply, the last 16 bytes read (overlapping) at the end. A
// gateway ID of 32 bytes costs three 64x64->128 multiplies and no call. Any
// string works: empty, short, long, non-hex.
func hashID(s string, seed uint64) uint64 {
	n := len(s)
	var a, b uint64
	switch {
	case n > 16:
		t := s
		for len(t) > 16 {
			seed = mix(le64(t)^hashK1, le64(t[8:])^seed)
			t = t[16:]
		}
		a = le64(s[n-16:])
		b = le64(s[n-8:])
	case n >= 8:
		a = le64(s)
		b = le64(s[n-8:])
	case n >= 4:
		a = le32(s)
		b = le32(s[n-4:])
	case n > 0:
		a = uint64(s[0])<<16 | uint64(s[n>>1])<<8 | uint64(s[n-1])
	}
	return hashFinal(a, b, seed, n)
}

// hashFinal is the last round of hashID over its final two words a and b,
// shared with hashKey.
func hashFinal(a, b, seed uint64, n int) uint64 {
	a ^= hashK1
	b ^= seed
	a = mix(a, b)
	return mix(a^hashK0^uint64(n), b^hashK1)
}

// shardHash spreads an ID over the shards from the ID's own bytes: its first,
// middle and last 8 bytes (all 32 digits of a gateway ID), its length and the
// store's seed, through two multiply-xorshift rounds. It reads at most 24
// bytes, so a 128-byte ID costs what a short one does; IDs that differ only
// outside those bytes share a shard (the map inside hashes every byte).
func shardHash(s string, seed uint64) uint64 {
	n := len(s)
	var x uint64
	switch {
	case n >= 8:
		x = le64(s) ^ bits.RotateLeft64(le64(s[n-8:]), 29) ^ bits.RotateLeft64(le64(s[n>>1-4:]), 47)
	case n >= 4:
		x = le32(s) | le32(s[n-4:])<<32
	case n > 0:
		x = uint64(s[0]) | uint64(s[n>>1])<<8 | uint64(s[n-1])<<16
	}
	return shardFinal(x, seed, n)
}

// shardFinal mixes the bits shardHash read from an ID of length n with the
// seed: two multiply-xorshift rounds. Shared with shardOfKey.
func shardFinal(x, seed uint64, n int) uint64 {
	x ^= seed ^ uint64(n)*hashK2
	x *= hashK0
	x ^= x >> 32
	x *= hashK1
	x ^= x >> 29
	return x
}
