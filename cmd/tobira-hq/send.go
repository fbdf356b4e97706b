package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// dial reads the signing key and connects a Sender.
func dial(ctx context.Context, bf *brokerFlags, keyFile, spool string, log *slog.Logger) (*hq.Sender, error) {
	if keyFile == "" {
		return nil, cli.Usagef("--key is required (see tobira-hq keygen)")
	}
	priv, err := signed.ReadPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	cfg, err := bf.hqConfig(log)
	if err != nil {
		return nil, err
	}
	cfg.Spool = spool
	return hq.DialSender(ctx, cfg, priv)
}

// waitResults waits up to d for the results of ids and prints them; an id
// without a result, or a result other than done, is an error.
func waitResults(ctx context.Context, s *hq.Sender, d time.Duration, ids []string, stdout io.Writer) error {
	if d <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var bad []string
	for _, id := range ids {
		r, err := s.WaitResult(ctx, id)
		if err != nil {
			bad = append(bad, id+": no result")
			continue
		}
		b, _ := json.Marshal(r)
		fmt.Fprintln(stdout, string(b))
		if r.Status != proto.ResultDone {
			bad = append(bad, fmt.Sprintf("%s/%s %s: %s: %s", r.Site, r.Device, id, r.Status, r.Error))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d not done: %s", len(bad), len(ids), strings.Join(bad, "; "))
	}
	return nil
}

// snapshotCommand is the "snapshot" group: "snapshot publish".
func snapshotCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "Signed allowlist snapshots for the devices",
	}
	c.AddCommand(snapshotPublishCommand())
	return c
}

// snapshotPublish is what "snapshot publish" was asked for.
type snapshotPublish struct {
	key, file, site, spool string
	reg                    registryAt
	full, delta            bool
	statusWait, wait       time.Duration
	version, from          uint64
	devices                []string
	chunk                  int
}

// snapshotPublishCommand is "tobira-hq snapshot publish".
func snapshotPublishCommand() *cobra.Command {
	var p snapshotPublish
	c := &cobra.Command{
		Use:   "publish (--full | --delta) --site S [--device D ...] | --file F --version N [--delta-from M] --site S --device D ...",
		Short: "Sign and send a snapshot: built from the registry, or a prepared payload file",
		Long: `Sign and send a snapshot to devices.

From the registry (--full or --delta): a delta from each device's reported version
(full when none fits), to the named devices or every device of the site with a status.
From a payload file (--file): that file as version N (a delta from M with --delta-from).`,
	}
	f := c.Flags()
	f.StringVar(&p.key, "key", "", "HQ signing key (PREFIX.key from keygen)")
	f.StringVar(&p.file, "file", "", "snapshot payload file (instead of the registry)")
	registryFlagVar(c, &p.reg)
	f.BoolVar(&p.full, "full", false, "from the registry: send full snapshots")
	f.BoolVar(&p.delta, "delta", false, "from the registry: send each device a delta from its reported version (full when none fits)")
	f.DurationVar(&p.statusWait, "status-wait", time.Second, "from the registry: how long to collect the devices' retained status")
	f.Uint64Var(&p.version, "version", 0, "with --file: snapshot version the devices have after applying it")
	f.Uint64Var(&p.from, "delta-from", 0, "with --file: publish a delta from this version")
	f.StringVar(&p.site, "site", "", "site of the devices")
	f.StringArrayVar(&p.devices, "device", nil, "device name (repeat for several)")
	f.StringVar(&p.spool, "spool", "", "the HQ service's spool directory, so it can re-send missing chunks")
	f.IntVar(&p.chunk, "chunk-size", proto.DefaultChunkSize, "chunk size in bytes")
	f.DurationVar(&p.wait, "wait", 0, "wait this long for every device's result (0: do not wait)")
	bf := addBrokerFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if p.file != "" {
			if c.Flags().Changed("registry") || c.Flags().Changed("store-url") || p.full || p.delta {
				return cli.Usagef("--file excludes --registry, --full and --delta")
			}
			return p.fromFile(c.Context(), bf, c.OutOrStdout(), logger(c))
		}
		return p.fromRegistry(c.Context(), bf, c.OutOrStdout(), logger(c))
	}
	return c
}

