package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Node is one gateway node's handle on the cluster.
type Node struct {
	cfg Config
	log *slog.Logger

	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue // sessions
	nodes  jetstream.KeyValue // leases and tags
	events jetstream.Stream
	// evPrefix is "<prefix>.ev."; streamName the events' stream.
	evPrefix   string
	streamName string
	tag        uint32

	// aliveMu guards aliveSeen: cached liveness of other nodes and tags.
	aliveMu   sync.Mutex
	aliveSeen map[string]aliveEntry
	// serving holds a slot per request being answered.
	serving chan struct{}
	// acks receives every publish in order; ackLoop settles them.
	acks chan pendingAck

	// handler answers node-to-node requests (Handle); nil until set.
	handler atomic.Pointer[func(op string, body []byte) ([]byte, error)]
	sub     *nats.Subscription

	// watchFn receives other nodes' registry changes (Watch).
	watchMu sync.Mutex
	watchFn func(id, owner string, lastActive int64, rev uint64, gone bool)

	// leaseMu orders the lease loop's refresh against Release: once
	// released is set, the lease key is never put again (a draining node
	// must not look alive again). A leaf.
	leaseMu  sync.Mutex
	released bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// spawnMu orders request goroutines' wg.Add before Close's Wait:
	// read-held to add, write-held to cancel.
	spawnMu sync.RWMutex
	closed  atomic.Bool

	stats Stats
}

// Stats are the node's running counts (Node.Stats).
type Stats struct {
	RegistryReads, RegistryWrites, RegistryConflicts atomic.Uint64
	Published, PublishErrors                         atomic.Uint64
	Follows                                          atomic.Uint64
	RequestsSent, RequestsServed, RequestErrors      atomic.Uint64
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct {
	RegistryReads, RegistryWrites, RegistryConflicts uint64
	Published, PublishErrors                         uint64
	Follows                                          uint64
	RequestsSent, RequestsServed, RequestErrors      uint64
}

// Open connects to NATS, checks that JetStream is enabled, creates or
// verifies the buckets and the stream, claims this node's lease and tag,
// and starts the node's goroutines. Close undoes it.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	opts, err := cfg.natsOptions()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.URLs, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", RedactURLs(cfg.URLs), err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), nc: nc,
		evPrefix: cfg.Prefix + ".ev.", streamName: strings.ToUpper(cfg.Prefix) + "_EVENTS",
		acks: make(chan pendingAck, cfg.MaxPending), serving: make(chan struct{}, maxServing),
		aliveSeen: make(map[string]aliveEntry)}
	if err := n.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.claimTag(ctx); err != nil {
		n.cancel()
		nc.Close()
		return nil, err
	}
	sub, err := nc.Subscribe(n.nodeSubject("*"), n.serveRequest)
	if err != nil {
		n.cancel()
		nc.Close()
		return nil, fmt.Errorf("cluster: subscribe to node requests: %w", err)
	}
	n.sub = sub
	n.goOwned(n.leaseLoop)
	n.goOwned(n.ackLoop)
	return n, nil
}

