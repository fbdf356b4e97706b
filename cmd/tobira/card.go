package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tobira-ac/tobira/controller"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/pcsc"
)

// cardCmd handles `tobira card inspect`: it waits for a card on a reader and
// prints what it is (token type, certificate serial, issuer, validity, chain
// result, PIN tries left) without storing anything and without touching the
// 4 basic facts.
func cardCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "inspect" {
		return fmt.Errorf("%w: card inspect [--config FILE] [--reader NAME] [--wait 30s]", errUsage)
	}
	fs := newFlagSet("card inspect", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file (for the trust anchors and reader names)")
	readerName := fs.String("reader", "", "PC/SC reader name (default: the first [[reader]] of the config)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for a card")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := controller.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	anchors, err := reader.LoadTrustAnchors(cfg.Trust.Anchors...)
	if err != nil {
		return fmt.Errorf("trust.anchors: %w", err)
	}
	v, err := reader.NewVerifier(anchors)
	if err != nil {
		return err
	}
	name := *readerName
	if name == "" {
		name = cfg.Readers[0].Name
	}
	p, err := pcsc.Open(nil)
	if err != nil {
		return fmt.Errorf("PC/SC (is pcscd running?): %w", err)
	}
	defer p.Close()
	fmt.Fprintf(stderr, "waiting up to %s for a card on %q ...\n", *wait, name)
	waitCtx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	card, err := p.Source(name).NextCard(waitCtx)
	if err != nil {
		return fmt.Errorf("reader %q: %w", name, err)
	}
	report, inspectErr := reader.Inspect(ctx, card, v, time.Now())
	// The card may stay on the reader: disconnect without waiting for it to leave.
	doneCtx, doneCancel := context.WithTimeout(ctx, time.Millisecond)
	_ = card.Done(doneCtx)
	doneCancel()
	if err := report.WriteText(stdout); err != nil {
		return err
	}
	return inspectErr
}
