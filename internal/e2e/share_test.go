package e2e_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/hq"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Two HQ replicas share one PostgreSQL and subscribe in one shared group
// ($share/tobira-hq/...) on mosquitto with the shipped configuration
// (TLS, client-ID plugin, ACL), each with its own client ID. Several
// devices drain a backlog; mid-drain one replica stops. Every event is
// stored exactly once and both replicas took part.
func TestHQReplicasShareOneMosquitto(t *testing.T) {
	db := migratedDB(t)
	ca := newTestCA(t)
	m := shippedBroker(t, ca)
	var newEvents atomic.Int64
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	replicaCfg := func(i int) hq.Config {
		return hq.Config{Broker: m.URL(), TLS: clientTLS(t, ca, "tobira-hq", int64(10+i)), SharedGroup: "tobira-hq", Metrics: regs[i]}
	}
	a := startReplica(t, "a", db, replicaCfg(0), &newEvents)
	b := startReplica(t, "b", db, replicaCfg(1), &newEvents)
	<-a.h.Ready()
	<-b.h.Ready()

	const devices = 4
	n := uint64(scale(3000, 30000))
	edges := make([]*tsync.Edge, devices)
	obs := make([]*tsync.Outbox, devices)
	for i := range devices {
		dev := fmt.Sprintf("d%d", i+1)
		obs[i] = newOutbox(t)
		edges[i] = runEdgeWith(t, tsync.EdgeConfig{Broker: m.URL(), Device: dev, TLS: clientTLS(t, ca, "s1/"+dev, int64(20+i)),
			Logger: discardLogger()}, obs[i], 20, 4)
		appendBacklog(t, obs[i], 1, n/2)
		edges[i].Notify()
	}
	waitAllDrained(t, edges, n)
	if a.handled.Load() == 0 || b.handled.Load() == 0 {
		t.Fatalf("replica a stored %d events, b %d: want both to take part", a.handled.Load(), b.handled.Load())
	}
	// Each events message went to one replica: without the shared group
	// both would take each (and drop the second as duplicates).
	sent := devices * n / 2 / 20
	if got := uint64(batches(t, regs[0]) + batches(t, regs[1])); got > sent+sent/4 {
		t.Fatalf("the replicas took %d events messages of the %d sent: not shared", got, sent)
	}

	before := b.handled.Load()
	for i := range devices {
		appendBacklog(t, obs[i], n/2+1, n)
		edges[i].Notify()
	}
	waitFor(t, "replica b to store from the second half", func() bool { return b.handled.Load() > before })
	b.stop() // mid-drain: what mosquitto handed b and b did not ack, the device sends again
	byB := b.handled.Load()
	waitAllDrained(t, edges, n)
	for i := range devices {
		dev := fmt.Sprintf("d%d", i+1)
		if got, err := a.h.Acked("s1", dev); err != nil || got != n {
			t.Fatalf("HQ Acked(%s) = %d, %v; want %d", dev, got, err, n)
		}
	}
	if c, err := a.h.Count(); err != nil || uint64(c) != devices*n {
		t.Fatalf("HQ Count = %d, %v; want %d", c, err, devices*n)
	}
	if got := newEvents.Load(); uint64(got) != devices*n {
		t.Fatalf("replicas stored %d new events, want %d (each once)", got, devices*n)
	}
	t.Logf("%d devices x %d events stored once each: replica a %d, replica b %d (until stopped)", devices, n, a.handled.Load(), byB)
}

// waitAllDrained waits until every edge's outbox of n events is drained.
func waitAllDrained(t *testing.T, edges []*tsync.Edge, n uint64) {
	t.Helper()
	for i, e := range edges {
		ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n))
		err := e.WaitDrained(ctx)
		cancel()
		if err != nil {
			t.Fatalf("edge %d: %v", i, err)
		}
	}
}

// batches returns tobira_hq_event_batches_total of reg: the events
// messages its HQ stored (new or duplicate).
func batches(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "tobira_hq_event_batches_total" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no tobira_hq_event_batches_total")
	return 0
}

// The shipped mosquitto configuration lets HQ subscribe in a shared group
// and refuses a device's shared subscription (the client-ID plugin):
// mosquitto 2.0.11's acl_file checks no subscription, and gives a group's
// message to one member before checking its read access, so a device in
// HQ's group would have a share of every device's messages dropped. HQ
// receives every message; the device nothing.
func TestShippedACLSharedSubscriptions(t *testing.T) {
	ca := newTestCA(t)
	m := shippedBroker(t, ca)
	hqc, err := tlsClient(t, ca, m.URL(), "tobira-hq", 10)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := tlsClient(t, ca, m.URL(), "s1/d1", 11)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := tlsClient(t, ca, m.URL(), "s1/d2", 12)
	if err != nil {
		t.Fatal(err)
	}
	shared := "$share/tobira-hq/" + proto.Subscription(proto.LeafEvents)
	hqsees := collect(t, hqc, shared)
	d2joins := tryCollect(t, d2, shared)
	d2own := tryCollect(t, d2, "$share/d2/"+proto.Subscription(proto.LeafEvents))
	const msgs = 10
	for i := range msgs {
		publish(t, d1, proto.EventsTopic("s1", "d1"), fmt.Appendf(nil, "e%d", i))
	}
	for i := range msgs {
		expectOnly(t, hqsees, proto.EventsTopic("s1", "d1")+fmt.Sprintf(" e%d", i))
	}
	for name, ch := range map[string]<-chan string{"in HQ's group": d2joins, "in its own group": d2own} {
		select {
		case got := <-ch:
			t.Errorf("device s1/d2 %s received %q", name, got)
		default:
		}
	}
}

// tryCollect is collect for a subscription the broker may refuse: its
// SUBACK is not checked (the channel stays empty then).
func tryCollect(t *testing.T, c mqtt.Client, filter string) <-chan string {
	t.Helper()
	ch := make(chan string, 100)
	tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) { ch <- m.Topic() + " " + string(m.Payload()) })
	if !tok.WaitTimeout(linkDeadline) {
		t.Fatalf("subscribe %s: no SUBACK", filter)
	}
	t.Logf("subscribe %s: %v", filter, tok.Error())
	return ch
}
