package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGetConnBody decodes bodies through a 16-byte buffer, so every chunk
// header, chunk and CRLF is split across reads.
func TestGetConnBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		chunked bool
		length  int64 // -1: to EOF
		want    string
		err     error
	}{
		{"chunked", "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n", true, 0, "hello, world", io.EOF},
		{"chunked, extensions, trailer", "5;ext=1\r\nhello\r\n1A \r\n" + strings.Repeat("x", 26) + "\r\n0\r\nTrailer: a\r\n\r\n", true, 0, "hello" + strings.Repeat("x", 26), io.EOF},
		{"chunked, bare LF after the size", "5\nhello\r\n0\r\n\r\n", true, 0, "", errBadChunk},
		{"chunked, signed size", "+5\r\nhello\r\n0\r\n\r\n", true, 0, "", errBadChunk},
		{"chunked, long trailer field", "2\r\nhi\r\n0\r\nX: " + strings.Repeat("y", 40) + "\r\n\r\n", true, 0, "hi", io.EOF},
		{"chunked, cut inside a chunk", "5\r\nhel", true, 0, "hel", io.ErrUnexpectedEOF},
		{"chunked, cut before the last chunk", "2\r\nhi\r\n", true, 0, "hi", io.ErrUnexpectedEOF},
		{"chunked, bad size", "zz\r\nhello\r\n", true, 0, "", errBadChunk},
		{"chunked, bad CRLF", "2\r\nhiXX0\r\n\r\n", true, 0, "hi", errBadChunk},
		{"sized", "hello, world and more", false, 12, "hello, world", io.EOF},
		{"sized, cut", "hello", false, 12, "hello", io.ErrUnexpectedEOF},
		{"to EOF", "all of it", false, -1, "all of it", io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &getConn{br: bufio.NewReaderSize(strings.NewReader(tc.body), 16), chunked: tc.chunked}
			switch {
			case tc.chunked:
			case tc.length < 0:
				g.toEOF = true
			default:
				g.left = tc.length
			}
			var got []byte
			buf := make([]byte, 7)
			var err error
			for err == nil {
				var n int
				n, err = g.Read(buf)
				got = append(got, buf[:n]...)
			}
			assert.Equal(t, tc.want, string(got))
			assert.ErrorIs(t, err, tc.err)
			_, again := g.Read(buf)
			assert.Equal(t, err, again, "the end is sticky")
		})
	}
}

// rawServer answers every connection with head, then the parts written by
// parts (each flushed separately), then waits for the client to close.
func rawServer(t *testing.T, handle func(c net.Conn)) string {
	return "http://" + acceptLoop(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		handle(c)
		_, _ = io.Copy(io.Discard, br)
	}) + "/mcp"
}

