package sse

import (
	"bytes"
	"testing"
)

var benchPayload = []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok-17","progress":42,"total":100}}`)

func BenchmarkAppendStreamEvent(b *testing.B) {
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	for i := 0; b.Loop(); i++ {
		buf = AppendStreamEvent(buf[:0], 3, uint64(i), benchPayload)
	}
}

// BenchmarkAppendStreamEventParallel is the same encoder under b.RunParallel, one buffer
// per goroutine, as the gateway's stream writers use it.
func BenchmarkAppendStreamEventParallel(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 4096)
		var i uint64
		for pb.Next() {
			buf = AppendStreamEvent(buf[:0], 3, i, benchPayload)
			i++
		}
	})
}

func BenchmarkParseEventID(b *testing.B) {
	id := []byte("12_3456789")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseEventID(id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecoder(b *testing.B) {
	for _, tc := range []struct {
		name string
		eol  string
	}{{"lf", "\n"}, {"crlf", "\r\n"}} {
		b.Run(tc.name, func(b *testing.B) {
			var stream []byte
			for i := range 64 {
				stream = AppendStreamEvent(stream, 1, uint64(i), benchPayload)
				if i%16 == 0 {
					stream = AppendComment(stream, "hb")
				}
			}
			stream = bytes.ReplaceAll(stream, []byte("\n"), []byte(tc.eol))
			d := NewDecoder(&loopReader{data: stream}, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(stream)) / 64)
			for b.Loop() {
				if _, err := d.Next(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
		})
	}
}
