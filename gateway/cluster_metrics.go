package gateway

import "github.com/prometheus/client_golang/prometheus"

// clusterCollector exposes the cluster side's counters (cluster.go) in the
// gateway's registry; registered only on a cluster node.
type clusterCollector struct{ s *Server }

var (
	descClusterRegistry = prometheus.NewDesc("mcpgate_cluster_registry_ops_total",
		"Session registry operations of this node: op=read (a request for a session not held here, a takeover check), write (initialize, activity, claims, ends), error.", []string{"op"}, nil)
	descClusterForwards = prometheus.NewDesc("mcpgate_cluster_forwards_total",
		"Messages of sessions owned by another node forwarded there over NATS request/reply (result=ok|error), and forwarded messages served here (result=served).", []string{"result"}, nil)
	descClusterTakeovers = prometheus.NewDesc("mcpgate_cluster_takeovers_total",
		"Sessions this node claimed after their owner's lease ran out (what=session), and answer streams it took over from a dead producer (what=stream).", []string{"what"}, nil)
	descClusterPublished = prometheus.NewDesc("mcpgate_cluster_events_published_total",
		"Stream events published to JetStream by this node.", nil, nil)
	descClusterPublishErrors = prometheus.NewDesc("mcpgate_cluster_publish_errors_total",
		"Stream events JetStream did not store (after one retry): served from this node's ring only.", nil, nil)
	descClusterMirrors = prometheus.NewDesc("mcpgate_cluster_mirrors_total",
		"Streams produced on another node served here from JetStream (what=opened), and mirrors cut for a gap or a dead producer (what=cut).", []string{"what"}, nil)
	descClusterRemoteEnds = prometheus.NewDesc("mcpgate_cluster_remote_ends_total",
		"Sessions held here that another node ended.", nil, nil)
)

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClusterRegistry, descClusterForwards, descClusterTakeovers,
		descClusterPublished, descClusterPublishErrors, descClusterMirrors, descClusterRemoteEnds} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	m := &c.s.clu.m
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descClusterRegistry, m.registryReads.Load(), "read")
	counter(descClusterRegistry, m.registryWrites.Load(), "write")
	counter(descClusterRegistry, m.registryErrors.Load(), "error")
	counter(descClusterForwards, m.forwards.Load(), "ok")
	counter(descClusterForwards, m.forwardErrors.Load(), "error")
	counter(descClusterForwards, m.forwardedServed.Load(), "served")
	counter(descClusterTakeovers, m.takeovers.Load(), "session")
	counter(descClusterTakeovers, m.streamTakeovers.Load(), "stream")
	counter(descClusterPublished, m.published.Load())
	counter(descClusterPublishErrors, m.publishErrors.Load())
	counter(descClusterMirrors, m.mirrors.Load(), "opened")
	counter(descClusterMirrors, m.mirrorGaps.Load(), "cut")
	counter(descClusterRemoteEnds, m.remoteEnds.Load())
}
