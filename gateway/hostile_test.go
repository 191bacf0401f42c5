package gateway_test

// The hostile-input catalog: malformed and hostile requests sent over raw
// TCP (where an HTTP client would sanitize them) to the real handler,
// served in process (Serve on a 127.0.0.1:0 listener) in front of the fake
// upstream, each with the status, headers and error it must get. After the
// whole table, the sessions made before it still work, no goroutine is left
// behind and the heap is back to its level: nothing a client sends makes
// the gateway answer 500, panic, or hold on to memory.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// ---- the upstream: the fake, plus the refusals of a real server ----

// refusingUpstream is the fake upstream with what the reference server did
// to the inputs the issue lists: a plain-text 4xx for a notification it
// does not know, a 1 MiB method name and initialize without params; and a
// 401 for "x/unauthorized" (the upstream refusing the gateway's own
// credentials). Bodies over 64 KiB are answered here without reaching the
// fake, which records every body it gets.
type refusingUpstream struct{ *testenv.FakeUpstream }

func (u refusingUpstream) Connect(ctx context.Context, initialize []byte) (upstream.Session, []byte, error) {
	if _, ok := jsonrpc.Lookup(initialize, "params"); !ok {
		return nil, nil, &upstream.StatusError{Op: "initialize", Status: http.StatusBadRequest}
	}
	s, answer, err := u.FakeUpstream.Connect(ctx, initialize)
	if s != nil {
		s = refusingSession{s}
	}
	return s, answer, err
}

type refusingSession struct{ upstream.Session }

