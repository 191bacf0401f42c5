package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAnswerInHand(t *testing.T) {
	const hdr = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
	ev := "id: 1\ndata: {}\n\n" // 16 bytes, 3 line breaks
	chunk := func(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
	for _, c := range []struct {
		name string
		rec  string
		cl   int
		want inHand
		ok   bool
	}{
		{"sized, whole", hdr + ev, len(ev), inHand{n: 16, lines: 3, complete: true}, true},
		{"sized, part", hdr + ev[:10], len(ev), inHand{n: 10, lines: 1}, true},
		{"chunked, one chunk", hdr + chunk(ev), -1, inHand{n: 16, lines: 3, boundary: true}, true},
		{"chunked, whole", hdr + chunk(ev) + chunk(ev) + "0\r\n\r\n", -1, inHand{n: 32, lines: 6, complete: true}, true},
		{"chunked, end without its CRLF", hdr + chunk(ev) + "0\r\n", -1, inHand{n: 16, lines: 3}, true},
		{"chunked, chunk without its CRLF", hdr + chunk(ev) + chunk(ev)[:20], -1, inHand{n: 16, lines: 3}, true},
		{"chunked, chunk data without the CRLF after it", hdr + strings.TrimSuffix(chunk(ev), "\r\n"), -1, inHand{}, true},
		{"chunked, extension", hdr + "10;x=y\r\n" + ev + "\r\n", -1, inHand{n: 16, lines: 3, boundary: true}, true},
		{"chunked, trailer", hdr + chunk(ev) + "0\r\nX-T: 1\r\n\r\n", -1, inHand{n: 16, lines: 3}, true},
		{"chunked, headers only", hdr, -1, inHand{boundary: true}, true},
		{"until close", hdr + ev, -2, inHand{n: 16, lines: 3}, true},
		{"no reason phrase", "HTTP/1.1 200\r\n\r\n" + ev, len(ev), inHand{n: 16, lines: 3, complete: true}, true},
		{"chunked, bad size", hdr + "zz\r\n" + ev, -1, inHand{}, false},
		{"chunked, bad CRLF", hdr + "10\r\n" + ev + "xx", -1, inHand{}, false},
		{"headers cut", hdr[:30], -1, inHand{}, false},
		{"interim response first", "HTTP/1.1 100 Continue\r\n\r\n" + hdr + ev, len(ev), inHand{}, false},
		{"not 200", "HTTP/1.1 2000 OK\r\n\r\n", 0, inHand{}, false},
		{"empty", "", 0, inHand{}, false},
	} {
		got, ok := answerInHand([]byte(c.rec), c.cl)
		assert.Equal(t, c.ok, ok, c.name)
		assert.Equal(t, c.want, got, c.name)
	}
}

// newWireSession is a session on a new wire server.
func newWireSession(t *testing.T) (*wireServer, Session) {
	ws := newWireServer(t)
	return ws, connectSession(t, ws, newTransport(t, ws.URL, 5*time.Second))
}

// gatedPost is a wire server's POST answer written in steps: the response
// headers with the first events, then each later part when released.
type gatedPost struct {
	first   string
	later   []string
	release chan struct{}
}

func (g *gatedPost) serve(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	sseWrite(w, g.first)
	for _, part := range g.later {
		<-g.release
		sseWrite(w, part)
	}
}

// within runs f and fails the test if it has not returned after d: a read
// of input that has not arrived would block.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s blocked", what)
	}
}

const progressEvent = "id: e1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n"
const resultEvent = "id: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n\n"

