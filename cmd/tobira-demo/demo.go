package main

import (
	"context"
	"crypto/ed25519"
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
	"time"

	"golang.org/x/sync/errgroup"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/controller"
	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/broker"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/internal/signed"
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

// Names of the demo's device.
const (
	demoSite   = "demo-site"
	demoDevice = "demo-door-ctl"
	demoDoor   = "front"
)

// runDemo runs the whole loop in one process: an embedded MQTT broker, an
// in-process HQ, one door on a simulated GPIO relay, and simulated My Number
// Cards tapped one after another. It fails unless every tap got the reason
// it should and every event was acknowledged by HQ.
//
// With opts.console it then keeps running until ctx ends: it serves the
// console, prints its URL and a one-time admin login, and keeps tapping.
func runDemo(ctx context.Context, stdout, stderr io.Writer, opts demoOptions) error {
	log, brokerLog := demoLoggers(stderr, opts.verbose)
	dir, err := os.MkdirTemp("", "tobira-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The network side: an embedded broker and HQ, on loopback only.
	// The broker outlives the clients: it is closed after they disconnect.
	brk, err := broker.Start(context.WithoutCancel(ctx), "127.0.0.1:0", brokerLog)
	if err != nil {
		return fmt.Errorf("start embedded MQTT broker: %w", err)
	}
	defer brk.Close()
	hqs, err := hq.Open(hq.Config{Broker: brk.URL(), ClientID: "tobira-hq-demo", Path: filepath.Join(dir, "hq.db"), Logger: log})
	if err != nil {
		return err
	}
	defer hqs.Close()

	cards, trusted, snap, err := demoCards(time.Now())
	if err != nil {
		return err
	}
	pub, priv, err := signed.GenerateKey() // signs the console's door commands
	if err != nil {
		return err
	}
	d, err := openDemoEdge(ctx, dir, brk.URL(), snap, pub, log)
	if err != nil {
		return err
	}
	defer d.close()

	// Every goroutine ends before the stores close (the defers above).
	ctx, cancel := context.WithCancel(ctx)
	g, ctx := errgroup.WithContext(ctx)
	defer g.Wait()
	defer cancel()
	if err := startLink(ctx, g, hqs, d.edge); err != nil {
		return err
	}
	taps, err := d.startReader(ctx, g, trusted, log)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "tobira demo: broker %s, HQ in-process, door %q on simulated relay %s (fail-secure, pulse %s)\n",
		brk.Addr(), demoDoor, d.relay.N, demoPulse)
	fmt.Fprintf(stdout, "relay %s was left energised (as after a crash); at start it was driven %s = locked\n", d.relay.N, d.relay.Read())
	fmt.Fprintf(stdout, "snapshot v%d: %d allowed, %d revoked; %d trust anchor(s)\n\n",
		snap.Version, len(snap.Allow), len(snap.Revoked), len(trusted))
	t, err := d.tapAll(ctx, cards, taps, stdout)
	if err != nil {
		if gerr := stopGroup(cancel, g); gerr != nil {
			return gerr // the reason the taps stopped
		}
		return err
	}
	if err := d.summarise(ctx, hqs, t, stdout); err != nil || !opts.console {
		return err
	}
	return d.runConsole(ctx, consoleSetup{dir: dir, broker: brk.URL(), hq: hqs, key: priv, cards: cards, taps: taps, log: log}, stdout)
}

// demoOptions are the demo's command-line options.
type demoOptions struct {
	// verbose logs every step to stderr.
	verbose bool
	// console keeps the demo running with the console served.
	console bool
}

// demoLoggers returns the demo's logger and the embedded broker's. mochi
// logs every closed client connection as a warning; the demo shows the
// broker's errors only, unless verbose.
func demoLoggers(stderr io.Writer, verbose bool) (log, brokerLog *slog.Logger) {
	level, brokerLevel := slog.LevelWarn, slog.LevelError
	if verbose {
		level, brokerLevel = slog.LevelDebug, slog.LevelDebug
	}
	log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	brokerLog = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: brokerLevel}))
	return log, brokerLog
}

