package mockup

import (
	"context"
	"testing"
)

// BenchmarkStreamAppendRead measures the mock's event path: a producer appends an
// encoded event, and the reader drains what queued in one Read (as fasthttp calls it).
// The baseline twin below pushes the same bytes through a buffered channel.
func BenchmarkStreamAppendRead(b *testing.B) {
	srv, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	st := newStream(srv, 0, true, true)
	r, err := st.attach(1, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	data := appendPush(nil, 1, 1, 64)
	p := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	n := 0
	for b.Loop() {
		_ = st.append(ctx, data)
		if n++; n%16 == 0 {
			_, _ = r.Read(p)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkChannelBaseline(b *testing.B) {
	ch := make(chan []byte, 1024)
	data := appendPush(nil, 1, 1, 64)
	p := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	n := 0
	for b.Loop() {
		buf := make([]byte, len(data))
		copy(buf, data)
		ch <- buf
		if n++; n%16 == 0 {
			off := 0
			for len(ch) > 0 {
				off += copy(p[off:], <-ch)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkAppendProgress(b *testing.B) {
	buf := make([]byte, 0, 512)
	token := []byte(`"tok"`)
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		buf = appendProgress(buf[:0], token, i, 10000, 1_700_000_000_000_000_000, 0)
	}
}