func (s refusingSession) Send(ctx context.Context, body []byte) (*upstream.Reply, error) {
	var p jsonrpc.Parser
	msgs, batch, perr := p.Parse(body)
	if perr == nil && !batch {
		switch m := msgs[0]; {
		case len(m.Method) > 64<<10, string(m.Method) == "notifications/unknown":
			return nil, &upstream.StatusError{Op: "post", Status: http.StatusBadRequest}
		case string(m.Method) == "x/unauthorized":
			return nil, &upstream.StatusError{Op: "post", Status: http.StatusUnauthorized}
		}
	}
	if perr == nil && len(body) > 64<<10 {
		var out []string
		for _, m := range msgs {
			if m.Kind == jsonrpc.KindRequest {
				out = append(out, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{}}`)
			}
		}
		switch {
		case len(out) == 0:
			return &upstream.Reply{Accepted: true}, nil
		case batch:
			return &upstream.Reply{JSON: []byte("[" + strings.Join(out, ",") + "]")}, nil
		default:
			return &upstream.Reply{JSON: []byte(out[0])}, nil
		}
	}
	return s.Session.Send(ctx, body)
}

// ---- the gateway under test ----

// catEnv is the gateway of the catalog, its principals and their sessions.
type catEnv struct {
	t      *testing.T
	srv    *gateway.Server
	addr   string
	tokens map[string]string // principal -> bearer token
	// Sessions made before the table: alice's at 2025-06-18 and at
	// 2025-03-26 (batches), bob's and carol's.
	alice, alice03, bob, carol string
	// streamy is alice's session for rows that open its standalone stream
	// (its pump runs until the session ends): made by the first such row.
	streamy string
	// made records sessions created by the table (principal -> ids), so
	// they can be ended before the leak check.
	made map[string][]string
}

const (
	catMaxStreams   = 2
	catRateBurst    = 200
	catPrincipalCap = 4
	catMaxBody      = 2 << 20
)

func newCatEnv(t *testing.T, mutate func(*gateway.Config)) *catEnv {
	up := testenv.NewFakeUpstream(t)
	up.On("tools/list", testenv.Result(`{"tools":[]}`))
	up.On("x/deep", testenv.Result(`{}`))
	// An answer stream that stays open until its session ends.
	up.On("x/stream", testenv.Stream(testenv.Pause(testenv.NewGate("never"))))
	e := &catEnv{t: t, tokens: map[string]string{}, made: map[string][]string{}}
	var lines []string
	for _, p := range []string{"alice", "bob", "carol", "dave"} {
		e.tokens[p] = "tok-" + p + "-0123456789abcdef"
		lines = append(lines, e.tokens[p]+" "+p)
	}
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600))
	v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: path})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	var logs testenv.Buffer
	cfg := gateway.Config{
		Upstream:                refusingUpstream{up},
		Logger:                  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxBodyBytes:            catMaxBody,
		MaxStreamsPerSession:    catMaxStreams,
		ReadHeaderTimeout:       500 * time.Millisecond,
		ReadBodyTimeout:         500 * time.Millisecond,
		Authenticator:           v,
		AuthorizationServers:    []string{"https://auth.example"},
		RateLimit:               50,
		RateBurst:               catRateBurst,
		MaxSessionsPerPrincipal: catPrincipalCap,
		DrainWindow:             -1,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := gateway.New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if t.Failed() {
			up.Stop()
			t.Logf("gateway log:\n%s", logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.NoError(t, <-served)
	})
	e.srv, e.addr = srv, ln.Addr().String()
	return e
}

// ---- raw requests ----

// raw renders a request: the request line, the headers as given, a
// Content-Length for a body (unless one of the headers frames it) and the
// body.
func raw(method, target string, headers []string, body string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	framed := false
	for _, h := range headers {
		l := strings.ToLower(h)
		if strings.HasPrefix(l, "content-length:") || strings.HasPrefix(l, "transfer-encoding:") {
			framed = true
		}
		b.WriteString(h + "\r\n")
	}
	if !framed && (body != "" || method == "POST") {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

func (e *catEnv) bearer(p string) string { return "Authorization: Bearer " + e.tokens[p] }

// postH are the headers of a well-formed POST by principal p on session
// sid ("" for none).
func (e *catEnv) postH(p, sid string, extra ...string) []string {
	h := []string{"Host: localhost", "Content-Type: application/json", "Accept: application/json, text/event-stream", e.bearer(p)}
	if sid != "" {
		h = append(h, "Mcp-Session-Id: "+sid, "MCP-Protocol-Version: 2025-06-18")
	}
	return append(h, extra...)
}

func (e *catEnv) getH(p, sid string, extra ...string) []string {
	h := []string{"Host: localhost", "Accept: text/event-stream", e.bearer(p)}
	if sid != "" {
		h = append(h, "Mcp-Session-Id: "+sid)
	}
	return append(h, extra...)
}

func (e *catEnv) post(p, sid, body string, extra ...string) string {
	return raw("POST", "/mcp", e.postH(p, sid, extra...), body)
}

func initBody(version string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + version +
		`","capabilities":{},"clientInfo":{"name":"catalog","version":"1"}}}`
}

const (
	catList = `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`
	catPing = `{"jsonrpc":"2.0","id":3,"method":"ping"}`
)

// ---- exchanges ----

// answer is one response as read off the wire.
type answer struct {
	status int
	header http.Header
	body   string
}

// exchange sends data in one write and reads n responses (fewer if the
// connection ends).
func (e *catEnv) exchange(data string, n int) []answer {
	e.t.Helper()
	as, _ := e.exchangeClose(data, n, false)
	return as
}

// exchangeClose is exchange, and with waitClose it also reports whether
// the server closed the connection after the answers.
func (e *catEnv) exchangeClose(data string, n int, waitClose bool) (answers []answer, closed bool) {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	require.NoError(e.t, err)
	defer c.Close()
	_, err = io.WriteString(c, data)
	require.NoError(e.t, err)
	return e.read(c, bufio.NewReader(c), data, n, waitClose)
}

func (e *catEnv) read(c net.Conn, br *bufio.Reader, data string, n int, waitClose bool) (answers []answer, closed bool) {
	e.t.Helper()
	method := strings.SplitN(data, " ", 2)[0]
	require.NoError(e.t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	for len(answers) < n {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			require.Falsef(e.t, isTimeout(err), "no answer within 10 s (%d of %d read)", len(answers), n)
			return answers, true
		}
		a := answer{status: resp.StatusCode, header: resp.Header}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			answers = append(answers, a) // a stream: its head is the answer
			return answers, false
		}
		body, err := io.ReadAll(resp.Body)
		require.NoError(e.t, err)
		a.body = string(body)
		answers = append(answers, a)
	}
	if !waitClose {
		return answers, false
	}
	_, err := br.ReadByte()
	return answers, err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// initialize opens a session for principal p and returns its id.
func (e *catEnv) initialize(p, version string) string {
	e.t.Helper()
	as := e.exchange(e.post(p, "", initBody(version)), 1)
	require.Len(e.t, as, 1)
	require.Equal(e.t, http.StatusOK, as[0].status, as[0].body)
	sid := as[0].header.Get("Mcp-Session-Id")
	require.NotEmpty(e.t, sid)
	return sid
}

// streamSession returns alice's session for stream rows, made on first use
// and ended before the leak check.
func (e *catEnv) streamSession() string {
	if e.streamy == "" {
		e.streamy = e.initialize("alice", "2025-06-18")
		e.made["alice"] = append(e.made["alice"], e.streamy)
	}
	return e.streamy
}

// ---- the catalog ----

// hostileCase is one row: what is sent, and what must come back.
type hostileCase struct {
	name string
	send func(e *catEnv) string
	// want are the statuses of the answers, in order (several for
	// pipelined requests).
	want []int
	// header maps a header to a substring its value must contain (in the
	// last answer).
	header map[string]string
	// body is a substring of the last answer's body (a JSON-RPC code).
	body string
	// closes: the server closes the connection after its answer.
	closes bool
	// run replaces send/want for rows of several exchanges.
	run func(t *testing.T, e *catEnv)
}

func st(codes ...int) []int { return codes }

const (
	codeParse    = `"code":-32700`
	codeInvalid  = `"code":-32600`
	codeServer   = `"code":-32000`
	codeNotFound = `"code":-32001`
)

// nested is a message whose params nest depth-1 arrays: depth levels in
// all, the message object included.
func nested(depth int) string {
	return `{"jsonrpc":"2.0","id":9,"method":"x/deep","params":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
}

func hostileCases() []hostileCase {
	okGet := func(e *catEnv) []string { return e.getH("alice", e.alice) }
	return []hostileCase{
		// -- framing --
		{name: "bare LF line ends", send: func(e *catEnv) string {
			return strings.ReplaceAll(e.post("alice", e.alice, catPing), "\r\n", "\n")
		}, want: st(400), body: "CRLF", closes: true},
		{name: "bare LF in one header line", send: func(e *catEnv) string {
			return strings.Replace(e.post("alice", e.alice, catPing), "Host: localhost\r\n", "Host: localhost\n", 1)
		}, want: st(400), closes: true},
		{name: "bare CR inside a header value", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "X-A: a\rb"), "")
		}, want: st(400), closes: true},
		{name: "CRLF injected into a header value (obs-fold)", send: func(e *catEnv) string {
			return raw("DELETE", "/mcp", []string{"Host: localhost", e.bearer("alice"), "Mcp-Session-Id: " + e.alice + "\r\n X-Injected: 1"}, "")
		}, want: st(400), body: "malformed Mcp-Session-Id"},
		{name: "NUL in a header value", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "X-A: a\x00b"), "")
		}, want: st(400), closes: true},
		{name: "space before the colon", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "X-A : b"), "")
		}, want: st(400), closes: true},
		{name: "two Content-Length", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: 41", "Content-Length: 40"), catPing)
		}, want: st(400), closes: true},
		{name: "Content-Length with Transfer-Encoding (CL.TE smuggling)", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: 4", "Transfer-Encoding: chunked"),
				"0\r\n\r\nGET /mcp HTTP/1.1\r\nHost: localhost\r\n\r\n")
		}, want: st(400), body: "Transfer-Encoding", closes: true},
		{name: "Transfer-Encoding identity with Content-Length", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: identity", "Content-Length: "+strconv.Itoa(len(catPing))), catPing)
		}, want: st(400), body: "Transfer-Encoding", closes: true},
		{name: "Transfer-Encoding gzip, chunked", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: gzip, chunked"), "2\r\n{}\r\n0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "two Transfer-Encoding", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), "2\r\n{}\r\n0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "Transfer-Encoding with a space before the colon (TE.CL smuggling)", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding : chunked", "Content-Length: 3"), "0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "Transfer-Encoding xchunked", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: xchunked"), "2\r\n{}\r\n0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "chunked body, well formed", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: chunked"),
				fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(catPing), catPing))
		}, want: st(200), body: `"result":{}`},
		{name: "bad chunk size", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: chunked"), "zz\r\n{}\r\n0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "chunk size overflow", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: chunked"), "ffffffffffffffffff\r\n{}\r\n0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "negative chunk size", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: chunked"), "-2\r\n{}\r\n0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "chunk size 0x2", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: chunked"), "0x2\r\n{}\r\n0\r\n\r\n")
		}, want: st(400), closes: true},
		{name: "chunk past the body limit", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Transfer-Encoding: chunked"), fmt.Sprintf("%x\r\n", catMaxBody+1))
		}, want: st(413), closes: true},
		{name: "negative Content-Length", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: -1"), "")
		}, want: st(400), closes: true},
		{name: "Content-Length +41", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: +41"), catPing)
		}, want: st(400), closes: true},
		{name: "Content-Length list", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: 41, 41"), catPing)
		}, want: st(400), closes: true},
		{name: "Content-Length huge", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: 99999999999999999999"), catPing)
		}, want: st(400), closes: true},
		{name: "body over the limit", send: func(e *catEnv) string {
			// The head alone: the answer comes before any of the body
			// (sending it would make the close a reset).
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: "+strconv.Itoa(catMaxBody+1)), "")
		}, want: st(413), closes: true},
		{name: "header line over the head limit", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "X-Big: "+strings.Repeat("a", gateway.DefaultMaxHeaderBytes)), "")
		}, want: st(431), closes: true},
		{name: "request target over the head limit", send: func(e *catEnv) string {
			return raw("GET", "/mcp?"+strings.Repeat("a", gateway.DefaultMaxHeaderBytes), okGet(e), "")
		}, want: st(431), closes: true},
		{name: "too many header fields", send: func(e *catEnv) string {
			h := okGet(e)
			for i := 0; i < gateway.DefaultMaxHeaders; i++ {
				h = append(h, "X-"+strconv.Itoa(i)+": 1")
			}
			return raw("GET", "/mcp", h, "")
		}, want: st(431), closes: true},
		{name: "slow headers (slowloris)", send: func(e *catEnv) string {
			return "GET /mcp HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
		}, want: st(408), closes: true},
		{name: "connection that sends nothing", send: func(e *catEnv) string { return "" }, want: st(408), closes: true},
		{name: "slow body", send: func(e *catEnv) string {
			return raw("POST", "/mcp", e.postH("alice", e.alice, "Content-Length: 100"), `{"jsonrpc"`)
		}, want: st(408), closes: true},
		{name: "truncated head then end of input", run: func(t *testing.T, e *catEnv) {
			c, err := net.Dial("tcp", e.addr)
			require.NoError(t, err)
			defer c.Close()
			_, _ = io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: loc")
			require.NoError(t, c.(*net.TCPConn).CloseWrite())
			as, closed := e.read(c, bufio.NewReader(c), "POST", 1, true)
			assert.True(t, closed)
			for _, a := range as {
				assert.Equal(t, http.StatusBadRequest, a.status)
			}
		}},
		{name: "HTTP/1.0 without Host", send: func(e *catEnv) string {
			return "GET /mcp HTTP/1.0\r\nAccept: text/event-stream\r\n" + e.bearer("alice") + "\r\n\r\n"
		}, want: st(400), body: "Host header is required", closes: true},
		{name: "HTTP/1.1 without Host", send: func(e *catEnv) string {
			return "GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n"
		}, want: st(400), closes: true},
		{name: "empty Host", send: func(e *catEnv) string {
			return "GET /mcp HTTP/1.1\r\nHost:\r\n\r\n"
		}, want: st(400), closes: true},
		{name: "HTTP/2.0 on an HTTP/1 connection", send: func(e *catEnv) string {
			return strings.Replace(raw("GET", "/mcp", okGet(e), ""), "HTTP/1.1", "HTTP/2.0", 1)
		}, want: st(505), closes: true},
		{name: "NUL in the method", send: func(e *catEnv) string { return "G\x00T /mcp HTTP/1.1\r\nHost: localhost\r\n\r\n" },
			want: st(400), closes: true},
		{name: "relative request target", send: func(e *catEnv) string { return "GET mcp HTTP/1.1\r\nHost: localhost\r\n\r\n" },
			want: st(400), closes: true},
		{name: "pipelined requests", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing) + e.post("alice", e.alice, catList) + raw("PUT", "/mcp", []string{"Host: localhost", e.bearer("alice")}, "")
		}, want: st(200, 200, 405)},
		{name: "pipelined request with bare LF after a good one", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing) + strings.ReplaceAll(e.post("alice", e.alice, catPing), "\r\n", "\n")
		}, want: st(200, 408), closes: true},
		{name: "Expect: 100-continue", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing, "Expect: 100-continue")
		}, want: st(100, 200)},

		// -- Host, Origin: DNS rebinding --
		{name: "Host of another site", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: evil.com", "Accept: text/event-stream", e.bearer("alice")}, "")
		}, want: st(403), body: "Host not allowed"},
		{name: "Host with userinfo", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: 127.0.0.1:8411@evil.com", "Accept: text/event-stream", e.bearer("alice")}, "")
		}, want: st(400), body: "malformed Host"},
		{name: "Host with a loopback-looking prefix", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost.evil.com", e.bearer("alice")}, "")
		}, want: st(403)},
		{name: "Host with a trailing dot", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost.", e.bearer("alice")}, "")
		}, want: st(403)},
		{name: "Host port out of range", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: 127.0.0.1:99999", e.bearer("alice")}, "")
		}, want: st(400)},
		{name: "Host with an empty port", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost:", e.bearer("alice")}, "")
		}, want: st(400)},
		{name: "Host IPv6 loopback", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: [::1]:8080", "Accept: text/event-stream", e.bearer("alice")}, "")
		}, want: st(400), body: "Mcp-Session-Id header is required"},
		{name: "Host IPv6 with a zone", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: [fe80::1%25eth0]", e.bearer("alice")}, "")
		}, want: st(400), body: "malformed Host"},
		{name: "absolute form naming another host", send: func(e *catEnv) string {
			return raw("POST", "http://evil.com/mcp", e.postH("alice", e.alice), catPing)
		}, want: st(403), body: "Host not allowed"},
		{name: "absolute form naming this host, Host of another", send: func(e *catEnv) string {
			h := e.postH("alice", e.alice)
			h[0] = "Host: evil.com"
			return raw("POST", "http://127.0.0.1/mcp", h, catPing)
		}, want: st(200), body: `"result":{}`},
		{name: "absolute form with userinfo", send: func(e *catEnv) string {
			return raw("POST", "http://localhost@evil.com/mcp", e.postH("alice", e.alice), catPing)
		}, want: st(400), body: "malformed Host"},
		{name: "absolute form with another scheme", send: func(e *catEnv) string {
			return raw("POST", "ftp://localhost/mcp", e.postH("alice", e.alice), catPing)
		}, want: st(400)},
		{name: "Origin of another site", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing, "Origin: http://evil.com")
		}, want: st(403), body: "Origin not allowed"},
		{name: "Origin null", send: func(e *catEnv) string { return e.post("alice", e.alice, catPing, "Origin: null") },
			want: st(403), body: "Origin not allowed"},
		{name: "Origin with userinfo", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing, "Origin: http://evil.com@127.0.0.1")
		}, want: st(403), body: "Origin not allowed"},
		{name: "Origin with a path", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing, "Origin: http://localhost/evil")
		}, want: st(403)},
		{name: "Origin loopback", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing, "Origin: http://localhost:5173")
		}, want: st(200)},
		{name: "Origin loopback in capitals", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing, "Origin: HTTP://LOCALHOST")
		}, want: st(200)},
		{name: "two Origin headers", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catPing, "Origin: http://localhost", "Origin: http://evil.com")
		}, want: st(403), body: "more than one Origin"},
		{name: "metrics with the Host of another site", send: func(e *catEnv) string {
			return raw("GET", "/metrics", []string{"Host: evil.com"}, "")
		}, want: st(403)},
		{name: "metrics from another Origin", send: func(e *catEnv) string {
			return raw("GET", "/metrics", []string{"Host: localhost", "Origin: http://evil.com"}, "")
		}, want: st(403)},
		// Metrics live on the admin listener: the public one has no such path.
		{name: "metrics POST", send: func(e *catEnv) string { return raw("POST", "/metrics", []string{"Host: localhost"}, "") },
			want: st(404), body: "Not Found"},
		{name: "metrics GET", send: func(e *catEnv) string { return raw("GET", "/metrics", []string{"Host: localhost"}, "") },
			want: st(404), body: "Not Found"},
		{name: "legacy SSE endpoint without a token", send: func(e *catEnv) string { return raw("GET", "/sse", []string{"Host: localhost"}, "") },
			want: st(401)},
		{name: "legacy message endpoint without a token", send: func(e *catEnv) string {
			return raw("POST", "/messages?sessionId=0123456789abcdef0123456789abcdef", []string{"Host: localhost", "Content-Type: application/json"}, "{}")
		}, want: st(401)},

		// -- methods and paths --
		{name: "PUT", send: func(e *catEnv) string { return raw("PUT", "/mcp", []string{"Host: localhost", e.bearer("alice")}, "") },
			want: st(405), header: map[string]string{"Allow": "GET, POST, DELETE"}},
		{name: "PATCH", send: func(e *catEnv) string {
			return raw("PATCH", "/mcp", []string{"Host: localhost", e.bearer("alice")}, "{}")
		},
			want: st(405), header: map[string]string{"Allow": "GET, POST, DELETE"}},
		{name: "HEAD", send: func(e *catEnv) string { return raw("HEAD", "/mcp", []string{"Host: localhost", e.bearer("alice")}, "") },
			want: st(405), header: map[string]string{"Allow": "GET, POST, DELETE"}},
		{name: "OPTIONS", send: func(e *catEnv) string {
			return raw("OPTIONS", "/mcp", []string{"Host: localhost", e.bearer("alice")}, "")
		},
			want: st(405)},
		{name: "TRACE", send: func(e *catEnv) string {
			return raw("TRACE", "/mcp", []string{"Host: localhost", e.bearer("alice")}, "")
		},
			want: st(405)},
		{name: "CONNECT", send: func(e *catEnv) string { return "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n" },
			want: st(405), header: map[string]string{"Allow": "GET, POST, DELETE"}},
		{name: "OPTIONS *", send: func(e *catEnv) string { return "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n" },
			want: st(405)},
		{name: "unknown path", send: func(e *catEnv) string { return raw("GET", "/admin", []string{"Host: localhost"}, "") },
			want: st(404), body: codeServer},
		{name: "endpoint path with a trailing slash", send: func(e *catEnv) string { return raw("GET", "/mcp/", []string{"Host: localhost"}, "") },
			want: st(404)},
		{name: "endpoint path in capitals", send: func(e *catEnv) string { return raw("GET", "/MCP", []string{"Host: localhost"}, "") },
			want: st(404)},
		{name: "protected resource metadata", send: func(e *catEnv) string {
			return raw("GET", "/.well-known/oauth-protected-resource/mcp", []string{"Host: localhost:8080"}, "")
		}, want: st(200), body: `"resource":"http://localhost:8080/mcp","authorization_servers":["https://auth.example"]`},
		{name: "protected resource metadata POST", send: func(e *catEnv) string {
			return raw("POST", "/.well-known/oauth-protected-resource", []string{"Host: localhost"}, "")
		}, want: st(405)},

		// -- authentication --
		{name: "no token", send: func(e *catEnv) string {
			return raw("POST", "/mcp", []string{"Host: localhost:8080", "Content-Type: application/json", "Accept: application/json, text/event-stream"}, catPing)
		}, want: st(401), header: map[string]string{"Www-Authenticate": `Bearer resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"`}},
		{name: "Basic credentials", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost", "Authorization: Basic YWxpY2U6c2VjcmV0"}, "")
		}, want: st(401), header: map[string]string{"Www-Authenticate": `Bearer resource_metadata=`}},
		{name: "unknown token", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost", "Authorization: Bearer tok-mallory-0123456789abcdef"}, "")
		}, want: st(401), header: map[string]string{"Www-Authenticate": `error="invalid_token"`}},
		{name: "Bearer with two tokens", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost", e.bearer("alice") + " " + e.tokens["bob"]}, "")
		}, want: st(401)},
		{name: "two Authorization headers", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost", e.bearer("alice"), e.bearer("bob")}, "")
		}, want: st(400), body: "more than one Authorization"},

		// -- sessions --
		{name: "no session", send: func(e *catEnv) string { return e.post("alice", "", catList) },
			want: st(400), body: "Mcp-Session-Id header is required"},
		{name: "unknown session", send: func(e *catEnv) string { return e.post("alice", "0123456789abcdef0123456789abcdef", catList) },
			want: st(404), body: codeNotFound},
		{name: "session id too long", send: func(e *catEnv) string { return e.post("alice", strings.Repeat("a", 200), catList) },
			want: st(400), body: "malformed Mcp-Session-Id"},
		{name: "two Mcp-Session-Id", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catList, "Mcp-Session-Id: "+e.bob)
		}, want: st(400), body: "more than one Mcp-Session-Id"},
		{name: "DELETE with two Mcp-Session-Id deletes nothing", run: func(t *testing.T, e *catEnv) {
			as := e.exchange(raw("DELETE", "/mcp", []string{"Host: localhost", e.bearer("alice"), "Mcp-Session-Id: " + e.alice, "Mcp-Session-Id: " + e.alice03}, ""), 1)
			require.Len(t, as, 1)
			assert.Equal(t, http.StatusBadRequest, as[0].status)
			as = e.exchange(e.post("alice", e.alice, catPing), 1)
			assert.Equal(t, http.StatusOK, as[0].status, "the first session still exists")
		}},
		{name: "another principal's session, POST", send: func(e *catEnv) string { return e.post("bob", e.alice, catList) },
			want: st(404), body: codeNotFound},
		{name: "another principal's session, GET", send: func(e *catEnv) string { return raw("GET", "/mcp", e.getH("bob", e.alice), "") },
			want: st(404), body: codeNotFound},
		{name: "another principal's stream, resumed", send: func(e *catEnv) string {
			return raw("GET", "/mcp", e.getH("bob", e.alice, "Last-Event-ID: 0_0"), "")
		}, want: st(404), body: codeNotFound},
		{name: "another principal's session, DELETE", send: func(e *catEnv) string {
			return raw("DELETE", "/mcp", []string{"Host: localhost", e.bearer("bob"), "Mcp-Session-Id: " + e.alice}, "")
		}, want: st(404), body: codeNotFound},
		{name: "initialize carrying a session id", send: func(e *catEnv) string { return e.post("alice", e.alice, initBody("2025-06-18")) },
			want: st(400), body: codeInvalid},
		{name: "initialize without params", send: func(e *catEnv) string {
			return e.post("alice", "", `{"jsonrpc":"2.0","id":1,"method":"initialize"}`)
		}, want: st(400), body: "upstream refused the message: HTTP 400"},
		{name: "initialize without id", send: func(e *catEnv) string {
			return e.post("alice", "", `{"jsonrpc":"2.0","method":"initialize","params":{}}`)
		}, want: st(400), body: codeInvalid},
		{name: "two MCP-Protocol-Version", send: func(e *catEnv) string {
			return e.post("alice", e.alice, catList, "MCP-Protocol-Version: 2025-03-26")
		}, want: st(400), body: "more than one MCP-Protocol-Version"},
		{name: "unsupported MCP-Protocol-Version", send: func(e *catEnv) string {
			h := e.postH("alice", e.alice)
			h[len(h)-1] = "MCP-Protocol-Version: 1999-01-01"
			return raw("POST", "/mcp", h, catList)
		}, want: st(400), body: `"code":-32022`},

		// -- bodies --
		{name: "empty body", send: func(e *catEnv) string { return e.post("alice", e.alice, "") }, want: st(400), body: "empty body"},
		{name: "whitespace body", send: func(e *catEnv) string { return e.post("alice", e.alice, " \r\n\t ") }, want: st(400), body: "empty body"},
		{name: "truncated JSON", send: func(e *catEnv) string { return e.post("alice", e.alice, catList[:len(catList)-5]) },
			want: st(400), body: codeParse},
		{name: "trailing garbage after JSON", send: func(e *catEnv) string { return e.post("alice", e.alice, catList+"x") },
			want: st(400), body: codeParse},
		{name: "invalid UTF-8", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"\xff\xfe"}}`)
		}, want: st(400), body: codeParse},
		{name: "overlong UTF-8", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"\xc0\xaf"}}`)
		}, want: st(400), body: codeParse},
		{name: "UTF-8-encoded surrogate", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1,"method":"tools/l\xed\xa0\x80ist"}`)
		}, want: st(400), body: codeParse},
		{name: "nesting 1,000 levels", send: func(e *catEnv) string { return e.post("alice", e.alice, nested(1000)) },
			want: st(200), body: `"id":9`},
		{name: "nesting 1,001 levels (the Go SDK's limit)", send: func(e *catEnv) string { return e.post("alice", e.alice, nested(1001)) },
			want: st(400), body: codeParse},
		{name: "huge JSON within the limit", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"`+strings.Repeat("a", catMaxBody-200)+`"}}`)
		}, want: st(200), body: `"result":{}`},
		{name: "1 MiB method name", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1,"method":"`+strings.Repeat("m", 1<<20)+`"}`)
		}, want: st(400), body: "upstream refused the message: HTTP 400"},
		{name: "huge integer id", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"tools/list"}`)
		}, want: st(200), body: `"id":123456789012345678901234567890`},
		{name: "id 1e400", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1e400,"method":"tools/list"}`)
		}, want: st(200), body: `"id":1e400`},
		{name: "fractional id", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":-1.5,"method":"tools/list"}`)
		}, want: st(200), body: `"id":-1.5`},
		{name: "huge string id", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":"`+strings.Repeat("i", 100_000)+`","method":"tools/list"}`)
		}, want: st(200), body: `"result"`},
		{name: "boolean id", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":true,"method":"tools/list"}`)
		},
			want: st(400), body: codeInvalid},
		{name: "object id", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":{},"method":"tools/list"}`)
		},
			want: st(400), body: codeInvalid},
		{name: "array id", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":[1],"method":"tools/list"}`)
		},
			want: st(400), body: codeInvalid},
		{name: "not JSON-RPC", send: func(e *catEnv) string { return e.post("alice", e.alice, `{"foo":1}`) },
			want: st(400), body: codeInvalid},
		{name: "JSON-RPC 1.0", send: func(e *catEnv) string { return e.post("alice", e.alice, `{"jsonrpc":"1.0","id":1,"method":"x"}`) },
			want: st(400), body: codeInvalid},
		{name: "method not a string", send: func(e *catEnv) string { return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1,"method":7}`) },
			want: st(400), body: codeInvalid},
		{name: "scalar body", send: func(e *catEnv) string { return e.post("alice", e.alice, `42`) },
			want: st(400), body: codeInvalid},
		{name: "empty batch", send: func(e *catEnv) string { return e.post("alice", e.alice03, `[]`) },
			want: st(400), body: codeInvalid},
		{name: "batch on a 2025-06-18 session", send: func(e *catEnv) string { return e.post("alice", e.alice, "["+catList+"]") },
			want: st(400), body: codeInvalid},
		{name: "mixed batch", send: func(e *catEnv) string {
			return e.post("alice", e.alice03, `[`+catList+`,{"jsonrpc":"2.0","method":"notifications/progress","params":{}},{"jsonrpc":"2.0","id":"s1","result":{}}]`)
		}, want: st(200), body: `"id":7`},
		{name: "huge batch", send: func(e *catEnv) string {
			msgs := make([]string, 2000)
			for i := range msgs {
				msgs[i] = `{"jsonrpc":"2.0","id":` + strconv.Itoa(i+1) + `,"method":"tools/list"}`
			}
			return e.post("alice", e.alice03, "["+strings.Join(msgs, ",")+"]")
		}, want: st(200), body: `"id":2000`},
		{name: "batch with initialize", send: func(e *catEnv) string { return e.post("alice", e.alice03, "["+initBody("2025-03-26")+"]") },
			want: st(400), body: codeInvalid},
		{name: "batch with one id twice", send: func(e *catEnv) string { return e.post("alice", e.alice03, "["+catList+","+catList+"]") },
			want: st(400), body: codeInvalid},
		{name: "notification the upstream refuses in plain text", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","method":"notifications/unknown"}`)
		}, want: st(400), body: "upstream refused the message: HTTP 400"},
		{name: "upstream refusing the gateway's credentials", send: func(e *catEnv) string {
			return e.post("alice", e.alice, `{"jsonrpc":"2.0","id":1,"method":"x/unauthorized"}`)
		}, want: st(502), body: `"code":-32603`},
		{name: "Content-Type text/plain", send: func(e *catEnv) string {
			h := e.postH("alice", e.alice)
			h[1] = "Content-Type: text/plain"
			return raw("POST", "/mcp", h, catList)
		}, want: st(415)},
		{name: "two Content-Type", send: func(e *catEnv) string { return e.post("alice", e.alice, catList, "Content-Type: text/plain") },
			want: st(400), body: "more than one Content-Type"},
		{name: "no Accept", send: func(e *catEnv) string {
			h := e.postH("alice", e.alice)
			h[2] = "X-No-Accept: 1"
			return raw("POST", "/mcp", h, catList)
		}, want: st(406)},
		{name: "Last-Event-ID on POST", send: func(e *catEnv) string { return e.post("alice", e.alice, catList, "Last-Event-ID: 0_1") },
			want: st(400)},

		// -- streams and resumption --
		{name: "GET without text/event-stream", send: func(e *catEnv) string {
			return raw("GET", "/mcp", []string{"Host: localhost", e.bearer("alice"), "Mcp-Session-Id: " + e.alice}, "")
		}, want: st(406)},
		{name: "standalone stream", send: func(e *catEnv) string { return raw("GET", "/mcp", e.getH("alice", e.streamSession()), "") },
			want: st(200), header: map[string]string{"Content-Type": "text/event-stream"}},
		{name: "Last-Event-ID malformed", send: func(e *catEnv) string { return raw("GET", "/mcp", append(okGet(e), "Last-Event-ID: abc"), "") },
			want: st(400), body: "malformed Last-Event-ID"},
		{name: "Last-Event-ID overflow", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "Last-Event-ID: 0_99999999999999999999999"), "")
		}, want: st(400), body: "malformed Last-Event-ID"},
		{name: "Last-Event-ID stream overflow", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "Last-Event-ID: 99999999999999999999999_1"), "")
		}, want: st(400)},
		{name: "Last-Event-ID negative", send: func(e *catEnv) string { return raw("GET", "/mcp", append(okGet(e), "Last-Event-ID: -1_5"), "") },
			want: st(400)},
		{name: "Last-Event-ID negative sequence", send: func(e *catEnv) string { return raw("GET", "/mcp", append(okGet(e), "Last-Event-ID: 0_-5"), "") },
			want: st(400)},
		{name: "Last-Event-ID of a stream this session does not have", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "Last-Event-ID: 7_1"), "")
		}, want: st(400), body: "names no stream of this session"},
		{name: "Last-Event-ID ahead of the stream", send: func(e *catEnv) string {
			return raw("GET", "/mcp", e.getH("alice", e.streamSession(), "Last-Event-ID: 0_99999"), "")
		}, want: st(400), body: "ahead of the stream"},
		{name: "Last-Event-ID resuming the standalone stream", send: func(e *catEnv) string {
			return raw("GET", "/mcp", e.getH("alice", e.streamSession(), "Last-Event-ID: 0_0"), "")
		}, want: st(200), header: map[string]string{"Content-Type": "text/event-stream"}},
		{name: "two Last-Event-ID", send: func(e *catEnv) string {
			return raw("GET", "/mcp", append(okGet(e), "Last-Event-ID: 0_0", "Last-Event-ID: 0_1"), "")
		}, want: st(400), body: "more than one Last-Event-ID"},
		{name: "more streams than the cap", run: func(t *testing.T, e *catEnv) {
			sid := e.initialize("dave", "2025-06-18")
			e.made["dave"] = append(e.made["dave"], sid)
			open := func(data string) answer {
				c, err := net.Dial("tcp", e.addr)
				require.NoError(t, err)
				t.Cleanup(func() { _ = c.Close() })
				_, err = io.WriteString(c, data)
				require.NoError(t, err)
				as, _ := e.read(c, bufio.NewReader(c), data, 1, false)
				require.Len(t, as, 1)
				return as[0]
			}
			// The standalone stream and a call answered with a stream
			// that stays open fill the cap of two.
			assert.Equal(t, http.StatusOK, open(raw("GET", "/mcp", e.getH("dave", sid), "")).status)
			assert.Equal(t, http.StatusOK, open(e.post("dave", sid, `{"jsonrpc":"2.0","id":1,"method":"x/stream"}`)).status)
			a := open(e.post("dave", sid, catList))
			assert.Equal(t, http.StatusTooManyRequests, a.status)
			assert.Equal(t, "1", a.header.Get("Retry-After"))
			assert.Contains(t, a.body, "stream limit per session")
		}},
		{name: "rate limit", run: func(t *testing.T, e *catEnv) {
			var b strings.Builder
			for i := 0; i < catRateBurst+50; i++ {
				b.WriteString(e.post("carol", e.carol, catPing))
			}
			as := e.exchange(b.String(), catRateBurst+50)
			require.Len(t, as, catRateBurst+50)
			limited := 0
			for _, a := range as {
				if a.status == http.StatusTooManyRequests {
					limited++
					assert.NotEmpty(t, a.header.Get("Retry-After"))
				} else {
					assert.Equal(t, http.StatusOK, a.status)
				}
			}
			assert.Equal(t, http.StatusOK, as[0].status)
			assert.Positive(t, limited, "a burst past the limit gets 429")
			as = e.exchange(e.post("alice", e.alice, catPing), 1)
			assert.Equal(t, http.StatusOK, as[0].status, "another principal is not limited")
		}},
		{name: "sessions per principal", run: func(t *testing.T, e *catEnv) {
			for len(e.made["dave"]) < catPrincipalCap {
				e.made["dave"] = append(e.made["dave"], e.initialize("dave", "2025-06-18"))
			}
			as := e.exchange(e.post("dave", "", initBody("2025-06-18")), 1)
			require.Len(t, as, 1)
			assert.Equal(t, http.StatusTooManyRequests, as[0].status)
			assert.NotEmpty(t, as[0].header.Get("Retry-After"))
		}},
	}
}

