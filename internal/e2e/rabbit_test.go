package e2e_test

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/amqpintake"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/rabbittest"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// brokerLog is a slog handler that keeps the broker of every "connected to
// broker" record of an Edge: which node of a cluster it reached, in order.
type brokerLog struct {
	mu      sync.Mutex
	brokers []string
	ids     []string
}

// Enabled implements slog.Handler.
func (b *brokerLog) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (b *brokerLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "connected to broker" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch a.Key {
		case "broker":
			b.brokers = append(b.brokers, a.Value.String())
		case "client_id":
			b.ids = append(b.ids, a.Value.String())
		}
		return true
	})
	return nil
}

// WithAttrs implements slog.Handler.
func (b *brokerLog) WithAttrs([]slog.Attr) slog.Handler { return b }

// WithGroup implements slog.Handler.
func (b *brokerLog) WithGroup(string) slog.Handler { return b }

// clientIDs returns the client IDs of the connections so far.
func (b *brokerLog) clientIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ids)
}

// connected returns the brokers connected to so far.
func (b *brokerLog) connected() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.brokers)
}

// An edge lists the three nodes of a RabbitMQ cluster and is connected to
// node 1; HQ is connected to node 2. Node 1 is SIGKILLed mid-drain and
// restarted: the edge moves to another node and keeps delivering, and HQ
// holds every event exactly once.
func TestEdgeFailsOverBetweenRabbitNodes(t *testing.T) {
	c := rabbittest.Start(t, rabbittest.Options{})
	var newEvents atomic.Int64
	h := runHQ(t, c.Nodes[1].MQTTURL(), &newEvents)
	ob := newOutbox(t)
	conns := new(brokerLog)
	e := runEdgeWith(t, tsync.EdgeConfig{Brokers: c.MQTTURLs(), Logger: slog.New(conns)}, ob, 20, 4)

	n := uint64(scale(6000, 60000))
	third := n / 3
	appendBacklog(t, ob, 1, third)
	e.Notify()
	waitFor(t, "HQ to store a part of the first third", func() bool { return newEvents.Load() >= int64(third/4) })
	if got := conns.connected(); len(got) != 1 || got[0] != c.Nodes[0].MQTTURL() {
		t.Fatalf("edge connected to %q, want node 1 (%s) only", got, c.Nodes[0].MQTTURL())
	}
	killedAt := newEvents.Load()
	c.Nodes[0].Kill() // mid-drain: batches in flight on node 1
	appendBacklog(t, ob, third+1, 2*third)
	e.Notify()
	waitFor(t, "HQ to store the first two thirds while node 1 is down", func() bool {
		return newEvents.Load() >= int64(2*third)
	})
	duringOutage := newEvents.Load() - killedAt
	c.Nodes[0].Restart(t)
	appendBacklog(t, ob, 2*third+1, n)
	e.Notify()
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n))
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	checkHQExactly(t, h, &newEvents, n)
	got := conns.connected()
	if len(got) < 2 || got[1] == c.Nodes[0].MQTTURL() {
		t.Fatalf("edge connections %q: want node 1, then another node", got)
	}
	t.Logf("%d events stored once each; %d stored while node 1 was down; edge connections: %s",
		n, duringOutage, fmt.Sprint(got))
}

// HQ takes the devices' events from a quorum queue bound to amq.topic
// (hq/amqpintake) instead of its MQTT subscription, and acks over MQTT.
// The node its intake consumes from is SIGKILLed mid-drain: the intake
// moves to another node, RabbitMQ delivers the unacknowledged messages
// again, and HQ holds every event exactly once.
func TestHQConsumesEventsFromQuorumQueue(t *testing.T) {
	c := rabbittest.Start(t, rabbittest.Options{})
	var newEvents atomic.Int64
	h := intakeHQ(t, c, nil, &newEvents)
	n := uint64(scale(6000, 60000))
	ob, e := startHalfDrain(t, c, n, &newEvents)
	killedAt := newEvents.Load()
	c.Nodes[2].Kill() // the intake's node, mid-drain
	appendBacklog(t, ob, n/2+1, n)
	e.Notify()
	waitFor(t, "HQ to store more while node 3 is down", func() bool { return newEvents.Load() >= int64(n/2) })
	duringOutage := newEvents.Load() - killedAt
	c.Nodes[2].Restart(t)
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n))
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	checkHQExactly(t, h, &newEvents, n)
	t.Logf("%d events through the quorum queue, stored once each; %d stored while the intake's node was down", n, duringOutage)
}

