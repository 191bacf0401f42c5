//go:build !nometrics

package gateway

// libMetrics: the metrics library's part of the request path is built in
// (the latency histograms, with the clock reads they need) and the Go and
// process collectors are registered. Build with -tags nometrics for the
// benchmark twin without them (benchmarks/compare.sh): the hand-written
// counters, served through the library's exposition, and nothing else.
const libMetrics = true
