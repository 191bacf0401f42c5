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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wireServer is a scripted Streamable HTTP server: each test sets how it
// answers, and the transport under test talks to it over real loopback TCP.
type wireServer struct {
	*httptest.Server
	// mu guards post and get, which tests swap between exchanges.
	mu   sync.Mutex
	post func(w http.ResponseWriter, r *http.Request, body string)
	get  func(w http.ResponseWriter, r *http.Request)
	del  atomic.Int32
}

func (ws *wireServer) setPost(f func(w http.ResponseWriter, r *http.Request, body string)) {
	ws.mu.Lock()
	ws.post = f
	ws.mu.Unlock()
}

func (ws *wireServer) setGet(f func(w http.ResponseWriter, r *http.Request)) {
	ws.mu.Lock()
	ws.get = f
	ws.mu.Unlock()
}

func newWireServer(t *testing.T) *wireServer {
	ws := &wireServer{}
	ws.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.mu.Lock()
		post, get := ws.post, ws.get
		ws.mu.Unlock()
		switch r.Method {
		case http.MethodPost:
			b, _ := io.ReadAll(r.Body)
			post(w, r, string(b))
		case http.MethodGet:
			if get == nil {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			get(w, r)
		case http.MethodDelete:
			ws.del.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(ws.Close)
	return ws
}

func sseWrite(w http.ResponseWriter, lines ...string) {
	for _, l := range lines {
		fmt.Fprint(w, l)
	}
	w.(http.Flusher).Flush()
}

const initReq = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
const initResp = `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`

func newTransport(t *testing.T, url string, timeout time.Duration) *HTTP {
	tr, err := NewHTTP(HTTPConfig{URL: url + "/mcp", Timeout: timeout, MaxMessageBytes: 1 << 16})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func connectSession(t *testing.T, ws *wireServer, tr *HTTP) Session {
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Mcp-Session-Id", "up-1")
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "event: message\ndata: "+initResp+"\n\n")
	})
	s, answer, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	require.JSONEq(t, initResp, string(answer))
	assert.Equal(t, "up-1", s.ID())
	assert.Equal(t, "2025-06-18", s.Version())
	return s
}

func TestConnectAndHeaders(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	s := connectSession(t, ws, tr)

	var gotSID, gotVer string
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		gotSID, gotVer = r.Header.Get("Mcp-Session-Id"), r.Header.Get("MCP-Protocol-Version")
		if strings.Contains(body, `"method":"notifications/`) {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":2,"result":{}}`)
	})
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	require.NoError(t, err)
	assert.True(t, r.Accepted)
	r, err = s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":2,"result":{}}`, string(r.JSON))
	assert.Equal(t, "up-1", gotSID)
	assert.Equal(t, "2025-06-18", gotVer, "the version negotiated with the upstream")

	require.NoError(t, s.Close(context.Background()))
	require.NoError(t, s.Close(context.Background()), "idempotent")
	assert.Equal(t, int32(1), ws.del.Load(), "DELETE sent once")
}

func TestConnectErrorAnswer(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad version"}}`)
	})
	s, answer, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	assert.Nil(t, s)
	assert.Contains(t, string(answer), "-32602")
}

func TestStatusMapping(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	s := connectSession(t, ws, tr)
	for _, c := range []struct {
		status int
		body   string
		check  func(error)
	}{
		{404, "", func(err error) { assert.ErrorIs(t, err, ErrSessionGone) }},
		{500, "oops", func(err error) {
			var se *StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, 500, se.Status)
			assert.Nil(t, se.Body)
		}},
		{400, `{"jsonrpc":"2.0","id":3,"error":{"code":-32600,"message":"no"}}`, func(err error) {
			var se *StatusError
			require.ErrorAs(t, err, &se)
			assert.Contains(t, string(se.Body), "-32600", "a JSON-RPC error body is kept for relaying")
		}},
	} {
		ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
			w.WriteHeader(c.status)
			fmt.Fprint(w, c.body)
		})
		_, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":3,"method":"x"}`))
		c.check(err)
	}
	_, err := s.Listen(context.Background())
	assert.ErrorIs(t, err, ErrNotSupported, "405 on GET")
}

func TestTimeoutAndTooLarge(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, 200*time.Millisecond)
	s := connectSession(t, ws, tr)
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		time.Sleep(600 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	})
	_, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":4,"method":"x"}`))
	assert.ErrorIs(t, err, ErrTimeout)

	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":5,"result":"`+strings.Repeat("x", 1<<17)+`"}`)
	})
	_, err = s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":5,"method":"x"}`))
	assert.ErrorIs(t, err, ErrTooLarge)
}