// startLink runs HQ and then the edge's link in g. HQ subscribes first, as
// it would be at a real site: events published while nobody listens wait
// for the edge's ack timeout to be sent again (nothing is lost, but the
// demo would pause for it).
func startLink(ctx context.Context, g *errgroup.Group, hqs *hq.Service, edge *tsync.Edge) error {
	g.Go(func() error { return hqs.Run(ctx) })
	select {
	case <-hqs.Ready():
	case <-time.After(10 * time.Second):
		return errors.New("in-process HQ did not subscribe to the embedded broker within 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
	g.Go(func() error { return edge.Run(ctx) })
	return nil
}

// stopGroup cancels the group and returns the first error one of its
// goroutines returned, if any.
func stopGroup(cancel context.CancelFunc, g *errgroup.Group) error {
	cancel()
	return g.Wait()
}

// demoEdge is the device side of the demo: snapshot store, outbox, HQ
// link, and a door on a simulated relay pin.
type demoEdge struct {
	store  *policy.Store
	outbox *tsync.Outbox
	edge   *tsync.Edge
	relay  *gpiotest.Pin
	lock   *door.Door
	moves  chan door.Change // the door's changes, for the relay column
	closes []func() error
}

// openDemoEdge opens the device's stores in dir, applies snap, and builds
// the door and the link to url, which carries out the commands signed by
// the key of pub. The door's changes become events.
func openDemoEdge(ctx context.Context, dir, url string, snap policy.Snapshot, pub ed25519.PublicKey, log *slog.Logger) (_ *demoEdge, err error) {
	d := &demoEdge{moves: make(chan door.Change, 16)}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.store, err = policy.Open(filepath.Join(dir, "policy.db"), log); err != nil {
		return nil, err
	}
	d.closes = append(d.closes, d.store.Close)
	if err := d.store.ApplyFull(ctx, snap); err != nil {
		return nil, fmt.Errorf("apply demo snapshot: %w", err)
	}
	if d.outbox, err = tsync.OpenOutbox(filepath.Join(dir, "events.db")); err != nil {
		return nil, err
	}
	d.closes = append(d.closes, d.outbox.Close)
	d.relay = &gpiotest.Pin{N: "GPIO17", L: gpio.High} // as a crash might have left it: energised
	if d.lock, err = door.New(door.Config{Name: demoDoor, PulseLength: demoPulse}, d.relay, clock.System{}, log); err != nil {
		return nil, err
	}
	d.closes = append(d.closes, d.lock.Close)
	commands := &controller.Commands{Doors: map[string]controller.CommandDoor{demoDoor: d.lock}, Modes: d.outbox, Policy: d.store,
		Log: log, Resync: func() { d.edge.PublishStatus() }}
	if d.edge, err = tsync.NewEdge(tsync.EdgeConfig{Broker: url, Site: demoSite, Device: demoDevice, Logger: log,
		Keys: []ed25519.PublicKey{pub}, Commands: commands,
		Status: controller.DeviceStatus(version, d.store, []controller.StatusDoor{d.lock}, d.outbox, nil)}, d.outbox); err != nil {
		return nil, err
	}
	d.lock.Observe(func(c door.Change) {
		select {
		case d.moves <- c:
		default: // nobody watches the relay (a command's changes, in console mode)
		}
	})
	controller.RecordDoorChanges(d.lock, d.outbox, d.edge.Notify, log)
	return d, nil
}

// close closes what openDemoEdge opened, last first.
func (d *demoEdge) close() {
	for i := len(d.closes) - 1; i >= 0; i-- {
		_ = d.closes[i]()
	}
}

// startReader runs the reader loop of the demo door in g, on a simulated
// card slot, and returns the taps it reports.
func (d *demoEdge) startReader(ctx context.Context, g *errgroup.Group, trusted []*x509.Certificate, log *slog.Logger) (*demoReader, error) {
	verifier, err := reader.NewVerifier(trusted)
	if err != nil {
		return nil, err
	}
	identifier, err := reader.NewIdentifier(reader.IdentifierConfig{Verifier: verifier, Log: log})
	if err != nil {
		return nil, err
	}
	r := &demoReader{slot: cardsim.NewSlot(), taps: make(chan controller.Tap, 1)}
	loop := &controller.ReaderLoop{Door: demoDoor, Reader: "simulated-0", Direction: "in", Source: r.slot,
		Identifier: identifier, Decider: d.store, Lock: d.lock,
		Events: d.outbox, Notify: d.edge.Notify, OnTap: func(t controller.Tap) { r.taps <- t }, Log: log}
	g.Go(func() error { return loop.Run(ctx) })
	return r, nil
}

// demoReader is the simulated card slot and the taps it led to.
type demoReader struct {
	slot *cardsim.Slot
	taps chan controller.Tap
}

// tally counts the taps and the cards that got another reason than they
// should.
type tally struct {
	taps, granted, denied int
	mismatches            []string
}

// tapAll taps every card in turn and prints one table line per tap.
func (d *demoEdge) tapAll(ctx context.Context, cards []demoCard, r *demoReader, stdout io.Writer) (tally, error) {
	printHeader(stdout)
	var t tally
	for _, dc := range cards {
		tap, movement, err := d.tap(ctx, dc, r)
		if err != nil && ctx.Err() != nil {
			return t, ctx.Err()
		}
		if err != nil {
			return t, fmt.Errorf("card %q: %w", dc.label, err)
		}
		t.taps++
		if tap.Decision.Granted {
			t.granted++
		} else {
			t.denied++
		}
		printTap(stdout, dc, tap, movement)
		if tap.Decision.Reason != dc.want {
			t.mismatches = append(t.mismatches, fmt.Sprintf("%s: got %s, want %s", dc.label, tap.Decision.Reason, dc.want))
		}
	}
	return t, nil
}

// printHeader prints the header of the taps' table.
func printHeader(stdout io.Writer) {
	fmt.Fprintf(stdout, "%-6s %-28s %-10s %-7s %-19s %-9s %-9s %s\n",
		"DOOR", "CARD", "SERIAL", "RESULT", "REASON", "READ", "DECIDE", "RELAY")
}

// printTap prints the table line of one tap.
func printTap(stdout io.Writer, dc demoCard, tap controller.Tap, movement string) {
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
}

// tap inserts one card and waits for its decision and, after a grant, for
// the relay to unlock and relock.
func (d *demoEdge) tap(ctx context.Context, dc demoCard, r *demoReader) (controller.Tap, string, error) {
	r.slot.Insert(dc.card)
	var tap controller.Tap
	select {
	case tap = <-r.taps:
	case <-ctx.Done():
		return tap, "", ctx.Err()
	case <-time.After(30 * time.Second):
		return tap, "", errors.New("no decision within 30s")
	}
	if !tap.Decision.Granted {
		return tap, "stays locked", nil
	}
	movement, err := waitRelock(ctx, d.moves)
	return tap, movement, err
}

// summarise waits until every event reached HQ and was acknowledged end to
// end, prints the totals, and fails on any mismatch or missing event. Door
// changes are recorded by their own observer, so it waits until the outbox
// is drained and no event was added meanwhile.
func (d *demoEdge) summarise(ctx context.Context, hqs *hq.Service, t tally, stdout io.Writer) error {
	made, drainErr, err := d.drain(ctx)
	if err != nil {
		return err
	}
	acked := d.edge.Acked()
	stored, err := hqs.Count()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nHQ stored %d event(s); outbox acknowledged up to seq %d of %d\n", stored, acked, made)
	fmt.Fprintf(stdout, "demo: %d taps, %d granted, %d denied, %d events acknowledged by HQ\n",
		t.taps, t.granted, t.denied, acked)
	problems := t.mismatches
	if drainErr != nil || acked != made || uint64(stored) != made {
		problems = append(problems, fmt.Sprintf("%d events made, %d acknowledged, %d stored at HQ (%v)", made, acked, stored, drainErr))
	}
	if len(problems) > 0 {
		return errors.New("demo failed: " + strings.Join(problems, "; "))
	}
	return nil
}

// drain waits, at most 20s, until the outbox is empty and no event was
// appended meanwhile. It returns how many events were made, and why the
// wait ended early (drainErr); err is a failure to read the outbox.
func (d *demoEdge) drain(ctx context.Context) (made uint64, drainErr, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if made, err = d.outbox.LastSeq(); err != nil {
			return 0, nil, err
		}
		if drainErr = d.edge.WaitDrained(ctx); drainErr != nil {
			return made, drainErr, nil
		}
		if again, err := d.outbox.LastSeq(); err != nil || again == made {
			return made, nil, nil
		}
	}
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
