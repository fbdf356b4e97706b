package e2e_test

// Proves, against a real mosquitto running the shipped config and ACL
// (deploy/mosquitto/), that every topic of the contract (proto.Leaves, so
// a new topic is covered or fails here) is writable only by its rightful
// writer and readable only by its rightful reader.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/sync/proto"
)

// Identities of the ACL matrix: the certificate CN of each.
const (
	idHQ      = "tobira-hq" // HQ (and the admin CLI)
	idOwner   = "s1/d1"     // the device whose topics are probed
	idSibling = "s1/d2"     // another device of the same site
	idForeign = "s2/d1"     // a device of another site with the same device name
)

// matrixIDs lists the identities in a fixed order.
var matrixIDs = []string{idHQ, idOwner, idSibling, idForeign}

// leafWriters says who writes each per-device topic of idOwner: idOwner
// for the device's own reports, idHQ for what HQ sends it. The reader is
// the other one. A Leaf missing here fails the test.
var leafWriters = map[proto.Leaf]string{
	proto.LeafEvents: idOwner, proto.LeafStatus: idOwner, proto.LeafResult: idOwner, proto.LeafNeed: idOwner,
	proto.LeafEnroll: idOwner, proto.LeafMarks: idOwner, proto.LeafMarksGet: idOwner, proto.LeafTicketCheck: idOwner,
	proto.LeafReleaseGet: idOwner, proto.LeafReleaseReport: idOwner, proto.LeafSyncGet: idOwner,
	proto.LeafAck: idHQ, proto.LeafCommand: idHQ, proto.LeafSnapshot: idHQ, proto.LeafChunk: idHQ,
	proto.LeafEnrollAck: idHQ, proto.LeafMarksAck: idHQ, proto.LeafPeerMarks: idHQ, proto.LeafTicketVerdict: idHQ,
	proto.LeafRelease: idHQ, proto.LeafReleaseChunk: idHQ, proto.LeafSync: idHQ,
}

// aclProbe is one topic with its rightful writer and readers.
type aclProbe struct {
	topic   string
	writer  string
	readers []string
}

// aclProbes returns a probe for every per-device topic of idOwner and for
// the release topic of a group of its site.
func aclProbes(t *testing.T) []aclProbe {
	t.Helper()
	var ps []aclProbe
	for _, leaf := range proto.Leaves() {
		w, ok := leafWriters[leaf]
		if !ok {
			t.Fatalf("topic leaf %q has no rightful writer in leafWriters: add it here and to deploy/mosquitto/acl", leaf)
		}
		readers := []string{idHQ}
		switch {
		case w == idHQ:
			readers = []string{idOwner}
		case leaf == proto.LeafStatus:
			// A device reads back its own status: `tobira doctor` proves
			// the broker accepted a publish (a denied one is dropped
			// silently) by receiving it.
			readers = []string{idHQ, idOwner}
		}
		ps = append(ps, aclProbe{topic: proto.Topic("s1", "d1", leaf), writer: w, readers: readers})
	}
	// A group's offers and snapshot transfers are for the devices of the
	// group; the broker does not know groups, so every device of the
	// site may read them (they are signed), and HQ, which wrote them,
	// reads them back. A device of another site may not: the ACL file's
	// %u cannot be split into site and device, so the shipped client-ID
	// plugin refuses those deliveries. Only HQ writes them.
	site := []string{idHQ, idOwner, idSibling}
	return append(ps, aclProbe{topic: proto.ReleaseGroupTopic("s1", "g1"), writer: idHQ, readers: site},
		aclProbe{topic: proto.SnapshotGroupTopic("s1", "g1"), writer: idHQ, readers: site},
		aclProbe{topic: proto.ChunkGroupTopic("s1", "g1"), writer: idHQ, readers: site})
}

