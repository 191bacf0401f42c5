package sse

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// copied is a decoded event detached from the decoder's buffers.
type copied struct {
	ID      string
	HasID   bool
	Event   string
	Data    string
	HasData bool
	Retry   int64
}

func cp(ev *Event) copied {
	return copied{ID: string(ev.ID), HasID: ev.HasID, Event: string(ev.Event), Data: string(ev.Data), HasData: ev.HasData, Retry: ev.Retry}
}

// decodeAll decodes r to the end and returns the events and the terminating error.
func decodeAll(r io.Reader, max int) ([]copied, *Decoder, error) {
	d := NewDecoder(r, max)
	var out []copied
	for {
		ev, err := d.Next()
		if err != nil {
			return out, d, err
		}
		out = append(out, cp(ev))
	}
}

// chunkReader returns the input in pseudo-random chunk sizes in [1, maxChunk].
type chunkReader struct {
	data     []byte
	rng      *rand.Rand
	maxChunk int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.rng.IntN(c.maxChunk)
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func dataEvent(id, data string) copied {
	return copied{ID: id, HasID: id != "", Data: data, HasData: true, Retry: -1}
}

func TestEventID(t *testing.T) {
	valid := []struct {
		in          string
		stream, seq uint64
	}{
		{"0_0", 0, 0},
		{"1_2", 1, 2},
		{"10_0", 10, 0},
		{"18446744073709551615_18446744073709551615", 1<<64 - 1, 1<<64 - 1},
		{"7_123456789", 7, 123456789},
	}
	for _, tc := range valid {
		t.Run("valid/"+tc.in, func(t *testing.T) {
			s, q, err := ParseEventID([]byte(tc.in))
			require.NoError(t, err)
			assert.Equal(t, tc.stream, s)
			assert.Equal(t, tc.seq, q)
			assert.Equal(t, tc.in, string(AppendEventID(nil, s, q)))
		})
	}
	invalid := []string{
		"", "_", "1_", "_1", "01_2", "1_02", "00_1", "1_2_3", "-1_2", "1_-2", "+1_2",
		"18446744073709551616_1", "1_18446744073709551616", "99999999999999999999_1",
		" 1_2", "1_2 ", "1 _2", "1_ 2", "1__2", "a_1", "1_b", "12", "1\x00_2", "١_٢", "0x1_2",
	}
	for _, in := range invalid {
		t.Run("invalid/"+in, func(t *testing.T) {
			_, _, err := ParseEventID([]byte(in))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrBadEventID)
		})
	}
}

func TestAppendStreamEvent(t *testing.T) {
	tests := []struct {
		name        string
		stream, seq uint64
		data        string
		want        string
	}{
		{"json", 3, 42, `{"jsonrpc":"2.0"}`, "id: 3_42\ndata: {\"jsonrpc\":\"2.0\"}\n\n"},
		{"empty", 0, 1, "", "id: 0_1\ndata: \n\n"},
		{"lf", 1, 1, "a\nb", "id: 1_1\ndata: a\ndata: b\n\n"},
		{"crlf", 1, 1, "a\r\nb", "id: 1_1\ndata: a\ndata: b\n\n"},
		{"cr", 1, 1, "a\rb", "id: 1_1\ndata: a\ndata: b\n\n"},
		{"trailing lf", 1, 1, "a\n", "id: 1_1\ndata: a\ndata: \n\n"},
		{"cr cr lf", 1, 1, "a\r\r\nb", "id: 1_1\ndata: a\ndata: \ndata: b\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("x")
			got := AppendStreamEvent(prefix, tc.stream, tc.seq, []byte(tc.data))
			assert.Equal(t, "x"+tc.want, string(got))
		})
	}
}

