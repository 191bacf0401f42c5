package testenv

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ConnKind says what a relayed connection carries, judged by the latest
// request the client sent on it. Kinds combine as a bit set in Relay.Cut.
type ConnKind uint8

const (
	// ConnAnswer: a POST (its answer stream), or a GET with Last-Event-ID
	// resuming a POST answer stream.
	ConnAnswer ConnKind = 1 << iota
	// ConnStandalone: a GET without Last-Event-ID (the standalone stream),
	// or one resuming the standalone stream.
	ConnStandalone
	// ConnOther: any other request (DELETE, ...), or a connection whose
	// first request has not been read yet.
	ConnOther

	// ConnStreams is both kinds of stream.
	ConnStreams = ConnAnswer | ConnStandalone
)

func (k ConnKind) String() string {
	var parts []string
	for _, c := range []struct {
		k ConnKind
		s string
	}{{ConnAnswer, "answer"}, {ConnStandalone, "standalone"}, {ConnOther, "other"}} {
		if k&c.k != 0 {
			parts = append(parts, c.s)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Relay is a loopback TCP relay between clients and a target address. Tests
// cut connections through it at chosen moments, as a flaky network or a
// crashed client would: every connection (CutAll) or only those of some
// kinds (Cut).
//
// The relay forwards bytes unchanged and reads both directions as HTTP/1.1
// on the side: requests to classify each connection by the latest request
// the client sent on it, responses to know whether that request's answer is
// still streaming (a live connection) and to learn the SSE event ids each
// kind of stream carried. A GET with Last-Event-ID is classified by the kind
// of the connection that delivered that id; an id the relay never saw is
// judged by its form, "<stream>_<seq>" with stream 0 the standalone stream
// (the gateway's and the mock upstream's numbering). A direction that stops
// parsing as HTTP is relayed raw from then on.
type Relay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	closing chan struct{} // closed by Close

	// mu guards closed, hold, conns, ids and changed.
	mu     sync.Mutex
	closed bool
	hold   chan struct{} // non-nil: new connections wait for it to close
	conns  map[*relayConn]struct{}
	ids    map[string]ConnKind // event id -> kind of the stream that carried it
	// changed is closed and replaced whenever a connection opens, ends,
	// is classified or its response starts or ends.
	changed chan struct{}

	cuts     atomic.Int64
	accepted atomic.Int64
}

// relayConn is one relayed connection.
type relayConn struct {
	client, target net.Conn
	reqs           chan ConnKind // kinds of parsed requests, in order, for the response side
	ended          chan struct{} // closed by end
	endOnce        sync.Once

	// Guarded by Relay.mu.
	kind ConnKind // of the latest request
	live bool     // the latest answer started with 2xx and has not ended
}

// StartRelay listens on a free loopback port and relays to target. It is
// closed by t.Cleanup.
func StartRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{ln: ln, target: target, closing: make(chan struct{}), conns: map[*relayConn]struct{}{},
		ids: map[string]ConnKind{}, changed: make(chan struct{})}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.Close)
	return r
}

// Addr is the relay's listening address.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		hold := r.hold
		r.wg.Add(1)
		r.mu.Unlock()
		go r.open(c, hold)
	}
}

// open relays a new connection, once hold (if any) is released.
func (r *Relay) open(c net.Conn, hold <-chan struct{}) {
	defer r.wg.Done()
	if hold != nil {
		select {
		case <-hold:
		case <-r.closing:
			_ = c.Close()
			return
		}
	}
	u, err := net.Dial("tcp", r.target)
	if err != nil {
		_ = c.Close()
		return
	}
	r.accepted.Add(1)
	rc := &relayConn{client: c, target: u, kind: ConnOther, reqs: make(chan ConnKind, 16), ended: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = c.Close()
		_ = u.Close()
		return
	}
	r.conns[rc] = struct{}{}
	r.notifyLocked()
	r.wg.Add(2)
	r.mu.Unlock()
	go r.requests(rc)
	go r.responses(rc)
}

// Hold makes connections opened from now on wait, accepted but not yet
// relayed, until release is called: a client that reconnects meanwhile
// stays away from the target. release may be called more than once.
func (r *Relay) Hold() (release func()) {
	hold := make(chan struct{})
	r.mu.Lock()
	r.hold = hold
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.hold == hold {
				r.hold = nil
			}
			r.mu.Unlock()
			close(hold)
		})
	}
}

// notifyLocked wakes every waiter. The caller holds mu.
func (r *Relay) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// teeReader forwards everything read from src to dst as it is read, so the
// parser on top of it never holds bytes back. ioErr records why reading or
// forwarding failed: a parser error without one means the bytes are not
// HTTP/1.1.
type teeReader struct {
	src   io.Reader
	dst   io.Writer
	ioErr error
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 {
		if _, werr := t.dst.Write(p[:n]); werr != nil {
			t.ioErr = werr
			return n, werr
		}
	}
	if err != nil {
		t.ioErr = err
	}
	return n, err
}

// requests relays client to target, classifying each request.
func (r *Relay) requests(rc *relayConn) {
	defer r.wg.Done()
	defer r.end(rc)
	defer close(rc.reqs)
	tee := &teeReader{src: rc.client, dst: rc.target}
	br := bufio.NewReader(tee)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if tee.ioErr == nil { // not HTTP: relay the rest raw
				_, _ = io.Copy(rc.target, rc.client)
			}
			return
		}
		kind := r.classify(req)
		r.mu.Lock()
		rc.kind, rc.live = kind, false
		r.notifyLocked()
		r.mu.Unlock()
		select {
		case rc.reqs <- kind: // clients do not pipeline: hardly ever more than one waits
		case <-rc.ended:
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
	}
}

