package sync

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// flight is a batch published and not yet acknowledged by HQ.
type flight struct {
	first, last uint64
	sent        time.Time
}

// engine is the edge's sending loop, apart from paho so that its timing can
// be tested with a fake clock. Paho callbacks feed it through onConnect,
// onConnectionLost and onAck, which never block.
type engine struct {
	ob         *Outbox
	pub        publisher
	clk        clock.Clock
	log        *slog.Logger
	site       string
	device     string
	topic      string
	batch      int
	window     int
	ackTimeout time.Duration
	retryDelay time.Duration

	kick  chan struct{} // capacity 1: something changed, look again
	ackIn atomic.Uint64 // highest plausible ack received from HQ
	acked atomic.Uint64 // highest ack applied to the outbox
	gen   atomic.Uint64 // bumped on every (re)connection
	up    atomic.Bool   // connected and subscribed

	drainMu sync.Mutex
	drainCh chan struct{} // closed and replaced whenever acked moves

	// stuck, when set, is told (and must not block) how many ack
	// timeouts in a row there were, at every resubscribeAfter-th while
	// connected: the broker may have dropped the device's subscription
	// without closing its connection (a RabbitMQ node holding the
	// device's subscription queue died). The Edge subscribes again, and
	// when that did not help, reconnects under another client ID.
	stuck func(timeouts int)

	idle func() // test hook: called each time the loop is about to wait
}

// resubscribeAfter is how many ack timeouts in a row, while connected,
// make the engine tell stuck: the connection publishes, but no ack comes.
const resubscribeAfter = 2

// newEngine returns an engine that starts from what ob says was acked.
func newEngine(ob *Outbox, site, device string) (*engine, error) {
	acked, err := ob.acked()
	if err != nil {
		return nil, err
	}
	e := &engine{
		ob:      ob,
		site:    site,
		device:  device,
		topic:   proto.EventsTopic(site, device),
		kick:    make(chan struct{}, 1),
		drainCh: make(chan struct{}),
	}
	e.acked.Store(acked)
	e.ackIn.Store(acked)
	return e, nil
}

// routes implements feature: HQ's acks of the events.
func (e *engine) routes() []route {
	return []route{{topic: proto.AckTopic(e.site, e.device), handle: func(_ context.Context, topic string, payload []byte) {
		e.onAck(topic, payload)
	}}}
}

// connected implements feature.
func (e *engine) connected(context.Context) { e.onConnect() }

// notify implements feature: an event was appended; it wakes the loop
// without blocking.
func (e *engine) notify() { wake(e.kick) }

// wake sends on kick, a channel of capacity 1 that a loop waits on, unless
// a wake-up is already pending there. It never blocks.
func wake(kick chan<- struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}

// waitRound waits for a loop's next round: until ctx ends, a wake-up
// arrives on kick, or d passes on clk (d <= 0: no time limit). It reports whether ctx is still
// live.
func waitRound(ctx context.Context, clk clock.Clock, kick <-chan struct{}, d time.Duration) bool {
	var fire <-chan time.Time // d <= 0: no timer
	if d > 0 {
		t := clk.NewTimer(d)
		defer t.Stop()
		fire = t.C()
	}
	select {
	case <-ctx.Done():
	case <-kick:
	case <-fire:
	}
	return ctx.Err() == nil
}

// onConnect records a new connection: everything unacknowledged is sent
// again, because messages in flight on the old connection may be lost.
func (e *engine) onConnect() {
	e.gen.Add(1)
	e.up.Store(true)
	e.notify()
}

// onConnectionLost stops publishing until the next onConnect.
func (e *engine) onConnectionLost() {
	e.up.Store(false)
	e.notify()
}

