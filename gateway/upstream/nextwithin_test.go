package upstream

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNextWithin(t *testing.T) {
	td := newTestDemux(8)
	call, err := td.openCall([][]byte{[]byte("1")}, [][]byte{[]byte(`"a"`)})
	require.NoError(t, err)

	// Nothing yet: not ok, and the stream is unchanged.
	start := time.Now()
	msg, ok, err := call.NextWithin(20 * time.Millisecond)
	assert.False(t, ok)
	assert.NoError(t, err)
	assert.Nil(t, msg)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)

	// A message arriving while it waits is returned at once.
	go func() {
		time.Sleep(5 * time.Millisecond)
		td.route([]byte(progA))
	}()
	msg, ok, err = call.NextWithin(10 * time.Second)
	require.True(t, ok)
	require.NoError(t, err)
	assert.Equal(t, progA, string(msg))

	// The response, then the end, as Next would give them.
	td.route([]byte(resp1))
	msg, ok, err = call.NextWithin(time.Second)
	require.True(t, ok)
	assert.Equal(t, resp1, string(msg))
	_, ok, err = call.NextWithin(time.Second)
	assert.True(t, ok)
	assert.ErrorIs(t, err, io.EOF)
	_, err = call.Next()
	assert.ErrorIs(t, err, io.EOF, "the end stays for Next")
}
