package sync

// White-box tests of the edge's sending loop: a fake publisher and a fake
// clock instead of paho, so that windows, ack timeouts and retries are
// checked step by step without waiting.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// fakePublisher records published batches and fails while fail > 0.
type fakePublisher struct {
	mu   sync.Mutex
	sent []string // "first..last" per publish
	fail int
}

func (p *fakePublisher) publish(_ context.Context, topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return errors.New("broker unreachable")
	}
	b, err := proto.DecodeBatch(payload)
	if err != nil {
		return fmt.Errorf("engine published a malformed batch: %w", err)
	}
	if topic != proto.EventsTopic(b.Site, b.Device) {
		return fmt.Errorf("batch of %s/%s published to %s", b.Site, b.Device, topic)
	}
	p.sent = append(p.sent, fmt.Sprintf("%d..%d", b.Events[0].Seq, b.Events[len(b.Events)-1].Seq))
	return nil
}

// take returns and forgets what was published since the last take.
func (p *fakePublisher) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := strings.Join(p.sent, " ")
	p.sent = nil
	return s
}

// harness runs an engine in lock step with the test: the engine pauses each
// time it is about to wait, and step lets it handle what is pending.
type harness struct {
	t      *testing.T
	e      *engine
	ob     *Outbox
	pub    *fakePublisher
	clk    *clocktest.Fake
	logs   *bytes.Buffer
	paused chan struct{}
	resume chan struct{}
}

// testEngineEvent returns a valid event number i.
func testEngineEvent(i int) proto.Event {
	return proto.Event{Time: time.Date(2026, 4, 1, 9, 0, i, 0, time.UTC), Type: proto.TypeDoor, Door: "d", Reason: "opened"}
}

// newHarness makes an engine over a fresh outbox holding n events.
func newHarness(t *testing.T, n, batch, window int) *harness {
	t.Helper()
	ob, err := OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	h := &harness{t: t, ob: ob, pub: &fakePublisher{}, logs: new(bytes.Buffer),
		clk:    clocktest.New(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)),
		paused: make(chan struct{}), resume: make(chan struct{})}
	h.add(n)
	e, err := newEngine(ob, "s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	e.pub, e.clk = h.pub, h.clk
	e.log = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.batch, e.window = batch, window
	e.ackTimeout, e.retryDelay = 10*time.Second, time.Second
	e.idle = func() {
		h.paused <- struct{}{}
		<-h.resume
	}
	h.e = e
	return h
}

// connectedHarness starts an engine over 3 events in batches of 10 and
// connects it, which publishes them.
func connectedHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, 3, 10, 4)
	h.start()
	h.e.onConnect()
	h.step()
	h.expect("connected", "1..3")
	return h
}

// start runs the engine until the test ends and waits for its first pause.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.e.run(ctx); close(done) }()
	h.t.Cleanup(func() {
		cancel()
		// Release the engine from its pause; it sees ctx and returns.
		for {
			select {
			case h.resume <- struct{}{}:
			case <-h.paused:
			case <-done:
				return
			}
		}
	})
	<-h.paused
}

// step lets the paused engine handle what is pending and waits until it
// pauses again. Something must be pending (a kick or a due timer).
func (h *harness) step() {
	h.resume <- struct{}{}
	<-h.paused
}

// add appends n events.
func (h *harness) add(n int) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		if _, err := h.ob.Append(testEngineEvent(i)); err != nil {
			h.t.Fatal(err)
		}
	}
}

// ack delivers HQ's ack for seq.
func (h *harness) ack(seq uint64) { h.e.onAck(proto.AckTopic("s1", "d1"), proto.EncodeAck(seq)) }

// expect checks what was published since the last check.
func (h *harness) expect(what, want string) {
	h.t.Helper()
	if got := h.pub.take(); got != want {
		h.t.Fatalf("%s: published %q, want %q\nlogs:\n%s", what, got, want, h.logs)
	}
}

