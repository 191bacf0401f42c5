package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http/httputil"
	"net/url"
	"testing"
)

// FuzzGetConnChunked decodes arbitrary input as a chunked body through a
// 16-byte buffer and compares with net/http/httputil's chunked reader: the
// two agree on the bytes both produced, and a clean end is reported only
// with exactly the reference's data.
func FuzzGetConnChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"))
	f.Add([]byte("5;ext=1\r\nhello\r\n1a \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\n"))
	f.Add([]byte("2\r\nhi\r\n"))
	f.Add([]byte("zz\r\n"))
	f.Add([]byte("+5\r\nhello\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &getConn{br: bufio.NewReaderSize(bytes.NewReader(data), 16), chunked: true}
		got, gotErr := readAllSizes(g, 5)
		// Reads alternating small and large move between the small and the
		// burst buffer whenever nothing is buffered: the same bytes come out.
		src := bytes.NewReader(data)
		gb := &getConn{br: bufio.NewReaderSize(src, 16), src: src, chunked: true}
		gotB, gotBErr := readAllSizes(gb, 5, 5000)
		if !bytes.Equal(gotB, got) || gotBErr != gotErr && (gotBErr == io.EOF || gotErr == io.EOF) {
			t.Fatalf("burst buffer changes the body:\nmixed %q (%v)\nsmall %q (%v)", gotB, gotBErr, got, gotErr)
		}
		want, wantErr := readAllSizes(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(data))), 5)
		n := min(len(got), len(want))
		if !bytes.Equal(got[:n], want[:n]) {
			t.Fatalf("data differs:\ngot  %q (%v)\nwant %q (%v)", got, gotErr, want, wantErr)
		}
		if gotErr == io.EOF && (wantErr != io.EOF || !bytes.Equal(got, want)) {
			t.Fatalf("clean end the reference does not see:\ngot  %q\nwant %q (%v)", got, want, wantErr)
		}
	})
}

// readAllSizes reads r to its end (or 1 MiB) with buffers of the given
// sizes in turn.
func readAllSizes(r io.Reader, sizes ...int) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		buf := make([]byte, sizes[i%len(sizes)])
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
		if len(out) > 1<<20 {
			return out, nil
		}
	}
}

// FuzzLineReader feeds input through reads of varying sizes and compares
// the lines with a reference split of the whole input: the same non-blank
// lines (a final unterminated one included), "\r\n" as "\n", and for a
// line over the limit either the error (after the lines before it) or, in
// truncate mode, its first max bytes.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\r\n\n  \nlast"), uint8(3), uint16(16), false)
	f.Add([]byte("short\n0123456789abcdef0123\nafter\n"), uint8(1), uint16(8), false)
	f.Add([]byte("short\n0123456789abcdef0123\nafter\n"), uint8(5), uint16(8), true)
	f.Add([]byte("12345678\r\n123456789\r\n"), uint8(2), uint16(8), false)
	f.Add([]byte("        \n\r\n\t\n"), uint8(7), uint16(4), true)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, limit uint16, truncate bool) {
		max := int(limit%64) + 1
		lr := newLineReader(&chunkReader{data: data, sizes: int(chunk)}, max, truncate)
		var got []string
		var gotErr error
		for {
			line, cut, err := lr.next()
			if err != nil {
				gotErr = err
				break
			}
			if len(line) > max || (cut && !truncate) || (cut && len(line) != max) {
				t.Fatalf("line %q (cut %v) breaks the limit %d", line, cut, max)
			}
			got = append(got, string(line))
		}
		want, tooLong := referenceLines(data, max, truncate)
		if !equalStrings(got, want) {
			t.Fatalf("lines differ (max %d, truncate %v):\ngot  %q\nwant %q", max, truncate, got, want)
		}
		if tooLong != (gotErr == errLineTooLong) {
			t.Fatalf("too long: got %v, want %v", gotErr, tooLong)
		}
		if !tooLong && gotErr != io.EOF {
			t.Fatalf("end: got %v, want EOF", gotErr)
		}
	})
}

// referenceLines splits data the way lineReader must.
func referenceLines(data []byte, max int, truncate bool) ([]string, bool) {
	var out []string
	segs := bytes.Split(data, []byte("\n"))
	for i, seg := range segs {
		if i == len(segs)-1 && len(seg) == 0 {
			break
		}
		seg = trimCR(seg)
		if len(seg) > max {
			if !truncate {
				return out, true
			}
			seg = seg[:max]
		}
		if isBlank(seg) {
			continue
		}
		out = append(out, string(seg))
	}
	return out, false
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// chunkReader returns data in reads of 1 to sizes+1 bytes, varying.
type chunkReader struct {
	data  []byte
	sizes int
	n     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	r.n++
	size := 1 + (r.n*7)%(r.sizes+1)
	size = min(size, len(p), len(r.data))
	copy(p, r.data[:size])
	r.data = r.data[size:]
	return size, nil
}

// FuzzFrame: a framed message is one line without CR, and a JSON message
// stays the same JSON value.
func FuzzFrame(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"x"}`))
	f.Add([]byte("{\n  \"jsonrpc\": \"2.0\",\r\n  \"method\": \"a\\nb\"\n}"))
	f.Add([]byte("[1,\n2]"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		frame := appendFrame([]byte("prefix"), msg)
		if !bytes.HasPrefix(frame, []byte("prefix")) {
			t.Fatal("dst lost")
		}
		line := frame[len("prefix"):]
		if bytes.IndexByte(line, '\n') != len(line)-1 || bytes.IndexByte(line, '\r') >= 0 {
			t.Fatalf("not one line: %q", line)
		}
		if json.Valid(msg) {
			var a, b bytes.Buffer
			if json.Compact(&a, msg) != nil || json.Compact(&b, line[:len(line)-1]) != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("the JSON changed: %q -> %q", msg, line)
			}
			lr := newLineReader(bytes.NewReader(line), len(line), false)
			got, _, err := lr.next()
			if err == nil && !bytes.Equal(got, line[:len(line)-1]) {
				t.Fatalf("read back %q, want %q", got, line)
			}
		}
	})
}

// FuzzEndpoint: whatever a server sends as its endpoint event, the result
// stays on the SSE URL's origin, carries no user information but the SSE
// URL's and no fragment, and parses back to itself.
func FuzzEndpoint(f *testing.F) {
	bases := []string{"http://example.com:8080/mcp/sse?x=1", "https://h.example/sse", "http://[::1]:3000/a/b/", "http://u:p@example.com/sse"}
	for _, s := range []string{"/messages?sessionId=1", "m?s=2", "//evil/x", "http://example.com:8080/../x", "  ?a=b#c ", "%2e%2e/x", "http://user:pw@h.example/"} {
		for i := range bases {
			f.Add([]byte(s), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		base, err := url.Parse(bases[int(which)%len(bases)])
		if err != nil {
			t.Fatal(err)
		}
		u, err := parseEndpoint(base, data)
		if err != nil {
			return
		}
		if !sameOrigin(base, u) || (u.User != nil && u.User.String() != base.User.String()) || u.Fragment != "" || u.Scheme != base.Scheme {
			t.Fatalf("%q gave %q, off the origin of %q", data, u, base)
		}
		again, err := parseEndpoint(base, []byte(u.String()))
		if err != nil || again.String() != u.String() {
			t.Fatalf("%q gave %q, which parses as %v, %v", data, u, again, err)
		}
	})
}
