package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// SSEConn is a raw client connection reading the SSE response of a GET for
// a session's standalone stream, line by line: what a test needs when it
// must see the gateway's bytes and event ids exactly, cut the connection
// itself, or check that the gateway ended it.
type SSEConn struct {
	Conn net.Conn
	R    *bufio.Reader
}

// DialStream sends a GET for session sid's standalone stream at url (an
// http://host:port/path endpoint), with Last-Event-ID if last is set, and
// reads the response head, which must be 200. The connection is closed
// when the test ends; reads time out after 10 s.
func DialStream(t testing.TB, url, sid, last string) *SSEConn {
	t.Helper()
	rest := strings.TrimPrefix(url, "http://")
	hostport, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		hostport, path = rest[:i], rest[i:]
	}
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatalf("testenv: dial %s: %v", hostport, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-11-25\r\n", path, hostport, sid)
	if last != "" {
		req += "Last-Event-ID: " + last + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatalf("testenv: send the GET: %v", err)
	}
	s := &SSEConn{Conn: c, R: bufio.NewReader(c)}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := s.R.ReadString('\n')
	if err != nil || status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("testenv: the stream's GET got %q (%v), want 200 at once", status, err)
	}
	for {
		l, err := s.R.ReadString('\n')
		if err != nil {
			t.Fatalf("testenv: reading the response head: %v", err)
		}
		if l == "\r\n" {
			return s
		}
	}
}

// Until reads the body until what it read holds want, and returns that.
func (s *SSEConn) Until(t testing.TB, want string) string {
	t.Helper()
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		l, err := s.R.ReadString('\n')
		if err != nil {
			t.Fatalf("testenv: waiting for %q: %v; read %.300q", want, err, got.String())
		}
		got.WriteString(l)
	}
	return got.String()
}

// EventID reads until a line holding want and returns the id of the event
// it belongs to, which must have one.
func (s *SSEConn) EventID(t testing.TB, want string) string {
	t.Helper()
	var id string
	for {
		l, err := s.R.ReadString('\n')
		if err != nil {
			t.Fatalf("testenv: waiting for %q: %v", want, err)
		}
		if v, ok := strings.CutPrefix(strings.TrimRight(l, "\r\n"), "id: "); ok {
			id = v
		}
		if strings.Contains(l, want) {
			if id == "" {
				t.Fatalf("testenv: the event holding %q has no id", want)
			}
			return id
		}
	}
}

// Ended checks that the gateway ends the connection within 10 s, after
// whatever it still had to send: a read deadline reached means it stayed
// open.
func (s *SSEConn) Ended(t testing.TB) {
	t.Helper()
	_ = s.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, s.R)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("testenv: the connection stayed open")
	}
}
