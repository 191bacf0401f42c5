package ringbuf

import (
	"sync"
	"testing"
)

// benchMsg is the size of a typical encoded progress notification.
const benchMsg = 150

// writeBuf mimics the stream writer: whole events are copied into a 4 KiB
// buffer until the next one does not fit.
type writeBuf struct{ b []byte }

func newWriteBuf() *writeBuf { return &writeBuf{b: make([]byte, 0, 4096)} }

func (w *writeBuf) add(_ uint64, data []byte) bool {
	if len(w.b)+len(data) > cap(w.b) {
		return false
	}
	w.b = append(w.b, data...)
	return true
}

func reportPerEvent(b *testing.B, events int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}

// BenchmarkPushDrain pushes one event and drains it per op: the latency
// path of a stream whose client keeps up. The chan twin sends the slice
// over a buffered channel and copies it out the same way.
func BenchmarkPushDrain(b *testing.B) {
	msg := make([]byte, benchMsg)
	b.Run("ring", func(b *testing.B) {
		r, _ := New(Config{})
		w := newWriteBuf()
		fn := w.add
		var after uint64
		b.ReportAllocs()
		for b.Loop() {
			_, _, _ = r.Push(Droppable, 0, msg)
			w.b = w.b[:0]
			after, _, _ = r.Next(after, fn)
		}
		reportPerEvent(b, b.N)
	})
	b.Run("chan", func(b *testing.B) {
		ch := make(chan []byte, DefaultCapacity)
		w := newWriteBuf()
		b.ReportAllocs()
		for b.Loop() {
			ch <- msg
			w.b = w.b[:0]
			w.add(0, <-ch)
		}
		reportPerEvent(b, b.N)
	})
}

// BenchmarkPushDrainBatch pushes 16 events and drains them in one Next per
// op: the throughput path, one write(2) per batch.
func BenchmarkPushDrainBatch(b *testing.B) {
	const batch = 16
	msg := make([]byte, benchMsg)
	b.Run("ring", func(b *testing.B) {
		r, _ := New(Config{})
		w := newWriteBuf()
		fn := w.add
		var after uint64
		b.ReportAllocs()
		for b.Loop() {
			for range batch {
				_, _, _ = r.Push(Droppable, 0, msg)
			}
			w.b = w.b[:0]
			after, _, _ = r.Next(after, fn)
		}
		reportPerEvent(b, b.N*batch)
	})
	b.Run("chan", func(b *testing.B) {
		ch := make(chan []byte, DefaultCapacity)
		w := newWriteBuf()
		b.ReportAllocs()
		for b.Loop() {
			for range batch {
				ch <- msg
			}
			w.b = w.b[:0]
		drain:
			for {
				select {
				case m := <-ch:
					w.add(0, m)
				default:
					break drain
				}
			}
		}
		reportPerEvent(b, b.N*batch)
	})
}

// BenchmarkPushParallel runs producers in parallel against one reader
// goroutine that drains as fast as it can. Both sides drop the oldest
// undelivered event when full (the chan twin receives one and retries its
// non-blocking send), so every push stores its event and producers never
// wait for the reader. dropped/op says how far the reader fell behind.
func BenchmarkPushParallel(b *testing.B) {
	msg := make([]byte, benchMsg)
	b.Run("ring", func(b *testing.B) {
		r, _ := New(Config{Capacity: 1024, Policy: DropOldest})
		var wg sync.WaitGroup
		wg.Go(func() {
			w := newWriteBuf()
			fn := w.add
			var after uint64
			for {
				w.b = w.b[:0]
				last, _, err := r.Next(after, fn)
				if err != nil {
					return
				}
				if last == after {
					<-r.Wait()
				}
				after = last
			}
		})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _, _ = r.Push(Droppable, 0, msg)
			}
		})
		b.StopTimer()
		r.Close()
		wg.Wait()
		st := r.Stats()
		b.ReportMetric(float64(st.DroppedOldest+st.DroppedNewest)/float64(b.N), "dropped/op")
	})
	b.Run("chan", func(b *testing.B) {
		ch := make(chan []byte, 1024)
		var wg sync.WaitGroup
		wg.Go(func() {
			w := newWriteBuf()
			for m := range ch {
				w.b = w.b[:0]
				w.add(0, m)
			}
		})
		var mu sync.Mutex
		dropped := 0
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			d := 0
			for pb.Next() {
				for sent := false; !sent; {
					select {
					case ch <- msg:
						sent = true
					default:
						select {
						case <-ch:
							d++
						default:
						}
					}
				}
			}
			mu.Lock()
			dropped += d
			mu.Unlock()
		})
		b.StopTimer()
		close(ch)
		wg.Wait()
		b.ReportMetric(float64(dropped)/float64(b.N), "dropped/op")
	})
}

// BenchmarkPushCoalesce measures a keyed push against a backlog of
// undelivered events, the worst case of the coalescing scan: the matching
// event is the oldest undelivered one.
func BenchmarkPushCoalesce(b *testing.B) {
	msg := make([]byte, benchMsg)
	for _, backlog := range []int{1, 16, 200} {
		b.Run(itoa(backlog), func(b *testing.B) {
			r, _ := New(Config{Capacity: 256})
			_, _, _ = r.Push(Droppable, 1, msg)
			for i := 1; i < backlog; i++ {
				_, _, _ = r.Push(Droppable, uint64(i+1), msg)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = r.Push(Droppable, 1, msg)
			}
		})
	}
}

func itoa(n int) string {
	switch n {
	case 1:
		return "backlog=1"
	case 16:
		return "backlog=16"
	}
	return "backlog=200"
}
