package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

// parseArgs parses a subcommand's flags. ok is false when the command ends
// here, with code: exitOK after -h, exitUsage on a bad flag (fs reported it).
func parseArgs(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}

// announce listens on addr and prints "listening on http://<host:port><path>"
// as stdout's first line, synced, so a script can read it as the server's URL.
func announce(addr, path string, stdout io.Writer) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "listening on http://%s%s\n", ln.Addr(), path)
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	return ln, nil
}

// untilSignal runs serve on a goroutine of its own until it returns or
// SIGINT or SIGTERM arrives, then calls stop and, after a signal, waits for
// serve. It returns serve's error when serve ended first, else stop's.
func untilSignal(serve, stop func() error) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- serve() }()
	select {
	case <-sigs:
		err := stop()
		<-served
		return err
	case err := <-served:
		_ = stop()
		return err
	}
}
