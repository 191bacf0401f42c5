package ringbuf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// FuzzRing interprets its input as a ring configuration followed by a
// sequence of operations and checks the ring's invariants after each one.
// A twin ring with Push's fast path turned off gets the same operations and
// must give the same results, counters and event data.
//
// Input layout: 4 config bytes (capacity, max bytes, policy, strict), then
// operations of 2 bytes each, op and arg:
//
//	op%4 == 0, 1  push: class = op>>2&1, key = op>>3&3, size = arg
//	op%4 == 2     next with a byte budget of arg*8 (0: unlimited), from
//	              the reader's position, or (op>>2&1) replaying from
//	              arg%8 events earlier
//	op%4 == 3     op>>2&3: 1 close, 2 TryPushMust of size arg, 3 with
//	              op>>4&1: the ring is replaced by one restored from its
//	              snapshot (the twin goes on unrestored, so every later
//	              result must still match), else a Stats/Limits check
func FuzzRing(f *testing.F) {
	f.Add([]byte{3, 40, 0, 0, 0, 10, 1, 20, 4, 5, 2, 1, 0, 100})
	f.Add([]byte{1, 8, 1, 1, 4, 3, 4, 3, 4, 3, 0, 2, 2, 0, 6, 3, 7, 0})
	f.Add([]byte{7, 255, 2, 0, 8, 9, 8, 9, 16, 9, 0, 9, 0, 9, 2, 2, 6, 5, 5, 0})
	// Restores between pushes, replays and a close.
	f.Add([]byte{1, 40, 0, 0, 4, 10, 0, 12, 31, 0, 2, 1, 8, 9, 31, 0, 0, 30, 0, 30, 6, 3, 31, 0, 7, 0, 31, 0, 2, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 {
			return
		}
		m := newFuzzModel(t, Config{
			Capacity:     1 + int(in[0]%16),
			MaxBytes:     1 + int(in[1]),
			Policy:       Policy(in[2] % 3),
			StrictReplay: in[3]&1 == 1,
		})
		ops := in[4:]
		for i := 0; i+1 < len(ops); i += 2 {
			m.step(ops[i], ops[i+1])
			m.check()
		}
		m.finish()
	})
}

type fuzzModel struct {
	t      *testing.T
	cfg    Config
	r      *Ring
	twin   *Ring // same config, fast path off
	lim    Limits
	pushes uint32            // pushes made, stamped into each event's data
	data   map[uint64][]byte // expected data by seq
	must   []uint64          // stored must-deliver seqs, in order
	seen   map[uint64]bool   // must-deliver seqs visited by some Next
	pos    uint64            // the reader's position
	closed bool
}

func newFuzzModel(t *testing.T, cfg Config) *fuzzModel {
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	twin, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	twin.noFast = true
	return &fuzzModel{t: t, cfg: cfg, r: r, twin: twin, lim: r.Limits(), data: map[uint64][]byte{}, seen: map[uint64]bool{}}
}

// sameAsTwin fails unless the twin's counters match the ring's.
func (m *fuzzModel) sameAsTwin(op string) {
	if a, b := m.r.Stats(), m.twin.Stats(); a != b {
		m.t.Fatalf("after %s: stats %+v, twin (general path only) %+v", op, a, b)
	}
}

func (m *fuzzModel) step(op, arg byte) {
	switch op % 4 {
	case 0, 1:
		m.push(Class(op>>2&1), uint64(op>>3&3), int(arg))
	case 2:
		budget := int(arg) * 8
		if budget == 0 {
			budget = 1 << 30
		}
		after := m.pos
		if op>>2&1 == 1 {
			after -= min(after, uint64(arg%8))
		}
		m.next(after, budget)
	case 3:
		switch op >> 2 & 3 {
		case 1:
			m.r.Close()
			m.twin.Close()
			m.closed = true
		case 2:
			m.tryPushMust(int(arg))
		case 3:
			if op>>4&1 == 1 {
				m.restore()
			}
		}
	}
}

// restore replaces the ring by one restored from its snapshot, which must
// snapshot the same.
func (m *fuzzModel) restore() {
	snap := m.r.Snapshot()
	r, err := Restore(m.cfg, snap)
	if err != nil {
		m.t.Fatalf("restore: %v", err)
	}
	if again := r.Snapshot(); !reflect.DeepEqual(again, snap) {
		m.t.Fatalf("restored ring snapshots differently:\n%+v\nwant\n%+v", again, snap)
	}
	m.r = r
	m.sameAsTwin("restore")
}

