package upstream

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

// poller waits for input on the sockets of parked GET streams (see
// httpStream.Park) so that an idle stream holds no goroutine: it is an
// epoll instance of its own, one-shot registrations keyed by a token, and
// one goroutine that reads its events. The epoll descriptor sits in the
// runtime's network poller like any socket, so that goroutine parks there
// and no thread blocks in epoll_wait. A stream's registration ends with its
// socket (the kernel drops it when the descriptor closes), so the poller
// keeps no descriptor of its own per stream.
type poller struct {
	ep  *os.File // the epoll descriptor, non-blocking, in the runtime's poller
	raw syscall.RawConn

	mu     sync.Mutex
	parked map[uint64]*getConn // by token; nil once closed
	next   uint64              // the last token given out
	done   chan struct{}       // closed when run returns
}

// pollEvents is how many events one read of the epoll instance takes.
const pollEvents = 128

func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	ep := os.NewFile(uintptr(fd), "upstream-poller")
	raw, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil, err
	}
	p := &poller{ep: ep, raw: raw, parked: make(map[uint64]*getConn), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// park registers g's socket for one readiness event and arranges for
// resume to run on a new goroutine when it comes, or when g is closed
// (unpark), or when the poller closes. It reports false, arranging
// nothing, once the poller is closed. Only g's reader calls it, and g
// holds no parking when it does.
func (p *poller) park(g *getConn, resume func()) bool {
	p.mu.Lock()
	if p.parked == nil {
		p.mu.Unlock()
		return false
	}
	p.next++
	tok := p.next
	g.parkTok, g.resume = tok, resume
	p.parked[tok] = g
	p.mu.Unlock()

	// Both descriptors are held while in use (Control), so neither a close
	// of the stream nor the poller's own close can hand the call a number
	// that was closed meanwhile.
	var sockErr, ctlErr error
	err := p.raw.Control(func(epfd uintptr) {
		sockErr = g.raw.Control(func(fd uintptr) {
			ev := syscall.EpollEvent{
				Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
				Fd:     int32(uint32(tok)),
				Pad:    int32(uint32(tok >> 32)),
			}
			// A socket parked before stays registered, disarmed, after
			// its one event: it is re-armed.
			op := syscall.EPOLL_CTL_ADD
			if g.inEpoll {
				op = syscall.EPOLL_CTL_MOD
			}
			ctlErr = syscall.EpollCtl(int(epfd), op, int(fd), &ev)
			g.inEpoll = g.inEpoll || ctlErr == nil
		})
	})
	if err != nil || sockErr != nil || ctlErr != nil {
		// A descriptor was closed meanwhile (or the socket cannot be
		// watched): the reader resumes and finds out.
		p.wake(tok)
	}
	return true
}

// unpark resumes g's reader if g is parked (g was closed).
func (p *poller) unpark(g *getConn) {
	p.mu.Lock()
	p.release(g.parkTok)
}

// wake starts the reader parked under tok, once: a token is woken by its
// event, by unpark or by close, whichever comes first.
func (p *poller) wake(tok uint64) {
	p.mu.Lock()
	p.release(tok)
}

// release ends the parking under tok, if it is still on, and starts its
// reader. Called with p.mu held; unlocks it.
func (p *poller) release(tok uint64) {
	g := p.parked[tok]
	if g == nil {
		p.mu.Unlock()
		return
	}
	delete(p.parked, tok)
	resume := g.resume
	g.parkTok, g.resume = 0, nil
	p.mu.Unlock()
	go resume()
}

// run reads the epoll instance's events until close (or an error no
// retry helps, which resumes every parked reader and parks no more).
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, pollEvents)
	for {
		n := 0
		var werr error
		err := p.raw.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr != nil {
				n = 0
				return !errors.Is(werr, syscall.EINTR) // EINTR: try again
			}
			return n > 0 // none: wait in the runtime's poller
		})
		if err != nil || werr != nil {
			p.resumeAll() // closed, or broken
			return
		}
		for _, ev := range events[:n] {
			p.wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

// close stops the poller; every parked reader resumes (and goes on
// waiting on a goroutine of its own). Idempotent.
func (p *poller) close() {
	_ = p.ep.Close()
	<-p.done
}

// resumeAll ends parking: every parked reader resumes, and park reports
// false from now on.
func (p *poller) resumeAll() {
	p.mu.Lock()
	resumes := make([]func(), 0, len(p.parked))
	for _, g := range p.parked {
		resumes = append(resumes, g.resume)
		g.parkTok, g.resume = 0, nil
	}
	p.parked = nil
	p.mu.Unlock()
	for _, resume := range resumes {
		go resume()
	}
}
