//go:build linux

package upstream

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// spawner starts every child process of a stdio transport from one
// goroutine that stays locked to its OS thread for the transport's life.
//
// Why: children are started with Pdeathsig = SIGKILL (PR_SET_PDEATHSIG),
// so that they die with the gateway, even when the gateway is SIGKILLed
// and runs no cleanup. But Linux sends the parent-death signal when the
// *thread* that forked the child exits, not when the process does. Go forks
// from whichever OS thread runs the calling goroutine, and the runtime
// does end threads (a goroutine that exits while locked to its thread
// takes the thread with it), so a child forked from an arbitrary goroutine
// could be killed at a random moment. The spawner's thread exits only in
// Transport.Close, after every child was reaped, or with the process.
//
// Children of a child are not covered: the end of a session kills the
// child's whole process group, but if the gateway is SIGKILLed they only
// lose their parent (and see EOF on pipes they share with it).
type spawner struct {
	reqs chan spawnReq
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

type spawnReq struct {
	path string
	argv []string
	attr *os.ProcAttr
	res  chan spawnRes
}

type spawnRes struct {
	p   *os.Process
	err error
}

func newSpawner() (*spawner, error) {
	sp := &spawner{reqs: make(chan spawnReq), quit: make(chan struct{}), done: make(chan struct{})}
	go sp.loop()
	return sp, nil
}

func (sp *spawner) loop() {
	defer close(sp.done)
	// Never unlocked: when loop returns, the runtime ends this thread,
	// which no live child depends on any more.
	runtime.LockOSThread()
	for {
		select {
		case r := <-sp.reqs:
			p, err := os.StartProcess(r.path, r.argv, r.attr)
			r.res <- spawnRes{p, err}
		case <-sp.quit:
			return
		}
	}
}

// stop ends the spawner goroutine and waits for it. Idempotent.
func (sp *spawner) stop() {
	sp.once.Do(func() { close(sp.quit) })
	<-sp.done
}

// pidfdDisabled makes start use the fallback exit waiter (tests).
var pidfdDisabled bool

// start starts a child in a process group of its own, with Pdeathsig, on
// the spawner's thread.
func (sp *spawner) start(path string, argv []string, attr *os.ProcAttr) (*process, error) {
	a := *attr
	if a.Env == nil {
		a.Env = []string{} // nil would pass the gateway's environment
	}
	a.Sys = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r := spawnReq{path: path, argv: argv, attr: &a, res: make(chan spawnRes, 1)}
	select {
	case sp.reqs <- r:
	case <-sp.quit:
		return nil, errors.New("transport closed")
	}
	res := <-r.res
	if res.err != nil {
		return nil, res.err
	}
	return newProcess(res.p), nil
}

// process is a started child, its group (pgid = its pid) and a way to wait
// for its exit without reaping it, so its group id stays reserved until
// the supervisor has signalled the group for the last time.
//
// Waiting: a pidfd (pidfd_open) becomes readable when the process exits;
// registered with the runtime's poller, it is awaited by a read with a
// deadline, which parks the supervisor goroutine without holding an OS
// thread (a thousand children cost a thousand parked goroutines, not a
// thousand threads blocked in waitid). Without pidfds (kernels before 5.3,
// some sandboxes) a helper goroutine blocks in waitid(WNOWAIT) instead;
// it ends when the process exits.
type process struct {
	p    *os.Process
	pgid int

	pidfd *os.File
	rc    syscall.RawConn
	// mu guards woken and the pidfd's read deadline.
	mu    sync.Mutex
	woken bool

	exited chan struct{} // fallback: closed by the helper on exit
	kick   chan struct{} // fallback: wake
}

const (
	sysPidfdOpen = 434 // pidfd_open(2), the same number on every Linux architecture
	pPID         = 1   // waitid idtype P_PID
	pollIn       = 0x1 // POLLIN
)

func newProcess(p *os.Process) *process {
	pr := &process{p: p, pgid: p.Pid}
	if !pidfdDisabled {
		// The child is not reaped before the supervisor does it, so its pid
		// cannot name another process here.
		fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(p.Pid), uintptr(syscall.O_NONBLOCK), 0)
		if errno == 0 {
			f := os.NewFile(fd, "pidfd")
			if rc, err := f.SyscallConn(); err == nil && f.SetReadDeadline(time.Time{}) == nil {
				pr.pidfd, pr.rc = f, rc
				return pr
			}
			_ = f.Close()
		}
	}
	pr.exited = make(chan struct{})
	pr.kick = make(chan struct{}, 1)
	go pr.blockingWait()
	return pr
}

func (pr *process) pid() int { return pr.p.Pid }

// blockingWait (fallback) waits in waitid(WNOWAIT) for the exit without
// reaping, then closes exited.
func (pr *process) blockingWait() {
	defer close(pr.exited)
	var info [128]byte // siginfo_t, unread
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pr.p.Pid), uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}

// wait returns true once the process has exited, false when deadline (zero:
// none) passes or wake was called. Spurious false returns are possible.
// Only the supervisor calls it.
func (pr *process) wait(deadline time.Time) bool {
	if pr.pidfd == nil {
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-pr.exited:
			return true
		case <-timeout:
		case <-pr.kick:
		}
		return false
	}
	pr.mu.Lock()
	if pr.woken {
		pr.woken = false
		pr.mu.Unlock()
		return pr.hasExited()
	}
	_ = pr.pidfd.SetReadDeadline(deadline)
	pr.mu.Unlock()
	return pr.rc.Read(readable) == nil
}

// hasExited polls the pidfd without waiting.
func (pr *process) hasExited() bool {
	exited := false
	_ = pr.rc.Control(func(fd uintptr) { exited = readable(fd) })
	return exited
}

// wake makes a pending or the next wait return. Safe for concurrent use.
func (pr *process) wake() {
	if pr.pidfd == nil {
		notify(pr.kick)
		return
	}
	pr.mu.Lock()
	pr.woken = true
	_ = pr.pidfd.SetReadDeadline(time.Unix(1, 0))
	pr.mu.Unlock()
}

// readable reports whether fd (a pidfd) is readable now: its process exited.
func readable(fd uintptr) bool {
	pfd := struct {
		fd             int32
		events, revent int16
	}{fd: int32(fd), events: pollIn}
	var ts syscall.Timespec // zero: do not wait
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n > 0
}

// signalGroup sends sig to the process's group, and to the process itself
// when it left that group (setpgid to another one). Only valid until reap.
func (pr *process) signalGroup(sig syscall.Signal) {
	if pr.pgid > 0 {
		_ = syscall.Kill(-pr.pgid, sig)
		if g, err := syscall.Getpgid(pr.p.Pid); err == nil && g != pr.pgid {
			_ = syscall.Kill(pr.p.Pid, sig)
		}
	}
}

// reap collects the exited process's status.
func (pr *process) reap() (*os.ProcessState, error) {
	st, err := pr.p.Wait()
	if err != nil {
		return nil, fmt.Errorf("wait: %w", err)
	}
	return st, nil
}

// release frees the pidfd.
func (pr *process) release() {
	if pr.pidfd != nil {
		_ = pr.pidfd.Close()
	}
}
