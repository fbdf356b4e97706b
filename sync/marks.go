package sync

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Ticket marks (see sync/proto/marks.go for the topics): the gates of one
// venue share the marks of single-entry tickets through HQ, and nothing of
// it depends on the broker's memory.
//
// Out: the edge moves the marks its policy store records
// (MarkStore.UsedMarks, after a persisted cursor) into its outbox file
// (bucket "marks", one transaction with the cursor), publishes the pending
// ones after every (re)connection, every Notify and every ack timeout, and
// deletes them only when HQ acknowledges them (marks-ack), which HQ does
// after it committed them.
//
// In: after every (re)connection the edge asks HQ for the site's marks
// after its peer-marks cursor (marks-get), and asks again while no answer
// comes (HQ may not have been subscribed: the broker drops the request),
// after the ack timeout and then less and less often; HQ answers, and pushes new marks
// as they come, in signed PeerMarks numbered by HQ. The edge verifies the
// signature against its pinned keys, refuses marks dated more than the
// skew ahead of its clock, merges the rest (MarkStore.MergePeerMarks: last
// writer wins, idempotent) and only then moves its cursor; a gap or a head
// beyond the batch makes it ask again. A peer's entry for a single-entry
// ticket the gate admitted itself is a conflict (two gates admitted it
// while they could not know of each other): the gate records a
// "ticket"/"ticket_conflict" event.

// Mark defaults.
const (
	// DefaultMarkInterval is how often the edge looks for new marks when
	// nothing prompts it.
	DefaultMarkInterval = time.Second
	// DefaultMarkRefresh is how long a connected gate goes without asking
	// HQ for the site's marks before it asks again, nothing being
	// outstanding: HQ pushes new marks once, and a push can be lost (a
	// replica killed between storing marks and pushing them, a gate whose
	// subscription missed it) while the gate stays connected.
	DefaultMarkRefresh = 30 * time.Second
)

// ReasonTicketConflict is the Reason of a proto.TypeTicket event: another
// gate admitted a single-entry ticket that this gate admitted too.
const ReasonTicketConflict = "ticket_conflict"

// MarkStore is the edge's ticket-mark store: *policy.Store implements it.
type MarkStore interface {
	// UsedMarks returns up to limit marks recorded after cursor since, and
	// the cursor to pass next time.
	UsedMarks(since uint64, limit int) ([]policy.UsedMark, uint64, error)
	// MergePeerMarks merges marks from other gates and reports what
	// changed and which of them conflict with this gate's own entries.
	MergePeerMarks(ctx context.Context, marks []policy.UsedMark) (policy.MergeResult, error)
}

// markLoop sends the edge's marks through the outbox and applies its
// peers'.
type markLoop struct {
	store      MarkStore
	ob         *Outbox
	pub        publisher
	up         func() bool // connected and subscribed
	events     func()      // wakes the event engine after a conflict event
	v          *signed.Verifier
	clk        clock.Clock
	log        *slog.Logger
	site       string
	device     string
	interval   time.Duration
	ackTimeout time.Duration
	skew       time.Duration
	kick       chan struct{} // capacity 1
	ask        *askBackoff   // the marks-get, first sent again after ackTimeout
	// deaf, when set, is told (and must not block) that deafAfter
	// marks-gets in a row went unanswered on one connection, or that
	// its marks went unacknowledged for deafAcks ack timeouts: the Edge
	// reconnects under another client ID (Edge.deaf).
	deaf       func(why string)
	unanswered unanswered // marks-gets asked again on this connection
	refresh    time.Duration
	fetched    atomic.Int64 // when the last marks-get went out, Unix ns
	// status, when set, asks for the device's status to be published
	// again (it must not block): at the statusAfter-th round that sent
	// the same first mark without an ack (unacked).
	status func()
	streak unackedStreak // the rounds that sent the same first mark, unacknowledged
}

// statusAfter is how many rounds in a row sending the same first mark
// without an ack make the markLoop have the status published again: HQ
// holds a gate's marks back until it knows the gate's doors, from a
// status it can have missed (every replica down or redeclaring its status
// queue when the gate connected), and the next one would come only after
// the status interval.
const statusAfter = 5