// depth returns the outbox depth.
func (h *harness) depth() int {
	h.t.Helper()
	n, err := h.ob.Depth()
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func TestEngineKeepsWindowAndOrder(t *testing.T) {
	h := newHarness(t, 9, 2, 2)
	h.start()
	h.expect("before connecting", "")

	h.e.onConnect()
	h.step()
	h.expect("connected", "1..2 3..4") // window of 2 batches, no more

	h.ack(2)
	h.step()
	h.expect("ack 2", "5..6")
	if h.depth() != 7 || h.e.acked.Load() != 2 {
		t.Fatalf("after ack 2: depth %d, acked %d; want 7, 2", h.depth(), h.e.acked.Load())
	}

	h.ack(6) // cumulative: covers two batches
	h.step()
	h.expect("ack 6", "7..8 9..9")

	h.ack(9)
	h.step()
	h.expect("ack 9", "")
	if h.depth() != 0 || h.e.acked.Load() != 9 {
		t.Fatalf("after ack 9: depth %d, acked %d; want 0, 9", h.depth(), h.e.acked.Load())
	}
	if err := h.e.waitDrained(t.Context()); err != nil {
		t.Fatalf("waitDrained on an empty outbox: %v", err)
	}

	h.add(1)
	h.e.notify()
	h.step()
	h.expect("new event after draining", "10..10")
}

func TestEngineResendsAfterAckTimeout(t *testing.T) {
	h := connectedHarness(t)
	if h.clk.Pending() != 1 {
		t.Fatalf("%d timers armed, want the ack timeout", h.clk.Pending())
	}

	h.clk.Advance(h.e.ackTimeout - time.Millisecond)
	h.ack(1) // a partial ack does not end the wait for the batch
	h.step()
	h.expect("partial ack before the timeout", "")

	h.clk.Advance(time.Millisecond)
	h.step()
	h.expect("ack timeout", "2..3") // everything unacknowledged, from the last ack
	if !strings.Contains(h.logs.String(), "no ack from HQ in time") {
		t.Fatalf("no log line for the timeout:\n%s", h.logs)
	}
}

func TestEngineAckWaitBacksOff(t *testing.T) {
	tests := []struct {
		timeouts int
		want     time.Duration // with a 10 s ack timeout
	}{
		{0, 10 * time.Second},
		{1, 20 * time.Second},
		{2, 40 * time.Second},
		{3, 40 * time.Second}, // capped at maxAckBackoff times the ack timeout
		{100, 40 * time.Second},
	}
	h := newHarness(t, 0, 10, 4)
	for _, tt := range tests {
		if got := h.e.ackWait(tt.timeouts); got != tt.want {
			t.Errorf("ackWait(%d) = %v, want %v", tt.timeouts, got, tt.want)
		}
	}
}

func TestEngineBacksOffOnRepeatedAckTimeouts(t *testing.T) {
	h := connectedHarness(t)
	steps := []struct {
		what    string
		advance time.Duration // then a step
		ack     uint64        // delivered before the step; 0: none
		want    string        // published
	}{
		{"first timeout (10 s)", 10 * time.Second, 0, "1..3"},
		{"not yet: the wait doubled", 20*time.Second - time.Millisecond, 0, ""},
		{"second timeout (20 s)", time.Millisecond, 0, "1..3"},
		{"not yet: doubled again", 40*time.Second - time.Millisecond, 0, ""},
		{"third timeout (40 s)", time.Millisecond, 0, "1..3"},
		{"capped: fourth timeout after 40 s again", 40 * time.Second, 0, "1..3"},
		{"an ack resets the wait", 0, 1, ""},
		{"not yet: events are still unacknowledged", 10*time.Second - time.Millisecond, 0, ""},
		{"back to 10 s: re-sent from the ack, in order", time.Millisecond, 0, "2..3"},
		{"and doubling again from there", 20 * time.Second, 0, "2..3"},
	}
	for _, s := range steps {
		h.clk.Advance(s.advance)
		if s.ack > 0 {
			h.ack(s.ack)
		} else {
			h.e.notify() // a step needs something pending even when no timer is due
		}
		h.step()
		h.expect(s.what, s.want)
	}
	if h.depth() != 2 {
		t.Fatalf("outbox depth %d after ack 1, want 2 (nothing lost)", h.depth())
	}
}

// TestEngineToldStuckWhenAcksStop: while connected, every second ack
// timeout in a row tells stuck (the Edge subscribes again: a broker can
// drop a subscription and keep the connection); an ack resets the count.
func TestEngineToldStuckWhenAcksStop(t *testing.T) {
	h := connectedHarness(t)
	var stuck int
	h.e.stuck = func(int) { stuck++ }
	steps := []struct {
		what      string
		advance   time.Duration
		ack       uint64
		wantStuck int
	}{
		{"first timeout: may be HQ being slow", 10 * time.Second, 0, 0},
		{"second in a row: subscribe again", 20 * time.Second, 0, 1},
		{"third", 40 * time.Second, 0, 1},
		{"fourth: again", 40 * time.Second, 0, 2},
		{"an ack resets the count", 0, 1, 2},
		{"a first timeout after it", 10 * time.Second, 0, 2},
		{"the second: again", 20 * time.Second, 0, 3},
	}
	for _, s := range steps {
		h.clk.Advance(s.advance)
		if s.ack > 0 {
			h.ack(s.ack)
		} else {
			h.e.notify()
		}
		h.step()
		if stuck != s.wantStuck {
			t.Fatalf("%s: stuck told %d times, want %d", s.what, stuck, s.wantStuck)
		}
	}
	h.e.onConnectionLost()
	h.clk.Advance(40 * time.Second)
	h.e.notify()
	h.step()
	if stuck != 3 {
		t.Fatalf("stuck told while disconnected (%d times): reconnecting subscribes anyway", stuck)
	}
}

func TestEngineResendsAfterReconnect(t *testing.T) {
	h := connectedHarness(t)

	h.e.onConnectionLost()
	h.step()
	h.add(2)
	h.e.notify()
	h.step()
	h.expect("while disconnected", "")

	h.e.onConnect()
	h.step()
	h.expect("reconnected", "1..5")
}

func TestEngineRetriesFailedPublish(t *testing.T) {
	h := newHarness(t, 2, 10, 4)
	h.pub.fail = 1
	h.start()
	h.e.onConnect()
	h.step()
	h.expect("first attempt fails", "")

	h.e.notify() // a kick before the retry delay does not hammer the broker
	h.step()
	if got := h.pub.take(); got != "" {
		t.Fatalf("published %q before the retry delay", got)
	}

	h.clk.Advance(h.e.retryDelay)
	h.step()
	h.expect("retry", "1..2")
}

func TestEngineRejectsBadAcks(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    string // in the log
	}{
		{"not JSON", `ack!`, "malformed"},
		{"seq 0", `{"seq":0}`, "seq 0"},
		{"no seq", `{}`, "no seq"},
		{"negative", `{"seq":-4}`, "malformed"},
		{"ahead of the outbox", `{"seq":4}`, "ahead of the outbox"},
		{"far ahead", `{"seq":18446744073709551615}`, "ahead of the outbox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 3, 10, 4)
			h.e.onAck(proto.AckTopic("s1", "d1"), []byte(tt.payload))
			if got := h.e.ackIn.Load(); got != 0 {
				t.Fatalf("a bad ack moved the ack point to %d", got)
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "rejected ack") || !strings.Contains(logs, "topic=tobira/v1/s1/d1/ack") || !strings.Contains(logs, tt.want) {
				t.Fatalf("log does not name the rejection, topic and %q:\n%s", tt.want, logs)
			}
			select {
			case <-h.e.kick:
				t.Fatal("a bad ack woke the loop")
			default:
			}
		})
	}
}

