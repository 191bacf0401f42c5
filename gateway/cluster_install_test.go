package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/ringbuf"
)

// TestInstallMirrorOverHandedOver: a mirror being installed replaces an
// older mirror and the standalone stream a draining node handed over (its
// pump stopped, the new owner goes on in JetStream: a client coming back
// to the draining node must follow that), but never a stream this node
// still produces, nor a stream outside the cluster.
func TestInstallMirrorOverHandedOver(t *testing.T) {
	for _, c := range []struct {
		name     string
		old      *clusterStream
		replaced bool
	}{
		{"an older mirror", &clusterStream{mirror: true, cancel: func() {}}, true},
		{"the standalone stream handed over", handedOver(), true},
		{"a stream this node produces", &clusterStream{}, false},
		{"a stream outside the cluster", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sess := &session{id: "s"}
			old := newStream(0, sess, newTestRing(t))
			old.cs = c.old
			sess.streams.put(old)
			mirror := newStream(0, sess, newTestRing(t))
			mirror.cs = &clusterStream{mirror: true}

			got, ok := sess.installStream(mirror)
			assert.Equal(t, c.replaced, ok)
			if c.replaced {
				assert.Same(t, mirror, got)
				assert.Same(t, mirror, sess.stream(0))
			} else {
				assert.Same(t, old, got)
				assert.Same(t, old, sess.stream(0))
			}
		})
	}
}

func handedOver() *clusterStream {
	cs := &clusterStream{}
	cs.handedOver.Store(true)
	return cs
}

func newTestRing(t *testing.T) *ringbuf.Ring {
	r, err := ringbuf.New(ringbuf.Config{})
	require.NoError(t, err)
	return r
}
