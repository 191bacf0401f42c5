package harness

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
go_goroutines_extra 7
process_resident_memory_bytes{instance="a"} 1.2345e+07 1700000000000
mcpgate_sessions 10
`

func TestParseMetric(t *testing.T) {
	tests := []struct {
		name, text, metric string
		want               float64
		ok                 bool
	}{
		{"plain", exposition, "go_goroutines", 42, true},
		{"labels and timestamp", exposition, "process_resident_memory_bytes", 12345000, true},
		{"prefix of a longer name only", "go_goroutines_extra 7\n", "go_goroutines", 0, false},
		{"absent", exposition, "nope", 0, false},
		{"comment only", "# go_goroutines 3\n", "go_goroutines", 0, false},
		{"bad value", "go_goroutines x\n", "go_goroutines", 0, false},
		{"unterminated labels", "go_goroutines{a=\"b\" 3\n", "go_goroutines", 0, false},
		{"empty", "", "go_goroutines", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseMetric([]byte(tt.text), tt.metric)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzParseMetric feeds arbitrary expositions (the target's metrics endpoint is
// untrusted input): ParseMetric must not panic, and a value it finds must come from a
// line naming the metric.
func FuzzParseMetric(f *testing.F) {
	f.Add([]byte(exposition), "go_goroutines")
	f.Add([]byte("a{b=\"}\"} 1\n"), "a")
	f.Fuzz(func(t *testing.T, text []byte, name string) {
		if name == "" {
			return
		}
		if _, ok := ParseMetric(text, name); ok {
			assert.Contains(t, string(text), name)
		}
	})
}
