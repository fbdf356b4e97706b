package sync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/clock"
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

// Enrollment limits.
const (
	// MaxEnrollmentPayload bounds an enroll payload in bytes.
	MaxEnrollmentPayload = 64 << 10
	// enrollLeaf and enrollAckLeaf are the last topic levels.
	enrollLeaf    = "enroll"
	enrollAckLeaf = "enroll-ack"
)

// EnrollSubscription is the filter HQ subscribes to for enrollments.
const EnrollSubscription = TopicPrefix + "/+/+/" + enrollLeaf

// EnrollTopic returns the topic a device publishes enrollments to.
func EnrollTopic(site, device string) string {
	return deviceTopic(site, device, enrollLeaf)
}

// EnrollAckTopic returns the topic HQ acknowledges a device's enrollments
// on.
func EnrollAckTopic(site, device string) string {
	return deviceTopic(site, device, enrollAckLeaf)
}

// Enrollment is the payload of an enroll message.
type Enrollment struct {
	// Site and Device name the sender; they must match the topic.
	Site string `json:"site"`
	// Device is the sending device.
	Device string `json:"device"`
	// Seq is the device's enrollment sequence number (from 1, never
	// repeated; separate from the events' numbers).
	Seq uint64 `json:"seq"`
	// Record is the enrollment record: a JSON object, opaque to this
	// package (the JSON encoding of reader.EnrollmentRecord).
	Record json.RawMessage `json:"record"`
}

// DecodeEnrollment parses an enroll payload received on topic. The error
// wraps ErrMalformed.
func DecodeEnrollment(topic string, payload []byte) (Enrollment, error) {
	site, device, err := parseDeviceTopic(topic, enrollLeaf)
	if err != nil {
		return Enrollment{}, err
	}
	if len(payload) > MaxEnrollmentPayload {
		return Enrollment{}, fmt.Errorf("%w: enroll payload is %d bytes, max %d", ErrMalformed, len(payload), MaxEnrollmentPayload)
	}
	var e Enrollment
	if err := json.Unmarshal(payload, &e); err != nil {
		return Enrollment{}, fmt.Errorf("%w: enroll payload: %w", ErrMalformed, err)
	}
	switch {
	case e.Site != site || e.Device != device:
		return Enrollment{}, fmt.Errorf("%w: enrollment is from %s/%s but topic names %s/%s", ErrMalformed, e.Site, e.Device, site, device)
	case e.Seq == 0:
		return Enrollment{}, fmt.Errorf("%w: enrollment has seq 0", ErrMalformed)
	case len(bytes.TrimSpace(e.Record)) == 0 || bytes.TrimSpace(e.Record)[0] != '{':
		return Enrollment{}, fmt.Errorf("%w: enrollment seq %d has no record object", ErrMalformed, e.Seq)
	}
	return e, nil
}

// EnrollmentSink is where HQ puts the enrollments devices send: the admin
// CLI's registry stores them pending approval. StoreEnrollment must be
// idempotent for one (site, device, seq); HQ acknowledges the record only
// when it returns nil.
type EnrollmentSink interface {
	StoreEnrollment(ctx context.Context, e Enrollment) error
}

// EnrollmentSinkFunc adapts a function to EnrollmentSink.
type EnrollmentSinkFunc func(ctx context.Context, e Enrollment) error

// StoreEnrollment implements EnrollmentSink.
func (f EnrollmentSinkFunc) StoreEnrollment(ctx context.Context, e Enrollment) error {
	return f(ctx, e)
}

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
		return 0, fmt.Errorf("append enrollment to outbox %s: %w: record is not a JSON object", o.path, ErrInvalidEvent)
	}
	if len(rec) > MaxEnrollmentPayload/2 {
		return 0, fmt.Errorf("append enrollment to outbox %s: %w: record is %d bytes, max %d", o.path, ErrInvalidEvent, len(rec), MaxEnrollmentPayload/2)
	}
	var seq uint64
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		seq = seqOf(meta.Get(keyEnrollSeq)) + 1
		if err := tx.Bucket(bucketEnrollments).Put(seqKey(seq), bytes.Clone(rec)); err != nil {
			return err
		}
		return meta.Put(keyEnrollSeq, seqKey(seq))
	})
	if err != nil {
		return 0, fmt.Errorf("append enrollment to outbox %s: %w", o.path, err)
	}
	return seq, nil
}

// PendingEnrollments returns the enrollments HQ has not acknowledged yet,
// oldest first.
func (o *Outbox) PendingEnrollments() ([]Enrollment, error) {
	var out []Enrollment
	err := o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEnrollments).ForEach(func(k, v []byte) error {
			out = append(out, Enrollment{Seq: seqOf(k), Record: bytes.Clone(v)})
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
	err := o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEnrollments).Delete(seqKey(seq)) })
	if err != nil {
		return fmt.Errorf("ack enrollment %d in outbox %s: %w", seq, o.path, err)
	}
	return nil
}

// enrollLoop sends the outbox's enrollments to HQ and applies HQ's acks.
type enrollLoop struct {
	ob         *Outbox
	clk        clock.Clock
	log        *slog.Logger
	site       string
	device     string
	ackTimeout time.Duration
	kick       chan struct{} // capacity 1
}

// nudge wakes the loop without blocking.
func (l *enrollLoop) nudge() { wake(l.kick) }

// onAck applies an enroll-ack payload.
func (l *enrollLoop) onAck(topic string, payload []byte) {
	seq, err := DecodeAck(payload)
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

// run publishes every pending enrollment when nudged (connection, Notify)
// and again every ack timeout while any is pending, until ctx ends.
func (l *enrollLoop) run(ctx context.Context, pub publisher, connected func() bool) {
	topic := EnrollTopic(l.site, l.device)
	for {
		var fire <-chan time.Time
		pending, err := l.ob.PendingEnrollments()
		if err != nil {
			l.log.Error("cannot read enrollments", "err", err)
		}
		if len(pending) > 0 && connected() {
			for _, e := range pending {
				e.Site, e.Device = l.site, l.device
				b, err := json.Marshal(e)
				if err == nil {
					err = pub.publish(ctx, topic, b)
				}
				if err != nil {
					l.log.Warn("cannot send enrollment, will retry", "seq", e.Seq, "err", err)
					break
				}
			}
		}
		var t clock.Timer
		if len(pending) > 0 || err != nil {
			t = l.clk.NewTimer(l.ackTimeout)
			fire = t.C()
		}
		select {
		case <-ctx.Done():
		case <-l.kick:
		case <-fire:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// handleEnrollment stores one enrollment through the sink and acknowledges
// it.
func (h *HQ) handleEnrollment(ctx context.Context, pub func(ctx context.Context, topic string, payload []byte) error, topic string, payload []byte) {
	e, err := DecodeEnrollment(topic, payload)
	if err != nil {
		h.log.Warn("rejected enrollment message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	if err := h.enrollments.StoreEnrollment(ctx, e); err != nil {
		h.log.Error("cannot store enrollment; the device will send it again", "site", e.Site, "device", e.Device, "seq", e.Seq, "err", err)
		return
	}
	h.log.Info("enrollment received, pending approval", "site", e.Site, "device", e.Device, "seq", e.Seq)
	if err := pub(ctx, EnrollAckTopic(e.Site, e.Device), EncodeAck(e.Seq)); err != nil {
		h.log.Warn("cannot acknowledge enrollment; the device will send it again", "site", e.Site, "device", e.Device, "seq", e.Seq, "err", err)
	}
}
