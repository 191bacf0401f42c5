package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// fakeNet is an in-memory stand-in for what package cluster keeps in NATS
// JetStream: the session registry (with revisions and a watch), node
// leases, stream events and node-to-node requests. Watch notifications are
// delivered synchronously (a real watch is pushed as the change is stored,
// before the writer's next request). Requests take a little time, as over
// a network. A node without its lease (Release, or dead set by a test)
// still answers requests, as a real one does until it closes.
type fakeNet struct {
	mu      sync.Mutex
	rev     uint64
	entries map[string]*fakeEntry
	marks   map[string]uint64
	highs   map[string]highWater
	events  map[string][]*sessionrec.Published
	nodes   map[string]*fakeNode
	dead    map[string]bool
	changed chan struct{}
	// refuse, if set, makes Publish fail for the events it returns true
	// for: JetStream did not store them.
	refuse func(ev *sessionrec.Published) bool
	// ackDelay, if set, is how long after an event is stored its
	// publisher learns so (JetStream's acknowledgement crosses the
	// network); acknowledgements keep the publishing order. lastAck is
	// closed once the last one was given.
	ackDelay time.Duration
	lastAck  chan struct{}
	// timeout, if set, bounds each node-to-node request as package
	// cluster's RequestTimeout does (else the gateway's own bound does).
	timeout time.Duration
}

type fakeEntry struct {
	rec        []byte
	owner      string
	writer     string
	lastActive int64
	rev        uint64
}

func newFakeNet() *fakeNet {
	return &fakeNet{entries: map[string]*fakeEntry{}, marks: map[string]uint64{}, highs: map[string]highWater{},
		events: map[string][]*sessionrec.Published{}, nodes: map[string]*fakeNode{}, dead: map[string]bool{},
		changed: make(chan struct{})}
}

// node adds a live node.
func (n *fakeNet) node(id string) *fakeNode {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn := &fakeNode{net: n, id: id, tag: uint32(len(n.nodes) + 1)}
	n.nodes[id] = fn
	return fn
}

// crash makes node id die: its lease is gone and it answers no request.
func (n *fakeNet) crash(id string) {
	n.mu.Lock()
	n.dead[id] = true
	node := n.nodes[id]
	n.mu.Unlock()
	node.mu.Lock()
	node.handler = nil
	node.watch = nil
	node.mu.Unlock()
}

// whileLapsed runs f while node's lease has run out although the node
// lives (a NATS partition longer than the lease), then gives it back.
func (n *fakeNet) whileLapsed(node string, f func()) {
	n.mu.Lock()
	n.dead[node] = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.dead[node] = false
		n.mu.Unlock()
	}()
	f()
}

// ageOut removes a stream's stored events, as the events stream's MaxAge
// (the stream retention) removes those of a stream quiet for longer.
func (n *fakeNet) ageOut(id string, stream uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.events, evKey(id, stream))
}

// entryCount is the number of session entries in the registry.
func (n *fakeNet) entryCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.entries)
}

func (n *fakeNet) has(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.entries[id]
	return ok
}

type fakeNode struct {
	net *fakeNet
	id  string
	tag uint32

	mu      sync.Mutex
	watch   func(id, owner string, lastActive int64, rev uint64, gone bool)
	handler func(op string, body []byte) ([]byte, error)
	// beforeUpdate, if set, runs before a revision-checked write.
	beforeUpdate func(id string)
}

var _ Cluster = (*fakeNode)(nil)

func (f *fakeNode) NodeID() string { return f.id }
func (f *fakeNode) Tag() uint32    { return f.tag }

func (f *fakeNode) SaveSession(_ context.Context, rec *sessionrec.Record, owner string, lastActive int64, rev uint64) (uint64, bool, error) {
	if rev != 0 {
		f.mu.Lock()
		hook := f.beforeUpdate
		f.mu.Unlock()
		if hook != nil {
			hook(rec.ID)
		}
	}
	saved := *rec
	saved.Streams = nil
	val := sessionrec.AppendRecord(nil, &saved)
	n := f.net
	n.mu.Lock()
	cur, ok := n.entries[rec.ID]
	switch {
	case rev == 0 && ok, rev != 0 && (!ok || cur.rev != rev):
		n.mu.Unlock()
		return 0, false, nil
	}
	n.rev++
	n.entries[rec.ID] = &fakeEntry{rec: val, owner: owner, writer: f.id, lastActive: lastActive, rev: n.rev}
	newRev := n.rev
	watchers := n.watchersLocked(f.id)
	n.mu.Unlock()
	for _, w := range watchers {
		w(rec.ID, owner, lastActive, newRev, false)
	}
	return newRev, true, nil
}

