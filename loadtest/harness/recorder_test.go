package harness

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecorderMerge checks that latencies spread over lanes by concurrent goroutines
// merge into the same percentiles as one histogram holding them all.
func TestRecorderMerge(t *testing.T) {
	rec := NewRecorder()
	ref := newHist()
	rng := rand.New(rand.NewPCG(1, 2))
	const goroutines, perG = 8, 2000
	values := make([][]time.Duration, goroutines)
	for g := range values {
		for range perG {
			d := time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
			values[g] = append(values[g], d)
			require.NoError(t, ref.RecordValue(micros(d)))
		}
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lane := rec.Lane(g * 5) // several goroutines per lane for some g
			for i, d := range values[g] {
				lane.Latency(MetricCall, d, i%10 != 0) // 10% fall in the warm-up
				lane.Add("ops", 1)
			}
			lane.Error("http_503")
		}()
	}
	wg.Wait()

	tot := rec.Merge()
	assert.Equal(t, int64(goroutines*perG), tot.Counts["ops"])
	assert.Equal(t, int64(goroutines), tot.Errors["http_503"])
	assert.Equal(t, int64(goroutines), tot.ErrorCount())
	h := tot.Latency[MetricCall]
	require.NotNil(t, h)
	assert.Equal(t, int64(goroutines*perG*9/10), h.TotalCount(), "warm-up values excluded")

	// The interval histograms saw everything, warm-up included.
	lat, counts, _ := rec.CutInterval()
	all := lat[MetricCall]
	require.NotNil(t, all)
	assert.Equal(t, ref.TotalCount(), all.TotalCount())
	for _, q := range []float64{50, 90, 99, 99.9, 100} {
		assert.Equal(t, ref.ValueAtQuantile(q), all.ValueAtQuantile(q), "p%v", q)
	}
	assert.Equal(t, int64(goroutines*perG), counts["ops"])
	// Cutting resets the intervals but not the totals.
	lat, _, _ = rec.CutInterval()
	assert.Nil(t, lat[MetricCall])
	assert.Equal(t, h.TotalCount(), rec.Merge().Latency[MetricCall].TotalCount())
}

func TestMicrosClamps(t *testing.T) {
	assert.Equal(t, int64(histMinMicros), micros(-time.Second))
	assert.Equal(t, int64(histMinMicros), micros(0))
	assert.Equal(t, int64(1500), micros(1500*time.Microsecond))
	assert.Equal(t, int64(histMaxMicros), micros(time.Hour))
}

func TestSummarize(t *testing.T) {
	h := newHist()
	for v := int64(1); v <= 1000; v++ {
		require.NoError(t, h.RecordValue(v*1000)) // 1..1000 ms
	}
	s := Summarize(h)
	assert.Equal(t, int64(1000), s.Count)
	assert.InDelta(t, 500, s.P50, 1)
	assert.InDelta(t, 900, s.P90, 1)
	assert.InDelta(t, 990, s.P99, 1)
	assert.InDelta(t, 999, s.P999, 1)
	assert.InDelta(t, 1000, s.Max, 1)
	assert.InDelta(t, 1, s.Min, 0.01)
	assert.Equal(t, LatencySummary{}, Summarize(nil))
	assert.Nil(t, PercentileCurve(newHist()))
	assert.Len(t, PercentileCurve(h), len(curvePercentiles))
}

func BenchmarkLaneLatency(b *testing.B) {
	b.ReportAllocs()
	rec := NewRecorder()
	b.RunParallel(func(pb *testing.PB) {
		lane := rec.Lane(rand.IntN(NumLanes))
		for i := 0; pb.Next(); i++ {
			lane.Latency(MetricEvent, time.Duration(i%5000)*time.Microsecond, true)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	var d decoder
	data := []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"pad":""},"_meta":{"seq":12345,"sent":1700000000000000000}}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := d.decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
