package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/fwcmd"
	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// releaseCommand is the "release" group: firmware releases over MQTT
// (publish, serve, devices, rollout), and sign and verify with the
// offline release key as tobira-release does (docs/FIRMWARE.md).
func releaseCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "release",
		Short: "Firmware releases over MQTT: offer, serve chunks, watch the rollout (docs/FIRMWARE.md)",
	}
	c.AddCommand(releasePublishCommand(), releaseServeCommand(), releaseDevicesCommand(), releaseRolloutCommand(),
		fwcmd.Sign(), fwcmd.Verify())
	return c
}

// releasePublish is what "release publish" was asked for.
type releasePublish struct {
	key, store, site string
	devices, groups  []string
	chunk            int
	lifetime, wait   time.Duration
}

// releasePublishCommand is "tobira-hq release publish".
func releasePublishCommand() *cobra.Command {
	var p releasePublish
	c := &cobra.Command{
		Use:   "publish --key HQ.key --site S (--device D | --group G) ... RELEASE.json [BINARY]",
		Short: "Offer a signed release to devices or groups (retained), then serve its chunks for --wait",
		Args:  cobra.RangeArgs(1, 2),
	}
	f := c.Flags()
	f.StringVar(&p.key, "key", "", "HQ signing key (PEM, as for commands and snapshots)")
	f.StringVar(&p.store, "store", "", "release store directory")
	f.StringVar(&p.site, "site", "", "site of the devices and groups")
	f.StringArrayVar(&p.devices, "device", nil, "device to offer the release to (repeatable)")
	f.StringArrayVar(&p.groups, "group", nil, "group to offer the release to (repeatable)")
	f.IntVar(&p.chunk, "chunk", proto.DefaultReleaseChunkSize, "largest chunk a device may ask for")
	f.DurationVar(&p.lifetime, "lifetime", proto.DefaultReleaseOfferLifetime, "validity of the offer")
	f.DurationVar(&p.wait, "wait", 0, "serve chunks and wait this long for the devices' results")
	bf := addBrokerFlags(c)
	sp := addSpoolFlags(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		if p.key == "" || p.site == "" || len(p.devices)+len(p.groups) == 0 {
			return cli.Usagef("publish needs --key, --site, and a --device or --group")
		}
		binary := ""
		if len(args) == 2 {
			binary = args[1]
		}
		cfg, err := bf.hqConfig(logger(c))
		if err != nil {
			return err
		}
		db, err := sp.apply(c.Context(), &cfg, logger(c))
		if err != nil {
			return err
		}
		if db != nil {
			defer db.Close()
		}
		return p.run(c.Context(), cfg, args[0], binary, c.OutOrStdout())
	}
	return c
}

// run offers the release envelope in envPath (with binary added to the
// store when given), then serves chunks and reports the devices' results
// until --wait ends.
func (p *releasePublish) run(ctx context.Context, cfg hq.Config, envPath, binary string, stdout io.Writer) error {
	priv, err := signed.ReadPrivateKey(p.key)
	if err != nil {
		return err
	}
	env, err := os.ReadFile(envPath)
	if err != nil {
		return fmt.Errorf("read release %s: %w", envPath, err)
	}
	s, err := hq.DialReleaseServer(ctx, cfg, priv, p.store)
	if err != nil {
		return err
	}
	defer s.Close()
	if binary != "" {
		if _, err := s.AddRelease(env, binary); err != nil {
			return err
		}
	}
	offers, err := s.Publish(ctx, hq.ReleasePublication{Site: p.site, Devices: p.devices, Groups: p.groups, Envelope: env,
		ChunkSize: p.chunk, Lifetime: p.lifetime})
	for _, o := range offers {
		group := ""
		if o.Group != "" {
			group = " (group " + o.Group + ")"
		}
		fmt.Fprintf(stdout, "offer %s to %s/%s%s\n", o.ID, o.Site, o.Device, group)
	}
	if err != nil || p.wait <= 0 {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, p.wait)
	defer cancel()
	for _, o := range offers {
		if o.Device == "" {
			continue // group members are not known here: watch with rollout
		}
		r, err := s.WaitResult(wctx, o.ID, o.Site, o.Device)
		if err != nil {
			fmt.Fprintf(stdout, "%s/%s: no result yet\n", o.Site, o.Device)
			continue
		}
		fmt.Fprintf(stdout, "%s/%s: %s %s\n", o.Site, o.Device, r.Status, r.Error)
	}
	<-wctx.Done() // keep serving group members until --wait ends
	fmt.Fprintf(stdout, "served %d bytes\n", s.Served())
	return nil
}

// readOnlyKey returns a throw-away signing key for release servers that
// only serve and read (they never publish an offer).
func readOnlyKey() (ed25519.PrivateKey, error) {
	_, priv, err := signed.GenerateKey()
	return priv, err
}

