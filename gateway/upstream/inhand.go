package upstream

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// Most SSE answers arrive whole, or nearly, with their headers: a response
// event in the first chunk, perhaps the end of the body too. fasthttp holds
// such input in its read buffer, where a read takes it without the socket;
// the gateway relays it in the request's own goroutine (no pump goroutine,
// no hand-off) and starts a pump only for an answer still arriving. What
// arrived is known from the connection's record of the response
// (trackedConn): every byte fasthttp read from the socket is in its buffer
// or already consumed, so a body read that stays within the recorded body
// never waits on the socket, however fasthttp buffers.

// ErrNotBuffered is returned by NextBuffered when the next message needs
// input that has not arrived yet. The stream is as it was: Next goes on.
var ErrNotBuffered = errors.New("upstream: the next message has not arrived")

// Buffered is implemented by answer streams that can tell what of their
// input arrived with the response headers.
type Buffered interface {
	// Buffered reports the body bytes that arrived with the headers and an
	// upper bound of the messages among them; 0 when the stream cannot tell.
	Buffered() (n, messages int)
	// NextBuffered is Next limited to that input: ErrNotBuffered when the
	// next message needs more.
	NextBuffered() ([]byte, error)
	// RestArrived reports whether reading the body to its end (Drain) will
	// not wait: the end arrived with the headers, or it is all that is
	// left and waits on the socket.
	RestArrived() bool
	// OweEnd, after RestArrived reported false, is for the body's end that
	// has not arrived at all: when the connection can take it later (before
	// its next request), the stream reads it as arrived, so Drain does not
	// wait, and OweEnd reports true.
	OweEnd() bool
	// AwaitBuffered is for an answer whose headers came alone, or whose
	// input in hand was used up: it waits up to d for the next whole part
	// of the body to arrive, and then the stream reports it as if it had
	// come with the headers (Buffered, NextBuffered). It reports whether
	// the stream has buffered input; false when it cannot tell what
	// arrives (then Next goes on).
	AwaitBuffered(d time.Duration) bool
}

// inHand is what of a response body arrived with its headers (answerInHand).
type inHand struct {
	n        int  // body bytes a reader can take without the socket
	lines    int  // line breaks among them: an upper bound of SSE events with data
	complete bool // the body's end arrived too
	boundary bool // (chunked) the recorded input ends right after a whole chunk
}

// answerInHand reads rec, the recorded start of a response (status line,
// headers, body so far) whose body has the given fasthttp content length
// (-1 chunked, -2 until the connection closes). ok is false when rec is not
// the start of a 200 response with all its headers, or its framing is
// malformed (fasthttp will say so).
//
// For a chunked body only whole chunks count, their closing CRLF included:
// fasthttp reads the CRLF right after a chunk's last byte, so a chunk whose
// CRLF is missing would wait on the socket.
func answerInHand(rec []byte, contentLength int) (h inHand, ok bool) {
	body, ok := responseBody(rec)
	if !ok {
		return inHand{}, false
	}
	return bodyInHand(body, contentLength)
}

// responseBody returns what of the body follows the status line and headers
// in rec; ok is false when rec is not the start of a 200 response with all
// its headers.
func responseBody(rec []byte) (body []byte, ok bool) {
	if len(rec) < 13 || !bytes.HasPrefix(rec, []byte("HTTP/1.")) || string(rec[8:12]) != " 200" || rec[12] != ' ' && rec[12] != '\r' {
		return nil, false
	}
	end := bytes.Index(rec, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false
	}
	return rec[end+4:], true
}

// bodyInHand is answerInHand for the body's start alone.
func bodyInHand(body []byte, contentLength int) (h inHand, ok bool) {
	switch {
	case contentLength >= 0:
		h.n = min(len(body), contentLength)
		h.lines = lineBreaks(body[:h.n])
		h.complete = len(body) >= contentLength
		return h, true
	case contentLength == -1:
		for {
			h.boundary = len(body) == 0
			i := bytes.Index(body, []byte("\r\n"))
			if i < 0 {
				return h, true
			}
			line := body[:i]
			if j := bytes.IndexByte(line, ';'); j >= 0 {
				line = line[:j] // chunk extensions
			}
			size, err := strconv.ParseUint(string(bytes.TrimRight(line, " \t")), 16, 31)
			if err != nil {
				return inHand{}, false
			}
			data := body[i+2:]
			if size == 0 {
				// The last chunk; trailer fields are not expected.
				h.complete = bytes.HasPrefix(data, []byte("\r\n"))
				return h, true
			}
			if len(data) < int(size)+2 {
				return h, true
			}
			if data[size] != '\r' || data[size+1] != '\n' {
				return inHand{}, false
			}
			h.n += int(size)
			h.lines += lineBreaks(data[:size])
			body = data[size+2:]
		}
	default:
		return inHand{n: len(body), lines: lineBreaks(body)}, true
	}
}

func lineBreaks(b []byte) int { return bytes.Count(b, []byte{'\n'}) + bytes.Count(b, []byte{'\r'}) }

// bufferedGate is what the decoder of a POST answer reads: the body, with
// the count of body bytes that arrived with the headers (left). While on
// (NextBuffered), reads stay within them and MayRead declines once they are
// used up.
type bufferedGate struct {
	r    io.Reader
	left int
	h    inHand // at the headers (h.n: what left was)
	// tc is the connection, when the input counted in h ends at a chunk
	// boundary: once left is used up, and the reads took exactly want bytes
	// from the socket since mark (its read count then), the socket holds
	// what follows (RestArrived). want is 0 for input that came with the
	// headers (fasthttp holds it all), the peeked bytes for AwaitBuffered.
	tc         *trackedConn
	mark, want uint64
	on         bool
}

