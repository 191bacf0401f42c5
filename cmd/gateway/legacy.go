package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/mcpgate/mcpgate/gateway"
)

// legacyOptions are the flags of the legacy HTTP+SSE client endpoints.
type legacyOptions struct {
	legacySSEPath, legacyMessagePath string
}

func (o *legacyOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.legacySSEPath, "legacy-sse-path", gateway.DefaultLegacySSEPath, "legacy HTTP+SSE clients (the 2024-11-05 transport): GET here opens a session whose first event names where to POST its messages (empty = no legacy endpoints)")
	fs.StringVar(&o.legacyMessagePath, "legacy-message-path", gateway.DefaultLegacyMessagePath, "legacy HTTP+SSE clients POST their messages here (?sessionId=<id>); the answers arrive on the session's SSE stream")
}

// apply sets the legacy endpoints of cfg (after its Path),
// checking the paths as gateway.New does, with the flags' names.
func (o *legacyOptions) apply(cfg *gateway.Config) error {
	if o.legacySSEPath == "" {
		cfg.LegacySSEOff = true
		return nil
	}
	if o.legacyMessagePath == "" {
		return errors.New("-legacy-message-path must not be empty while -legacy-sse-path is set (set -legacy-sse-path empty to turn the legacy endpoints off)")
	}
	for _, p := range []struct{ flag, path string }{{"-legacy-sse-path", o.legacySSEPath}, {"-legacy-message-path", o.legacyMessagePath}} {
		switch {
		case !strings.HasPrefix(p.path, "/") || strings.ContainsAny(p.path, "?# \t\r\n"):
			return fmt.Errorf("%s %q must start with / and hold no query", p.flag, p.path)
		case p.path == cfg.Path:
			return fmt.Errorf("%s %q must differ from -path", p.flag, p.path)
		}
	}
	if o.legacySSEPath == o.legacyMessagePath {
		return fmt.Errorf("-legacy-sse-path and -legacy-message-path must differ (both %q)", o.legacySSEPath)
	}
	cfg.LegacySSEPath, cfg.LegacyMessagePath = o.legacySSEPath, o.legacyMessagePath
	return nil
}
