package controller

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/pcsc"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
	tsync "github.com/tobira-ac/tobira/sync"
)

// TestSpineEndToEnd runs one door on real parts: pcscd + vpcd + the card
// simulator for the card, real bbolt files, a real mosquitto on loopback
// between the edge and HQ, and a gpiotest relay. A card is inserted, tobira
// reads it through ebfe/scard, decides, pulses the relay, and the event
// reaches HQ and is acknowledged; the outbox is then empty. A second,
// unknown card is denied and its event delivered as well.
func TestSpineEndToEnd(t *testing.T) {
	pcsctest.Start(t)
	mq := mosquittotest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.Default()
	}
	dir := t.TempDir()

	ca, _ := testPKI()
	enrolled := testCard(t, 0x3001, time.Now().AddDate(1, 0, 0))
	stranger := testCard(t, 0x3002, time.Now().AddDate(1, 0, 0))

	store, err := policy.Open(filepath.Join(dir, "policy.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	enrolledCred := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: ca.Cert.SubjectKeyId, Serial: []byte{0x30, 0x01}}
	if err := store.ApplyFull(ctx, oneDoorSnapshot("front", policy.Entry{Credential: enrolledCred, Person: "p-1"})); err != nil {
		t.Fatal(err)
	}
	outbox, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer outbox.Close()
	h, err := hq.Open(hq.Config{Broker: mq.URL(), ClientID: "hq-spine-test", Path: filepath.Join(dir, "hq.db"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	edge, err := tsync.NewEdge(tsync.EdgeConfig{Broker: mq.URL(), Site: "test-site", Device: "door-ctl-1", Logger: log}, outbox)
	if err != nil {
		t.Fatal(err)
	}

	relay := &gpiotest.Pin{N: "GPIO17", L: gpio.High} // left energised, as after a crash
	clk := clocktest.New(time.Now())
	contact := &gpiotest.Pin{N: "GPIO27", L: gpio.Low} // door closed
	lock, err := door.NewDoor(door.Config{Name: "front", PulseLength: 5 * time.Second}, door.Pins{Relay: relay, Contact: contact}, clk, log)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if relay.Read() != gpio.Low {
		t.Fatal("door.New did not drive the fail-secure relay low (locked)")
	}

	pc, err := pcsc.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	verifier, err := reader.NewVerifier([]*x509.Certificate{ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	taps := make(chan Tap, 2)
	identifier, err := reader.NewIdentifier(reader.IdentifierConfig{Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	loop := &ReaderLoop{Door: "front", Reader: pcsctest.Reader, Direction: "in", Source: pc.Source(pcsctest.Reader), Identifier: identifier, Decider: store, Lock: lock,
		Events: outbox, Notify: edge.Notify, OnTap: func(tp Tap) { taps <- tp }, Log: log}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	go func() { _ = h.Run(runCtx); done <- struct{}{} }()
	go func() { _ = edge.Run(runCtx); done <- struct{}{} }()
	go func() { _ = loop.Run(runCtx); done <- struct{}{} }()
	defer func() {
		stop()
		for range 3 {
			<-done
		}
	}()

	present := func(c *cardsim.Card) Tap {
		t.Helper()
		bridge := pcsctest.Insert(t, c)
		var tap Tap
		select {
		case tap = <-taps:
		case <-ctx.Done():
			t.Fatal("no tap within the test deadline")
		}
		if err := bridge.Remove(); err != nil { // the card leaves the reader
			t.Fatal(err)
		}
		pcsctest.WaitCard(t, false)
		return tap
	}

	tap := present(enrolled)
	if !tap.Decision.Granted || tap.Decision.Reason != policy.ReasonEnrolled {
		t.Fatalf("enrolled card: decision %+v, read error %v", tap.Decision, tap.ReadErr)
	}
	if got := tap.Identity.Credential.SerialHex(); got != "3001" {
		t.Errorf("serial read through PC/SC = %s, want 3001", got)
	}
	if relay.Read() != gpio.High {
		t.Error("relay not energised (unlocked) after a grant")
	}
	if clk.Pending() == 0 {
		t.Fatal("no relock timer armed after a grant")
	}
	clk.Advance(5 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for relay.Read() != gpio.Low && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if relay.Read() != gpio.Low {
		t.Error("relay did not relock after the pulse")
	}

	tap2 := present(stranger)
	if tap2.Decision.Granted || tap2.Decision.Reason != policy.ReasonNotEnrolled {
		t.Fatalf("unknown card: decision %+v, read error %v", tap2.Decision, tap2.ReadErr)
	}

	if err := edge.WaitDrained(ctx); err != nil {
		t.Fatalf("outbox not drained: %v", err)
	}
	if depth, err := outbox.Depth(); err != nil || depth != 0 {
		t.Errorf("outbox depth after HQ ack = %d (%v), want 0", depth, err)
	}
	evs, err := h.Events("test-site", "door-ctl-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("HQ stored %d events, want 2: %+v", len(evs), evs)
	}
	key, _ := enrolledCred.Key()
	if evs[0].Seq != 1 || !evs[0].Granted || evs[0].Reason != "enrolled" || evs[0].Credential != hex.EncodeToString(key) {
		t.Errorf("HQ event 1 = %+v", evs[0])
	}
	if evs[1].Seq != 2 || evs[1].Granted || evs[1].Reason != "not_enrolled" {
		t.Errorf("HQ event 2 = %+v", evs[1])
	}
	if edge.Acked() != 2 {
		t.Errorf("edge acked = %d, want 2", edge.Acked())
	}
}
