package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
	"github.com/mcpgate/mcpgate/shard"
)

// Sessions survive a restart (Config.StateFile):
//
//   - Shutdown, after the paced drain and the in-flight POSTs, suspends
//     every session instead of ending it: its pumps stop (a call whose
//     upstream answer is cut gets a -32603 error in its stream, saying the
//     gateway restarted), and its upstream session is kept (no DELETE), so
//     it can be re-attached. Once every owned goroutine has exited, the
//     sessions are written to the state file atomically (a temporary file
//     in the same directory, fsync, rename, fsync of the directory), mode
//     0600: session ids let anyone holding them continue the sessions.
//   - New reads the file whole (sessionrec.ReadFile checks its header,
//     every record's checksum and the trailer before anything is used) and
//     restores every session: the same id, principal, protocol version and
//     times, each stream with its retained events, sequence numbers and
//     delivery positions, so a client continues with its Mcp-Session-Id and
//     resumes its streams by Last-Event-ID. A file that is truncated,
//     corrupt, of another version or not a state file is refused with a
//     message saying so, renamed to <file>.refused, and the gateway starts
//     empty: never half-restored. A restored file is removed, so a crash
//     later cannot bring back sessions that ended since.
//   - The upstream side is re-attached where the transport can
//     (upstream.Resumer: Streamable HTTP sends the same upstream session
//     id); otherwise (stdio, legacy HTTP+SSE) it is re-initialized from the
//     session's cached initialize on first use (reinitSession).
//
// A record that does not fit this configuration (a ring now too small for
// the undelivered events it holds, a protocol version no longer served, no
// way to bind an upstream) drops that one session with a warning; its
// client gets 404 and starts over.

// upstreamRestarted is the error a call gets when the restart cut its
// upstream answer short.
const upstreamRestarted = "the gateway restarted before the response arrived; the request may or may not have been carried out"

// suspendSessions stops every session's pumps for a restart, keeping the
// session and its upstream side (Shutdown, with Config.StateFile).
func (s *Server) suspendSessions() {
	s.store.Range(func(_ string, sess *session) bool {
		if sess.legacy != nil {
			return true // ends with its stream (Shutdown closes it)
		}
		sess.mu.Lock()
		sess.suspended = true
		streams := sess.streams.snapshot()
		sess.mu.Unlock()
		sess.cancel()
		for _, st := range streams {
			st.closeUpstream()
		}
		return true
	})
}

// SaveState writes every session to w as a state file (package
// sessionrec). Shutdown calls it with Config.StateFile once the sessions
// are suspended and every pump has stopped, which makes the copy exact. On
// a running Server the copy is a snapshot of each stream at a slightly
// different moment, and answers still arriving are not in it.
func (s *Server) SaveState(w io.Writer) error {
	sw, err := sessionrec.NewWriter(w, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("gateway: save state: %w", err)
	}
	n := 0
	s.store.Range(func(_ string, sess *session) bool {
		if sess.legacy != nil {
			return true // a legacy session does not outlive its stream
		}
		rec := s.sessionRecord(sess)
		if err = sw.Write(rec); err != nil {
			return false
		}
		n++
		return true
	})
	if err == nil {
		err = sw.Close()
	}
	if err != nil {
		return fmt.Errorf("gateway: save state: %w", err)
	}
	s.log.Info("sessions saved", "sessions", n)
	return nil
}

