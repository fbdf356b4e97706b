package e2e_test

// Proves, against a real mosquitto running the shipped config
// (deploy/mosquitto/, with its client-ID plugin), that a certificate
// cannot take another identity's MQTT client ID (issue 12, item 2): the
// broker refuses the CONNECT, so the rightful client is not disconnected
// and HQ's persistent session is not wiped.

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// boundID returns a client ID the shipped broker accepts for certificate
// CN cn, distinguished by suffix: "tobira-hq-"+suffix for HQ,
// cn+"/"+suffix for a device (and for an empty cn, which has no
// certificate and is refused anyway).
func boundID(cn, suffix string) string {
	if cn == "tobira-hq" {
		return cn + "-" + suffix
	}
	return cn + "/" + suffix
}

// victim is a rightful connection that a takeover would disconnect.
type victim struct {
	c    mqtt.Client
	lost chan error
}

// connectAs connects a paho client presenting cn's certificate with
// client ID id (persistent session unless clean) and returns the connect
// error; lost receives the error if the broker later drops it.
func connectAs(t *testing.T, ca *testCA, url, cn, id string, serial int64, clean bool) (*victim, error) {
	t.Helper()
	v := &victim{lost: make(chan error, 1)}
	v.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetTLSConfig(clientTLS(t, ca, cn, serial)).SetProtocolVersion(4).SetAutoReconnect(false).SetOrderMatters(false).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { v.lost <- err }))
	tok := v.c.Connect()
	if !tok.WaitTimeout(linkDeadline) {
		t.Fatalf("connect %s as %s timed out", id, cn)
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { v.c.Disconnect(50) })
	return v, nil
}

func TestShippedConfigBindsClientIDs(t *testing.T) {
	ca := newTestCA(t)
	m := shippedBroker(t, ca)

	// The rightful clients, with the client IDs tobira's binaries use:
	// HQ's persistent session, HQ's admin CLI, a device's link, its
	// release agent and its doctor.
	rightful := []struct{ cn, id string }{
		{"tobira-hq", "tobira-hq"},
		{"tobira-hq", "tobira-hq-cli-0a1b2c3d"},
		{"s1/d1", "s1/d1"},
		{"s1/d1", "s1/d1/release"},
		{"s1/d1", "s1/d1/doctor"},
	}
	victims := map[string]*victim{}
	for i, r := range rightful {
		v, err := connectAs(t, ca, m.URL(), r.cn, r.id, int64(50+i), r.id != "tobira-hq")
		if err != nil {
			t.Fatalf("%s cannot connect with its own client ID %q: %v", r.cn, r.id, err)
		}
		victims[r.id] = v
	}
	hqEvents := collect(t, victims["tobira-hq"].c, proto.EventsTopic("s1", "d1"))
	d1Acks := collect(t, victims["s1/d1"].c, proto.AckTopic("s1", "d1"))

	// Every takeover attempt: another certificate with a victim's client
	// ID, with a clean session (which would wipe a persistent one) and
	// without.
	attacks := []struct {
		name, cn, id string
	}{
		{"device takes HQ's ID", "s1/d2", "tobira-hq"},
		{"device of another site takes HQ's ID", "s2/d1", "tobira-hq"},
		{"device takes the admin CLI's ID", "s1/d2", "tobira-hq-cli-0a1b2c3d"},
		{"device takes another device's ID", "s1/d2", "s1/d1"},
		{"same device name at another site", "s2/d1", "s1/d1"},
		{"device takes another device's release agent ID", "s1/d2", "s1/d1/release"},
		{"device takes another device's doctor ID", "s1/d2", "s1/d1/doctor"},
		{"HQ's certificate takes a device's ID", "tobira-hq", "s1/d1"},
	}
	for i, a := range attacks {
		for _, clean := range []bool{true, false} {
			if _, err := connectAs(t, ca, m.URL(), a.cn, a.id, int64(60+2*i), clean); err == nil {
				t.Errorf("%s (clean session %v): %s connected with client ID %q", a.name, clean, a.cn, a.id)
			}
		}
	}

	// No rightful client was disconnected, and both directions still
	// flow: the device's event reaches HQ's session, HQ's ack reaches the
	// device.
	time.Sleep(200 * time.Millisecond) // let a takeover's disconnect arrive
	for id, v := range victims {
		select {
		case err := <-v.lost:
			t.Errorf("rightful client %q was disconnected: %v", id, err)
		default:
		}
	}
	publish(t, victims["s1/d1"].c, proto.EventsTopic("s1", "d1"), []byte("after-attacks"))
	expectOnly(t, hqEvents, proto.EventsTopic("s1", "d1")+" after-attacks")
	publish(t, victims["tobira-hq"].c, proto.AckTopic("s1", "d1"), []byte(`{"seq":1}`))
	expectOnly(t, d1Acks, proto.AckTopic("s1", "d1")+` {"seq":1}`)
}

// TestShippedConfigAcceptsHQSender: the admin CLI's real connection
// (hq.DialSender, its own generated client ID) is accepted next to HQ's.
func TestShippedConfigAcceptsHQSender(t *testing.T) {
	ca := newTestCA(t)
	m := shippedBroker(t, ca)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := hq.DialSender(t.Context(), hq.Config{Broker: m.URL(), TLS: clientTLS(t, ca, "tobira-hq", 70)}, priv)
	if err != nil {
		t.Fatalf("the admin CLI's connection was refused: %v", err)
	}
	s.Close()
}
