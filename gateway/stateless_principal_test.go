package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// twoPrincipals authenticates the tokens "alice-token" and "bob-token".
type twoPrincipals struct{}

func (twoPrincipals) Authenticate(tok []byte) (auth.Identity, error) {
	switch string(tok) {
	case "alice-token":
		return auth.Identity{Principal: "alice", AllScopes: true}, nil
	case "bob-token":
		return auth.Identity{Principal: "bob", AllScopes: true}, nil
	}
	return auth.Identity{}, auth.ErrInvalidToken
}

// TestStatelessRequestStateBoundToPrincipal: the requestState of a call
// waiting for input (a stateless client over a session-era upstream) names
// a call on the pooled upstream session of the principal that made it. Another
// principal retrying with it must not answer that call's server requests
// nor receive its result: it gets the error of an unknown requestState, and
// the call stays the owner's to continue.
func TestStatelessRequestStateBoundToPrincipal(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	up.On("tools/call", testenv.Stream(
		testenv.Msg(`{"jsonrpc":"2.0","id":"srv-1","method":"elicitation/create","params":{"message":"card number?"}}`),
		testenv.Respond(`{"content":[{"type":"text","text":"alice's secret"}]}`),
	))
	url := inProcess(t, up, gateway.Config{Authenticator: twoPrincipals{}})
	as := func(token, method string, extra ...string) map[string]string {
		h := mh(method, extra...)
		h["Authorization"] = "Bearer " + token
		return h
	}

	call := `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"pay","arguments":{},` + meta + `}}`
	status, body, _ := statelessPost(t, url, call, as("alice-token", "tools/call", "Mcp-Name", "pay"))
	require.Equal(t, http.StatusOK, status, body)
	var irr struct {
		Result struct {
			ResultType   string `json:"resultType"`
			RequestState string `json:"requestState"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &irr), body)
	require.Equal(t, "input_required", irr.Result.ResultType, body)

	retry := `{"jsonrpc":"2.0","id":"c2","method":"tools/call","params":{"name":"pay","arguments":{},` +
		`"inputResponses":{"r1":{"action":"accept","content":{"card":"4111"}}},` +
		`"requestState":"` + irr.Result.RequestState + `",` + meta + `}}`
	status, body, _ = statelessPost(t, url, retry, as("bob-token", "tools/call", "Mcp-Name", "pay"))
	assert.NotContains(t, body, "alice's secret", "bob got alice's result")
	assert.Contains(t, body, "unknown or expired requestState", "status %d", status)

	status, body, _ = statelessPost(t, url, retry, as("alice-token", "tools/call", "Mcp-Name", "pay"))
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "alice's secret", "the owner continues the call")
}
