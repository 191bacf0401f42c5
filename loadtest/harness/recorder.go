package harness

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds from 1 µs to one minute with
// three significant figures; longer values are clamped to the maximum.
const (
	histMinMicros = 1
	histMaxMicros = 60_000_000
	histSigFigs   = 3
)

// NumLanes is the number of recording lanes. Each goroutine records into lane
// (its index mod NumLanes), so up to NumLanes goroutines record without sharing a lock;
// lanes are merged for reports.
const NumLanes = 32

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
}

// micros converts d to a value the histograms accept.
func micros(d time.Duration) int64 {
	us := d.Microseconds()
	return min(max(us, histMinMicros), histMaxMicros)
}

// Recorder collects latencies, counters and errors from many goroutines. Lanes are
// independent; Lane(i) may be used by several goroutines (each call locks the lane).
type Recorder struct {
	lanes [NumLanes]Lane
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	r := &Recorder{}
	for i := range r.lanes {
		r.lanes[i].init()
	}
	return r
}

// Lane returns lane i mod NumLanes.
func (r *Recorder) Lane(i int) *Lane {
	if i < 0 {
		i = -i
	}
	return &r.lanes[i%NumLanes]
}

// Lane is one recording lane. Its methods are safe for concurrent use.
type Lane struct {
	// mu guards every field below.
	mu       sync.Mutex
	total    map[string]*hdrhistogram.Histogram // measured (post-warm-up) latencies
	interval map[string]*hdrhistogram.Histogram // latencies since the last interval cut
	counts   map[string]int64                   // cumulative counters, warm-up included
	errors   map[string]int64                   // errors by kind, warm-up included
}

func (l *Lane) init() {
	l.total = make(map[string]*hdrhistogram.Histogram)
	l.interval = make(map[string]*hdrhistogram.Histogram)
	l.counts = make(map[string]int64)
	l.errors = make(map[string]int64)
}

// Latency records d under metric. It always goes into the per-interval histogram (the
// live view and the timeline); measured says whether it also counts in the final
// percentiles (false during warm-up).
func (l *Lane) Latency(metric string, d time.Duration, measured bool) {
	v := micros(d)
	l.mu.Lock()
	h := l.interval[metric]
	if h == nil {
		h = newHist()
		l.interval[metric] = h
	}
	_ = h.RecordValue(v) // v is clamped into range
	if measured {
		t := l.total[metric]
		if t == nil {
			t = newHist()
			l.total[metric] = t
		}
		_ = t.RecordValue(v)
	}
	l.mu.Unlock()
}

// Add adds n to counter name.
func (l *Lane) Add(name string, n int64) {
	l.mu.Lock()
	l.counts[name] += n
	l.mu.Unlock()
}

// Error counts one error of kind.
func (l *Lane) Error(kind string) {
	l.mu.Lock()
	l.errors[kind]++
	l.mu.Unlock()
}

// Totals is a merged view of a Recorder.
type Totals struct {
	Latency map[string]*hdrhistogram.Histogram
	Counts  map[string]int64
	Errors  map[string]int64
}

// ErrorCount is the sum of all errors.
func (t *Totals) ErrorCount() int64 {
	var n int64
	for _, v := range t.Errors {
		n += v
	}
	return n
}

// Merge merges every lane's measured histograms, counters and errors.
func (r *Recorder) Merge() *Totals {
	t := &Totals{
		Latency: make(map[string]*hdrhistogram.Histogram),
		Counts:  make(map[string]int64),
		Errors:  make(map[string]int64),
	}
	for i := range r.lanes {
		l := &r.lanes[i]
		l.mu.Lock()
		mergeInto(t.Latency, l.total)
		for k, v := range l.counts {
			t.Counts[k] += v
		}
		for k, v := range l.errors {
			t.Errors[k] += v
		}
		l.mu.Unlock()
	}
	return t
}

// CutInterval merges and resets every lane's per-interval histograms, returning the
// latencies recorded since the previous cut, and the cumulative counters and errors.
func (r *Recorder) CutInterval() (lat map[string]*hdrhistogram.Histogram, counts, errs map[string]int64) {
	lat = make(map[string]*hdrhistogram.Histogram)
	counts = make(map[string]int64)
	errs = make(map[string]int64)
	for i := range r.lanes {
		l := &r.lanes[i]
		l.mu.Lock()
		mergeInto(lat, l.interval)
		for _, h := range l.interval {
			h.Reset()
		}
		for k, v := range l.counts {
			counts[k] += v
		}
		for k, v := range l.errors {
			errs[k] += v
		}
		l.mu.Unlock()
	}
	return lat, counts, errs
}

func mergeInto(dst, src map[string]*hdrhistogram.Histogram) {
	for _, k := range slices.Sorted(maps.Keys(src)) {
		h := src[k]
		if h.TotalCount() == 0 {
			continue
		}
		d := dst[k]
		if d == nil {
			d = newHist()
			dst[k] = d
		}
		d.Merge(h)
	}
}

// LatencySummary is the percentile summary of one latency metric, in milliseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize computes the summary of h (values in microseconds).
func Summarize(h *hdrhistogram.Histogram) LatencySummary {
	if h == nil || h.TotalCount() == 0 {
		return LatencySummary{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return LatencySummary{
		Count: h.TotalCount(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// PercentilePoint is one point of a latency percentile curve.
type PercentilePoint struct {
	Percentile float64 `json:"percentile"`
	Millis     float64 `json:"ms"`
}

// curvePercentiles are the percentiles plotted and exported for each metric.
var curvePercentiles = []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100}

// PercentileCurve returns h's value at a fixed set of percentiles, in milliseconds.
func PercentileCurve(h *hdrhistogram.Histogram) []PercentilePoint {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	vals := h.ValueAtPercentilesSlice(curvePercentiles)
	pts := make([]PercentilePoint, len(vals))
	for i, v := range vals {
		pts[i] = PercentilePoint{Percentile: curvePercentiles[i], Millis: float64(v) / 1000}
	}
	return pts
}
