package hq

import "context"

// Handle hands one message to h as Run would, answering through pub: for
// tests that play replicas splitting the intake between them.
func (h *Service) Handle(ctx context.Context, pub func(ctx context.Context, topic string, payload []byte) error, topic string, payload []byte) {
	h.dispatch(ctx, h.routes(), pub, topic, payload)
}