func (m *fuzzModel) push(class Class, key uint64, size int) {
	t := m.t
	m.pushes++
	data := make([]byte, size)
	if size >= 4 {
		binary.LittleEndian.PutUint32(data, m.pushes)
	}
	before := m.r.LastSeq()
	st := m.r.Stats()
	seq, out, err := m.r.Push(class, key, data)
	tseq, tout, terr := m.twin.Push(class, key, data)
	if tseq != seq || tout != out || terr != err {
		t.Fatalf("push %v key %d size %d: seq %d %v %v, twin %d %v %v", class, key, size, seq, out, err, tseq, tout, terr)
	}
	m.sameAsTwin("push")
	if m.closed {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("push after close: %v", err)
		}
		return
	}
	if errors.Is(err, ErrOverflow) {
		if class != MustDeliver {
			t.Fatal("ErrOverflow for a droppable event")
		}
		if st.Len+1 <= m.lim.HardCapacity && st.Bytes+size <= m.lim.HardMaxBytes {
			t.Fatalf("overflow with room: len %d bytes %d size %d %+v", st.Len, st.Bytes, size, m.lim)
		}
		if m.r.LastSeq() != before {
			t.Fatal("ErrOverflow stored an event")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	after := m.r.Stats()
	switch out {
	case Accepted, DroppedOldest:
		if seq != before+1 || m.r.LastSeq() != seq {
			t.Fatalf("seq %d after %d", seq, before)
		}
		if after.Len > m.lim.Capacity || after.Bytes > m.lim.MaxBytes {
			t.Fatalf("%v stored past the soft limits: %+v %+v", out, after, m.lim)
		}
		if out == DroppedOldest && (class != Droppable || m.r.policy != DropOldest) {
			t.Fatalf("DroppedOldest for %v under %v", class, m.r.policy)
		}
	case Coalesced:
		if class != Droppable || key == 0 || seq == 0 || seq > before || m.r.LastSeq() != before {
			t.Fatalf("bad coalesce: class %v key %d seq %d last %d", class, key, seq, before)
		}
		if after.Bytes > max(m.lim.MaxBytes, st.Bytes) {
			t.Fatalf("coalesce grew past the byte budget: %d -> %d", st.Bytes, after.Bytes)
		}
	case DroppedNewest:
		if class != Droppable || seq != 0 || m.r.LastSeq() != before {
			t.Fatalf("bad refusal: %v seq %d", class, seq)
		}
	case MustDisconnect:
		if class == Droppable {
			if seq != 0 || m.r.policy != Disconnect {
				t.Fatalf("droppable MustDisconnect: seq %d policy %v", seq, m.r.policy)
			}
		} else if seq != before+1 || after.Len > m.lim.HardCapacity || after.Bytes > m.lim.HardMaxBytes {
			t.Fatalf("must-deliver past the hard limits: %+v %+v", after, m.lim)
		}
	default:
		t.Fatalf("unknown outcome %v", out)
	}
	if class == MustDeliver && seq == 0 {
		t.Fatal("must-deliver event refused without error")
	}
	if seq != 0 {
		m.data[seq] = data
		if class == MustDeliver && out != Coalesced {
			m.must = append(m.must, seq)
		}
	}
}

// tryPushMust pushes a must-deliver event with backpressure: it is stored
// within the soft limits, or alone past them, or refused with ErrNoRoom
// while undelivered events remain.
func (m *fuzzModel) tryPushMust(size int) {
	t := m.t
	m.pushes++
	data := make([]byte, size)
	if size >= 4 {
		binary.LittleEndian.PutUint32(data, m.pushes)
	}
	before := m.r.LastSeq()
	st := m.r.Stats()
	seq, out, err := m.r.TryPushMust(data)
	tseq, tout, terr := m.twin.TryPushMust(data)
	if tseq != seq || tout != out || terr != err {
		t.Fatalf("tryPushMust size %d: %d %v %v, twin %d %v %v", size, seq, out, err, tseq, tout, terr)
	}
	m.sameAsTwin("tryPushMust")
	after := m.r.Stats()
	switch {
	case m.closed:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("tryPushMust after close: %v", err)
		}
	case errors.Is(err, ErrOverflow):
		if size <= m.lim.HardMaxBytes {
			t.Fatalf("ErrOverflow for %d bytes, hard limit %d", size, m.lim.HardMaxBytes)
		}
	case errors.Is(err, ErrNoRoom):
		m.r.mu.Lock()
		headMust := m.r.first <= m.r.last && m.r.first > m.r.delivered && m.r.slots[m.r.first&m.r.mask].class == MustDeliver
		m.r.mu.Unlock()
		if !headMust || m.r.LastSeq() != before {
			t.Fatalf("ErrNoRoom without an undelivered must-deliver head, or with a store: %+v", after)
		}
	case err != nil:
		t.Fatal(err)
	default:
		if seq != before+1 {
			t.Fatalf("seq %d after %d", seq, before)
		}
		if after.Len > m.lim.HardCapacity || after.Bytes > m.lim.HardMaxBytes {
			t.Fatalf("stored past the hard limits: %+v %+v", after, m.lim)
		}
		if (out == DroppedOldest) != (after.DroppedOldest > st.DroppedOldest) {
			t.Fatalf("outcome %v, dropped %d -> %d", out, st.DroppedOldest, after.DroppedOldest)
		}
		m.data[seq] = data
		m.must = append(m.must, seq)
	}
}

