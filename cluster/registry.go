package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// entryVersion is the registry entry format: the version byte, then the
// owner, the writer (both uvarint-length strings), the last activity
// (uvarint unix ns), then the session record (sessionrec.AppendRecord).
const entryVersion = 1

func appendEntry(dst []byte, owner, writer string, lastActive int64, rec *sessionrec.Record) []byte {
	dst = append(dst, entryVersion)
	dst = putUvarint(dst, uint64(len(owner)))
	dst = append(dst, owner...)
	dst = putUvarint(dst, uint64(len(writer)))
	dst = append(dst, writer...)
	dst = putUvarint(dst, uint64(lastActive))
	return sessionrec.AppendRecord(dst, rec)
}

// entryHead decodes an entry up to its record.
func entryHead(b []byte) (owner, writer string, lastActive int64, rest []byte, err error) {
	bad := errors.New("cluster: malformed registry entry")
	if len(b) == 0 || b[0] != entryVersion {
		return "", "", 0, nil, bad
	}
	b = b[1:]
	for _, s := range []*string{&owner, &writer} {
		l, r, ok := getUvarint(b)
		if !ok || uint64(len(r)) < l {
			return "", "", 0, nil, bad
		}
		*s, b = string(r[:l]), r[l:]
	}
	la, r, ok := getUvarint(b)
	if !ok {
		return "", "", 0, nil, bad
	}
	return owner, writer, int64(la), r, nil
}

// SaveSession writes a session's registry entry: rec (its streams are not
// stored: events live in the events stream), owned by owner, last active
// at lastActive (unix ns). rev is the entry revision the caller last saw:
// 0 creates the entry (it must not exist). It returns the new revision,
// or ok false (and no error) when the entry changed since rev, or exists
// already for rev 0: the caller reads it again.
func (n *Node) SaveSession(ctx context.Context, rec *sessionrec.Record, owner string, lastActive int64, rev uint64) (newRev uint64, ok bool, err error) {
	saved := *rec
	saved.Streams = nil
	val := appendEntry(make([]byte, 0, 256+len(rec.Initialize)+len(rec.Capabilities)), owner, n.cfg.NodeID, lastActive, &saved)
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.stats.RegistryWrites.Add(1)
	if rev == 0 {
		newRev, err = n.kv.Create(cctx, rec.ID, val)
	} else {
		newRev, err = n.kv.Update(cctx, rec.ID, val, rev)
	}
	switch {
	case err == nil:
		return newRev, true, nil
	case errors.Is(err, jetstream.ErrKeyExists), isWrongLastSequence(err):
		n.stats.RegistryConflicts.Add(1)
		return 0, false, nil
	default:
		return 0, false, fmt.Errorf("cluster: save session: %w", err)
	}
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// LoadSession reads a session's registry entry: one read. A session the
// registry does not hold gives (nil, nil).
func (n *Node) LoadSession(ctx context.Context, id string) (rec *sessionrec.Record, owner string, lastActive int64, rev uint64, err error) {
	if !validKey(id) {
		return nil, "", 0, 0, nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.stats.RegistryReads.Add(1)
	e, err := n.kv.Get(cctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, "", 0, 0, nil
	}
	if err != nil {
		return nil, "", 0, 0, fmt.Errorf("cluster: load session: %w", err)
	}
	owner, _, lastActive, body, err := entryHead(e.Value())
	if err != nil {
		return nil, "", 0, 0, err
	}
	rec, err = sessionrec.DecodeRecord(body)
	if err != nil {
		return nil, "", 0, 0, fmt.Errorf("cluster: load session: %w", err)
	}
	return rec, owner, lastActive, e.Revision(), nil
}

// validKey reports whether id can be a registry key (the gateway's ids are
// 32 hex characters; anything else is not in the registry).
func validKey(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// EndSession removes a session's registry entry and purges its stream
// events. Other nodes holding the session learn it through Watch.
func (n *Node) EndSession(ctx context.Context, id string) error {
	if !validKey(id) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.stats.RegistryWrites.Add(1)
	err := errors.Join(n.kv.Purge(cctx, id), n.kv.Purge(cctx, markKey(id, 0)), n.kv.Purge(cctx, highKey(id, 0)))
	if perr := n.events.Purge(cctx, jetstream.WithPurgeSubject(n.evPrefix+id+".>")); perr != nil {
		err = errors.Join(err, perr)
	}
	if err != nil {
		return fmt.Errorf("cluster: end session: %w", err)
	}
	return nil
}

// Watch calls fn for every registry change another node makes, until
// Close: a session's entry written (its owner, last activity and the
// entry's revision: a node that owned the session learns that another
// claimed it), or its end (gone). fn runs on the watcher's goroutine and
// must not block. Call it once, before serving.
func (n *Node) Watch(fn func(id, owner string, lastActive int64, rev uint64, gone bool)) error {
	w, err := n.kv.WatchAll(n.ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("cluster: watch the registry: %w", err)
	}
	n.goOwned(func(ctx context.Context) {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				switch e.Operation() {
				case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
					if validKey(e.Key()) { // not a stream mark
						fn(e.Key(), "", 0, 0, true)
					}
				default:
					owner, writer, la, _, err := entryHead(e.Value())
					if err != nil || writer == n.cfg.NodeID {
						continue
					}
					fn(e.Key(), owner, la, e.Revision(), false)
				}
			}
		}
	})
	return nil
}

// Keys lists the sessions the registry holds (tests and the admin).
func (n *Node) Keys(ctx context.Context) ([]string, error) {
	lister, err := n.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k) // session entries and stream marks
	}
	return keys, nil
}