// TestNextBufferedStopsAtWhatArrived: NextBuffered hands out the messages
// that came with the headers and then declines, without waiting and without
// losing the stream's place: Next goes on with what the upstream sends
// later, and NextBuffered never reads it.
func TestNextBufferedStopsAtWhatArrived(t *testing.T) {
	ws, s := newWireSession(t)
	g := &gatedPost{first: progressEvent, later: []string{"id: e2\ndata: {\"jsonrpc\":\"2.0\",", "\"id\":6,\"result\":{}}\n\n"}, release: make(chan struct{})}
	ws.setPost(func(w http.ResponseWriter, _ *http.Request, _ string) { g.serve(w) })

	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":6,"method":"tools/call"}`))
	require.NoError(t, err)
	defer r.Stream.Close()
	b, ok := r.Stream.(Buffered)
	require.True(t, ok)
	n, messages := b.Buffered()
	assert.Equal(t, len(progressEvent), n, "the first event came with the headers")
	assert.GreaterOrEqual(t, messages, 1)
	within(t, 5*time.Second, "NextBuffered", func() {
		msg, err := b.NextBuffered()
		require.NoError(t, err)
		assert.Contains(t, string(msg), "notifications/progress")
		_, err = b.NextBuffered()
		assert.ErrorIs(t, err, ErrNotBuffered)
		assert.False(t, b.RestArrived())
	})
	g.release <- struct{}{} // half of the response event
	time.Sleep(50 * time.Millisecond)
	within(t, 5*time.Second, "NextBuffered on a half event", func() {
		_, err := b.NextBuffered()
		assert.ErrorIs(t, err, ErrNotBuffered, "what came later is not in hand")
	})
	g.release <- struct{}{}
	msg, err := r.Stream.Next()
	require.NoError(t, err)
	assert.Contains(t, string(msg), `"result"`)
	_, err = r.Stream.Next()
	assert.ErrorIs(t, err, io.EOF)
}

// connCounter counts the connections a wire server saw POSTs on.
type connCounter struct {
	mu    sync.Mutex
	addrs map[string]int
}

func (c *connCounter) saw(r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs == nil {
		c.addrs = map[string]int{}
	}
	c.addrs[r.RemoteAddr]++
}

func (c *connCounter) conns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.addrs)
}

// TestRestArrived: an answer whose end came with it, or waits on the socket
// once the rest was read, is drained without waiting, and its connection
// serves the next call; one whose end has not come is not.
func TestRestArrived(t *testing.T) {
	ws, s := newWireSession(t)
	var cc connCounter
	send := func() Buffered {
		r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":6,"method":"tools/call"}`))
		require.NoError(t, err)
		b := r.Stream.(Buffered)
		within(t, 5*time.Second, "NextBuffered", func() {
			msg, err := b.NextBuffered()
			require.NoError(t, err)
			assert.Contains(t, string(msg), `"result"`)
		})
		return b
	}

	t.Run("sized", func(t *testing.T) {
		ws.setPost(func(w http.ResponseWriter, r *http.Request, _ string) {
			cc.saw(r)
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(resultEvent)))
			_, _ = io.WriteString(w, resultEvent)
		})
		for i := 0; i < 3; i++ {
			b := send()
			require.True(t, b.RestArrived(), "call %d: the whole body came with the headers", i)
			within(t, 5*time.Second, "Drain", func() { Drain(b.(Stream)) })
			_ = b.(Stream).Close()
		}
		assert.Equal(t, 1, cc.conns(), "drained answers leave their connection to the next call")
	})

	t.Run("end after", func(t *testing.T) {
		ended := make(chan struct{})
		ws.setPost(func(w http.ResponseWriter, r *http.Request, _ string) {
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, resultEvent)
			<-ended // the body's end ("0\r\n\r\n") follows in a write of its own
		})
		b := send()
		assert.False(t, b.RestArrived(), "the end has not come")
		close(ended)
		restArrives(t, b)
		_ = b.(Stream).Close()
	})

	t.Run("more after", func(t *testing.T) {
		more := make(chan struct{})
		ws.setPost(func(w http.ResponseWriter, r *http.Request, _ string) {
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, resultEvent)
			<-more
			sseWrite(w, progressEvent) // a late message: the rest is not just the end
		})
		b := send()
		close(more)
		time.Sleep(100 * time.Millisecond)
		assert.False(t, b.RestArrived(), "a late event is not the body's end")
		Drain(b.(Stream))
		_ = b.(Stream).Close()
	})
}

