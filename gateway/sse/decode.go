package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
)

// ErrEventTooLarge is wrapped by the error Decoder.Next returns when an event block
// exceeds the decoder's maximum size.
var ErrEventTooLarge = errors.New("sse: event too large")

// DefaultMaxEventBytes is the maximum event block size used when NewDecoder is given 0.
const DefaultMaxEventBytes = 4 << 20

// Buffer sizes. While no input is pending (every read byte consumed, and the last read
// came up short) the decoder reads into an inline buffer of idleBufSize bytes, so a decoder blocked on an idle stream
// holds no separate buffer. When a line does not fit it moves to a pooled buffer of
// pooledBufSize bytes, then doubles (up to the maximum event size); a read that fills
// the pooled buffer means input comes in bursts (an upstream writing many events at
// once), and the decoder moves to a pooled buffer of burstBufSize bytes, so a burst
// takes one read instead of one per kilobyte. It returns to the inline buffer as soon as
// everything read is consumed again.
const (
	idleBufSize   = 128
	pooledBufSize = 1024
	burstBufSize  = 16 << 10
)

var (
	bufPool   = sync.Pool{New: func() any { return new([pooledBufSize]byte) }}
	burstPool = sync.Pool{New: func() any { return new([burstBufSize]byte) }}
)

// maxEmptyReads bounds consecutive (0, nil) reads before Next gives up with
// io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

var bom = []byte{0xEF, 0xBB, 0xBF}

// Decoder reads event blocks from an SSE stream. See the package documentation for its
// concurrency contract: one goroutine owns it.
//
// The size of a block is the number of bytes of its field and comment lines, each counted
// with one line-terminator byte, not counting the blank line that ends it.
//
// The fields an event touches come first, together (a stream's decoder is cold again by
// its next event, and each cache line it touches is a miss); the inline read buffer,
// which a woken decoder does not read into (InputWaiter), is last.
type Decoder struct {
	r      io.Reader
	waiter ReadWaiter // r, if it implements ReadWaiter
	gate   ReadGate   // r, if it implements ReadGate
	max    int

	// buf[start:end] is input read but not yet consumed. buf is idle, pooled, or a
	// larger buffer of its own.
	buf        []byte
	start, end int
	pooled     *[pooledBufSize]byte
	burst      *[burstBufSize]byte
	short      bool // the last read returned less than asked: the input may be idle
	wakes      bool // r is an InputWaiter whose WaitReadable waits for input
	skipLF     bool // the previous line ended in '\r': skip one '\n' that follows
	bomChecked bool

	// State of the block being read.
	hasID      bool
	hasEvent   bool
	hasData    bool
	sawComment bool
	sawID      bool // a block with an id field was dispatched: lastID is its id
	blockBytes int
	readErr    error  // sticky error from r (io.EOF included)
	fatal      error  // sticky error returned by every later Next
	data       []byte // data field values, each followed by '\n'
	// dataIn is the block's one data value while it is still in buf
	// (inBuf): an event of one data line is handed out from the input,
	// not copied, unless buf changes before the block ends (keepData).
	dataIn  []byte
	inBuf   bool
	evType  []byte
	blockID []byte
	retry   int64

	lastID []byte // id of the last dispatched block that had one
	ev     Event

	// Inline backing for the short fields most events carry (an id, the
	// event type), so a new Decoder reads its first events without
	// allocating; a longer value moves to the heap as append does.
	idA, idB [inlineIDBytes]byte
	evTypeA  [inlineTypeBytes]byte

	comments int
	idle     [idleBufSize]byte
}

const (
	inlineIDBytes   = 24
	inlineTypeBytes = 16
)

// NewDecoder returns a Decoder reading from r. maxEventBytes bounds the size of one event
// block; 0 (or a negative value) means DefaultMaxEventBytes.
func NewDecoder(r io.Reader, maxEventBytes int) *Decoder {
	d := new(Decoder)
	d.Init(r, maxEventBytes)
	return d
}

