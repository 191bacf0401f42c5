// Package rawsock reads and writes a non-blocking socket with raw system
// calls inside the runtime poller's RawConn callbacks.
//
// A net.Conn's Read and Write enter the kernel through syscall.Syscall,
// which tells the scheduler that the goroutine may block. The runtime's
// monitor thread (sysmon) sleeps deeply while every P is idle; such a call
// wakes it, and it then polls every 20 µs until the process is idle again,
// taking a P away from a call that lasts past one of its ticks. A gateway
// that is idle between a few thousand calls or events a second pays that on
// every one: the monitor's sleeps and wake-ups were 18–21 % of mcpgate's CPU
// (at 2,000 calls/s on the mock, and at 10k events/s across 1,000 streams,
// on two cores). A read or write of a non-blocking socket never blocks: it
// returns what the kernel could do at once, or EAGAIN, and the goroutine
// then waits in the runtime's poller as net.Conn's would. So a raw call,
// which tells the scheduler nothing, is safe here and skips that cost; it
// holds its P for as long as the kernel works on it (on loopback a write
// carries the receiver's TCP work), which the monitor's hand-off would
// not have given to other goroutines sooner than a 20 µs tick anyway.
//
// Deadlines set on the connection apply to Read and Write (the poller's
// wait honours them), and a Close during a wait ends it, as for net.Conn.
// ReadNow (inside a RawConn callback) and WriteNow never wait and do not
// look at deadlines. Errors are the
// poller's (wrapped by the net package as for RawConn) or the system
// call's errno; a read of 0 bytes at the end of the stream is io.EOF.
//
// One goroutine reads a socket at a time, and one writes it; the two may
// run together. Nothing is kept per socket between calls.
package rawsock