// TestJSONAnswerStalledMidBody: a JSON answer whose body stops coming
// (the headers and part of it are in) is cut at the Timeout as a timeout
// (the client's 504), not as an unreachable upstream (502).
func TestJSONAnswerStalledMidBody(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, 300*time.Millisecond)
	s := connectSession(t, ws, tr)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":2,`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	_, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call"}`))
	assert.ErrorIs(t, err, ErrTimeout)
}

// TestURLUserinfoOnEveryRequest: user information in the upstream URL
// (the operator's Basic authentication, as the legacy transport takes it
// too) goes with the GET stream as with the POSTs, where fasthttp sends
// it; the standalone stream of an upstream that requires it was refused
// (401) for ever. An Authorization of AuthHeader's replaces it on both.
func TestURLUserinfoOnEveryRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth AuthHeader
		want string
	}{
		{"URL only", AuthHeader{}, "Basic dTpw"}, // u:p
		{"static Authorization", AuthHeader{Name: "Authorization", Value: "Bearer tok"}, "Bearer tok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := newWireServer(t)
			tr, err := NewHTTP(HTTPConfig{URL: strings.Replace(ws.URL, "http://", "http://u:p@", 1) + "/mcp", Timeout: time.Second, Auth: tc.auth})
			require.NoError(t, err)
			t.Cleanup(func() { _ = tr.Close() })
			var post, get atomic.Value
			ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
				post.Store(r.Header.Values("Authorization"))
				w.Header().Set("Mcp-Session-Id", "up-1")
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, initResp)
			})
			ws.setGet(func(w http.ResponseWriter, r *http.Request) {
				get.Store(r.Header.Values("Authorization"))
				w.WriteHeader(http.StatusMethodNotAllowed)
			})
			s, _, err := tr.Connect(context.Background(), []byte(initReq))
			require.NoError(t, err)
			_, err = s.Listen(context.Background())
			require.ErrorIs(t, err, ErrNotSupported)
			assert.Equal(t, []string{tc.want}, post.Load(), "POST")
			assert.Equal(t, []string{tc.want}, get.Load(), "GET")
		})
	}
}

// TestConnectSSEAnswerBoundedByTimeout: an upstream that answers
// initialize with SSE headers (and a priming event) and then stalls fails
// the Connect with ErrTimeout after the Timeout, like the other transports'
// initialize; it held the caller (the client's initialize POST, the
// pooled connection) for as long as the upstream kept the stream open.
func TestConnectSSEAnswerBoundedByTimeout(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, 300*time.Millisecond)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Mcp-Session-Id", "up-1")
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "id: 1\ndata: \n\n")
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	done := make(chan error, 1)
	go func() {
		_, _, err := tr.Connect(context.Background(), []byte(initReq))
		done <- err
	}()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrTimeout)
	case <-time.After(5 * time.Second):
		t.Fatal("Connect still waits for an initialize answer the upstream never sends")
	}
}

// TestSSEAnswerOutlivesPostTimeout: the POST timeout bounds the wait for
// the answer's headers only; an SSE answer may run far longer.
func TestSSEAnswerOutlivesPostTimeout(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, 200*time.Millisecond)
	s := connectSession(t, ws, tr)
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := 1; i <= 8; i++ {
			sseWrite(w, fmt.Sprintf("id: e%d\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":%d}}\n\n", i, i))
			time.Sleep(100 * time.Millisecond)
		}
		sseWrite(w, "id: e9\ndata: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n\n")
	})
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":6,"method":"tools/call"}`))
	require.NoError(t, err)
	require.NotNil(t, r.Stream)
	defer r.Stream.Close()
	n := 0
	for {
		msg, err := r.Stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		n++
		if strings.Contains(string(msg), `"result"`) {
			break
		}
	}
	assert.Equal(t, 9, n, "8 notifications over 800 ms, then the response")
}

// cutPostAnswer is a session whose upstream answers every POST with a
// priming event (id p1, retry 10 ms) and a notification (id p2), then ends
// the answer before its response: the stream resumes with a GET after p2.
func cutPostAnswer(t *testing.T) (*wireServer, Session) {
	t.Helper()
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	s := connectSession(t, ws, tr)
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "id: p1\nretry: 10\ndata: \n\n", "id: p2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")
	})
	return ws, s
}