// releaseServeCommand is "tobira-hq release serve".
func releaseServeCommand() *cobra.Command {
	var store string
	c := &cobra.Command{
		Use:   "serve --store DIR",
		Short: "Answer the devices' chunk requests from the release store until interrupted",
	}
	c.Flags().StringVar(&store, "store", "", "release store directory")
	bf := addBrokerFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if store == "" {
			return cli.Usagef("serve needs --store DIR")
		}
		cfg, err := bf.hqConfig(logger(c))
		if err != nil {
			return err
		}
		key, err := readOnlyKey()
		if err != nil {
			return err
		}
		s, err := hq.DialReleaseServer(c.Context(), cfg, key, store)
		if err != nil {
			return err
		}
		defer s.Close()
		fmt.Fprintf(c.OutOrStdout(), "serving releases from %s on %s\n", store, cfg.Broker)
		<-c.Context().Done()
		fmt.Fprintf(c.OutOrStdout(), "served %d bytes\n", s.Served())
		return nil
	}
	return c
}

// releaseDevicesCommand is "tobira-hq release devices".
func releaseDevicesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "devices [--settle 2s]",
		Short: "Which device runs what, and its last offer (from the retained release reports)",
	}
	settle := c.Flags().Duration("settle", 2*time.Second, "wait this long after the last report arrived")
	bf := addBrokerFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		reps, err := releaseReports(c, bf, *settle)
		if err != nil {
			return err
		}
		return writeReleaseDevices(c.OutOrStdout(), reps)
	}
	return c
}

// releaseRolloutCommand is "tobira-hq release rollout".
func releaseRolloutCommand() *cobra.Command {
	var version string
	c := &cobra.Command{
		Use:   "rollout --version V [--settle 2s]",
		Short: "Committed, on trial, rolled back (and why), not yet: one release across the devices",
	}
	c.Flags().StringVar(&version, "version", "", "release version")
	settle := c.Flags().Duration("settle", 2*time.Second, "wait this long after the last report arrived")
	bf := addBrokerFlags(c)
	_ = c.MarkFlagRequired("version")
	c.RunE = func(c *cobra.Command, _ []string) error {
		reps, err := releaseReports(c, bf, *settle)
		if err != nil {
			return err
		}
		return writeRollout(c.OutOrStdout(), version, reps)
	}
	return c
}

// releaseReports collects the retained release reports from the broker,
// until none arrived for settle.
func releaseReports(c *cobra.Command, bf *brokerFlags, settle time.Duration) ([]proto.ReleaseReport, error) {
	cfg, err := bf.hqConfig(logger(c))
	if err != nil {
		return nil, err
	}
	key, err := readOnlyKey()
	if err != nil {
		return nil, err
	}
	s, err := hq.DialReleaseServer(c.Context(), cfg, key, "")
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.WaitQuiet(c.Context(), settle); err != nil {
		return nil, fmt.Errorf("collect release reports: %w", err)
	}
	return s.Reports(), nil
}

// writeReleaseDevices writes one line per device: running, committed,
// pending, last trial and last offer.
func writeReleaseDevices(w io.Writer, reps []proto.ReleaseReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tRUNNING\tCOMMITTED\tPENDING\tLAST TRIAL\tLAST OFFER\tREPORTED")
	for _, r := range reps {
		trial, offer := "-", "-"
		if l := r.Firmware.Last; l != nil {
			trial = strings.TrimSpace(fmt.Sprintf("%s %s %s", l.Version, l.Outcome, l.Reason))
		}
		if o := r.Offer; o != nil {
			offer = strings.TrimSpace(fmt.Sprintf("%s %s %s", o.Version, o.State, o.Reason))
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Site, r.Device, cli.OrDash(r.Firmware.Running),
			cli.OrDash(r.Firmware.Committed), cli.OrDash(r.Firmware.Pending), trial, offer, r.Time.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// writeRollout writes the rollout of version: counts, the devices that
// rolled it back (with the reason) and those that refused its offer.
func writeRollout(w io.Writer, version string, reps []proto.ReleaseReport) error {
	r := firmware.CountRollout(hq.FirmwareReports(reps), version)
	fmt.Fprintf(w, "release %s: %d committed, %d on trial, %d rolled back, %d not yet\n",
		version, r.Committed, r.Trial, r.RolledBack, r.Other)
	for _, f := range r.Failed {
		fmt.Fprintf(w, "  rolled back: %s\n", f)
	}
	for _, rep := range reps {
		if o := rep.Offer; o != nil && o.Version == version && o.State != proto.OfferInstalled {
			fmt.Fprintf(w, "  offer %s: %s/%s %s %s\n", o.State, rep.Site, rep.Device, o.Reason, o.Error)
		}
	}
	return nil
}
