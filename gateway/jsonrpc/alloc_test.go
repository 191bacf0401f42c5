//go:build !race

package jsonrpc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAlloc(t *testing.T) {
	inputs := map[string]string{
		"tools/call request":    benchToolsCall,
		"response":              benchResponse,
		"progress notification": benchProgress,
		"batch":                 `[` + benchToolsCall + `,` + benchProgress + `,` + benchResponse + `]`,
		"escaped method":        `{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"_m\u0065ta":{"progressToken":1}}}`,
		"error response":        `{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"Method not found"}}`,
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			data := []byte(in)
			var p Parser
			_, _, err := p.Parse(data) // warm up: the Parser's buffers reach their size
			require.Nil(t, err)
			allocs := testing.AllocsPerRun(1000, func() {
				if msgs, _, err := p.Parse(data); err != nil || len(msgs) == 0 {
					t.Fatal(err)
				}
			})
			assert.Zero(t, allocs)
			allocs = testing.AllocsPerRun(1000, func() {
				if msgs, _, err := p.ParseLimited(data, 1000); err != nil || len(msgs) == 0 {
					t.Fatal(err)
				}
			})
			assert.Zero(t, allocs, "ParseLimited")
		})
	}
}

func TestLookupAlloc(t *testing.T) {
	data := []byte(benchToolsCall)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := Lookup(data, "params", "name"); !ok {
			t.Fatal("not found")
		}
	})
	assert.Zero(t, allocs)
}

func TestAppendErrorAlloc(t *testing.T) {
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendError(buf[:0], []byte(`"req-1"`), CodeInvalidRequest, "Invalid Request: \"x\"\n", []byte(`{"a":1}`))
		buf = AppendString(buf, "plain and \u2028 \x01")
	})
	assert.Zero(t, allocs)
}
