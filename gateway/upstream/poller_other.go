//go:build !linux

package upstream

import "errors"

// poller is Linux-only (epoll); elsewhere an idle GET stream keeps its
// reader goroutine waiting in the runtime's poller, as a TLS stream does
// everywhere.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.ErrUnsupported }

func (p *poller) park(*getConn, func()) bool { return false }

func (p *poller) unpark(*getConn) {}

func (p *poller) close() {}
