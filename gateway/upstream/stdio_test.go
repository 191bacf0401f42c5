//go:build linux

package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logBuf collects JSON log records.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the logged records whose msg contains substr.
func (l *logBuf) records(substr string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && strings.Contains(fmt.Sprint(r["msg"]), substr) {
			out = append(out, r)
		}
	}
	return out
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newPeerTransport is a stdio transport running this test binary as the
// peer in mode.
func newPeerTransport(t *testing.T, mode string, mod func(*StdioConfig)) (*Stdio, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	cfg := StdioConfig{
		Command:   os.Args[0],
		Env:       peerEnvFor(mode),
		KillGrace: 2 * time.Second,
		Timeout:   10 * time.Second,
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := NewStdio(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = tr.Close()
		if t.Failed() {
			t.Logf("transport log:\n%s", logs.String())
		}
	})
	return tr, logs
}

const peerInit = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func connectPeer(t *testing.T, tr Transport) Session {
	t.Helper()
	s, answer, err := tr.Connect(context.Background(), []byte(peerInit))
	require.NoError(t, err)
	require.NotNil(t, s, "answer: %s", answer)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"peer","version":"1"}}}`, string(answer))
	assert.Equal(t, "2025-06-18", s.Version())
	return s
}

// toolCall is a tools/call request with gateway-style integer id.
func toolCall(id int, name string, args string, token string) string {
	meta := ""
	if token != "" {
		meta = `,"_meta":{"progressToken":` + token + `}`
	}
	if args == "" {
		args = "{}"
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s%s}}`, id, name, args, meta)
}

func sendCall(t *testing.T, s Session, body string) Stream {
	t.Helper()
	r, err := s.Send(context.Background(), []byte(body))
	require.NoError(t, err)
	require.NotNil(t, r.Stream, "a request is answered by a stream")
	t.Cleanup(func() { _ = r.Stream.Close() })
	return r.Stream
}

// next reads one message, failing the test instead of hanging.
func next(t *testing.T, st Stream) (string, error) {
	t.Helper()
	watchdog := time.AfterFunc(15*time.Second, func() { _ = st.Close() })
	defer watchdog.Stop()
	msg, err := st.Next()
	return string(msg), err
}

// drain reads a stream to its end.
func drain(t *testing.T, st Stream) ([]string, error) {
	t.Helper()
	var out []string
	for {
		m, err := next(t, st)
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

// procState is a process's state letter from /proc ("" when gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	st := procState(pid)
	return st != "" && st != "Z"
}

func TestStdioCallWithProgressAndLogging(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", nil)
	s := connectPeer(t, tr)
	msgs, err := drain(t, sendCall(t, s, toolCall(1, "progress", "", `"tok-1"`)))
	require.ErrorIs(t, err, io.EOF, "the call stream ends after its response")
	require.Len(t, msgs, 5)
	for i := 0; i < 3; i++ {
		assert.Contains(t, msgs[i], `"progressToken":"tok-1","progress":`+strconv.Itoa(i+1))
	}
	assert.Contains(t, msgs[3], `notifications/message`, "the call's log message travels on its stream")
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"done"}]}}`, msgs[4])
	require.NoError(t, s.Close(context.Background()))
}

func TestStdioServerRequestAnsweredByClient(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", nil)
	s := connectPeer(t, tr)
	st := sendCall(t, s, toolCall(1, "sample", "", ""))
	req, err := next(t, st)
	require.NoError(t, err)
	assert.Contains(t, req, `"method":"sampling/createMessage"`, "the server's request reaches the client on the call's stream")
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":"s1","result":{"role":"assistant","content":{"type":"text","text":"hi"}}}`))
	require.NoError(t, err)
	assert.True(t, r.Accepted, "the client's answer is accepted")
	answer, err := next(t, st)
	require.NoError(t, err)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"sampled":{"role":"assistant","content":{"type":"text","text":"hi"}}}}`, answer)
	_, err = next(t, st)
	assert.ErrorIs(t, err, io.EOF)
}

func TestStdioPingAnsweredByTransport(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", nil)
	s := connectPeer(t, tr)
	msgs, err := drain(t, sendCall(t, s, toolCall(1, "ping", "", "")))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, msgs, 1, "the server's ping never reaches the client: %v", msgs)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"pong":{}}}`, msgs[0])
}

