package harness

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSeqTracker(t *testing.T) {
	tests := []struct {
		name                            string
		seqs                            []uint64
		offered                         uint64
		unique, dup, late, missing, los uint64
	}{
		{name: "in order", seqs: []uint64{1, 2, 3, 4}, offered: 4, unique: 4},
		{name: "gap", seqs: []uint64{1, 2, 5}, offered: 5, unique: 3, missing: 2, los: 2},
		{name: "tail lost", seqs: []uint64{1, 2, 3}, offered: 6, unique: 3, los: 3},
		{name: "duplicate", seqs: []uint64{1, 2, 2, 3}, offered: 3, unique: 3, dup: 1},
		{name: "replayed run", seqs: []uint64{1, 2, 3, 4, 3, 4, 5}, offered: 5, unique: 5, dup: 2},
		{name: "late fill", seqs: []uint64{1, 4, 2, 3}, offered: 4, unique: 4, late: 2},
		{name: "late fill middle of gap", seqs: []uint64{1, 6, 3}, offered: 6, unique: 3, late: 1, missing: 3, los: 3},
		{name: "duplicate after gap", seqs: []uint64{1, 3, 3}, offered: 3, unique: 2, dup: 1, missing: 1, los: 1},
		{name: "zero ignored", seqs: []uint64{0, 1, 0}, offered: 1, unique: 1},
		{name: "nothing", offered: 2, los: 2},
		{name: "more than offered", seqs: []uint64{1, 3, 4}, offered: 2, unique: 3, missing: 1, los: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr SeqTracker
			for _, s := range tt.seqs {
				tr.Observe(s)
			}
			assert.Equal(t, tt.unique, tr.Unique(), "unique")
			assert.Equal(t, tt.dup, tr.Duplicates(), "duplicates")
			assert.Equal(t, tt.late, tr.Late(), "late")
			assert.Equal(t, tt.missing, tr.Missing(), "missing")
			assert.Equal(t, tt.los, tr.Lost(tt.offered), "lost")
		})
	}
}

func TestSeqTrackerGapOverflow(t *testing.T) {
	var tr SeqTracker
	// Every other number: maxGaps+10 gaps of one.
	n := uint64(maxGaps + 10)
	for i := uint64(1); i <= n; i++ {
		tr.Observe(2 * i)
	}
	assert.Equal(t, n, tr.Missing())
	assert.Len(t, tr.gaps, maxGaps)
	// The oldest gaps were written off: a late 1 is now a duplicate.
	assert.False(t, tr.Observe(1))
	assert.Equal(t, uint64(1), tr.Duplicates())
	// A recent gap still fills.
	assert.True(t, tr.Observe(2*n-1))
	assert.Equal(t, n-1, tr.Missing())
}

func BenchmarkSeqTrackerInOrder(b *testing.B) {
	b.ReportAllocs()
	var tr SeqTracker
	for i := uint64(1); b.Loop(); i++ {
		tr.Observe(i)
	}
}
