package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcpgate/mcpgate/gateway/sessionrec"
)

// Event headers. The data is the event's JSON-RPC message.
const (
	hSeq      = "S" // the ring seq
	hMust     = "M" // "1": must-deliver
	hKey      = "K" // coalescing key of a droppable event
	hLastMust = "L" // seq of the last must-deliver event before this one
	hUpstream = "U" // the upstream's SSE event id
	hCall     = "C" // "<upID> <client id>", one value per call
	hEnd      = "E" // "1": the stream's end marker
)

func (n *Node) subject(id string, stream uint64) string {
	return n.evPrefix + id + "." + strconv.FormatUint(stream, 10)
}

type pendingAck struct {
	f    jetstream.PubAckFuture
	err  error
	msg  *nats.Msg
	done func(error)
}

// Publish stores one stream event in JetStream without waiting: done (if
// not nil) is called with the outcome, in publishing order, on the
// node's acknowledgement goroutine, once JetStream acknowledged the event
// (nil) or failed to store it after one retry. It waits only when
// Config.MaxPending events are unacknowledged already.
func (n *Node) Publish(id string, ev *sessionrec.Published, done func(error)) {
	m := nats.NewMsg(n.subject(id, ev.Stream))
	m.Header[hSeq] = []string{strconv.FormatUint(ev.Seq, 10)}
	if ev.MustDeliver {
		m.Header[hMust] = []string{"1"}
	}
	if ev.Key != 0 {
		m.Header[hKey] = []string{strconv.FormatUint(ev.Key, 10)}
	}
	if ev.LastMust != 0 {
		m.Header[hLastMust] = []string{strconv.FormatUint(ev.LastMust, 10)}
	}
	if ev.UpstreamEventID != "" {
		m.Header[hUpstream] = []string{ev.UpstreamEventID}
	}
	for _, c := range ev.Calls {
		m.Header.Add(hCall, strconv.FormatUint(c.UpID, 10)+" "+string(c.ClientID))
	}
	if ev.End {
		m.Header[hEnd] = []string{"1"}
	}
	m.Data = append([]byte(nil), ev.Data...) // kept for a retry: the caller reuses its buffer
	n.stats.Published.Add(1)
	f, err := n.js.PublishMsgAsync(m)
	select {
	case n.acks <- pendingAck{f: f, err: err, msg: m, done: done}:
	case <-n.ctx.Done():
		if done != nil {
			done(errors.New("cluster: closed"))
		}
	}
}

// ackLoop settles publishes in order; a failed one is retried once,
// synchronously (its followers wait: order is kept).
func (n *Node) ackLoop(ctx context.Context) {
	for {
		var p pendingAck
		select {
		case p = <-n.acks:
		case <-ctx.Done():
			for {
				select {
				case p = <-n.acks:
					if p.done != nil {
						p.done(errors.New("cluster: closed"))
					}
				default:
					return
				}
			}
		}
		err := p.err
		if err == nil {
			select {
			case <-p.f.Ok():
			case err = <-p.f.Err():
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err != nil && ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
			_, err = n.js.PublishMsg(rctx, &nats.Msg{Subject: p.msg.Subject, Header: p.msg.Header, Data: p.msg.Data})
			cancel()
		}
		if err != nil {
			n.stats.PublishErrors.Add(1)
			n.log.Warn("cluster: an event was not stored in JetStream", "subject", p.msg.Subject, "err", err)
		}
		if p.done != nil {
			p.done(err)
		}
	}
}

// decode reads a stored event.
func decode(subject string, h nats.Header, data []byte) (*sessionrec.Published, error) {
	p := &sessionrec.Published{}
	var err error
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		if p.Stream, err = strconv.ParseUint(subject[i+1:], 10, 64); err != nil {
			return nil, fmt.Errorf("cluster: event subject %q", subject)
		}
	}
	if p.Seq, err = strconv.ParseUint(h.Get(hSeq), 10, 64); err != nil {
		return nil, fmt.Errorf("cluster: event without seq on %q", subject)
	}
	p.MustDeliver = h.Get(hMust) == "1"
	if v := h.Get(hKey); v != "" {
		p.Key, _ = strconv.ParseUint(v, 10, 64)
	}
	if v := h.Get(hLastMust); v != "" {
		p.LastMust, _ = strconv.ParseUint(v, 10, 64)
	}
	p.UpstreamEventID = h.Get(hUpstream)
	for _, c := range h.Values(hCall) {
		up, client, ok := strings.Cut(c, " ")
		if !ok {
			continue
		}
		u, err := strconv.ParseUint(up, 10, 64)
		if err != nil {
			continue
		}
		p.Calls = append(p.Calls, sessionrec.Call{UpID: u, ClientID: []byte(client)})
	}
	p.End = h.Get(hEnd) == "1"
	p.Data = data
	return p, nil
}

