package gateway

import "github.com/prometheus/client_golang/prometheus"

// oddCollector exports one gauge whose label value needs escaping.
type oddCollector struct {
	desc  *prometheus.Desc
	value string
}

func newOddCollector(v string) *oddCollector {
	return &oddCollector{desc: prometheus.NewDesc("odd_metric", "A label value with quotes and a newline.", []string{"v"}, nil), value: v}
}

func (c *oddCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *oddCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, c.value)
}
