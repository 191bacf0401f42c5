//go:build !race

package gateway

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// TestEventPathAllocs: the steady-state event path — an upstream message is
// classified, pushed into the stream's ring, and encoded as SSE bytes into
// the connection's write buffer — allocates nothing per event.
func TestEventPathAllocs(t *testing.T) {
	s := newTestServer(t, Config{})
	st, r := readerFixture(t, s, ringbuf.Config{Capacity: 1024})
	var p jsonrpc.Parser
	msgs := [][]byte{
		[]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":7,"total":100}}`),
		[]byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hello"}}`),
		[]byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"done"}]}}`),
	}
	buf := make([]byte, 4096)
	step := func() {
		for _, m := range msgs {
			class, key, _ := classify(&p, m)
			s.deliver(st.sess, st, class, key, m, false, nil)
		}
		n, err := r.Read(buf)
		if err != nil || n == 0 {
			t.Fatalf("Read: %d, %v", n, err)
		}
	}
	// Warm up: the ring keeps delivered events until it needs room, so
	// every slot buffer must have seen every message size (three laps).
	for i := 0; i < 4*1024; i++ {
		step()
	}
	allocs := testing.AllocsPerRun(1000, step)
	require.Zero(t, allocs, "allocations per 3 events through classify, ring and SSE encoding")
}

func BenchmarkEventPath(b *testing.B) {
	s := newTestServer(b, Config{})
	st, r := readerFixture(b, s, ringbuf.Config{Capacity: 1024})
	var p jsonrpc.Parser
	msg := []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":7,"total":100}}`)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		class, key, _ := classify(&p, msg)
		s.push(st, class, key, msg, nil)
		if _, err := r.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// TestHijackedWakeAllocs: an event on an idle hijacked GET stream starts
// its writer, which writes the event and goes idle again; none of it
// allocates.
func TestHijackedWakeAllocs(t *testing.T) {
	s := newTestServer(t, Config{Heartbeat: time.Hour})
	c, sc := loopbackPair(t)
	st, r := hijackFixture(t, s, sc, ringbuf.Config{Capacity: 1024})
	defer s.store.Delete(st.sess.id)

	var p jsonrpc.Parser
	msg := []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":7,"total":100}}`)
	buf := make([]byte, 4096)
	idle := func() {
		for r.work.Load() != 0 {
			runtime.Gosched()
		}
	}
	step := func() {
		class, key, _ := classify(&p, msg)
		s.push(st, class, key, msg, nil)
		if n, err := c.Read(buf); err != nil || n == 0 {
			t.Fatalf("Read: %d, %v", n, err)
		}
		idle()
	}
	idle() // the headers are out
	for i := 0; i < 4*1024; i++ {
		step()
	}
	allocs := testing.AllocsPerRun(1000, step)
	require.Zero(t, allocs, "allocations per event that wakes an idle hijacked stream")
}

// TestHeldWriterAllocs: an event a standalone stream's pump pushes with
// its writer hold and writes itself (flush) allocates nothing.
func TestHeldWriterAllocs(t *testing.T) {
	s, st, _, c, _, _ := heldFixture(t, ringbuf.Config{Capacity: 1024})
	var p jsonrpc.Parser
	var h writerHold
	msg := []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":7,"total":100}}`)
	buf := make([]byte, 4096)
	step := func() {
		class, key, _ := classify(&p, msg)
		s.push(st, class, key, msg, &h)
		h.flush()
		if n, err := c.Read(buf); err != nil || n == 0 {
			t.Fatalf("Read: %d, %v", n, err)
		}
	}
	for i := 0; i < 4*1024; i++ {
		step()
	}
	allocs := testing.AllocsPerRun(1000, step)
	require.Zero(t, allocs, "allocations per event a pump writes itself")
}

// TestSessionHeldBytes: what a session with one stream holds for its life,
// besides the stream: the session (in the 256-byte size class), its
// context once asked for, a child made and ended under it (a GET stream's
// dial), and its stream table. With context.WithCancel and a map of
// streams this was 256 + 112 + 208 + 192 bytes and more.
func TestSessionHeldBytes(t *testing.T) {
	const n = 1000
	keep := make([]*session, n)
	streams := make([]*stream, n)
	for i := range streams {
		streams[i] = &stream{}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keep {
		sess := &session{}
		_, cancel := context.WithTimeout(sess.context(), time.Minute)
		cancel()
		sess.mu.Lock()
		sess.addStreamLocked(streams[i])
		sess.mu.Unlock()
		keep[i] = sess
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("held per session: %d bytes", held)
	require.LessOrEqual(t, held, int64(256+48+96+16+32), "bytes held per session with a stream")
	runtime.KeepAlive(keep)
}