// acceptLoop serves each connection to a loopback listener with serve on a
// goroutine of its own (closing the connection after it) until the test
// ends, and returns the listener's host:port.
func acceptLoop(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// countingReader counts the reads made of it.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// TestGetConnBurstBuffer: a burst of 64 chunks (~15 KB) read with large
// buffers, as the SSE decoder does while input flows, costs a couple of
// reads of the connection (the 1 KiB buffer alone would take ~15); asked
// for little again with nothing buffered, the stream is back on its small
// buffer and the burst buffer in the pool.
func TestGetConnBurstBuffer(t *testing.T) {
	var body strings.Builder
	var want strings.Builder
	for i := range 64 {
		ev := fmt.Sprintf("id: 0_%d\ndata: %s\n\n", i+1, strings.Repeat("x", 200))
		fmt.Fprintf(&body, "%x\r\n%s\r\n", len(ev), ev)
		want.WriteString(ev)
	}
	src := &countingReader{r: strings.NewReader(body.String())}
	small := bufio.NewReaderSize(src, getReadBuffer)
	g := &getConn{br: small, src: src, chunked: true}
	var got []byte
	buf := make([]byte, 16<<10)
	for len(got) < want.Len() {
		n, err := g.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	assert.Equal(t, want.String(), string(got))
	assert.LessOrEqual(t, src.reads, 2, "reads of the connection for a %d-byte burst", body.Len())
	assert.True(t, g.br != small && g.small == small, "read through the burst buffer")
	_, err := g.Read(make([]byte, 128)) // the decoder back on its inline buffer
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the body ended without its last chunk")
	assert.True(t, g.br == small, "back on the small buffer")
	assert.Nil(t, g.small)
}

// TestGetConnIdleHoldsNoBuffer: a reader waiting for the upstream's next
// bytes (WaitReadable with nothing buffered) has given its read buffers
// back to their pools, the small one and, after a burst, the burst buffer
// too. Woken, it reads through a burst buffer, inside the wait: whatever
// woke it, one event or a burst of 64 (~15 KB), comes in one read of the
// socket after the one before the wait that found nothing, with the reads
// the SSE decoder makes (128 bytes, 896, 1 KiB, then 16 KiB), where a
// small buffer first took three; nothing is lost.
func TestGetConnIdleHoldsNoBuffer(t *testing.T) {
	url, next := feedServer(t, "")
	tr, err := NewHTTP(HTTPConfig{URL: url, Timeout: 5 * time.Second, StreamMaxConns: 1})
	require.NoError(t, err)
	g, resp, err := tr.openGet(context.Background(), nil)
	require.NoError(t, err)
	defer g.close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	src := &countingReader{r: g.src}
	g.src = src

	// wait parks the reader until the upstream sends part, which it does
	// once the reader is parked; then reads n bytes of body as the decoder
	// does, and returns them with the reads of the socket they took.
	wait := func(part string, n int) (string, int) {
		go func() {
			if !assert.Eventually(t, inWaitIdle, 5*time.Second, 5*time.Millisecond, "the reader parks in WaitReadable") {
				g.close() // ends the wait
				return
			}
			next <- part
		}()
		reads := src.reads
		require.NoError(t, g.WaitReadable())
		assert.True(t, g.br != nil && g.br.Buffered() > 0 && g.small == nil, "the input that woke the reader was read in the wait")
		var got []byte
		for i := 0; len(got) < n; i++ {
			size := 16 << 10
			if i < 3 {
				size = []int{128, 896, 1024}[i]
			}
			p := make([]byte, size)
			k, err := g.Read(p)
			require.NoError(t, err)
			got = append(got, p[:k]...)
		}
		return string(got), src.reads - reads
	}
	ev := "id: 1\ndata: a\n\n"
	got, reads := wait(chunkedEvent("1", "a"), len(ev))
	assert.Equal(t, ev, got)
	assert.Equal(t, 2, reads, "reads of the socket for one event (one before the wait)")
	assert.Equal(t, burstReadBuffer, g.br.Size(), "a woken reader reads through a burst buffer")

	var burst, want strings.Builder
	for i := range 64 {
		ev := chunkedEvent(fmt.Sprint(i+2), strings.Repeat("x", 200))
		burst.WriteString(ev)
		want.WriteString(ev[strings.Index(ev, "\r\n")+2 : len(ev)-2])
	}
	got, reads = wait(burst.String(), want.Len())
	assert.Equal(t, want.String(), got)
	assert.Equal(t, 2, reads, "reads of the socket for a burst of %d bytes written at once", burst.Len())
	ev = "id: 66\ndata: b\n\n"
	got, _ = wait(chunkedEvent("66", "b"), len(ev))
	assert.Equal(t, ev, got)

	// A wait that finds nothing, ended by the close, holds no buffer.
	go func() {
		assert.Eventually(t, inWaitIdle, 5*time.Second, 5*time.Millisecond, "the reader parks in WaitReadable")
		g.close()
	}()
	require.NoError(t, g.WaitReadable())
	assert.True(t, g.br == nil && g.small == nil, "no read buffer held while waiting")
	_, err = g.Read(make([]byte, 128))
	assert.Error(t, err, "the closed connection")
}

// TestGetStreamWaitsShallow: a GET stream with response headers far larger
// than the read buffer opens; a reader waiting for the next event parks in
// WaitReadable (not inside the body read) and wakes for it; the end of the
// body is seen even when the upstream keeps the connection open; Close
// interrupts a waiting reader; and the stream slot is given back.
func TestGetStreamWaitsShallow(t *testing.T) {
	url, next := feedServer(t, "X-Big: "+strings.Repeat("b", 3000)+"\r\n")
	tr, err := NewHTTP(HTTPConfig{URL: url, Timeout: 5 * time.Second, StreamMaxConns: 1})
	require.NoError(t, err)
	s := &httpSession{t: tr, id: "up-1", version: "2025-06-18"}
	st, err := s.get(context.Background(), nil, false)
	require.NoError(t, err)

	_, err = s.get(context.Background(), nil, false)
	assert.ErrorIs(t, err, ErrUnavailable, "StreamMaxConns streams are open")

	msgs := make(chan string)
	errs := make(chan error, 1)
	go func() {
		for {
			m, err := st.Next()
			if err != nil {
				errs <- err
				return
			}
			msgs <- string(m)
		}
	}()
	event := chunkedEvent
	next <- event("1", `{"jsonrpc":"2.0","method":"a"}`)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"a"}`, <-msgs)
	require.Eventually(t, func() bool { return inWaitIdle() }, 5*time.Second, 10*time.Millisecond,
		"a reader with nothing pending parks in WaitReadable")
	next <- event("2", `{"jsonrpc":"2.0","method":"b"}`)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"b"}`, <-msgs)
	next <- "0\r\n\r\n" // the body ends; the connection stays open
	select {
	case err := <-errs:
		assert.ErrorIs(t, err, io.EOF)
	case <-time.After(5 * time.Second):
		t.Fatal("the end of the body was not seen")
	}
	require.NoError(t, st.Close())
	assert.Zero(t, tr.getConns.Load(), "the slot is free again")

	// Close interrupts a reader parked in WaitReadable.
	st, err = s.get(context.Background(), nil, false)
	require.NoError(t, err)
	go func() {
		_, err := st.Next()
		errs <- err
	}()
	require.Eventually(t, func() bool { return inWaitIdle() }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, st.Close())
	select {
	case err := <-errs:
		assert.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt the waiting reader")
	}
}

