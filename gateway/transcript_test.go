package gateway_test

// Golden transcripts of whole exchanges with the real handler: every row of
// transcriptRows (transcript_rows_test.go) starts a gateway.Server in front
// of a scripted testenv.FakeUpstream, talks raw HTTP/1.1 to it over loopback
// sockets, and compares what was sent and received, plus what reached the
// upstream, with testdata/transcripts/<row>.txt. Regenerate the files with
//
//	go test ./gateway/ -run Transcript -update
//
// and review the diff: a changed transcript is a changed wire behaviour.
//
// Determinism: rows never sleep. They wait for bytes on a socket, for the
// fake upstream (a call reaching a gate, a Listen, a stream draining) or for
// a gateway hook (a session or stream closing); configured durations are
// short only in rows whose subject is a timeout (expiry, polling). What
// varies between runs is normalized: gateway session ids become
// <session-N> in order of issue, Date header values <date>.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts under testdata/transcripts")

const transcriptDir = "testdata/transcripts"

// ioLimit bounds every socket read and wait of a row: a gateway that does
// not answer fails the row instead of hanging the test binary.
const ioLimit = 10 * time.Second

// row is one golden transcript.
type row struct {
	name  string // file name under testdata/transcripts (without .txt)
	about string // what the row shows; the transcript's first lines
	// cfg adjusts the gateway config (Upstream, Hooks, Logger are set).
	cfg func(*gateway.Config)
	// timed rows depend on configured durations; they do not run in
	// parallel with the others, so a loaded machine does not stretch them.
	timed bool
	// streamed rows have answers that wait on the test (a Pause): they
	// are streamed at once (WholeAnswerWindow < 0). The other rows hold
	// answers for wholeWindow, so an answer the fake finishes at once
	// goes out whole however loaded the machine is.
	streamed bool
	run      func(h *harness)
}

// wholeWindow is the rows' Config.WholeAnswerWindow (see row.streamed).
const wholeWindow = 5 * time.Second

func TestTranscript(t *testing.T) {
	names := map[string]bool{}
	for _, r := range transcriptRows {
		require.False(t, names[r.name], "duplicate row %s", r.name)
		names[r.name] = true
	}
	checkStaleGoldens(t, names)
	for _, r := range transcriptRows {
		t.Run(r.name, func(t *testing.T) {
			if !r.timed {
				t.Parallel()
			}
			runRow(t, r)
		})
	}
}

// checkStaleGoldens fails on (or, with -update, removes) golden files
// without a row.
func checkStaleGoldens(t *testing.T, names map[string]bool) {
	files, err := filepath.Glob(filepath.Join(transcriptDir, "*.txt"))
	require.NoError(t, err)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		if names[name] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(f))
			continue
		}
		t.Errorf("golden %s has no row (run with -update to remove it)", f)
	}
}

// harness runs one row: a gateway on a loopback listener, the fake
// upstream, client connections and the transcript being written.
type harness struct {
	t     *testing.T
	up    *testenv.FakeUpstream
	srv   *gateway.Server
	hooks *hookLog
	addr  string

	out      strings.Builder
	received strings.Builder // raw client-visible bytes, for leak checks
	sids     []string        // gateway session ids, in order of issue
	conns    []*conn

	served   chan error
	shutdown bool
}

