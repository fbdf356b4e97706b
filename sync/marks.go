package sync

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Ticket used-marks: the gates of one venue (one site) share the "used"
// marks of tickets through HQ, so that a ticket used at gate 1 is refused
// at gate 2:
//
//	tobira/v1/{site}/{device}/marks       edge -> HQ, QoS 1: MarkBatch (JSON)
//	tobira/v1/{site}/{device}/peer-marks  HQ -> edge, QoS 1: signed envelope of kind "marks"
//	                                      holding a MarkBatch whose Device is the origin
//
// The edge reads the marks its policy store recorded (MarkStore.UsedMarks)
// after a persisted cursor, publishes them, and advances the cursor once
// the broker has taken them. HQ relays each batch, signed with its key, to
// every other device of the site it knows (from status and events), and
// sends a device the site's whole mark set when the device comes online.
// The edge verifies the signature against its pinned keys and merges the
// marks (MarkStore.MergeUsedMarks: last writer wins, idempotent), so
// duplicates, reordering and replays are harmless.

// Mark limits and defaults.
const (
	// DefaultMarkInterval is how often the edge looks for new marks when
	// nothing prompts it.
	DefaultMarkInterval = time.Second
)

// MarkStore is the edge's ticket-mark store: *policy.Store implements it.
type MarkStore interface {
	// UsedMarks returns up to limit marks recorded after cursor since, and
	// the cursor to pass next time.
	UsedMarks(since uint64, limit int) ([]policy.UsedMark, uint64, error)
	// MergeUsedMarks merges marks from other gates and returns how many
	// changed the local state.
	MergeUsedMarks(ctx context.Context, marks []policy.UsedMark) (int, error)
}

// keyMarksCursor is the outbox meta key of the last mark cursor sent.
var keyMarksCursor = []byte("marks_cursor")

// markLoop publishes the edge's marks and merges its peers'.
type markLoop struct {
	store    MarkStore
	ob       *Outbox
	pub      publisher
	up       func() bool // connected and subscribed
	v        *signed.Verifier
	clk      clock.Clock
	log      *slog.Logger
	site     string
	device   string
	interval time.Duration
	kick     chan struct{} // capacity 1
}

// nudge wakes the loop without blocking.
func (l *markLoop) nudge() { wake(l.kick) }

// routes implements feature: the other gates' marks, relayed by HQ.
func (l *markLoop) routes() []route {
	return []route{{topic: proto.PeerMarksTopic(l.site, l.device), handle: l.onPeerMarks}}
}

// connected implements feature: marks recorded offline go out now.
func (l *markLoop) connected(context.Context) { l.nudge() }

// notify implements feature: a mark may have been recorded.
func (l *markLoop) notify() { l.nudge() }

// cursor reads the persisted cursor.
func (l *markLoop) cursor() (uint64, error) {
	var c uint64
	err := l.ob.db.View(func(tx *bolt.Tx) error {
		c = boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyMarksCursor))
		return nil
	})
	return c, err
}

// setCursor persists the cursor.
func (l *markLoop) setCursor(c uint64) error {
	return l.ob.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(boltfile.MetaBucket).Put(keyMarksCursor, boltfile.SeqKey(c)) })
}

// run implements feature: it publishes new marks when nudged and every
// interval until ctx ends.
func (l *markLoop) run(ctx context.Context) {
	for {
		if l.up() {
			if err := l.send(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("cannot send ticket marks, will retry", "err", err)
			}
		}
		if !waitRound(ctx, l.clk, l.kick, l.interval) {
			return
		}
	}
}

// send publishes every mark recorded after the cursor.
func (l *markLoop) send(ctx context.Context) error {
	cur, err := l.cursor()
	if err != nil {
		return fmt.Errorf("read mark cursor: %w", err)
	}
	topic := proto.MarksTopic(l.site, l.device)
	for {
		marks, next, err := l.store.UsedMarks(cur, proto.MaxMarks)
		if err != nil {
			return fmt.Errorf("read marks after %d: %w", cur, err)
		}
		if len(marks) > 0 {
			b := proto.MarkBatch{Site: l.site, Device: l.device, Marks: wireMarks(marks)}
			if err := publishJSON(ctx, l.pub, topic, b); err != nil {
				return fmt.Errorf("publish %d marks to %s: %w", len(marks), topic, err)
			}
			l.log.Debug("sent ticket marks", "marks", len(marks), "cursor", next)
		}
		if next != cur {
			if err := l.setCursor(next); err != nil {
				return fmt.Errorf("store mark cursor %d: %w", next, err)
			}
		}
		if len(marks) < proto.MaxMarks {
			return nil
		}
		cur = next
	}
}

// onPeerMarks verifies and merges a peer-marks message.
func (l *markLoop) onPeerMarks(ctx context.Context, topic string, envelope []byte) {
	b, err := proto.OpenMarks(l.v, envelope)
	if err == nil && b.Site != l.site {
		err = fmt.Errorf("%w: marks of site %s, this is %s", proto.ErrWrongDevice, b.Site, l.site)
	}
	if err != nil {
		l.log.Warn("refused peer marks", "topic", topic, "err", err)
		return
	}
	n, err := l.store.MergeUsedMarks(ctx, storeMarks(b.Marks))
	if err != nil {
		l.log.Error("cannot merge peer marks", "origin", b.Device, "marks", len(b.Marks), "err", err)
		return
	}
	l.log.Debug("merged peer marks", "origin", b.Device, "marks", len(b.Marks), "changed", n)
}

// wireMarks converts marks of the policy store to their wire form. The
// mark states have the same numbers in both (TestMarkConversion).
func wireMarks(ms []policy.UsedMark) []proto.Mark {
	out := make([]proto.Mark, len(ms))
	for i, m := range ms {
		out[i] = proto.Mark{Ticket: m.Ticket, Event: m.Event, State: proto.MarkState(m.State), At: m.At, Door: m.Door}
	}
	return out
}

// storeMarks converts marks from the wire to the policy store's type.
func storeMarks(ms []proto.Mark) []policy.UsedMark {
	out := make([]policy.UsedMark, len(ms))
	for i, m := range ms {
		out[i] = policy.UsedMark{Ticket: m.Ticket, Event: m.Event, State: policy.MarkState(m.State), At: m.At, Door: m.Door}
	}
	return out
}