// TestGetStreamParks: an idle GET stream gives up waiting after its idle
// period (ErrIdle, the stream intact), parks in the transport's poller with
// no goroutine waiting on it, and resumes its reader when the upstream
// sends; woken after a long park, it gives up as soon as that input is
// read; input that pauses mid-event past the idle deadline is read on, not
// taken for an idle stream; Close and the transport's Close resume a parked
// reader, which then sees the end.
func TestGetStreamParks(t *testing.T) {
	const idle = time.Second // long enough that -race and a loaded machine do not blur the paths
	st, s, next := idleStream(t, idle)
	tr := s.t

	resumed := make(chan struct{}, 1)
	resume := func() { resumed <- struct{}{} }
	awaitResume := func(what string) {
		t.Helper()
		select {
		case <-resumed:
		case <-time.After(5 * time.Second):
			t.Fatal("the parked reader was not resumed: " + what)
		}
	}
	parkedCount := func() int {
		p := tr.pollerIfAny()
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.parked)
	}

	// readOne reads the next message, which must be want; untilIdle reads
	// on until Next gives up and returns how long that took.
	readOne := func(want string) {
		t.Helper()
		m, err := st.Next()
		require.NoError(t, err)
		assert.Equal(t, want, string(m))
	}
	untilIdle := func() time.Duration {
		t.Helper()
		start := time.Now()
		_, err := st.Next()
		require.ErrorIs(t, err, ErrIdle)
		return time.Since(start)
	}

	// Parked before any input: nobody waits on the socket until it sends.
	require.True(t, st.Park(resume))
	assert.Equal(t, 1, parkedCount())
	assert.False(t, inWaitIdle(), "no goroutine waits on a parked stream")
	next <- chunkedEvent("1", `{"jsonrpc":"2.0","method":"a"}`)
	awaitResume("input came")
	assert.Zero(t, parkedCount())
	readOne(`{"jsonrpc":"2.0","method":"a"}`)

	// A new stream's first input (a greeting) read, nothing more: Next
	// gives up at once, not after an idle period.
	assert.Less(t, untilIdle(), idle/2, "a new stream's greeting: no idle period")

	// Woken soon after it parked (a busy stream): once the input is read,
	// Next waits out the idle period before it gives up.
	require.True(t, st.Park(resume))
	next <- chunkedEvent("1b", `{"jsonrpc":"2.0","method":"a2"}`)
	awaitResume("input came soon after parking")
	readOne(`{"jsonrpc":"2.0","method":"a2"}`)
	assert.GreaterOrEqual(t, untilIdle(), idle/2)

	// Parked again (the socket re-armed in the poller) for longer than the
	// idle period, then woken by one event: once it is read, the reader
	// gives up at once rather than wait out another idle period.
	require.True(t, st.Park(resume))
	time.Sleep(idle + idle/2)
	next <- chunkedEvent("2", `{"jsonrpc":"2.0","method":"b"}`)
	awaitResume("input came after a second park")
	readOne(`{"jsonrpc":"2.0","method":"b"}`)
	assert.Less(t, untilIdle(), idle/2, "a lone event after a long park: no second idle period")

	// An event that pauses in its middle for longer than the idle period.
	ev := chunkedEvent("3", `{"jsonrpc":"2.0","method":"c"}`)
	cut := strings.Index(ev, `"method"`)
	got := make(chan error, 1)
	go func() {
		m, err := st.Next()
		if err == nil && string(m) != `{"jsonrpc":"2.0","method":"c"}` {
			err = fmt.Errorf("got %q", m)
		}
		got <- err
	}()
	next <- ev[:cut]
	time.Sleep(idle + idle/2)
	next <- ev[cut:]
	select {
	case err := <-got:
		require.NoError(t, err, "an event cut by a pause is read whole")
	case <-time.After(5 * time.Second):
		t.Fatal("the paused event was not read")
	}

	// Close resumes a parked reader, which sees the end.
	untilIdle()
	require.True(t, st.Park(resume))
	require.NoError(t, st.Close())
	awaitResume("Close")
	_, err := st.Next()
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrIdle)
	assert.False(t, st.Park(resume), "a closed stream does not park")

	// The transport's Close resumes a parked reader, and parking ends.
	st, err = s.get(context.Background(), nil, false)
	require.NoError(t, err)
	defer st.Close()
	require.True(t, st.Park(resume))
	require.NoError(t, tr.Close())
	awaitResume("the transport's Close")
	assert.False(t, st.Park(resume), "no parking once the transport is closed")
}

