package jsonrpc_test

import (
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

func ExampleParser_Parse() {
	var p jsonrpc.Parser // one per goroutine, or from a sync.Pool
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":"p1"}}}`)
	msgs, batch, err := p.Parse(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	m := msgs[0]
	fmt.Println(batch, m.Kind, string(m.ID), string(m.Method), string(m.ProgressToken))

	_, _, err = p.Parse([]byte(`{"jsonrpc":"2.0","id":8,"method":null}`))
	fmt.Println(errors.Is(err, jsonrpc.ErrInvalidRequest), string(err.ID))
	fmt.Println(string(jsonrpc.AppendError(nil, err.ID, err.Code, err.Message, nil)))
	// Output:
	// false request 7 tools/call "p1"
	// true 8
	// {"jsonrpc":"2.0","id":8,"error":{"code":-32600,"message":"Invalid Request: method must be a string"}}
}

func ExampleLookup() {
	body := []byte(`{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}`)
	raw, ok := jsonrpc.Lookup(body, "result", "protocolVersion")
	v, _ := jsonrpc.Unquote(raw)
	fmt.Println(ok, string(raw), v)
	// Output: true "2025-06-18" 2025-06-18
}
