package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/mcpgate/mcpgate/cluster"
	"github.com/mcpgate/mcpgate/gateway"
)

// clusterOptions are the flags of the cluster mode (several nodes on NATS
// JetStream); without -cluster the gateway is a single node and needs no
// NATS.
type clusterOptions struct {
	clusterURLs     string
	nodeID          string
	clusterReplicas int
	clusterPrefix   string
	clusterLease    time.Duration
	clusterStorage  string
	clusterCreds    string
	clusterNKey     string
	clusterUser     string
	clusterPassword string
	clusterToken    string
	clusterTLSCA    string
	clusterTLSCert  string
	clusterTLSKey   string
}

func (o *clusterOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.clusterURLs, "cluster", "", "run as one node of a cluster on NATS JetStream: the NATS servers, comma-separated (nats://host:4222,tls://host2:4222); sessions and stream events are shared, so any node serves any session behind a load balancer without stickiness (empty = a single node, no NATS)")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's name in the cluster (letters, digits, - and _); default: the host name and a random suffix")
	fs.IntVar(&o.clusterReplicas, "cluster-replicas", cluster.DefaultReplicas, "replicas of the cluster's JetStream buckets and stream: 1 for a single NATS server, 3 for a NATS cluster")
	fs.StringVar(&o.clusterPrefix, "cluster-prefix", cluster.DefaultPrefix, "names of what the gateway creates in NATS: buckets PREFIX-sessions and PREFIX-nodes, stream PREFIX_EVENTS (upper case), subjects PREFIX.>; gateways sharing sessions use the same")
	fs.DurationVar(&o.clusterLease, "cluster-lease", cluster.DefaultLeaseTTL, "how long a node's lease outlives it: another node claims a dead node's sessions (and takes its streams over) this long after it died")
	fs.StringVar(&o.clusterStorage, "cluster-storage", "file", "JetStream storage of the session registry and stream events: file (survives NATS restarts) | memory (faster)")
	fs.StringVar(&o.clusterCreds, "cluster-creds", "", "NATS credentials file (JWT and nkey seed, .creds)")
	fs.StringVar(&o.clusterNKey, "cluster-nkey", "", "NATS nkey seed file")
	fs.StringVar(&o.clusterUser, "cluster-user", "", "NATS user name (with -cluster-password)")
	fs.StringVar(&o.clusterPassword, "cluster-password", "", "NATS password (prefer the environment: MCPGATE_CLUSTER_PASSWORD)")
	fs.StringVar(&o.clusterToken, "cluster-token", "", "NATS authentication token (prefer the environment: MCPGATE_CLUSTER_TOKEN)")
	fs.StringVar(&o.clusterTLSCA, "cluster-tls-ca", "", "PEM file of CA certificates trusted for the NATS servers (tls://)")
	fs.StringVar(&o.clusterTLSCert, "cluster-tls-cert", "", "client certificate (PEM) for NATS mutual TLS, with -cluster-tls-key")
	fs.StringVar(&o.clusterTLSKey, "cluster-tls-key", "", "client key (PEM) for NATS mutual TLS, with -cluster-tls-cert")
}

// openCluster connects this node to the cluster when -cluster is set and
// puts it into cfg; nil without -cluster. The caller closes it after the
// gateway's Shutdown.
func (o *options) openCluster(cfg *gateway.Config, logger *slog.Logger) (*cluster.Node, error) {
	c := &o.clusterOptions
	if c.clusterURLs == "" {
		if c.nodeID != "" {
			return nil, errors.New("-node-id needs -cluster")
		}
		return nil, nil
	}
	if o.stateFile != "" {
		return nil, errors.New("-state-file and -cluster exclude each other: in a cluster the other nodes keep the sessions across a node's restart")
	}
	switch c.clusterStorage {
	case "file", "memory":
	default:
		return nil, fmt.Errorf("-cluster-storage %q: want file or memory", c.clusterStorage)
	}
	if c.clusterReplicas < 1 || c.clusterReplicas > 5 {
		return nil, errors.New("-cluster-replicas must be between 1 and 5")
	}
	if c.clusterLease < time.Second {
		return nil, errors.New("-cluster-lease must be at least 1s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := cluster.Open(ctx, cluster.Config{
		URLs: c.clusterURLs, NodeID: c.nodeID, Prefix: c.clusterPrefix, Replicas: c.clusterReplicas,
		LeaseTTL: c.clusterLease,
		// A registry entry outlives its last activity write by the idle
		// timeout plus a few write intervals.
		SessionTTL:      o.idleTimeout + min(max(o.idleTimeout/8, 100*time.Millisecond), 30*time.Second)*4,
		StreamRetention: o.streamRetention, RingSize: o.ringSize, RingBytes: int(o.ringBytes),
		MemoryStorage: c.clusterStorage == "memory",
		CredsFile:     c.clusterCreds, NKeyFile: c.clusterNKey, User: c.clusterUser, Password: c.clusterPassword,
		Token: c.clusterToken, TLSCAFile: c.clusterTLSCA, TLSCertFile: c.clusterTLSCert, TLSKeyFile: c.clusterTLSKey,
		Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("-cluster: %w", err)
	}
	cfg.Cluster = node
	logger.Info("cluster node joined", "node", node.NodeID(), "nats", cluster.RedactURLs(c.clusterURLs), "replicas", c.clusterReplicas)
	return node, nil
}

// closeCluster leaves the cluster (nil-safe).
func closeCluster(node *cluster.Node, logger *slog.Logger) {
	if node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := node.Close(ctx); err != nil {
		logger.Warn("cluster: leaving", "err", err)
	}
}

var _ gateway.Cluster = (*cluster.Node)(nil)