// Init makes d, a zero Decoder, one reading from r, as NewDecoder makes a new one: for a
// Decoder inside a struct of the caller's, which saves an allocation per stream.
func (d *Decoder) Init(r io.Reader, maxEventBytes int) {
	if maxEventBytes <= 0 {
		maxEventBytes = DefaultMaxEventBytes
	}
	maxEventBytes = min(maxEventBytes, math.MaxInt-1) // buffers hold max+1 bytes
	*d = Decoder{r: r, max: maxEventBytes, retry: -1}
	d.blockID, d.lastID, d.evType = d.idA[:0], d.idB[:0], d.evTypeA[:0]
	d.waiter, _ = r.(ReadWaiter)
	d.gate, _ = r.(ReadGate)
	d.wakes = waitsForInput(r)
}

// ReadWaiter is implemented by readers that can wait until a Read will not block. The
// decoder calls WaitReadable before it reads with nothing pending, so a goroutine
// blocked on a quiet stream waits there, at a shallow stack depth, rather than deep
// inside the reader (the runtime can then shrink its stack).
//
// A non-nil error from WaitReadable is returned by Next as is and is not sticky: the
// decoder is left as it was (a block may be half read), and a later Next goes on
// where it stopped. A reader uses it to give up waiting (an idle stream whose owner
// would rather wait for it without a goroutine).
type ReadWaiter interface {
	WaitReadable() error
}

// InputWaiter is a ReadWaiter that tells whether its WaitReadable waits for input:
// WaitsForInput true means that WaitReadable returns nil only once a Read finds input
// (or the end of it); false, that it may return at once (the reader cannot await
// input, and its Read blocks instead). Woken from such a wait, the decoder reads
// into a pooled buffer at once rather than into its inline one, which an event
// rarely fits: one read and no copy for an event that came alone.
type InputWaiter interface {
	ReadWaiter
	WaitsForInput() bool
}

func waitsForInput(r io.Reader) bool {
	w, ok := r.(InputWaiter)
	return ok && w.WaitsForInput()
}

// ReadGate is implemented by readers that may decline a read for now: the
// decoder calls MayRead before every read, half-read block or not. A non-nil
// error is returned by Next as is and is not sticky, as a ReadWaiter's. A
// reader uses it to hand out only input that already arrived.
type ReadGate interface {
	MayRead() error
}

// waitError carries a ReadWaiter's or ReadGate's error out of fill, to be returned without
// becoming sticky.
type waitError struct{ err error }

func (e waitError) Error() string { return e.err.Error() }

// Reset makes d read a new stream from r, as if freshly made by NewDecoder with the same
// maximum size, but keeping its buffers (so a pooled Decoder does not reallocate). It
// clears the last event ID, the comment count and any sticky error.
func (d *Decoder) Reset(r io.Reader) {
	*d = Decoder{
		r: r, max: d.max, retry: -1,
		pooled: d.pooled, burst: d.burst, data: d.data[:0], evType: d.evType[:0], blockID: d.blockID[:0], lastID: d.lastID[:0],
	}
	d.waiter, _ = r.(ReadWaiter)
	d.gate, _ = r.(ReadGate)
	d.wakes = waitsForInput(r)
	d.useIdleBuf()
}

// useIdleBuf makes the inline buffer current, giving a pooled buffer back. Nothing may
// be pending in buf.
func (d *Decoder) useIdleBuf() {
	d.releaseBufs()
	d.buf = d.idle[:min(idleBufSize, d.max+1)]
}

// releaseBufs gives the pooled buffers back. buf must not be one of them afterwards.
func (d *Decoder) releaseBufs() {
	if d.pooled != nil {
		bufPool.Put(d.pooled)
		d.pooled = nil
	}
	if d.burst != nil {
		burstPool.Put(d.burst)
		d.burst = nil
	}
}