// TestNextBufferedLeavesResumeToNext: a POST answer that ended before its
// response is resumed (a wait and a GET): NextBuffered declines instead, and
// Next then resumes it.
func TestNextBufferedLeavesResumeToNext(t *testing.T) {
	ws, s := newWireSession(t)
	ws.setPost(func(w http.ResponseWriter, _ *http.Request, _ string) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len("retry: 10\n"+progressEvent)))
		_, _ = io.WriteString(w, "retry: 10\n"+progressEvent)
	})
	var gets sync.WaitGroup
	gets.Add(1)
	ws.setGet(func(w http.ResponseWriter, r *http.Request) {
		defer gets.Done()
		assert.Equal(t, "e1", r.Header.Get("Last-Event-ID"))
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, resultEvent)
	})
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":6,"method":"tools/call"}`))
	require.NoError(t, err)
	defer r.Stream.Close()
	b := r.Stream.(Buffered)
	within(t, 5*time.Second, "NextBuffered", func() {
		msg, err := b.NextBuffered()
		require.NoError(t, err)
		assert.Contains(t, string(msg), "progress")
		_, err = b.NextBuffered()
		assert.ErrorIs(t, err, ErrNotBuffered, "the body ended before the response: resuming is Next's")
	})
	msg, err := r.Stream.Next()
	require.NoError(t, err)
	assert.Contains(t, string(msg), `"result"`)
	gets.Wait()
	if _, err := r.Stream.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the response: %v", err)
	}
}

// answerInParts answers a POST with its headers and first, flushed
// together, and then each of parts, written raw on the hijacked connection
// after a release; the connection closes after a last release. Each part
// is written as given: the test frames the chunks.
func answerInParts(ws *wireServer, release <-chan struct{}, first string, parts ...string) {
	ws.setPost(func(w http.ResponseWriter, _ *http.Request, _ string) {
		c, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + first)
		_ = bw.Flush()
		for _, p := range parts {
			<-release
			_, _ = bw.WriteString(p)
			_ = bw.Flush()
		}
		<-release // the client is done with the body
	})
}

// headersAlone is answerInParts with nothing of the body at first.
func headersAlone(ws *wireServer, release <-chan struct{}, parts ...string) {
	answerInParts(ws, release, "", parts...)
}

// notYet fails the test if AwaitBuffered (got) returns within d.
func notYet(t *testing.T, got <-chan bool, d time.Duration, what string) {
	t.Helper()
	select {
	case <-got:
		t.Fatal("AwaitBuffered returned " + what)
	case <-time.After(d):
	}
}

// awaited is AwaitBuffered's result (got), which must come within 5 s.
func awaited(t *testing.T, got <-chan bool) bool {
	t.Helper()
	select {
	case ok := <-got:
		return ok
	case <-time.After(5 * time.Second):
		t.Fatal("AwaitBuffered did not see what came")
		return false
	}
}

// nextInHand checks that NextBuffered hands out a message containing want
// at once.
func nextInHand(t *testing.T, b Buffered, want string) {
	t.Helper()
	within(t, 5*time.Second, "NextBuffered", func() {
		msg, err := b.NextBuffered()
		require.NoError(t, err)
		assert.Contains(t, string(msg), want)
	})
}

// noMoreInHand checks that NextBuffered declines at once.
func noMoreInHand(t *testing.T, b Buffered) {
	t.Helper()
	within(t, 5*time.Second, "NextBuffered", func() {
		_, err := b.NextBuffered()
		assert.ErrorIs(t, err, ErrNotBuffered)
	})
}

// restArrives waits until b reports that only the body's end is left,
// and drains it.
func restArrives(t *testing.T, b Buffered) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !b.RestArrived() {
		require.True(t, time.Now().Before(deadline), "the end never showed on the socket")
		time.Sleep(time.Millisecond)
	}
	within(t, 5*time.Second, "Drain", func() { Drain(b.(Stream)) })
}

// sendToolsCall sends a tools/call on s; the answer is an SSE stream.
func sendToolsCall(t *testing.T, s Session) (Stream, Buffered) {
	t.Helper()
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":6,"method":"tools/call"}`))
	require.NoError(t, err)
	require.NotNil(t, r.Stream)
	t.Cleanup(func() { _ = r.Stream.Close() })
	return r.Stream, r.Stream.(Buffered)
}