func TestAppendEventCommentRetry(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"full", AppendEvent(nil, &Event{ID: []byte("a"), HasID: true, Event: []byte("ping"), Data: []byte("x\ny"), HasData: true, Retry: 10}),
			"id: a\nevent: ping\nretry: 10\ndata: x\ndata: y\n\n"},
		{"empty id", AppendEvent(nil, &Event{HasID: true, Retry: -1}), "id: \n\n"},
		{"nothing", AppendEvent(nil, &Event{Retry: -1}), ""},
		{"zero event writes retry 0", AppendEvent(nil, &Event{}), "retry: 0\n\n"},
		{"id cut at newline", AppendEvent(nil, &Event{ID: []byte("a\nb"), Retry: -1}), "id: a\n\n"},
		{"event cut at cr", AppendEvent(nil, &Event{Event: []byte("e\rx"), Retry: -1}), "event: e\n\n"},
		{"comment", AppendComment(nil, "ping"), ": ping\n\n"},
		{"comment empty", AppendComment(nil, ""), ": \n\n"},
		{"comment lines", AppendComment(nil, "a\r\nb\rc\nd"), ": a\n: b\n: c\n: d\n\n"},
		{"retry", AppendRetry(nil, 1500), "retry: 1500\n\n"},
		{"retry negative", AppendRetry(nil, -5), "retry: 0\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, string(tc.got))
		})
	}
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []copied
		comments int
		lastID   string
	}{
		{"simple", "id: 1_1\ndata: hello\n\n", []copied{dataEvent("1_1", "hello")}, 0, "1_1"},
		{"crlf", "id: 1\r\ndata: a\r\ndata: b\r\n\r\n", []copied{dataEvent("1", "a\nb")}, 0, "1"},
		{"cr", "id: 1\rdata: a\rdata: b\r\r", []copied{dataEvent("1", "a\nb")}, 0, "1"},
		{"mixed ends", "data: a\r\ndata: b\rdata: c\n\r\n", []copied{dataEvent("", "a\nb\nc")}, 0, ""},
		{"bom", "\xEF\xBB\xBFdata: x\n\n", []copied{dataEvent("", "x")}, 0, ""},
		{"bom only at start", "data: x\n\n\xEF\xBB\xBFdata: y\n\n", []copied{dataEvent("", "x")}, 0, ""},
		{"no space", "data:x\n\n", []copied{dataEvent("", "x")}, 0, ""},
		{"one space stripped", "data:  x \n\n", []copied{dataEvent("", " x ")}, 0, ""},
		{"field without colon", "data\ndata\n\n", []copied{dataEvent("", "\n")}, 0, ""},
		{"empty data", "data:\n\n", []copied{dataEvent("", "")}, 0, ""},
		{"unknown field ignored", "foo: bar\ndata: x\n\n", []copied{dataEvent("", "x")}, 0, ""},
		{"unknown-only block skipped", "foo: bar\n\ndata: x\n\n", []copied{dataEvent("", "x")}, 0, ""},
		{"comments", ": ping\n\n: a\n: b\n\ndata: x\n: inline\n\n", []copied{dataEvent("", "x")}, 2, ""},
		{"event type", "event: endpoint\ndata: /m?s=1\n\n",
			[]copied{{Event: "endpoint", Data: "/m?s=1", HasData: true, Retry: -1}}, 0, ""},
		{"event type reset per block", "event: a\ndata: 1\n\ndata: 2\n\n",
			[]copied{{Event: "a", Data: "1", HasData: true, Retry: -1}, dataEvent("", "2")}, 0, ""},
		{"last id wins in block", "id: 1\nid: 2\ndata: x\n\n", []copied{dataEvent("2", "x")}, 0, "2"},
		{"id persists as last event id", "id: 5\ndata: a\n\ndata: b\n\n", []copied{dataEvent("5", "a"), dataEvent("", "b")}, 0, "5"},
		{"empty id resets", "id: 5\ndata: a\n\nid\ndata: b\n\n", []copied{dataEvent("5", "a"), {HasID: true, Data: "b", HasData: true, Retry: -1}}, 0, ""},
		{"id with NUL ignored", "id: 7\n\nid: a\x00b\ndata: x\n\n", []copied{{ID: "7", HasID: true, Retry: -1}, dataEvent("", "x")}, 0, "7"},
		{"id only (priming)", "id: 0_0\ndata:\n\n", []copied{dataEvent("0_0", "")}, 0, "0_0"},
		{"retry", "retry: 3000\n\n", []copied{{Retry: 3000}}, 0, ""},
		{"retry non numeric ignored", "retry: 3s\n\nretry: -1\n\nretry:\n\nretry: 1 \n\ndata: x\n\n", []copied{dataEvent("", "x")}, 0, ""},
		{"retry overflow ignored", "retry: 99999999999999999999\ndata: x\n\n", []copied{dataEvent("", "x")}, 0, ""},
		{"unterminated block discarded", "data: a\n\ndata: b\n", []copied{dataEvent("", "a")}, 0, ""},
		{"unterminated line discarded", "data: a\n\ndata: b", []copied{dataEvent("", "a")}, 0, ""},
		{"leading blank lines", "\n\n\r\n\rdata: a\n\n", []copied{dataEvent("", "a")}, 0, ""},
		{"empty input", "", nil, 0, ""},
		{"colon in value", "data: a:b\n\n", []copied{dataEvent("", "a:b")}, 0, ""},
		{"case sensitive names", "Data: a\nDATA: b\n\n", nil, 0, ""},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"data+eof": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"random": func(s string) io.Reader {
			return &chunkReader{data: []byte(s), rng: rand.New(rand.NewPCG(1, 2)), maxChunk: 5}
		},
	}
	for _, tc := range tests {
		for rname, mk := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				got, d, err := decodeAll(mk(tc.in), 0)
				require.ErrorIs(t, err, io.EOF)
				assert.Equal(t, tc.want, got)
				assert.Equal(t, tc.comments, d.Comments())
				assert.Equal(t, tc.lastID, string(d.LastEventID()))
				_, err = d.Next()
				assert.ErrorIs(t, err, io.EOF, "EOF is sticky")
			})
		}
	}
}

