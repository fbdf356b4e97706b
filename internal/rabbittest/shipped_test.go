package rabbittest_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/amqpintake"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/rabbittest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// tlsClient returns an unconnected paho client for url with a certificate
// for cn issued by ca, cn being its client ID too.
func tlsClient(t *testing.T, ca *mosquittotest.CA, url, cn string, serial int64) mqtt.Client {
	t.Helper()
	return tlsClientAs(t, ca, url, cn, cn, serial)
}

// tlsClientAs is tlsClient with another client ID.
func tlsClientAs(t *testing.T, ca *mosquittotest.CA, url, cn, clientID string, serial int64) mqtt.Client {
	t.Helper()
	crt, key := ca.Issue(t, mosquittotest.Leaf{CN: cn, Serial: serial})
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second).
		SetTLSConfig(&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	return mqtt.NewClient(o)
}

// connectTLS connects c or fails t; it disconnects in t.Cleanup.
func connectTLS(t *testing.T, c mqtt.Client, who string) {
	t.Helper()
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", who, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
}

// The shipped deploy/rabbitmq config: a device logs in with its
// certificate alone, publishes its events to HQ and reads its own acks,
// and may neither read another device's acks nor publish its events.
func TestShippedPermissions(t *testing.T) {
	ca := mosquittotest.NewCA(t, "tobira test CA")
	c := rabbittest.StartShipped(t, ca, rabbittest.Options{Nodes: 1})
	n := c.Nodes[0]
	n.ImportDefinitions(t, "site1/door1", "site1/door2")

	hq := tlsClient(t, ca, n.MQTTSURL(), "tobira-hq", 10)
	connectTLS(t, hq, "HQ")
	events := make(chan string, 10)
	if tok := hq.Subscribe(proto.Subscription(proto.LeafEvents), 1, func(_ mqtt.Client, m mqtt.Message) {
		events <- m.Topic() + " " + string(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("HQ subscribes to every device's events: %v", tok.Error())
	}

	door1 := tlsClient(t, ca, n.MQTTSURL(), "site1/door1", 11)
	connectTLS(t, door1, "door1")
	acks := make(chan string, 10)
	tok := door1.Subscribe(proto.AckTopic("site1", "door1"), 1, func(_ mqtt.Client, m mqtt.Message) { acks <- string(m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil || tok.(*mqtt.SubscribeToken).Result()[proto.AckTopic("site1", "door1")] != 1 {
		t.Fatalf("door1 subscribes to its acks: %v %v", tok.Error(), tok.(*mqtt.SubscribeToken).Result())
	}
	if tok := door1.Publish(proto.EventsTopic("site1", "door1"), 1, false, "e1"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("door1 publishes its events: %v", tok.Error())
	}
	select {
	case e := <-events:
		if e != proto.EventsTopic("site1", "door1")+" e1" {
			t.Fatalf("HQ got %q", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("door1's events did not reach HQ")
	}
	if tok := hq.Publish(proto.AckTopic("site1", "door1"), 1, false, "a1"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("HQ publishes door1's ack: %v", tok.Error())
	}
	select {
	case a := <-acks:
		if a != "a1" {
			t.Fatalf("door1 got ack %q", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("HQ's ack did not reach door1")
	}

	// door1 under a moved client ID (mqttconn.Rotator: "{site}/{device}/2")
	// reads its acks too, and the subscription queues get the shipped
	// policy (a bound and a lifetime).
	moved := tlsClientAs(t, ca, n.MQTTSURL(), "site1/door1", "site1/door1/2", 14)
	connectTLS(t, moved, "door1 as site1/door1/2")
	tok = moved.Subscribe(proto.AckTopic("site1", "door1"), 1, func(mqtt.Client, mqtt.Message) {})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil || tok.(*mqtt.SubscribeToken).Result()[proto.AckTopic("site1", "door1")] != 1 {
		t.Fatalf("door1 as site1/door1/2 subscribes to its acks: %v %v", tok.Error(), tok.(*mqtt.SubscribeToken).Result())
	}
	queues, err := n.Ctl(t.Context(), "list_queues", "--no-table-headers", "name", "policy")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"mqtt-subscription-site1/door1qos1", "mqtt-subscription-site1/door1/2qos1"} {
		if !strings.Contains(queues, q+"\ttobira-mqtt-subscriptions") {
			t.Fatalf("queue %s has not the policy tobira-mqtt-subscriptions:\n%s", q, queues)
		}
	}

	// door1 asks for door2's acks: refused (RabbitMQ 3.10 closes the
	// connection; a SUBACK 0x80 would do too).
	spy := tlsClient(t, ca, n.MQTTSURL(), "site1/door1", 12)
	connectTLS(t, spy, "door1 as a spy") // takes over door1's client ID: door1 is gone
	stolen := make(chan string, 10)
	other := proto.AckTopic("site1", "door2")
	tok = spy.Subscribe(other, 1, func(_ mqtt.Client, m mqtt.Message) { stolen <- string(m.Payload()) })
	ok := tok.WaitTimeout(10 * time.Second)
	if ok && tok.Error() == nil && tok.(*mqtt.SubscribeToken).Result()[other] != 0x80 {
		t.Fatalf("door1 subscribed to door2's acks: granted QoS %d", tok.(*mqtt.SubscribeToken).Result()[other])
	}
	if tok := hq.Publish(other, 1, false, "a2"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("HQ publishes door2's ack: %v", tok.Error())
	}

	// door1 publishes as door2: refused, HQ receives nothing.
	forger := tlsClient(t, ca, n.MQTTSURL(), "site1/door1", 13)
	connectTLS(t, forger, "door1 as a forger")
	ptok := forger.Publish(proto.EventsTopic("site1", "door2"), 1, false, "forged")
	ptok.WaitTimeout(5 * time.Second)
	t.Logf("spy's subscription: %v %v; forger after its publish: error %v, connected %v",
		tok.Error(), tok.(*mqtt.SubscribeToken).Result(), ptok.Error(), forger.IsConnectionOpen())
	select {
	case s := <-stolen:
		t.Fatalf("door1 read door2's ack %q", s)
	case e := <-events:
		t.Fatalf("HQ received a forged message %q", e)
	case <-time.After(2 * time.Second):
	}
}

// HQ's events intake logs in to the shipped config's AMQP listener with its
// certificate (SASL EXTERNAL), declares the quorum queue and receives a
// device's events published over MQTT.
func TestShippedAMQPIntake(t *testing.T) {
	ca := mosquittotest.NewCA(t, "tobira test CA")
	c := rabbittest.StartShipped(t, ca, rabbittest.Options{Nodes: 1})
	n := c.Nodes[0]
	n.ImportDefinitions(t, "site1/door1")
	crt, key := ca.Issue(t, mosquittotest.Leaf{CN: "tobira-hq", Serial: 20})
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	in, err := amqpintake.New(amqpintake.Config{
		URLs: []string{n.AMQPSURL()}, RetryDelay: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		TLS: &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		leaves := hq.Leaves{Shared: []proto.Leaf{proto.LeafEvents}, Every: []proto.Leaf{proto.LeafStatus}}
		done <- in.Run(ctx, leaves, func(_ context.Context, topic string, payload []byte) bool {
			got <- topic + " " + string(payload)
			return true
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("intake Run: %v", err)
		}
	}()
	door1 := tlsClient(t, ca, n.MQTTSURL(), "site1/door1", 21)
	connectTLS(t, door1, "door1")
	want := proto.EventsTopic("site1", "door1") + " e1"
	deadline := time.After(30 * time.Second)
	for { // until the intake has declared and bound its queue
		if tok := door1.Publish(proto.EventsTopic("site1", "door1"), 1, false, "e1"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("door1 publishes its events: %v", tok.Error())
		}
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("intake got %q, want %q", g, want)
			}
			return
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatal("the intake received nothing over AMQP with HQ's certificate")
		}
	}
}
