package gateway

import (
	"iter"
	"slices"
)

// streamTable is a session's streams by id: a slice in ascending id order,
// searched by halves. A session holds a few (its standalone stream, the
// answers in flight, up to maxRetainedStreams finished ones), and new ids
// are the highest so far, so adding one appends. A Go map would hold ~190
// bytes per session with a stream for its life; the slice holds what it
// stores. The session's mu guards it.
type streamTable struct {
	list []*stream
}

func (t *streamTable) search(id uint64) (int, bool) {
	return slices.BinarySearchFunc(t.list, id, func(st *stream, id uint64) int {
		switch {
		case st.id < id:
			return -1
		case st.id > id:
			return 1
		}
		return 0
	})
}

// get returns the stream with id, nil if there is none.
func (t *streamTable) get(id uint64) *stream {
	if i, ok := t.search(id); ok {
		return t.list[i]
	}
	return nil
}

// put stores st under st.id, replacing a stream with that id.
func (t *streamTable) put(st *stream) {
	i, ok := t.search(st.id)
	if ok {
		t.list[i] = st
		return
	}
	if t.list == nil {
		t.list = make([]*stream, 0, 2) // made with the first stream: idle sessions have none
	}
	t.list = slices.Insert(t.list, i, st)
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

// all yields the streams by id, highest first; the loop may delete the
// stream it is at (del) and nothing else.
func (t *streamTable) all() iter.Seq2[uint64, *stream] {
	return func(yield func(uint64, *stream) bool) {
		for i := len(t.list) - 1; i >= 0; i-- {
			if i >= len(t.list) {
				continue
			}
			st := t.list[i]
			if !yield(st.id, st) {
				return
			}
		}
	}
}