func runRow(t *testing.T, r row) {
	up := testenv.NewFakeUpstream(t)
	hooks := newHookLog()
	var logs testenv.Buffer
	cfg := gateway.Config{
		Upstream: up,
		Hooks:    hooks,
		Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	cfg.WholeAnswerWindow = wholeWindow
	if r.streamed {
		cfg.WholeAnswerWindow = -1
	}
	if r.cfg != nil {
		r.cfg(&cfg)
	}
	srv, err := gateway.New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &harness{t: t, up: up, srv: srv, hooks: hooks, addr: ln.Addr().String(), served: make(chan error, 1)}
	go func() { h.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// Runs before the fake's own cleanup (Stop). On failure, release
		// whatever the fake holds first so the shutdown cannot hang.
		if t.Failed() {
			up.Stop()
			t.Logf("gateway log:\n%s", logs.String())
			t.Logf("transcript so far:\n%s", h.out.String())
		}
		h.closeConns()
		if !h.shutdown {
			h.stopServer()
		}
	})

	fmt.Fprintf(&h.out, "# %s\n", r.name)
	for _, l := range strings.Split(strings.TrimSpace(r.about), "\n") {
		fmt.Fprintf(&h.out, "# %s\n", strings.TrimSpace(l))
	}
	r.run(h)

	h.closeConns()
	if !h.shutdown {
		h.stopServer()
	}
	h.out.WriteString("\n=== what reached the upstream ===\n")
	h.out.WriteString(up.Transcript())

	// Upstream session ids never reach a client.
	assert.NotContains(t, h.received.String(), "fake-upstream-session", "an upstream session id reached a client")
	compareGolden(t, r.name, h.out.String())
}

