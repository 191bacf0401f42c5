package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// credentialUpstream is a session-era Streamable HTTP upstream that binds
// each session to the Authorization header of its initialize, as servers
// that authenticate their users do. It records every request made on a
// session with another header than the one that opened it, and answers
// tools/list with a tool named after the session's credential, so a test
// sees whose session served a client.
type credentialUpstream struct {
	*httptest.Server
	mu       sync.Mutex
	opened   []string          // the Authorization of each initialize, in order
	owner    map[string]string // upstream session id -> Authorization of its initialize
	mismatch []string          // "METHOD session: opened with X, used with Y"
}

func newCredentialUpstream(t *testing.T) *credentialUpstream {
	cu := &credentialUpstream{owner: map[string]string{}}
	cu.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := r.Header.Get("Authorization")
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"params"`
		}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(b, &m)
		}
		cu.mu.Lock()
		if m.Method == "initialize" {
			sid := fmt.Sprintf("up-%d", len(cu.opened)+1)
			cu.opened = append(cu.opened, cred)
			cu.owner[sid] = cred
			cu.mu.Unlock()
			w.Header().Set("Mcp-Session-Id", sid)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":%q,"capabilities":{"tools":{}},"serverInfo":{"name":"up","version":"1"}}}`,
				m.ID, m.Params.ProtocolVersion)
			return
		}
		sid := r.Header.Get("Mcp-Session-Id")
		owner, known := cu.owner[sid]
		if known && owner != cred {
			cu.mismatch = append(cu.mismatch, fmt.Sprintf("%s %s %s: opened with %q, used with %q", r.Method, sid, m.Method, owner, cred))
		}
		cu.mu.Unlock()
		switch {
		case !known:
			http.Error(w, "unknown session", http.StatusNotFound)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case r.Method != http.MethodPost:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case len(m.ID) == 0:
			w.WriteHeader(http.StatusAccepted)
		default:
			// Answered as the session's owner, whatever the request
			// carries: a server that binds its sessions to the user who
			// opened them.
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":%q,"inputSchema":{"type":"object"}}]}}`,
				m.ID, "tool-of-"+owner)
		}
	}))
	t.Cleanup(cu.Close)
	return cu
}

func (cu *credentialUpstream) state() (opened, mismatch []string) {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	return append([]string(nil), cu.opened...), append([]string(nil), cu.mismatch...)
}

