//go:build !linux

package upstream

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// The stdio transport needs Linux (Pdeathsig, pidfds, process groups as
// proc_linux.go uses them); elsewhere NewStdio fails.

type spawner struct{}

func newSpawner() (*spawner, error) {
	return nil, errors.New("upstream: stdio upstreams need Linux")
}

func (*spawner) stop() {}

func (*spawner) start(string, []string, *os.ProcAttr) (*process, error) {
	return nil, errors.New("upstream: stdio upstreams need Linux")
}

type process struct{}

func (*process) pid() int                        { return 0 }
func (*process) wait(time.Time) bool             { return true }
func (*process) wake()                           {}
func (*process) signalGroup(syscall.Signal)      {}
func (*process) reap() (*os.ProcessState, error) { return nil, errors.New("unsupported") }
func (*process) release()                        {}