func (n *Node) goOwned(f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// setup checks JetStream and creates or updates what the gateway needs.
func (n *Node) setup(ctx context.Context) error {
	js, err := jetstream.New(n.nc, jetstream.WithPublishAsyncMaxPending(n.cfg.MaxPending))
	if err != nil {
		return fmt.Errorf("cluster: jetstream: %w", err)
	}
	n.js = js
	actx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("cluster: JetStream is not enabled on %s (start nats-server with -js): %w", RedactURLs(n.cfg.URLs), err)
		}
		return fmt.Errorf("cluster: JetStream account info: %w", err)
	}
	storage := jetstream.FileStorage
	if n.cfg.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	// Created, or verified: an existing bucket or stream with other
	// settings is refused (JetStream would otherwise apply one node's
	// settings to every node).
	const agree = "every node of a cluster must use the same -cluster-prefix settings: -cluster-storage, -cluster-replicas, -cluster-lease, -session-idle-timeout, -ring-size, -ring-bytes and -stream-retention (or another -cluster-prefix)"
	sessions := jetstream.KeyValueConfig{
		Bucket: n.cfg.Prefix + "-sessions", Description: "mcpgate session registry",
		History: 1, TTL: n.cfg.SessionTTL, Storage: storage, Replicas: n.cfg.Replicas,
	}
	if n.kv, err = js.CreateKeyValue(actx, sessions); err != nil {
		if errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("cluster: bucket %s exists with other settings than this node's (ttl %v, %v storage, %d replicas): %s",
				sessions.Bucket, sessions.TTL, storage, n.cfg.Replicas, agree)
		}
		return fmt.Errorf("cluster: session bucket: %w", err)
	}
	nodes := jetstream.KeyValueConfig{
		Bucket: n.cfg.Prefix + "-nodes", Description: "mcpgate node leases",
		History: 1, TTL: n.cfg.LeaseTTL, Storage: jetstream.MemoryStorage, Replicas: n.cfg.Replicas,
	}
	if n.nodes, err = js.CreateKeyValue(actx, nodes); err != nil {
		if errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("cluster: bucket %s exists with other settings than this node's (lease %v, %d replicas): %s",
				nodes.Bucket, nodes.TTL, n.cfg.Replicas, agree)
		}
		return fmt.Errorf("cluster: node bucket: %w", err)
	}
	events := jetstream.StreamConfig{
		Name:              n.streamName,
		Description:       "mcpgate session stream events",
		Subjects:          []string{n.evPrefix + ">"},
		MaxMsgsPerSubject: int64(n.cfg.RingSize) + 1, // the ring, and the end marker
		MaxMsgSize:        int32(min(2*n.cfg.RingBytes+4096, 1<<30)),
		MaxAge:            n.cfg.StreamRetention,
		Discard:           jetstream.DiscardOld,
		Storage:           storage,
		Replicas:          n.cfg.Replicas,
		AllowDirect:       true,
	}
	if n.events, err = js.CreateStream(actx, events); err != nil {
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("cluster: stream %s exists with other settings than this node's (%d events per subject, max age %v, %v storage, %d replicas): %s",
				events.Name, events.MaxMsgsPerSubject, events.MaxAge, storage, n.cfg.Replicas, agree)
		}
		return fmt.Errorf("cluster: events stream: %w", err)
	}
	return nil
}

// NodeID names this node.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// Tag is this node's number in [1, 2^20), unique among live nodes: the
// gateway puts it in the high bits of the stream and call numbers it
// gives out, so that no two nodes give out the same one in a session.
func (n *Node) Tag() uint32 { return n.tag }

const maxTag = 1 << 20

func (n *Node) tagKey() string { return "tag-" + strconv.FormatUint(uint64(n.tag), 10) }

// claimTag takes a free tag and this node's lease key.
func (n *Node) claimTag(ctx context.Context) error {
	for range 64 {
		tag := 1 + rand.Uint32N(maxTag-1)
		cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		_, err := n.nodes.Create(cctx, "tag-"+strconv.FormatUint(uint64(tag), 10), []byte(n.cfg.NodeID))
		cancel()
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cluster: claim a node tag: %w", err)
		}
		n.tag = tag
		if err := n.claimLease(ctx); err != nil {
			dctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			_ = n.nodes.Delete(dctx, n.tagKey())
			cancel()
			return err
		}
		return nil
	}
	return errors.New("cluster: no free node tag")
}

// leaseLoop refreshes the node's lease and tag every third of the TTL;
// after Release, the tag only (the node still produces its streams until
// its drain hands them over).
func (n *Node) leaseLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		var err1 error
		n.leaseMu.Lock()
		if !n.released {
			_, err1 = n.nodes.Put(cctx, n.cfg.NodeID, []byte(strconv.FormatUint(uint64(n.tag), 10)))
		}
		n.leaseMu.Unlock()
		_, err2 := n.nodes.Put(cctx, n.tagKey(), []byte(n.cfg.NodeID))
		cancel()
		if err := errors.Join(err1, err2); err != nil && ctx.Err() == nil {
			n.log.Warn("cluster: lease refresh failed", "err", err)
		}
	}
}

// NodeAlive reports whether node holds its lease: its key exists. An
// error reading it counts as alive (a lease is never broken on doubt).
// Answers are cached for aliveCache, so mirrors and relays watching their
// producer cost one read per node a second, not one each.
func (n *Node) NodeAlive(ctx context.Context, node string) bool {
	if node == n.cfg.NodeID {
		return !n.closed.Load()
	}
	if !nameRE.MatchString(node) {
		return false
	}
	return n.alive(ctx, node)
}

