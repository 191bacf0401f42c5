package harness

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// hostileKinds are the requests soak mixes into its load (Config.HostileRate), each
// sent over raw TCP on a connection of its own, because an HTTP client would refuse or
// repair them. The target must answer each with a 4xx or close the connection, never a
// 5xx, and go on serving everyone else.
var hostileKinds = []struct {
	name  string
	build func(h hostileEnv) string
	// answered: the target must answer (else closing the connection is enough).
	answered bool
	// cut: the client closes the connection right after sending (a slowloris that gives
	// up, a head cut short).
	cut bool
}{
	{"bare_lf", func(h hostileEnv) string {
		return strings.ReplaceAll(h.post(h.sid, `{"jsonrpc":"2.0","id":1,"method":"ping"}`), "\r\n", "\n")
	}, true, false},
	{"two_session_ids", func(h hostileEnv) string {
		return h.raw("DELETE", "/mcp", []string{"Mcp-Session-Id: " + h.sid, "Mcp-Session-Id: " + h.sid}, "")
	}, true, false},
	{"te_and_cl", func(h hostileEnv) string {
		return h.raw("POST", h.path, []string{"Content-Type: application/json", "Content-Length: 4", "Transfer-Encoding: chunked"}, "0\r\n\r\n")
	}, true, false},
	{"absolute_form_evil", func(h hostileEnv) string {
		return h.raw("POST", "http://evil.example"+h.path, []string{"Content-Type: application/json"}, `{}`)
	}, true, false},
	{"host_userinfo", func(h hostileEnv) string {
		return "GET " + h.path + " HTTP/1.1\r\nHost: " + h.host + "@evil.example\r\nConnection: close\r\n\r\n"
	}, true, false},
	{"origin_evil", func(h hostileEnv) string {
		return h.raw("POST", h.path, []string{"Origin: http://evil.example", "Content-Type: application/json"}, `{}`)
	}, true, false},
	{"bad_chunk", func(h hostileEnv) string {
		return h.raw("POST", h.path, []string{"Content-Type: application/json", "Transfer-Encoding: chunked"}, "zz\r\n{}\r\n0\r\n\r\n")
	}, true, false},
	{"invalid_utf8", func(h hostileEnv) string {
		return h.post(h.sid, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"x\":\"\xff\xfe\"}}")
	}, true, false},
	{"deep_nesting", func(h hostileEnv) string {
		return h.post(h.sid, `{"jsonrpc":"2.0","id":1,"method":"x","params":`+strings.Repeat("[", 10001)+strings.Repeat("]", 10001)+`}`)
	}, true, false},
	{"unknown_session", func(h hostileEnv) string {
		return h.post("0123456789abcdef0123456789abcdef", `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	}, true, false},
	{"bad_last_event_id", func(h hostileEnv) string {
		return h.raw("GET", h.path, []string{"Accept: text/event-stream", "Mcp-Session-Id: " + h.sid, "Last-Event-ID: 0_99999999999999999999999"}, "")
	}, true, false},
	// Refused before the rest is read: the close may reset the connection before the
	// answer arrives, so no answer is fine.
	{"huge_header", func(h hostileEnv) string {
		return h.raw("GET", h.path, []string{"X-Big: " + strings.Repeat("a", 16<<10)}, "")
	}, false, false},
	{"connect", func(h hostileEnv) string {
		return "CONNECT " + h.host + " HTTP/1.1\r\nHost: " + h.host + "\r\nConnection: close\r\n\r\n"
	}, true, false},
	{"head_cut_short", func(h hostileEnv) string {
		return "POST " + h.path + " HTTP/1.1\r\nHost: " + h.host + "\r\nContent-Le"
	}, false, true},
	{"body_cut_short", func(h hostileEnv) string {
		return h.raw("POST", h.path, []string{"Content-Type: application/json", "Content-Length: 1000"}, `{"jsonrpc":`)
	}, false, true},
}

// hostileEnv renders requests for the target.
type hostileEnv struct {
	host, path, auth, sid string
}

func (h hostileEnv) raw(method, target string, headers []string, body string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: " + h.host + "\r\nConnection: close\r\n")
	if h.auth != "" {
		b.WriteString("Authorization: " + h.auth + "\r\n")
	}
	framed := false
	for _, l := range headers {
		low := strings.ToLower(l)
		framed = framed || strings.HasPrefix(low, "content-length:") || strings.HasPrefix(low, "transfer-encoding:")
		b.WriteString(l + "\r\n")
	}
	if !framed && (body != "" || method == "POST") {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

func (h hostileEnv) post(sid, body string) string {
	hs := []string{"Content-Type: application/json", "Accept: application/json, text/event-stream"}
	if sid != "" {
		hs = append(hs, "Mcp-Session-Id: "+sid, "MCP-Protocol-Version: 2025-06-18")
	}
	return h.raw("POST", h.path, hs, body)
}

// hostile sends hostile request i (kinds in turn) and accounts its answer: a count per
// kind and status class ("hostile/<kind>/4xx"), an error for a 5xx or a request that
// must be answered and was not.
func (r *runner) hostile(lane *Lane, i uint64, sess *Session) {
	u, err := url.Parse(r.cfg.Target)
	if err != nil {
		return
	}
	k := hostileKinds[i%uint64(len(hostileKinds))]
	env := hostileEnv{host: u.Host, path: u.Path, auth: r.cfg.Authorization}
	if sess != nil {
		env.sid = sess.ID
	}
	lane.Add("ops", 1)
	lane.Add("hostile", 1)
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		lane.Error("hostile_dial")
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(r.cfg.Timeout))
	if _, err := c.Write([]byte(k.build(env))); err != nil {
		lane.Error("hostile_write")
		return
	}
	if k.cut {
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if k.answered {
			lane.Error("hostile_" + k.name + "_no_answer")
		}
		return
	}
	_ = resp.Body.Close()
	class := strconv.Itoa(resp.StatusCode/100) + "xx"
	lane.Add("hostile/"+k.name+"/"+class, 1)
	if resp.StatusCode >= 500 {
		lane.Error("hostile_" + k.name + "_" + class)
	}
}