// Tail returns a stream's last stored event (the end marker if it
// finished), or nil if JetStream holds none of it.
func (n *Node) Tail(ctx context.Context, id string, stream uint64) (*sessionrec.Published, error) {
	if !validKey(id) {
		return nil, nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	m, err := n.events.GetLastMsgForSubject(cctx, n.subject(id, stream))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: stream tail: %w", err)
	}
	return decode(m.Subject, m.Header, m.Data)
}

// Streams lists the streams of a session that JetStream holds events of.
func (n *Node) Streams(ctx context.Context, id string) ([]uint64, error) {
	if !validKey(id) {
		return nil, nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	info, err := n.events.Info(cctx, jetstream.WithSubjectFilter(n.evPrefix+id+".>"))
	if err != nil {
		return nil, fmt.Errorf("cluster: streams of a session: %w", err)
	}
	var out []uint64
	for subj := range info.State.Subjects {
		if i := strings.LastIndexByte(subj, '.'); i >= 0 {
			if v, err := strconv.ParseUint(subj[i+1:], 10, 64); err == nil {
				out = append(out, v)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Follow calls fn with each stored event of a stream whose seq is above
// after, oldest first, then with every new one as it is stored, until the
// stream's end marker (Follow returns nil after giving it to fn), ctx ends
// (ctx's error), fn fails (its error) or JetStream does. An event stored
// twice under one seq (a coalesced update) is given once.
func (n *Node) Follow(ctx context.Context, id string, stream, after uint64, fn func(*sessionrec.Published) error) error {
	n.stats.Follows.Add(1)
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{n.subject(id, stream)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if after > 0 {
		// Start at the first event above after rather than reading the
		// subject from its oldest event.
		if seq, ok := n.firstAbove(ctx, n.subject(id, stream), after); ok {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
		}
	}
	cons, err := n.js.OrderedConsumer(ctx, n.streamName, cfg)
	if err != nil {
		return fmt.Errorf("cluster: follow: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("cluster: follow: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	last := after
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("cluster: follow: %w", err)
		}
		p, err := decode(m.Subject(), m.Headers(), m.Data())
		if err != nil {
			n.log.Warn("cluster: unreadable event skipped", "err", err)
			continue
		}
		if p.End {
			return fn(p)
		}
		if p.Seq <= last {
			continue
		}
		last = p.Seq
		if err := fn(p); err != nil {
			return err
		}
	}
}

// firstAbove finds the stream sequence of a subject's first stored event
// whose ring seq is above after (or its last event, if none is), by a
// binary search of direct gets: a subject's events are stored in ring seq
// order. ok false: the subject is empty, or a get failed (the caller
// reads from the subject's start).
func (n *Node) firstAbove(ctx context.Context, subject string, after uint64) (uint64, bool) {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	last, err := n.events.GetLastMsgForSubject(cctx, subject)
	if err != nil {
		return 0, false
	}
	ringSeq := func(m *jetstream.RawStreamMsg) uint64 {
		v, _ := strconv.ParseUint(m.Header.Get(hSeq), 10, 64)
		return v
	}
	if ringSeq(last) <= after {
		return last.Sequence, true // nothing above: the end marker or live events follow
	}
	lo, hi := uint64(1), last.Sequence // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := n.events.GetMsg(cctx, mid, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return 0, false
		}
		if ringSeq(m) > after {
			hi = m.Sequence
			if hi > mid {
				hi = mid
			}
		} else {
			lo = m.Sequence + 1
		}
	}
	return lo, true
}
