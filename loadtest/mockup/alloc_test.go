//go:build !race

package mockup

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAllocsEventEncoding: encoding a notification into a reused buffer allocates
// nothing.
func TestAllocsEventEncoding(t *testing.T) {
	buf := make([]byte, 0, 512)
	token := []byte(`"tok"`)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = appendProgress(buf[:0], token, 12345, 99999, 1_700_000_000_000_000_000, 16)
		buf = appendPush(buf[:0], 12345, 1_700_000_000_000_000_000, 16)
	})
	assert.Zero(t, allocs)
}

// TestAllocsStreamSteadyState: once the replay log's slots have grown, appending an
// event and reading it through the stream reader allocates nothing.
func TestAllocsStreamSteadyState(t *testing.T) {
	srv, err := New(Config{ReplayEvents: 64})
	require.NoError(t, err)
	st := newStream(srv, 0, true, true)
	r, err := st.attach(1, nil, nil)
	require.NoError(t, err)
	ctx := context.Background()
	data := appendPush(nil, 1, 1, 32)
	p := make([]byte, 4096)
	step := func() {
		for range 8 {
			_ = st.append(ctx, data)
		}
		_, _ = r.Read(p)
	}
	for range 200 { // fill every slot once
		step()
	}
	assert.Zero(t, testing.AllocsPerRun(1000, step))
}
