package pace

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestOffset(t *testing.T) {
	tests := []struct {
		name string
		i    uint64
		rate float64
		want time.Duration
	}{
		{"first event at the start", 0, 100, 0},
		{"integral interval", 3, 100, 30 * time.Millisecond},
		{"one per second", 5, 1, 5 * time.Second},
		{"thirds round up", 1, 3, 333333334 * time.Nanosecond},
		{"fractional rate", 1, 0.5, 2 * time.Second},
		{"zero rate: all at once", 7, 0, 0},
		{"negative rate: all at once", 7, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Offset(tt.i, tt.rate))
		})
	}
}

func TestDue(t *testing.T) {
	tests := []struct {
		name    string
		elapsed time.Duration
		rate    float64
		want    uint64
	}{
		{"before the start", -time.Nanosecond, 100, 0},
		{"at the start", 0, 100, 1},
		{"just before the second", 10*time.Millisecond - 1, 100, 1},
		{"at the second", 10 * time.Millisecond, 100, 2},
		{"one second at 1000/s", time.Second, 1000, 1001},
		{"thirds: just before the second", 333333333, 3, 1},
		{"thirds: at the second", 333333334, 3, 2},
		{"zero rate", time.Hour, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Due(tt.elapsed, tt.rate))
		})
	}
}

// TestDueMatchesOffset checks Due against its definition over awkward rates.
func TestDueMatchesOffset(t *testing.T) {
	for _, rate := range []float64{1, 3, 7, 9.5, 333, 1000, 12345.678, 1e6} {
		for _, el := range []time.Duration{0, 1, 999, time.Millisecond, 123456789, time.Second, 3*time.Second + 7} {
			due := Due(el, rate)
			if due > 0 {
				assert.LessOrEqual(t, Offset(due-1, rate), el, "rate %v elapsed %v: last due event", rate, el)
			}
			assert.Greater(t, Offset(due, rate), el, "rate %v elapsed %v: first event not due", rate, el)
		}
	}
}

func TestCount(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		rate float64
		want uint64
	}{
		{"two seconds at 100/s", 2 * time.Second, 100, 200},
		{"one second at 3/s", time.Second, 3, 3},
		{"half a second at 1/s", 500 * time.Millisecond, 1, 1},
		{"nothing in zero time", 0, 100, 0},
		{"nothing at zero rate", time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Count(tt.d, tt.rate))
		})
	}
}

func BenchmarkDue(b *testing.B) {
	b.ReportAllocs()
	var sink uint64
	for i := 0; b.Loop(); i++ {
		sink += Due(time.Duration(i)*time.Microsecond, 12345.678)
	}
	_ = sink
}
