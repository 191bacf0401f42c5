// Command loadtest is mcpgate's load harness and mock MCP upstream.
//
//	loadtest upstream -listen 127.0.0.1:0        # the mock MCP server
//	loadtest run -target URL -scenario post ...  # drive load at an MCP endpoint
//	loadtest relay -to HOST:PORT                 # a byte relay: the floor of a proxy
//	loadtest httpproxy -to HOST:PORT             # a plain HTTP proxy on fasthttp
//
// Run "loadtest <subcommand> -h" for every flag.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: loadtest <subcommand> [flags]

Subcommands:
  upstream   run the mock MCP upstream server
  run        run a load scenario against an MCP endpoint
  relay      relay TCP bytes to an address (a benchmark's floor for a proxy)
  httpproxy  forward HTTP requests to an address (what the HTTP library costs)

Run "loadtest <subcommand> -h" for the flags of each.
`

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "upstream":
		return upstreamMain(args[1:], stdout, stderr)
	case "run":
		return runMain(args[1:], stdout, stderr)
	case "relay":
		return relayMain(args[1:], stdout, stderr)
	case "httpproxy":
		return httpProxyMain(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "loadtest: unknown subcommand %q\n\n%s", args[0], usage)
	return 2
}