// sendAwaiting sends a call whose answer's headers come alone: nothing is in
// hand yet.
func sendAwaiting(t *testing.T, s Session) (Stream, Buffered) {
	t.Helper()
	st, b := sendToolsCall(t, s)
	n, _ := b.Buffered()
	require.Zero(t, n, "the headers came alone")
	return st, b
}

// awaitAsync runs AwaitBuffered(d) on a goroutine; the channel gets its result.
func awaitAsync(b Buffered, d time.Duration) <-chan bool {
	got := make(chan bool, 1)
	go func() { got <- b.AwaitBuffered(d) }()
	return got
}

func chunkOf(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }

// TestAwaitBuffered: when an SSE answer's headers come alone, AwaitBuffered
// waits for the first whole chunk of its body (a split chunk is waited for
// whole), and the stream then hands it out with NextBuffered and tells when
// only the end is left, as if it had come with the headers; nothing in time,
// a close meanwhile, or input that came with the headers end the wait.
func TestAwaitBuffered(t *testing.T) {
	ws, s := newWireSession(t)

	t.Run("event then end", func(t *testing.T) {
		release := make(chan struct{})
		headersAlone(ws, release, chunkOf(resultEvent), "0\r\n\r\n")
		st, b := sendAwaiting(t, s)
		defer st.Close()
		got := awaitAsync(b, 5*time.Second)
		notYet(t, got, 50*time.Millisecond, "before anything of the body came")
		release <- struct{}{}
		require.True(t, awaited(t, got))
		n, messages := b.Buffered()
		assert.Equal(t, len(resultEvent), n)
		assert.GreaterOrEqual(t, messages, 1)
		nextInHand(t, b, `"result"`)
		noMoreInHand(t, b)
		assert.False(t, b.RestArrived(), "the end has not come")
		release <- struct{}{}
		restArrives(t, b)
		close(release)
	})

	t.Run("split chunk", func(t *testing.T) {
		release := make(chan struct{})
		c := chunkOf(resultEvent)
		headersAlone(ws, release, c[:20], c[20:]+"0\r\n\r\n")
		st, b := sendAwaiting(t, s)
		defer st.Close()
		got := awaitAsync(b, 5*time.Second)
		release <- struct{}{}
		notYet(t, got, 100*time.Millisecond, "on half a chunk")
		release <- struct{}{}
		require.True(t, awaited(t, got))
		n, _ := b.Buffered()
		assert.Equal(t, len(resultEvent), n)
		nextInHand(t, b, `"result"`)
		assert.True(t, b.RestArrived(), "the end came with the chunk's second half")
		within(t, 5*time.Second, "Drain", func() { Drain(st) })
		close(release)
	})

	t.Run("after what came with the headers", func(t *testing.T) {
		// A priming event and a notification came with the headers, the
		// response later: once those are read, the wait is for it.
		release := make(chan struct{})
		answerInParts(ws, release, chunkOf("id: p0\ndata: \n\n")+chunkOf(progressEvent), chunkOf(resultEvent), "0\r\n\r\n")
		_, b := sendToolsCall(t, s)
		nextInHand(t, b, "notifications/progress")
		noMoreInHand(t, b)
		got := awaitAsync(b, 5*time.Second)
		notYet(t, got, 50*time.Millisecond, "before the response came")
		release <- struct{}{}
		require.True(t, awaited(t, got))
		n, _ := b.Buffered()
		assert.Equal(t, len(resultEvent), n)
		nextInHand(t, b, `"result"`)
		release <- struct{}{}
		restArrives(t, b)
		close(release)
	})

	t.Run("more before the read", func(t *testing.T) {
		// What came after the look is read too (fasthttp's reader takes what
		// the socket has): an end on the socket after it is not the body's
		// end when what was read holds half a chunk ("ab" of 5 bytes, which
		// "0\r\n" completes).
		release := make(chan struct{})
		headersAlone(ws, release, chunkOf(resultEvent), "5\r\nab", "0\r\n\r\n", "0\r\n\r\n")
		st, b := sendAwaiting(t, s)
		defer st.Close()
		got := awaitAsync(b, 5*time.Second)
		release <- struct{}{}
		require.True(t, <-got)
		release <- struct{}{}
		time.Sleep(50 * time.Millisecond)
		nextInHand(t, b, `"result"`)
		release <- struct{}{}
		time.Sleep(50 * time.Millisecond)
		assert.False(t, b.RestArrived(), "half a chunk was read with the event")
		release <- struct{}{}
		within(t, 5*time.Second, "Drain", func() { Drain(st) })
		close(release)
	})

	t.Run("nothing in time", func(t *testing.T) {
		release := make(chan struct{})
		headersAlone(ws, release, chunkOf(resultEvent)+"0\r\n\r\n")
		st, b := sendAwaiting(t, s)
		defer st.Close()
		start := time.Now()
		assert.False(t, b.AwaitBuffered(30*time.Millisecond))
		assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
		n, _ := b.Buffered()
		assert.Zero(t, n)
		_, err := b.NextBuffered()
		assert.ErrorIs(t, err, ErrNotBuffered)
		time.Sleep(100 * time.Millisecond) // past the wait's deadline: it must not cut the read
		release <- struct{}{}
		msg, err := st.Next()
		require.NoError(t, err)
		assert.Contains(t, string(msg), `"result"`)
		_, err = st.Next()
		assert.ErrorIs(t, err, io.EOF)
		close(release)
	})

	t.Run("close ends the wait", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		headersAlone(ws, release)
		st, b := sendAwaiting(t, s)
		got := awaitAsync(b, time.Minute)
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, st.Close())
		assert.False(t, awaited(t, got), "Close ends the wait")
	})

	t.Run("came with the headers", func(t *testing.T) {
		ws.setPost(func(w http.ResponseWriter, _ *http.Request, _ string) {
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, resultEvent)
		})
		_, b := sendToolsCall(t, s)
		within(t, 5*time.Second, "AwaitBuffered", func() { assert.True(t, b.AwaitBuffered(time.Minute)) })
		n, _ := b.Buffered()
		assert.Equal(t, len(resultEvent), n)
	})
}

