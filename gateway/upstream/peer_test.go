package upstream

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The stdio tests run this test binary again as their child process: with
// MCPGATE_TEST_PEER set, TestMain runs runPeer instead of the tests.
const peerEnv = "MCPGATE_TEST_PEER"

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(peerEnv); ok {
		os.Exit(runPeer(mode))
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

// peerEnvFor is the environment a test passes to a peer child: the mode,
// PATH, and no race-detector sleep at exit (the transport passes nothing
// else).
func peerEnvFor(mode string, extra ...string) []string {
	return append([]string{peerEnv + "=" + mode, "PATH=" + os.Getenv("PATH"), "GORACE=atexit_sleep_ms=0"}, extra...)
}

// peerMsg is what the peer reads.
type peerMsg struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
		Meta      struct {
			ProgressToken json.RawMessage `json:"progressToken"`
		} `json:"_meta"`
		ProtocolVersion string `json:"protocolVersion"`
	} `json:"params"`
	Result json.RawMessage `json:"result,omitempty"`
}

// runPeer is a scripted stdio MCP server. Modes: "serve" (the default
// behaviour below), "ignore-term" (also ignores SIGTERM and stdin EOF),
// "leave-group" (moves to its parent's process group, then as "ignore-term"),
// "sleep" (does nothing until killed), "no-read" (answers initialize, then
// never reads stdin again), "silent" (never answers anything), "die-early"
// (exits 7 before reading anything).
//
// tools/call names: "progress" (3 progress notifications for the call's
// token and a log message, then the result), "sample" (a
// sampling/createMessage request; the result carries the client's answer),
// "ping" (pings the client; the result says whether the pong came), "hold"
// (answered only by a later "release", which first sends a log message),
// "listchanged" (notifications/tools/list_changed, then the result), "env"
// (the environment), "stderr" (arguments.n lines on stderr), "big"
// (a line of arguments.n bytes), "exit" (exits with arguments.code),
// "killself" (SIGKILLs itself), "fork" (starts a grandchild in its group,
// result: its pid), "answer-exit" (arguments.requests roots/list requests,
// then the result, then exits 0 at once). Other requests get an empty result; notifications are
// ignored.
func runPeer(mode string) int {
	switch mode {
	case "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case "die-early":
		fmt.Fprintln(os.Stderr, "peer: dying early")
		return 7
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	case "leave-group":
		// Joins its parent's process group, as job-control code may do,
		// then behaves as "ignore-term".
		pgid, err := syscall.Getpgid(os.Getppid())
		if err == nil {
			err = syscall.Setpgid(0, pgid)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "peer: leave-group:", err)
		}
		signal.Ignore(syscall.SIGTERM)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	ps := &peerState{write: func(s string) {
		mu.Lock()
		defer mu.Unlock()
		out.WriteString(s)
		out.WriteByte('\n')
		out.Flush()
	}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	for in.Scan() {
		var m peerMsg
		if err := json.Unmarshal(in.Bytes(), &m); err != nil {
			fmt.Fprintf(os.Stderr, "peer: bad line %q\n", in.Text())
			continue
		}
		if mode == "silent" {
			continue
		}
		if code, exit := ps.handle(m); exit {
			return code
		}
		if m.Method == "initialize" && mode == "no-read" {
			for {
				time.Sleep(time.Hour)
			}
		}
	}
	if mode == "ignore-term" || mode == "leave-group" {
		for {
			time.Sleep(time.Hour)
		}
	}
	return 0
}

// peerState is the scripted server's logic, shared by the stdio peer and
// the legacy HTTP+SSE test server. write sends one message.
type peerState struct {
	write   func(string)
	mu      sync.Mutex // guards waiting and held (the SSE server handles POSTs concurrently)
	waiting map[string]func(peerMsg)
	held    []json.RawMessage
}

// handle processes one message; exit asks the stdio peer to exit with code.
func (ps *peerState) handle(m peerMsg) (code int, exit bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	write := ps.write
	result := func(id json.RawMessage, res string) {
		write(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":%s}`, id, res))
	}
	if ps.waiting == nil {
		ps.waiting = map[string]func(peerMsg){}
	}
	if m.Method == "" { // an answer to one of our requests
		if f := ps.waiting[string(m.ID)]; f != nil {
			delete(ps.waiting, string(m.ID))
			f(m)
		}
		return 0, false
	}
	if m.ID == nil {
		return 0, false // a notification
	}
	switch m.Method {
	case "initialize":
		v := os.Getenv("PEER_VERSION")
		if v == "" {
			v = "2025-06-18"
		}
		if v == "error" {
			write(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":{"code":-32602,"message":"unsupported"}}`, m.ID))
			return 0, false
		}
		result(m.ID, fmt.Sprintf(`{"protocolVersion":%q,"capabilities":{},"serverInfo":{"name":"peer","version":"1"}}`, v))
		return 0, false
	case "tools/call":
	default:
		result(m.ID, `{}`)
		return 0, false
	}
	id, args := m.ID, m.Params.Arguments
	switch m.Params.Name {
	case "progress":
		tok := m.Params.Meta.ProgressToken
		for i := 1; i <= 3; i++ {
			write(fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%s,"progress":%d,"total":3}}`, tok, i))
		}
		write(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working"}}`)
		result(id, `{"content":[{"type":"text","text":"done"}]}`)
	case "sample":
		write(`{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}}`)
		ps.waiting[`"s1"`] = func(a peerMsg) { result(id, fmt.Sprintf(`{"sampled":%s}`, a.Result)) }
	case "ping":
		write(`{"jsonrpc":"2.0","id":"p1","method":"ping"}`)
		ps.waiting[`"p1"`] = func(a peerMsg) { result(id, fmt.Sprintf(`{"pong":%s}`, a.Result)) }
	case "hold":
		ps.held = append(ps.held, id)
	case "release":
		write(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"releasing"}}`)
		for _, h := range ps.held {
			result(h, `{"held":true}`)
		}
		ps.held = nil
		result(id, `{"released":true}`)
	case "listchanged":
		write(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
		result(id, `{}`)
	case "env":
		b, _ := json.Marshal(os.Environ())
		result(id, fmt.Sprintf(`{"env":%s}`, b))
	case "stderr":
		n := int(args["n"].(float64))
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "peer stderr line %d\n", i)
		}
		os.Stderr.WriteString(b.String())
		result(id, `{}`)
	case "big":
		n := int(args["n"].(float64))
		write(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"` + strings.Repeat("x", n) + `"}}`)
		result(id, `{}`)
	case "exit":
		return int(args["code"].(float64)), true
	case "answer-exit":
		for i := 0; i < int(args["requests"].(float64)); i++ {
			write(fmt.Sprintf(`{"jsonrpc":"2.0","id":"r%d","method":"roots/list"}`, i))
		}
		result(id, `{"last":true}`)
		return 0, true
	case "killself":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	case "fork":
		cmd := exec.Command(os.Args[0])
		cmd.Env = []string{peerEnv + "=sleep"}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "peer: fork:", err)
			return 1, true
		}
		result(id, fmt.Sprintf(`{"pid":%d}`, cmd.Process.Pid))
	default:
		result(id, `{}`)
	}
	return 0, false
}