// intakeHQ runs HQ with its MQTT link on node 2 of c (then fallbacks) and
// its intake on nodes 3 and 1, counting new events into newEvents.
func intakeHQ(t *testing.T, c *rabbittest.Cluster, fallbacks []string, newEvents *atomic.Int64) *hq.Service {
	t.Helper()
	in, err := amqpintake.New(amqpintake.Config{
		URLs: []string{c.Nodes[2].AMQPURL(), c.Nodes[0].AMQPURL()}, RetryDelay: 200 * time.Millisecond, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := runHQWith(t, c.Nodes[1].MQTTURL(), hq.Config{Intake: in, Fallbacks: fallbacks})
	h.OnEvent(func(string, string, proto.Event) { newEvents.Add(1) })
	return h
}

// startHalfDrain runs device s1/d1 against every node of c (node 1 first),
// appends the first half of n events and waits until HQ stored an eighth.
func startHalfDrain(t *testing.T, c *rabbittest.Cluster, n uint64, newEvents *atomic.Int64) (*tsync.Outbox, *tsync.Edge) {
	t.Helper()
	ob := newOutbox(t)
	e := runEdgeWith(t, tsync.EdgeConfig{Brokers: c.MQTTURLs(), Logger: discardLogger()}, ob, 20, 4)
	appendBacklog(t, ob, 1, n/2)
	e.Notify()
	waitFor(t, "HQ to store a part of the first half", func() bool { return newEvents.Load() >= int64(n/8) })
	return ob, e
}

// replica is one HQ replica of TestHQReplicasShareTheQueue, which the test
// may stop before it ends.
type replica struct {
	h       *hq.Service
	handled atomic.Int64 // new events this replica stored
	stop    func()
}

// startReplica runs an HQ replica named name on cfg (broker, TLS, intake
// or shared group; its logger, else none) with its events store in
// PostgreSQL at dbURL. Each new event counts in newEvents too.
func startReplica(t *testing.T, name, dbURL string, cfg hq.Config, newEvents *atomic.Int64) *replica {
	t.Helper()
	st, err := pgstore.Open(t.Context(), dbURL, pgstore.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientID, cfg.Path, cfg.Store = "tobira-hq-"+name, filepath.Join(t.TempDir(), "hq.db"), st
	cfg.ConnectRetry, cfg.MaxReconnect, cfg.Logger = 200*time.Millisecond, 500*time.Millisecond, cmp.Or(cfg.Logger, discardLogger())
	h, err := hq.Open(cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	r := &replica{h: h}
	h.OnEvent(func(string, string, proto.Event) {
		newEvents.Add(1)
		r.handled.Add(1)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.Run(ctx); err != nil {
			t.Errorf("HQ %s Run: %v", name, err)
		}
		h.Close()
	}()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
	return r
}

// amqpReplica runs replica name (startReplica) with MQTT on mqttURL and
// its intake on amqpURLs.
func amqpReplica(t *testing.T, name, mqttURL string, amqpURLs []string, dbURL string, newEvents *atomic.Int64) *replica {
	t.Helper()
	in, err := amqpintake.New(amqpintake.Config{URLs: amqpURLs, RetryDelay: 200 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return startReplica(t, name, dbURL, hq.Config{Broker: mqttURL, Intake: in}, newEvents)
}

// migratedDB starts a PostgreSQL server for the test and returns the URL
// of a fresh database with HQ's schema.
func migratedDB(t *testing.T) string {
	t.Helper()
	db := startPG(t)
	if _, err := pgstore.Migrate(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

// Two HQ replicas share one PostgreSQL and consume the events quorum
// queue as competing consumers. Mid-drain one replica stops and the node
// the other consumes from is SIGKILLed: the survivor moves to another node
// and takes over, and every event is stored exactly once.
func TestHQReplicasShareTheQueue(t *testing.T) {
	db := migratedDB(t)
	c := rabbittest.Start(t, rabbittest.Options{})
	var newEvents atomic.Int64
	a := amqpReplica(t, "a", c.Nodes[1].MQTTURL(), []string{c.Nodes[2].AMQPURL(), c.Nodes[0].AMQPURL()}, db, &newEvents)
	b := amqpReplica(t, "b", c.Nodes[1].MQTTURL(), []string{c.Nodes[0].AMQPURL(), c.Nodes[1].AMQPURL()}, db, &newEvents)
	n := uint64(scale(6000, 60000))
	ob, e := startHalfDrain(t, c, n, &newEvents)
	b.stop()
	c.Nodes[2].Kill() // replica a's intake node
	byB := b.handled.Load()
	appendBacklog(t, ob, n/2+1, n)
	e.Notify()
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n))
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	checkHQExactly(t, a.h, &newEvents, n)
	if byB == 0 || a.handled.Load() == 0 {
		t.Fatalf("replica a stored %d events, b %d: want both to take part", a.handled.Load(), byB)
	}
	t.Logf("%d events stored once each: replica a %d, replica b %d (until stopped)", n, a.handled.Load(), byB)
}

// HQ takes every device message from RabbitMQ's queues (hq/amqpintake:
// events and the other shared leaves from the quorum queue, status from
// its own queue) and only publishes over MQTT. The node its MQTT
// connection is on is SIGKILLed mid-drain: the connection moves to
// another node, and the drain completes with every event stored once.
// The device shows online at HQ, which only the intake can have told it.
func TestHQLinkFailsOverWithIntake(t *testing.T) {
	c := rabbittest.Start(t, rabbittest.Options{})
	var newEvents atomic.Int64
	h := intakeHQ(t, c, []string{c.Nodes[2].MQTTURL(), c.Nodes[0].MQTTURL()}, &newEvents)
	n := uint64(scale(6000, 60000))
	ob, e := startHalfDrain(t, c, n, &newEvents)
	killedAt, start := newEvents.Load(), time.Now()
	c.Nodes[1].Kill() // HQ's MQTT node, mid-drain: acks in flight are lost
	appendBacklog(t, ob, n/2+1, n)
	e.Notify()
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n))
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	checkHQExactly(t, h, &newEvents, n)
	waitFor(t, "the device's status at HQ, through the intake", func() bool { return fleetEntry(t, h).Online })
	t.Logf("%d events stored once each; %d after HQ's MQTT node was killed, drained %v after the kill", n, n-uint64(killedAt), took.Round(time.Millisecond))
}
