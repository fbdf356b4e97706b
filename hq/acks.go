package hq

import (
	"context"
	"log/slog"
	"sync"

	"github.com/tobira-ac/tobira/sync/proto"
)

// maxAckPublishers bounds how many device acks HQ publishes at once (each
// waits for its PUBACK); more devices to acknowledge wait in a queue.
const maxAckPublishers = 64

// ackSender publishes the acks of stored events to the devices apart from
// the handlers that stored them, so that a broker slow to PUBACK an ack
// never holds up HQ's intake: a handler returns (and its message is
// acknowledged to the broker or queue) once its events are committed.
//
// Per device it keeps at most one ack waiting and publishes at most one at
// a time, the newest first: an ack handed over while an older one waits
// replaces it, and one lower than an ack already handed over is dropped
// (acks are cumulative; the edge ignores a lower one anyway). A repeated
// ack is published again: it answers a device that sent a batch again
// because it missed the first. Memory: one small entry per device that
// HQ has acknowledged, and the queue holds each device at most once.
// Goroutines: at most maxAckPublishers, none when nothing is queued.
//
// An ack that cannot be published is logged and dropped: the device sends
// its batch again after its ack timeout, and HQ, holding it, acknowledges
// it again.
type ackSender struct {
	log *slog.Logger
	max int // most publishers at once

	mu      sync.Mutex
	devs    map[string]*ackDevice // by ack topic
	queue   []string              // ack topics with a waiting ack and no publisher, oldest first
	running int                   // publisher goroutines
	wg      sync.WaitGroup
}

// ackDevice is the state of one device's acks.
type ackDevice struct {
	high    uint64  // highest ack handed over so far
	waiting *ackReq // the ack to publish next; nil: none
	busy    bool    // a publisher is publishing this device's ack now
}

// ackReq is one ack to publish.
type ackReq struct {
	ctx context.Context // the handler's: ends with Run
	pub publishFunc
	seq uint64
}

// newAckSender returns an ackSender running at most max publishers.
func newAckSender(log *slog.Logger, max int) *ackSender {
	return &ackSender{log: log, max: max, devs: map[string]*ackDevice{}}
}

// send hands over ack seq for topic, to be published through pub. It never
// blocks on the broker.
func (s *ackSender) send(ctx context.Context, pub publishFunc, topic string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devs[topic]
	if d == nil {
		d = &ackDevice{}
		s.devs[topic] = d
	}
	if seq < d.high {
		s.log.Debug("older ack not sent", "topic", topic, "seq", seq, "newer", d.high)
		return
	}
	d.high = seq
	if d.waiting == nil && !d.busy {
		s.queue = append(s.queue, topic)
	}
	d.waiting = &ackReq{ctx: ctx, pub: pub, seq: seq}
	if s.running < s.max && len(s.queue) > 0 {
		s.running++
		s.wg.Add(1)
		go s.publisher()
	}
}

// publisher publishes queued acks until the queue is empty.
func (s *ackSender) publisher() {
	defer s.wg.Done()
	for {
		topic, r, ok := s.next()
		if !ok {
			return
		}
		s.publish(topic, r)
		s.mu.Lock()
		d := s.devs[topic]
		d.busy = false
		if d.waiting != nil {
			s.queue = append(s.queue, topic)
		}
		s.mu.Unlock()
	}
}

// next takes the oldest queued device and its waiting ack, marking the
// device busy; ok is false (and the publisher counted out) when the queue
// is empty.
func (s *ackSender) next() (topic string, r *ackReq, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		s.running--
		return "", nil, false
	}
	topic = s.queue[0]
	s.queue[0] = ""
	s.queue = s.queue[1:]
	d := s.devs[topic]
	r, d.waiting, d.busy = d.waiting, nil, true
	return topic, r, true
}

// publish publishes one ack and logs a failure.
func (s *ackSender) publish(topic string, r *ackReq) {
	if r.ctx.Err() != nil {
		s.log.Debug("ack not sent: HQ is stopping; the device will send again", "topic", topic, "seq", r.seq)
		return
	}
	if err := r.pub(r.ctx, topic, proto.EncodeAck(r.seq)); err != nil {
		s.log.Warn("cannot publish ack; the device will send again", "topic", topic, "seq", r.seq, "err", err)
	}
}

// wait returns once no ack is being published or waits to be.
func (s *ackSender) wait() { s.wg.Wait() }