func (m *fuzzModel) next(after uint64, budget int) {
	t := m.t
	m.r.mu.Lock()
	first, lost := m.r.first, m.r.lost
	m.r.mu.Unlock()
	prev := after
	used := 0
	var visited []uint64
	last, skipped, err := m.r.Next(after, func(seq uint64, data []byte) bool {
		if used+len(data) > budget {
			return false
		}
		used += len(data)
		if seq != prev+1 && !(prev == after && seq == first) {
			t.Fatalf("visited %d after %d", seq, prev)
		}
		if !bytes.Equal(data, m.data[seq]) {
			t.Fatalf("seq %d: data %x, want %x", seq, data, m.data[seq])
		}
		m.seen[seq] = true
		prev = seq
		visited = append(visited, seq)
		return true
	})
	tused, tvisited := 0, 0
	tlast, tskipped, terr := m.twin.Next(after, func(seq uint64, data []byte) bool {
		if tused+len(data) > budget {
			return false
		}
		tused += len(data)
		if tvisited >= len(visited) || seq != visited[tvisited] || !bytes.Equal(data, m.data[seq]) {
			t.Fatalf("next after %d: twin visited seq %d (%x), ring visited %v", after, seq, data, visited)
		}
		tvisited++
		return true
	})
	if tlast != last || tskipped != skipped || tvisited != len(visited) ||
		(terr == nil) != (err == nil) || terr != nil && terr.Error() != err.Error() {
		t.Fatalf("next after %d: %d %d %v, twin %d %d %v", after, last, skipped, err, tlast, tskipped, terr)
	}
	m.sameAsTwin("next")
	var ee *EvictedError
	switch {
	case errors.As(err, &ee):
		if after >= lost || prev != after || last != after {
			t.Fatalf("ErrEvicted at %d (lost %d), visited up to %d", after, lost, prev)
		}
		if ee.After != after || ee.Missing != first-1-after {
			t.Fatalf("EvictedError %+v, first %d", *ee, first)
		}
		if !m.r.strict && after == m.pos {
			t.Fatalf("live reader at %d got ErrEvicted without StrictReplay", after)
		}
		if after == m.pos {
			m.pos = first - 1 // the client reconnects from what is left
		}
		return
	case errors.Is(err, ErrClosed):
		if !m.closed || last != after || m.r.LastSeq() > after && first <= m.r.LastSeq() {
			t.Fatalf("ErrClosed at %d, closed %v, last seq %d", after, m.closed, m.r.LastSeq())
		}
	case err != nil:
		t.Fatal(err)
	}
	if last != prev {
		t.Fatalf("Next returned %d, visited up to %d", last, prev)
	}
	wantSkipped := uint64(0)
	if after+1 < first {
		wantSkipped = first - 1 - after
	}
	if skipped != wantSkipped {
		t.Fatalf("skipped %d, want %d", skipped, wantSkipped)
	}
	m.pos = max(m.pos, last)
}

func (m *fuzzModel) check() {
	t := m.t
	r := m.r
	r.mu.Lock()
	defer r.mu.Unlock()
	count := int(r.last + 1 - r.first)
	if r.first < 1 || count < 0 || count > m.lim.HardCapacity || count > len(r.slots) && count > 0 {
		t.Fatalf("count %d (first %d last %d slots %d)", count, r.first, r.last, len(r.slots))
	}
	sum, keyed := 0, 0
	for seq := r.first; seq <= r.last; seq++ {
		s := &r.slots[seq&r.mask]
		sum += len(s.data)
		if s.key != 0 {
			keyed++
		}
	}
	if sum != r.bytes || r.bytes > m.lim.HardMaxBytes || keyed != r.keyed {
		t.Fatalf("bytes %d (sum %d, hard %d), keyed %d (counted %d)", r.bytes, sum, m.lim.HardMaxBytes, r.keyed, keyed)
	}
	if r.lost >= r.first || r.delivered > r.last {
		t.Fatalf("lost %d delivered %d first %d last %d", r.lost, r.delivered, r.first, r.last)
	}
	// No must-deliver event was evicted before a reader saw it.
	for _, seq := range m.must {
		if seq >= r.first {
			break
		}
		if !m.seen[seq] {
			t.Fatalf("must-deliver seq %d evicted undelivered", seq)
		}
	}
}

// finish drains the ring and checks that every must-deliver event was seen.
func (m *fuzzModel) finish() {
	m.next(m.pos, 1<<30)
	m.next(m.pos, 1<<30) // again, in case the first one was refused with ErrEvicted
	for _, seq := range m.must {
		if !m.seen[seq] {
			m.t.Fatalf("must-deliver seq %d never delivered", seq)
		}
	}
}
