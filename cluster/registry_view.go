package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// Registry is a read-only view of a running cluster's session registry, for
// tools and tests: it binds to the bucket the nodes created, without
// creating or changing anything and without joining as a node.
type Registry struct {
	nc *nats.Conn
	kv jetstream.KeyValue
}

// OpenRegistry binds to the session registry of the cluster named by
// prefix ("" = DefaultPrefix) on the NATS servers at urls.
func OpenRegistry(ctx context.Context, urls, prefix string, opts ...nats.Option) (*Registry, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", RedactURLs(urls), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	kv, err := js.KeyValue(ctx, prefix+"-sessions")
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: session bucket: %w", err)
	}
	return &Registry{nc: nc, kv: kv}, nil
}

// Close disconnects.
func (r *Registry) Close() { r.nc.Close() }

// Sessions lists the ids of the sessions the registry holds.
func (r *Registry) Sessions(ctx context.Context) ([]string, error) {
	lister, err := r.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for k := range lister.Keys() {
		if !strings.Contains(k, ".") { // not a stream mark
			ids = append(ids, k)
		}
	}
	return ids, nil
}

// Keys lists every key of the bucket: session entries and stream marks.
func (r *Registry) Keys(ctx context.Context) ([]string, error) {
	lister, err := r.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// Session reads a session's entry: its record, owner and last activity;
// nil if there is none.
func (r *Registry) Session(ctx context.Context, id string) (*sessionrec.Record, string, int64, error) {
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, "", 0, nil
	}
	if err != nil {
		return nil, "", 0, err
	}
	owner, _, la, body, err := entryHead(e.Value())
	if err != nil {
		return nil, "", 0, err
	}
	rec, err := sessionrec.DecodeRecord(body)
	return rec, owner, la, err
}