// Next returns the next event block: a block with at least one effective id, event, data
// or retry field. Blocks with only comments are skipped and counted (see Comments); blocks
// with only unknown or ignored fields are skipped silently. The returned Event and its
// slices are valid until the next call to Next.
//
// Line ends may be LF, CRLF or CR, in any mix and split across reads. A leading UTF-8 BOM
// is skipped. A line without a colon is a field name with an empty value; one space after
// the colon is stripped; unknown fields are ignored; an id containing NUL is ignored; a
// retry value that is not all ASCII digits (or overflows int64) is ignored.
//
// At the end of the input an unterminated block is discarded and io.EOF is returned. A
// block larger than the maximum size returns an error wrapping ErrEventTooLarge. Any
// error from the underlying reader other than io.EOF is returned as is. Every error is
// sticky: the decoder returns it from all later calls.
func (d *Decoder) Next() (*Event, error) {
	if d.fatal != nil {
		return nil, d.fatal
	}
	if !d.bomChecked {
		if err := d.checkBOM(); err != nil {
			return nil, err
		}
	}
	for {
		for d.start < d.end {
			b := d.buf[d.start:d.end]
			if d.skipLF {
				d.skipLF = false
				if b[0] == '\n' {
					d.start++
					continue
				}
			}
			i := indexEOL(b)
			if i < 0 {
				break
			}
			d.skipLF = b[i] == '\r'
			d.start += i + 1
			if i == 0 {
				if ev := d.dispatch(); ev != nil {
					return ev, nil
				}
				continue
			}
			d.blockBytes += i + 1
			if d.blockBytes > d.max {
				return nil, d.tooLarge()
			}
			d.processLine(b[:i])
		}
		// Checked before the read error so that the outcome does not depend on how the
		// input was split into reads.
		if d.blockBytes+(d.end-d.start) > d.max {
			return nil, d.tooLarge()
		}
		if d.readErr != nil {
			// An unterminated trailing block (or line) is discarded.
			return nil, d.fail(d.readErr)
		}
		if err := d.fill(); err != nil {
			return nil, d.fillFailed(err)
		}
	}
}

// fillFailed returns what Next returns for an error from fill: a ReadWaiter's or ReadGate's
// error as is, anything else made sticky.
func (d *Decoder) fillFailed(err error) error {
	if we, ok := err.(waitError); ok {
		return we.err
	}
	return d.fail(err)
}

// fail makes err sticky: Next returns it from now on, and the input read
// but not consumed is dropped with its buffer (a pooled one goes back).
func (d *Decoder) fail(err error) error {
	d.fatal = err
	d.start, d.end = 0, 0
	d.useIdleBuf()
	return err
}

// Pending reports whether Next has something to return without reading: input
// read but not yet consumed, or an error.
func (d *Decoder) Pending() bool {
	return d.start < d.end || d.readErr != nil || d.fatal != nil
}

func (d *Decoder) tooLarge() error {
	return d.fail(fmt.Errorf("sse.Decoder.Next: block over %d bytes: %w", d.max, ErrEventTooLarge))
}

// checkBOM skips a UTF-8 byte order mark at the very start of the stream.
func (d *Decoder) checkBOM() error {
	for {
		n := d.end - d.start
		b := d.buf[d.start:d.end]
		if n >= len(bom) || d.readErr != nil || !bytes.HasPrefix(bom, b) {
			if bytes.HasPrefix(b, bom) {
				d.start += len(bom)
			}
			d.bomChecked = true
			return nil
		}
		if err := d.fill(); err != nil {
			return d.fillFailed(err)
		}
	}
}

