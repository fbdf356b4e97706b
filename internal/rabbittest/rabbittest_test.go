package rabbittest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/rabbittest"
)

// connect returns a paho client connected to url; it disconnects in
// t.Cleanup.
func connect(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetConnectTimeout(10 * time.Second)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// roundTrip publishes on node from and expects the message on node to.
func roundTrip(t *testing.T, from, to *rabbittest.Node, round int) {
	t.Helper()
	got := make(chan string, 1)
	sub := connect(t, to.MQTTURL(), fmt.Sprintf("sub-%d", round))
	topic := fmt.Sprintf("tobira/v1/s/d%d/events", round)
	if tok := sub.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe on %s: %v", to.Name, tok.Error())
	}
	pub := connect(t, from.MQTTURL(), fmt.Sprintf("pub-%d", round))
	if tok := pub.Publish(topic, 1, false, "hello"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on %s: %v", from.Name, tok.Error())
	}
	select {
	case p := <-got:
		if p != "hello" {
			t.Fatalf("got %q, want hello", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a message published on %s did not reach a subscriber on %s", from.Name, to.Name)
	}
}

// The nodes form one cluster: a message crosses nodes, a killed node
// comes back with its data and rejoins.
func TestClusterKillRestart(t *testing.T) {
	c := rabbittest.Start(t, rabbittest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := c.Nodes[0].Ctl(ctx, "cluster_status", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if !strings.Contains(out, `"`+n.Name+`"`) {
			t.Fatalf("cluster_status of node 1 does not list %s:\n%s", n.Name, out)
		}
	}
	roundTrip(t, c.Nodes[0], c.Nodes[2], 1)

	c.Nodes[1].Kill()
	roundTrip(t, c.Nodes[2], c.Nodes[0], 2)
	c.Nodes[1].Restart(t)
	roundTrip(t, c.Nodes[1], c.Nodes[0], 3)
	out, err = c.Nodes[1].Ctl(ctx, "cluster_status", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(out, `"running_nodes"`); i < 0 || strings.Count(out[i:], "@localhost") < len(c.Nodes) {
		t.Fatalf("after its restart node 2 does not see every node running:\n%s", out)
	}
}
