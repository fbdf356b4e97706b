package e2e_test

// Integration tests: Edge and HQ through a real mosquitto and through the
// embedded broker, on loopback.

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/broker"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// linkDeadline bounds each wait on a real broker; it is an integration
// deadline, not a performance limit.
const linkDeadline = 60 * time.Second

// testLogger logs at Info into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// runUntilCleanup runs run in the background until the test ends. Its
// cleanup cancels run's context, waits for run to return and hands the
// error to stopped, which checks it and closes what run used.
func runUntilCleanup(t *testing.T, run func(context.Context) error, stopped func(error)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		stopped(<-done)
	})
}

// newOutbox opens a fresh outbox in a temporary directory and closes it
// when the test ends.
func newOutbox(t *testing.T) *tsync.Outbox {
	t.Helper()
	ob, err := tsync.OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

// runHQ opens an HQ store and runs it against url until the test ends. It
// counts OnEvent calls into newEvents.
func runHQ(t *testing.T, url string, newEvents *atomic.Int64) *hq.Service {
	t.Helper()
	h, err := hq.Open(hq.Config{
		Broker: url, Path: filepath.Join(t.TempDir(), "hq.db"), ClientID: "hq-" + t.Name(),
		ConnectRetry: 200 * time.Millisecond, MaxReconnect: 500 * time.Millisecond, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if newEvents != nil {
		h.OnEvent(func(string, string, proto.Event) { newEvents.Add(1) })
	}
	runUntilCleanup(t, h.Run, func(err error) {
		if err != nil {
			t.Errorf("HQ Run: %v", err)
		}
		h.Close()
	})
	return h
}

// runEdge runs an Edge for ob against url until the test ends.
func runEdge(t *testing.T, url string, ob *tsync.Outbox, batch, window int) *tsync.Edge {
	t.Helper()
	return runEdgeWith(t, tsync.EdgeConfig{Broker: url, Logger: testLogger(t)}, ob, batch, window)
}

// runEdgeWith is runEdge for cfg's brokers, logger and TLS: device
// cfg.Device (default d1) of site s1 with the test timings.
func runEdgeWith(t *testing.T, cfg tsync.EdgeConfig, ob *tsync.Outbox, batch, window int) *tsync.Edge {
	t.Helper()
	cfg.Site, cfg.Device, cfg.Batch, cfg.Window = "s1", cmp.Or(cfg.Device, "d1"), batch, window
	cfg.AckTimeout, cfg.RetryDelay = 2*time.Second, 200*time.Millisecond
	cfg.ConnectRetry, cfg.MaxReconnect = 200*time.Millisecond, 500*time.Millisecond
	e, err := tsync.NewEdge(cfg, ob)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, e.Run, func(err error) {
		if err != nil {
			t.Errorf("Edge Run: %v", err)
		}
	})
	return e
}

// waitDrained waits, within linkDeadline, until HQ acknowledged everything.
func waitDrained(t *testing.T, e *tsync.Edge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), linkDeadline)
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkHQHolds checks that HQ stored exactly want for s1/d1, once each.
func checkHQHolds(t *testing.T, h *hq.Service, newEvents *atomic.Int64, want []proto.Event) {
	t.Helper()
	got, err := h.Events("s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if d := prototest.DiffEvents(got, want); d != "" {
		t.Fatalf("HQ holds other events than appended: %s", d)
	}
	if n, err := h.Count(); err != nil || n != len(want) {
		t.Fatalf("HQ Count = %d, %v; want %d", n, err, len(want))
	}
	if n := newEvents.Load(); n != int64(len(want)) {
		t.Fatalf("OnEvent called %d times, want %d", n, len(want))
	}
}

// brokers are the two brokers the link must work through.
var brokers = []struct {
	name  string
	start func(t *testing.T) string // returns the URL
}{
	{"mosquitto", func(t *testing.T) string { return mosquittotest.Start(t).URL() }},
	{"embedded", func(t *testing.T) string {
		b, err := broker.Start(t.Context(), "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b.URL()
	}},
}

func TestEdgeToHQ(t *testing.T) {
	for _, br := range brokers {
		t.Run(br.name, func(t *testing.T) {
			url := br.start(t)
			ob := newOutbox(t)
			want := prototest.AppendN(t, ob, 1, 120) // queued before the link is up
			var newEvents atomic.Int64
			h := runHQ(t, url, &newEvents)
			e := runEdge(t, url, ob, 40, 2)
			for i := 121; i <= 250; i++ { // appended while the link runs
				want = append(want, prototest.AppendN(t, ob, i, 1)...)
				e.Notify()
			}
			waitDrained(t, e)

			checkHQHolds(t, h, &newEvents, want)
			if e.Acked() != 250 {
				t.Fatalf("Edge Acked = %d, want 250", e.Acked())
			}
			if a, err := h.Acked("s1", "d1"); err != nil || a != 250 {
				t.Fatalf("HQ Acked = %d, %v; want 250", a, err)
			}
		})
	}
}

func TestEdgeDeliversAfterBrokerRestart(t *testing.T) {
	m := mosquittotest.Start(t)
	ob := newOutbox(t)
	var newEvents atomic.Int64
	h := runHQ(t, m.URL(), &newEvents)
	e := runEdge(t, m.URL(), ob, 0, 0)

	want := prototest.AppendN(t, ob, 1, 10)
	e.Notify()
	waitDrained(t, e)

	m.Stop()
	want = append(want, prototest.AppendN(t, ob, 11, 10)...) // the broker is down
	e.Notify()
	if n, err := ob.Depth(); err != nil || n != 10 {
		t.Fatalf("outbox depth %d, %v while the broker is down; want 10", n, err)
	}

	m.Restart(t)
	waitDrained(t, e)
	checkHQHolds(t, h, &newEvents, want)
}

// rawClient connects a plain paho client to url.
func rawClient(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// publish sends payload to topic at QoS 1.
func publish(t *testing.T, c mqtt.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("publish to %s: %v", topic, tok.Error())
	}
}

// subscribeAcks returns a channel of the ack payloads for site/device.
func subscribeAcks(t *testing.T, c mqtt.Client, site, device string) <-chan string {
	t.Helper()
	acks := make(chan string, 100)
	tok := c.Subscribe(proto.AckTopic(site, device), 1, func(_ mqtt.Client, m mqtt.Message) { acks <- string(m.Payload()) })
	if !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return acks
}

// nextAck waits for one ack within linkDeadline.
func nextAck(t *testing.T, acks <-chan string) string {
	t.Helper()
	select {
	case a := <-acks:
		return a
	case <-time.After(linkDeadline):
		t.Fatal("no ack from HQ")
		return ""
	}
}

// waitHQSubscribed waits until HQ is subscribed: it sends a batch of
// device s1/probe through c until HQ acknowledges it (one stored event).
func waitHQSubscribed(t *testing.T, c mqtt.Client) {
	t.Helper()
	probeAcks := subscribeAcks(t, c, "s1", "probe")
	probe := prototest.BatchPayload(t, "s1", "probe", 1, 1)
	deadline := time.Now().Add(linkDeadline)
	for acked := false; !acked; {
		if time.Now().After(deadline) {
			t.Fatal("HQ never acknowledged the probe")
		}
		publish(t, c, proto.EventsTopic("s1", "probe"), probe)
		select {
		case <-probeAcks:
			acked = true
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestHQDedupesResentBatchThroughBroker(t *testing.T) {
	m := mosquittotest.Start(t)
	var newEvents atomic.Int64
	h := runHQ(t, m.URL(), &newEvents)
	c := rawClient(t, m.URL(), "fake-device")
	waitHQSubscribed(t, c)

	acks := subscribeAcks(t, c, "s1", "d1")
	topic := proto.EventsTopic("s1", "d1")
	publish(t, c, topic, []byte(`{"device":"d1","site":"s1","events":[{"seq":0}]}`)) // rejected, not acked
	batch := prototest.BatchPayload(t, "s1", "d1", 1, 3)
	for i := 1; i <= 2; i++ {
		publish(t, c, topic, batch)
		if a := nextAck(t, acks); a != `{"seq":3}` {
			t.Fatalf("ack after sending the batch %d times = %s, want {\"seq\":3}", i, a)
		}
	}
	if got := prototest.StoredSeqs(t, h, "s1", "d1"); got != "[1 2 3]" {
		t.Fatalf("HQ holds %s, want [1 2 3]", got)
	}
	if n, p := newEvents.Load(), int64(1+3); n != p {
		t.Fatalf("OnEvent called %d times, want %d (probe + 3)", n, p)
	}
}

func TestRunStopsWhileBrokerUnreachable(t *testing.T) {
	// A "broker" that hangs up on every connection, and counts them.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	attempts := make(chan struct{}, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case attempts <- struct{}{}:
			default:
			}
		}
	}()
	url := "tcp://" + l.Addr().String()

	ob := newOutbox(t)
	prototest.AppendN(t, ob, 1, 3)
	e, err := tsync.NewEdge(tsync.EdgeConfig{Broker: url, Site: "s1", Device: "d1", ConnectRetry: 20 * time.Millisecond, Logger: testLogger(t)}, ob)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hq.Open(hq.Config{Broker: url, Path: filepath.Join(t.TempDir(), "hq.db"), ConnectRetry: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	ctx, cancel := context.WithCancel(t.Context())
	edgeDone, hqDone := make(chan error, 1), make(chan error, 1)
	go func() { edgeDone <- e.Run(ctx) }()
	go func() { hqDone <- h.Run(ctx) }()
	for range 4 { // both are in their retry loops
		<-attempts
	}
	cancel()
	if err := <-edgeDone; err != nil {
		t.Errorf("Edge Run = %v, want nil", err)
	}
	if err := <-hqDone; err != nil {
		t.Errorf("HQ Run = %v, want nil", err)
	}
	if n, err := ob.Depth(); err != nil || n != 3 {
		t.Errorf("outbox depth %d, %v; want the 3 unsent events kept", n, err)
	}
}