// fill moves unconsumed input to the front of buf, switches to the inline buffer when
// nothing is pending and the last read came up short (the next one may block for long),
// or to a larger buffer when buf is full or input is flowing, and reads once from r. It returns a non-nil
// error only when r makes no progress, or a waitError when the ReadWaiter gave up.
func (d *Decoder) fill() error {
	d.keepData()
	if d.start > 0 {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	idle := len(d.buf) > 0 && &d.buf[0] == &d.idle[0]
	if len(d.buf) == 0 || (d.end == 0 && d.short && !idle) {
		d.useIdleBuf()
		idle = true
	}
	// A full buffer must grow; a full read into the inline buffer means input is
	// flowing, so larger reads pay off.
	full := d.end == len(d.buf)
	if full || (idle && !d.short && d.end > 0) {
		n := min(max(2*len(d.buf), pooledBufSize), d.max+1)
		switch {
		case n > len(d.buf):
			d.grow(n)
		case full:
			// Unreachable: Next reports an oversized line before asking for more.
			return fmt.Errorf("sse.Decoder.Next: buffer full: %w", ErrEventTooLarge)
		}
	} else if !d.short && d.pooled != nil && burstBufSize <= d.max+1 {
		// The last read filled the pooled buffer: a burst; read the rest of it whole.
		d.grow(burstBufSize)
	}
	if d.end == 0 && d.waiter != nil {
		if err := d.waiter.WaitReadable(); err != nil {
			return waitError{err}
		}
		if idle && d.wakes && d.max+1 >= pooledBufSize {
			d.grow(pooledBufSize) // input is there (InputWaiter); nothing to move
		}
	}
	if d.gate != nil {
		if err := d.gate.MayRead(); err != nil {
			return waitError{err}
		}
	}
	for range maxEmptyReads {
		n, err := d.r.Read(d.buf[d.end:])
		if n < 0 || n > len(d.buf)-d.end {
			return fmt.Errorf("sse.Decoder.Next: reader returned invalid count %d", n)
		}
		d.end += n
		d.short = d.end < len(d.buf)
		if err != nil {
			d.readErr = err
			return nil
		}
		if n > 0 {
			return nil
		}
	}
	return io.ErrNoProgress
}

// grow moves the pending input into a buffer of n bytes: a pooled one when n is the
// size of one, else a new one.
func (d *Decoder) grow(n int) {
	var nb []byte
	var pooled *[pooledBufSize]byte
	var burst *[burstBufSize]byte
	switch n {
	case pooledBufSize:
		pooled = bufPool.Get().(*[pooledBufSize]byte)
		nb = pooled[:]
	case burstBufSize:
		burst = burstPool.Get().(*[burstBufSize]byte)
		nb = burst[:]
	default:
		nb = make([]byte, n)
	}
	copy(nb, d.buf[:d.end])
	d.releaseBufs()
	d.buf, d.pooled, d.burst = nb, pooled, burst
}

// processLine applies one non-empty line (without its terminator) to the block state.
func (d *Decoder) processLine(line []byte) {
	if line[0] == ':' {
		d.sawComment = true
		return
	}
	var name, value []byte
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	} else {
		name = line
	}
	switch string(name) {
	case "data":
		if !d.hasData {
			d.dataIn, d.inBuf, d.hasData = value, true, true
			return
		}
		d.keepData()
		d.data = append(slices.Grow(d.data, len(value)+1), value...)
		d.data = append(d.data, '\n')
	case "event":
		d.evType = append(d.evType[:0], value...)
		d.hasEvent = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.blockID = append(d.blockID[:0], value...)
			d.hasID = true
		}
	case "retry":
		if ms, ok := parseRetry(value); ok {
			d.retry = ms
		}
	}
}

// keepData copies a data value still in buf into data, before buf changes.
func (d *Decoder) keepData() {
	if d.inBuf {
		d.data = append(append(d.data[:0], d.dataIn...), '\n')
		d.dataIn, d.inBuf = nil, false
	}
}

// parseRetry accepts one or more ASCII digits that fit in an int64.
func parseRetry(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// dispatch ends the current block. It returns the event, or nil when the block had no
// effective field.
func (d *Decoder) dispatch() *Event {
	effective := d.hasID || d.hasEvent || d.hasData || d.retry >= 0
	if !effective {
		if d.sawComment {
			d.comments++
		}
		d.resetBlock()
		return nil
	}
	ev := &d.ev
	*ev = Event{HasID: d.hasID, HasData: d.hasData, Retry: d.retry}
	if d.hasID {
		d.lastID, d.blockID = d.blockID, d.lastID
		ev.ID = d.lastID
		d.sawID = true
	}
	if d.hasEvent {
		ev.Event = d.evType
	}
	switch {
	case d.inBuf:
		ev.Data = d.dataIn
	case d.hasData:
		ev.Data = d.data[:len(d.data)-1]
	}
	d.resetBlock()
	return ev
}

func (d *Decoder) resetBlock() {
	d.blockBytes = 0
	d.data = d.data[:0]
	d.dataIn, d.inBuf = nil, false
	d.evType = d.evType[:0]
	d.blockID = d.blockID[:0]
	d.hasID, d.hasEvent, d.hasData, d.sawComment = false, false, false, false
	d.retry = -1
}

// LastEventID returns the SSE "last event ID buffer": the id of the most recent returned
// event that carried one (an empty id field resets it to empty). It is empty before any id
// was seen. The slice is valid until the next call to Next.
func (d *Decoder) LastEventID() []byte { return d.lastID }

// SawEventID reports whether a block with an id field was dispatched since the decoder
// was made (or Reset): LastEventID is then that block's id, an empty one included (which
// resets it). A reader that moves to a new decoder keeps the old one's id while this is
// false.
func (d *Decoder) SawEventID() bool { return d.sawID }

// Comments returns how many comment-only blocks Next has skipped.
func (d *Decoder) Comments() int { return d.comments }
