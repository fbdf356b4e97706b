package e2e_test

// Snapshot fan-out on a real mosquitto: one delta published once on the
// site's group topics (proto.SiteGroup) reaches every device of the site.
// Two devices are real Edges applying it into policy stores; the others
// are lightweight simulated devices (one MQTT client each) that verify the
// manifest's signature and the payload's SHA-256 and report the result,
// as an Edge does. TOBIRA_BENCH_SCALE=full runs docs/PERFORMANCE.md's
// size: 1,000 changes to 5,000 devices.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

func TestPerfDeltaFanOut(t *testing.T) {
	simulated := scale(200, 5000)
	const changes, base = 1000, 10000
	basePath, deltaPath, deltaSize := deltaFixture(t, base, changes)
	// HQ's result subscription takes a burst of one result per device:
	// without a bound on its queue (mosquitto's default drops QoS 1
	// messages beyond 1,000 queued for a client).
	m := mosquittotest.StartWith(t, mosquittotest.Options{Config: func(port int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n", port)
	}})
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	h := runHQWith(t, m.URL(), hq.Config{Spool: spool})
	real := []string{"r0", "r1"}
	stores := make([]*policy.Store, len(real))
	for i, d := range real {
		stores[i] = benchEdge(t, m.URL(), d, basePath, pub)
	}
	waitVersion(t, h, 1, len(real))
	v, err := signed.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	devices := slices.Clone(real)
	verified := make(chan string, simulated)
	start := time.Now()
	for i := range simulated {
		d := fmt.Sprintf("sim%05d", i)
		simDevice(t, m.URL(), d, v, verified)
		devices = append(devices, d)
	}
	t.Logf("%d simulated devices connected and subscribed in %v", simulated, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	snd, err := hq.DialSender(ctx, hq.Config{Broker: m.URL(), Spool: spool, Logger: discardLogger()}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	start = time.Now()
	man, err := snd.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "s1", Group: proto.SiteGroup, Version: 2, From: 1, Path: deltaPath})
	if err != nil {
		t.Fatal(err)
	}
	published := time.Since(start)
	for i := range simulated {
		select {
		case <-verified:
		case <-ctx.Done():
			t.Fatalf("%d of %d simulated devices verified the transfer: %v", i, simulated, ctx.Err())
		}
	}
	for _, s := range stores {
		waitFor(t, "a real device at version 2", func() bool { v, err := s.Version(); return err == nil && v == 2 })
	}
	applied := time.Since(start)
	res, err := snd.WaitResults(ctx, man.Transfer, devices)
	if err != nil {
		t.Fatalf("%d of %d devices reported: %v", len(res), len(devices), err)
	}
	reported := time.Since(start)
	for d, r := range res {
		if r.Status != proto.ResultDone || r.Version != 2 {
			t.Fatalf("device %s: result %+v, want done at version 2", d, r)
		}
	}
	want, err := stores[0].ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := stores[1].ContentHash(); err != nil || got != want {
		t.Fatalf("real devices differ: %x, %v; want %x", got, err, want)
	}
	t.Logf("figure: delta of %d changes (%.0f KB, %d chunk(s)) to %d devices (%d simulated) published once on the site's group topic in %v, applied (verified) by all in %v, every result at HQ in %v",
		changes, float64(deltaSize)/1e3, man.Chunks, len(devices), simulated, published.Round(time.Millisecond),
		applied.Round(time.Millisecond), reported.Round(time.Millisecond))
}

// simDevice connects a simulated device of site s1 named device to url
// until the test ends: it takes the site's group transfers, verifies the
// manifest with v and the payload's SHA-256, and publishes a Result as an
// Edge does (done when they match, refused otherwise); a verified transfer
// sends its name to verified.
func simDevice(t *testing.T, url, device string, v *signed.Verifier, verified chan<- string) {
	t.Helper()
	sd := &simState{device: device, v: v, chunks: map[int][]byte{}}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("s1/" + device).SetCleanSession(true).
		SetAutoReconnect(false).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("simulated device %s cannot connect: %v", device, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	filters := map[string]byte{proto.SnapshotGroupTopic("s1", proto.SiteGroup): 1, proto.ChunkGroupTopic("s1", proto.SiteGroup): 1}
	tok := c.SubscribeMultiple(filters, func(c mqtt.Client, msg mqtt.Message) {
		if r, done := sd.take(msg.Topic(), msg.Payload()); done {
			if r.Status == proto.ResultDone {
				verified <- device
			}
			b, _ := json.Marshal(r)
			c.Publish(proto.ResultTopic("s1", device), 1, false, b)
		}
	})
	if !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("simulated device %s cannot subscribe: %v", device, tok.Error())
	}
}

// simState is what a simulated device holds of the transfer under way.
type simState struct {
	device string
	v      *signed.Verifier

	mu     sync.Mutex
	m      *proto.Manifest
	chunks map[int][]byte
	done   bool
}

// take handles one message and returns the transfer's result once it is
// complete.
func (s *simState) take(topic string, payload []byte) (proto.Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if topic == proto.SnapshotGroupTopic("s1", proto.SiteGroup) {
		m, err := proto.OpenManifest(s.v, payload)
		if err != nil {
			return s.result(m, proto.ResultRefused, err.Error()), true
		}
		s.m = &m
	} else {
		tr, i, data, err := proto.DecodeChunk(payload)
		if err != nil {
			return proto.Result{}, false
		}
		if s.m != nil && tr != s.m.Transfer {
			return proto.Result{}, false
		}
		s.chunks[i] = append([]byte(nil), data...)
	}
	if s.m == nil || s.done || len(s.chunks) < s.m.Chunks {
		return proto.Result{}, false
	}
	s.done = true
	h := sha256.New()
	for i := range s.m.Chunks {
		h.Write(s.chunks[i])
	}
	if hex.EncodeToString(h.Sum(nil)) != s.m.SHA256 {
		return s.result(*s.m, proto.ResultRefused, "payload hash mismatch"), true
	}
	return s.result(*s.m, proto.ResultDone, ""), true
}

// result is the device's Result of transfer m.
func (s *simState) result(m proto.Manifest, status, reason string) proto.Result {
	return proto.Result{ID: m.Transfer, Kind: proto.KindSnapshot, Site: "s1", Device: s.device, Status: status,
		Error: reason, Version: m.Version, Time: time.Now().UTC()}
}
