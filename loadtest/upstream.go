package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mcpgate/mcpgate/loadtest/mockup"
)

// upstreamMain runs `loadtest upstream`.
func upstreamMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on (port 0: the OS picks one); the first stdout line is \"listening on http://<host:port>/mcp\"")
	era := fs.String("era", "both", "protocol revisions served: `both`, session (2025-03-26..2025-11-25 only) or stateless (2026-07-28 only)")
	pushRate := fs.Float64("push-rate", 0, "notifications/message `events/s` pushed on every new session's GET stream (0: none until the push tool sets a rate)")
	pushPad := fs.Int("push-pad", 0, "padding `bytes` in each pushed event")
	replay := fs.Int("replay", mockup.DefaultReplayEvents, "`events` each SSE stream keeps for Last-Event-ID resumes")
	heartbeat := fs.Duration("heartbeat", mockup.DefaultHeartbeat, "SSE keep-alive comment `interval` on idle streams (negative: none)")
	answerSSE := fs.Bool("answer-sse", false, "answer plain requests with a one-event SSE stream instead of JSON")
	answerDelay := fs.Duration("answer-delay", 0, "with -answer-sse: send an answer's headers at once and its event this `long` after (a server that sends its headers first); 0: together")
	lossEvery := fs.Int("inject-loss-every", 0, "test only: silently skip every `N`th notification (0: off)")
	dupEvery := fs.Int("inject-dup-every", 0, "test only: send every `N`th notification twice (0: off)")
	maxSessions := fs.Int("max-sessions", mockup.DefaultMaxSessions, "live session `cap`; initialize beyond it gets 503")
	maxPayload := fs.Int("max-payload", mockup.DefaultMaxPayload, "cap on echo sizes and pads, in `bytes`")
	finishedTTL := fs.Duration("finished-ttl", mockup.DefaultFinishedTTL, "how long a finished POST answer stream stays resumable")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: loadtest upstream [flags]

A fast mock MCP server (session era and stateless 2026-07-28) serving the tools echo,
stream and push on every path, GET /stats (JSON counters) and GET /metrics (Prometheus
text). It prints "listening on http://<host:port>/mcp" as its first stdout line and runs
until SIGINT or SIGTERM.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseArgs(fs, args); !ok {
		return code
	}
	e, err := mockup.ParseEra(*era)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest upstream:", err)
		return 2
	}
	srv, err := mockup.New(mockup.Config{
		Era:             e,
		PushRate:        *pushRate,
		PushPad:         *pushPad,
		ReplayEvents:    *replay,
		Heartbeat:       *heartbeat,
		AnswerSSE:       *answerSSE,
		AnswerDelay:     *answerDelay,
		InjectLossEvery: *lossEvery,
		InjectDupEvery:  *dupEvery,
		MaxSessions:     *maxSessions,
		MaxPayload:      *maxPayload,
		FinishedTTL:     *finishedTTL,
	})
	if err != nil {
		fmt.Fprintln(stderr, "loadtest upstream:", err)
		return 2
	}
	ln, err := announce(*listen, "/mcp", stdout)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest upstream:", err)
		return 1
	}
	err = untilSignal(func() error { return srv.Serve(ln) }, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
	if err != nil {
		fmt.Fprintln(stderr, "loadtest upstream:", err)
		return 1
	}
	return 0
}