// aliveCache is how long a liveness answer is reused.
const aliveCache = 500 * time.Millisecond

type aliveEntry struct {
	alive bool
	at    time.Time
}

func (n *Node) alive(ctx context.Context, key string) bool {
	n.aliveMu.Lock()
	e, ok := n.aliveSeen[key]
	n.aliveMu.Unlock()
	if ok && time.Since(e.at) < aliveCache {
		return e.alive
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	_, err := n.nodes.Get(cctx, key)
	alive := !errors.Is(err, jetstream.ErrKeyNotFound)
	n.aliveMu.Lock()
	if len(n.aliveSeen) > 4096 {
		clear(n.aliveSeen)
	}
	n.aliveSeen[key] = aliveEntry{alive, time.Now()}
	n.aliveMu.Unlock()
	return alive
}

// Stats returns the node's counts.
func (n *Node) Stats() StatsSnapshot {
	s := &n.stats
	return StatsSnapshot{
		RegistryReads: s.RegistryReads.Load(), RegistryWrites: s.RegistryWrites.Load(), RegistryConflicts: s.RegistryConflicts.Load(),
		Published: s.Published.Load(), PublishErrors: s.PublishErrors.Load(), Follows: s.Follows.Load(),
		RequestsSent: s.RequestsSent.Load(), RequestsServed: s.RequestsServed.Load(), RequestErrors: s.RequestErrors.Load(),
	}
}

// Close hands the lease back (so other nodes may claim this node's
// sessions at once), stops the node's goroutines after the outstanding
// publishes were acknowledged (or ctx ends) and closes the connection.
func (n *Node) Close(ctx context.Context) error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	if n.sub != nil {
		_ = n.sub.Drain()
	}
	select {
	case <-n.js.PublishAsyncComplete():
	case <-ctx.Done():
	}
	n.spawnMu.Lock()
	n.cancel()
	n.spawnMu.Unlock()
	n.wg.Wait()
	dctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	err := errors.Join(n.nodes.Delete(dctx, n.cfg.NodeID), n.nodes.Delete(dctx, n.tagKey()))
	n.nc.Close()
	return err
}

// Release hands this node's lease back without closing: other nodes may
// claim its sessions at once (a drain's hand-over). Requests to the node
// keep being answered until Close. The lease loop no longer puts the
// lease back; it keeps the node's tag.
func (n *Node) Release(ctx context.Context) error {
	// Set under leaseMu: a refresh under way ends before the delete, and
	// none starts after it.
	n.leaseMu.Lock()
	n.released = true
	n.leaseMu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	return n.nodes.Delete(cctx, n.cfg.NodeID)
}

func (n *Node) nodeSubject(op string) string {
	return n.cfg.Prefix + ".node." + n.cfg.NodeID + "." + op
}

// Handle sets the function answering other nodes' requests (Request). It
// runs on the NATS subscription's goroutine, one request at a time per
// node, so it must answer quickly or hand long work off.
func (n *Node) Handle(fn func(op string, body []byte) ([]byte, error)) { n.handler.Store(&fn) }

// Request sends op and body to node and returns its answer, bounded by
// ctx and the request timeout. The error of a node that answered with one
// starts with "remote: ".
func (n *Node) Request(ctx context.Context, node, op string, body []byte) ([]byte, error) {
	if !nameRE.MatchString(node) || !nameRE.MatchString(op) {
		return nil, fmt.Errorf("cluster: bad node %q or op %q", node, op)
	}
	n.stats.RequestsSent.Add(1)
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	msg, err := n.nc.RequestWithContext(cctx, n.cfg.Prefix+".node."+node+"."+op, body)
	if err != nil {
		n.stats.RequestErrors.Add(1)
		return nil, fmt.Errorf("cluster: request %s to %s: %w", op, node, err)
	}
	if e := msg.Header.Get("Mcpgate-Error"); e != "" {
		n.stats.RequestErrors.Add(1)
		return nil, fmt.Errorf("remote: %s", e)
	}
	return msg.Data, nil
}

