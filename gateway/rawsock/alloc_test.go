//go:build linux && !race

package rawsock

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestNoAllocations: a Read, a Write and a WriteNow allocate nothing (their state is
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
		if n, err := WriteNow(raw, msg); err != nil || n != len(msg) {
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

// TestDeadlinesNoAllocations: a Read and a Write through Deadlines with
// deadlines set allocate nothing.
func TestDeadlinesNoAllocations(t *testing.T) {
	a, raw, b := pair(t)
	var d Deadlines
	d.Init(a, raw)
	msg := []byte("0123456789")
	buf := make([]byte, 64)
	sink := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		_ = d.SetWrite(time.Now().Add(time.Minute))
		if _, err := d.Write(raw, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, sink[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = d.SetRead(time.Now().Add(time.Minute))
		if _, err := d.Read(raw, buf); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}
