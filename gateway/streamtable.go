package gateway

import (
	"iter"
	"slices"
)

// streamTable is a session's streams by id: a slice of (id, stream) in
// ascending id order, searched by halves over the ids it holds inline (a
// search reads no stream). A session holds a few (its standalone stream,
// id 0, first; the answers in flight; up to maxRetainedStreams finished
// ones), and new ids are the highest so far, so adding one appends. A Go
// map would hold ~190 bytes per session with a stream for its life; the
// slice holds what it stores. The session's mu guards it.
type streamTable struct {
	list []streamEntry
}

type streamEntry struct {
	id uint64
	st *stream
}

func (t *streamTable) search(id uint64) (int, bool) {
	// Halving by hand over the inline ids: no comparison call per step.
	lo, hi := 0, len(t.list)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.list[m].id < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(t.list) && t.list[lo].id == id
}

// get returns the stream with id, nil if there is none.
func (t *streamTable) get(id uint64) *stream {
	if i, ok := t.search(id); ok {
		return t.list[i].st
	}
	return nil
}

// put stores st under st.id, replacing a stream with that id.
func (t *streamTable) put(st *stream) {
	if n := len(t.list); n > 0 && t.list[n-1].id < st.id { // the usual case: a new, highest id
		t.list = append(t.list, streamEntry{st.id, st})
		return
	}
	i, ok := t.search(st.id)
	if ok {
		t.list[i].st = st
		return
	}
	if t.list == nil {
		t.list = make([]streamEntry, 0, 1) // made with the first stream: idle sessions have none
	}
	t.list = slices.Insert(t.list, i, streamEntry{st.id, st})
}

// del removes the stream with id, if any.
func (t *streamTable) del(id uint64) {
	if i, ok := t.search(id); ok {
		t.list = slices.Delete(t.list, i, i+1)
		if len(t.list) == 0 {
			t.list = nil
		}
	}
}

func (t *streamTable) len() int { return len(t.list) }

// snapshot returns the streams in a slice of their own, highest id first,
// for work done after the session's mu is let go.
func (t *streamTable) snapshot() []*stream {
	out := make([]*stream, len(t.list))
	for i, e := range t.list {
		out[len(out)-1-i] = e.st
	}
	return out
}

// all yields the streams by id, highest first; the loop may delete the
// stream it is at (del) and nothing else.
func (t *streamTable) all() iter.Seq2[uint64, *stream] {
	return func(yield func(uint64, *stream) bool) {
		for i := len(t.list) - 1; i >= 0; i-- {
			if i >= len(t.list) {
				continue
			}
			e := t.list[i]
			if !yield(e.id, e.st) {
				return
			}
		}
	}
}
