package rawsock

import (
	"io"
	"sync"
	"syscall"
	"unsafe"
)

// Supported reports whether Read and Write are available on this system.
const Supported = true

// op is one Read or Write in progress: its buffer, its results, and the
// RawConn callback bound to it once (pooled, so a call allocates nothing
// and a socket holds nothing between calls).
type op struct {
	p   []byte
	n   int
	err error
	fn  func(uintptr) bool
	now func(uintptr) // WriteNow's Control callback
	// dl: the connection's Deadlines, nil without; armed: the callback
	// set side's deadline before a wait (Deadlines.arm).
	dl    *Deadlines
	side  int
	armed bool
}

var (
	readOps  = sync.Pool{New: func() any { o := new(op); o.fn = o.read; return o }}
	writeOps = sync.Pool{New: func() any { o := new(op); o.fn = o.write; return o }}
	nowOps   = sync.Pool{New: func() any { o := new(op); o.now = o.writeNow; return o }}
)

// Read reads up to len(p) bytes from the socket behind raw, waiting in the
// runtime's poller while nothing is pending. One goroutine reads a socket
// at a time.
func Read(raw syscall.RawConn, p []byte) (int, error) { return do(raw, p, &readOps, false, nil) }

// Write writes all of p to the socket behind raw, waiting in the runtime's
// poller while its send buffer is full. It returns how much was written
// and the first error. One goroutine writes a socket at a time.
func Write(raw syscall.RawConn, p []byte) (int, error) { return do(raw, p, &writeOps, true, nil) }

// WriteNow writes as much of p as the socket's send buffer takes now and
// never waits: how much it wrote (less than len(p) when the buffer filled,
// 0 when it was full) and the first error other than EAGAIN (a closed
// connection, or the system call's errno). It is for a socket's only
// writer at the time, on a connection without a write deadline: the
// system calls run in one RawConn.Control call, which keeps the socket
// open, rather than in RawConn.Write, which also takes the socket's write
// lock and prepares the poller (and checks the deadline) for a wait that
// a write that never waits does not make.
func WriteNow(raw syscall.RawConn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := nowOps.Get().(*op)
	o.p = p
	err := raw.Control(o.now)
	n, oerr := o.n, o.err
	o.p, o.n, o.err = nil, 0, nil
	nowOps.Put(o)
	if err != nil {
		return n, err
	}
	return n, oerr
}

// writeNow is WriteNow's callback: writes until done, EAGAIN or an error
// (it has no Deadlines, so an EAGAIN arms nothing).
func (o *op) writeNow(fd uintptr) { o.write(fd) }

// Read is rawsock's Read under d's read deadline (set before it waits).
func (d *Deadlines) Read(raw syscall.RawConn, p []byte) (int, error) {
	return do(raw, p, &readOps, false, d)
}

// Write is rawsock's Write under d's write deadline (set before it waits).
func (d *Deadlines) Write(raw syscall.RawConn, p []byte) (int, error) {
	return do(raw, p, &writeOps, true, d)
}

// do runs one Read or Write with an op from pool (whose callback
// decides whether to wait), under dl's deadlines if not nil. A read that
// failed in the poller's wait read nothing (its callback had found nothing
// to read).
func do(raw syscall.RawConn, p []byte, pool *sync.Pool, write bool, dl *Deadlines) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := pool.Get().(*op)
	o.p, o.dl, o.side = p, dl, readSide
	if write {
		o.side = writeSide
	}
	var err error
	for {
		if write {
			err = raw.Write(o.fn)
		} else {
			err = raw.Read(o.fn)
		}
		if o.armed {
			o.armed = false
			dl.disarm(o.side)
		}
		if err == nil || dl == nil || !dl.stale(o.side, err) {
			break
		}
	}
	n, oerr := o.n, o.err
	o.p, o.n, o.err, o.dl = nil, 0, nil, nil
	pool.Put(o)
	if err != nil {
		return n, err
	}
	return n, oerr
}

// read is Read's RawConn callback: one read of the socket (ReadNow); false
// (wait in the poller) when nothing was pending.
func (o *op) read(fd uintptr) bool {
	n, wait, err := ReadNow(fd, o.p)
	if wait {
		o.arm()
		return false
	}
	o.n, o.err = n, err
	return true
}

// write is Write's RawConn callback (and, through writeNow, WriteNow's):
// it writes until all of p is written, returning false (wait in the
// poller) on EAGAIN, true when done or on an error (o.err).
func (o *op) write(fd uintptr) bool {
	for o.n < len(o.p) {
		n, errno := sysWrite(fd, o.p[o.n:])
		switch errno {
		case 0:
			o.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			o.arm()
			return false
		default:
			o.err = errno
			return true
		}
	}
	return true
}

// arm sets the side's deadline on the socket before the first wait of an
// op under Deadlines (Deadlines.arm).
func (o *op) arm() {
	if o.dl != nil && !o.armed {
		o.armed = true
		o.dl.arm(o.side)
	}
}

// ReadNow reads up to len(p) bytes from the socket fd once, without
// waiting, from inside one of the socket's RawConn callbacks (which keeps
// fd open while it runs): their count, wait true when nothing at all is
// pending (EAGAIN), or the error (io.EOF at the end of the stream, else the
// system call's errno).
func ReadNow(fd uintptr, p []byte) (n int, wait bool, err error) {
	if len(p) == 0 {
		return 0, false, nil
	}
	for {
		n, errno := sysRead(fd, p)
		switch errno {
		case 0:
			if n == 0 {
				return 0, false, io.EOF
			}
			return n, false, nil
		case syscall.EINTR:
		case syscall.EAGAIN:
			return 0, true, nil
		default:
			return 0, false, errno
		}
	}
}

// Take reads up to len(buf) pending bytes of the socket fd into buf
// without waiting (MSG_DONTWAIT): their count (0 at EOF), wait true when
// nothing at all is pending (EAGAIN), or -1 when the read failed.
func Take(fd uintptr, buf []byte) (n int, wait bool) { return recv(fd, buf, syscall.MSG_DONTWAIT) }

// Peek copies up to len(buf) pending bytes of the socket fd into buf
// without consuming them or waiting (MSG_PEEK|MSG_DONTWAIT): their count
// (0 at EOF), wait true when nothing at all is pending (EAGAIN), or -1
// when the peek failed.
func Peek(fd uintptr, buf []byte) (n int, wait bool) {
	return recv(fd, buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
}

func recv(fd uintptr, buf []byte, flags int) (n int, wait bool) {
	for {
		r, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			uintptr(flags), 0, 0)
		switch errno {
		case 0:
			return int(r), false
		case syscall.EINTR:
		case syscall.EAGAIN:
			return 0, true
		default:
			return -1, false
		}
	}
}
