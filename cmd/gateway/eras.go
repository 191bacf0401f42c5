package main

import (
	"flag"
	"fmt"

	"github.com/mcpgate/mcpgate/gateway"
)

// eraOptions are the flags of the two protocol eras.
type eraOptions struct {
	upstreamEra        string
	advertiseStateless bool
}

func addEraFlags(fs *flag.FlagSet, o *eraOptions) {
	fs.StringVar(&o.upstreamEra, "upstream-era", "auto",
		"the eras the upstream serves: auto (ask it with server/discover at start; each client era it serves is passed through, the other bridged), session (sessions only: stateless 2026-07-28 clients are bridged onto pooled upstream sessions) or stateless (2026-07-28 only: session-era clients are bridged onto it; http(s) upstreams only)")
	fs.BoolVar(&o.advertiseStateless, "advertise-stateless", false,
		"over a session-era upstream, offer the stateless revision (2026-07-28) in server/discover too, so clients use it through the bridge (they then have no resumption); without it, clients that can fall back to initialize get resumable sessions, and stateless requests are still served")
}

// apply sets the era fields of cfg, naming the flag on errors.
func (o *eraOptions) apply(cfg *gateway.Config) error {
	era, err := gateway.ParseUpstreamEra(o.upstreamEra)
	if err != nil {
		return fmt.Errorf("-upstream-era %q: want auto, session or stateless", o.upstreamEra)
	}
	cfg.UpstreamEra = era
	cfg.AdvertiseStateless = o.advertiseStateless
	return nil
}
