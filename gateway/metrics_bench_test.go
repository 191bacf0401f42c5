package gateway

import "testing"

// BenchmarkMetricsRequestPath is what the metrics library adds to one
// forwarded POST: two clock reads and two histogram observations (the
// gateway's latency and the upstream's), on every core at once. Built with
// -tags nometrics it measures the empty twin. The counters twin is what a
// POST pays for the hand-written counters either way (requests, status
// class).
func BenchmarkMetricsRequestPath(b *testing.B) {
	s := newTestServer(b, Config{})
	m := &s.metrics
	b.Run("histograms", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				start := m.now()
				up := m.now()
				m.observe(&m.upstreamLatency[classToolCall], up)
				m.observe(&m.latency[classToolCall], start)
			}
		})
	})
	b.Run("counters", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.requests.Add(1)
				m.status(200)
			}
		})
	})
}
