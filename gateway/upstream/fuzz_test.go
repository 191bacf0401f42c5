package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httputil"
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
		got, gotErr := readAllSmall(g)
		want, wantErr := readAllSmall(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(data))))
		n := min(len(got), len(want))
		if !bytes.Equal(got[:n], want[:n]) {
			t.Fatalf("data differs:\ngot  %q (%v)\nwant %q (%v)", got, gotErr, want, wantErr)
		}
		if gotErr == io.EOF && (wantErr != io.EOF || !bytes.Equal(got, want)) {
			t.Fatalf("clean end the reference does not see:\ngot  %q\nwant %q (%v)", got, want, wantErr)
		}
	})
}

func readAllSmall(r io.Reader) ([]byte, error) {
	var out []byte
	buf := make([]byte, 5)
	for {
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