// TestPostStreamResumesWithLastEventID: an upstream that closes a POST
// answer before the response is resumed by GET with Last-Event-ID.
func TestPostStreamResumesWithLastEventID(t *testing.T) {
	ws, s := cutPostAnswer(t)
	var lastID atomic.Value
	ws.setGet(func(w http.ResponseWriter, r *http.Request) {
		lastID.Store(r.Header.Get("Last-Event-ID"))
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "id: p3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n")
	})
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`))
	require.NoError(t, err)
	defer r.Stream.Close()
	m1, err := r.Stream.Next()
	require.NoError(t, err)
	assert.Contains(t, string(m1), "notifications/message")
	m2, err := r.Stream.Next()
	require.NoError(t, err)
	assert.Contains(t, string(m2), `"id":7`)
	assert.Equal(t, "p2", lastID.Load())
	_, err = r.Stream.Next()
	assert.ErrorIs(t, err, io.EOF)
}

// TestResumeKeepsLastIDAcrossBodies: a resumed body that ends before the
// response without sending an id resumes again after the id the earlier
// body ended with; an id a resumed body sends is the next one's.
func TestResumeKeepsLastIDAcrossBodies(t *testing.T) {
	ws, s := cutPostAnswer(t)
	var mu sync.Mutex
	var asked []string
	ws.setGet(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Header.Get("Last-Event-ID"))
		n := len(asked)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1: // no id: the next resume still starts after p2
			sseWrite(w, "retry: 10\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"n\":1}}\n\n")
		case 2:
			sseWrite(w, "id: q1\nretry: 10\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"n\":2}}\n\n")
		default:
			sseWrite(w, "id: q2\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n")
		}
	})
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`))
	require.NoError(t, err)
	defer r.Stream.Close()
	var got []string
	for {
		m, err := r.Stream.Next()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		got = append(got, string(m))
	}
	require.Len(t, got, 4)
	assert.Contains(t, got[3], `"id":7`)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"p2", "p2", "q1"}, asked)
	assert.Equal(t, "q2", r.Stream.(EventIDer).LastEventID())
}

// TestStreamCloseInterruptsNext: Close from another goroutine ends a Next
// blocked on a quiet upstream.
func TestStreamCloseInterruptsNext(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	s := connectSession(t, ws, tr)
	release := make(chan struct{})
	defer close(release)
	ws.setGet(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, ": hello\n\n")
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	st, err := s.Listen(context.Background())
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := st.Next()
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "idempotent")
	select {
	case err := <-done:
		assert.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt Next")
	}
}

func TestNewHTTPValidates(t *testing.T) {
	for _, u := range []string{"", "ftp://x/mcp", "http://", "::"} {
		_, err := NewHTTP(HTTPConfig{URL: u})
		assert.Error(t, err, u)
	}
	_, err := NewHTTP(HTTPConfig{URL: "http://127.0.0.1:1/mcp", MaxConns: -1})
	assert.Error(t, err)
}

// TestStalePooledConnIsRetried: the upstream closed the pooled keep-alive
// connection while it was idle; the next POST dials again instead of
// failing, and answered SSE streams return their connection to the pool.
func TestStalePooledConnIsRetried(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	s := connectSession(t, ws, tr)
	var mu sync.Mutex
	peers := map[string]bool{}
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		mu.Lock()
		peers[r.RemoteAddr] = true
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n")
	})
	call := func() {
		r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":8,"method":"tools/call"}`))
		require.NoError(t, err)
		_, err = r.Stream.Next()
		require.NoError(t, err)
		_, err = r.Stream.Next()
		require.ErrorIs(t, err, io.EOF)
		require.NoError(t, r.Stream.Close())
	}
	for i := 0; i < 5; i++ {
		call()
	}
	mu.Lock()
	assert.Len(t, peers, 1, "answered streams reuse the pooled connection")
	mu.Unlock()
	ws.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	call() // the pooled connection is dead: retried once on a new one
}