// fromRegistry builds each device's snapshot from the registry and
// publishes it.
func (p *snapshotPublish) fromRegistry(ctx context.Context, bf *brokerFlags, stdout io.Writer, log *slog.Logger) error {
	if p.version != 0 || p.from != 0 || p.full == p.delta || p.site == "" {
		return cli.Usagef("from the registry, snapshot publish needs --site and one of --full and --delta (not --version, --delta-from); or --file")
	}
	r, err := p.reg.open(ctx, log)
	if err != nil {
		return err
	}
	defer r.Close()
	s, err := dial(ctx, bf, p.key, p.spool, log)
	if err != nil {
		return err
	}
	defer s.Close()
	ids, err := publishFromRegistry(ctx, s, r, p.site, p.devices, p.delta, p.chunk, p.statusWait, stdout)
	if err != nil {
		return err
	}
	return waitResults(ctx, s, p.wait, ids, stdout)
}

// fromFile publishes a prepared payload file to each device.
func (p *snapshotPublish) fromFile(ctx context.Context, bf *brokerFlags, stdout io.Writer, log *slog.Logger) error {
	if p.version == 0 || p.site == "" || len(p.devices) == 0 {
		return cli.Usagef("snapshot publish --file needs --version, --site and --device")
	}
	s, err := dial(ctx, bf, p.key, p.spool, log)
	if err != nil {
		return err
	}
	defer s.Close()
	var ids []string
	for _, d := range p.devices {
		m, err := s.PublishSnapshot(ctx, hq.SnapshotOffer{Site: p.site, Device: d, Version: p.version, From: p.from,
			Path: p.file, ChunkSize: p.chunk})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s snapshot version %d to %s/%s: transfer %s, %d bytes in %d chunks\n",
			m.Type, m.Version, m.Site, m.Device, m.Transfer, m.Size, m.Chunks)
		ids = append(ids, m.Transfer)
	}
	return waitResults(ctx, s, p.wait, ids, stdout)
}

// commandCommand is the "command" group: "command send".
func commandCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "command",
		Short: "Signed commands for a device",
	}
	c.AddCommand(commandSendCommand())
	return c
}

// commandSendCommand is "tobira-hq command send".
func commandSendCommand() *cobra.Command {
	var key string
	var cmd proto.Command
	var ttl, wait time.Duration
	c := &cobra.Command{
		Use:   "send --site S --device D --action A [--door D] [--mode M] [--credential HEX]",
		Short: "Sign and send a command: unlock, set_mode, lockdown, release, resync, forgive_apb",
	}
	f := c.Flags()
	f.StringVar(&key, "key", "", "HQ signing key (PREFIX.key from keygen)")
	f.StringVar(&cmd.Site, "site", "", "site of the device")
	f.StringVar(&cmd.Device, "device", "", "device")
	f.StringVar(&cmd.Action, "action", "", "unlock, set_mode, lockdown, release, resync or forgive_apb")
	f.StringVar(&cmd.Door, "door", "", "door name")
	f.StringVar(&cmd.Mode, "mode", "", "door mode (set_mode)")
	f.StringVar(&cmd.Credential, "credential", "", "credential hex key (forgive_apb)")
	f.DurationVar(&ttl, "ttl", 5*time.Minute, "how long the command stays valid (max 24h)")
	f.DurationVar(&wait, "wait", 30*time.Second, "wait this long for the device's result (0: do not wait)")
	bf := addBrokerFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if cmd.Site == "" || cmd.Device == "" || cmd.Action == "" {
			return cli.Usagef("command send needs --site, --device and --action")
		}
		return sendCommand(c.Context(), bf, key, cmd, ttl, wait, c.OutOrStdout(), logger(c))
	}
	return c
}

// sendCommand signs c, valid for ttl, sends it and waits up to wait for
// its result.
func sendCommand(ctx context.Context, bf *brokerFlags, key string, c proto.Command, ttl, wait time.Duration,
	stdout io.Writer, log *slog.Logger) error {
	s, err := dial(ctx, bf, key, "", log)
	if err != nil {
		return err
	}
	defer s.Close()
	c.Issued = time.Now().UTC().Truncate(time.Second)
	c.Expires = c.Issued.Add(ttl)
	c, err = s.SendCommand(ctx, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %s to %s/%s: id %s, expires %s\n", c.Action, c.Site, c.Device, c.ID, c.Expires.Format(time.RFC3339))
	return waitResults(ctx, s, wait, []string{c.ID}, stdout)
}