func TestEngineIgnoresStaleAck(t *testing.T) {
	h := newHarness(t, 5, 10, 4)
	h.ack(4)
	h.ack(2)
	if got := h.e.ackIn.Load(); got != 4 {
		t.Fatalf("ack point %d after acks 4 then 2, want 4", got)
	}
}

func TestEngineStartsFromOutbox(t *testing.T) {
	tests := []struct {
		name      string
		add, ack  int
		wantAcked uint64
	}{
		{"empty", 0, 0, 0},
		{"nothing acked", 4, 0, 0},
		{"partly acked", 4, 2, 2},
		{"all acked", 4, 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.add, 10, 4)
			if _, err := h.ob.Ack(uint64(tt.ack)); err != nil {
				t.Fatal(err)
			}
			e, err := newEngine(h.ob, "s1", "d1")
			if err != nil {
				t.Fatal(err)
			}
			if got := e.acked.Load(); got != tt.wantAcked {
				t.Fatalf("acked = %d, want %d", got, tt.wantAcked)
			}
		})
	}
}

func TestEngineWaitDrainedEndsWithContext(t *testing.T) {
	h := newHarness(t, 1, 10, 4)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := h.e.waitDrained(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("waitDrained = %v, want context.Canceled", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.e.waitDrained(t.Context()) }()
	h.start()
	h.e.onConnect()
	h.step()
	h.expect("connected", "1..1")
	h.ack(1)
	h.step()
	if err := <-done; err != nil {
		t.Fatalf("waitDrained after the last ack = %v", err)
	}
}