func TestDecoderCRAcrossReads(t *testing.T) {
	// The CR ends one read and the LF starts the next: one line end, not two.
	r := io.MultiReader(strings.NewReader("data: a\r"), strings.NewReader("\ndata: b\r"), strings.NewReader("\n\r"), strings.NewReader("\n"))
	got, _, err := decodeAll(r, 0)
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, []copied{dataEvent("", "a\nb")}, got)
}

func TestDecoderTooLarge(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		n    int // events before the error
	}{
		{"long line", "data: " + strings.Repeat("x", 100) + "\n\n", 50, 0},
		{"long unterminated line", "data: " + strings.Repeat("x", 100), 50, 0},
		{"many lines", strings.Repeat("data: xxxxxxxxx\n", 10) + "\n", 50, 0},
		{"many comments in one block", strings.Repeat(": xxxxxxxxx\n", 10) + "\n", 50, 0},
		{"after a good event", "data: ok\n\n" + strings.Repeat("data: xxxxxxxxx\n", 10) + "\n", 50, 1},
	}
	for _, tc := range tests {
		for _, chunk := range []int{1, 7, 4096} {
			t.Run(tc.name, func(t *testing.T) {
				r := &chunkReader{data: []byte(tc.in), rng: rand.New(rand.NewPCG(3, 4)), maxChunk: chunk}
				got, _, err := decodeAll(r, tc.max)
				require.ErrorIs(t, err, ErrEventTooLarge)
				assert.Len(t, got, tc.n)
			})
		}
	}
	t.Run("exactly at limit", func(t *testing.T) {
		in := "data: 123\n\n" // block size 10
		got, _, err := decodeAll(strings.NewReader(in), 10)
		require.ErrorIs(t, err, io.EOF)
		assert.Equal(t, []copied{dataEvent("", "123")}, got)
		_, _, err = decodeAll(strings.NewReader(in), 9)
		require.ErrorIs(t, err, ErrEventTooLarge)
	})
	t.Run("separate blocks each under limit", func(t *testing.T) {
		in := strings.Repeat("data: 123\n\n: comment\n\n", 100)
		got, d, err := decodeAll(iotest.OneByteReader(strings.NewReader(in)), 10)
		require.ErrorIs(t, err, io.EOF)
		assert.Len(t, got, 100)
		assert.Equal(t, 100, d.Comments())
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestDecoderReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: partial\n"), errReader{boom})
	got, _, err := decodeAll(r, 0)
	require.ErrorIs(t, err, boom)
	assert.Equal(t, []copied{dataEvent("", "a")}, got)

	_, _, err = decodeAll(zeroReader{}, 0)
	require.ErrorIs(t, err, io.ErrNoProgress)
}

func TestRoundTrip(t *testing.T) {
	var buf []byte
	payloads := []string{
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		"",
		"line1\nline2",
		"crlf\r\nline",
		"cr\rline",
		"\n",
		" leading space",
		": not a comment",
		"data: nested",
		strings.Repeat("x", 10000),
		"unicode ✓ 日本",
	}
	buf = append(buf, bom...)
	buf = AppendComment(buf, "hello\nworld")
	buf = AppendRetry(buf, 2500)
	var want []copied
	want = append(want, copied{Retry: 2500})
	for i, p := range payloads {
		buf = AppendStreamEvent(buf, 1, uint64(i), []byte(p))
		buf = AppendComment(buf, "hb")
		want = append(want, dataEvent(string(AppendEventID(nil, 1, uint64(i))), normalizeEOL(p)))
	}
	buf = AppendEvent(buf, &Event{Event: []byte("endpoint"), Data: []byte("/message?s=1"), Retry: -1})
	want = append(want, copied{Event: "endpoint", Data: "/message?s=1", HasData: true, Retry: -1})
	buf = AppendEvent(buf, &Event{ID: []byte("x"), HasID: true, Retry: 5})
	want = append(want, copied{ID: "x", HasID: true, Retry: 5})

	for _, chunk := range []int{1, 2, 3, 17, 4096, 1 << 20} {
		r := &chunkReader{data: buf, rng: rand.New(rand.NewPCG(uint64(chunk), 9)), maxChunk: chunk}
		got, d, err := decodeAll(r, 0)
		require.ErrorIs(t, err, io.EOF)
		assert.Equal(t, want, got, "chunk %d", chunk)
		assert.Equal(t, 1+len(payloads), d.Comments())
		assert.Equal(t, "x", string(d.LastEventID()))
	}
}

// normalizeEOL maps CRLF and CR to LF, which is what an encode/decode round trip does.
func normalizeEOL(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

func TestEventSlicesReused(t *testing.T) {
	// Document the validity contract: a later Next overwrites earlier slices' storage.
	in := "id: aaaa\ndata: 1111\n\nid: bbbb\ndata: 2222\n\n"
	d := NewDecoder(strings.NewReader(in), 0)
	ev, err := d.Next()
	require.NoError(t, err)
	first := cp(ev)
	ev2, err := d.Next()
	require.NoError(t, err)
	assert.Equal(t, dataEvent("aaaa", "1111"), first)
	assert.Equal(t, dataEvent("bbbb", "2222"), cp(ev2))
	assert.True(t, bytes.Equal(d.LastEventID(), []byte("bbbb")))
}

// loopReader replays the same stream forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// chunkedLoop is a loopReader that returns at most n bytes per Read.
type chunkedLoop struct {
	r *loopReader
	n int
}

func (c *chunkedLoop) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

func TestDecoderReset(t *testing.T) {
	d := NewDecoder(strings.NewReader("id: 1\ndata: a\n\n: c\n\ndata: "+strings.Repeat("x", 100)+"\n\n"), 64)
	ev, err := d.Next()
	require.NoError(t, err)
	assert.Equal(t, dataEvent("1", "a"), cp(ev))
	_, err = d.Next()
	require.ErrorIs(t, err, ErrEventTooLarge)
	assert.Equal(t, 1, d.Comments())

	d.Reset(iotest.OneByteReader(strings.NewReader("\xEF\xBB\xBFdata: b\n\n")))
	assert.Empty(t, d.LastEventID())
	assert.Zero(t, d.Comments())
	ev, err = d.Next()
	require.NoError(t, err, "the sticky error is cleared")
	assert.Equal(t, dataEvent("", "b"), cp(ev))
	_, err = d.Next()
	require.ErrorIs(t, err, io.EOF)

	d.Reset(strings.NewReader("data: " + strings.Repeat("y", 100) + "\n\n"))
	_, err = d.Next()
	require.ErrorIs(t, err, ErrEventTooLarge, "the maximum size is kept")
}

// scriptReader returns its chunks one per Read (each must fit the buffer offered) and
// records the size of every buffer it was offered.
type scriptReader struct {
	chunks  [][]byte
	offered []int
}

func (s *scriptReader) Read(p []byte) (int, error) {
	s.offered = append(s.offered, len(p))
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

// TestDecoderBurstBuffer: a burst of events written at once (here 64 of ~230 bytes in
// one chunk) is read in a few reads: the inline buffer, the pooled one, then, since that
// read filled it, the burst buffer for the rest; once the burst is consumed and a read
// comes up short, the decoder is back on its inline buffer with nothing pooled held.
func TestDecoderBurstBuffer(t *testing.T) {
	var burst []byte
	for i := range 64 {
		burst = AppendStreamEvent(burst, 0, uint64(i+1), bytes.Repeat([]byte("x"), 200))
	}
	require.Greater(t, len(burst), burstBufSize/2)
	r := &scriptReader{chunks: [][]byte{burst, []byte("data: y\n\n")}}
	d := NewDecoder(r, 0)
	for i := range 64 {
		ev, err := d.Next()
		require.NoError(t, err)
		require.Len(t, ev.Data, 200, "event %d", i+1)
	}
	assert.NotNil(t, d.burst, "in the burst buffer while the burst is read")
	ev, err := d.Next()
	require.NoError(t, err)
	assert.Equal(t, "y", string(ev.Data))
	assert.Nil(t, d.burst, "the burst buffer went back once the input was consumed")
	assert.Nil(t, d.pooled)
	// Inline, pooled, burst (less what was pending), inline again: four reads, where a
	// pooled buffer alone would take one per kilobyte.
	require.Len(t, r.offered, 4, "reads offered: %v", r.offered)
	assert.Equal(t, idleBufSize, r.offered[0])
	assert.Greater(t, r.offered[1], idleBufSize, "the pooled buffer: %v", r.offered)
	assert.LessOrEqual(t, r.offered[1], pooledBufSize, "the pooled buffer: %v", r.offered)
	assert.Greater(t, r.offered[2], burstBufSize-pooledBufSize, "the burst buffer: %v", r.offered)
	assert.Equal(t, idleBufSize, r.offered[3])
}

// TestDecoderIdleBuffer: while input flows the decoder reads into its pooled buffer;
// once everything read is consumed after a short read (the stream went quiet), the next
// read, the one that blocks on an idle stream, uses the small inline buffer and the
// pooled buffer is back in the pool.
func TestDecoderIdleBuffer(t *testing.T) {
	event := AppendStreamEvent(nil, 0, 1, bytes.Repeat([]byte("x"), 300))
	r := &scriptReader{chunks: [][]byte{event[:idleBufSize], event[idleBufSize:], []byte("data: y\n\n")}}
	d := NewDecoder(r, 0)
	ev, err := d.Next()
	require.NoError(t, err)
	assert.Len(t, ev.Data, 300)
	require.NotNil(t, d.pooled, "a line longer than the inline buffer moved to the pooled one")
	ev, err = d.Next()
	require.NoError(t, err)
	assert.Equal(t, "y", string(ev.Data))
	assert.Nil(t, d.pooled, "the pooled buffer went back once the input was consumed")
	_, err = d.Next()
	assert.ErrorIs(t, err, io.EOF)
	// The id line was consumed before the move, so the pooled read is offered the rest.
	idLine := len("id: 0_1\n")
	assert.Equal(t, []int{idleBufSize, pooledBufSize - (idleBufSize - idLine), idleBufSize, idleBufSize}, r.offered)
}

// waitingReader serves its chunks one per Read. Before a read with nothing
// pending the decoder asks WaitReadable, which returns the next of waitErrs
// (nil once they are used up) without consuming anything.
type waitingReader struct {
	chunks   [][]byte
	waitErrs []error
	waits    int
}

func (w *waitingReader) WaitReadable() error {
	w.waits++
	if len(w.waitErrs) == 0 {
		return nil
	}
	err := w.waitErrs[0]
	w.waitErrs = w.waitErrs[1:]
	return err
}

func (w *waitingReader) Read(p []byte) (int, error) {
	if len(w.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, w.chunks[0])
	if w.chunks[0] = w.chunks[0][n:]; len(w.chunks[0]) == 0 {
		w.chunks = w.chunks[1:]
	}
	return n, nil
}

// TestDecoderWaitError: an error from ReadWaiter.WaitReadable is returned as
// is and is not sticky; a block half read before it is completed by the
// Next calls after it.
func TestDecoderWaitError(t *testing.T) {
	idle := errors.New("idle")
	r := &waitingReader{
		chunks:   [][]byte{[]byte("id: 7\n"), []byte("data: a"), []byte("bc\n\n")},
		waitErrs: []error{idle, nil, idle},
	}
	d := NewDecoder(r, 0)
	_, err := d.Next()
	require.ErrorIs(t, err, idle, "nothing read yet")
	assert.False(t, d.Pending())

	// Reads the id line, then gives up again with the block half read.
	_, err = d.Next()
	require.ErrorIs(t, err, idle)
	assert.False(t, d.Pending())
	assert.Equal(t, 3, r.waits)

	// Waits once more, then reads the data line in two pieces (no wait
	// with the line pending) and completes the block with its id.
	ev, err := d.Next()
	require.NoError(t, err)
	assert.Equal(t, dataEvent("7", "abc"), cp(ev))
	assert.Equal(t, 4, r.waits)

	_, err = d.Next()
	require.ErrorIs(t, err, io.EOF)
	assert.True(t, d.Pending(), "the end of the input is sticky")
	_, err = d.Next()
	require.ErrorIs(t, err, io.EOF)
}

// wakingReader is a waitingReader whose WaitReadable waits for input
// (sse.InputWaiter) when wakes is set; it records the size of every read.
type wakingReader struct {
	waitingReader
	wakes   bool
	offered []int
}

func (w *wakingReader) WaitsForInput() bool { return w.wakes }

func (w *wakingReader) Read(p []byte) (int, error) {
	w.offered = append(w.offered, len(p))
	return w.waitingReader.Read(p)
}

// TestDecoderWokenReadsPooled: woken from a wait that waits for input, the
// decoder reads into a pooled buffer at once (an event larger than the
// inline buffer takes one read) and gives it back before the next wait; a
// ReadWaiter that cannot wait for input gets the inline buffer as before.
func TestDecoderWokenReadsPooled(t *testing.T) {
	event := AppendStreamEvent(nil, 0, 1, bytes.Repeat([]byte("x"), 200))
	for _, wakes := range []bool{true, false} {
		r := &wakingReader{waitingReader: waitingReader{chunks: [][]byte{event, event}}, wakes: wakes}
		d := NewDecoder(r, 0)
		for range 2 {
			ev, err := d.Next()
			require.NoError(t, err)
			assert.Len(t, ev.Data, 200)
		}
		_, err := d.Next()
		require.ErrorIs(t, err, io.EOF)
		if wakes {
			assert.Equal(t, []int{pooledBufSize, pooledBufSize, pooledBufSize}, r.offered, "one read per event (and one for the end), each woken, into a pooled buffer")
		} else {
			idLine := len("id: 0_1\n") // consumed before the move
			assert.Equal(t, []int{idleBufSize, pooledBufSize - (idleBufSize - idLine)}, r.offered[:2], "the inline buffer, then a pooled one")
			assert.Len(t, r.offered, 5, "two reads per event")
		}
		assert.True(t, d.pooled == nil, "no pooled buffer held at the end")
		assert.Equal(t, 3, r.waits)
	}
}

// gatedReader serves its chunks one per Read, as many reads as allow
// says; then MayRead declines with errGated.
type gatedReader struct {
	waitingReader
	allow int
	asks  int
}

var errGated = errors.New("gated")

func (g *gatedReader) MayRead() error {
	g.asks++
	if g.allow == 0 {
		return errGated
	}
	return nil
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.allow--
	return g.waitingReader.Read(p)
}

// TestDecoderReadGate: a ReadGate is asked before every read, with a block
// half read too; its error is returned as is and is not sticky, and the
// block goes on where it stopped once reads are allowed again.
func TestDecoderReadGate(t *testing.T) {
	r := &gatedReader{waitingReader: waitingReader{chunks: [][]byte{[]byte("id: 7\ndata: a"), []byte("bc\n\n"), []byte("data: x\n\n")}}}
	d := NewDecoder(r, 0)
	_, err := d.Next()
	require.ErrorIs(t, err, errGated, "nothing read yet")
	assert.False(t, d.Pending())

	r.allow = 1 // the id line and half the data line, then the gate
	_, err = d.Next()
	require.ErrorIs(t, err, errGated)
	assert.True(t, d.Pending(), "half a line is kept")
	_, err = d.Next()
	require.ErrorIs(t, err, errGated, "still declined: not sticky, not an end")

	r.allow = 1
	ev, err := d.Next()
	require.NoError(t, err)
	assert.Equal(t, dataEvent("7", "abc"), cp(ev), "the block completed where it stopped")
	_, err = d.Next()
	require.ErrorIs(t, err, errGated)

	r.allow = 2
	ev, err = d.Next()
	require.NoError(t, err)
	assert.Equal(t, "x", string(ev.Data))
	_, err = d.Next()
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, 8, r.asks, "asked before every read (four) and at every refusal (four)")
}

// TestDecoderSawEventID: SawEventID tells an empty id field (which resets
// the last event id) from none since the decoder began; Reset clears it.
func TestDecoderSawEventID(t *testing.T) {
	d := NewDecoder(strings.NewReader("data: a\n\nid: 5\ndata: b\n\nid:\ndata: c\n\n"), 0)
	_, err := d.Next()
	require.NoError(t, err)
	assert.False(t, d.SawEventID())
	_, err = d.Next()
	require.NoError(t, err)
	assert.True(t, d.SawEventID())
	assert.Equal(t, "5", string(d.LastEventID()))
	_, err = d.Next()
	require.NoError(t, err)
	assert.True(t, d.SawEventID())
	assert.Empty(t, d.LastEventID(), "an empty id resets it")
	d.Reset(strings.NewReader("data: d\n\n"))
	assert.False(t, d.SawEventID())
}