// watchersLocked returns the watch functions of every node but except.
func (n *fakeNet) watchersLocked(except string) []func(string, string, int64, uint64, bool) {
	var out []func(string, string, int64, uint64, bool)
	for id, node := range n.nodes {
		node.mu.Lock()
		w := node.watch
		node.mu.Unlock()
		if w != nil && id != except {
			out = append(out, w)
		}
	}
	return out
}

// bump rewrites an entry as another node's activity write would: same
// owner, a new revision.
func (n *fakeNet) bump(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.entries[id]; ok {
		n.rev++
		cp := *e
		cp.rev, cp.writer = n.rev, "elsewhere"
		n.entries[id] = &cp
	}
}

func (f *fakeNode) LoadSession(_ context.Context, id string) (*sessionrec.Record, string, int64, uint64, error) {
	n := f.net
	n.mu.Lock()
	e, ok := n.entries[id]
	n.mu.Unlock()
	if !ok {
		return nil, "", 0, 0, nil
	}
	rec, err := sessionrec.DecodeRecord(e.rec)
	if err != nil {
		return nil, "", 0, 0, err
	}
	return rec, e.owner, e.lastActive, e.rev, nil
}

func (f *fakeNode) EndSession(_ context.Context, id string) error {
	n := f.net
	n.mu.Lock()
	delete(n.entries, id)
	delete(n.marks, id)
	delete(n.highs, evKey(id, 0))
	for k := range n.events {
		if len(k) > len(id) && k[:len(id)] == id {
			delete(n.events, k)
		}
	}
	watchers := n.watchersLocked("") // a purge reaches every node
	n.mu.Unlock()
	for _, w := range watchers {
		w(id, "", 0, 0, true)
	}
	return nil
}

func (f *fakeNode) Watch(fn func(id, owner string, lastActive int64, rev uint64, gone bool)) error {
	f.mu.Lock()
	f.watch = fn
	f.mu.Unlock()
	return nil
}

func (f *fakeNode) NodeAlive(_ context.Context, node string) bool {
	n := f.net
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.nodes[node]
	return ok && !n.dead[node]
}

func (f *fakeNode) TagAlive(_ context.Context, tag uint32) bool {
	n := f.net
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, node := range n.nodes {
		if node.tag == tag {
			return !n.dead[id]
		}
	}
	return false
}

func evKey(id string, stream uint64) string { return fmt.Sprintf("%s.%d", id, stream) }

func (f *fakeNode) Publish(id string, ev *sessionrec.Published, done func(error)) {
	n := f.net
	cp := *ev
	cp.Data = append([]byte(nil), ev.Data...)
	n.mu.Lock()
	if n.refuse != nil && n.refuse(ev) {
		n.mu.Unlock()
		if done != nil {
			done(errors.New("fake cluster: not stored"))
		}
		return
	}
	k := evKey(id, ev.Stream)
	n.events[k] = append(n.events[k], &cp)
	close(n.changed)
	n.changed = make(chan struct{})
	if d := n.ackDelay; d > 0 && done != nil {
		prev, mine, due := n.lastAck, make(chan struct{}), time.Now().Add(d)
		n.lastAck = mine
		n.mu.Unlock()
		go func() {
			defer close(mine)
			if prev != nil {
				<-prev
			}
			time.Sleep(time.Until(due))
			done(nil)
		}()
		return
	}
	n.mu.Unlock()
	if done != nil {
		done(nil)
	}
}

func (f *fakeNode) Tail(_ context.Context, id string, stream uint64) (*sessionrec.Published, error) {
	n := f.net
	n.mu.Lock()
	defer n.mu.Unlock()
	evs := n.events[evKey(id, stream)]
	if len(evs) == 0 {
		return nil, nil
	}
	return evs[len(evs)-1], nil
}

