//go:build nometrics

package gateway

// libMetrics is false in the benchmark build without the metrics library's
// request path (see metrics_lib.go): no latency histograms, no Go or
// process collectors. Not for production: its /metrics lacks those
// families.
const libMetrics = false
