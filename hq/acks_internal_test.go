package hq

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/tobira-ac/tobira/sync/proto"
)

// gatedPub is a publishFunc that reports each publish on entered and
// returns only once release is closed.
type gatedPub struct {
	entered chan string
	release chan struct{}

	mu   sync.Mutex
	sent []string // "topic seq" per publish, in order
}

func newGatedPub() *gatedPub {
	return &gatedPub{entered: make(chan string, 100), release: make(chan struct{})}
}

func (p *gatedPub) publish(_ context.Context, topic string, payload []byte) error {
	seq, err := proto.DecodeAck(payload)
	if err != nil {
		return err
	}
	s := fmt.Sprint(topic, " ", seq)
	p.entered <- s
	<-p.release
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = append(p.sent, s)
	return nil
}

func TestAckSenderKeepsOneDeviceInOrder(t *testing.T) {
	topic := proto.AckTopic("s1", "d1")
	tests := []struct {
		name  string
		first uint64   // published first; its PUBACK is held
		then  []uint64 // handed over while it is held
		want  []uint64 // published, in order
	}{
		{"newest replaces the waiting ack", 2, []uint64{3, 5}, []uint64{2, 5}},
		{"a lower ack is dropped", 5, []uint64{3}, []uint64{5}},
		{"a lower ack after a waiting one is dropped", 5, []uint64{7, 6}, []uint64{5, 7}},
		{"a repeated ack is sent again", 5, []uint64{5}, []uint64{5, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newAckSender(slog.New(slog.DiscardHandler), 4)
			p := newGatedPub()
			s.send(t.Context(), p.publish, topic, tt.first)
			if got, want := <-p.entered, fmt.Sprint(topic, " ", tt.first); got != want {
				t.Fatalf("first publish %q, want %q", got, want)
			}
			for _, seq := range tt.then {
				s.send(t.Context(), p.publish, topic, seq) // must not block
			}
			close(p.release)
			s.wait()
			var want []string
			for _, seq := range tt.want {
				want = append(want, fmt.Sprint(topic, " ", seq))
			}
			if !slices.Equal(p.sent, want) {
				t.Fatalf("published %q, want %q", p.sent, want)
			}
		})
	}
}

func TestAckSenderBoundsPublishers(t *testing.T) {
	const max = 3
	s := newAckSender(slog.New(slog.DiscardHandler), max)
	p := newGatedPub()
	for i := range 10 {
		s.send(t.Context(), p.publish, proto.AckTopic("s1", fmt.Sprint("d", i)), 1)
	}
	for range max {
		<-p.entered
	}
	s.mu.Lock()
	running, queued := s.running, len(s.queue)
	s.mu.Unlock()
	if running != max || queued != 10-max {
		t.Fatalf("%d publishers, %d queued; want %d, %d", running, queued, max, 10-max)
	}
	close(p.release)
	s.wait()
	if len(p.sent) != 10 || s.running != 0 {
		t.Fatalf("published %d acks, %d publishers left; want 10, 0", len(p.sent), s.running)
	}
}
