package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mcpgate/mcpgate/loadtest/httpproxy"
)

// httpProxyMain runs `loadtest httpproxy`.
func httpProxyMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("httpproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on (port 0: the OS picks one)")
	path := fs.String("path", "/mcp", "URL `path` printed after the address for HTTP clients (requests are forwarded with their own path)")
	to := fs.String("to", "", "`host:port` of the upstream every request is forwarded to (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: loadtest httpproxy -to HOST:PORT [flags]

A plain HTTP reverse proxy for benchmarks, on the HTTP library mcpgate uses
(fasthttp, server and client): each request is parsed and forwarded to -to over
pooled keep-alive connections, and its answer is sent back, a streamed (SSE)
answer chunk by chunk as it arrives. No session, no JSON-RPC, no buffering for
resumption: it is what parsing and writing HTTP costs, run next to mcpgate and
the byte relay (loadtest relay) to split mcpgate's cost into the library's and
its own. It prints "listening on http://<host:port><path>" as its first stdout
line and runs until SIGINT or SIGTERM.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseArgs(fs, args); !ok {
		return code
	}
	if *to == "" {
		fmt.Fprintln(stderr, "loadtest httpproxy: -to is required")
		return 2
	}
	ln, err := announce(*listen, *path, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest httpproxy:", err)
		return 1
	}
	p := httpproxy.New(*to)
	if err := untilSignal(func() error { return p.Serve(ln) }, p.Close); err != nil && !errors.Is(err, httpproxy.ErrClosed) {
		fmt.Fprintln(stderr, "loadtest httpproxy:", err)
		return 1
	}
	return 0
}
