package cluster_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/cluster"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

func TestMain(m *testing.M) {
	// fasthttp's own background goroutines outlive Stop/Close by design
	// (see gateway's TestMain).
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// The embedded NATS server's process-wide helpers.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).logRejectedTLSConns"))
}

// startNATS runs an embedded NATS server on a free loopback port, with
// JetStream if js, and returns its client URL.
func startNATS(t testing.TB, js bool) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: js,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start() // ns.Shutdown stops it
	require.True(t, ns.ReadyForConnections(20*time.Second), "embedded NATS server not ready")
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns.ClientURL()
}

func openNode(t testing.TB, url string, cfg cluster.Config) *cluster.Node {
	t.Helper()
	cfg.URLs = url
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cluster.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	return n
}

func TestOpenNeedsJetStream(t *testing.T) {
	url := startNATS(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := cluster.Open(ctx, cluster.Config{URLs: url, NodeID: "a", RequestTimeout: 2 * time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "JetStream")
}

func TestOpenIsIdempotentAndNodeIDsAreUnique(t *testing.T) {
	url := startNATS(t, true)
	const lease = 2 * time.Second
	a := openNode(t, url, cluster.Config{NodeID: "a", RingSize: 64, LeaseTTL: lease})
	b := openNode(t, url, cluster.Config{NodeID: "b", RingSize: 64, LeaseTTL: lease}) // the same buckets and stream: verified, not recreated
	assert.NotEqual(t, a.Tag(), b.Tag(), "tags are unique among live nodes")
	assert.Positive(t, a.Tag())
	assert.Less(t, a.Tag(), uint32(1<<20))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := cluster.Open(ctx, cluster.Config{URLs: url, NodeID: "a", RingSize: 64, LeaseTTL: lease})
	require.Error(t, err, "a second node with a live node's id")
	assert.Contains(t, err.Error(), "in use")
	assert.GreaterOrEqual(t, time.Since(start), lease, "it waited for the lease to run out first (a dead previous process)")

	assert.True(t, a.NodeAlive(ctx, "b"))
	assert.True(t, a.TagAlive(ctx, b.Tag()))
	assert.False(t, a.NodeAlive(ctx, "nobody"))
	require.NoError(t, b.Close(ctx))
	assert.Eventually(t, func() bool { return !a.NodeAlive(ctx, "b") && !a.TagAlive(ctx, b.Tag()) },
		5*time.Second, 50*time.Millisecond, "a closed node hands its lease and tag back (liveness is cached briefly)")

	// A node id whose previous process died (its lease key stays until it
	// runs out) joins once the lease ran out.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	leases, err := js.KeyValue(ctx, "mcpgate-nodes")
	require.NoError(t, err)
	_, err = leases.Put(ctx, "z", []byte("12345"))
	require.NoError(t, err)
	z := openNode(t, url, cluster.Config{NodeID: "z", RingSize: 64, LeaseTTL: lease})
	require.NoError(t, z.Close(ctx))

	_, err = cluster.Open(ctx, cluster.Config{URLs: url, NodeID: "c", RingSize: 64, LeaseTTL: 5 * time.Second})
	require.Error(t, err, "a node with another lease than the cluster's")
	assert.Contains(t, err.Error(), "every node of a cluster must use the same")
	_, err = cluster.Open(ctx, cluster.Config{URLs: url, NodeID: "c", RingSize: 128, LeaseTTL: lease})
	require.Error(t, err, "a node with another ring size than the cluster's")

	_, err = cluster.Open(ctx, cluster.Config{URLs: url, NodeID: "bad id"})
	require.Error(t, err)
	_, err = cluster.Open(ctx, cluster.Config{})
	require.Error(t, err)
}

func TestRegistry(t *testing.T) {
	url := startNATS(t, true)
	a := openNode(t, url, cluster.Config{NodeID: "a"})
	b := openNode(t, url, cluster.Config{NodeID: "b"})
	type change struct {
		id, owner string
		la        int64
		rev       uint64
		gone      bool
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// watch records node's registry changes; the function it returns
	// waits for the first n.
	watch := func(node *cluster.Node) func(n int) []change {
		var mu sync.Mutex
		var seen []change
		got := make(chan struct{}, 16)
		require.NoError(t, node.Watch(func(id, owner string, la int64, rev uint64, gone bool) {
			mu.Lock()
			seen = append(seen, change{id, owner, la, rev, gone})
			mu.Unlock()
			got <- struct{}{}
		}))
		return func(n int) []change {
			t.Helper()
			for {
				mu.Lock()
				if len(seen) >= n {
					out := append([]change(nil), seen...)
					mu.Unlock()
					return out
				}
				mu.Unlock()
				select {
				case <-got:
				case <-ctx.Done():
					t.Fatalf("waiting for %d registry changes", n)
				}
			}
		}
	}
	waitChange, waitChangeA := watch(b), watch(a)

	rec := &sessionrec.Record{ID: "0123456789abcdef0123456789abcdef", Version: "2025-11-25", Created: 1, LastActive: 2,
		Upstream:   sessionrec.Upstream{Kind: "http", ID: "up-1", Version: "2025-11-25", Resumable: true},
		Initialize: []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize"}`),
		Streams:    []sessionrec.Stream{{ID: 3}}}
	rev, ok, err := a.SaveSession(ctx, rec, "a", 100, 0)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = b.SaveSession(ctx, rec, "b", 100, 0)
	require.NoError(t, err)
	assert.False(t, ok, "the entry exists: a create conflicts")

	got2, owner, la, rev2, err := b.LoadSession(ctx, rec.ID)
	require.NoError(t, err)
	require.NotNil(t, got2)
	assert.Equal(t, "a", owner)
	assert.Equal(t, int64(100), la)
	assert.Equal(t, rev, rev2)
	assert.Equal(t, rec.Upstream, got2.Upstream)
	assert.Equal(t, rec.Initialize, got2.Initialize)
	assert.Empty(t, got2.Streams, "stream events live in JetStream, not in the registry")
	assert.Equal(t, []change{{rec.ID, "a", 100, rev, false}}, waitChange(1), "b sees a's write")

	// A claim from the revision read wins once; a stale one loses.
	rev3, ok, err := b.SaveSession(ctx, got2, "b", 200, rev2)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = a.SaveSession(ctx, rec, "a", 300, rev)
	require.NoError(t, err)
	assert.False(t, ok, "a stale revision")
	_, owner, _, rev4, err := a.LoadSession(ctx, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, "b", owner)
	assert.Equal(t, rev3, rev4)
	assert.Equal(t, []change{{rec.ID, "b", 200, rev3, false}}, waitChangeA(1), "a sees b's claim: the new owner and revision")

	none, _, _, _, err := a.LoadSession(ctx, "ffffffffffffffffffffffffffffffff")
	require.NoError(t, err)
	assert.Nil(t, none)
	none, _, _, _, err = a.LoadSession(ctx, "not a key!")
	require.NoError(t, err)
	assert.Nil(t, none)

	// A stream's high-water mark: read by any node, replaced by a later
	// write, gone with the session; no registry change for the watchers.
	hi, must, err := b.High(ctx, rec.ID, 0)
	require.NoError(t, err)
	assert.Equal(t, [2]uint64{0, 0}, [2]uint64{hi, must}, "none set")
	require.NoError(t, a.SetHigh(ctx, rec.ID, 0, 7, 5))
	require.NoError(t, a.SetHigh(ctx, rec.ID, 0, 9, 5))
	hi, must, err = b.High(ctx, rec.ID, 0)
	require.NoError(t, err)
	assert.Equal(t, [2]uint64{9, 5}, [2]uint64{hi, must})

	require.NoError(t, a.EndSession(ctx, rec.ID))
	hi, must, err = b.High(ctx, rec.ID, 0)
	require.NoError(t, err)
	assert.Equal(t, [2]uint64{0, 0}, [2]uint64{hi, must}, "the high-water mark outlived its session")
	ch := waitChange(2)
	assert.Equal(t, change{id: rec.ID, gone: true}, ch[len(ch)-1], "b sees the end (its own write is not echoed)")
	ch = waitChangeA(2)
	assert.Equal(t, change{id: rec.ID, gone: true}, ch[len(ch)-1], "a sees the end it made too")
	none, _, _, _, err = b.LoadSession(ctx, rec.ID)
	require.NoError(t, err)
	assert.Nil(t, none)
	keys, err := a.Keys(ctx)
	require.NoError(t, err)
	assert.Empty(t, keys)
	st := a.Stats()
	assert.Positive(t, st.RegistryReads)
	assert.Positive(t, st.RegistryConflicts)
}

func TestEventsPublishFollowTail(t *testing.T) {
	url := startNATS(t, true)
	const ring = 16
	a := openNode(t, url, cluster.Config{NodeID: "a", RingSize: ring})
	b := openNode(t, url, cluster.Config{NodeID: "b", RingSize: ring})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const sid = "0123456789abcdef0123456789abcdef"

	tail, err := b.Tail(ctx, sid, 7)
	require.NoError(t, err)
	assert.Nil(t, tail, "no events yet")

	var order []uint64
	var mu sync.Mutex
	acked := make(chan struct{}, 100)
	var lastMust uint64
	for seq := uint64(1); seq <= 10; seq++ {
		must := seq%4 == 0
		ev := &sessionrec.Published{Event: sessionrec.Event{Seq: seq, MustDeliver: must, Data: []byte(`{"n":` + string(rune('0'+seq%10)) + `}`)},
			Stream: 7, LastMust: lastMust, UpstreamEventID: "up_" + string(rune('a'+seq)),
			Calls: []sessionrec.Call{{UpID: 4294967297, ClientID: []byte(`"call one"`)}}}
		if must {
			lastMust = seq
		}
		a.Publish(sid, ev, func(err error) {
			assert.NoError(t, err)
			mu.Lock()
			order = append(order, seq)
			mu.Unlock()
			acked <- struct{}{}
		})
	}
	for range 10 {
		select {
		case <-acked:
		case <-ctx.Done():
			t.Fatal("acks")
		}
	}
	assert.Equal(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, order, "done functions run in publishing order")

	tail, err = b.Tail(ctx, sid, 7)
	require.NoError(t, err)
	require.NotNil(t, tail)
	assert.Equal(t, uint64(10), tail.Seq)
	assert.Equal(t, uint64(8), tail.LastMust)
	assert.Equal(t, "up_k", tail.UpstreamEventID)
	assert.Equal(t, []sessionrec.Call{{UpID: 4294967297, ClientID: []byte(`"call one"`)}}, tail.Calls)
	streams, err := b.Streams(ctx, sid)
	require.NoError(t, err)
	assert.Equal(t, []uint64{7}, streams)

	// Follow from 6: 7..10 stored, then 11 live, then the end marker.
	var seqs []uint64
	done := make(chan error, 1)
	go func() {
		done <- b.Follow(ctx, sid, 7, 6, func(p *sessionrec.Published) error {
			if p.End {
				seqs = append(seqs, 0)
				return nil
			}
			seqs = append(seqs, p.Seq)
			if p.Seq == 10 {
				a.Publish(sid, &sessionrec.Published{Event: sessionrec.Event{Seq: 11, Data: []byte(`{}`)}, Stream: 7}, nil)
				a.Publish(sid, &sessionrec.Published{Event: sessionrec.Event{Seq: 11}, Stream: 7, End: true}, nil)
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("follow did not end at the end marker")
	}
	assert.Equal(t, []uint64{7, 8, 9, 10, 11, 0}, seqs)

	// Per-subject limits: the ring, distributed. The oldest events go.
	for seq := uint64(1); seq <= 3*ring; seq++ {
		a.Publish(sid, &sessionrec.Published{Event: sessionrec.Event{Seq: seq, Data: []byte(`{}`)}, Stream: 9}, nil)
	}
	require.Eventually(t, func() bool {
		tl, err := b.Tail(ctx, sid, 9)
		return err == nil && tl != nil && tl.Seq == 3*ring
	}, 10*time.Second, 10*time.Millisecond)
	var first uint64
	stop := context.Canceled
	fctx, fcancel := context.WithCancel(ctx)
	err = b.Follow(fctx, sid, 9, 0, func(p *sessionrec.Published) error {
		if first == 0 {
			first = p.Seq
		}
		if p.Seq == 3*ring {
			fcancel()
			return stop
		}
		return nil
	})
	fcancel()
	require.ErrorIs(t, err, stop)
	assert.Equal(t, uint64(2*ring), first, "the subject keeps the ring's size plus the end marker's place")

	require.NoError(t, a.EndSession(ctx, sid))
	tail, err = b.Tail(ctx, sid, 9)
	require.NoError(t, err)
	assert.Nil(t, tail, "a session's end purges its events")
}

func TestRequests(t *testing.T) {
	url := startNATS(t, true)
	a := openNode(t, url, cluster.Config{NodeID: "a"})
	b := openNode(t, url, cluster.Config{NodeID: "b", RequestTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := b.Request(ctx, "a", "echo", []byte("x"))
	require.Error(t, err, "a node without a handler")
	a.Handle(func(op string, body []byte) ([]byte, error) {
		if op == "fail" {
			return nil, assert.AnError
		}
		return append([]byte(op+":"), body...), nil
	})
	out, err := b.Request(ctx, "a", "echo", []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, "echo:x", string(out))
	_, err = b.Request(ctx, "a", "fail", nil)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "remote: "), err.Error())
	_, err = b.Request(ctx, "nobody", "echo", nil)
	require.Error(t, err, "no such node")
}

// TestReleaseKeepsTheLeaseGone: a draining node hands its lease back
// (Release) so that other nodes claim its sessions at once; its lease
// loop must not put the lease back while the drain goes on (the node
// would look alive again), but it keeps the tag, whose streams the node
// still produces until it hands them over.
func TestReleaseKeepsTheLeaseGone(t *testing.T) {
	url := startNATS(t, true)
	const lease = 1500 * time.Millisecond
	a := openNode(t, url, cluster.Config{NodeID: "a", RingSize: 64, LeaseTTL: lease})
	openNode(t, url, cluster.Config{NodeID: "b", RingSize: 64, LeaseTTL: lease})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	leases, err := js.KeyValue(ctx, "mcpgate-nodes")
	require.NoError(t, err)
	_, err = leases.Get(ctx, "a")
	require.NoError(t, err, "a holds its lease")

	require.NoError(t, a.Release(ctx))
	// Longer than the lease: the loop refreshes every third of it.
	for end := time.Now().Add(lease + lease/2); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		_, err := leases.Get(ctx, "a")
		require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the released lease was put back")
	}
	tag, err := leases.Get(ctx, "tag-"+strconv.FormatUint(uint64(a.Tag()), 10))
	require.NoError(t, err, "the tag outlives the lease while the node lives")
	assert.Equal(t, "a", string(tag.Value()))
	nodes, err := a.Nodes(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, nodes)
}

// TestRedactURLs: the credentials a NATS URL may carry (user:password@,
// token@) never reach a log line or an error message; the servers still
// show.
func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                           "nats://127.0.0.1:4222",
		"nats://gw:s3cret@h:4222":                         "nats://xxxxx@h:4222",
		"nats://t0ken@h:4222,tls://u:p@[::1]:4222":        "nats://xxxxx@h:4222,tls://xxxxx@[::1]:4222",
		"nats://u:p%40ss@h:4222/x@y":                      "nats://xxxxx@h:4222/x@y",
		"http://a:b@h/mcp?next=http://c@d":                "http://xxxxx@h/mcp?next=http://c@d",
		"h:4222, nats://u:p@h2:4222":                      "h:4222, nats://xxxxx@h2:4222",
		"stdio:/bin/server --url https://key@api.example": "stdio:/bin/server --url https://xxxxx@api.example",
	} {
		assert.Equal(t, want, cluster.RedactURLs(in), in)
	}
}
