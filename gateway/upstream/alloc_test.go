//go:build !race

package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cannedUpstream answers every POST on a connection with the same SSE answer
// (headers and event in one write, the body's end in a second), reusing its
// buffers, so the process's allocations are the transport's.
func cannedUpstream(t *testing.T) string {
	t.Helper()
	event := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}\n\n"
	head := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nMcp-Session-Id: up-1\r\n" +
		"Date: Sat, 05 Dec 2026 00:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(len(event)), 16) + "\r\n" + event + "\r\n")
	writes := [][]byte{head, []byte("0\r\n\r\n")}
	return cannedServer(t, func(_, _ []byte) [][]byte { return writes })
}

// cannedServer serves each request on a connection with the writes answer
// returns for its request line and body, reading with buffers it reuses.
func cannedServer(t *testing.T, answer func(requestLine, body []byte) [][]byte) string {
	t.Helper()
	return "http://" + acceptLoop(t, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 8192)
		line := make([]byte, 0, 256)
		first := make([]byte, 0, 256)
		for {
			// request line and headers, then Content-Length bytes of body
			n := 0
			first = first[:0]
			for {
				b, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				line = append(line[:0], b...)
				if len(first) == 0 {
					first = append(first, line...)
				}
				if len(line) <= 2 {
					break
				}
				if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
					n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
				}
			}
			body, err := br.Peek(n)
			if err != nil {
				return
			}
			writes := answer(first, body)
			if _, err := br.Discard(n); err != nil {
				return
			}
			for _, w := range writes {
				if _, err := c.Write(w); err != nil {
					return
				}
			}
		}
	})
}

// TestSessionLifecycleAllocs: the allocation budget of an upstream
// session's life on the HTTP transport when the upstream answers with
// JSON, as session churn drives it: Connect (initialize), the initialized
// notification (202) and Close (DELETE).
func TestSessionLifecycleAllocs(t *testing.T) {
	initAnswer := `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"canned","version":"1"}}}`
	initialized := [][]byte{[]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: up-1\r\nContent-Length: " +
		strconv.Itoa(len(initAnswer)) + "\r\n\r\n" + initAnswer)}
	accepted := [][]byte{[]byte("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")}
	deleted := [][]byte{[]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")}
	tr := newTransport(t, cannedServer(t, func(requestLine, body []byte) [][]byte {
		switch {
		case bytes.HasPrefix(requestLine, []byte("DELETE ")):
			return deleted
		case bytes.Contains(body, []byte(`"method":"initialize"`)):
			return initialized
		default:
			return accepted
		}
	}), 0)
	initReq := []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`)
	notification := []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	ctx := context.Background()
	life := func() {
		s, answer, err := tr.Connect(ctx, initReq)
		if err != nil || s == nil || len(answer) == 0 {
			t.Fatalf("connect: %v %q", err, answer)
		}
		if r, err := s.Send(ctx, notification); err != nil || !r.Accepted {
			t.Fatalf("initialized: %v %+v", err, r)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	for range 200 {
		life()
	}
	allocs := testing.AllocsPerRun(500, life)
	t.Logf("%.1f allocations per upstream session's life", allocs)
	// 17: fasthttp's streamed body (4 per exchange: 12), the session and its
	// id, the initialize answer and its Reply, the initialized Reply. 23
	// before Connect made its deadline context only for a streamed answer
	// and drains went without io.LimitReader.
	assert.LessOrEqual(t, allocs, 17.0, "allocations per upstream session's life on the HTTP transport")
}

// TestSSEAnswerAllocs: the allocation budget of one call answered with a
// one-event SSE stream on the HTTP transport, from Send to the stream's
// Close (its end drained, the connection pooled, the response returned to
// fasthttp's pool).
func TestSSEAnswerAllocs(t *testing.T) {
	tr := newTransport(t, cannedUpstream(t), 0)
	s, err := tr.Resume("up-1", "2025-11-25")
	require.NoError(t, err)
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
	call := func() {
		r, err := s.Send(context.Background(), body)
		if err != nil || r.Stream == nil {
			t.Fatalf("send: %v %+v", err, r)
		}
		msg, err := r.Stream.Next()
		if err != nil || !bytes.Contains(msg, []byte(`"text":"hi"`)) {
			t.Fatalf("next: %q %v", msg, err)
		}
		if _, err := r.Stream.Next(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
		_ = r.Stream.Close()
	}
	for range 200 {
		call()
	}
	allocs := testing.AllocsPerRun(500, call)
	t.Logf("%.1f allocations per SSE-answered call", allocs)
	// 6: fasthttp's streamed body (4: the body and three closures), the
	// answer (stream, body and Reply in one), the event's data buffer. 11
	// before the answer was one allocation with its decoder and short
	// fields inline; 30 before the response went back to its pool and the
	// resume context was made on demand.
	assert.LessOrEqual(t, allocs, 6.0, "allocations per SSE-answered call on the HTTP transport")
}

// TestVersionOf: a known revision is returned without an allocation; other
// literals are decoded as jsonrpc.Unquote does.
func TestVersionOf(t *testing.T) {
	for raw, want := range map[string]string{
		`"2025-06-18"`:       "2025-06-18",
		`"2026-07-28"`:       "2026-07-28",
		`"2025-06-18\u0030"`: "2025-06-180",
		`"\u0032025-03-26"`:  "2025-03-26",
		`"1999-01-01"`:       "1999-01-01",
	} {
		v, ok := VersionOf([]byte(raw))
		assert.True(t, ok, raw)
		assert.Equal(t, want, v, raw)
	}
	for _, raw := range []string{``, `"`, `2025-06-18`, `"2025-06-18`, `"a"b"`} {
		_, ok := VersionOf([]byte(raw))
		assert.False(t, ok, raw)
	}
	raw := []byte(`"2025-11-25"`)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = VersionOf(raw) }))
}

// TestStreamSizeClass: a standalone stream's httpStream, held for the
// stream's whole life, stays in the 896-byte size class (the runtime adds
// an 8-byte header to objects over 512 bytes that hold pointers; one byte
// more and each idle stream holds 1024). Read from the runtime's counts of
// allocations per size class, not computed from the struct's size.
func TestStreamSizeClass(t *testing.T) {
	const n = 1000
	keep := make([]*httpStream, n)
	classOf := func(m *runtime.MemStats, size uint32) uint64 {
		for _, c := range m.BySize {
			if c.Size == size {
				return c.Mallocs
			}
		}
		t.Fatalf("no %d-byte size class", size)
		return 0
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range keep {
		keep[i] = new(httpStream)
	}
	runtime.ReadMemStats(&after)
	assert.GreaterOrEqual(t, classOf(&after, 896)-classOf(&before, 896), uint64(n),
		"httpStream (%d bytes) is not in the 896-byte size class", unsafe.Sizeof(httpStream{}))
	runtime.KeepAlive(keep)
}

// TestGetStreamWaitAllocs: reading a standalone stream event by event, each
// read preceded by a wait for the socket (WaitReadable), allocates nothing
// per event (taking the readiness callback as a method value at every wait
// allocated one).
func TestGetStreamWaitAllocs(t *testing.T) {
	conns := make(chan net.Conn, 1)
	url := rawServer(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		conns <- c
		<-t.Context().Done()
	})
	st, _ := openStream(t, url)
	defer st.Close()
	up := <-conns
	event := []byte(chunkedEvent("1", `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`))
	step := func() {
		if _, err := up.Write(event); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Next(); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		step()
	}
	assert.Zero(t, testing.AllocsPerRun(500, step), "allocations per event read after a wait")
}
