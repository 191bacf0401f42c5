package sse

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// FuzzDecoder decodes the input in one go and in random chunk sizes; both must yield the
// same events and the same kind of end, respect the size limit, and never panic.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte("id: 1_1\ndata: hello\n\n"), uint64(1), uint16(0))
	f.Add([]byte("\xEF\xBB\xBFdata: a\r\ndata: b\r\r: c\n\nretry: 10\nevent: x\n\n"), uint64(2), uint16(16))
	f.Add([]byte("data: a\r"), uint64(3), uint16(4))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, max uint16) {
		limit := int(max) // 0 = default
		whole, wholeErr := decodeBytes(bytes.NewReader(data), limit)
		r := &chunkReader{data: data, rng: rand.New(rand.NewPCG(seed, seed>>1)), maxChunk: 1 + int(seed%13)}
		chunked, chunkedErr := decodeBytes(r, limit)
		if !sameEnd(wholeErr, chunkedErr) {
			t.Fatalf("end differs: whole %v, chunked %v", wholeErr, chunkedErr)
		}
		if len(whole) != len(chunked) {
			t.Fatalf("event count differs: whole %d, chunked %d", len(whole), len(chunked))
		}
		for i := range whole {
			if whole[i] != chunked[i] {
				t.Fatalf("event %d differs:\nwhole   %+v\nchunked %+v", i, whole[i], chunked[i])
			}
		}
		effLimit := limit
		if effLimit == 0 {
			effLimit = DefaultMaxEventBytes
		}
		for _, ev := range whole {
			if len(ev.Data)+len(ev.ID)+len(ev.Event) > effLimit {
				t.Fatalf("event over the %d byte limit: %d bytes", effLimit, len(ev.Data)+len(ev.ID)+len(ev.Event))
			}
		}
		if len(data) <= effLimit && errors.Is(wholeErr, ErrEventTooLarge) {
			t.Fatalf("input of %d bytes reported over the %d byte limit", len(data), effLimit)
		}
	})
}

func decodeBytes(r io.Reader, limit int) ([]copied, error) {
	out, _, err := decodeAll(r, limit)
	return out, err
}

func sameEnd(a, b error) bool {
	return errors.Is(a, io.EOF) == errors.Is(b, io.EOF) && errors.Is(a, ErrEventTooLarge) == errors.Is(b, ErrEventTooLarge)
}

// FuzzEncodeDecode encodes arbitrary data as a stream event (and a comment), then decodes
// it: the data must come back with line ends normalised to LF.
func FuzzEncodeDecode(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`), uint64(0), uint64(1), "hb")
	f.Add([]byte("a\r\nb\rc\n"), uint64(5), uint64(1<<63), "x\ny")
	f.Add([]byte(""), uint64(0), uint64(0), "")
	f.Fuzz(func(t *testing.T, data []byte, stream, seq uint64, comment string) {
		buf := AppendComment(nil, comment)
		buf = AppendStreamEvent(buf, stream, seq, data)
		buf = AppendEvent(buf, &Event{Event: []byte(comment), Data: data, HasData: true, Retry: int64(seq >> 1)})
		got, d, err := decodeAll(bytes.NewReader(buf), len(buf)+1)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("decode: %v", err)
		}
		if len(got) != 2 {
			t.Fatalf("got %d events, want 2: %q", len(got), buf)
		}
		want := normalizeEOL(string(data))
		if got[0].Data != want || !got[0].HasData || !got[0].HasID {
			t.Fatalf("data: got %q, want %q", got[0].Data, want)
		}
		s, q, err := ParseEventID([]byte(got[0].ID))
		if err != nil || s != stream || q != seq {
			t.Fatalf("id %q: %d %d %v", got[0].ID, s, q, err)
		}
		wantEvent := string(cutEOL([]byte(comment)))
		if got[1].Data != want || got[1].Event != wantEvent || got[1].Retry != int64(seq>>1) || got[1].HasID {
			t.Fatalf("second event: %+v", got[1])
		}
		if d.Comments() != 1 {
			t.Fatalf("comments: %d", d.Comments())
		}
		if string(d.LastEventID()) != got[0].ID {
			t.Fatalf("last event id %q", d.LastEventID())
		}
	})
}

// FuzzParseEventID checks that ParseEventID accepts exactly what AppendEventID produces.
func FuzzParseEventID(f *testing.F) {
	f.Add([]byte("1_2"), uint64(1), uint64(2))
	f.Add([]byte("01_2"), uint64(0), uint64(0))
	f.Add([]byte("18446744073709551616_1"), uint64(1<<64-1), uint64(0))
	f.Fuzz(func(t *testing.T, s []byte, a, b uint64) {
		stream, seq, err := ParseEventID(s)
		if err == nil {
			if got := AppendEventID(nil, stream, seq); !bytes.Equal(got, s) {
				t.Fatalf("%q parsed to %d_%d, which encodes as %q", s, stream, seq, got)
			}
		} else if !errors.Is(err, ErrBadEventID) {
			t.Fatalf("error does not wrap ErrBadEventID: %v", err)
		}
		id := AppendEventID(nil, a, b)
		x, y, err := ParseEventID(id)
		if err != nil || x != a || y != b {
			t.Fatalf("round trip of %d_%d: %d %d %v", a, b, x, y, err)
		}
	})
}
