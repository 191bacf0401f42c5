package testenv

import (
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// ResumableFake is a FakeUpstream that also implements upstream.Resumer,
// like the Streamable HTTP transport: a gateway restored from a state file
// re-attaches the fake's sessions by id instead of re-initializing them.
type ResumableFake struct{ *FakeUpstream }

var _ upstream.Resumer = ResumableFake{}

// Resumable returns f as an upstream.Resumer.
func (f *FakeUpstream) Resumable() ResumableFake { return ResumableFake{f} }

// Resume implements upstream.Resumer: it returns the fake session with that
// id (recorded as "resume"), or, when the fake has none, a session the
// upstream forgot: every exchange fails with upstream.ErrSessionGone.
func (r ResumableFake) Resume(id, version string) (upstream.Session, error) {
	f := r.FakeUpstream
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		if s.id == id && s.version == version && !s.closed {
			f.recordLocked(Record{Op: "resume", Session: s.n})
			return s, nil
		}
	}
	f.recordLocked(Record{Op: "resume", Body: id})
	return &FakeSession{f: f, id: id, version: version, gone: true}, nil
}
