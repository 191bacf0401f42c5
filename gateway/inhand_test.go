package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// answeringUpstream answers tools/call with an SSE stream written as mode
// says, and records the connections its calls came on.
type answeringUpstream struct {
	mu    sync.Mutex
	mode  string
	conns map[string]bool
}

func (u *answeringUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusOK)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if !strings.Contains(string(body), `"tools/call"`) {
		var init struct {
			Method string
			Params struct{ ProtocolVersion string }
		}
		if json.Unmarshal(body, &init) != nil || init.Method != "initialize" {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Mcp-Session-Id", "up-"+init.Params.ProtocolVersion)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":%q,"capabilities":{},"serverInfo":{"name":"answering","version":"1"}}}`, init.Params.ProtocolVersion)
		return
	}
	var ids []json.RawMessage
	var batch []struct{ ID json.RawMessage }
	if json.Unmarshal(body, &batch) == nil {
		for _, m := range batch {
			ids = append(ids, m.ID)
		}
	} else {
		var one struct{ ID json.RawMessage }
		_ = json.Unmarshal(body, &one)
		ids = append(ids, one.ID)
	}
	u.mu.Lock()
	mode := u.mode
	u.conns[r.RemoteAddr] = true
	u.mu.Unlock()
	result := func(i int) string {
		return fmt.Sprintf("id: r%d\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"answer %d\"}]}}\n\n", i, ids[i], i)
	}
	const progress = "id: p\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\n"
	w.Header().Set("Content-Type", "text/event-stream")
	flush := func(s string) {
		_, _ = io.WriteString(w, s)
		w.(http.Flusher).Flush()
	}
	switch mode {
	case "whole": // the body with a length: it all comes with the headers
		w.Header().Set("Content-Length", strconv.Itoa(len(result(0))))
		_, _ = io.WriteString(w, result(0))
	case "split": // the response, then the end of the body on its own
		flush(result(0))
	case "notification first": // a notification at once, the response a moment later
		flush(progress)
		time.Sleep(5 * time.Millisecond)
		flush(result(0))
	case "late": // a notification at once, the response later
		flush(progress)
		time.Sleep(150 * time.Millisecond)
		flush(result(0))
	case "headers first": // the headers on their own, the response a moment later
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(5 * time.Millisecond)
		flush(result(0))
	case "headers, then slow": // the response after the whole-answer window
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(150 * time.Millisecond)
		flush(result(0))
	case "batch": // one answer at once, the other later
		flush(result(0))
		time.Sleep(150 * time.Millisecond)
		flush(result(1))
	}
}

func (u *answeringUpstream) set(mode string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mode = mode
	u.conns = map[string]bool{}
}

func (u *answeringUpstream) callConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// postSSE sends body on session sid and returns the answer's content type
// and body.
func postSSE(t *testing.T, url, sid, body string) (string, string) {
	t.Helper()
	return postAs(t, url, sid, "2025-11-25", body)
}

func postAs(t *testing.T, url, sid, version, body string) (string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", version)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return resp.Header.Get("Content-Type"), string(b)
}

func toolCall(id string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"x","arguments":{}}}`
}

// TestAnswersRelayedFromWhatArrived: SSE answers that come whole with their
// headers, or in parts, reach the client complete, under the client's ids,
// in order; an answer that came whole leaves its upstream connection to the
// next call (it was read to its end at once).
func TestAnswersRelayedFromWhatArrived(t *testing.T) {
	up := &answeringUpstream{}
	url := gatewayInFront(t, up)
	sid := initSession(t, url)
	require.NotEmpty(t, sid)

	for _, mode := range []string{"whole", "split", "headers first", "headers, then slow"} {
		up.set(mode)
		for i := 0; i < 3; i++ {
			id := fmt.Sprintf(`"%s-%d"`, strings.ReplaceAll(mode, " ", "-"), i)
			ct, body := postSSE(t, url, sid, toolCall(id))
			assert.True(t, strings.HasPrefix(ct, "text/event-stream"), mode)
			assert.Contains(t, body, `"id":`+id+`,"result"`, "%s call %d: %q", mode, i, body)
			assert.Equal(t, 1, strings.Count(body, `"result"`), "%s call %d: one answer", mode, i)
		}
		if mode == "whole" {
			assert.Equal(t, 1, up.callConns(), "whole answers are read to their end at once: one connection serves every call")
		}
	}

	for i, mode := range []string{"notification first", "late"} {
		up.set(mode)
		id := strconv.Itoa(7 + i)
		_, body := postSSE(t, url, sid, toolCall(id))
		p, r := strings.Index(body, "notifications/progress"), strings.Index(body, `"id":`+id+`,"result"`)
		require.True(t, p >= 0 && r > p, "%s: the notification, then the answer that came later: %q", mode, body)
	}

	// Batches are of 2025-03-26.
	old := initSessionAt(t, url, "2025-03-26")
	require.NotEmpty(t, old)
	up.set("batch")
	_, body := postAs(t, url, old, "2025-03-26", "["+toolCall(`"a"`)+","+toolCall(`"b"`)+"]")
	assert.Contains(t, body, `"id":"a","result"`, "the answer that came with the headers: %q", body)
	assert.Contains(t, body, `"id":"b","result"`, "the one that came later, by the pump that went on: %q", body)
	assert.Equal(t, 1, strings.Count(body, `"id":"a"`), "one answer for a: %q", body)
	assert.Equal(t, 1, strings.Count(body, `"id":"b"`), "one answer for b: %q", body)
}
