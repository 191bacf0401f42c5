package relay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startRelay runs a Relay to `to` on a loopback port and returns its address.
func startRelay(t *testing.T, to string, size int, plain bool) (*Relay, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &Relay{To: to, BufferSize: size, PlainIO: plain}
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, r.Close())
		assert.ErrorIs(t, <-served, ErrClosed)
	})
	return r, ln.Addr().String()
}

// echoServer accepts connections and echoes each one's bytes upper-cased until
// its client half-closes, then closes; it stops when the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			_, _ = c.Write([]byte(strings.ToUpper(string(b))))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestRelayHTTPKeepAlive: keep-alive HTTP exchanges whose answers span
// reads pass whole, with raw system calls and with net.Conn's (PlainIO).
func TestRelayHTTPKeepAlive(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprint("plain=", plain), func(t *testing.T) { testRelayHTTPKeepAlive(t, plain) })
	}
}

func testRelayHTTPKeepAlive(t *testing.T, plain bool) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: %s\n\n", b)
		w.(http.Flusher).Flush()
		fmt.Fprintf(w, "data: end\n\n")
	}))
	defer srv.Close()
	_, addr := startRelay(t, srv.Listener.Addr().String(), 512, plain) // a small buffer: answers span reads

	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	body := strings.Repeat("x", 2000)
	for i := range 20 {
		resp, err := client.Post("http://"+addr+"/mcp", "application/json", strings.NewReader(fmt.Sprint(i, body)))
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, fmt.Sprintf("data: %d%s\n\ndata: end\n\n", i, body), string(got))
	}
}

func TestRelayHalfClose(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprint("plain=", plain), func(t *testing.T) { testRelayHalfClose(t, plain) })
	}
}

func testRelayHalfClose(t *testing.T, plain bool) {
	_, addr := startRelay(t, echoServer(t), 0, plain)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hello, "))
	require.NoError(t, err)
	_, err = c.Write([]byte("relay"))
	require.NoError(t, err)
	// The upstream answers only after our EOF reached it through the relay.
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "HELLO, RELAY", string(got))
}

func TestRelayCloseEndsConnections(t *testing.T) {
	// An upstream that never answers: Close must still end the relayed pair.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	defer ln.Close()
	lr, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &Relay{To: ln.Addr().String()}
	served := make(chan error, 1)
	go func() { served <- r.Serve(lr) }()

	c, err := net.Dial("tcp", lr.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	up := <-accepted
	require.NotNil(t, up)
	defer up.Close()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	require.NoError(t, up.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(up, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))

	require.NoError(t, r.Close())
	assert.ErrorIs(t, <-served, ErrClosed)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = bufio.NewReader(c).ReadByte()
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err), "client side ended: %v", err)
	// Serve after Close refuses at once.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorIs(t, r.Serve(ln2), ErrClosed)
}

func TestRelayUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, addr := startRelay(t, dead, 0, false)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, io.EOF) || isReset(err), "closed when the upstream cannot be reached: %v", err)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
