package e2e_test

// Proves that the shipped mosquitto config and ACL (deploy/mosquitto/)
// confine each device to its own topics: a real mosquitto with TLS client
// certificates from a test CA (mosquittotest.CA).

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// testCA issues certificates for the test.
type testCA struct{ *mosquittotest.CA }

// newTestCA makes a self-signed P-256 CA.
func newTestCA(t *testing.T) *testCA { return &testCA{mosquittotest.NewCA(t, "tobira test device CA")} }

// issue returns a certificate and key for cn (a server one for 127.0.0.1
// when server is true) as PEM.
func (ca *testCA) issue(t *testing.T, cn string, serial int64, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	return ca.Issue(t, mosquittotest.Leaf{CN: cn, Serial: serial, Server: server})
}

// tlsClient connects a paho client presenting cn's certificate (none when
// cn is empty) and returns the connect error.
func tlsClient(t *testing.T, ca *testCA, url, cn string, serial int64) (mqtt.Client, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	if cn != "" {
		c, k := ca.issue(t, cn, serial, false)
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(boundID(cn, "c-"+strconv.FormatInt(serial, 10))).
		SetTLSConfig(cfg).SetProtocolVersion(4).SetAutoReconnect(false).SetOrderMatters(false))
	tok := c.Connect()
	if !tok.WaitTimeout(linkDeadline) {
		t.Fatal("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

// shippedBroker starts mosquitto with deploy/mosquitto's config and ACL,
// pointed at files in a temporary directory and at a loopback port.
func shippedBroker(t *testing.T, ca *testCA) *mosquittotest.Mosquitto {
	t.Helper()
	return mosquittotest.StartShipped(t, ca.CA)
}

// shippedBrokerDir is shippedBroker that also returns the directory of its
// files, which is also its persistence_location.
func shippedBrokerDir(t *testing.T, ca *testCA) (*mosquittotest.Mosquitto, string) {
	t.Helper()
	return mosquittotest.StartShippedDir(t, ca.CA)
}

// collect subscribes c to filter and returns a channel of "topic payload".
func collect(t *testing.T, c mqtt.Client, filter string) <-chan string {
	t.Helper()
	ch := make(chan string, 100)
	tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) { ch <- m.Topic() + " " + string(m.Payload()) })
	if !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return ch
}

// expectOnly waits for want on ch and fails on anything else before it.
func expectOnly(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("received %q, want only %q", got, want)
		}
	case <-time.After(linkDeadline):
		t.Fatalf("never received %q", want)
	}
}

func TestShippedACLConfinesDevices(t *testing.T) {
	ca := newTestCA(t)
	m := shippedBroker(t, ca)
	hq, err := tlsClient(t, ca, m.URL(), "tobira-hq", 10)
	if err != nil {
		t.Fatalf("HQ cannot connect: %v", err)
	}
	d1, err := tlsClient(t, ca, m.URL(), "s1/d1", 11)
	if err != nil {
		t.Fatalf("device s1/d1 cannot connect: %v", err)
	}
	d2, err := tlsClient(t, ca, m.URL(), "s1/d2", 12)
	if err != nil {
		t.Fatalf("device s1/d2 cannot connect: %v", err)
	}
	if _, err := tlsClient(t, ca, m.URL(), "", 13); err == nil {
		t.Fatal("a client without a certificate connected")
	}

	// Reading: d2 subscribes to everything of d1 (and of everyone); HQ
	// writes to d1; only d1 receives.
	d2sees := collect(t, d2, "tobira/v1/#")
	d1sees := collect(t, d1, proto.AckTopic("s1", "d1"))
	d1cmds := collect(t, d1, proto.CommandTopic("s1", "d1"))
	publish(t, hq, proto.AckTopic("s1", "d1"), []byte(`{"seq":1}`))
	publish(t, hq, proto.CommandTopic("s1", "d1"), []byte(`cmd-for-d1`))
	publish(t, hq, proto.AckTopic("s1", "d2"), []byte(`{"seq":2}`))
	expectOnly(t, d1sees, proto.AckTopic("s1", "d1")+` {"seq":1}`)
	expectOnly(t, d1cmds, proto.CommandTopic("s1", "d1")+" cmd-for-d1")
	// d2's wildcard subscription reaches its own ack (allowed) and
	// nothing of d1's: the ack for d2 is the first and only thing it sees.
	expectOnly(t, d2sees, proto.AckTopic("s1", "d2")+` {"seq":2}`)

	// Writing: d2 forges d1's events, status and results, then d1 sends
	// its own; HQ receives only d1's.
	hqsees := collect(t, hq, "tobira/v1/+/+/+")
	for _, topic := range []string{proto.EventsTopic("s1", "d1"), proto.StatusTopic("s1", "d1"), proto.ResultTopic("s1", "d1"),
		proto.EventsTopic("s2", "d1"), proto.AckTopic("s1", "d1")} {
		publish(t, d2, topic, []byte("forged-by-d2"))
	}
	publish(t, d1, proto.EventsTopic("s1", "d1"), []byte("from-d1"))
	expectOnly(t, hqsees, proto.EventsTopic("s1", "d1")+" from-d1")
	select {
	case got := <-d1sees:
		t.Fatalf("d1 received %q, forged by d2", got)
	default:
	}
	// A device cannot pose as HQ either: d1 cannot command d2.
	publish(t, d1, proto.CommandTopic("s1", "d2"), []byte("forged-by-d1"))
	publish(t, hq, proto.AckTopic("s1", "d2"), []byte(`{"seq":3}`))
	expectOnly(t, d2sees, proto.AckTopic("s1", "d2")+` {"seq":3}`)
}

// clientTLS returns a TLS config presenting a certificate for cn.
func clientTLS(t *testing.T, ca *testCA, cn string, serial int64) *tls.Config {
	t.Helper()
	c, k := ca.issue(t, cn, serial, false)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// TestEdgeAndHQThroughShippedACL runs HQ and an edge with their default
// client IDs, which the shipped config's client-ID plugin must accept.
func TestEdgeAndHQThroughShippedACL(t *testing.T) {
	ca := newTestCA(t)
	m := shippedBroker(t, ca)
	h, err := hq.Open(hq.Config{Broker: m.URL(), Path: filepath.Join(t.TempDir(), "hq.db"),
		TLS: clientTLS(t, ca, "tobira-hq", 20), ConnectRetry: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(hctx) }()
	t.Cleanup(func() { hcancel(); <-hdone; h.Close() })

	ob := newOutbox(t)
	want := prototest.AppendN(t, ob, 1, 25)
	e, err := tsync.NewEdge(tsync.EdgeConfig{Broker: m.URL(), Site: "s1", Device: "d1", TLS: clientTLS(t, ca, "s1/d1", 21),
		Batch: 10, ConnectRetry: 100 * time.Millisecond, Logger: testLogger(t)}, ob)
	if err != nil {
		t.Fatal(err)
	}
	ectx, ecancel := context.WithCancel(context.Background())
	edone := make(chan error, 1)
	go func() { edone <- e.Run(ectx) }()
	t.Cleanup(func() { ecancel(); <-edone })
	waitDrained(t, e)
	got, err := h.Events("s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if d := prototest.DiffEvents(got, want); d != "" {
		t.Fatal(d)
	}
	waitFor(t, "the device's status at HQ", func() bool { return fleetEntry(t, h).Online })
}