// awaitBody is what AwaitBuffered needs of an answer whose headers came
// without a whole part of its body.
type awaitBody struct {
	tc   *trackedConn
	cl   int      // fasthttp's content length of the body
	pre  [32]byte // the body's start that came with the headers (a chunk's size line, say)
	preN int
}

// fromRecord sets st's gate from what of its answer came with the headers
// (tc's record), or readies AwaitBuffered when the headers came alone.
func (st *httpStream) fromRecord(tc *trackedConn, contentLength int) {
	body, ok := responseBody(tc.recorded())
	if !ok {
		return
	}
	h, ok := bodyInHand(body, contentLength)
	switch {
	case !ok:
	case h.n > 0:
		st.gateOn(h, tc, h.boundary && !tc.truncated, 0)
	case !h.complete && !tc.truncated && tc.raw != nil && len(body) <= len(st.await.pre):
		st.await.tc, st.await.cl = tc, contentLength
		st.await.preN = copy(st.await.pre[:], body)
	}
}

// gateOn makes st's reads count h's input (see bufferedGate); socketNext:
// the socket holds what follows it once want bytes more were read.
func (st *httpStream) gateOn(h inHand, tc *trackedConn, socketNext bool, want uint64) {
	st.gate = bufferedGate{r: st.gate.r, left: h.n, h: h}
	if socketNext {
		st.gate.tc, st.gate.mark, st.gate.want = tc, tc.read, want
	}
	st.gated = true
}

// AwaitBuffered implements Buffered, for the headers that came alone and
// for the input after what was in hand when the socket holds what follows
// it (a chunk boundary, nothing more read). The wait is for the socket (a
// read deadline of d), and what arrived is looked at without being read
// (MSG_PEEK): the reads that later take it never wait. A Close meanwhile
// closes the connection, which ends the wait.
func (st *httpStream) AwaitBuffered(d time.Duration) bool {
	if a := st.await; a.tc != nil {
		st.await.tc = nil
		return d > 0 && st.awaitBody(a.tc, a.pre[:a.preN], a.cl, d)
	}
	g := &st.gate
	switch {
	case !st.gated:
		return false
	case g.left > 0:
		return true
	case d <= 0 || g.h.complete || g.tc == nil || g.tc.read-g.mark != g.want:
		return false
	}
	return st.awaitBody(g.tc, nil, -1, d)
}

// awaitBody waits up to d for tc's socket to hold a whole part of the
// body that follows pre (the body's bytes already read, not yet counted),
// framed as contentLength says, and gates st on it.
func (st *httpStream) awaitBody(tc *trackedConn, pre []byte, contentLength int, d time.Duration) bool {
	if tc.dl.ApplyRead(time.Now().Add(d)) != nil {
		return false
	}
	buf := records.Get().(*[recordSize]byte)
	defer records.Put(buf)
	k := copy(buf[:], pre)
	var h inHand
	ok, peeked := false, 0
	err := tc.raw.Read(func(fd uintptr) bool {
		n, wait := peekPending(fd, buf[k:])
		if wait {
			return false
		}
		if n <= 0 { // the end of the input, or a failure: the reads will tell
			ok = false
			return true
		}
		peeked = n
		h, ok = bodyInHand(buf[:k+n], contentLength)
		return !ok || h.n > 0 || h.complete || k+n == len(buf)
	})
	tc.clearDeadlines()
	if err != nil || !ok || h.n == 0 {
		return false
	}
	st.gateOn(h, tc, h.boundary && k+peeked < len(buf), uint64(peeked))
	return true
}

func (g *bufferedGate) Read(p []byte) (int, error) {
	if g.on {
		if g.left <= 0 {
			return 0, ErrNotBuffered
		}
		p = p[:min(len(p), g.left)]
	}
	n, err := g.r.Read(p)
	g.left -= n
	return n, err
}

// MayRead implements sse.ReadGate.
func (g *bufferedGate) MayRead() error {
	if g.on && g.left <= 0 {
		return ErrNotBuffered
	}
	return nil
}

// Buffered implements Buffered.
func (st *httpStream) Buffered() (n, messages int) {
	if !st.gated {
		return 0, 0
	}
	return max(st.gate.left, 0), st.gate.h.lines
}

// NextBuffered implements Buffered.
func (st *httpStream) NextBuffered() ([]byte, error) {
	if !st.gated {
		return nil, ErrNotBuffered
	}
	st.gate.on = true
	defer func() { st.gate.on = false }()
	return st.Next()
}

// RestArrived implements Buffered.
func (st *httpStream) RestArrived() bool {
	switch g := &st.gate; {
	case !st.gated:
		return false
	case g.h.complete:
		return true
	default:
		// The socket has the rest, which must be the body's end and
		// nothing else before it.
		return st.socketHasRest() && g.tc.chunkedEndPending()
	}
}

// socketHasRest reports whether everything read from the socket was
// consumed, at a chunk boundary: what follows is on the socket.
func (st *httpStream) socketHasRest() bool {
	g := &st.gate
	return st.gated && g.tc != nil && g.left == 0 && !st.dec.Pending() && g.tc.read-g.mark == g.want
}

// OweEnd implements Buffered: the connection owes the end
// (trackedConn.oweChunkedEnd) when RestArrived's look at the socket found
// nothing pending.
func (st *httpStream) OweEnd() bool {
	return !st.gate.h.complete && st.socketHasRest() && st.gate.tc.oweChunkedEnd()
}