// TestOweEnd: an answer whose end has not come when its response was read
// ends at once, its connection taking the end from the socket before the
// next request on it (one connection for every call, nothing waits for an
// end). An upstream that sends something else after its response (a late
// message, or nothing for long) costs that connection: the request goes
// out on another, and the transport owes no more ends.
func TestOweEnd(t *testing.T) {
	// answered sends a tools/call, reads its response in hand and reports
	// whether the connection owes the end; the stream is drained and
	// closed, and its connection returned.
	answered := func(t *testing.T, s Session) (owed bool, tc *trackedConn) {
		t.Helper()
		st, b := sendToolsCall(t, s)
		nextInHand(t, b, `"result"`)
		tc = st.(*httpStream).gate.tc
		owed = !b.RestArrived() && b.OweEnd()
		if owed {
			assert.Equal(t, len(lastChunk), tc.synth, "the end given in its place, not read yet")
			Drain(st) // reads the end given in its place, without the socket
			assert.Zero(t, tc.synth, "the end given in its place was read")
			assert.True(t, tc.owed)
		} else {
			within(t, 5*time.Second, "Drain", func() { Drain(st) })
		}
		_ = st.Close()
		return owed, tc
	}
	// arrives waits until the socket of tc holds at least n bytes.
	arrives := func(t *testing.T, tc *trackedConn, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var got int
			require.NoError(t, tc.raw.Control(func(fd uintptr) { got = peekInto(fd, make([]byte, n)) }))
			if got >= n {
				return
			}
			require.True(t, time.Now().Before(deadline), "the upstream's bytes never came")
			time.Sleep(time.Millisecond)
		}
	}

	// serve starts a wire server whose POST answers are the result event,
	// flushed, then what after does; it returns the transport, a session
	// on it and the server's count of connections.
	serve := func(t *testing.T, after func(w http.ResponseWriter, cc *connCounter)) (*HTTP, Session, *connCounter) {
		t.Helper()
		ws := newWireServer(t)
		tr := newTransport(t, ws.URL, 5*time.Second)
		s := connectSession(t, ws, tr)
		cc := &connCounter{}
		ws.setPost(func(w http.ResponseWriter, r *http.Request, _ string) {
			cc.saw(r)
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, resultEvent)
			after(w, cc)
		})
		return tr, s, cc
	}

	t.Run("the end comes later", func(t *testing.T) {
		ended := make(chan struct{})
		tr, s, cc := serve(t, func(w http.ResponseWriter, cc *connCounter) {
			<-ended // the body's end ("0\r\n\r\n") follows in a write of its own
		})
		for i := 0; i < 3; i++ {
			owed, tc := answered(t, s)
			require.True(t, owed, "call %d", i)
			ended <- struct{}{}
			arrives(t, tc, len(lastChunk))
		}
		assert.Equal(t, 1, cc.conns(), "every call on the first connection: the owed ends were taken")
		assert.False(t, tr.late.off.Load())
	})

	t.Run("the end comes after the next request's start", func(t *testing.T) {
		ended := make(chan struct{})
		tr, s, cc := serve(t, func(w http.ResponseWriter, cc *connCounter) {
			<-ended
		})
		tr.late.wait = 5 * time.Second // a wait that cannot run out here
		for i := 0; i < 3; i++ {
			owed, _ := answered(t, s)
			require.True(t, owed, "call %d", i)
			go func() {
				time.Sleep(20 * time.Millisecond) // the next call's request waits for the end
				ended <- struct{}{}
			}()
		}
		assert.Equal(t, 1, cc.conns(), "every call on the first connection: the owed ends were waited for")
		assert.False(t, tr.late.off.Load())
	})

	t.Run("a late message instead", func(t *testing.T) {
		more := make(chan struct{})
		tr, s, cc := serve(t, func(w http.ResponseWriter, cc *connCounter) {
			<-more
			sseWrite(w, progressEvent) // after the response: dropped
		})
		owed, tc := answered(t, s)
		require.True(t, owed)
		more <- struct{}{}
		arrives(t, tc, len(progressEvent))
		go func() { more <- struct{}{} }() // the next answer's late message
		owed, _ = answered(t, s)
		assert.False(t, owed, "the transport owes no more ends")
		assert.True(t, tr.late.off.Load())
		assert.Equal(t, 2, cc.conns(), "the next call went out on a new connection")
	})

	t.Run("the upstream closes the connection instead", func(t *testing.T) {
		var first atomic.Bool
		first.Store(true)
		closed := make(chan struct{})
		tr, s, cc := serve(t, func(w http.ResponseWriter, cc *connCounter) {
			if first.CompareAndSwap(true, false) {
				<-closed
				conn, _, err := w.(http.Hijacker).Hijack()
				if assert.NoError(t, err) {
					_ = conn.Close() // without the body's end
				}
			}
		})
		owed, tc := answered(t, s)
		require.True(t, owed)
		close(closed)
		require.Eventually(t, func() bool {
			var n int
			require.NoError(t, tc.raw.Control(func(fd uintptr) { n = peekInto(fd, make([]byte, 1)) }))
			return n == 0 // EOF pending
		}, 5*time.Second, time.Millisecond)
		answered(t, s)
		assert.Equal(t, 2, cc.conns(), "the next call went out on a new connection")
		assert.False(t, tr.late.off.Load(), "a closed connection does not turn owing off")
	})

	t.Run("nothing comes", func(t *testing.T) {
		held := make(chan struct{})
		var calls sync.WaitGroup
		calls.Add(1)
		tr, s, cc := serve(t, func(w http.ResponseWriter, cc *connCounter) {
			if cc.conns() == 1 {
				calls.Done()
				<-held // the first answer stays open
			}
		})
		t.Cleanup(func() { close(held) }) // before the server's Close (registered earlier), which waits for its handlers
		owed, _ := answered(t, s)
		require.True(t, owed)
		calls.Wait()
		st, b := sendToolsCall(t, s)
		nextInHand(t, b, `"result"`)
		assert.Equal(t, 2, cc.conns(), "the call went out on a new connection")
		assert.True(t, tr.late.off.Load())
		restArrives(t, b)
		_ = st.Close()
	})
}
