//go:build linux && !race

package rawsock

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestNoAllocations: a Read, a Write and a TryWrite allocate nothing (their state is
// pooled).
func TestNoAllocations(t *testing.T) {
	_, raw, b := pair(t)
	msg := []byte("0123456789")
	buf := make([]byte, 64)
	sink := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := Write(raw, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, sink[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if n, err := TryWrite(raw, msg); err != nil || n != len(msg) {
			t.Fatal(n, err)
		}
		if _, err := io.ReadFull(b, sink[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(raw, buf); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}
