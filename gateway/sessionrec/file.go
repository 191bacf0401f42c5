package sessionrec

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// The state file:
//
//	header   magic "mcpgate state\n" (14 bytes)
//	         file format version, uint16 big-endian
//	         written at, unix ns, int64 big-endian
//	frames   per record: uvarint length (>= 1), the record (AppendRecord),
//	         CRC-32C of the record, uint32 big-endian
//	trailer  uvarint 0 (the end), uvarint record count,
//	         CRC-32C of every byte before it, uint32 big-endian
//
// Nothing may follow the trailer.
const (
	// Magic starts every state file.
	Magic = "mcpgate state\n"
	// FileVersion is the framing version Writer writes and ReadFile reads.
	FileVersion = 1
	// MaxRecordBytes bounds one record in a file.
	MaxRecordBytes = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header describes a state file.
type Header struct {
	Version int   // FileVersion of the writer
	Written int64 // unix ns, when the writer started
}

var (
	// ErrForeign: the input is not an mcpgate state file.
	ErrForeign = errors.New("not an mcpgate state file")
	// ErrVersion: a state file of a format version this build cannot read.
	ErrVersion = errors.New("unsupported state file version")
	// ErrTruncated: the file ends before its trailer.
	ErrTruncated = errors.New("truncated state file")
	// ErrCorrupt: a checksum, a length, a record or the trailer is wrong.
	ErrCorrupt = errors.New("corrupt state file")
)

// FileError is why ReadFile refused a state file: Err (one of ErrForeign,
// ErrVersion, ErrTruncated, ErrCorrupt) at byte Offset, in the Record-th
// record (1-based; 0 outside records), with a Detail.
type FileError struct {
	Err    error
	Offset int64
	Record int
	Detail string
}

func (e *FileError) Error() string {
	where := fmt.Sprintf("at byte %d", e.Offset)
	if e.Record > 0 {
		where = fmt.Sprintf("in record %d (byte %d)", e.Record, e.Offset)
	}
	return fmt.Sprintf("sessionrec: %v %s: %s", e.Err, where, e.Detail)
}

func (e *FileError) Unwrap() error { return e.Err }

// Writer writes a state file: the header at NewWriter, a frame per Write,
// the trailer at Close. It buffers nothing itself; wrap w in a
// bufio.Writer. Not safe for concurrent use.
type Writer struct {
	w     io.Writer
	crc   hash.Hash32 // of every byte written
	n     uint64
	buf   []byte
	err   error
	close bool
}

// NewWriter writes the header of a state file to w.
func NewWriter(w io.Writer, written int64) (*Writer, error) {
	sw := &Writer{w: w, crc: crc32.New(castagnoli)}
	h := make([]byte, 0, len(Magic)+10)
	h = append(h, Magic...)
	h = binary.BigEndian.AppendUint16(h, FileVersion)
	h = binary.BigEndian.AppendUint64(h, uint64(written))
	sw.write(h)
	return sw, sw.err
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	_, w.err = w.w.Write(b)
	w.crc.Write(b)
}

// Write appends one record.
func (w *Writer) Write(r *Record) error {
	if w.close {
		return errors.New("sessionrec: Write after Close")
	}
	rec := AppendRecord(w.buf[:0], r)
	if len(rec) > MaxRecordBytes {
		return fmt.Errorf("sessionrec: record %q is %d bytes, over the limit of %d", r.ID, len(rec), MaxRecordBytes)
	}
	var frame [binary.MaxVarintLen64]byte
	w.write(frame[:binary.PutUvarint(frame[:], uint64(len(rec)))])
	w.write(rec)
	w.write(binary.BigEndian.AppendUint32(frame[:0], crc32.Checksum(rec, castagnoli)))
	w.n++
	if cap(rec) <= 1<<20 {
		w.buf = rec // reuse moderate buffers only
	}
	return w.err
}

// Close writes the trailer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.close {
		return w.err
	}
	w.close = true
	t := binary.AppendUvarint(nil, 0)
	t = binary.AppendUvarint(t, w.n)
	w.write(t)
	w.write(binary.BigEndian.AppendUint32(nil, w.crc.Sum32()))
	return w.err
}

// countingReader tracks the offset and the running checksum of what was
// read.
type countingReader struct {
	r   *bufio.Reader
	off int64
	crc hash.Hash32
	one [1]byte
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.off++
		c.one[0] = b
		c.crc.Write(c.one[:])
	}
	return b, err
}