// onAck takes an ack payload from HQ. A malformed ack, or one for a sequence
// number the outbox never assigned, is logged and dropped.
func (e *engine) onAck(topic string, payload []byte) {
	seq, err := proto.DecodeAck(payload)
	if err != nil {
		e.log.Warn("rejected ack", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	last, err := e.ob.LastSeq()
	if err != nil {
		e.log.Error("cannot check ack", "topic", topic, "seq", seq, "err", err)
		return
	}
	if seq > last {
		e.log.Warn("rejected ack", "topic", topic, "seq", seq, "last_seq", last,
			"err", fmt.Errorf("%w: seq %d, last assigned %d", ErrAckAhead, seq, last))
		return
	}
	for {
		cur := e.ackIn.Load()
		if seq <= cur {
			return // old news: acks are cumulative
		}
		if e.ackIn.CompareAndSwap(cur, seq) {
			break
		}
	}
	e.notify()
}

// drained returns a channel closed the next time acked moves.
func (e *engine) drained() <-chan struct{} {
	e.drainMu.Lock()
	defer e.drainMu.Unlock()
	return e.drainCh
}

// signalDrained wakes every drained waiter.
func (e *engine) signalDrained() {
	e.drainMu.Lock()
	defer e.drainMu.Unlock()
	close(e.drainCh)
	e.drainCh = make(chan struct{})
}

// waitDrained returns when the outbox is empty or ctx ends.
func (e *engine) waitDrained(ctx context.Context) error {
	for {
		ch := e.drained()
		n, err := e.ob.Depth()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d events in outbox %s to be acknowledged: %w", n, e.ob.Path(), ctx.Err())
		}
	}
}

// loopState is what the loop knows between rounds.
type loopState struct {
	gen      uint64    // connection generation last seen
	next     uint64    // highest seq published on this connection
	inflight []flight  // published, not yet acknowledged, oldest first
	retryAt  time.Time // after a failure: do not publish before this
	timeouts int       // ack timeouts in a row, since the last ack that moved
}

// maxAckBackoff caps how far consecutive ack timeouts stretch the wait:
// at most maxAckBackoff times the configured ack timeout.
const maxAckBackoff = 4

// ackWait returns how long to wait for HQ's ack of the oldest batch after
// timeouts ack timeouts in a row: the ack timeout, doubled for each, at
// most maxAckBackoff times it. A device whose HQ is overloaded then sends
// its backlog again less and less often instead of adding copies for HQ
// to discard every ack timeout.
func (e *engine) ackWait(timeouts int) time.Duration {
	d := e.ackTimeout
	for i := 0; i < timeouts && d < maxAckBackoff*e.ackTimeout; i++ {
		d *= 2
	}
	return min(d, maxAckBackoff*e.ackTimeout)
}

// run implements feature: it publishes pending events in order, at most
// window batches ahead of HQ's acknowledgement, until ctx ends. It re-sends
// from the last ack after a reconnection or when the oldest batch waits
// longer than ackTimeout, which doubles with each timeout in a row (see
// ackWait) until an ack moves.
func (e *engine) run(ctx context.Context) {
	st := loopState{next: e.acked.Load()}
	for ctx.Err() == nil {
		now := e.clk.Now()
		if err := e.applyAck(&st); err != nil {
			e.log.Error("cannot apply ack", "err", err)
			st.retryAt = now.Add(e.retryDelay)
		}
		if g := e.gen.Load(); g != st.gen {
			st.gen = g
			e.rewind(&st, "connected")
		}
		if wait := e.ackWait(st.timeouts); len(st.inflight) > 0 && !now.Before(st.inflight[0].sent.Add(wait)) {
			st.timeouts++
			e.log.Warn("no ack from HQ in time, sending again", "topic", e.topic,
				"first_seq", st.inflight[0].first, "timeout", wait, "timeouts_in_a_row", st.timeouts, "next_timeout", e.ackWait(st.timeouts))
			e.rewind(&st, "ack timeout")
			if st.timeouts%resubscribeAfter == 0 && e.up.Load() && e.stuck != nil {
				e.stuck(st.timeouts)
			}
		}
		if e.up.Load() && !now.Before(st.retryAt) {
			if err := e.fill(ctx, &st); err != nil {
				if ctx.Err() != nil {
					break
				}
				e.log.Warn("cannot send events, will retry", "topic", e.topic, "after_seq", st.next,
					"retry_in", e.retryDelay, "err", err)
				st.retryAt = e.clk.Now().Add(e.retryDelay)
			}
		}
		e.wait(ctx, &st)
	}
}

// rewind forgets what is in flight so that the next fill starts again right
// after the last ack.
func (e *engine) rewind(st *loopState, why string) {
	if len(st.inflight) > 0 || st.next > e.acked.Load() {
		e.log.Info("re-sending unacknowledged events", "topic", e.topic, "from_seq", e.acked.Load()+1, "why", why)
	}
	st.inflight = nil
	st.next = e.acked.Load()
	st.retryAt = time.Time{}
}

// applyAck deletes what HQ acknowledged from the outbox and drops the
// batches it covers from the window.
func (e *engine) applyAck(st *loopState) error {
	a := e.ackIn.Load()
	if a <= e.acked.Load() {
		return nil
	}
	n, err := e.ob.Ack(a)
	if err != nil {
		return err
	}
	e.acked.Store(a)
	e.log.Debug("acknowledged by HQ", "topic", e.topic, "seq", a, "removed", n)
	i := 0
	for i < len(st.inflight) && st.inflight[i].last <= a {
		i++
	}
	st.inflight = st.inflight[i:]
	st.next = max(st.next, a)
	st.timeouts = 0 // HQ is answering: back to the configured ack timeout
	e.signalDrained()
	return nil
}

// fill publishes batches until the window is full or the outbox has nothing
// more.
func (e *engine) fill(ctx context.Context, st *loopState) error {
	for len(st.inflight) < e.window {
		first, raws, err := e.ob.pendingRaw(st.next, e.batch)
		if err != nil {
			return err
		}
		if len(raws) == 0 {
			return nil
		}
		payload, n, err := proto.EncodeBatch(e.site, e.device, first, raws)
		if err != nil {
			return err
		}
		last := first + uint64(n) - 1
		if err := e.pub.publish(ctx, e.topic, payload); err != nil {
			return fmt.Errorf("publish %d events seq %d..%d to %s: %w", n, first, last, e.topic, err)
		}
		e.log.Debug("sent events", "topic", e.topic, "first_seq", first, "last_seq", last, "bytes", len(payload))
		st.inflight = append(st.inflight, flight{first: first, last: last, sent: e.clk.Now()})
		st.next = last
	}
	return nil
}

// wait blocks until something changes, the ack timeout of the oldest batch
// or the retry time comes, or ctx ends.
func (e *engine) wait(ctx context.Context, st *loopState) {
	var due time.Time
	if len(st.inflight) > 0 {
		due = st.inflight[0].sent.Add(e.ackWait(st.timeouts))
	}
	if now := e.clk.Now(); st.retryAt.After(now) && (due.IsZero() || st.retryAt.Before(due)) {
		due = st.retryAt
	}
	var fire <-chan time.Time
	if !due.IsZero() {
		t := e.clk.NewTimer(due.Sub(e.clk.Now()))
		defer t.Stop()
		fire = t.C()
	}
	if e.idle != nil {
		e.idle()
	}
	select {
	case <-ctx.Done():
	case <-e.kick:
	case <-fire:
	}
}