// sessionRecord is sess as a session record.
func (s *Server) sessionRecord(sess *session) *sessionrec.Record {
	rec := &sessionrec.Record{
		ID: sess.id, Principal: sess.principal, Namespaced: true, Owner: sess.owner, Version: sess.version,
		Created: sess.created, LastActive: sess.lastActive.Load(),
	}
	if rs := sess.restart; rs != nil {
		rec.Initialize, rec.Capabilities = rs.init, rs.caps
	}
	up := sess.up
	if rs, ok := up.(*reinitSession); ok {
		rec.Upstream = sessionrec.Upstream{Kind: rs.kind, Version: rs.version}
		up = rs.current() // nil until re-initialized: it stays to be re-initialized
	}
	if up != nil {
		// Only a session of the resumer's own transport with an id can be
		// re-attached; a session bridged onto a stateless upstream has no
		// upstream session and is re-initialized (reinit.go).
		resumable := s.resumer != nil && up.ID() != "" && kindOf(up) == upstream.KindHTTP
		rec.Upstream = sessionrec.Upstream{Kind: kindOf(up), ID: up.ID(), Version: up.Version(), Resumable: resumable}
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if rs := sess.restart; rs != nil {
		rec.LogLevel = rs.logLevel
		for uri := range rs.subs {
			rec.Subscriptions = append(rec.Subscriptions, uri)
		}
	}
	rec.NextCall, rec.NextStream = sess.nextUp, sess.nextStream
	rec.Streams = make([]sessionrec.Stream, 0, sess.streams.len())
	for id, st := range sess.streams.all() {
		snap := st.ring.Snapshot()
		r := sessionrec.Stream{ID: id, FinishedAt: st.finishedAt.Load(), Delivered: st.delivered.Load(), ConnStart: st.connStart.Load(),
			UpstreamLastEventID: st.upstreamLastID(),
			Ring: sessionrec.Ring{Last: snap.Last, Delivered: snap.Delivered, Lost: snap.Lost, SkipMark: snap.SkipMark, Closed: snap.Closed,
				Counters: sessionrec.Counters{Pushed: snap.Stats.Pushed, Coalesced: snap.Stats.Coalesced,
					DroppedOldest: snap.Stats.DroppedOldest, DroppedNewest: snap.Stats.DroppedNewest,
					DroppedDisconnect: snap.Stats.DroppedDisconnect, PastSoftLimit: snap.Stats.PastSoftLimit,
					Overflow: snap.Stats.Overflow, Evicted: snap.Stats.Evicted, Skipped: snap.Stats.Skipped}}}
		r.Ring.Events = make([]sessionrec.Event, len(snap.Events))
		for i, e := range snap.Events {
			r.Ring.Events[i] = sessionrec.Event{Seq: e.Seq, MustDeliver: e.Class == ringbuf.MustDeliver, Key: e.Key, Data: e.Data}
		}
		rec.Streams = append(rec.Streams, r)
	}
	return rec
}

// kindOf names an upstream session's transport.
func kindOf(up upstream.Session) string {
	if k, ok := up.(interface{ Kind() string }); ok {
		return k.Kind()
	}
	return upstream.KindHTTP
}

// Restore adds the sessions of a state file (as SaveState writes it) to a
// Server that is not serving yet; New does it with Config.StateFile. The
// whole file is read and checked first: a truncated, corrupt or foreign
// file is refused (the error wraps the *sessionrec.FileError) and nothing
// is restored. A session that does not fit this configuration is skipped
// with a warning. It returns the number of sessions restored.
func (s *Server) Restore(r io.Reader) (int, error) {
	if s.served.Load() {
		return 0, errors.New("gateway: Restore after Serve")
	}
	_, recs, err := sessionrec.ReadFile(r)
	if err != nil {
		return 0, fmt.Errorf("gateway: state file refused: %w", err)
	}
	restored, skipped := 0, 0
	var standalone []*session
	for _, rec := range recs {
		sess, err := s.restoreSession(rec)
		if err == nil {
			err = s.storeSession(sess)
			if errors.Is(err, shard.ErrFull) {
				sess.cancel()
				sess.withStreams.Delete(sess)
				s.endDropped(sess)
				for _, rest := range recs[restored+skipped+1:] {
					s.endSavedUpstream(rest)
				}
				s.log.Warn("session cap reached while restoring: the remaining sessions are dropped",
					"restored", restored, "dropped", len(recs)-restored-skipped)
				break
			}
		}
		if err != nil {
			if sess != nil {
				sess.cancel()
				sess.withStreams.Delete(sess)
				s.endDropped(sess)
			}
			skipped++
			s.log.Warn("a saved session is dropped", "session", shortID(rec.ID), "err", err)
			continue
		}
		restored++
		s.metrics.sessionsRestored.Add(1)
		s.cfg.Hooks.SessionCreated(sess.info())
		// A session to re-initialize is left alone until its first use
		// (reinit.go): listening would re-initialize it now.
		if _, reinit := sess.up.(*reinitSession); sess.stream(0) != nil && !reinit {
			standalone = append(standalone, sess)
		}
	}
	// Standalone streams are fed again at once, as they were before the
	// restart, so events keep arriving while their clients reconnect.
	for _, sess := range standalone {
		s.ensureStandalonePump(sess, sess.stream(0))
	}
	return restored, nil
}

// sessionFromRecord is the session a record describes (a restart's, or
// another cluster node's), without its upstream side, streams, counters
// and last activity, which the callers set.
func (s *Server) sessionFromRecord(rec *sessionrec.Record, nstreams int) *session {
	principal := s.recordPrincipal(rec)
	sess := &session{
		id: rec.ID, version: rec.Version, principal: principal, owner: recordOwner(rec, principal), created: rec.Created,
		streams:     streamTable{list: make([]streamEntry, 0, nstreams)},
		withStreams: s.streamSet(rec.ID),
		restart:     &restartState{init: rec.Initialize, caps: rec.Capabilities, logLevel: rec.LogLevel},
	}
	for _, uri := range rec.Subscriptions {
		if sess.restart.subs == nil {
			sess.restart.subs = make(map[string]struct{}, len(rec.Subscriptions))
		}
		sess.restart.subs[uri] = struct{}{}
	}
	return sess
}

// recordOwner is what a restored or loaded session counts under for
// Config.MaxSessionsPerPrincipal: the owner the record names (an anonymous
// client's address), else its principal (recordPrincipal). An anonymous
// session of a record without an owner is counted alone, never with every
// other anonymous one.
func recordOwner(rec *sessionrec.Record, principal string) string {
	switch {
	case rec.Owner != "":
		return rec.Owner
	case principal != "":
		return principal
	}
	return "\x00" + rec.ID
}

// legacyPrincipals is an Authenticator that can say what a principal
// recorded before JWT subjects had a namespace of their own stands for
// now (*auth.Verifier).
type legacyPrincipals interface {
	LegacyPrincipal(name string) string
}

// recordPrincipal is the principal of a record. A record written before
// JWT principals had their own namespace (not Namespaced: a restart from
// the previous version, or its nodes during a rolling upgrade) holds a
// bare name, a static token's or a JWT's sub: the Authenticator maps it
// (auth.Verifier.LegacyPrincipal: a static token's principal when the
// tokens file names it, else the JWT subject's). Without such an
// Authenticator the name is kept.
func (s *Server) recordPrincipal(rec *sessionrec.Record) string {
	if rec.Namespaced || rec.Principal == "" {
		return rec.Principal
	}
	if m, ok := s.cfg.Authenticator.(legacyPrincipals); ok {
		return m.LegacyPrincipal(rec.Principal)
	}
	return rec.Principal
}

// expiredRecord is expiredReason for a saved session (never busy: its
// calls and connections ended at the shutdown).
func (s *Server) expiredRecord(rec *sessionrec.Record, now int64) int {
	if s.cfg.SessionMaxAge > 0 && now-rec.Created >= int64(s.cfg.SessionMaxAge) {
		return int(CloseMaxAge)
	}
	if now-rec.LastActive >= int64(s.cfg.SessionIdleTimeout) {
		return int(CloseIdle)
	}
	return -1
}

// endSavedUpstream ends, through the reaper, the upstream session of a
// saved session that is not restored: the shutdown left it open for the
// restart, and nothing else would end it before the upstream's own
// timeout. Only a resumable (Streamable HTTP) upstream session outlives
// the process; a stdio child died with it.
func (s *Server) endSavedUpstream(rec *sessionrec.Record) {
	if !rec.Upstream.Resumable || s.resumer == nil {
		return
	}
	up, err := s.resumer.Resume(rec.Upstream.ID, rec.Upstream.Version)
	if err != nil {
		return
	}
	s.reapLater(&session{id: rec.ID, up: up})
}

// endDropped ends the upstream side of a restored session that is then
// dropped (its streams did not fit, the session cap was reached).
func (s *Server) endDropped(sess *session) {
	if _, reinit := sess.up.(*reinitSession); sess.up != nil && !reinit {
		s.reapLater(sess)
	}
}

// restoreSession builds a session from its record, without storing it.
func (s *Server) restoreSession(rec *sessionrec.Record) (*session, error) {
	switch {
	case !validSessionID([]byte(rec.ID)):
		return nil, errors.New("malformed session id")
	case !versionSupported([]byte(rec.Version)):
		s.endSavedUpstream(rec)
		return nil, fmt.Errorf("protocol version %q is not served", rec.Version)
	}
	// A session that expired while the gateway was down stays ended: the
	// sweeper would end it only at its first expiry check, and a request
	// before that would revive it.
	if r := s.expiredRecord(rec, s.clock.Now()); r >= 0 {
		s.endSavedUpstream(rec)
		return nil, fmt.Errorf("expired while the gateway was down (%s)", CloseReason(r))
	}
	sess := s.sessionFromRecord(rec, len(rec.Streams))
	cancel := sess.cancel
	sess.nextUp, sess.nextStream = rec.NextCall, rec.NextStream
	sess.lastActive.Store(rec.LastActive)
	switch {
	case rec.Upstream.Resumable && s.resumer != nil:
		up, err := s.resumer.Resume(rec.Upstream.ID, rec.Upstream.Version)
		if err != nil {
			cancel()
			return nil, err
		}
		sess.up = up
	case len(rec.Initialize) > 0:
		sess.up = &reinitSession{srv: s, sess: sess, init: rec.Initialize, kind: rec.Upstream.Kind, version: rec.Upstream.Version}
	default:
		cancel()
		return nil, errNoUpstream
	}
	ringCfg := ringbuf.Config{Capacity: s.cfg.RingSize, MaxBytes: s.cfg.RingBytes, Policy: s.cfg.DropPolicy}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	// drop gives the session up: the streams restored before the one that
	// failed put it among the sessions with streams, which it leaves.
	drop := func(err error) (*session, error) {
		cancel()
		sess.withStreams.Delete(sess)
		s.endDropped(sess)
		return nil, err
	}
	for i := range rec.Streams {
		r := &rec.Streams[i]
		if sess.streams.get(r.ID) != nil {
			return drop(fmt.Errorf("stream %d saved twice", r.ID))
		}
		snap := ringbuf.Snapshot{Last: r.Ring.Last, Delivered: r.Ring.Delivered, Lost: r.Ring.Lost, SkipMark: r.Ring.SkipMark,
			Closed: r.Ring.Closed, Events: make([]ringbuf.Event, len(r.Ring.Events)),
			Stats: ringbuf.Stats{Pushed: r.Ring.Counters.Pushed, Coalesced: r.Ring.Counters.Coalesced,
				DroppedOldest: r.Ring.Counters.DroppedOldest, DroppedNewest: r.Ring.Counters.DroppedNewest,
				DroppedDisconnect: r.Ring.Counters.DroppedDisconnect, PastSoftLimit: r.Ring.Counters.PastSoftLimit,
				Overflow: r.Ring.Counters.Overflow, Evicted: r.Ring.Counters.Evicted, Skipped: r.Ring.Counters.Skipped}}
		for j, e := range r.Ring.Events {
			class := ringbuf.Droppable
			if e.MustDeliver {
				class = ringbuf.MustDeliver
			}
			snap.Events[j] = ringbuf.Event{Seq: e.Seq, Class: class, Key: e.Key, Data: e.Data}
		}
		if r.ID != 0 && !snap.Closed {
			// An answer saved while its pump still ran (SaveState on a
			// running Server): nothing feeds it after the restart.
			snap.Closed = true
		}
		ring, err := ringbuf.Restore(ringCfg, snap)
		if err != nil {
			return drop(fmt.Errorf("stream %d: %w", r.ID, err))
		}
		st := newStream(r.ID, sess, ring)
		st.delivered.Store(r.Delivered)
		st.connStart.Store(r.ConnStart)
		if id := r.UpstreamLastEventID; id != "" && r.ID == 0 {
			st.upLastID.Store(&id) // the upstream's stream resumes after it (connectStandalone)
		}
		st.droppedOldestSeen.Store(snap.Stats.DroppedOldest)
		st.skippedSeen.Store(snap.Stats.Skipped)
		if r.ID != 0 {
			at := r.FinishedAt
			if at == 0 {
				at = s.clock.Now()
			}
			st.finishedAt.Store(at)
			sess.addFinishedLocked(r.ID)
		}
		sess.addStreamLocked(st)
		if r.ID > sess.nextStream {
			sess.nextStream = r.ID
		}
	}
	sess.pruneFinishedLocked()
	return sess, nil
}

// loadStateFile restores the sessions of Config.StateFile, if it exists
// (New). A refused file is renamed to <file>.refused and the gateway
// starts empty; a restored one is removed.
func (s *Server) loadStateFile() {
	path := s.cfg.StateFile
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		s.log.Info("no state file: starting without sessions", "state_file", path)
		return
	}
	if err != nil {
		s.log.Error("state file unreadable: starting without sessions", "state_file", path, "err", err)
		return
	}
	start := time.Now()
	n, err := s.Restore(bufio.NewReaderSize(f, 256<<10))
	_ = f.Close()
	if err != nil {
		refused := path + ".refused"
		if rerr := os.Rename(path, refused); rerr != nil {
			refused = path
		}
		s.log.Error("state file refused: starting without sessions", "state_file", path, "kept_as", refused, "err", err)
		return
	}
	if err := os.Remove(path); err != nil {
		s.log.Warn("restored state file not removed: a later start would restore it again", "state_file", path, "err", err)
	}
	s.log.Info("sessions restored", "state_file", path, "sessions", n, "took", time.Since(start).Round(time.Millisecond))
}

// writeStateFile writes every session to Config.StateFile atomically
// (Shutdown): a temporary file in the same directory, mode 0600, fsync,
// rename over the file, fsync of the directory.
func (s *Server) writeStateFile() error {
	path := s.cfg.StateFile
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("gateway: state file: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("gateway: state file %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	if err := s.SaveState(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("gateway: state file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("gateway: state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// keepForRestart records, on a new session and with Config.StateFile,
// what re-initializing its upstream side after a restart takes: the
// initialize request as forwarded, and the capabilities the upstream
// negotiated (from its answer).
func (s *Server) keepForRestart(sess *session, forwarded, answer []byte) {
	if s.cfg.StateFile == "" && s.clu == nil {
		return
	}
	sess.restart = &restartState{init: forwarded}
	if caps, ok := jsonrpc.Lookup(answer, "result", "capabilities"); ok {
		sess.restart.caps = bytes.Clone(caps)
	}
}