// TestStdioRoutingNewestCallAndStandalone: with two calls in flight, a log
// message goes to the newer; list_changed goes to the standalone stream,
// which buffers it until someone listens.
func TestStdioRoutingNewestCallAndStandalone(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", nil)
	s := connectPeer(t, tr)
	// Buffered while nobody listens.
	_, err := drain(t, sendCall(t, s, toolCall(1, "listchanged", "", "")))
	require.ErrorIs(t, err, io.EOF)

	hold := sendCall(t, s, toolCall(2, "hold", "", ""))
	release := sendCall(t, s, toolCall(3, "release", "", ""))
	got, err := drain(t, release)
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, got, 2)
	assert.Contains(t, got[0], "releasing", "a notification goes to the newest call in flight")
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":3,"result":{"released":true}}`, got[1])
	got, err = drain(t, hold)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, []string{`{"jsonrpc":"2.0","id":2,"result":{"held":true}}`}, got)

	l, err := s.Listen(context.Background())
	require.NoError(t, err)
	defer l.Close()
	m, err := next(t, l)
	require.NoError(t, err)
	assert.Contains(t, m, "notifications/tools/list_changed")
}

func TestStdioBatchIsSplit(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", nil)
	s := connectPeer(t, tr)
	batch := `[` + toolCall(1, "env", "", "") + `,{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`
	msgs, err := drain(t, sendCall(t, s, batch))
	require.ErrorIs(t, err, io.EOF, "the stream ends after both responses")
	require.Len(t, msgs, 2)
	assert.Contains(t, msgs[0], `"id":1`)
	assert.Equal(t, `{"jsonrpc":"2.0","id":2,"result":{}}`, msgs[1])

	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`))
	require.NoError(t, err)
	assert.True(t, r.Accepted)
}

func TestStdioEnvironmentIsFiltered(t *testing.T) {
	t.Setenv("MCPGATE_TEST_SECRET", "hunter2")
	tr, _ := newPeerTransport(t, "serve", func(c *StdioConfig) {
		c.Env = peerEnvFor("serve", "GREETING=hello")
	})
	s := connectPeer(t, tr)
	msgs, err := drain(t, sendCall(t, s, toolCall(1, "env", "", "")))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, msgs, 1)
	var res struct {
		Result struct{ Env []string }
	}
	require.NoError(t, json.Unmarshal([]byte(msgs[0]), &res))
	assert.Contains(t, res.Result.Env, "GREETING=hello")
	assert.NotContains(t, msgs[0], "hunter2", "the gateway's environment does not reach the child")
	assert.ElementsMatch(t, peerEnvFor("serve", "GREETING=hello"), res.Result.Env, "exactly the configured environment")
}

// TestStdioChildExitsOnItsOwn: the session ends: the open stream ends with
// an error, the next Send gets ErrSessionGone, the exit is counted by
// reason; with pidfds and with the fallback waiter.
func TestStdioChildExitsOnItsOwn(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		for _, tc := range []struct {
			name string
			call string
			want func(Stats) uint64
		}{
			{"exit 0", toolCall(1, "exit", `{"code":0}`, ""), func(s Stats) uint64 { return s.ExitsZero }},
			{"exit 3", toolCall(1, "exit", `{"code":3}`, ""), func(s Stats) uint64 { return s.ExitsNonzero }},
			{"signal", toolCall(1, "killself", "", ""), func(s Stats) uint64 { return s.ExitsSignal }},
		} {
			t.Run(fmt.Sprintf("%s/fallback=%v", tc.name, fallback), func(t *testing.T) {
				setPidfdDisabled(t, fallback)
				tr, logs := newPeerTransport(t, "serve", nil)
				s := connectPeer(t, tr)
				l, err := s.Listen(context.Background())
				require.NoError(t, err)
				defer l.Close()
				_, err = drain(t, sendCall(t, s, tc.call))
				require.ErrorIs(t, err, ErrSessionGone, "the call's stream ends with an error")
				_, err = next(t, l)
				require.ErrorIs(t, err, ErrSessionGone, "so does the standalone stream")
				require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)
				_, err = s.Send(context.Background(), []byte(toolCall(2, "env", "", "")))
				require.ErrorIs(t, err, ErrSessionGone)
				_, err = s.Listen(context.Background())
				require.ErrorIs(t, err, ErrSessionGone)
				st := tr.Stats()
				assert.Equal(t, uint64(1), tc.want(st), "%+v", st)
				assert.Equal(t, uint64(1), st.ExitsZero+st.ExitsNonzero+st.ExitsSignal)
				assert.Equal(t, uint64(1), st.SessionsLost)
				assert.Zero(t, st.ProcessesLive)
				assert.NotEmpty(t, logs.records("ended on its own"))
				require.NoError(t, s.Close(context.Background()))
			})
		}
	}
}

func setPidfdDisabled(t *testing.T, v bool) {
	old := pidfdDisabled
	pidfdDisabled = v
	t.Cleanup(func() { pidfdDisabled = old })
}

// TestStdioCloseEscalates: a child that ignores stdin EOF and SIGTERM is
// SIGKILLed a kill grace after SIGTERM; Close itself returns after the
// stdin grace; Transport.Close waits for the reap.
func TestStdioCloseEscalates(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			setPidfdDisabled(t, fallback)
			tr, logs := newPeerTransport(t, "ignore-term", func(c *StdioConfig) {
				c.StdinGrace = 100 * time.Millisecond
				c.KillGrace = time.Second
			})
			s := connectPeer(t, tr)
			pid := s.(*stdioSession).pid
			start := time.Now()
			require.NoError(t, s.Close(context.Background()))
			assert.Less(t, time.Since(start), 2*time.Second, "Close waits for the stdin grace at most")
			assert.True(t, alive(pid), "still in its kill grace")
			require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)
			assert.GreaterOrEqual(t, time.Since(start), 1100*time.Millisecond, "SIGKILL only after stdin grace + kill grace")
			st := tr.Stats()
			assert.Equal(t, uint64(1), st.ProcessesKilled)
			assert.Equal(t, uint64(1), st.ExitsSignal)
			assert.Zero(t, st.SessionsLost, "the gateway ended it")
			assert.Empty(t, procState(pid), "reaped: no zombie")
			assert.NotEmpty(t, logs.records("SIGKILL"))
		})
	}
}

// TestStdioCloseIsPolite: a child that exits at stdin EOF is reaped within
// Close, with exit status 0 and no signal.
func TestStdioCloseIsPolite(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", func(c *StdioConfig) { c.StdinGrace = 5 * time.Second })
	s := connectPeer(t, tr)
	pid := s.(*stdioSession).pid
	require.NoError(t, s.Close(context.Background()))
	assert.Empty(t, procState(pid), "reaped before Close returned")
	st := tr.Stats()
	assert.Equal(t, uint64(1), st.ExitsZero)
	assert.Zero(t, st.ProcessesKilled)
	_, err := s.Send(context.Background(), []byte(toolCall(1, "env", "", "")))
	assert.ErrorIs(t, err, ErrSessionGone)
	require.NoError(t, s.Close(context.Background()), "Close twice")
}

// TestStdioAbortDoesNotWait: Abort returns at once, and the session's
// supervisor ends the process as for Close: stdin closed, SIGTERM after
// the stdin grace, SIGKILL a kill grace later, then the reap.
func TestStdioAbortDoesNotWait(t *testing.T) {
	tr, _ := newPeerTransport(t, "ignore-term", func(c *StdioConfig) {
		c.StdinGrace = time.Second
		c.KillGrace = 100 * time.Millisecond
	})
	s := connectPeer(t, tr)
	pid := s.(*stdioSession).pid
	start := time.Now()
	s.(Aborter).Abort()
	assert.Less(t, time.Since(start), 500*time.Millisecond, "Abort does not wait for the stdin grace")
	_, err := s.Send(context.Background(), []byte(toolCall(1, "env", "", "")))
	assert.ErrorIs(t, err, ErrSessionGone)
	require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, uint64(1), tr.Stats().ProcessesKilled)
	assert.Zero(t, tr.Stats().SessionsLost, "the gateway ended it")
	assert.Empty(t, procState(pid), "reaped: no zombie")
	s.(Aborter).Abort()
	require.NoError(t, s.Close(context.Background()), "Close after Abort")
}

// TestStdioTransportCloseHurries: Transport.Close SIGTERMs at once.
func TestStdioTransportCloseHurries(t *testing.T) {
	tr, _ := newPeerTransport(t, "no-read", func(c *StdioConfig) {
		c.StdinGrace = 10 * time.Second
		c.KillGrace = 10 * time.Second
	})
	var pids []int
	for i := 0; i < 3; i++ {
		pids = append(pids, connectPeer(t, tr).(*stdioSession).pid)
	}
	start := time.Now()
	require.NoError(t, tr.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "no stdin grace, and the children die of SIGTERM")
	for _, pid := range pids {
		assert.Empty(t, procState(pid))
	}
	assert.Equal(t, uint64(3), tr.Stats().ExitsSignal)
	_, _, err := tr.Connect(context.Background(), []byte(peerInit))
	assert.ErrorIs(t, err, ErrUnavailable, "closed")
}

// TestStdioGrandchildGoesWithTheSession: the child's process group is
// killed, so a process it started goes too.
func TestStdioGrandchildGoesWithTheSession(t *testing.T) {
	// Orphans are reparented to us, not to an init that may not reap them.
	require.NoError(t, setSubreaper(true))
	t.Cleanup(func() { _ = setSubreaper(false) })
	tr, _ := newPeerTransport(t, "serve", nil)
	s := connectPeer(t, tr)
	pid := s.(*stdioSession).pid
	msgs, err := drain(t, sendCall(t, s, toolCall(1, "fork", "", "")))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, msgs, 1)
	var res struct{ Result struct{ Pid int } }
	require.NoError(t, json.Unmarshal([]byte(msgs[0]), &res))
	gpid := res.Result.Pid
	require.NotZero(t, gpid)
	require.True(t, alive(gpid), "grandchild running")

	require.NoError(t, s.Close(context.Background()))
	require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Empty(t, procState(pid), "child reaped")
	require.Eventually(t, func() bool { return !alive(gpid) }, 10*time.Second, 5*time.Millisecond, "grandchild killed")
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(gpid, &ws, 0, nil) // reap the orphan we inherited
	assert.Empty(t, procState(gpid), "grandchild gone")
}

func setSubreaper(on bool) error {
	v := uintptr(0)
	if on {
		v = 1
	}
	const prSetChildSubreaper = 36
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, v, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func TestStdioLineTooLong(t *testing.T) {
	tr, logs := newPeerTransport(t, "serve", func(c *StdioConfig) { c.MaxMessageBytes = 4096 })
	s := connectPeer(t, tr)
	// Within the limit first.
	msgs, err := drain(t, sendCall(t, s, toolCall(1, "big", `{"n":3000}`, "")))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, msgs, 2)
	// Then beyond it: the session ends.
	_, err = drain(t, sendCall(t, s, toolCall(2, "big", `{"n":100000}`, "")))
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorIs(t, err, ErrSessionGone)
	require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, uint64(1), tr.Stats().MessagesTooLong)
	assert.NotEmpty(t, logs.records("longer than the limit"))
	_, err = s.Send(context.Background(), []byte(toolCall(3, "env", "", "")))
	assert.ErrorIs(t, err, ErrSessionGone)
}

func TestStdioMaxProcesses(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", func(c *StdioConfig) { c.MaxProcesses = 2 })
	a := connectPeer(t, tr)
	connectPeer(t, tr)
	_, _, err := tr.Connect(context.Background(), []byte(peerInit))
	require.ErrorIs(t, err, ErrAtCapacity)
	assert.Equal(t, uint64(1), tr.Stats().Rejected)
	assert.Equal(t, int64(2), tr.Stats().ProcessesLive)
	require.NoError(t, a.Close(context.Background()))
	require.Eventually(t, func() bool { return tr.Stats().ProcessesLive == 1 }, 10*time.Second, 5*time.Millisecond)
	connectPeer(t, tr)
}

// TestStdioStderrIsLoggedAndRateLimited: stderr lines are logged with the
// session's short id; beyond the rate the rest are counted and reported.
func TestStdioStderrIsLoggedAndRateLimited(t *testing.T) {
	tr, logs := newPeerTransport(t, "serve", func(c *StdioConfig) { c.StderrLinesPerSecond = 5 })
	s := connectPeer(t, tr)
	_, err := drain(t, sendCall(t, s, toolCall(1, "stderr", `{"n":50}`, "")))
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, s.Close(context.Background()))
	require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)

	lines := logs.records("upstream stderr")
	var logged, suppressed int
	for _, r := range lines {
		assert.Equal(t, s.ID(), r["upstream_session"], "every line names the session")
		if n, ok := r["suppressed"].(float64); ok {
			suppressed += int(n)
		} else {
			logged++
			assert.Contains(t, r["line"], "peer stderr line")
		}
	}
	st := tr.Stats()
	assert.Equal(t, 50, logged+suppressed, "every line is logged or counted")
	assert.Equal(t, uint64(logged), st.StderrLines)
	assert.Equal(t, uint64(suppressed), st.StderrSuppressed)
	assert.Positive(t, suppressed, "50 lines at once exceed 5 a second")
	assert.LessOrEqual(t, logged, 15, "at most 5 a second (a slow machine may spread the burst over a few windows)")
}

func TestStdioConnectFailures(t *testing.T) {
	t.Run("no such program", func(t *testing.T) {
		tr, _ := newPeerTransport(t, "serve", func(c *StdioConfig) { c.Command = "/nonexistent/mcp-server" })
		_, _, err := tr.Connect(context.Background(), []byte(peerInit))
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Zero(t, tr.Stats().ProcessesLive)
	})
	t.Run("dies before answering", func(t *testing.T) {
		tr, logs := newPeerTransport(t, "die-early", nil)
		_, _, err := tr.Connect(context.Background(), []byte(peerInit))
		require.ErrorIs(t, err, ErrUnavailable)
		require.Eventually(t, func() bool { return tr.Stats().ExitsNonzero == 1 }, 10*time.Second, 5*time.Millisecond)
		require.Eventually(t, func() bool { return len(logs.records("upstream stderr")) == 1 }, 10*time.Second, 5*time.Millisecond)
		assert.Equal(t, "peer: dying early", logs.records("upstream stderr")[0]["line"])
	})
	t.Run("initialize error", func(t *testing.T) {
		tr, _ := newPeerTransport(t, "serve", func(c *StdioConfig) { c.Env = peerEnvFor("serve", "PEER_VERSION=error") })
		s, answer, err := tr.Connect(context.Background(), []byte(peerInit))
		require.NoError(t, err)
		assert.Nil(t, s)
		assert.Contains(t, string(answer), `"code":-32602`)
		require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)
	})
	t.Run("no answer in time", func(t *testing.T) {
		tr, _ := newPeerTransport(t, "silent", func(c *StdioConfig) { c.Timeout = 200 * time.Millisecond })
		_, _, err := tr.Connect(context.Background(), []byte(peerInit))
		require.ErrorIs(t, err, ErrTimeout)
	})
}

// TestStdioStdinNotRead: a child that stops reading its stdin makes a
// write time out; one cut inside a line ends the session.
func TestStdioStdinNotRead(t *testing.T) {
	tr, _ := newPeerTransport(t, "no-read", func(c *StdioConfig) { c.Timeout = 2 * time.Second }) // initialize must fit in it on a loaded machine
	s := connectPeer(t, tr)
	big := toolCall(1, "echo", `{"pad":"`+strings.Repeat("x", 1<<20)+`"}`, "")
	_, err := s.Send(context.Background(), []byte(big))
	require.ErrorIs(t, err, ErrSessionGone, "the pipe took part of the line: framing lost")
	_, err = s.Send(context.Background(), []byte(toolCall(2, "env", "", "")))
	require.ErrorIs(t, err, ErrSessionGone)
}

// TestStdioManySessionsLeaveNothing: processes of closed and abandoned
// sessions are all reaped by Close; goleak (TestMain) checks goroutines.
func TestStdioManySessionsLeaveNothing(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", nil)
	var pids []int
	var sessions []Session
	for i := 0; i < 10; i++ {
		s := connectPeer(t, tr)
		pids = append(pids, s.(*stdioSession).pid)
		sessions = append(sessions, s)
	}
	for _, s := range sessions[:5] {
		require.NoError(t, s.Close(context.Background()))
	}
	require.NoError(t, tr.Close()) // the other five are abandoned
	for _, pid := range pids {
		assert.Empty(t, procState(pid))
	}
	st := tr.Stats()
	assert.Equal(t, uint64(10), st.ProcessesStarted)
	assert.Equal(t, uint64(10), st.ProcessesReaped)
	assert.Zero(t, st.ProcessesLive)
}

func TestNewStdioValidates(t *testing.T) {
	_, err := NewStdio(StdioConfig{})
	assert.Error(t, err)
	_, err = NewStdio(StdioConfig{Command: "x", KillGrace: -1})
	assert.Error(t, err)
}

// TestStdioCloseDuringConnects: Transport.Close racing with Connects
// returns, and leaves no process, whichever Connects it overlapped.
func TestStdioCloseDuringConnects(t *testing.T) {
	tr, _ := newPeerTransport(t, "serve", nil)
	var mu sync.Mutex
	var pids []int
	first := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				s, _, err := tr.Connect(context.Background(), []byte(peerInit))
				if err != nil {
					continue
				}
				mu.Lock()
				pids = append(pids, s.(*stdioSession).pid)
				mu.Unlock()
				select {
				case first <- struct{}{}:
				default:
				}
			}
		}()
	}
	<-first
	closed := make(chan struct{})
	go func() { _ = tr.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	wg.Wait()
	require.NoError(t, tr.Close())
	mu.Lock()
	defer mu.Unlock()
	for _, pid := range pids {
		assert.Empty(t, procState(pid))
	}
	st := tr.Stats()
	assert.Equal(t, st.ProcessesStarted, st.ProcessesReaped)
	assert.Zero(t, st.ProcessesLive)
}

// TestStdioAnswerBeforeExitIsDelivered: what a child wrote to its stdout
// before it exited reaches the client: the answer to a call it gave just
// before exiting, even when the reader was waiting for the client to make
// room (backpressure) when the exit was noticed.
func TestStdioAnswerBeforeExitIsDelivered(t *testing.T) {
	t.Run("right before exit", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			tr, _ := newPeerTransport(t, "serve", nil)
			s := connectPeer(t, tr)
			msgs, err := drain(t, sendCall(t, s, toolCall(1, "answer-exit", `{"requests":0}`, "")))
			require.ErrorIs(t, err, io.EOF, "round %d: the call is answered, not cut by the exit", i)
			require.Equal(t, []string{`{"jsonrpc":"2.0","id":1,"result":{"last":true}}`}, msgs)
			require.NoError(t, s.Close(context.Background()))
			require.NoError(t, tr.Close())
		}
	})
	t.Run("behind backpressure", func(t *testing.T) {
		tr, _ := newPeerTransport(t, "serve", func(c *StdioConfig) { c.StreamBuffer = 4 })
		s := connectPeer(t, tr)
		pid := s.(*stdioSession).pid
		st := sendCall(t, s, toolCall(1, "answer-exit", `{"requests":10}`, ""))
		// The reader waits for room in the call stream while the child exits.
		require.Eventually(t, func() bool { return !alive(pid) }, 10*time.Second, 5*time.Millisecond)
		time.Sleep(100 * time.Millisecond)
		msgs, err := drain(t, st)
		require.ErrorIs(t, err, io.EOF, "the call is answered, not cut by the exit")
		require.Len(t, msgs, 11)
		assert.Equal(t, `{"jsonrpc":"2.0","id":1,"result":{"last":true}}`, msgs[10])
		require.Eventually(t, func() bool { return tr.Stats().ProcessesReaped == 1 }, 10*time.Second, 5*time.Millisecond)
		assert.Equal(t, uint64(1), tr.Stats().SessionsLost)
	})
}

// TestStdioCloseKillsAChildThatLeftItsGroup: a child that moved to another
// process group and ignores stdin EOF and SIGTERM still gets SIGKILL a kill
// grace later: Transport.Close does not wait for it forever.
func TestStdioCloseKillsAChildThatLeftItsGroup(t *testing.T) {
	tr, _ := newPeerTransport(t, "leave-group", func(c *StdioConfig) { c.KillGrace = 500 * time.Millisecond })
	s := connectPeer(t, tr)
	pid := s.(*stdioSession).pid
	pgid, err := syscall.Getpgid(pid)
	require.NoError(t, err)
	require.NotEqual(t, pid, pgid, "the child left its process group")
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // if it was not killed
	closed := make(chan struct{})
	go func() { _ = tr.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Transport.Close still waits for the child 10s after SIGTERM: it never got SIGKILL")
	}
	assert.Empty(t, procState(pid), "killed and reaped")
	assert.Equal(t, uint64(1), tr.Stats().ProcessesKilled)
}