// TestCloseInterruptsResume: a POST answer cut before its response waits
// the upstream's retry hint (here 30 s) before it resumes; Close during that
// wait, or during the resuming GET, ends Next at once, so shutdown is never
// held up by it.
func TestCloseInterruptsResume(t *testing.T) {
	for _, during := range []string{"wait", "get"} {
		t.Run(during, func(t *testing.T) {
			ws := newWireServer(t)
			tr := newTransport(t, ws.URL, time.Minute)
			s := connectSession(t, ws, tr)
			retry := "30000"
			if during == "get" {
				retry = "1"
			}
			ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
				w.Header().Set("Content-Type", "text/event-stream")
				sseWrite(w, "id: p1\nretry: "+retry+"\ndata: \n\n")
			})
			getting := make(chan struct{})
			release := make(chan struct{})
			defer close(release)
			ws.setGet(func(w http.ResponseWriter, r *http.Request) {
				close(getting)
				select { // never answers: the resume's GET hangs
				case <-release:
				case <-r.Context().Done():
				}
			})
			r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`))
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() {
				_, err := r.Stream.Next()
				done <- err
			}()
			if during == "get" {
				<-getting
			} else {
				require.Eventually(t, func() bool { return goroutineIn("(*httpStream).resume") }, 5*time.Second, time.Millisecond,
					"Next waits for the retry delay")
			}
			start := time.Now()
			require.NoError(t, r.Stream.Close())
			select {
			case err := <-done:
				assert.Error(t, err)
				assert.Less(t, time.Since(start), 5*time.Second)
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not interrupt the resume")
			}
		})
	}
}

// goroutineIn reports whether some goroutine's stack has a frame whose name
// contains fn.
func goroutineIn(fn string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
}

// TestHTTPResume: a second transport (a restarted gateway) re-attaches the
// upstream session by id and version: its requests carry them, Listen and
// Close (DELETE) reach the same session, and a session the upstream forgot
// fails with ErrSessionGone.
func TestHTTPResume(t *testing.T) {
	ws := newWireServer(t)
	first := newTransport(t, ws.URL, 5*time.Second)
	s := connectSession(t, ws, first)
	require.Equal(t, "up-1", s.ID())
	assert.Equal(t, KindHTTP, s.(interface{ Kind() string }).Kind())

	again := newTransport(t, ws.URL, 5*time.Second)
	var r Resumer = again
	rs, err := r.Resume(s.ID(), s.Version())
	require.NoError(t, err)
	assert.Equal(t, s.ID(), rs.ID())
	assert.Equal(t, s.Version(), rs.Version())
	var gotSID, gotVer string
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		gotSID, gotVer = r.Header.Get("Mcp-Session-Id"), r.Header.Get("MCP-Protocol-Version")
		if gotSID != "up-1" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":5,"result":{}}`)
	})
	reply, err := rs.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":5,"method":"ping"}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":5,"result":{}}`, string(reply.JSON))
	assert.Equal(t, "up-1", gotSID)
	assert.Equal(t, s.Version(), gotVer)
	require.NoError(t, rs.Close(context.Background()))
	assert.Equal(t, int32(1), ws.del.Load(), "Close ends the resumed session upstream")

	gone, err := again.Resume("up-forgotten", s.Version())
	require.NoError(t, err)
	_, err = gone.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":6,"method":"ping"}`))
	assert.ErrorIs(t, err, ErrSessionGone)

	_, err = again.Resume("up-1", "")
	assert.Error(t, err, "a version is required")
}

func TestRetryAfterOf(t *testing.T) {
	for v, want := range map[string]string{
		"0": "0", "120": "120", "Fri, 31 Dec 1999 23:59:59 GMT": "Fri, 31 Dec 1999 23:59:59 GMT",
		"": "", "-1": "", "1.5": "", "soon": "", "12345678901234567890123456789012345": "",
		"Fri, 31 Dec 1999 23:59:59 GMT\r\nX-Injected: 1": "",
	} {
		assert.Equal(t, want, RetryAfterOf([]byte(v)), "%q", v)
	}
}

// TestFailedConnectEndsTheNamedSession: an upstream that named a session
// (Mcp-Session-Id) in its answer to initialize and then never answered it
// (the stream ended without a response, or the Timeout passed) gets that
// session DELETEd: nothing else would end it.
func TestFailedConnectEndsTheNamedSession(t *testing.T) {
	for name, stall := range map[string]bool{"stream ended": false, "timeout": true} {
		t.Run(name, func(t *testing.T) {
			ws := newWireServer(t)
			tr := newTransport(t, ws.URL, 300*time.Millisecond)
			ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
				w.Header().Set("Mcp-Session-Id", "up-1")
				w.Header().Set("Content-Type", "text/event-stream")
				sseWrite(w, "id: 1\ndata: \n\n")
				if stall {
					<-r.Context().Done()
				}
			})
			_, _, err := tr.Connect(context.Background(), []byte(initReq))
			require.Error(t, err)
			assert.Equal(t, int32(1), ws.del.Load(), "the session the upstream named was not ended")
		})
	}
}

// TestCloseWithinBoundsTheDelete: an upstream that never answers DELETE
// holds CloseWithin no longer than its bound (shorter than the transport's
// timeout), and the failure says it timed out.
func TestCloseWithinBoundsTheDelete(t *testing.T) {
	url := acceptLoop(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		<-t.Context().Done() // never answers
	})
	tr := newTransport(t, "http://"+url, 10*time.Second)
	s, err := tr.Resume("up-1", "2025-11-25")
	require.NoError(t, err)
	start := time.Now()
	err = s.(WithinCloser).CloseWithin(context.Background(), 200*time.Millisecond)
	require.ErrorIs(t, err, ErrTimeout)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.NoError(t, s.Close(context.Background()), "ended once: a second Close sends nothing")
}
