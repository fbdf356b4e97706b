package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/auth"
)

// consoleTapEvery is how often the demo taps a card while the console
// runs, so that an admin watches the taps arrive live.
const consoleTapEvery = 3 * time.Second

// consoleUser is the demo console's administrator.
const consoleUser = "admin"

// consoleSetup is what the console mode of the demo needs.
type consoleSetup struct {
	dir    string // the demo's temporary directory (console.db goes there)
	broker string
	hq     *hq.Service
	key    ed25519.PrivateKey // signs the door commands
	cards  []demoCard
	taps   *demoReader
	log    *slog.Logger
}

// runConsole serves HQ's console on a free port of 127.0.0.1, prints its
// URL and a one-time admin login, and taps the cards in turn every
// consoleTapEvery until ctx ends.
func (d *demoEdge) runConsole(ctx context.Context, cs consoleSetup, stdout io.Writer) error {
	st, err := console.OpenStores(filepath.Join(cs.dir, "console.db"), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	password := auth.RandomPassword()
	hash, err := auth.HashPassword(password, auth.DefaultParams)
	if err != nil {
		return err
	}
	if err := st.Accounts.Add(ctx, auth.User{Name: consoleUser, Role: auth.Administrator, Sites: []string{auth.AllSites},
		PasswordHash: hash, MustChange: true}); err != nil {
		return err
	}
	sender, err := hq.DialSender(ctx, hq.Config{Broker: cs.broker, Logger: cs.log}, cs.key)
	if err != nil {
		return err
	}
	defer sender.Close()
	con, err := console.New(console.Config{HQ: cs.hq, Commands: sender, Accounts: st.Accounts, Audit: st.Audit, Alarms: st.Alarms, Ops: st.Ops, Logger: cs.log})
	if err != nil {
		return err
	}
	cs.hq.OnEvent(con.Publish)
	defer cs.hq.OnEvent(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("console listener: %w", err)
	}
	ctx, stop := context.WithCancel(ctx) // the taps stop when the console does
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- console.Serve(ctx, ln, con, cs.log)
		stop()
	}()
	go func() { _ = con.Sweep(ctx, 0) }() // offline and stale-revocation alarms

	fmt.Fprintf(stdout, "\nconsole: http://%s/\n", ln.Addr())
	fmt.Fprintf(stdout, "console: log in as %s with the one-time password %s (you choose your own next)\n", consoleUser, password)
	fmt.Fprintf(stdout, "console: tapping a card every %s; Ctrl-C stops the demo\n\n", consoleTapEvery)
	printHeader(stdout)
	d.tapForever(ctx, cs.cards, cs.taps, stdout)
	return <-served
}

// tapForever taps the cards in turn every consoleTapEvery until ctx ends.
// A tap that fails (e.g. the door was locked down from the console and
// an unlocked mode keeps the relay open) is printed, not fatal.
func (d *demoEdge) tapForever(ctx context.Context, cards []demoCard, r *demoReader, stdout io.Writer) {
	tick := time.NewTicker(consoleTapEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		dc := cards[i%len(cards)]
		tap, movement, err := d.tap(ctx, dc, r)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			fmt.Fprintf(stdout, "card %q: %v\n", dc.label, err)
		default:
			printTap(stdout, dc, tap, movement)
		}
	}
}
