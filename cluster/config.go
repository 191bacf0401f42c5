package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults for Config zero values.
const (
	DefaultPrefix          = "mcpgate"
	DefaultReplicas        = 1
	DefaultLeaseTTL        = 10 * time.Second
	DefaultRequestTimeout  = 5 * time.Second
	DefaultSessionTTL      = 30*time.Minute + time.Minute
	DefaultStreamRetention = 5 * time.Minute
	DefaultRingSize        = 256
	DefaultRingBytes       = 1 << 20
	// DefaultMaxPending bounds the events published and not yet
	// acknowledged by JetStream; a publisher beyond it waits.
	DefaultMaxPending = 4096
)

// Config configures a Node. Zero values mean the documented defaults.
type Config struct {
	// URLs is the NATS server list, comma-separated
	// (nats://host:4222,tls://host:4222). Required.
	URLs string
	// NodeID names this node in the registry and on request subjects;
	// "" = the host name and a random suffix. Letters, digits, '-' and
	// '_' only.
	NodeID string
	// Prefix names everything this gateway creates in NATS (buckets
	// <prefix>-sessions and <prefix>-nodes, stream <PREFIX>_EVENTS,
	// subjects <prefix>.>); "" = DefaultPrefix. Letters, digits, '-' and
	// '_' only.
	Prefix string
	// Replicas of the buckets and the stream: 1 for a single NATS server,
	// 3 for a NATS cluster; 0 = DefaultReplicas.
	Replicas int
	// LeaseTTL is how long a node's lease outlives its last refresh: a
	// dead node's sessions can be claimed this long after it died;
	// 0 = DefaultLeaseTTL.
	LeaseTTL time.Duration
	// SessionTTL is how long a registry entry outlives its last write:
	// the gateway's idle timeout plus the interval of its activity
	// writes; 0 = DefaultSessionTTL.
	SessionTTL time.Duration
	// StreamRetention is the events' MaxAge; 0 = DefaultStreamRetention.
	StreamRetention time.Duration
	// RingSize and RingBytes are the gateway's ring limits: events kept
	// per stream subject (RingSize, plus the end marker), and the largest
	// event (twice RingBytes, the ring's hard byte limit).
	RingSize  int
	RingBytes int
	// MemoryStorage keeps events and the registry in memory (faster, lost
	// if every NATS server restarts); false = JetStream file storage. All
	// nodes must agree: JetStream cannot change a stream's storage.
	MemoryStorage bool
	// RequestTimeout bounds each registry and node-to-node request;
	// 0 = DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxPending bounds unacknowledged publishes; 0 = DefaultMaxPending.
	MaxPending int

	// Credentials, in the usual NATS forms (each optional): a .creds file
	// (JWT and nkey seed), an nkey seed file, a user and password, a
	// token.
	CredsFile string
	NKeyFile  string
	User      string
	Password  string
	Token     string
	// TLS: CA certificates to trust (PEM file), and a client certificate
	// and key for mutual TLS.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string

	// Logger receives the node's logs; nil = slog.Default().
	Logger *slog.Logger
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c *Config) setDefaults() error {
	if strings.TrimSpace(c.URLs) == "" {
		return errors.New("cluster: a NATS URL is required")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !nameRE.MatchString(c.Prefix) {
		return fmt.Errorf("cluster: prefix %q: only letters, digits, '-' and '_'", c.Prefix)
	}
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID()
	}
	if !nameRE.MatchString(c.NodeID) {
		return fmt.Errorf("cluster: node id %q: only letters, digits, '-' and '_'", c.NodeID)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("cluster: replicas %d: 1 to 5", c.Replicas)
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"lease ttl", &c.LeaseTTL, DefaultLeaseTTL},
		{"session ttl", &c.SessionTTL, DefaultSessionTTL},
		{"stream retention", &c.StreamRetention, DefaultStreamRetention},
		{"request timeout", &c.RequestTimeout, DefaultRequestTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("cluster: %s must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.LeaseTTL < time.Second {
		return errors.New("cluster: lease ttl must be at least 1s")
	}
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{
		{"ring size", &c.RingSize, DefaultRingSize},
		{"ring bytes", &c.RingBytes, DefaultRingBytes},
		{"max pending", &c.MaxPending, DefaultMaxPending},
	} {
		if *n.v < 0 {
			return fmt.Errorf("cluster: %s must not be negative", n.name)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("cluster: a TLS client certificate needs both the certificate and the key file")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// DefaultNodeID is the host name (reduced to letters, digits, '-' and '_')
// and a random suffix, so two processes on one host differ.
func DefaultNodeID() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range host {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		b.WriteString("node")
	}
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	return b.String() + "-" + hex.EncodeToString(suffix[:])
}

// natsOptions turns the credentials and TLS settings into NATS options.
func (c *Config) natsOptions() ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("mcpgate " + c.NodeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(c.RequestTimeout),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: nkey file: %w", err)
		}
		opts = append(opts, o)
	}
	if c.User != "" || c.Password != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLSCAFile))
	}
	if c.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLSCertFile, c.TLSKeyFile))
	}
	return opts, nil
}

// RedactURLs is urls (one URL, or a comma-separated list such as
// Config.URLs) fit for a log line or an error message: the credentials a
// URL carries in its authority (user:password@, or a NATS token@) are
// replaced by xxxxx. Anything else is kept as written.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		authority := rest
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			authority = rest[:j]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			parts[i] = scheme + "://xxxxx" + rest[at:]
		}
	}
	return strings.Join(parts, ",")
}
