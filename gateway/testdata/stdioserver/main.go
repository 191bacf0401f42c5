// Command stdioserver is a minimal MCP server on stdin/stdout for the
// gateway's stdio integration tests: it answers initialize (with the
// version asked for), tools/list and any other request with an empty
// result, ignores notifications and exits at the end of its input (with
// STDIOSERVER_LINGER set it stays until a signal ends it). It is small, so
// a test can run a thousand of them.
//
// Two tools do more, for the zero-loss tests:
//   - "stream" {count, rate}: count notifications/progress (1..count) for
//     the request's progress token, rate per second, then the result with
//     structuredContent {"emitted": count}; other requests are answered
//     meanwhile;
//   - "notify": notifications/tools/list_changed, then an empty result.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// out is stdout, one whole message per line, from any goroutine.
type out struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *out) send(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format+"\n", args...)
	o.w.Flush()
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 4<<20)
	o := &out{w: bufio.NewWriter(os.Stdout)}
	var streams sync.WaitGroup
	for in.Scan() {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				ProtocolVersion string `json:"protocolVersion"`
				Name            string `json:"name"`
				Arguments       struct {
					Count int     `json:"count"`
					Rate  float64 `json:"rate"`
				} `json:"arguments"`
				Meta struct {
					ProgressToken json.RawMessage `json:"progressToken"`
				} `json:"_meta"`
			} `json:"params"`
		}
		if json.Unmarshal(in.Bytes(), &m) != nil || m.ID == nil || m.Method == "" {
			continue
		}
		var result string
		switch {
		case m.Method == "initialize":
			v, _ := json.Marshal(m.Params.ProtocolVersion)
			result = fmt.Sprintf(`{"protocolVersion":%s,"capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"stdioserver","version":"1"}}`, v)
		case m.Method == "tools/list":
			result = `{"tools":[]}`
		case m.Method == "tools/call" && m.Params.Name == "stream":
			streams.Add(1)
			go func() {
				defer streams.Done()
				stream(o, m.ID, m.Params.Meta.ProgressToken, m.Params.Arguments.Count, m.Params.Arguments.Rate)
			}()
			continue
		case m.Method == "tools/call" && m.Params.Name == "notify":
			o.send(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
			result = `{"content":[]}`
		default:
			result = `{}`
		}
		o.send(`{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, result)
	}
	streams.Wait()
	if os.Getenv("STDIOSERVER_LINGER") != "" {
		// Outlive the end of the input: only a signal ends this process
		// (the test of what a killed gateway leaves behind).
		select {}
	}
}

// stream sends count progress notifications at rate per second, then the
// result of request id.
func stream(o *out, id, token json.RawMessage, count int, rate float64) {
	if rate <= 0 {
		rate = 1000
	}
	start := time.Now()
	for i := 1; i <= count; i++ {
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		if token != nil {
			o.send(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%s,"progress":%d,"total":%d}}`, token, i, count)
		}
	}
	o.send(`{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"streamed %d"}],"structuredContent":{"emitted":%d}}}`, id, count, count)
}
