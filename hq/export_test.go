package hq

import "context"

// Handle hands one message to h as Run would, answering through pub: for
// tests that play replicas splitting the intake between them.
func (h *Service) Handle(ctx context.Context, pub func(ctx context.Context, topic string, payload []byte) error, topic string, payload []byte) {
	h.dispatch(ctx, h.routes(), pub, topic, payload)
}

// WaitAcks returns once every device ack handed over has been published
// (or failed).
func (h *Service) WaitAcks() { h.acks.wait() }