// nudge wakes the loop without blocking.
func (l *markLoop) nudge() { wake(l.kick) }

// routes implements feature: HQ's acks and the site's marks.
func (l *markLoop) routes() []route {
	return []route{
		{topic: proto.PeerMarksTopic(l.site, l.device), handle: l.onPeerMarks},
		{topic: proto.MarksAckTopic(l.site, l.device), handle: func(_ context.Context, topic string, payload []byte) { l.onAck(topic, payload) }},
	}
}

// connected implements feature: pending marks go out, and the site's
// marks are fetched from the cursor.
func (l *markLoop) connected(ctx context.Context) {
	l.unanswered.reset()
	l.streak.restart()
	l.nudge()
	l.fetch(ctx)
}

// notify implements feature: a mark may have been recorded.
func (l *markLoop) notify() { l.nudge() }

// run implements feature: it takes new marks into the outbox and publishes
// the pending ones when nudged, every ack timeout while any is pending and
// every interval, until ctx ends.
func (l *markLoop) run(ctx context.Context) {
	for {
		if _, err := l.ob.takeMarks(l.store); err != nil {
			l.log.Error("cannot take ticket marks into the outbox", "err", err)
		}
		pending, err := l.ob.PendingMarks(proto.MaxMarks)
		if err != nil {
			l.log.Error("cannot read pending ticket marks", "err", err)
		}
		if len(pending) > 0 && l.up() {
			b := proto.MarkBatch{Site: l.site, Device: l.device, Marks: pending}
			first, last := b.Range()
			if err := publishJSON(ctx, l.pub, proto.MarksTopic(l.site, l.device), b); err != nil && ctx.Err() == nil {
				l.log.Warn("cannot send ticket marks, will retry", "marks", len(pending), "err", err)
			} else {
				l.log.Debug("sent ticket marks", "first", first, "last", last)
				l.unacked(first)
			}
		}
		again := l.interval
		if len(pending) > 0 || err != nil {
			again = min(again, l.ackTimeout)
		}
		if l.up() {
			if wait := l.ask.reask(l.log, "the site's ticket marks", func() { l.askAgain(ctx) }); wait > 0 {
				again = min(again, wait)
			}
			if l.refreshDue() {
				l.fetch(ctx)
			}
		}
		if !waitRound(ctx, l.clk, l.kick, again) {
			return
		}
	}
}

// unacked counts a round that sent the pending marks from first. At the
// statusAfter-th round in a row from the same first mark it has the
// status published again (status), once: a status HQ missed is a single
// loss, and while HQ is away altogether 1,000 gates would publish 200
// statuses a second. Once the rounds have lasted deafAcks ack timeouts
// it tells deaf (and the new connection publishes the status anyway).
func (l *markLoop) unacked(first uint64) {
	rounds := l.streak.sent(first, l.clk.Now(), deafAcks*l.ackTimeout, l.deaf, "ticket marks from")
	if rounds == statusAfter && l.status != nil {
		l.log.Info("HQ has not acknowledged the ticket marks; publishing the status again (HQ takes a gate's marks only once it knows its doors)",
			"first", first, "sent", rounds)
		l.status()
	}
}

// onAck applies a marks-ack payload.
func (l *markLoop) onAck(topic string, payload []byte) {
	a, err := proto.DecodeMarksAck(payload)
	if err == nil {
		err = l.ob.AckMarks(a.First, a.Last)
	}
	if err != nil {
		l.log.Warn("cannot apply marks ack", "topic", topic, "err", err)
		return
	}
	l.log.Debug("ticket marks stored by HQ", "first", a.First, "last", a.Last)
	l.nudge() // more may be pending
}

// fetch asks HQ for the site's marks after the cursor.
func (l *markLoop) fetch(ctx context.Context) {
	cur, err := l.ob.PeerMarksCursor()
	l.ask.asked()
	l.fetched.Store(l.clk.Now().UnixNano())
	if err == nil {
		err = publishJSON(ctx, l.pub, proto.MarksGetTopic(l.site, l.device), proto.MarksGet{After: cur})
	}
	if err != nil && ctx.Err() == nil {
		l.log.Warn("cannot ask HQ for the site's ticket marks; will ask on the next connection or batch", "err", err)
	}
}

