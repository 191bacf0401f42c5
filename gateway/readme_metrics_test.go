package gateway

import (
	"context"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeMetric is one metric of the README's metrics table: its name (or a
// prefix glob such as go_*), its label names and its type.
type readmeMetric struct {
	name   string
	labels []string // sorted
	typ    string   // counter, gauge, histogram; "" for a glob
}

var readmeMetricName = regexp.MustCompile("`([a-z_]+\\*?)(?:\\{([a-z_,]+)\\})?`")

// readmeMetrics parses the table of the README's "## Metrics" section:
// | `name{label,...}`, ... | type[, type...] | meaning |, one type for
// every metric of the row or one per metric, in order.
func readmeMetrics(t *testing.T) []readmeMetric {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, sec, ok := strings.Cut(string(b), "\n## Metrics\n")
	require.True(t, ok, "README.md has a ## Metrics section")
	sec, _, _ = strings.Cut(sec, "\n## ")
	var out []readmeMetric
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, " | ")
		require.GreaterOrEqual(t, len(cells), 3, "a row of metric, type and meaning: %s", line)
		names := readmeMetricName.FindAllStringSubmatch(cells[0], -1)
		require.NotEmpty(t, names, line)
		types := strings.Split(cells[1], ", ")
		for i, n := range names {
			m := readmeMetric{name: n[1]}
			if n[2] != "" {
				m.labels = strings.Split(n[2], ",")
				slices.Sort(m.labels)
			}
			if !strings.HasSuffix(m.name, "*") {
				require.True(t, len(types) == 1 || len(types) == len(names), "one type, or one per metric: %s", line)
				m.typ = types[min(i, len(types)-1)]
			}
			out = append(out, m)
		}
	}
	require.NotEmpty(t, out, "the metrics table")
	return out
}

// TestREADMEListsEveryMetric: the README's metrics table names every
// metric family the gateway exposes (a cluster node with a stdio-like
// upstream, so every collector is on), with its type and label names, and
// no family that is not exposed; go_* and process_* are the library's.
func TestREADMEListsEveryMetric(t *testing.T) {
	if !libMetrics {
		t.Skip("the nometrics build has no histograms and no Go or process collector")
	}
	s, err := New(Config{Upstream: statsTransport{}, Cluster: newFakeNet().node("a"), DrainWindow: -1,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Shutdown(context.Background())) }()
	mfs, err := s.Registry().Gather()
	require.NoError(t, err)

	documented := map[string]readmeMetric{}
	var globs []string
	for _, m := range readmeMetrics(t) {
		if p, ok := strings.CutSuffix(m.name, "*"); ok {
			globs = append(globs, p)
			continue
		}
		_, dup := documented[m.name]
		assert.False(t, dup, "%s is listed twice", m.name)
		documented[m.name] = m
	}
	exposed := map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		exposed[name] = true
		m, ok := documented[name]
		if !ok {
			assert.True(t, slices.ContainsFunc(globs, func(p string) bool { return strings.HasPrefix(name, p) }),
				"%s is exposed but not in the README's metrics table", name)
			continue
		}
		assert.Equal(t, strings.ToLower(mf.GetType().String()), m.typ, "the type of %s", name)
		labels := []string{}
		if len(mf.GetMetric()) > 0 {
			for _, l := range mf.GetMetric()[0].GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		slices.Sort(labels)
		if m.labels == nil {
			m.labels = []string{}
		}
		assert.Equal(t, labels, m.labels, "the labels of %s", name)
	}
	for name := range documented {
		assert.True(t, exposed[name], "the README lists %s, which the gateway does not expose", name)
	}
	for _, p := range globs {
		found := false
		for name := range exposed {
			found = found || strings.HasPrefix(name, p)
		}
		assert.True(t, found, "the README lists %s*, which the gateway does not expose", p)
	}
}
