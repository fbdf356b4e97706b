package hq

import (
	"context"

	"github.com/tobira-ac/tobira/sync/proto"
)

// EnrollmentSink is where HQ puts the enrollments devices send: the admin
// CLI's registry stores them pending approval. StoreEnrollment must be
// idempotent for one (site, device, seq); HQ acknowledges the record only
// when it returns nil.
type EnrollmentSink interface {
	StoreEnrollment(ctx context.Context, e proto.Enrollment) error
}

// EnrollmentSinkFunc adapts a function to EnrollmentSink.
type EnrollmentSinkFunc func(ctx context.Context, e proto.Enrollment) error

// StoreEnrollment implements EnrollmentSink.
func (f EnrollmentSinkFunc) StoreEnrollment(ctx context.Context, e proto.Enrollment) error {
	return f(ctx, e)
}

// handleEnrollment stores one enrollment through the sink and acknowledges
// it.
func (h *Service) handleEnrollment(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	e, err := proto.DecodeEnrollment(topic, payload)
	if err != nil {
		h.log.Warn("rejected enrollment message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	if err := h.enrollments.StoreEnrollment(ctx, e); err != nil {
		h.log.Error("cannot store enrollment; the device will send it again", "site", e.Site, "device", e.Device, "seq", e.Seq, "err", err)
		return
	}
	h.log.Info("enrollment received, pending approval", "site", e.Site, "device", e.Device, "seq", e.Seq)
	if err := pub(ctx, proto.EnrollAckTopic(e.Site, e.Device), proto.EncodeAck(e.Seq)); err != nil {
		h.log.Warn("cannot acknowledge enrollment; the device will send it again", "site", e.Site, "device", e.Device, "seq", e.Seq, "err", err)
	}
}
