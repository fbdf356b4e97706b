package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/controller"
	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/broker"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	tsync "github.com/tobira-ac/tobira/sync"
)

// demoCard is one simulated card the demo taps, with the reason it must get.
type demoCard struct {
	label string
	card  *cardsim.Card
	want  policy.Reason
}

// demoPulse is the demo door's unlock time: short, so the demo is quick.
const demoPulse = 300 * time.Millisecond

// runDemo runs the whole loop in one process: an embedded MQTT broker, an
// in-process HQ, one door on a simulated GPIO relay, and simulated My Number
// Cards tapped one after another. It fails unless every tap got the reason
// it should and every event was acknowledged by HQ.
func runDemo(ctx context.Context, stdout, stderr io.Writer, verbose bool) error {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	dir, err := os.MkdirTemp("", "tobira-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The network side: an embedded broker and HQ, on loopback only.
	// The broker outlives the clients: it is closed after they disconnect.
	// mochi logs every closed client connection as a warning; the demo
	// shows the broker's errors only, unless --verbose.
	brokerLevel := slog.LevelError
	if verbose {
		brokerLevel = level
	}
	brokerLog := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: brokerLevel}))
	brk, err := broker.Start(context.WithoutCancel(ctx), "127.0.0.1:0", brokerLog)
	if err != nil {
		return fmt.Errorf("start embedded MQTT broker: %w", err)
	}
	defer brk.Close()
	hq, err := hq.Open(hq.Config{Broker: brk.URL(), ClientID: "tobira-hq-demo",
		Path: filepath.Join(dir, "hq.db"), Logger: log})
	if err != nil {
		return err
	}
	defer hq.Close()

	// Test PKI in the JPKI shape, and the cards.
	cards, trusted, snap, err := demoCards(time.Now())
	if err != nil {
		return err
	}
	verifier, err := reader.NewVerifier(trusted)
	if err != nil {
		return err
	}

	// The edge: snapshot store, outbox, HQ link, door on a simulated pin.
	store, err := policy.Open(filepath.Join(dir, "policy.db"), log)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.ApplyFull(ctx, snap); err != nil {
		return fmt.Errorf("apply demo snapshot: %w", err)
	}
	outbox, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		return err
	}
	defer outbox.Close()
	edge, err := tsync.NewEdge(tsync.EdgeConfig{Broker: brk.URL(), Site: "demo-site", Device: "demo-door-ctl",
		Logger: log}, outbox)
	if err != nil {
		return err
	}
	relay := &gpiotest.Pin{N: "GPIO17", L: gpio.High} // as a crash might have left it: energised
	lock, err := door.New(door.Config{Name: "front", PulseLength: demoPulse}, relay, clock.System{}, log)
	if err != nil {
		return err
	}
	defer lock.Close()
	moves := make(chan door.Change, 16)
	lock.Observe(func(c door.Change) { moves <- c })
	controller.RecordDoorChanges(lock, outbox, edge.Notify, log)

	var wg gosync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// HQ subscribes first, as it would be at a real site: events published
	// while nobody listens wait for the edge's ack timeout to be sent again
	// (nothing is lost, but the demo would pause for it).
	wg.Add(1)
	go func() { defer wg.Done(); _ = hq.Run(ctx) }()
	select {
	case <-hq.Ready():
	case <-time.After(10 * time.Second):
		return errors.New("in-process HQ did not subscribe to the embedded broker within 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = edge.Run(ctx) }()

	slot := cardsim.NewSlot()
	taps := make(chan controller.Tap, 1)
	identifier, err := reader.NewIdentifier(reader.IdentifierConfig{Verifier: verifier, Log: log})
	if err != nil {
		return err
	}
	loop := &controller.ReaderLoop{Door: "front", Reader: "simulated-0", Direction: "in", Source: slot,
		Identifier: identifier, Decider: store, Lock: lock,
		Events: outbox, Notify: edge.Notify, OnTap: func(t controller.Tap) { taps <- t }, Log: log}
	wg.Add(1)
	go func() { defer wg.Done(); _ = loop.Run(ctx) }()

	fmt.Fprintf(stdout, "tobira demo: broker %s, HQ in-process, door %q on simulated relay %s (fail-secure, pulse %s)\n",
		brk.Addr(), "front", relay.N, demoPulse)
	fmt.Fprintf(stdout, "relay %s was left energised (as after a crash); at start it was driven %s = locked\n", relay.N, relay.Read())
	fmt.Fprintf(stdout, "snapshot v%d: %d allowed, %d revoked; %d trust anchor(s)\n\n",
		snap.Version, len(snap.Allow), len(snap.Revoked), len(trusted))
	fmt.Fprintf(stdout, "%-6s %-28s %-10s %-7s %-19s %-9s %-9s %s\n",
		"DOOR", "CARD", "SERIAL", "RESULT", "REASON", "READ", "DECIDE", "RELAY")

	var granted, denied int
	var mismatches []string
	for _, dc := range cards {
		slot.Insert(dc.card)
		var tap controller.Tap
		select {
		case tap = <-taps:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return fmt.Errorf("card %q: no decision within 30s", dc.label)
		}
		movement := "stays locked"
		if tap.Decision.Granted {
			granted++
			movement, err = waitRelock(ctx, moves)
			if err != nil {
				return fmt.Errorf("card %q: %w", dc.label, err)
			}
		} else {
			denied++
		}
		result := "DENIED"
		if tap.Decision.Granted {
			result = "GRANTED"
		}
		serial := "-"
		if c := tap.Identity.Cert; c != nil {
			serial = hex.EncodeToString(c.SerialNumber.Bytes())
		}
		fmt.Fprintf(stdout, "%-6s %-28s %-10s %-7s %-19s %-9s %-9s %s\n", tap.Door, dc.label, serial, result,
			tap.Decision.Reason, round(tap.ReadTime), round(tap.DecideTime), movement)
		if tap.Decision.Reason != dc.want {
			mismatches = append(mismatches, fmt.Sprintf("%s: got %s, want %s", dc.label, tap.Decision.Reason, dc.want))
		}
	}

	// Every event must reach HQ and be acknowledged end to end. Door
	// changes are recorded by their own observer, so wait until the outbox
	// is drained and no event was added meanwhile.
	drainCtx, drainCancel := context.WithTimeout(ctx, 20*time.Second)
	var made uint64
	var drainErr error
	for {
		if made, err = outbox.LastSeq(); err != nil {
			drainCancel()
			return err
		}
		if drainErr = edge.WaitDrained(drainCtx); drainErr != nil {
			break
		}
		if again, err := outbox.LastSeq(); err != nil || again == made {
			break
		}
	}
	drainCancel()
	acked := edge.Acked()
	stored, err := hq.Count()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nHQ stored %d event(s); outbox acknowledged up to seq %d of %d\n", stored, acked, made)
	fmt.Fprintf(stdout, "demo: %d taps, %d granted, %d denied, %d events acknowledged by HQ\n",
		len(cards), granted, denied, acked)
	var problems []string
	problems = append(problems, mismatches...)
	if drainErr != nil || acked != made || uint64(stored) != made {
		problems = append(problems, fmt.Sprintf("%d events made, %d acknowledged, %d stored at HQ (%v)", made, acked, stored, drainErr))
	}
	if len(problems) > 0 {
		return errors.New("demo failed: " + strings.Join(problems, "; "))
	}
	return nil
}

// waitRelock waits for the relay to open and close again after a grant and
// describes the movement.
func waitRelock(ctx context.Context, moves <-chan door.Change) (string, error) {
	var opened time.Time
	timeout := time.After(10 * time.Second)
	for {
		select {
		case c := <-moves:
			if c.Unlocked && opened.IsZero() {
				opened = c.Time
			} else if !c.Unlocked && !opened.IsZero() {
				return fmt.Sprintf("unlocked, relocked after %s", round(c.Time.Sub(opened))), nil
			}
		case <-timeout:
			return "", errors.New("relay did not unlock and relock within 10s")
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// round shortens a duration for the table.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// demoCards makes a test PKI in the JPKI shape (a trusted CA and a foreign
// one), the six cards of the demo, and the snapshot HQ would push.
func demoCards(now time.Time) ([]demoCard, []*x509.Certificate, policy.Snapshot, error) {
	ca, err := jpkitest.NewCA("demo-2023", now.AddDate(-2, 0, 0), now.AddDate(10, 0, 0))
	if err != nil {
		return nil, nil, policy.Snapshot{}, fmt.Errorf("make demo CA: %w", err)
	}
	rogue, err := jpkitest.NewCA("rogue", now.AddDate(-2, 0, 0), now.AddDate(10, 0, 0))
	if err != nil {
		return nil, nil, policy.Snapshot{}, fmt.Errorf("make foreign CA: %w", err)
	}
	// One key for every card: RSA-2048 generation is slow, and the demo
	// exercises certificates, not keys.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, policy.Snapshot{}, err
	}
	valid := func(issuer *jpkitest.CA, serial uint32) ([]byte, error) {
		return issuer.IssueAuthCert(serial, now.AddDate(-1, 0, 0), now.AddDate(4, 0, 0), key)
	}
	type spec struct {
		label  string
		issuer *jpkitest.CA
		serial uint32
		der    func() ([]byte, error)
		token  string
		want   policy.Reason
	}
	specs := []spec{
		{label: "employee (enrolled)", issuer: ca, serial: 0x0a11ce01, token: "JPKIAPICCTOKEN2", want: policy.ReasonEnrolled},
		{label: "visitor (not enrolled)", issuer: ca, serial: 0x0b0b0002, token: "JPKIAPICCTOKEN2", want: policy.ReasonNotEnrolled},
		{label: "revoked certificate", issuer: ca, serial: 0x0dead003, token: "JPKIAPICCTOKEN2", want: policy.ReasonRevoked},
		{label: "expired certificate", issuer: ca, serial: 0x0e0e0004, token: "JPKIAPICCTOKEN2", want: policy.ReasonExpired,
			der: func() ([]byte, error) {
				return ca.IssueAuthCert(0x0e0e0004, now.AddDate(-6, 0, 0), now.AddDate(-1, 0, 0), key)
			}},
		{label: "certificate of a foreign CA", issuer: rogue, serial: 0x0f0f0005, token: "JPKIAPICCTOKEN2", want: policy.ReasonUntrustedIssuer},
		{label: "transit IC card (no JPKI)", token: "", want: policy.ReasonNotMyNumberCard},
	}
	var out []demoCard
	for _, s := range specs {
		p := cardsim.Profile{TokenLabel: s.token, PIN: "1234", Tries: 3}
		if s.issuer != nil {
			der := s.der
			if der == nil {
				der = func() ([]byte, error) { return valid(s.issuer, s.serial) }
			}
			if p.AuthCert, err = der(); err != nil {
				return nil, nil, policy.Snapshot{}, fmt.Errorf("issue demo card %q: %w", s.label, err)
			}
			p.CACert = s.issuer.DER
		}
		out = append(out, demoCard{label: s.label, card: cardsim.New(p), want: s.want})
	}
	kid := ca.Cert.SubjectKeyId
	cert := func(serial uint32) credential.Credential {
		return credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kid,
			Serial: new(big.Int).SetUint64(uint64(serial)).Bytes()}
	}
	staff := []string{"staff"}
	snap := policy.Snapshot{
		Version: 1,
		Allow: []policy.Entry{
			{Credential: cert(0x0a11ce01), Person: "p-0001"},
			{Credential: cert(0x0dead003), Person: "p-0003"},
			{Credential: cert(0x0e0e0004), Person: "p-0004"},
		},
		Revoked: []policy.Revocation{{IssuerKeyID: kid, Serial: cert(0x0dead003).Serial}},
		People:  []policy.Person{{ID: "p-0001", Groups: staff}, {ID: "p-0003", Groups: staff}, {ID: "p-0004", Groups: staff}},
		Doors:   []policy.Door{{ID: "front", Groups: []string{"offices"}}},
		Levels:  []policy.AccessLevel{{ID: "staff-offices", Group: "staff", DoorGroup: "offices"}},
	}
	return out, []*x509.Certificate{ca.Cert}, snap, nil
}
