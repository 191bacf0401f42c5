package harness

// maxGaps bounds the gaps a SeqTracker remembers; beyond it the oldest gap is written off
// as lost for good (a later arrival from it then counts as a duplicate).
const maxGaps = 4096

// gap is a run of missing sequence numbers [from, to).
type gap struct{ from, to uint64 }

// SeqTracker counts delivered, duplicated and missing sequence numbers of one stream
// whose numbers start at 1. Events normally arrive in order; a gap is remembered so that a
// late arrival (after a resume, say) fills it instead of counting as a duplicate. It is
// not safe for concurrent use: the goroutine reading the stream owns it.
type SeqTracker struct {
	next       uint64 // every number below next was seen or is in gaps
	gaps       []gap  // ascending, disjoint
	unique     uint64
	duplicates uint64
	late       uint64 // numbers that arrived after a later one
	writtenOff uint64 // missing numbers dropped from gaps when it overflowed
}

// Observe records sequence number seq (0 is ignored) and reports whether it was new.
func (t *SeqTracker) Observe(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if t.next == 0 {
		t.next = 1
	}
	switch {
	case seq == t.next:
		t.next++
	case seq > t.next:
		t.gaps = append(t.gaps, gap{t.next, seq})
		if len(t.gaps) > maxGaps {
			g := t.gaps[0]
			t.writtenOff += g.to - g.from
			t.gaps = t.gaps[1:]
		}
		t.next = seq + 1
	default:
		if !t.fill(seq) {
			t.duplicates++
			return false
		}
		t.late++
	}
	t.unique++
	return true
}

// fill removes seq from the gaps and reports whether it was missing.
func (t *SeqTracker) fill(seq uint64) bool {
	// Gaps are few and late arrivals rare; search from the newest.
	for i := len(t.gaps) - 1; i >= 0; i-- {
		g := t.gaps[i]
		if seq >= g.to {
			return false
		}
		if seq < g.from {
			continue
		}
		switch {
		case g.to-g.from == 1:
			t.gaps = append(t.gaps[:i], t.gaps[i+1:]...)
		case seq == g.from:
			t.gaps[i].from++
		case seq == g.to-1:
			t.gaps[i].to--
		default:
			t.gaps = append(t.gaps, gap{})
			copy(t.gaps[i+2:], t.gaps[i+1:])
			t.gaps[i] = gap{g.from, seq}
			t.gaps[i+1] = gap{seq + 1, g.to}
		}
		return true
	}
	return false
}

// Highest is the highest sequence number seen (0 if none).
func (t *SeqTracker) Highest() uint64 {
	if t.next == 0 {
		return 0
	}
	return t.next - 1
}

// Unique is the number of distinct sequence numbers seen.
func (t *SeqTracker) Unique() uint64 { return t.unique }

// Duplicates is the number of arrivals of an already seen sequence number.
func (t *SeqTracker) Duplicates() uint64 { return t.duplicates }

// Late is the number of sequence numbers that arrived after a higher one.
func (t *SeqTracker) Late() uint64 { return t.late }

// Missing is the number of sequence numbers below the highest seen that never arrived.
func (t *SeqTracker) Missing() uint64 {
	n := t.writtenOff
	for _, g := range t.gaps {
		n += g.to - g.from
	}
	return n
}

// Lost is the number of sequence numbers in 1..offered that never arrived, for a stream
// known to have offered numbers up to offered.
func (t *SeqTracker) Lost(offered uint64) uint64 {
	if offered <= t.Highest() {
		// Numbers above offered are not expected; count only gaps below it.
		var n uint64
		for _, g := range t.gaps {
			if g.from >= offered+1 {
				break
			}
			n += min(g.to, offered+1) - g.from
		}
		return n + t.writtenOff
	}
	return t.Missing() + (offered - t.Highest())
}
