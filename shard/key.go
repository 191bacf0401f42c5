package shard

import "math/bits"

// key is how the shard maps hold an ID. An ID of 32 bytes, the length of
// the gateway's IDs (32 hex digits), is held inline as four words, so the key
// comparison of a hit reads only the map entry and no separately allocated
// string bytes (at 1M entries every such read is a cache miss). Any other
// string is kept whole in tail, and so are 32 zero bytes: the words are zero
// exactly when the ID is not inline, so two keys are equal exactly when their
// IDs are. The fields are six scalars, not an array, so a key can travel in
// registers through every call of a lookup: as a 48- or 56-byte block in
// memory, its copies with 16-byte moves defeated store-to-load forwarding
// and a hot Get took two to three times as long.
type key struct {
	w0, w1, w2, w3 uint64 // the ID's bytes, little-endian, or all zero
	tail           string // the whole ID when the words are zero, else ""
}

// entry is what a shard map stores under a key: the value and the ID string
// given to Create, which Range and sweeps pass on without rebuilding it.
type entry[V any] struct {
	v  V
	id string
}

// inlineLen is the length of an ID held inline.
const inlineLen = 32

// makeKey returns the key of id. It does not allocate.
func makeKey(id string) key {
	if len(id) == inlineLen {
		k := key{w0: le64(id), w1: le64(id[8:]), w2: le64(id[16:]), w3: le64(id[24:])}
		if k.inline() {
			return k
		}
	}
	return key{tail: id}
}

// inline reports whether k holds its ID in its words.
func (k *key) inline() bool { return k.w0|k.w1|k.w2|k.w3 != 0 }

// hashKey is the shard maps' hash: hashID of the ID, computed from the
// key's words when it is inline (the same value, three multiplies).
func hashKey(k key, seed uint64) uint64 {
	if !k.inline() {
		return hashID(k.tail, seed)
	}
	return hashFinal(k.w2, k.w3, mix(k.w0^hashK1, k.w1^seed), inlineLen)
}

// shardOfKey spreads keys over the shards (the result's top bits select
// one): shardHash of the ID's bytes, or for an inline key the same
// multiply-xorshift rounds over its first, middle and last words.
func shardOfKey(k *key, seed uint64) uint64 {
	if !k.inline() {
		return shardHash(k.tail, seed)
	}
	return shardFinal(k.w0^bits.RotateLeft64(k.w3, 29)^bits.RotateLeft64(k.w1^k.w2, 47), seed, inlineLen)
}
