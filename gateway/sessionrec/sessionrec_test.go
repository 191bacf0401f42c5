package sessionrec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleRecord(i int) *Record {
	return &Record{
		ID:            strings.Repeat("ab", 16)[:30] + string(rune('a'+i%26)) + "0",
		Principal:     "jwt:alice",
		Namespaced:    true,
		Version:       "2025-11-25",
		Created:       1_700_000_000_000_000_000 + int64(i),
		LastActive:    1_700_000_100_000_000_000,
		Upstream:      Upstream{Kind: "http", ID: "up-7", Version: "2025-11-25", Resumable: true},
		Initialize:    []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`),
		Capabilities:  []byte(`{"tools":{"listChanged":true}}`),
		LogLevel:      []byte(`{"level":"debug"}`),
		Subscriptions: []string{"file:///a", ""},
		NextCall:      41,
		NextStream:    3,
		Streams: []Stream{
			{ID: 0, Delivered: 2, ConnStart: 1, UpstreamLastEventID: "0_17", Ring: Ring{Last: 3, Delivered: 2, Lost: 0,
				Counters: Counters{Pushed: 3, Evicted: 1},
				Events:   []Event{{Seq: 2, Data: []byte(`{"a":1}`), Key: 99}, {Seq: 3, MustDeliver: true, Data: []byte("x\ny")}}}},
			{ID: 3, FinishedAt: 1_700_000_050_000_000_000, Ring: Ring{Last: 1, Closed: true, Counters: Counters{Pushed: 1},
				Events: []Event{{Seq: 1, MustDeliver: true, Data: []byte(`{"id":1,"result":{}}`)}}}},
			{}, // an empty stream survives
		},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord(0)
	b := AppendRecord([]byte("prefix"), r)
	require.True(t, bytes.HasPrefix(b, []byte("prefix")))
	got, err := DecodeRecord(b[len("prefix"):])
	require.NoError(t, err)
	assert.Equal(t, r, got)

	legacy := sampleRecord(1)
	legacy.LegacyClient = true
	got, err = DecodeRecord(AppendRecord(nil, legacy))
	require.NoError(t, err)
	assert.Equal(t, legacy, got)

	empty, err := DecodeRecord(AppendRecord(nil, &Record{}))
	require.NoError(t, err)
	assert.Equal(t, &Record{}, empty)
}

// TestRecordSkipsUnknownFields: a newer writer's extra fields (of either
// wire type, at any level) are skipped by this reader.
func TestRecordSkipsUnknownFields(t *testing.T) {
	b := AppendRecord(nil, &Record{ID: "x"})
	b = binary.AppendUvarint(b, 200<<1|wireVarint)
	b = binary.AppendUvarint(b, 12345)
	b = binary.AppendUvarint(b, 201<<1|wireBytes)
	b = binary.AppendUvarint(b, 3)
	b = append(b, "abc"...)
	got, err := DecodeRecord(b)
	require.NoError(t, err)
	assert.Equal(t, "x", got.ID)
}

func TestDecodeRecordErrors(t *testing.T) {
	good := AppendRecord(nil, sampleRecord(1))
	for name, b := range map[string][]byte{
		"empty":          nil,
		"other version":  binary.AppendUvarint(nil, RecordVersion+1),
		"field zero":     {RecordVersion, 0},
		"wrong wire":     {RecordVersion, fRecID << 1, 5}, // id as a varint
		"length too big": {RecordVersion, fRecID<<1 | 1, 9, 'a'},
		"bad varint":     {RecordVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"cut":            good[:len(good)-3],
	} {
		_, err := DecodeRecord(b)
		assert.ErrorIs(t, err, ErrRecord, name)
	}
}

func writeFile(t testing.TB, recs ...*Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 1_700_000_000_000_000_000)
	require.NoError(t, err)
	for _, r := range recs {
		require.NoError(t, w.Write(r))
	}
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "Close twice")
	assert.Error(t, w.Write(recs[0]), "Write after Close")
	return buf.Bytes()
}

func TestFileRoundTrip(t *testing.T) {
	recs := []*Record{sampleRecord(0), sampleRecord(1), {ID: "bare"}}
	b := writeFile(t, recs...)
	h, got, err := ReadFile(bytes.NewReader(b))
	require.NoError(t, err)
	assert.Equal(t, Header{Version: FileVersion, Written: 1_700_000_000_000_000_000}, h)
	assert.Equal(t, recs, got)

	var buf bytes.Buffer
	w, err := NewWriter(&buf, 0)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	_, none, err := ReadFile(&buf)
	require.NoError(t, err, "a file without sessions")
	assert.Empty(t, none)
}

// TestFileRefusesDamage: every truncation, every flipped bit and a foreign
// file are refused with the kind of error that says what happened, and
// never with records.
func TestFileRefusesDamage(t *testing.T) {
	b := writeFile(t, sampleRecord(0), sampleRecord(1))
	for n := 0; n < len(b); n++ {
		_, recs, err := ReadFile(bytes.NewReader(b[:n]))
		require.Error(t, err, "cut at %d of %d", n, len(b))
		require.Nil(t, recs)
		var fe *FileError
		require.ErrorAs(t, err, &fe)
		if n >= len(Magic) {
			assert.ErrorIs(t, err, ErrTruncated, "cut at %d: %v", n, err)
		}
	}
	for i := 0; i < len(b)*8; i++ {
		c := bytes.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		_, recs, err := ReadFile(bytes.NewReader(c))
		require.Error(t, err, "bit %d flipped", i)
		require.Nil(t, recs)
		assert.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated) || errors.Is(err, ErrForeign) || errors.Is(err, ErrVersion),
			"bit %d: %v", i, err)
	}
	_, _, err := ReadFile(strings.NewReader(`{"sessions":[]}`))
	assert.ErrorIs(t, err, ErrForeign)
	assert.Contains(t, err.Error(), "not an mcpgate state file")

	v2 := bytes.Clone(b)
	binary.BigEndian.PutUint16(v2[len(Magic):], FileVersion+1)
	_, _, err = ReadFile(bytes.NewReader(v2))
	assert.ErrorIs(t, err, ErrVersion)
	assert.Contains(t, err.Error(), "format version 2")

	_, _, err = ReadFile(bytes.NewReader(append(bytes.Clone(b), 0)))
	assert.ErrorIs(t, err, ErrCorrupt, "bytes after the trailer")

	// A corrupt record is named.
	c := bytes.Clone(b)
	c[len(Magic)+10+5] ^= 0x40
	_, _, err = ReadFile(bytes.NewReader(c))
	var fe *FileError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, 1, fe.Record)
	assert.Contains(t, err.Error(), "in record 1")
}

// TestFileHugeLengthDoesNotAllocate: a frame claiming a gigabyte in a short
// file is refused without reserving the gigabyte.
func TestFileHugeLengthDoesNotAllocate(t *testing.T) {
	var buf bytes.Buffer
	_, err := NewWriter(&buf, 0)
	require.NoError(t, err)
	b := binary.AppendUvarint(buf.Bytes(), MaxRecordBytes)
	b = append(b, "short"...)
	allocs := testing.AllocsPerRun(1, func() { _, _, _ = ReadFile(bytes.NewReader(b)) })
	_, _, err = ReadFile(bytes.NewReader(b))
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Less(t, allocs, 50.0)
}

// FuzzDecodeRecord: any input decodes or errors without panicking; what
// decodes re-encodes to a record that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(AppendRecord(nil, sampleRecord(0)))
	f.Add(AppendRecord(nil, &Record{}))
	f.Add([]byte{RecordVersion, fRecStream<<1 | 1, 2, fStRing<<1 | 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("error %v does not wrap ErrRecord", err)
			}
			return
		}
		again, err := DecodeRecord(AppendRecord(nil, r))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !assert.ObjectsAreEqual(r, again) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, again)
		}
	})
}

// FuzzReadFile: any input is read or refused with a *FileError, never both
// records and an error. Seeds are valid files the fuzzer mutates.
func FuzzReadFile(f *testing.F) {
	f.Add(writeFile(f, sampleRecord(0)))
	f.Add(writeFile(f, sampleRecord(0), sampleRecord(1), &Record{}))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, recs, err := ReadFile(bytes.NewReader(b))
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || recs != nil {
				t.Fatalf("refused with %T %v and %d records", err, err, len(recs))
			}
			return
		}
		// What was read writes back to a file that reads the same.
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, 0)
		for _, r := range recs {
			_ = w.Write(r)
		}
		_ = w.Close()
		_, again, err := ReadFile(&buf)
		if err != nil || len(again) != len(recs) {
			t.Fatalf("rewritten file: %v, %d of %d records", err, len(again), len(recs))
		}
	})
}

// TestRandomRecords round-trips records with random contents through a file.
func TestRandomRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randBytes := func() []byte {
		if rng.IntN(4) == 0 {
			return nil
		}
		b := make([]byte, 1+rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	var recs []*Record
	for i := 0; i < 50; i++ {
		r := &Record{ID: string(randBytes()), Created: rng.Int64(), LastActive: -rng.Int64N(5), NextCall: rng.Uint64(),
			Initialize: randBytes(), Upstream: Upstream{Kind: "stdio", Resumable: rng.IntN(2) == 0}}
		for s := 0; s < rng.IntN(5); s++ {
			st := Stream{ID: rng.Uint64N(40), FinishedAt: rng.Int64(), Ring: Ring{Last: rng.Uint64(), Closed: rng.IntN(2) == 0,
				Counters: Counters{Skipped: rng.Uint64N(3)}}}
			for e := 0; e < rng.IntN(20); e++ {
				st.Ring.Events = append(st.Ring.Events, Event{Seq: uint64(e + 1), MustDeliver: rng.IntN(2) == 0, Key: rng.Uint64N(3), Data: randBytes()})
			}
			r.Streams = append(r.Streams, st)
		}
		recs = append(recs, r)
	}
	_, got, err := ReadFile(bytes.NewReader(writeFile(t, recs...)))
	require.NoError(t, err)
	assert.Equal(t, recs, got)
}