// refreshDue reports whether the gate should ask for the site's marks
// although nothing prompts it: no request is outstanding and none went
// out for refresh.
func (l *markLoop) refreshDue() bool {
	return l.refresh > 0 && !l.ask.outstanding() &&
		l.clk.Now().Sub(time.Unix(0, l.fetched.Load())) >= l.refresh
}

// askAgain asks for the marks again, HQ not having answered, and tells
// deaf when that happened deafAfter times on this connection.
func (l *markLoop) askAgain(ctx context.Context) {
	if l.unanswered.again(l.deaf, "the site's ticket marks") {
		l.fetch(ctx)
	}
}

// onPeerMarks verifies and applies a peer-marks message, then moves the
// cursor or asks for what is missing.
func (l *markLoop) onPeerMarks(ctx context.Context, topic string, envelope []byte) {
	p, err := proto.OpenPeerMarks(l.v, envelope)
	if err == nil && p.Site != l.site {
		err = fmt.Errorf("%w: marks of site %s, this is %s", proto.ErrWrongDevice, p.Site, l.site)
	}
	if err != nil {
		l.log.Warn("refused peer marks", "topic", topic, "err", err)
		return
	}
	if err := l.apply(ctx, p.Marks); err != nil {
		l.log.Error("cannot merge peer marks; will ask again", "after", p.After, "marks", len(p.Marks), "err", err)
		return
	}
	l.ask.answered()
	l.unanswered.reset()
	cur, err := l.ob.advancePeerCursor(p.After, p.Last())
	if err != nil {
		l.log.Error("cannot store the peer-marks cursor", "err", err)
		return
	}
	if p.Renumbered(cur) {
		// HQ's store numbers from scratch (a new store): start over.
		l.log.Warn("HQ's mark head is behind this gate's cursor; fetching the site's marks from the start", "head", p.Head, "cursor", cur)
		if cur, err = l.ob.resetPeerCursor(); err != nil {
			l.log.Error("cannot reset the peer-marks cursor", "err", err)
			return
		}
	}
	if p.After > cur || p.Head > cur {
		l.fetch(ctx)
	}
}

// apply merges peer marks, refusing those dated beyond the skew, and
// records an event for every conflict.
func (l *markLoop) apply(ctx context.Context, ms []proto.Mark) error {
	limit := l.clk.Now().Add(l.skew)
	keep := ms[:0:0]
	for _, m := range ms {
		if m.At.After(limit) {
			l.log.Warn("refused a peer mark dated in the future", "origin", m.Device, "door", m.Door, "at", m.At, "skew", l.skew)
			continue
		}
		keep = append(keep, m)
	}
	if len(keep) == 0 {
		return nil
	}
	res, err := l.store.MergePeerMarks(ctx, storeMarks(keep))
	if err != nil {
		return err
	}
	l.log.Debug("merged peer marks", "marks", len(keep), "changed", res.Changed, "conflicts", len(res.Conflicts))
	if len(res.Conflicts) == 0 {
		return nil
	}
	evs := make([]proto.Event, len(res.Conflicts))
	for i, c := range res.Conflicts {
		l.log.Warn("ticket admitted at two gates", "door", c.Here.Door, "at", c.Here.At, "peer_door", c.Peer.Door, "peer_at", c.Peer.At)
		evs[i] = conflictEvent(c)
	}
	if _, err := l.ob.AppendAll(evs); err != nil {
		return fmt.Errorf("record %d ticket conflicts: %w", len(evs), err)
	}
	l.events()
	return nil
}

// conflictEvent is the event of a conflict.
func conflictEvent(c policy.MarkConflict) proto.Event {
	return proto.Event{
		Time: c.Here.At, Type: proto.TypeTicket, Door: c.Here.Door, Reason: ReasonTicketConflict,
		Credential: hex.EncodeToString(c.Here.Ticket),
		Detail: fmt.Sprintf("admitted here at %s; also admitted at door %s at %s (event %s)",
			c.Here.At.UTC().Format(time.RFC3339Nano), c.Peer.Door, c.Peer.At.UTC().Format(time.RFC3339Nano), c.Peer.Event),
	}
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
