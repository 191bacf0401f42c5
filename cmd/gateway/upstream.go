package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// upstreamOptions are the flags of the stdio and legacy HTTP+SSE upstream
// kinds (and -max-message, which applies to all).
type upstreamOptions struct {
	upstreamEnv  envList
	upstreamDir  string
	killGrace    time.Duration
	maxProcesses int
	maxMessage   byteSize
}

// inheritedEnv are the variables of the gateway's own environment a stdio
// upstream's process gets; everything else must be named by -upstream-env.
var inheritedEnv = []string{"PATH", "HOME", "LANG"}

func (o *upstreamOptions) addFlags(fs *flag.FlagSet) {
	fs.Var(&o.upstreamEnv, "upstream-env", "KEY=VALUE set in a stdio upstream's process environment (repeatable; in MCPGATE_UPSTREAM_ENV one per line). The process gets only PATH, HOME and LANG from the gateway's environment, plus these")
	fs.StringVar(&o.upstreamDir, "upstream-dir", "", "working directory of a stdio upstream's processes (default: the gateway's)")
	fs.DurationVar(&o.killGrace, "upstream-kill-grace", upstream.DefaultKillGrace, "stdio upstream: how long a session's process may take to exit after SIGTERM before SIGKILL (it first gets its stdin closed and up to 1s to exit)")
	fs.IntVar(&o.maxProcesses, "max-processes", upstream.DefaultMaxProcesses, "stdio upstream: maximum live processes (one per session); initialize beyond it gets 503 with Retry-After")
	o.maxMessage = byteSize(upstream.DefaultMaxMessage)
	fs.Var(&o.maxMessage, "max-message", "largest message from the upstream, a `size`: a stdio line or an SSE event, which ends its session beyond it, or a Streamable HTTP answer")
}

// upstreamKinds is the -upstream syntax, for errors and help.
const upstreamKinds = "http(s)://host[:port]/path (Streamable HTTP), sse+http(s)://host[:port]/sse (legacy HTTP+SSE) or stdio:<command line>"

// newUpstream builds the transport -upstream names. tlsConf (from
// -upstream-ca) applies to https upstreams.
func (o *options) newUpstream(logger *slog.Logger, tlsConf *tls.Config) (upstream.Transport, error) {
	u := &o.upstreamOptions
	switch {
	case u.killGrace <= 0:
		return nil, errors.New("-upstream-kill-grace must be positive")
	case u.maxProcesses < 1:
		return nil, errors.New("-max-processes must be at least 1")
	case u.maxMessage < 1:
		return nil, errors.New("-max-message must be at least 1")
	}
	spec := o.upstreamURL
	authHeader, err := o.upstreamAuthHeader()
	if err != nil {
		return nil, err
	}
	if cmdline, ok := strings.CutPrefix(spec, "stdio:"); ok {
		if authHeader.Name != "" {
			return nil, errors.New("-upstream-auth does not apply to a stdio: upstream (it gets no HTTP requests)")
		}
		return o.newStdio(logger, cmdline)
	}
	var stdioOnly []string
	if len(u.upstreamEnv) > 0 {
		stdioOnly = append(stdioOnly, "-upstream-env")
	}
	if u.upstreamDir != "" {
		stdioOnly = append(stdioOnly, "-upstream-dir")
	}
	if u.killGrace != upstream.DefaultKillGrace {
		stdioOnly = append(stdioOnly, "-upstream-kill-grace")
	}
	if u.maxProcesses != upstream.DefaultMaxProcesses {
		stdioOnly = append(stdioOnly, "-max-processes")
	}
	if len(stdioOnly) > 0 {
		return nil, fmt.Errorf("%s only apply to a stdio: upstream, not %q", strings.Join(stdioOnly, ", "), spec)
	}
	if rest, ok := strings.CutPrefix(spec, "sse+"); ok {
		t, err := upstream.NewLegacySSE(upstream.LegacySSEConfig{
			URL:             rest,
			MaxConns:        o.upstreamMaxConns,
			Timeout:         o.upstreamTimeout,
			MaxMessageBytes: int(u.maxMessage),
			TLSConfig:       tlsConf,
			Logger:          logger,
			Auth:            authHeader,
		})
		if err != nil {
			return nil, fmt.Errorf("-upstream: %v (want %s)", err, upstreamKinds)
		}
		return t, nil
	}
	t, err := upstream.NewHTTP(upstream.HTTPConfig{
		URL:             spec,
		MaxConns:        o.upstreamMaxConns,
		Timeout:         o.upstreamTimeout,
		MaxMessageBytes: int(u.maxMessage),
		TLSConfig:       tlsConf,
		Auth:            authHeader,
	})
	if err != nil {
		return nil, fmt.Errorf("-upstream: %v (want %s)", err, upstreamKinds)
	}
	return t, nil
}

