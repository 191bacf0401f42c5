package jsonrpc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendReplaced(t *testing.T) {
	var p Parser
	body := []byte(` {"jsonrpc":"2.0","id":1.50,"method":"tools/call","params":{"x":"1.50"}} `)
	msgs, _, err := p.Parse(body)
	require.Nil(t, err)
	out := AppendReplaced(nil, body, msgs[0].ID, []byte("7"))
	assert.Equal(t, ` {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"1.50"}} `, string(out))
	out = AppendReplaced(nil, msgs[0].Raw, msgs[0].ID, []byte(`"a"`))
	assert.Equal(t, `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"x":"1.50"}}`, string(out))

	cancel := []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x\/y","reason":"r"}}`)
	rid, ok := Lookup(cancel, "params", "requestId")
	require.True(t, ok)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12,"reason":"r"}}`,
		string(AppendReplaced(nil, cancel, rid, []byte("12"))))

	assert.Panics(t, func() { AppendReplaced(nil, body, []byte("1.50"), []byte("7")) }, "a copy is not a subslice")
	assert.Panics(t, func() { AppendReplaced(nil, body[:10], msgs[0].ID, []byte("7")) }, "outside the message")
}