// markKey is the registry key of a stream's connection mark.
func markKey(id string, stream uint64) string { return id + ".m" + strconv.FormatUint(stream, 10) }

// SetMark records where the newest connection of a session's stream
// started, for any node: a client that reconnects without Last-Event-ID
// (it got no event id on its last connection) is served from there, so
// nothing is lost and nothing it got is repeated.
func (n *Node) SetMark(ctx context.Context, id string, stream, seq uint64) error {
	if !validKey(id) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.stats.RegistryWrites.Add(1)
	if _, err := n.kv.Put(cctx, markKey(id, stream), strconv.AppendUint(nil, seq, 10)); err != nil {
		return fmt.Errorf("cluster: set mark: %w", err)
	}
	return nil
}

// Mark reads a stream's connection mark; 0 if none was set.
func (n *Node) Mark(ctx context.Context, id string, stream uint64) (uint64, error) {
	if !validKey(id) {
		return 0, nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.stats.RegistryReads.Add(1)
	e, err := n.kv.Get(cctx, markKey(id, stream))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cluster: mark: %w", err)
	}
	return strconv.ParseUint(string(e.Value()), 10, 64)
}

// highKey is the registry key of a stream's high-water mark.
func highKey(id string, stream uint64) string { return id + ".h" + strconv.FormatUint(stream, 10) }

// SetHigh records the highest seq given out in a session's stream and the
// highest must-deliver seq among them (the value: both in decimal, a
// space between), for the node that produces the stream next: the events
// stream keeps events for the stream retention only (MaxAge), so a quiet
// stream's stored events, its tail among them, are gone after that. One
// put, which a later one replaces; like every registry key it lives for
// the bucket's TTL after its last write.
func (n *Node) SetHigh(ctx context.Context, id string, stream, seq, lastMust uint64) error {
	if !validKey(id) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.stats.RegistryWrites.Add(1)
	val := strconv.AppendUint(nil, seq, 10)
	val = append(val, ' ')
	val = strconv.AppendUint(val, lastMust, 10)
	if _, err := n.kv.Put(cctx, highKey(id, stream), val); err != nil {
		return fmt.Errorf("cluster: set high-water mark: %w", err)
	}
	return nil
}

// High reads a stream's high-water mark (SetHigh); 0, 0 if none was set.
func (n *Node) High(ctx context.Context, id string, stream uint64) (seq, lastMust uint64, err error) {
	if !validKey(id) {
		return 0, 0, nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	n.stats.RegistryReads.Add(1)
	e, err := n.kv.Get(cctx, highKey(id, stream))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cluster: high-water mark: %w", err)
	}
	a, b, ok := strings.Cut(string(e.Value()), " ")
	seq, err1 := strconv.ParseUint(a, 10, 64)
	lastMust, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || lastMust > seq {
		return 0, 0, fmt.Errorf("cluster: malformed high-water mark %q", e.Value())
	}
	return seq, lastMust, nil
}