// newStdio checks the command line, the program and the flags of a stdio
// upstream and builds its transport.
func (o *options) newStdio(logger *slog.Logger, cmdline string) (upstream.Transport, error) {
	u := &o.upstreamOptions
	argv, err := splitCommand(cmdline)
	if err != nil {
		return nil, fmt.Errorf("-upstream stdio: %v", err)
	}
	if len(argv) == 0 {
		return nil, errors.New("-upstream stdio: needs a command, e.g. stdio:/usr/local/bin/my-mcp-server --flag")
	}
	if u.upstreamDir != "" {
		if fi, err := os.Stat(u.upstreamDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("-upstream-dir %q: not a directory", u.upstreamDir)
		}
	}
	env := childEnv(os.LookupEnv, u.upstreamEnv)
	prog, err := findProgram(argv[0], u.upstreamDir, envValue(env, "PATH"))
	if err != nil {
		return nil, fmt.Errorf("-upstream stdio: %v", err)
	}
	t, err := upstream.NewStdio(upstream.StdioConfig{
		Command:         prog,
		Args:            argv[1:],
		Env:             env,
		Dir:             u.upstreamDir,
		KillGrace:       u.killGrace,
		MaxProcesses:    u.maxProcesses,
		MaxMessageBytes: int(u.maxMessage),
		Timeout:         o.upstreamTimeout,
		Logger:          logger,
	})
	if err != nil {
		return nil, fmt.Errorf("-upstream: %v", err)
	}
	return t, nil
}

// childEnv is a stdio upstream's environment: PATH, HOME and LANG from the
// gateway's (when set), then the -upstream-env entries, a later entry for a
// name replacing an earlier one.
func childEnv(lookup func(string) (string, bool), extra []string) []string {
	var env []string
	set := func(kv string) {
		name, _, _ := strings.Cut(kv, "=")
		for i, e := range env {
			if n, _, _ := strings.Cut(e, "="); n == name {
				env[i] = kv
				return
			}
		}
		env = append(env, kv)
	}
	for _, name := range inheritedEnv {
		if v, ok := lookup(name); ok {
			set(name + "=" + v)
		}
	}
	for _, kv := range extra {
		set(kv)
	}
	return env
}

func envValue(env []string, name string) string {
	for _, e := range env {
		if n, v, _ := strings.Cut(e, "="); n == name {
			return v
		}
	}
	return ""
}

// findProgram resolves a stdio upstream's program as the child will run
// it: a name without a slash through the child's PATH, a relative path
// from its working directory. It must be an executable file. The path
// returned is absolute: the child is started in dir, where a relative one
// (already joined with dir) would be resolved from dir a second time.
func findProgram(name, dir, path string) (string, error) {
	executable := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
	}
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if !executable(p) {
			return "", fmt.Errorf("%q is not an executable file", p)
		}
		return filepath.Abs(p)
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p) // the child resolves it from its directory
		}
		if executable(p) {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("program %q not found in PATH (%s)", name, path)
}

// splitCommand splits a command line into words as a POSIX shell would,
// without any expansion: blanks separate words; 'single quotes' keep
// everything; "double quotes" keep everything but \" \\ \$ \` escapes; a
// backslash outside quotes keeps the next character.
func splitCommand(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' in the command line")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New(`unterminated " in the command line`)
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New(`trailing \ in the command line`)
			}
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// envList is the repeatable -upstream-env flag. Set takes one KEY=VALUE,
// or several on separate lines (the environment twin's form).
type envList []string

func (e *envList) String() string { return strings.Join(*e, "\n") }

func (e *envList) Set(s string) error {
	for _, kv := range strings.Split(s, "\n") {
		if kv = strings.TrimRight(kv, "\r"); kv == "" {
			continue
		}
		// The error names the entry by its KEY only: its VALUE (or a
		// line without =) may be a secret.
		name, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return errors.New("an entry without =: want KEY=VALUE")
		case !validEnvName(name) || strings.IndexByte(kv, 0) >= 0:
			return fmt.Errorf("%q=...: want KEY=VALUE with KEY of letters, digits and _", name)
		}
		*e = append(*e, kv)
	}
	return nil
}

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// logUpstreamStats logs a stdio or legacy HTTP+SSE transport's counts (at
// shutdown).
func logUpstreamStats(logger *slog.Logger, t upstream.Transport) {
	s, ok := t.(interface{ Stats() upstream.Stats })
	if !ok {
		return
	}
	st := s.Stats()
	logger.Info("upstream stats",
		"processes_started", st.ProcessesStarted, "processes_reaped", st.ProcessesReaped, "processes_live", st.ProcessesLive,
		"exits_zero", st.ExitsZero, "exits_nonzero", st.ExitsNonzero, "exits_signal", st.ExitsSignal,
		"processes_killed", st.ProcessesKilled, "rejected", st.Rejected,
		"stderr_lines", st.StderrLines, "stderr_suppressed", st.StderrSuppressed,
		"messages_too_long", st.MessagesTooLong, "standalone_dropped", st.StandaloneDropped,
		"stream_dropped", st.StreamDropped, "unroutable", st.Unroutable, "refused", st.Refused,
		"reconnects", st.Reconnects, "sessions_lost", st.SessionsLost)
}
