package upstream

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connectCounter is a countingTransport that also counts the sessions
// opened.
type connectCounter struct {
	countingTransport
	opened atomic.Int32
}

func (t *connectCounter) Connect(ctx context.Context, init []byte) (Session, []byte, error) {
	t.opened.Add(1)
	return t.countingTransport.Connect(ctx, init)
}

// TestPoolOwner: pooled sessions are shared by requests of one owner only.
// Without forwarding (no credential in the context) anonymous requests
// share one session, as before; with it, each forwarded credential,
// including none at all, gets a session of its own, also under one
// principal; and a principal and a credential never stand for each other.
func TestPoolOwner(t *testing.T) {
	tr := &connectCounter{}
	p := NewSessionPool(tr, BridgeConfig{}).(*sessionPool)
	defer p.Close()
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`)
	opened := func(ctx context.Context) int32 {
		t.Helper()
		before := tr.opened.Load()
		r, err := p.Do(ctx, nil, req)
		require.NoError(t, err)
		require.NotNil(t, r.JSON)
		return tr.opened.Load() - before
	}
	bg := context.Background()
	assert.EqualValues(t, 1, opened(bg), "the first anonymous request opens a session")
	assert.EqualValues(t, 0, opened(bg), "anonymous requests without forwarding share it")
	assert.EqualValues(t, 1, opened(WithCredential(bg, "")), "forwarding no credential is not forwarding none")
	assert.EqualValues(t, 1, opened(WithCredential(bg, "Bearer a")))
	assert.EqualValues(t, 1, opened(WithCredential(bg, "Bearer b")))
	assert.EqualValues(t, 0, opened(WithCredential(bg, "Bearer a")), "a credential's session is reused for it")
	assert.EqualValues(t, 0, opened(WithCredential(bg, "")))
	assert.EqualValues(t, 1, opened(WithPrincipal(WithCredential(bg, "Bearer a"), "alice")), "principal and credential both count")
	assert.EqualValues(t, 1, opened(WithPrincipal(bg, "Bearer a")), "a principal is not a credential")
	assert.EqualValues(t, 0, opened(WithPrincipal(bg, "Bearer a")))
}