// responses relays target to client, tracking which answers stream and the
// event ids they carry.
func (r *Relay) responses(rc *relayConn) {
	defer r.wg.Done()
	defer r.end(rc)
	tee := &teeReader{src: rc.target, dst: rc.client}
	br := bufio.NewReader(tee)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if tee.ioErr == nil {
				_, _ = io.Copy(rc.client, rc.target)
			}
			return
		}
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // an interim answer: the final one follows
		}
		kind, ok := <-rc.reqs
		if !ok {
			_, _ = io.Copy(rc.client, rc.target)
			return
		}
		r.mu.Lock()
		rc.live = resp.StatusCode < 300
		r.notifyLocked()
		r.mu.Unlock()
		err = r.scanBody(resp.Body, kind)
		r.mu.Lock()
		rc.live = false
		r.notifyLocked()
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// scanBody reads an answer to its end, remembering the SSE event ids in it.
func (r *Relay) scanBody(body io.Reader, kind ConnKind) error {
	br := bufio.NewReader(body)
	for {
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull { // a long data line: skip its rest
			line = nil
			_, err = br.ReadSlice('\n')
		}
		if id, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("id:")); ok && kind != ConnOther {
			id = bytes.TrimPrefix(id, []byte(" "))
			r.mu.Lock()
			r.ids[string(id)] = kind
			r.mu.Unlock()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// classify judges a request as the client sent it.
func (r *Relay) classify(req *http.Request) ConnKind {
	switch req.Method {
	case http.MethodPost:
		return ConnAnswer
	case http.MethodGet:
		last := req.Header.Get("Last-Event-ID")
		if last == "" {
			return ConnStandalone
		}
		r.mu.Lock()
		kind, seen := r.ids[last]
		r.mu.Unlock()
		if seen {
			return kind
		}
		if strings.HasPrefix(last, "0_") {
			return ConnStandalone
		}
		return ConnAnswer
	}
	return ConnOther
}

// end closes both sides of a connection and forgets it.
func (r *Relay) end(rc *relayConn) {
	rc.endOnce.Do(func() { close(rc.ended) })
	_ = rc.client.Close()
	_ = rc.target.Close()
	r.mu.Lock()
	if _, ok := r.conns[rc]; ok {
		delete(r.conns, rc)
		r.notifyLocked()
	}
	r.mu.Unlock()
}

// cutLocked closes both sides of rc abruptly (RST). The caller holds mu.
func (r *Relay) cutLocked(rc *relayConn) {
	for _, c := range []net.Conn{rc.client, rc.target} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
	delete(r.conns, rc)
}

// CutAll closes both sides of every relayed connection, abruptly (RST), and
// returns how many it cut.
func (r *Relay) CutAll() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for rc := range r.conns {
		r.cutLocked(rc)
		n++
	}
	if n > 0 {
		r.notifyLocked()
	}
	r.cuts.Add(int64(n))
	return n
}

// Cut closes, abruptly (RST), the live connections whose latest request is
// of one of kinds: those whose answer is streaming. Idle kept-alive
// connections are left alone. It returns how many it cut, by kind.
func (r *Relay) Cut(kinds ConnKind) map[ConnKind]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[ConnKind]int{}
	n := 0
	for rc := range r.conns {
		if rc.live && rc.kind&kinds != 0 {
			out[rc.kind]++
			r.cutLocked(rc)
			n++
		}
	}
	if n > 0 {
		r.notifyLocked()
	}
	r.cuts.Add(int64(n))
	return out
}

// Live counts the live connections of each kind.
func (r *Relay) Live() map[ConnKind]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.liveLocked()
}

func (r *Relay) liveLocked() map[ConnKind]int {
	out := map[ConnKind]int{}
	for rc := range r.conns {
		if rc.live {
			out[rc.kind]++
		}
	}
	return out
}

// WaitLive waits until every kind in kinds has a live connection, and
// reports whether it got there before stop closed or d passed.
func (r *Relay) WaitLive(stop <-chan struct{}, d time.Duration, kinds ConnKind) bool {
	return r.WaitFor(stop, d, func(live map[ConnKind]int) bool {
		for k := ConnAnswer; k <= ConnOther; k <<= 1 {
			if kinds&k != 0 && live[k] == 0 {
				return false
			}
		}
		return true
	})
}

// WaitFor waits until ok accepts the live connections counted by kind (as
// Live returns them), and reports whether it did before stop closed or d
// passed. ok is called again after every change.
func (r *Relay) WaitFor(stop <-chan struct{}, d time.Duration, ok func(live map[ConnKind]int) bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		r.mu.Lock()
		live := r.liveLocked()
		changed := r.changed
		r.mu.Unlock()
		if ok(live) {
			return true
		}
		select {
		case <-changed:
		case <-stop:
			return false
		case <-timer.C:
			return false
		}
	}
}

// Cuts is how many connections CutAll and Cut closed so far.
func (r *Relay) Cuts() int64 { return r.cuts.Load() }

// Accepted is how many connections the relay relayed.
func (r *Relay) Accepted() int64 { return r.accepted.Load() }

// Close stops the relay and every connection, and waits for its goroutines.
func (r *Relay) Close() {
	_ = r.ln.Close()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.closing)
	r.mu.Unlock()
	r.CutAll()
	r.wg.Wait()
}
