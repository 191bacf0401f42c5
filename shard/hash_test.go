package shard

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHashAllLengths hashes strings of every length up to 130 and checks
// that the hashes are deterministic, depend on the seed, and that flipping any
// one byte changes them (no byte is ignored).
func TestHashAllLengths(t *testing.T) {
	const seed = 0x1234_5678_9abc_def0
	base := strings.Repeat("0123456789abcdef~!", 8)[:130]
	for n := 0; n <= 130; n++ {
		s := base[:n]
		h := hashID(s, seed)
		assert.Equal(t, h, hashID(strings.Clone(s), seed), "deterministic, len %d", n)
		assert.NotEqual(t, h, hashID(s, seed+1), "seeded, len %d", n)
		assert.Equal(t, shardHash(s, seed), shardHash(strings.Clone(s), seed))
		for i := range n {
			b := []byte(s)
			b[i] ^= 0x01
			assert.NotEqual(t, h, hashID(string(b), seed), "len %d, byte %d ignored", n, i)
		}
		if n > 0 {
			assert.NotEqual(t, h, hashID(base[:n-1], seed), "length %d vs %d", n, n-1)
		}
	}
}

// TestHashBits checks that every output bit of hashID flips about half the
// time over random IDs (xsync uses the low 7 bits and the bits above them).
func TestHashBits(t *testing.T) {
	const n = 4000
	var ones [64]int
	for range n {
		h := hashID(newID(t), 42)
		for b := range 64 {
			ones[b] += int(h >> b & 1)
		}
	}
	for b, c := range ones {
		assert.InDelta(t, n/2, c, 6*32, "bit %d", b) // sd = sqrt(n)/2 ~ 32
	}
}