// RequestTimeout is how long Request waits for an answer at most
// (Config.RequestTimeout).
func (n *Node) RequestTimeout() time.Duration { return n.cfg.RequestTimeout }

// serveRequest answers a request on a goroutine of its own (a forwarded
// message may wait for its upstream), at most maxServing at a time.
func (n *Node) serveRequest(m *nats.Msg) {
	select {
	case n.serving <- struct{}{}:
	case <-n.ctx.Done():
		return
	}
	// Counted under spawnMu, so that no Add races Close's Wait.
	n.spawnMu.RLock()
	if n.ctx.Err() != nil {
		n.spawnMu.RUnlock()
		<-n.serving
		return
	}
	n.wg.Add(1)
	n.spawnMu.RUnlock()
	go func() {
		defer func() { <-n.serving; n.wg.Done() }()
		n.answer(m)
	}()
}

// maxServing bounds the requests a node answers at once.
const maxServing = 1024

func (n *Node) answer(m *nats.Msg) {
	n.stats.RequestsServed.Add(1)
	op := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	reply := nats.NewMsg(m.Reply)
	h := n.handler.Load()
	if h == nil {
		reply.Header.Set("Mcpgate-Error", "node not serving yet")
	} else if out, err := (*h)(op, m.Data); err != nil {
		reply.Header.Set("Mcpgate-Error", err.Error())
	} else {
		reply.Data = out
	}
	if m.Reply != "" {
		_ = m.RespondMsg(reply)
	}
}

// putUvarint appends v; getUvarint reads one, returning the rest.
func putUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func getUvarint(b []byte) (uint64, []byte, bool) {
	v, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, false
	}
	return v, b[k:], true
}

// TagAlive reports whether the node that claimed tag still holds it.
// An error reading it counts as alive.
func (n *Node) TagAlive(ctx context.Context, tag uint32) bool {
	if tag == n.tag {
		return !n.closed.Load()
	}
	return n.alive(ctx, "tag-"+strconv.FormatUint(uint64(tag), 10))
}

// Nodes lists the live nodes (their leases), this one included while it
// holds its lease.
func (n *Node) Nodes(ctx context.Context) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	lister, err := n.nodes.ListKeys(cctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: nodes: %w", err)
	}
	var out []string
	for k := range lister.Keys() {
		if !strings.HasPrefix(k, "tag-") {
			out = append(out, k)
		}
	}
	return out, nil
}

// Flush waits until every event published so far is acknowledged by
// JetStream (or failed), or ctx ends.
func (n *Node) Flush(ctx context.Context) error {
	select {
	case <-n.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	// The acknowledgement goroutine may still be settling the last ones.
	for len(n.acks) > 0 {
		t := time.NewTimer(time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return nil
}

// claimLease creates this node's lease key. A key that exists may be the
// lease of this node id's previous process, which died: its lease runs out
// within LeaseTTL, so the claim is retried until then (a restarted node
// with a fixed -node-id comes back); a live node keeps refreshing it, and
// the id is refused as in use.
func (n *Node) claimLease(ctx context.Context) error {
	deadline := time.Now().Add(n.cfg.LeaseTTL + time.Second)
	logged := false
	for {
		cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		_, err := n.nodes.Create(cctx, n.cfg.NodeID, []byte(strconv.FormatUint(uint64(n.tag), 10)))
		cancel()
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, jetstream.ErrKeyExists):
			return fmt.Errorf("cluster: node lease: %w", err)
		case time.Now().After(deadline):
			return fmt.Errorf("cluster: node id %q is in use by a live node", n.cfg.NodeID)
		}
		// Keep the tag claimed meanwhile (leaseLoop is not running yet).
		cctx, cancel = context.WithTimeout(ctx, n.cfg.RequestTimeout)
		_, _ = n.nodes.Put(cctx, n.tagKey(), []byte(n.cfg.NodeID))
		cancel()
		if !logged {
			n.log.Warn("cluster: this node id holds a lease: waiting for it to run out (a previous process of this node that died), or for the id to prove live", "lease", n.cfg.LeaseTTL)
			logged = true
		}
		t := time.NewTimer(n.cfg.LeaseTTL / 10)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("cluster: node id %q is in use by a live node: %w", n.cfg.NodeID, ctx.Err())
		}
	}
}
