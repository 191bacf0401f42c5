package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mcpgate/mcpgate/loadtest/relay"
)

// relayMain runs `loadtest relay`.
func relayMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on (port 0: the OS picks one)")
	path := fs.String("path", "/mcp", "URL `path` printed after the address for HTTP clients (the relay itself never looks at it)")
	to := fs.String("to", "", "`host:port` every connection is relayed to (required)")
	bufSize := fs.Int("buffer", relay.DefaultBufferSize, "copy buffer of each direction of each connection, in `bytes` (512 to 1 MiB)")
	plainIO := fs.Bool("plain-io", false, "copy with net.Conn's Read and Write (syscall.Syscall, which wakes the Go runtime's monitor thread on every call) instead of raw system calls")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: loadtest relay -to HOST:PORT [flags]

A byte relay for benchmarks: each accepted TCP connection gets a connection of its
own to -to, and bytes are copied both ways with plain reads and writes (no splice,
nothing parsed), made as raw system calls as mcpgate makes them (-plain-io: through
net.Conn). It is the floor any proxy in user space pays on this machine, run
next to mcpgate and Caddy to tell the machine's share of a cost from the proxy's.
It prints "listening on http://<host:port><path>" as its first stdout line (so a
script can treat it as the upstream's URL) and runs until SIGINT or SIGTERM.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseArgs(fs, args); !ok {
		return code
	}
	if *to == "" {
		fmt.Fprintln(stderr, "loadtest relay: -to is required")
		return 2
	}
	if *bufSize < 512 || *bufSize > 1<<20 {
		fmt.Fprintln(stderr, "loadtest relay: -buffer must be between 512 and 1048576")
		return 2
	}
	ln, err := announce(*listen, *path, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest relay:", err)
		return 1
	}
	r := &relay.Relay{To: *to, BufferSize: *bufSize, PlainIO: *plainIO}
	if err := untilSignal(func() error { return r.Serve(ln) }, r.Close); err != nil && !errors.Is(err, relay.ErrClosed) {
		fmt.Fprintln(stderr, "loadtest relay:", err)
		return 1
	}
	return 0
}