// TestHostileCatalog runs the catalog, then checks that the gateway is
// whole: sessions made before it work, no goroutine was left behind, the
// heap is back to its level, and nothing was answered 500.
func TestHostileCatalog(t *testing.T) {
	e := newCatEnv(t, nil)
	e.alice = e.initialize("alice", "2025-06-18")
	e.alice03 = e.initialize("alice", "2025-03-26")
	e.bob = e.initialize("bob", "2025-06-18")
	e.carol = e.initialize("carol", "2025-06-18")
	as := e.exchange(e.post("alice", e.alice, catList), 1)
	require.Equal(t, http.StatusOK, as[0].status)

	heapBefore := settledHeap()
	baseline := goleak.IgnoreCurrent()

	cases := hostileCases()
	require.GreaterOrEqual(t, len(cases), 80, "the catalog covers at least 80 cases")
	var want5xx uint64
	for _, c := range cases {
		for _, code := range c.want {
			if code >= 500 {
				want5xx++
			}
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = nil }()
			if c.run != nil {
				c.run(t, e)
				return
			}
			data := c.send(e)
			as, closed := e.exchangeClose(data, len(c.want), c.closes)
			got := make([]int, len(as))
			for i, a := range as {
				got[i] = a.status
				assert.NotEqual(t, http.StatusInternalServerError, a.status)
				if sid := a.header.Get("Mcp-Session-Id"); sid != "" {
					e.made["alice"] = append(e.made["alice"], sid)
				}
			}
			require.Equal(t, c.want, got, "statuses (last body: %s)", lastBody(as))
			last := as[len(as)-1]
			for h, v := range c.header {
				assert.Contains(t, last.header.Get(h), v, "header %s", h)
			}
			if c.body != "" {
				assert.Contains(t, last.body, c.body)
			}
			if c.status() >= 400 && last.body != "" {
				assert.Contains(t, last.body, `"jsonrpc":"2.0"`, "error answers carry a JSON-RPC body")
			}
			if c.closes {
				assert.True(t, closed, "the connection is closed after the answer")
			}
		})
	}
	e.t = t

	// The sessions made before the table still work.
	for _, sid := range []string{e.alice, e.alice03} {
		as := e.exchange(e.post("alice", sid, catList), 1)
		assert.Equal(t, http.StatusOK, as[0].status, "session %s", sid)
	}
	as = e.exchange(e.post("bob", e.bob, catList), 1)
	assert.Equal(t, http.StatusOK, as[0].status)
	assert.Equal(t, want5xx, e.srv.Metrics().Status5xx, "no 5xx but the table's (502 for the upstream's 401, 505)")
	assert.Positive(t, e.srv.Metrics().PrincipalMismatches)
	var upstreamErrors uint64
	for _, n := range e.srv.Metrics().UpstreamErrors {
		upstreamErrors += n
	}
	assert.Equal(t, uint64(1), upstreamErrors,
		"the upstream's refusals (4xx) are not upstream failures; only its 401 of the gateway's credentials is")

	// End the sessions the table made (a session with a standalone stream
	// has a pump reading its upstream), then nothing may be left.
	for p, sids := range e.made {
		for _, sid := range sids {
			as := e.exchange(raw("DELETE", "/mcp", []string{"Host: localhost", e.bearer(p), "Mcp-Session-Id: " + sid}, ""), 1)
			assert.Equal(t, http.StatusNoContent, as[0].status)
		}
	}
	var leak error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if leak = goleak.Find(baseline,
			goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),
			goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2")); leak == nil {
			break
		}
	}
	assert.NoError(t, leak, "goroutines left behind by the catalog")
	heapAfter := settledHeap()
	t.Logf("heap in use: %d KiB before the catalog, %d KiB after", heapBefore>>10, heapAfter>>10)
	assert.Less(t, heapAfter, heapBefore+8<<20, "the heap is back to its level")
}

func (c hostileCase) status() int {
	if len(c.want) == 0 {
		return 0
	}
	return c.want[len(c.want)-1]
}

func lastBody(as []answer) string {
	if len(as) == 0 {
		return "(none)"
	}
	b := as[len(as)-1].body
	if len(b) > 300 {
		b = b[:300] + "..."
	}
	return b
}

// settledHeap is the live heap after the garbage collector has run twice
// (sync.Pools are emptied over two cycles).
func settledHeap() uint64 {
	var ms runtime.MemStats
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
