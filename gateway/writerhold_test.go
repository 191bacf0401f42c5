package gateway

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/rawsock"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// heldFixture is a hijacked GET stream on a loopback connection accepted
// as Serve's listener accepts them (a guardConn that can write without
// waiting), past its headers with its writer idle; spawned counts the
// writer goroutines started from then on.
func heldFixture(t *testing.T, ringCfg ringbuf.Config) (s *Server, st *stream, w *hijackWriter, client net.Conn, br *bufio.Reader, spawned *atomic.Int32) {
	t.Helper()
	if !rawsock.Supported {
		t.Skip("no non-blocking writes on this system")
	}
	s = newTestServer(t, Config{Heartbeat: time.Hour})
	client, sc := loopbackPair(t)
	raw, err := sc.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	gc := &guardConn{Conn: sc, raw: raw, state: headMethod}
	st, w = hijackFixture(t, s, gc, ringCfg)
	require.Same(t, gc, w.gc, "a guardConn with a raw socket: the writer may run inline")
	br = bufio.NewReader(client)
	for line := ""; line != "\r\n"; {
		line, err = br.ReadString('\n')
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return w.work.Load() == 0 }, 5*time.Second, time.Millisecond, "the writer goes idle after the headers")
	spawned = new(atomic.Int32)
	run := w.run
	w.run = func() { spawned.Add(1); run() }
	return s, st, w, client, br, spawned
}

func holdEvent(i int) []byte {
	return []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"` + strconv.Itoa(i) + `"}}`)
}

// TestWriterHoldWritesOnThePump: events pushed with the pump's hold wait
// until it flushes (as before its upstream read waits), then leave in one
// chunk written by the flushing goroutine itself: no writer goroutine.
func TestWriterHoldWritesOnThePump(t *testing.T) {
	s, st, w, client, br, spawned := heldFixture(t, ringbuf.Config{})
	var h writerHold
	for i := 1; i <= 3; i++ {
		s.push(st, ringbuf.Droppable, 0, holdEvent(i), &h)
	}
	require.Same(t, w, h.w, "the pump holds the idle writer")
	assert.Equal(t, int64(1), w.work.Load())

	require.NoError(t, client.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err := br.Peek(1)
	require.Error(t, err, "nothing is written while the pump holds the writer")
	require.NoError(t, client.SetReadDeadline(time.Time{}))

	h.flush()
	assert.Nil(t, h.w)
	assert.Equal(t, int64(0), w.work.Load(), "the writer is idle again when flush returns")
	var want strings.Builder
	for i := 1; i <= 3; i++ {
		want.WriteString("id: 3_" + strconv.Itoa(i) + "\ndata: " + string(holdEvent(i)) + "\n\n")
	}
	assert.Equal(t, want.String(), readChunk(t, br), "the three events in one chunk")
	assert.Zero(t, spawned.Load(), "no writer goroutine")

	// Another producer's event finds the writer idle: a goroutine writes it.
	s.push(st, ringbuf.Droppable, 0, holdEvent(4), nil)
	assert.Equal(t, "id: 3_4\ndata: "+string(holdEvent(4))+"\n\n", readChunk(t, br))
	assert.Equal(t, int32(1), spawned.Load())
}

// TestWriterHoldHandsAFullSocketOver: a flush never waits for a client
// that does not read; what the socket did not take is written by a
// writer goroutine, and every event arrives whole and in order.
func TestWriterHoldHandsAFullSocketOver(t *testing.T) {
	const n = 600 // ~600 KiB: far more than the socket buffers hold
	s, st, w, client, br, spawned := heldFixture(t, ringbuf.Config{Capacity: 1024, MaxBytes: 4 << 20})
	require.NoError(t, w.gc.SetWriteBuffer(16<<10))
	require.NoError(t, client.(*net.TCPConn).SetReadBuffer(16<<10))
	pad := strings.Repeat("x", 1000)
	msg := func(i int) string {
		return `{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"` + strconv.Itoa(i) + pad + `"}}`
	}
	var h writerHold
	for i := 1; i <= n; i++ {
		s.push(st, ringbuf.Droppable, 0, []byte(msg(i)), &h)
	}
	flushed := make(chan struct{})
	go func() {
		h.flush()
		close(flushed)
	}()
	select {
	case <-flushed:
	case <-time.After(10 * time.Second):
		t.Fatal("flush waited for a client that does not read")
	}
	var got strings.Builder
	for strings.Count(got.String(), "\n\n") < n {
		got.WriteString(readChunk(t, br))
	}
	events := strings.Split(strings.TrimSuffix(got.String(), "\n\n"), "\n\n")
	require.Len(t, events, n)
	for i, ev := range events {
		require.Equal(t, "id: 3_"+strconv.Itoa(i+1)+"\ndata: "+msg(i+1), ev)
	}
	require.Eventually(t, func() bool { return w.work.Load() == 0 }, 5*time.Second, time.Millisecond, "the writer goes idle")
	assert.Equal(t, int32(1), spawned.Load(), "the rest went to a writer goroutine")
	assert.Equal(t, int64(0), w.writeSince.Load(), "no write in flight")
}

// TestWriterHoldEndsOnTheWriterGoroutine: a connection cut while the pump
// holds its writer is closed and detached by a writer goroutine, not by
// the flush.
func TestWriterHoldEndsOnTheWriterGoroutine(t *testing.T) {
	s, st, w, _, br, spawned := heldFixture(t, ringbuf.Config{})
	var h writerHold
	s.push(st, ringbuf.Droppable, 0, holdEvent(1), &h)
	st.cut(CloseSlowConsumer)
	h.flush()
	require.Eventually(t, func() bool { return !st.attached() }, 5*time.Second, time.Millisecond, "detached")
	assert.Equal(t, int32(1), spawned.Load(), "by a writer goroutine")
	assert.Equal(t, CloseSlowConsumer, w.closeReason())
	_, err := br.ReadString('\n')
	assert.Error(t, err, "the connection is closed")
}
