//go:build !race

package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestAllocsHotPaths: the per-event work of a stream reader (tracking the sequence
// number, recording the latency, reading the measurement fields) allocates nothing
// in steady state.
func TestAllocsHotPaths(t *testing.T) {
	var tr SeqTracker
	seq := uint64(0)
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		seq++
		tr.Observe(seq)
	}), "SeqTracker.Observe in order")

	lane := NewRecorder().Lane(0)
	lane.Latency(MetricEvent, time.Millisecond, true) // creates the histograms
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		lane.Latency(MetricEvent, 3*time.Millisecond, true)
	}), "Lane.Latency")

	var d decoder
	data := []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{},"_meta":{"seq":12345,"sent":1700000000000000000}}}`)
	_, _ = d.decode(data)
	var m Message
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		m, _ = d.decode(data)
	}), "decoder.decode")
	assert.Equal(t, uint64(12345), m.Seq)
}