func (c *countingReader) full(p []byte) error {
	n, err := io.ReadFull(c.r, p)
	c.off += int64(n)
	c.crc.Write(p[:n])
	return err
}

// ReadFile reads a whole state file and returns its records, or refuses the
// file with a *FileError (and no records): not a state file (ErrForeign),
// another format version (ErrVersion), cut short (ErrTruncated), or a
// checksum, length or record that does not check out (ErrCorrupt).
func ReadFile(r io.Reader) (Header, []*Record, error) {
	cr := &countingReader{r: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(castagnoli)}
	var h Header
	fail := func(err error, rec int, format string, args ...any) (Header, []*Record, error) {
		return Header{}, nil, &FileError{Err: err, Offset: cr.off, Record: rec, Detail: fmt.Sprintf(format, args...)}
	}
	head := make([]byte, len(Magic)+10)
	if err := cr.full(head[:len(Magic)]); err != nil || !bytes.Equal(head[:len(Magic)], []byte(Magic)) {
		return fail(ErrForeign, 0, "it does not start with %q", Magic)
	}
	if err := cr.full(head[len(Magic):]); err != nil {
		return fail(ErrTruncated, 0, "the header is cut short")
	}
	h.Version = int(binary.BigEndian.Uint16(head[len(Magic):]))
	h.Written = int64(binary.BigEndian.Uint64(head[len(Magic)+2:]))
	if h.Version != FileVersion {
		return fail(ErrVersion, 0, "format version %d, this build reads version %d", h.Version, FileVersion)
	}
	var recs []*Record
	var buf []byte
	var sum [4]byte
	for {
		n, err := binary.ReadUvarint(cr)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fail(ErrTruncated, len(recs)+1, "the file ends after %d records, before its trailer", len(recs))
			}
			return fail(ErrCorrupt, len(recs)+1, "bad record length: %v", err)
		}
		if n == 0 {
			break
		}
		if n > MaxRecordBytes {
			return fail(ErrCorrupt, len(recs)+1, "record length %d over the limit of %d", n, MaxRecordBytes)
		}
		// readN grows its buffer as the bytes arrive, not by the declared
		// length: a corrupt length must not allocate a gigabyte.
		rec, err := readN(cr, buf, int(n))
		if err != nil {
			return fail(ErrTruncated, len(recs)+1, "the file ends inside a record of %d bytes", n)
		}
		buf = rec
		if err := cr.full(sum[:]); err != nil {
			return fail(ErrTruncated, len(recs)+1, "the file ends before the record's checksum")
		}
		if got, want := crc32.Checksum(rec, castagnoli), binary.BigEndian.Uint32(sum[:]); got != want {
			return fail(ErrCorrupt, len(recs)+1, "checksum mismatch (%08x, want %08x)", got, want)
		}
		dr, err := DecodeRecord(rec)
		if err != nil {
			return fail(ErrCorrupt, len(recs)+1, "%v", err)
		}
		recs = append(recs, dr)
	}
	count, err := binary.ReadUvarint(cr)
	if err != nil {
		return fail(ErrTruncated, 0, "the trailer is cut short")
	}
	want := cr.crc.Sum32()
	if err := cr.full(sum[:]); err != nil {
		return fail(ErrTruncated, 0, "the trailer is cut short")
	}
	if count != uint64(len(recs)) {
		return fail(ErrCorrupt, 0, "the trailer counts %d records, the file holds %d", count, len(recs))
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return fail(ErrCorrupt, 0, "file checksum mismatch (%08x, want %08x)", got, want)
	}
	if _, err := cr.r.ReadByte(); err != io.EOF {
		return fail(ErrCorrupt, 0, "bytes follow the trailer")
	}
	return h, recs, nil
}

// readN reads n bytes into buf (reused when large enough), growing it as
// bytes arrive.
func readN(cr *countingReader, buf []byte, n int) ([]byte, error) {
	if cap(buf) >= n {
		buf = buf[:n]
		return buf, cr.full(buf)
	}
	buf = buf[:0]
	const step = 1 << 20
	for len(buf) < n {
		k := min(step, n-len(buf))
		buf = append(buf, make([]byte, k)...)
		if err := cr.full(buf[len(buf)-k:]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}
