package gateway

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// TestHijackWriterLayout: the fields an event on a live stream touches (the
// writer's own, then clientConn's up to shutdown) lie in the first three
// cache lines of its hijackWriter, and the writer's size class starts its
// objects on a cache line (256 or 320 bytes: in the 288-byte class every
// other object starts mid-line, and the three lines would be four).
func TestHijackWriterLayout(t *testing.T) {
	var w hijackWriter
	size := unsafe.Sizeof(w)
	assert.True(t, size <= 256 || (size > 288 && size <= 320), "hijackWriter is %d bytes", size)
	assert.Less(t, unsafe.Offsetof(w.raw), unsafe.Offsetof(w.clientConn), "the writer's event fields come first")
	end := unsafe.Offsetof(w.clientConn) + unsafe.Offsetof(w.clientConn.shutdown)
	assert.Less(t, end, uintptr(3*64), "clientConn's event fields end at byte %d", end)
	assert.Greater(t, unsafe.Offsetof(w.clientConn.nc), unsafe.Offsetof(w.clientConn.shutdown), "nc is not an event's")
}
