//go:build integration

package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
)

// postAnswers sends one POST and returns every JSON-RPC message of its
// answer, JSON or SSE, in order (a JSON batch is split).
func postAnswers(t *testing.T, url, sid, version, body string) (int, [][]byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("MCP-Protocol-Version", version)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var msgs [][]byte
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		dec := sse.NewDecoder(bufio.NewReaderSize(resp.Body, 64<<10), 16<<20)
		for {
			ev, err := dec.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			if ev.HasData && len(bytes.TrimSpace(ev.Data)) > 0 {
				msgs = append(msgs, bytes.Clone(ev.Data))
			}
		}
		return resp.StatusCode, msgs
	}
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if len(b) == 0 {
		return resp.StatusCode, nil
	}
	var batch []json.RawMessage
	if json.Unmarshal(b, &batch) == nil {
		for _, m := range batch {
			msgs = append(msgs, m)
		}
		return resp.StatusCode, msgs
	}
	return resp.StatusCode, [][]byte{b}
}

// answerIDs returns the raw ids of the responses among msgs.
func answerIDs(t *testing.T, msgs [][]byte) []string {
	t.Helper()
	var p jsonrpc.Parser
	var ids []string
	for _, m := range msgs {
		parsed, _, perr := p.Parse(m)
		require.Nil(t, perr, "%s", m)
		if k := parsed[0].Kind; k == jsonrpc.KindResponse || k == jsonrpc.KindError {
			ids = append(ids, string(parsed[0].ID))
		}
	}
	return ids
}

// TestBatchOfTenThousandPings: a 2025-03-26 batch of 10,000 pings on one
// POST, read by a fast client through the default ring (256 events): every
// answer arrives exactly once (the gateway waits for the reader instead of
// overflowing), as when the upstream is asked directly.
func TestBatchOfTenThousandPings(t *testing.T) {
	s := startStack(t)
	const n = 10_000
	var b strings.Builder
	b.WriteByte('[')
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)
	}
	b.WriteByte(']')
	for _, target := range []struct{ name, url string }{{"direct", s.up.URL}, {"gateway", s.gw.URL}} {
		t.Run(target.name, func(t *testing.T) {
			sid := rawSession(t, target.url, "2025-03-26")
			status, msgs := postAnswers(t, target.url, sid, "2025-03-26", b.String())
			require.Equal(t, http.StatusOK, status)
			ids := answerIDs(t, msgs)
			seen := make(map[string]int, n)
			for _, id := range ids {
				seen[id]++
			}
			for i := 1; i <= n; i++ {
				require.Equal(t, 1, seen[fmt.Sprint(i)], "answer to ping %d exactly once", i)
			}
			assert.Len(t, ids, n)
		})
	}
}

// TestIDsAnswerOnceWhateverTheUpstreamDoes: ids that a JavaScript upstream
// re-encodes (-0, 1.50, 1e2, big integers, escaped strings) each get one
// answer, carrying the id exactly as the client sent it, for a JSON and an
// SSE answer; never a second, gateway-made error.
func TestIDsAnswerOnceWhateverTheUpstreamDoes(t *testing.T) {
	up := testenv.StartServerEverything(t, testenv.Env(t, "MCPGATE_NODE"), testenv.Env(t, "MCPGATE_SERVER_EVERYTHING_JS"))
	gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), up.URL)
	sid := rawSession(t, gw.URL, "2025-06-18")
	ids := []string{`-0`, `1.50`, `1e2`, `0.0`, `9007199254740993`, `9223372036854775808`,
		`12345678901234567890123`, `"\u0061bc"`, `"a\/b"`, `-1.5E-3`}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			for _, body := range []string{
				`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list"}`,
				`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`,
			} {
				status, msgs := postAnswers(t, gw.URL, sid, "2025-06-18", body)
				require.Equal(t, http.StatusOK, status)
				got := answerIDs(t, msgs)
				require.Equal(t, []string{id}, got, "one answer, under the client's id as sent")
				var p jsonrpc.Parser
				for _, m := range msgs {
					parsed, _, _ := p.Parse(m)
					assert.NotEqual(t, jsonrpc.KindError, parsed[0].Kind, "an error answer: %.300s", m)
				}
			}
		})
	}
}
