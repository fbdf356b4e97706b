package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/pcsc"
)

// cardCommand is the "card" group: "card inspect".
func cardCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "card",
		Short: "Look at a card on a reader",
	}
	c.AddCommand(cardInspectCommand())
	return c
}

// cardInspectCommand is "tobira card inspect": it waits for a card on a
// reader and prints what it is (token type, certificate serial, issuer,
// validity, chain result, PIN tries left) without storing anything and
// without touching the 4 basic facts.
func cardInspectCommand() *cobra.Command {
	var readerName string
	var wait time.Duration
	c := &cobra.Command{
		Use:   "inspect [--config FILE] [--reader NAME] [--wait 30s]",
		Short: "Print what a tapped card is; stores nothing",
	}
	cfgPath := configFlag(c, "configuration file (for the trust anchors and reader names)")
	c.Flags().StringVar(&readerName, "reader", "", "PC/SC reader name (default: the first [[reader]] of the config)")
	c.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for a card")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return inspectCard(c.Context(), *cfgPath, readerName, wait, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

// inspectCard waits up to wait for a card on the reader named readerName
// (the configuration's first reader when empty) and prints what it is.
func inspectCard(ctx context.Context, cfgPath, readerName string, wait time.Duration, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(cfgPath)
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
	name := readerName
	if name == "" {
		name = cfg.Readers[0].Name
	}
	p, err := pcsc.Open(nil)
	if err != nil {
		return fmt.Errorf("PC/SC (is pcscd running?): %w", err)
	}
	defer p.Close()
	fmt.Fprintf(stderr, "waiting up to %s for a card on %q ...\n", wait, name)
	waitCtx, cancel := context.WithTimeout(ctx, wait)
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