// TestPoolNeverSharesForwardedCredentials: with -upstream-auth forward and
// no authentication of the gateway's own, every stateless client is
// anonymous (the same principal, ""); the pooled upstream sessions that
// serve them over a session-era upstream must still never be shared
// between clients with different Authorization headers. The pool used to
// key its sessions by principal and capabilities alone, so the session
// opened with the first client's token served the next clients: the second
// client's requests went out on it (under its own header, or none), and
// the upstream answered them as the first client.
func TestPoolNeverSharesForwardedCredentials(t *testing.T) {
	cu := newCredentialUpstream(t)
	t.Cleanup(func() {
		// After the gateway's shutdown (cleanups run last first): the
		// pooled sessions' DELETEs carried their own credentials too.
		_, mismatch := cu.state()
		assert.Empty(t, mismatch, "an upstream session was used with another client's credential")
	})
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: cu.URL + "/mcp", Timeout: 5 * time.Second,
		Auth: upstream.AuthHeader{Name: "Authorization", Forward: true}})
	require.NoError(t, err)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr, UpstreamEra: gateway.UpstreamEraSession, ForwardAuthorization: true})

	list := func(id int, authorization string) string {
		t.Helper()
		hdr := mh("tools/list")
		if authorization != "" {
			hdr["Authorization"] = authorization
		}
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{%s}}`, id, meta)
		status, got, _ := statelessPost(t, url, body, hdr)
		require.Equal(t, http.StatusOK, status, got)
		var r struct {
			Result struct {
				Tools []struct {
					Name string `json:"name"`
				} `json:"tools"`
			} `json:"result"`
		}
		require.NoError(t, json.Unmarshal([]byte(got), &r), got)
		require.Len(t, r.Result.Tools, 1, got)
		return r.Result.Tools[0].Name
	}
	const alice, bob = "Bearer alice-token", "Bearer bob-token"
	assert.Equal(t, "tool-of-"+alice, list(1, alice))
	assert.Equal(t, "tool-of-"+bob, list(2, bob), "bob was served by the session opened with alice's token")
	assert.Equal(t, "tool-of-", list(3, ""), "a client without credentials was served by a session opened with someone's token")
	assert.Equal(t, "tool-of-"+alice, list(4, alice))
	assert.Equal(t, "tool-of-"+bob, list(5, bob))

	opened, mismatch := cu.state()
	assert.Empty(t, mismatch, "an upstream session was used with another client's credential")
	sort.Strings(opened)
	assert.Equal(t, []string{"", alice, bob}, opened,
		"one pooled upstream session per credential, each opened with its own, and reused by its own client")
}

// TestPoolResumeStaysWithItsClient: the requestState of an upstream call
// waiting for a client's input (input_required) continues that call for
// the client that started it only. Another client (another principal, or
// with -upstream-auth forward another forwarded credential or none)
// presenting it is told the state is unknown, its input never reaches the
// call nor the call's result it, and the call still waits for its own
// client, whose retry completes it.
func TestPoolResumeStaysWithItsClient(t *testing.T) {
	const alice, bob = "Bearer alice-token", "Bearer bob-token"
	for name, c := range map[string]struct {
		cfg    gateway.Config
		others []string
	}{
		"another principal":  {gateway.Config{Authenticator: testenv.TwoPrincipals{}}, []string{bob}},
		"another credential": {gateway.Config{UpstreamEra: gateway.UpstreamEraSession, ForwardAuthorization: true}, []string{bob, ""}},
	} {
		t.Run(name, func(t *testing.T) { poolResumeStaysWithItsClient(t, c.cfg, alice, c.others) })
	}
}

func poolResumeStaysWithItsClient(t *testing.T, cfg gateway.Config, owner string, others []string) {
	up := testenv.NewFakeUpstream(t)
	up.On("tools/call", testenv.Stream(
		testenv.Msg(`{"jsonrpc":"2.0","id":"srv-1","method":"elicitation/create","params":{"message":"name?"}}`),
		testenv.Respond(`{"content":[{"type":"text","text":"the owner's answer"}]}`),
	))
	url := inProcess(t, up, cfg)
	as := func(who string) map[string]string {
		hdr := mh("tools/call", "Mcp-Name", "ask")
		if who != "" {
			hdr["Authorization"] = who
		}
		return hdr
	}

	call := `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"ask","arguments":{},` + meta + `}}`
	status, body, _ := statelessPost(t, url, call, as(owner))
	require.Equal(t, http.StatusOK, status, body)
	var irr struct {
		Result struct {
			ResultType   string `json:"resultType"`
			RequestState string `json:"requestState"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &irr), body)
	require.Equal(t, "input_required", irr.Result.ResultType, body)

	retry := func(id string) string {
		return `{"jsonrpc":"2.0","id":"` + id + `","method":"tools/call","params":{"name":"ask","arguments":{},` +
			`"inputResponses":{"r1":{"action":"accept","content":{"name":"Mallory"}}},` +
			`"requestState":"` + irr.Result.RequestState + `",` + meta + `}}`
	}
	for _, who := range others {
		status, body, _ = statelessPost(t, url, retry("c2"), as(who))
		assert.Equal(t, http.StatusBadRequest, status, body)
		assert.Contains(t, body, "unknown or expired requestState", "another client continued the owner's call")
		assert.NotContains(t, body, "the owner's answer")
	}
	assert.NotContains(t, strings.Join(up.Sent(), "\n"), "Mallory", "another client's input reached the owner's call")

	status, body, _ = statelessPost(t, url, retry("c3"), as(owner))
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "the owner's answer")
	assert.Contains(t, body, `"id":"c3"`)
}