// stopServer shuts the gateway down (the fake records what it sees from
// then on with the phase "during gateway shutdown").
func (h *harness) stopServer() {
	h.t.Helper()
	h.shutdown = true
	h.up.SetPhase("during gateway shutdown")
	ctx, cancel := context.WithTimeout(context.Background(), ioLimit)
	defer cancel()
	assert.NoError(h.t, h.srv.Shutdown(ctx))
	select {
	case err := <-h.served:
		assert.NoError(h.t, err)
	case <-ctx.Done():
		h.t.Error("Serve did not return after Shutdown")
	}
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(transcriptDir, name+".txt")
	if *update {
		require.NoError(t, os.MkdirAll(transcriptDir, 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is missing: run go test ./gateway/ -run Transcript -update", path)
	}
	require.NoError(t, err)
	assert.Equal(t, string(want), got, "transcript differs from %s (regenerate with -update after checking the change)", path)
}

// ---- transcript text ----

// norm replaces the gateway session ids issued so far by placeholders.
func (h *harness) norm(s string) string {
	for i, id := range h.sids {
		s = strings.ReplaceAll(s, id, "<session-"+strconv.Itoa(i+1)+">")
	}
	return s
}

func (h *harness) write(s string) { h.out.WriteString(h.norm(s)) }

// note writes a narrative line: what the test or the upstream does.
func (h *harness) note(format string, args ...any) {
	h.write("\n== " + fmt.Sprintf(format, args...) + " ==\n")
}

// ---- requests ----

type header struct{ name, value string }

// request is a raw HTTP/1.1 request. Content-Length is added when it is
// rendered, for requests with a body or method POST, unless set.
type request struct {
	method, target string
	headers        []header
	body           string
}

// with sets a header, replacing one of the same name (case-insensitive).
func (r request) with(name, value string) request {
	hs := append([]header(nil), r.headers...)
	for i := range hs {
		if strings.EqualFold(hs[i].name, name) {
			hs[i].value = value
			r.headers = hs
			return r
		}
	}
	r.headers = append(hs, header{name, value})
	return r
}

// without drops a header.
func (r request) without(name string) request {
	var hs []header
	for _, h := range r.headers {
		if !strings.EqualFold(h.name, name) {
			hs = append(hs, h)
		}
	}
	r.headers = hs
	return r
}

func (r request) has(name string) bool {
	for _, h := range r.headers {
		if strings.EqualFold(h.name, name) {
			return true
		}
	}
	return false
}

// head renders the request line and headers, ending with the blank line.
func (r request) head() string {
	var b strings.Builder
	b.WriteString(r.method + " " + r.target + " HTTP/1.1\r\n")
	for _, h := range r.headers {
		b.WriteString(h.name + ": " + h.value + "\r\n")
	}
	if (r.body != "" || r.method == "POST") && !r.has("Content-Length") && !r.has("Transfer-Encoding") {
		b.WriteString("Content-Length: " + strconv.Itoa(len(r.body)) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// session is a client's view of a gateway session.
type session struct{ id, version string }

// unknownSession was never issued by the gateway.
var unknownSession = &session{id: "0123456789abcdef0123456789abcdef", version: "2025-06-18"}

// sessionHeaders adds what an SDK client sends on a session request: the
// session id and, from 2025-06-18 on, the negotiated version.
func sessionHeaders(r request, s *session) request {
	if s == nil {
		return r
	}
	r = r.with("Mcp-Session-Id", s.id)
	if s.version >= "2025-06-18" {
		r = r.with("MCP-Protocol-Version", s.version)
	}
	return r
}

func post(s *session, body string) request {
	r := request{method: "POST", target: "/mcp", body: body, headers: []header{
		{"Host", "localhost"},
		{"Accept", "application/json, text/event-stream"},
		{"Content-Type", "application/json"},
	}}
	return sessionHeaders(r, s)
}

func get(s *session) request {
	r := request{method: "GET", target: "/mcp", headers: []header{
		{"Host", "localhost"},
		{"Accept", "text/event-stream"},
	}}
	return sessionHeaders(r, s)
}

func resume(s *session, lastEventID string) request {
	return get(s).with("Last-Event-ID", lastEventID)
}

func del(s *session) request {
	r := request{method: "DELETE", target: "/mcp", headers: []header{{"Host", "localhost"}}}
	return sessionHeaders(r, s)
}

func initializeBody(version string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + version +
		`","capabilities":{},"clientInfo":{"name":"transcript-client","version":"1.0.0"}}}`
}

// ---- connections ----

// conn is one client connection and the response being read on it.
type conn struct {
	h    *harness
	name string
	c    net.Conn
	br   *bufio.Reader

	method  string // of the last request sent
	status  int
	headers []string
	// body framing of the current response
	chunked   bool
	remaining int // Content-Length bytes left; -1 = until the connection ends
	bodyDone  bool
	cutShort  bool   // the connection ended inside the body
	pending   []byte // decoded body bytes read but not yet written to the transcript
	closed    bool
}

// dial opens a new client connection; connections are named A, B, C, ...
func (h *harness) dial() *conn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	require.NoError(h.t, err)
	cn := &conn{h: h, name: string(rune('A' + len(h.conns))), c: c, br: bufio.NewReader(c)}
	h.conns = append(h.conns, cn)
	return cn
}

func (h *harness) closeConns() {
	for _, c := range h.conns {
		if !c.closed {
			c.closed = true
			_ = c.c.Close()
		}
	}
}

// send writes r on c in one write (so the gateway reads it whole: a
// rejected request leaves no unread bytes that would turn its close into a
// reset) and records it.
func (c *conn) send(r request) *conn {
	c.h.t.Helper()
	c.recordHead(r)
	c.recordBody(r)
	c.write(r.head() + r.body)
	return c
}

// sendHead writes only the request line and headers (for Expect:
// 100-continue); sendBody the body.
func (c *conn) sendHead(r request) {
	c.h.t.Helper()
	c.recordHead(r)
	c.write(r.head())
}

func (c *conn) sendBody(r request) {
	c.h.t.Helper()
	c.recordBody(r)
	c.write(r.body)
}

func (c *conn) recordHead(r request) {
	c.method = r.method
	c.h.write("\n--> " + c.name + "\n" + strings.ReplaceAll(r.head(), "\r\n", "\n"))
}

func (c *conn) recordBody(r request) {
	if r.body != "" {
		c.h.write(r.body + "\n")
	}
}

func (c *conn) write(s string) {
	c.h.t.Helper()
	if s == "" {
		return
	}
	_, err := io.WriteString(c.c, s)
	require.NoError(c.h.t, err, "conn %s: write", c.name)
}

func (c *conn) deadline() {
	require.NoError(c.h.t, c.c.SetReadDeadline(time.Now().Add(ioLimit)))
}

func (c *conn) fail(what string, err error) {
	c.h.t.Helper()
	c.h.t.Fatalf("conn %s: %s: %v\nread but not yet recorded: %q", c.name, what, err, c.pending)
}

func (c *conn) readLine() string {
	c.h.t.Helper()
	c.deadline()
	line, err := c.br.ReadString('\n')
	c.h.received.WriteString(line)
	if err != nil {
		c.fail("reading a line", err)
	}
	return strings.TrimRight(line, "\r\n")
}

// head reads the status line and headers of the next response, records
// them and learns a session id the gateway issued.
func (c *conn) head() *conn {
	c.h.t.Helper()
	status := c.readLine()
	f := strings.Fields(status)
	require.GreaterOrEqual(c.h.t, len(f), 2, "conn %s: status line %q", c.name, status)
	code, err := strconv.Atoi(f[1])
	require.NoError(c.h.t, err, "conn %s: status line %q", c.name, status)
	c.status = code
	c.headers = nil
	for {
		l := c.readLine()
		if l == "" {
			break
		}
		c.headers = append(c.headers, l)
	}
	c.chunked, c.remaining, c.bodyDone, c.cutShort, c.pending = false, -1, false, false, nil
	for _, l := range c.headers {
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "mcp-session-id":
			if !contains(c.h.sids, value) {
				c.h.sids = append(c.h.sids, value)
			}
		case "transfer-encoding":
			c.chunked = strings.EqualFold(value, "chunked")
		case "content-length":
			c.remaining, err = strconv.Atoi(value)
			require.NoError(c.h.t, err)
		}
	}
	if code < 200 || code == 204 || code == 304 || c.method == "HEAD" {
		c.bodyDone, c.remaining = true, 0
	}
	c.h.write("\n<-- " + c.name + "\n" + status + "\n")
	for _, l := range c.headers {
		if n, _, _ := strings.Cut(l, ":"); strings.EqualFold(n, "Date") {
			l = n + ": <date>" // the only header that varies by itself
		}
		c.h.write(l + "\n")
	}
	c.h.write("\n")
	return c
}

// header returns the value of a response header of the current response.
func (c *conn) header(name string) string {
	for _, l := range c.headers {
		if n, v, _ := strings.Cut(l, ":"); strings.EqualFold(n, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// more reads more decoded body bytes into pending. It returns false at the
// end of the body (bodyDone) or of the connection (cutShort).
func (c *conn) more() bool {
	c.h.t.Helper()
	if c.bodyDone || c.cutShort {
		return false
	}
	c.deadline()
	switch {
	case c.chunked:
		line, err := c.br.ReadString('\n')
		c.h.received.WriteString(line)
		if err != nil {
			return c.ended(err)
		}
		size, err := strconv.ParseUint(strings.TrimSpace(line), 16, 32)
		require.NoError(c.h.t, err, "conn %s: chunk size line %q", c.name, line)
		data := make([]byte, size+2)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return c.ended(err)
		}
		c.h.received.Write(data)
		require.Equal(c.h.t, "\r\n", string(data[size:]), "conn %s: chunk not ended by CRLF", c.name)
		if size == 0 {
			c.bodyDone = true
			return false
		}
		c.pending = append(c.pending, data[:size]...)
	case c.remaining == 0:
		c.bodyDone = true
		return false
	default:
		buf := make([]byte, 4096)
		if c.remaining > 0 && c.remaining < len(buf) {
			buf = buf[:c.remaining]
		}
		n, err := c.br.Read(buf)
		c.h.received.Write(buf[:n])
		c.pending = append(c.pending, buf[:n]...)
		if c.remaining > 0 {
			c.remaining -= n
		}
		if err != nil {
			if c.remaining < 0 && errors.Is(err, io.EOF) {
				c.bodyDone = true // a body delimited by the connection's end
				return false
			}
			return c.ended(err)
		}
	}
	return true
}

func (c *conn) ended(err error) bool {
	c.h.t.Helper()
	if !isConnEnd(err) {
		c.fail("reading the body", err)
	}
	c.cutShort = true
	return false
}

// isConnEnd: the peer closed or reset the connection.
func isConnEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset by peer")
}

func (c *conn) flushPending() {
	c.h.write(string(c.pending))
	c.pending = nil
}

// body reads the rest of the body and records it.
func (c *conn) body() *conn {
	c.h.t.Helper()
	for c.more() {
	}
	if len(c.pending) > 0 && !bytes.HasSuffix(c.pending, []byte("\n")) {
		c.pending = append(c.pending, '\n')
	}
	c.flushPending()
	c.writeEnd()
	return c
}

func (c *conn) writeEnd() {
	switch {
	case c.cutShort:
		c.h.write("[the gateway closed the connection before the end of the body]\n")
	default:
		c.h.write("[end of body]\n")
	}
}

// events reads until n more whole SSE blocks (events, comments, retry
// hints: anything ended by a blank line) have arrived, and records them.
func (c *conn) events(n int) *conn {
	c.h.t.Helper()
	for {
		if i := nthBlockEnd(c.pending, n); i >= 0 {
			c.h.write(string(c.pending[:i]))
			c.pending = c.pending[i:]
			return c
		}
		if !c.more() {
			c.flushPending()
			c.writeEnd()
			c.h.t.Fatalf("conn %s: the body ended before %d more SSE blocks", c.name, n)
		}
	}
}

// nthBlockEnd is the offset just after the n-th "\n\n" in b, or -1.
func nthBlockEnd(b []byte, n int) int {
	off := 0
	for k := 0; k < n; k++ {
		i := bytes.Index(b[off:], []byte("\n\n"))
		if i < 0 {
			return -1
		}
		off += i + 2
	}
	return off
}

// continued marks the transcript before more of an earlier response.
func (c *conn) continued() *conn {
	c.h.write("\n<-- " + c.name + " (continued)\n")
	return c
}

// expectClosed checks that the gateway closed the connection after the
// response, and records it.
func (c *conn) expectClosed() *conn {
	c.h.t.Helper()
	c.deadline()
	b, err := c.br.ReadByte()
	if err == nil {
		c.h.t.Fatalf("conn %s: expected the connection to end, got byte %q", c.name, b)
	}
	if !isConnEnd(err) {
		c.fail("waiting for the connection to end", err)
	}
	c.h.write("[the gateway closed the connection]\n")
	return c
}

// close closes the client side and records it.
func (c *conn) close() {
	c.h.write("\n[" + c.name + ": the client closes the connection]\n")
	c.closed = true
	_ = c.c.Close()
}

// ---- shortcuts ----

// do sends r on a new connection and reads the whole response.
func (h *harness) do(r request) *conn {
	h.t.Helper()
	c := h.dial()
	c.send(r).head().body()
	c.closed = true
	_ = c.c.Close()
	return c
}

// open sends r on a new connection and reads the response head only.
func (h *harness) open(r request) *conn {
	h.t.Helper()
	return h.dial().send(r).head()
}

// initialize opens a session at version and fails the row if none comes.
func (h *harness) initialize(version string) *session {
	h.t.Helper()
	c := h.do(post(nil, initializeBody(version)))
	require.Equal(h.t, 200, c.status, "initialize")
	id := c.header("Mcp-Session-Id")
	require.NotEmpty(h.t, id, "initialize issued no session id")
	// The negotiated version is the upstream's answer; the fake answers
	// the requested one when it serves it.
	neg := version
	if !contains(testenv.DefaultFakeVersions, version) {
		neg = testenv.DefaultFakeVersions[len(testenv.DefaultFakeVersions)-1]
	}
	return &session{id: id, version: neg}
}

// release opens a gate of the fake upstream, with a note.
func (h *harness) release(g *testenv.Gate, what string) {
	h.note("the upstream goes on: %s", what)
	g.Release()
}

// push queues a message on upstream session n's standalone stream.
func (h *harness) push(n int, raw string) {
	h.note("the upstream sends on its standalone stream: %s", raw)
	h.up.Session(n).Push(raw)
}

// waitListen waits until the gateway opened n upstream standalone streams.
func (h *harness) waitListen(n int) {
	h.t.Helper()
	h.up.WaitFor(h.t, fmt.Sprintf("%d Listen calls", n), func(v *testenv.FakeView) bool { return v.Count("listen") >= n })
}

// waitStreamsIdle waits until every upstream stream the gateway reads has
// been consumed up to a pause (so the gateway stored what came before).
func (h *harness) waitStreamsIdle() {
	h.t.Helper()
	h.up.WaitFor(h.t, "upstream streams drained", func(v *testenv.FakeView) bool { return v.StreamsIdle() })
}

// assertSent checks how many messages (initialize included) reached the
// upstream so far.
func (h *harness) assertSent(n int, why string) {
	h.t.Helper()
	assert.Len(h.t, h.up.Sent(), n, "messages that reached the upstream: %s", why)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ---- gateway hooks ----

// hookLog records session and stream ends reported through gateway.Hooks,
// so rows can wait for them.
type hookLog struct {
	gateway.NopHooks

	mu             sync.Mutex
	changed        chan struct{}
	sessionsClosed []string // "<session id> <reason>"
	streamsClosed  []string // "<session id> <stream> <reason>"
}

func newHookLog() *hookLog { return &hookLog{changed: make(chan struct{})} }

func (l *hookLog) add(list *[]string, s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*list = append(*list, s)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *hookLog) SessionClosed(s gateway.SessionInfo, r gateway.CloseReason) {
	l.add(&l.sessionsClosed, s.ID+" "+r.String())
}

func (l *hookLog) StreamClosed(s gateway.StreamInfo, r gateway.CloseReason) {
	l.add(&l.streamsClosed, s.Session.ID+" "+strconv.FormatUint(s.Stream, 10)+" "+r.String())
}

func (l *hookLog) wait(t *testing.T, what string, list *[]string, want string, n int) {
	t.Helper()
	deadline := time.NewTimer(ioLimit)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		got := 0
		for _, s := range *list {
			if s == want {
				got++
			}
		}
		changed := l.changed
		snapshot := append([]string(nil), *list...)
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			sort.Strings(snapshot)
			t.Fatalf("gave up waiting for %s (%q x%d); have %q", what, want, n, snapshot)
		}
	}
}

// waitSessionClosed waits for the gateway to end session s for reason, and
// notes it.
// waitUpstreamClosed waits until n upstream sessions were closed.
func (h *harness) waitUpstreamClosed(n int) {
	h.up.WaitFor(h.t, "upstream session close", func(v *testenv.FakeView) bool { return v.Count("close") >= n })
}

func (h *harness) waitSessionClosed(s *session, reason string) {
	h.t.Helper()
	h.hooks.wait(h.t, "session end", &h.hooks.sessionsClosed, s.id+" "+reason, 1)
	h.note("the gateway ended %s (%s)", s.id, reason)
}

// waitStreamClosed waits until stream st of s lost its client connection
// n times in total for reason (every attach ends with one).
func (h *harness) waitStreamClosed(s *session, st uint64, reason string, n int) {
	h.t.Helper()
	h.hooks.wait(h.t, "stream end", &h.hooks.streamsClosed, s.id+" "+strconv.FormatUint(st, 10)+" "+reason, n)
	h.note("the gateway detached the client from stream %d (%s)", st, reason)
}
