package e2e_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tobira-ac/tobira/internal/rabbittest"
	tsync "github.com/tobira-ac/tobira/sync"
)

// RabbitMQ 3.10 names a client's MQTT subscription queue after its client
// ID, and after a node is killed it may keep such a queue's record with a
// dead process: every later subscription under that client ID is refused
// ("home node ... is down or inaccessible") and the connection closed, on
// every node (TestScaleFaultsRabbit met it about one run in three). Here
// the edge's queue is made to live on node 1, which is then killed: the
// edge, listing the other two nodes, is refused under its client ID, moves
// to the next client ID after two refused connections, and drains its
// outbox. Before the edge moved on, it was refused forever.
func TestEdgeMovesOnFromAStuckSubscriptionQueue(t *testing.T) {
	c := rabbittest.Start(t, rabbittest.Options{})
	var newEvents atomic.Int64
	h := runHQ(t, c.Nodes[1].MQTTURL(), &newEvents)
	holdQueueOn(t, c.Nodes[0], "mqtt-subscription-s1/d1qos1")
	c.Nodes[0].Kill()

	ob := newOutbox(t)
	logs := new(brokerLog)
	e := runEdgeWith(t, tsync.EdgeConfig{Brokers: []string{c.Nodes[1].MQTTURL(), c.Nodes[2].MQTTURL()}, Logger: slog.New(slog.NewMultiHandler(logs, testLogger(t).Handler()))}, ob, 20, 4)
	const n = 200
	appendBacklog(t, ob, 1, n)
	e.Notify()
	waitDrained(t, e)
	checkHQExactly(t, h, &newEvents, n)
	if got := logs.clientIDs(); len(got) == 0 || got[len(got)-1] == "s1/d1" {
		t.Fatalf("edge subscribed as %q, want a client ID other than s1/d1", got)
	}
	t.Logf("%d events stored once each; the edge subscribed as %q", n, logs.clientIDs())
}

// holdQueueOn declares the durable queue name on node n, as the MQTT
// plugin declares a client's subscription queue on the node the client
// is connected to.
func holdQueueOn(t *testing.T, n *rabbittest.Node, name string) {
	t.Helper()
	conn, err := amqp.Dial(n.AMQPURL())
	if err != nil {
		t.Fatalf("AMQP to %s: %v", n.Name, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatalf("declare %s on %s: %v", name, n.Name, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), linkDeadline)
	defer cancel()
	out, err := n.Ctl(ctx, "list_queues", "name", "durable", "pid")
	if err != nil || !strings.Contains(out, name) {
		t.Fatalf("list_queues on %s: %v\n%s", n.Name, err, out)
	}
}