func (f *fakeNode) Streams(_ context.Context, id string) ([]uint64, error) { return nil, nil }

func (f *fakeNode) Follow(ctx context.Context, id string, stream, after uint64, fn func(*sessionrec.Published) error) error {
	n := f.net
	next := 0
	for {
		n.mu.Lock()
		evs := n.events[evKey(id, stream)]
		ch := n.changed
		n.mu.Unlock()
		for ; next < len(evs); next++ {
			p := evs[next]
			if !p.End && p.Seq <= after {
				continue
			}
			if err := fn(p); err != nil {
				return err
			}
			if p.End {
				return nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeNode) SetMark(_ context.Context, id string, stream, seq uint64) error {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	f.net.marks[id] = seq
	return nil
}

func (f *fakeNode) Mark(_ context.Context, id string, stream uint64) (uint64, error) {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	return f.net.marks[id], nil
}

func (f *fakeNode) SetHigh(_ context.Context, id string, stream, seq, lastMust uint64) error {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	f.net.highs[evKey(id, stream)] = highWater{seq, lastMust}
	return nil
}

func (f *fakeNode) High(_ context.Context, id string, stream uint64) (uint64, uint64, error) {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	h := f.net.highs[evKey(id, stream)]
	return h.seq, h.lastMust, nil
}

// high is a stream's high-water mark as the registry holds it.
func (n *fakeNet) high(id string, stream uint64) highWater {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.highs[evKey(id, stream)]
}

func (f *fakeNode) Handle(fn func(op string, body []byte) ([]byte, error)) {
	f.mu.Lock()
	f.handler = fn
	f.mu.Unlock()
}

// RequestTimeout is fakeNet.timeout, or the gateway's own bound on a
// request (Server.rctx) when there is none.
func (f *fakeNode) RequestTimeout() time.Duration {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	if f.net.timeout > 0 {
		return f.net.timeout
	}
	return 10 * time.Second
}

func (f *fakeNode) Request(ctx context.Context, node, op string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.RequestTimeout())
	defer cancel()
	select { // a network's latency
	case <-time.After(5 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n := f.net
	n.mu.Lock()
	target, ok := n.nodes[node] // a node without its lease still answers, until it closes
	n.mu.Unlock()
	if !ok {
		return nil, errors.New("fake cluster: no responders")
	}
	target.mu.Lock()
	h := target.handler
	target.mu.Unlock()
	if h == nil {
		return nil, errors.New("fake cluster: no responders")
	}
	n.mu.Lock()
	bounded := n.timeout > 0
	n.mu.Unlock()
	if !bounded {
		return remoteAnswer(h(op, append([]byte(nil), body...)))
	}
	// The requester gives up at the timeout; the handler, on "another
	// node", runs on until it returns (its own server bounds it).
	type answer struct {
		out []byte
		err error
	}
	got := make(chan answer, 1)
	go func() {
		out, err := h(op, append([]byte(nil), body...))
		got <- answer{out, err}
	}()
	select {
	case a := <-got:
		return remoteAnswer(a.out, a.err)
	case <-ctx.Done():
		return nil, fmt.Errorf("fake cluster: request %s to %s: %w", op, node, ctx.Err())
	}
}

func remoteAnswer(out []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, fmt.Errorf("remote: %s", err)
	}
	return out, nil
}

func (f *fakeNode) Release(context.Context) error {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	f.net.dead[f.id] = true
	return nil
}

func (f *fakeNode) Nodes(context.Context) ([]string, error) {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	var out []string
	for id := range f.net.nodes {
		if !f.net.dead[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeNode) Flush(context.Context) error { return nil }

// fakeClusterServer serves a gateway node of net named id in front of up
// (a fake upstream that cannot re-attach sessions, so other nodes forward
// to this one) and returns it with its URL.
func fakeClusterServer(t *testing.T, fnet *fakeNet, id string, up *testenv.FakeUpstream, cfg Config) (*Server, string) {
	t.Helper()
	cfg.Cluster = fnet.node(id)
	cfg.Upstream = up
	return liveServer(t, cfg)
}

// Keep the imports used by every test file built on this helper.
var (
	_ = assert.Equal
	_ = require.NoError
)