// TestGetStreamIdleAfterStaleReadiness: input that arrived while nobody
// waited (the runtime's poller marked the socket ready) and was read
// without a wait does not fool the next wait, which trusts the poller's
// wake-up rather than look at the socket again: the runtime resets that
// readiness before a wait, so the wait gives up with ErrIdle after the idle
// period instead of entering a body read that would outlast it, and the
// stream goes on after it.
func TestGetStreamIdleAfterStaleReadiness(t *testing.T) {
	const idle = 500 * time.Millisecond
	st, _, next := idleStream(t, idle)
	defer st.Close()

	next <- chunkedEvent("1", `{"jsonrpc":"2.0","method":"a"}`)
	time.Sleep(100 * time.Millisecond) // in the socket before anyone waits
	m, err := st.Next()
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"a"}`, string(m))

	got := make(chan error, 1)
	go func() {
		_, err := st.Next()
		got <- err
	}()
	select {
	case err := <-got:
		require.ErrorIs(t, err, ErrIdle)
	case <-time.After(10 * idle):
		_ = st.Close()
		<-got
		t.Fatal("an idle stream stayed in a body read past its idle period")
	}
	next <- chunkedEvent("2", `{"jsonrpc":"2.0","method":"b"}`)
	m, err = st.Next()
	require.NoError(t, err, "the stream goes on after ErrIdle")
	assert.Equal(t, `{"jsonrpc":"2.0","method":"b"}`, string(m))
}

// idleStream opens a GET stream with the given idle period on a feedServer
// (one stream at a time); it returns the stream, its session (for another
// GET; its transport is closed when the test ends) and the feed.
func idleStream(t *testing.T, idle time.Duration) (*httpStream, *httpSession, chan<- string) {
	t.Helper()
	url, next := feedServer(t, "")
	st, s := openStream(t, url)
	st.SetIdle(idle)
	return st, s, next
}

// openStream opens a standalone GET stream of a session on the upstream at
// url (its transport is closed when the test ends).
func openStream(t *testing.T, url string) (*httpStream, *httpSession) {
	t.Helper()
	tr, err := NewHTTP(HTTPConfig{URL: url, Timeout: 5 * time.Second, StreamMaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	s := &httpSession{t: tr, id: "up-1", version: "2025-06-18"}
	st, err := s.get(context.Background(), nil, false)
	require.NoError(t, err)
	return st, s
}

// feedServer is an upstream whose GET answer is a chunked SSE body (with
// the extra header lines given) that carries whatever is sent on next.
func feedServer(t *testing.T, header string) (url string, next chan<- string) {
	parts := make(chan string)
	url = rawServer(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"+header+"Transfer-Encoding: chunked\r\n\r\n")
		for part := range parts {
			if _, err := io.WriteString(c, part); err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { close(parts) })
	return url, parts
}

// chunkedEvent is one SSE event as one chunk of a chunked body.
func chunkedEvent(id, data string) string {
	ev := "id: " + id + "\ndata: " + data + "\n\n"
	return strings.ToLower(strings.TrimLeft(hex(len(ev)), "0")) + "\r\n" + ev + "\r\n"
}

func hex(n int) string {
	const digits = "0123456789abcdef"
	s := ""
	for n > 0 {
		s = string(digits[n%16]) + s
		n /= 16
	}
	return s
}

// inWaitIdle reports whether some goroutine is parked in getConn.WaitReadable.
func inWaitIdle() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "(*getConn).WaitReadable") && strings.Contains(g, "IO wait") {
			return true
		}
	}
	return false
}

// TestGetStreamHeadBounded: a GET stream's response head is read up to
// maxGetHead: a larger one (here 4 MiB of headers, which net/textproto
// would take whole) fails the GET and frees its slot; one just under the
// bound opens.
func TestGetStreamHeadBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		opens  bool
	}{
		{"4 MiB", "X-Big: " + strings.Repeat("b", 4<<20) + "\r\n", false},
		{"just under the bound", strings.Repeat("X-Many: "+strings.Repeat("m", 1000)+"\r\n", 60), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := feedServer(t, tc.header)
			tr, err := NewHTTP(HTTPConfig{URL: url, Timeout: 5 * time.Second, StreamMaxConns: 1})
			require.NoError(t, err)
			t.Cleanup(func() { _ = tr.Close() })
			s := &httpSession{t: tr, id: "up-1", version: "2025-06-18"}
			st, err := s.get(context.Background(), nil, false)
			if tc.opens {
				require.NoError(t, err)
				require.NoError(t, st.Close())
			} else {
				require.ErrorIs(t, err, ErrUnavailable)
				assert.ErrorContains(t, err, "response head larger than")
			}
			assert.Zero(t, tr.getConns.Load(), "the stream slot is given back")
		})
	}
}

// TestGetStreamRefusals: non-2xx answers map to the transport's errors and
// free their slot.
func TestGetStreamRefusals(t *testing.T) {
	status := make(chan string, 3)
	url := rawServer(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 "+<-status+"\r\nContent-Length: 2\r\n\r\nno")
	})
	tr, err := NewHTTP(HTTPConfig{URL: url, StreamMaxConns: 1})
	require.NoError(t, err)
	s := &httpSession{t: tr, id: "up-1"}
	for _, tc := range []struct {
		status string
		want   error
	}{{"405 Method Not Allowed", ErrNotSupported}, {"404 Not Found", ErrSessionGone}} {
		status <- tc.status
		_, err := s.get(context.Background(), nil, false)
		assert.ErrorIs(t, err, tc.want, tc.status)
	}
	status <- "500 Internal Server Error"
	_, err = s.get(context.Background(), nil, false)
	var se *StatusError
	require.True(t, errors.As(err, &se))
	assert.Equal(t, 500, se.Status)
	assert.Zero(t, tr.getConns.Load())
}

// TestHTTPSUpstream: over https, with the server's CA given in TLSConfig,
// a session connects (POST on fasthttp) and its standalone stream (GET on
// its own TLS connection) delivers; without the CA the GET is refused.
func TestHTTPSUpstream(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Mcp-Session-Id", "up-1")
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, initResp)
		case http.MethodGet:
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig

	tr, err := NewHTTP(HTTPConfig{URL: srv.URL + "/mcp", TLSConfig: tlsConf})
	require.NoError(t, err)
	defer tr.Close()
	s, _, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	st, err := s.Listen(context.Background())
	require.NoError(t, err)
	msg, err := st.Next()
	require.NoError(t, err)
	assert.Contains(t, string(msg), "list_changed")
	require.NoError(t, st.Close())

	untrusted, err := NewHTTP(HTTPConfig{URL: srv.URL + "/mcp"})
	require.NoError(t, err)
	us := &httpSession{t: untrusted, id: "up-1"}
	_, err = us.get(context.Background(), nil, false)
	assert.ErrorIs(t, err, ErrUnavailable, "an unknown CA fails the handshake")
	assert.Zero(t, untrusted.getConns.Load())
}

// hookCount counts BeforeWait calls.
type hookCount struct{ n atomic.Int32 }

func (h *hookCount) BeforeWait() { h.n.Add(1) }

// TestGetStreamWaitHook: a GET stream tells its hook before a read that
// may wait, including one inside a half-arrived event, and not between
// events that arrived together.
func TestGetStreamWaitHook(t *testing.T) {
	st, _, next := idleStream(t, 0)
	defer st.Close()
	var h hookCount
	require.True(t, st.OnWait(&h))

	third := chunkedEvent("3", `{"jsonrpc":"2.0","method":"c"}`)
	next <- chunkedEvent("1", `{"jsonrpc":"2.0","method":"a"}`) + chunkedEvent("2", `{"jsonrpc":"2.0","method":"b"}`) + third[:len(third)/2]
	time.Sleep(100 * time.Millisecond) // all in the socket before the first read
	m, err := st.Next()
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"a"}`, string(m))
	before := h.n.Load()
	require.Positive(t, before, "told before the first read")
	m, err = st.Next()
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"b"}`, string(m))
	assert.Equal(t, before, h.n.Load(), "not told between events that arrived together")

	got := make(chan []byte, 1)
	go func() {
		m, _ := st.Next()
		got <- append([]byte(nil), m...)
	}()
	require.Eventually(t, func() bool { return h.n.Load() > before }, 5*time.Second, time.Millisecond,
		"told before waiting for the rest of a half-arrived event")
	select {
	case m := <-got:
		t.Fatalf("Next returned %q before the event's rest arrived", m)
	default:
	}
	next <- third[len(third)/2:]
	assert.Equal(t, `{"jsonrpc":"2.0","method":"c"}`, string(<-got))
}

// TestGetConnWaitReadsError: the end of the connection that wakes a waiting
// reader is read in the wait and reported by the Read that follows, as the
// read itself would have: a reset as the reset, a close inside the body as
// an unexpected EOF.
func TestGetConnWaitReadsError(t *testing.T) {
	for _, reset := range []bool{true, false} {
		t.Run(fmt.Sprint("reset=", reset), func(t *testing.T) {
			cut := make(chan struct{})
			url := rawServer(t, func(c net.Conn) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
				<-cut
				if reset {
					_ = c.(*net.TCPConn).SetLinger(0) // the close sends RST
				}
				_ = c.Close()
			})
			tr, err := NewHTTP(HTTPConfig{URL: url, Timeout: 5 * time.Second, StreamMaxConns: 1})
			require.NoError(t, err)
			g, _, err := tr.openGet(context.Background(), nil)
			require.NoError(t, err)
			defer g.close()
			go func() {
				assert.Eventually(t, inWaitIdle, 5*time.Second, 5*time.Millisecond, "the reader parks in WaitReadable")
				close(cut)
			}()
			require.NoError(t, g.WaitReadable())
			_, err = g.Read(make([]byte, 128))
			if reset {
				assert.ErrorIs(t, err, syscall.ECONNRESET)
			} else {
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
			}
			_, again := g.Read(make([]byte, 128))
			assert.Equal(t, err, again, "the end is sticky")
		})
	}
}

// TestIdleWatch: a waiting reader is watched by its transport from its
// first wait; a wait that lasts the idle period ends with ErrIdle (after
// between idle and idle*5/4, plus scheduling), while input at shorter
// intervals keeps the stream going; a stream that parks or closes leaves
// the watch, and the transport's Close stops the watcher.
func TestIdleWatch(t *testing.T) {
	const idle = 300 * time.Millisecond
	st, s, next := idleStream(t, idle)
	tr := s.t
	watched := func() int {
		w := tr.idleWatchIfAny()
		if w == nil {
			return 0
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.streams)
	}

	// Input every idle/3 for three idle periods: no ErrIdle.
	go func() {
		for i := range 9 {
			time.Sleep(idle / 3)
			next <- chunkedEvent(fmt.Sprint(i), `{"jsonrpc":"2.0","method":"m"}`)
		}
	}()
	st.body.(*getConn).lone = false // not new: a wait that finds nothing waits out the period
	for range 9 {
		m, err := st.Next()
		require.NoError(t, err, "a stream with input every idle/3 is not idle")
		assert.Equal(t, `{"jsonrpc":"2.0","method":"m"}`, string(m))
	}
	assert.Equal(t, 1, watched(), "the waiting reader is watched")

	start := time.Now()
	_, err := st.Next()
	require.ErrorIs(t, err, ErrIdle)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, idle, "a wait ends after the idle period")
	assert.Less(t, took, 3*idle, "and soon after it")

	resumed := make(chan struct{}, 1)
	require.True(t, st.Park(func() { resumed <- struct{}{} }))
	assert.Zero(t, watched(), "a parked stream is not watched")
	next <- chunkedEvent("x", `{"jsonrpc":"2.0","method":"x"}`)
	<-resumed
	m, err := st.Next()
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"x"}`, string(m))

	go func() {
		assert.Eventually(t, inWaitIdle, 5*time.Second, 5*time.Millisecond)
		assert.Equal(t, 1, watched(), "watched again once it waits")
		_ = st.Close()
	}()
	_, err = st.Next()
	require.Error(t, err)
	assert.Zero(t, watched(), "a closed stream is not watched")

	w := tr.idleWatchIfAny()
	require.NoError(t, tr.Close())
	select {
	case <-w.done:
	default:
		t.Fatal("the transport's Close left the watcher running")
	}
}
