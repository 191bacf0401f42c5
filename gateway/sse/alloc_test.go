//go:build !race

package sse

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var typicalPayload = []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok-17","progress":42,"total":100}}`)

func TestAppendStreamEventAlloc(t *testing.T) {
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendStreamEvent(buf[:0], 12, 123456, typicalPayload)
		buf = AppendComment(buf, "hb")
		buf = AppendRetry(buf, 1000)
		buf = AppendEvent(buf, &Event{ID: []byte("1_2"), Data: typicalPayload, Retry: -1})
	})
	assert.Zero(t, allocs)
}

func TestParseEventIDAlloc(t *testing.T) {
	id := []byte("12_345")
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := ParseEventID(id); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func TestDecoderNextAlloc(t *testing.T) {
	var stream []byte
	for i := range 50 {
		stream = AppendStreamEvent(stream, 1, uint64(i), typicalPayload)
		stream = AppendComment(stream, "hb")
		stream = AppendEvent(stream, &Event{Event: []byte("message"), Data: []byte("a\nb\nc"), Retry: 100})
	}
	stream = bytes.ReplaceAll(stream, []byte("\n"), []byte("\r\n"))
	for _, chunk := range []int{0, 7} {
		var r io.Reader = &loopReader{data: stream}
		if chunk > 0 {
			r = &chunkedLoop{r: r.(*loopReader), n: chunk}
		}
		d := NewDecoder(r, 0)
		for range 200 { // warm up: buffers reach their steady size
			_, err := d.Next()
			require.NoError(t, err)
		}
		allocs := testing.AllocsPerRun(1000, func() {
			ev, err := d.Next()
			if err != nil || len(ev.Data) == 0 {
				t.Fatal(err)
			}
		})
		assert.Zero(t, allocs, "chunk %d", chunk)
	}
}

func TestDecoderResetAlloc(t *testing.T) {
	stream := AppendStreamEvent(nil, 1, 2, typicalPayload)
	r := bytes.NewReader(stream)
	d := NewDecoder(r, 0)
	_, err := d.Next()
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Reset(stream)
		d.Reset(r)
		if ev, err := d.Next(); err != nil || !ev.HasID {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

// TestDecoderFirstEventAlloc: a Decoder made inside a struct (Init) reads
// a stream of one event, with an id and an event type, to its end,
// allocating nothing: the short fields have inline room, and the event's
// one data line is handed out from the input.
func TestDecoderFirstEventAlloc(t *testing.T) {
	stream := AppendEvent(nil, &Event{ID: []byte("17-4"), Event: []byte("message"), Data: typicalPayload, Retry: -1})
	r := bytes.NewReader(stream)
	var holder struct{ d Decoder }
	allocs := testing.AllocsPerRun(1000, func() {
		r.Reset(stream)
		holder.d.Init(r, 0)
		ev, err := holder.d.Next()
		if err != nil || string(ev.ID) != "17-4" || string(ev.Event) != "message" || !bytes.Equal(ev.Data, typicalPayload) {
			t.Fatalf("%v %+v", err, ev)
		}
		if _, err := holder.d.Next(); err != io.EOF { // the end gives the read buffer back
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}