// orderedClient connects as cn with in-order message callbacks, so a
// sentinel received means every earlier message was handled.
func orderedClient(t *testing.T, ca *testCA, url, cn string, serial int64) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(boundID(cn, fmt.Sprintf("matrix-%d", serial))).
		SetTLSConfig(clientTLS(t, ca, cn, serial)).SetProtocolVersion(4).SetAutoReconnect(false).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("%s cannot connect: %v", cn, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// inbox records "topic payload" of every message a client receives and
// signals when its sentinel payload arrives.
type inbox struct {
	mu       sync.Mutex
	got      []string
	sentinel string
	done     chan struct{}
}

func TestShippedACLEveryTopic(t *testing.T) {
	ca := newTestCA(t)
	m := shippedBroker(t, ca)
	clients := map[string]mqtt.Client{}
	inboxes := map[string]*inbox{}
	for i, id := range matrixIDs {
		c := orderedClient(t, ca, m.URL(), id, int64(30+i))
		in := &inbox{sentinel: "sentinel-for-" + id, done: make(chan struct{})}
		tok := c.Subscribe("tobira/v1/#", 1, func(_ mqtt.Client, msg mqtt.Message) {
			p := string(msg.Payload())
			if p == in.sentinel {
				close(in.done)
				return
			}
			if strings.HasPrefix(p, "sentinel-") {
				return
			}
			in.mu.Lock()
			in.got = append(in.got, msg.Topic()+" "+p)
			in.mu.Unlock()
		})
		if !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
			t.Fatalf("%s: subscribe: %v", id, tok.Error())
		}
		clients[id], inboxes[id] = c, in
	}

	// Every identity writes every topic; want[reader] is what each
	// reader must receive: the rightful writer's message on the topics
	// it reads, and nothing else.
	want := map[string][]string{}
	probes := aclProbes(t)
	for _, p := range probes {
		for _, w := range matrixIDs {
			payload := "by-" + w
			publish(t, clients[w], p.topic, []byte(payload))
			if w == p.writer {
				for _, r := range p.readers {
					want[r] = append(want[r], p.topic+" "+payload)
				}
			}
		}
	}
	// Sentinels, each on a topic only its recipient reads, published
	// after every probe was acknowledged by the broker.
	publish(t, clients[idOwner], proto.EventsTopic("s1", "d1"), []byte("sentinel-for-"+idHQ))
	for _, id := range []string{idOwner, idSibling, idForeign} {
		site, dev, _ := strings.Cut(id, "/")
		publish(t, clients[idHQ], proto.AckTopic(site, dev), []byte("sentinel-for-"+id))
	}

	allowed, denied := 0, 0
	for _, id := range matrixIDs {
		in := inboxes[id]
		select {
		case <-in.done:
		case <-time.After(linkDeadline):
			t.Fatalf("%s never received its sentinel", id)
		}
		in.mu.Lock()
		got := slices.Clone(in.got)
		in.mu.Unlock()
		slices.Sort(got)
		w := slices.Clone(want[id])
		slices.Sort(w)
		for _, s := range w {
			if !slices.Contains(got, s) {
				t.Errorf("%s did not receive %q: its rightful message was blocked", id, s)
			}
		}
		for _, s := range got {
			if !slices.Contains(w, s) {
				t.Errorf("%s received %q: the ACL let a wrong writer or reader through", id, s)
			}
		}
		allowed += len(w)
		denied += len(probes)*len(matrixIDs) - len(w)
	}
	t.Logf("%d topics x %d writers x %d readers: %d rightful deliveries, %d denied write/read pairs",
		len(probes), len(matrixIDs), len(matrixIDs), allowed, denied)
}

func TestShippedConfigKeepsRetainedAcrossSIGKILL(t *testing.T) {
	ca := newTestCA(t)
	m, dir := shippedBrokerDir(t, ca)
	dev := orderedClient(t, ca, m.URL(), idOwner, 40)
	published := time.Now()
	topic := proto.StatusTopic("s1", "d1")
	if tok := dev.Publish(topic, 1, true, "retained-status"); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("publish retained status: %v", tok.Error())
	}
	// The shipped config saves at least every autosave_interval; wait
	// for a save after the publish (or 3 s), then kill the broker.
	db := filepath.Join(dir, "mosquitto.db")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(db); err == nil && fi.ModTime().After(published) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	dev.Disconnect(0)
	m.Restart(t) // SIGKILL, then start with the same shipped config

	hqc := orderedClient(t, ca, m.URL(), idHQ, 41)
	got := make(chan string, 1)
	if tok := hqc.Subscribe(topic, 1, func(_ mqtt.Client, msg mqtt.Message) { got <- string(msg.Payload()) }); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case p := <-got:
		if p != "retained-status" {
			t.Fatalf("retained status after SIGKILL is %q, want %q", p, "retained-status")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("retained status lost: mosquitto with the shipped config was SIGKILLed 3 s after it was published")
	}
}
