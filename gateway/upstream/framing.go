package upstream

import (
	"bytes"
	"errors"
	"io"
)

// Newline-delimited JSON-RPC (the stdio transport): each message is one line
// ending in "\n"; messages contain no embedded newline.

// errLineTooLong: a line exceeded the reader's limit.
var errLineTooLong = errors.New("line too long")

// lineBufSize is a lineReader's first and resting buffer size; the buffer
// grows (doubling) to hold a longer line, up to the limit, and goes back to
// this size once the long line is consumed.
const lineBufSize = 4 << 10

// lineReader splits a byte stream into lines ending in "\n" (a "\r" just
// before the "\n" is dropped) and skips blank lines. A final line without
// "\n" is returned at EOF. A line longer than max bytes (not counting its
// terminator) is errLineTooLong, after which the reader stays failed; or,
// with truncate set, its first max bytes are returned with cut = true and
// the rest of it is skipped. Not safe for concurrent use.
type lineReader struct {
	r        io.Reader
	max      int
	truncate bool

	buf        []byte
	start, end int  // buf[start:end] is read but not yet returned
	scan       int  // buf[start:scan] holds no '\n'
	skipping   bool // truncate mode: discarding the rest of a cut line
	err        error
}

func newLineReader(r io.Reader, max int, truncate bool) *lineReader {
	return &lineReader{r: r, max: max, truncate: truncate}
}

// next returns the next non-blank line, valid until the following call.
func (lr *lineReader) next() (line []byte, cut bool, err error) {
	for {
		if i := bytes.IndexByte(lr.buf[lr.scan:lr.end], '\n'); i >= 0 {
			nl := lr.scan + i
			line = lr.buf[lr.start:nl]
			lr.start, lr.scan = nl+1, nl+1
			if lr.skipping {
				lr.skipping = false
				continue
			}
			line = trimCR(line)
			if len(line) > lr.max { // only when the buffer held it all before the check below
				if lr.truncate {
					if isBlank(line[:lr.max]) {
						continue
					}
					return line[:lr.max], true, nil
				}
				lr.err = errLineTooLong
				return nil, false, lr.err
			}
			if isBlank(line) {
				continue
			}
			return line, false, nil
		}
		lr.scan = lr.end
		if lr.skipping {
			lr.start, lr.scan = lr.end, lr.end // the cut line's rest: discard
		}
		// No '\n' in buf[start:end]: is it already too long? Content may be
		// max bytes plus a '\r' whose '\n' has not arrived yet.
		if pending := lr.end - lr.start; pending > lr.max && (pending > lr.max+1 || lr.buf[lr.end-1] != '\r') {
			if !lr.truncate {
				lr.err = errLineTooLong
				return nil, false, lr.err
			}
			line = lr.buf[lr.start : lr.start+lr.max]
			lr.start, lr.scan, lr.skipping = lr.end, lr.end, true
			if isBlank(line) {
				continue
			}
			return line, true, nil
		}
		if lr.err != nil {
			if lr.end > lr.start && !lr.skipping {
				line = trimCR(lr.buf[lr.start:lr.end])
				lr.start, lr.scan = lr.end, lr.end
				if !isBlank(line) {
					return line, false, nil
				}
			}
			return nil, false, lr.err
		}
		lr.fill()
	}
}

// fill reads more input after compacting (or shrinking) the buffer.
func (lr *lineReader) fill() {
	pending := lr.end - lr.start
	switch {
	case lr.buf == nil:
		lr.buf = make([]byte, min(lineBufSize, lr.max+2))
	case len(lr.buf) > lineBufSize && pending < lineBufSize/2:
		// A long line was consumed: go back to a small buffer.
		nb := make([]byte, lineBufSize)
		copy(nb, lr.buf[lr.start:lr.end])
		lr.buf = nb
		lr.scan -= lr.start
		lr.start, lr.end = 0, pending
	case lr.start > 0:
		copy(lr.buf, lr.buf[lr.start:lr.end])
		lr.scan -= lr.start
		lr.start, lr.end = 0, pending
	}
	if lr.end == len(lr.buf) { // full: grow, up to a line of max bytes plus "\r\n"
		nb := make([]byte, min(2*len(lr.buf), lr.max+2))
		copy(nb, lr.buf[:lr.end])
		lr.buf = nb
	}
	for empty := 0; ; empty++ {
		n, err := lr.r.Read(lr.buf[lr.end:])
		lr.end += n
		if err != nil {
			lr.err = err
			return
		}
		if n > 0 {
			return
		}
		if empty == 100 {
			lr.err = io.ErrNoProgress
			return
		}
	}
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// appendFrame appends msg as one line: its CR and LF bytes become spaces
// (in JSON they can only be whitespace between tokens, since strings carry
// them escaped), then "\n".
func appendFrame(dst, msg []byte) []byte {
	start := len(dst)
	dst = append(dst, msg...)
	for i := start; i < len(dst); i++ {
		if dst[i] == '\n' || dst[i] == '\r' {
			dst[i] = ' '
		}
	}
	return append(dst, '\n')
}
