package sync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Enrollment intake: a device in enroll mode produces enrollment records
// (the card's certificate, a challenge and the card's signature over it).
// They travel on their own durable channel, never in the event stream,
// because the certificate's notAfter hints at the holder's birthday:
//
//	tobira/v1/{site}/{device}/enroll      edge -> HQ, QoS 1: Enrollment (JSON)
//	tobira/v1/{site}/{device}/enroll-ack  HQ -> edge, QoS 1: {"seq":N}
//
// The edge keeps each record in its outbox file (bucket "enrollments")
// until HQ acknowledges that very sequence number (acks are per record,
// not cumulative), and sends every unacknowledged record again after each
// (re)connection and every ack timeout. HQ stores a record once per
// (site, device, seq) and acknowledges it again when it comes twice.

// Outbox layout for enrollments:
//
//	enrollments/<seq>   = the record (opaque JSON), keyed by 8-byte seq
//	meta/enroll_seq     = the last enrollment sequence number assigned
var (
	bucketEnrollments = []byte("enrollments")
	keyEnrollSeq      = []byte("enroll_seq")
)

// AppendEnrollment stores an enrollment record durably (fsynced before it
// returns) for delivery to HQ and returns its sequence number. record must
// be a JSON object of at most half of MaxEnrollmentPayload: the JSON of
// reader.EnrollmentRecord. Call Edge.Notify afterwards to send it soon.
func (o *Outbox) AppendEnrollment(record []byte) (uint64, error) {
	rec := bytes.TrimSpace(record)
	if len(rec) == 0 || rec[0] != '{' || !json.Valid(rec) {
		return 0, fmt.Errorf("append enrollment to outbox %s: %w: record is not a JSON object", o.path, proto.ErrInvalidEvent)
	}
	if len(rec) > proto.MaxEnrollmentPayload/2 {
		return 0, fmt.Errorf("append enrollment to outbox %s: %w: record is %d bytes, max %d", o.path, proto.ErrInvalidEvent, len(rec), proto.MaxEnrollmentPayload/2)
	}
	var seq uint64
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(boltfile.MetaBucket)
		seq = boltfile.SeqOf(meta.Get(keyEnrollSeq)) + 1
		if err := tx.Bucket(bucketEnrollments).Put(boltfile.SeqKey(seq), bytes.Clone(rec)); err != nil {
			return err
		}
		return meta.Put(keyEnrollSeq, boltfile.SeqKey(seq))
	})
	if err != nil {
		return 0, fmt.Errorf("append enrollment to outbox %s: %w", o.path, err)
	}
	return seq, nil
}

// PendingEnrollments returns the enrollments HQ has not acknowledged yet,
// oldest first.
func (o *Outbox) PendingEnrollments() ([]proto.Enrollment, error) {
	var out []proto.Enrollment
	err := o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEnrollments).ForEach(func(k, v []byte) error {
			out = append(out, proto.Enrollment{Seq: boltfile.SeqOf(k), Record: bytes.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read enrollments of outbox %s: %w", o.path, err)
	}
	return out, nil
}

// AckEnrollment deletes the enrollment seq (HQ stored it). An unknown seq
// deletes nothing and is not an error.
func (o *Outbox) AckEnrollment(seq uint64) error {
	err := o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEnrollments).Delete(boltfile.SeqKey(seq)) })
	if err != nil {
		return fmt.Errorf("ack enrollment %d in outbox %s: %w", seq, o.path, err)
	}
	return nil
}

// enrollLoop sends the outbox's enrollments to HQ and applies HQ's acks.
type enrollLoop struct {
	ob         *Outbox
	pub        publisher
	up         func() bool // connected and subscribed
	clk        clock.Clock
	log        *slog.Logger
	site       string
	device     string
	ackTimeout time.Duration
	kick       chan struct{} // capacity 1
	// deaf, when set, is told (and must not block) that the first
	// pending enrollment went unacknowledged for deafAcks ack timeouts
	// on one connection: the Edge reconnects under another client ID.
	deaf   func(why string)
	streak unackedStreak
}

// nudge wakes the loop without blocking.
func (l *enrollLoop) nudge() { wake(l.kick) }

// routes implements feature: HQ's per-record acks.
func (l *enrollLoop) routes() []route {
	return []route{{topic: proto.EnrollAckTopic(l.site, l.device), handle: func(_ context.Context, topic string, payload []byte) {
		l.onAck(topic, payload)
	}}}
}

// connected implements feature: everything pending is sent again.
func (l *enrollLoop) connected(context.Context) {
	l.streak.restart()
	l.nudge()
}

// notify implements feature: an enrollment may have been appended.
func (l *enrollLoop) notify() { l.nudge() }

// onAck applies an enroll-ack payload.
func (l *enrollLoop) onAck(topic string, payload []byte) {
	seq, err := proto.DecodeAck(payload)
	if err != nil {
		l.log.Warn("rejected enrollment ack", "topic", topic, "err", err)
		return
	}
	if err := l.ob.AckEnrollment(seq); err != nil {
		l.log.Error("cannot apply enrollment ack", "topic", topic, "seq", seq, "err", err)
		return
	}
	l.log.Info("enrollment stored by HQ", "seq", seq)
}

// run implements feature: it publishes every pending enrollment when
// nudged (connection, Notify) and again every ack timeout while any is
// pending, until ctx ends.
func (l *enrollLoop) run(ctx context.Context) {
	for {
		pending, err := l.ob.PendingEnrollments()
		if err != nil {
			l.log.Error("cannot read enrollments", "err", err)
		}
		if len(pending) > 0 && l.up() && l.send(ctx, pending) {
			l.unacked(pending[0].Seq)
		}
		var again time.Duration // 0: only when nudged
		if len(pending) > 0 || err != nil {
			again = l.ackTimeout
		}
		if !waitRound(ctx, l.clk, l.kick, again) {
			return
		}
	}
}

// send publishes pending, oldest first, until one fails; it reports
// whether all went out.
func (l *enrollLoop) send(ctx context.Context, pending []proto.Enrollment) bool {
	topic := proto.EnrollTopic(l.site, l.device)
	for _, e := range pending {
		e.Site, e.Device = l.site, l.device
		if err := publishJSON(ctx, l.pub, topic, e); err != nil {
			l.log.Warn("cannot send enrollment, will retry", "seq", e.Seq, "err", err)
			return false
		}
	}
	return true
}

// unacked counts a round that sent the pending enrollments from first
// and tells deaf once such rounds have lasted deafAcks ack timeouts.
func (l *enrollLoop) unacked(first uint64) {
	l.streak.sent(first, l.clk.Now(), deafAcks*l.ackTimeout, l.deaf, "enrollment")
}
