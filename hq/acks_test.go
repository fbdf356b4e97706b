package hq_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// heldAcks is a publish whose PUBACK never comes until the test releases
// it: each publish reports itself on entered and waits for release.
type heldAcks struct {
	entered chan string
	release chan struct{}

	mu   sync.Mutex
	sent map[string][]uint64 // ack topic -> acks published, in order
}

func (p *heldAcks) publish(_ context.Context, topic string, payload []byte) error {
	seq, err := proto.DecodeAck(payload)
	if err != nil {
		return err
	}
	p.entered <- fmt.Sprint(topic, " ", seq)
	<-p.release
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent[topic] = append(p.sent[topic], seq)
	return nil
}

// TestHQIntakeDoesNotWaitForAckPUBACK: the events handler returns once the
// events are committed, while the broker holds the PUBACK of the device's
// ack. (Before, the handler waited for it: this test then hangs until go
// test's -timeout.)
func TestHQIntakeDoesNotWaitForAckPUBACK(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		p := &heldAcks{entered: make(chan string, 100), release: make(chan struct{}), sent: map[string][]uint64{}}
		ack1, ack2 := proto.AckTopic("s1", "d1"), proto.AckTopic("s1", "d2")
		handle := func(device string, first, last int) {
			h.Handle(t.Context(), p.publish, proto.EventsTopic("s1", device), prototest.BatchPayload(t, "s1", device, first, last))
		}
		handle("d1", 1, 2) // its ack (2) is published and held
		if got := <-p.entered; got != fmt.Sprint(ack1, " 2") {
			t.Fatalf("first ack published: %q, want %q", got, fmt.Sprint(ack1, " 2"))
		}
		handle("d1", 3, 4) // ack 4 waits behind it
		handle("d1", 1, 2) // a duplicate: ack 4 again, still waiting
		handle("d2", 1, 1) // another device's ack is not held up by d1's
		if got := <-p.entered; got != fmt.Sprint(ack2, " 1") {
			t.Fatalf("while d1's ack is held, published %q, want %q", got, fmt.Sprint(ack2, " 1"))
		}
		for dev, want := range map[string]uint64{"d1": 4, "d2": 1} {
			if got, err := h.Acked("s1", dev); err != nil || got != want {
				t.Fatalf("stored for %s up to %d (%v) while acks are held, want %d", dev, got, err, want)
			}
		}
		close(p.release)
		h.WaitAcks()
		if got := p.sent[ack1]; !slices.Equal(got, []uint64{2, 4}) {
			t.Fatalf("acks published to d1: %v, want [2 4] (newest replaces the waiting one, in order)", got)
		}
		if got := p.sent[ack2]; !slices.Equal(got, []uint64{1}) {
			t.Fatalf("acks published to d2: %v, want [1]", got)
		}
	})
}
