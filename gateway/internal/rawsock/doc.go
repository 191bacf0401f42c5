// Package rawsock reads and writes a non-blocking socket with raw system
// calls inside the runtime poller's RawConn callbacks.
//
// A net.Conn's Read and Write enter the kernel through syscall.Syscall,
// which tells the scheduler that the goroutine may block: the runtime's
// monitor thread (sysmon) is woken from its deep sleep when it slept, polls
// every 20 µs while a P sits in a system call, and takes the P away when
// the call lasts past one of its ticks. On loopback a write carries the
// receiver's TCP work and often lasts that long, so a stream that moves one
// event at a time pays for the monitor's wake-ups and the P's hand-off and
// re-acquisition on every event (at 10k events/s across 1,000 streams on
// two cores, the monitor's sleeps were 21 % of the gateway's CPU). A read
// or write of a non-blocking socket never blocks: it returns what the
// kernel could do at once, or EAGAIN, and the goroutine then waits in the
// runtime's poller as net.Conn's would. So a raw call, which tells the
// scheduler nothing, is safe here and skips that cost.
//
// Deadlines set on the connection apply (the poller's wait honours them),
// and a Close during a wait ends it, as for net.Conn. Errors are the
// poller's (wrapped by the net package as for RawConn) or the system
// call's errno; a read of 0 bytes at the end of the stream is io.EOF.
//
// One goroutine reads a socket at a time, and one writes it; the two may
// run together. Nothing is kept per socket between calls.
package rawsock
